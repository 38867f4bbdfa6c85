#!/usr/bin/env bash
# Benchmark (run by hand, not a test): the same load on a server on sled, one on PostgreSQL (a
# throwaway cluster on loopback, scripts/pg-cluster; same machine, same build) and two nodes on one
# PostgreSQL database (half the connections to each, their rates added), in alternating rounds:
# authenticated GET /api/v1/users?per_page=10, durable POST /api/v1/access_tokens, and the edge's
# GET of a 1 KiB page by Host. Prints the median requests/s of ROUNDS rounds (default 3) and each
# PostgreSQL setup's ratio to sled. All of it shares this machine's CPUs, so the two nodes measure
# what coordinating costs, not what a second machine adds.
# Each server runs with its default workers (one per CPU on sled, eight per CPU on PostgreSQL);
# PG_WORKERS sets the PostgreSQL server's.
# Usage: bench/engines.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
secs=${1:-10}
conns=${2:-64}
workers=$(nproc)

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet --bin resellerd

tmp=$(mktemp -d)
chmod 755 "$tmp"
pg_url=$(scripts/pg-cluster start "$tmp/cluster")
cleanup() {
  # The servers were started inside command substitutions, so they are not this shell's jobs:
  # each wrote its pid next to its data dir.
  kill $(jobs -p) $(cat "$tmp"/*.pid 2>/dev/null) 2>/dev/null || true
  scripts/pg-cluster stop "$tmp/cluster" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
psql "$pg_url" -qc "CREATE DATABASE bench"

# Starts a server on the data dir $tmp/$1 with the extra flags; prints its base URL.
start() {
  local name=$1
  shift
  RUST_LOG=warn ./target/release/resellerd serve --data-dir "$tmp/$name" --http-addr 127.0.0.1:0 \
    --https-addr 127.0.0.1:0 ${start_workers:+--workers "$start_workers"} --rate-limit-ip 0 --rate-limit-credential 0 "$@" \
    >"$tmp/$name.out" 2>"$tmp/$name.err" &
  echo $! >"$tmp/$name.pid"
  for _ in $(seq 100); do
    grep -q listening "$tmp/$name.out" 2>/dev/null && break
    sleep 0.1
  done
  sed -nE 's/^resellerd listening http=(http:[^ ]+).*/\1/p' "$tmp/$name.out"
}

# Site `bench` with a 1 KiB index.html, deployed by a new user through the server at $1 with key $2.
site() {
  local api=$1/api/v1 key=$2 tok deploy
  tok=$(curl -sf -X POST "$api/access_tokens" -H "Authorization: Bearer $key" \
    -d '{"user":{"email":"site@bench.test"}}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -sf -o /dev/null -X POST "$api/sites" -H "Authorization: Bearer $tok" -d '{"name":"bench"}'
  head -c 1024 /dev/zero | tr '\0' 'x' >"$tmp/index.html"
  deploy=$(curl -sf -X POST "$api/sites/bench/deploys" -H "Authorization: Bearer $tok" \
    -d "{\"files\":{\"index.html\":\"$(sha1sum "$tmp/index.html" | cut -d' ' -f1)\"}}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  curl -sf -o /dev/null -X PUT "$api/deploys/$deploy/files/index.html" -H "Authorization: Bearer $tok" \
    -H 'content-type: application/octet-stream' --data-binary "@$tmp/index.html"
}

sled_api=$(start_workers=$workers start sled)
pg_api=$(start_workers=${PG_WORKERS:-} start pg --database-url "${pg_url%/*}/bench")
sled_key=$(bench_seed "$sled_api" "$tmp/sled")
pg_key=$(bench_seed "$pg_api" "$tmp/pg")
site "$sled_api" "$sled_key"
site "$pg_api" "$pg_key"
# Two nodes on their own database and a shared blob dir standing in for the bucket (the files
# are the same bytes either way once cached).
psql "$pg_url" -qc "CREATE DATABASE bench2"
n1_api=$(start_workers=${PG_WORKERS:-} start n1 --database-url "${pg_url%/*}/bench2")
n2_api=$(start_workers=${PG_WORKERS:-} start n2 --database-url "${pg_url%/*}/bench2")
n_key=$(bench_seed "$n1_api" "$tmp/n1")
site "$n1_api" "$n_key"
# The second node serves the first one's files from the shared store: copy them into its blob dir.
cp -a "$tmp/n1/blobs/." "$tmp/n2/blobs/" 2>/dev/null || true

rps() { wrk -t2 -c"$conns" -d"${secs}s" "$@" | awk '/Requests\/sec/ {print $2}'; }
# The same load split over the two nodes (half the connections each), their rates added.
rps2() {
  local half=$((conns / 2))
  WRK_INSTANCE=a wrk -t1 -c"$half" -d"${secs}s" "$@" "$n1_api$path" | awk '/Requests\/sec/ {print $2}' >"$tmp/r1" &
  WRK_INSTANCE=b wrk -t1 -c"$half" -d"${secs}s" "$@" "$n2_api$path" | awk '/Requests\/sec/ {print $2}' >"$tmp/r2"
  wait
  python3 -c "print(f'{float(open(\"$tmp/r1\").read()) + float(open(\"$tmp/r2\").read()):.2f}')"
}
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
declare -A runs
for _ in $(seq "${ROUNDS:-3}"); do
  path=/api/v1/users?per_page=10
  runs[sled_get]+=" $(rps -H "Authorization: Bearer $sled_key" "$sled_api$path")"
  runs[pg_get]+=" $(rps -H "Authorization: Bearer $pg_key" "$pg_api$path")"
  runs[two_get]+=" $(rps2 -H "Authorization: Bearer $n_key")"
  path=
  runs[sled_post]+=" $(RESELLERD_KEY=$sled_key rps -s bench/create_token.lua "$sled_api")"
  runs[pg_post]+=" $(RESELLERD_KEY=$pg_key rps -s bench/create_token.lua "$pg_api")"
  runs[two_post]+=" $(RESELLERD_KEY=$n_key rps2 -s bench/create_token.lua)"
  path=/
  runs[sled_edge]+=" $(rps -H 'Host: bench.localhost' "$sled_api/")"
  runs[pg_edge]+=" $(rps -H 'Host: bench.localhost' "$pg_api/")"
  runs[two_edge]+=" $(rps2 -H 'Host: bench.localhost')"
done
ratio() { python3 -c "print(f'{float($1) / float($2):.2f}x')"; }
printf '%-44s %10s %10s %8s %10s %8s\n' "(requests/s, median of ${ROUNDS:-3})" sled PostgreSQL ratio "2 nodes" ratio
for row in "get:GET /api/v1/users?per_page=10" "post:POST /api/v1/access_tokens, durable" "edge:edge GET / by Host (1 KiB)"; do
  k=${row%%:*}
  echo "rounds $k: sled${runs[sled_$k]} | PostgreSQL${runs[pg_$k]} | 2 nodes${runs[two_$k]}"
  s=$(median ${runs[sled_$k]}) p=$(median ${runs[pg_$k]}) t=$(median ${runs[two_$k]})
  printf '%-44s %10s %10s %8s %10s %8s\n' "${row#*:}" "$s" "$p" "$(ratio "$p" "$s")" "$t" "$(ratio "$t" "$s")"
done
