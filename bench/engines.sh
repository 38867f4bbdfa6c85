#!/usr/bin/env bash
# Benchmark (run by hand, not a test): the same API load on a server on sled and one on PostgreSQL
# (a throwaway cluster on loopback, scripts/pg-cluster; same machine, same build), in alternating
# rounds: authenticated GET /api/v1/users?per_page=10 and durable POST /api/v1/access_tokens.
# Prints the median requests/s of ROUNDS rounds (default 3) and PostgreSQL's ratio to sled.
# Each server runs with its default workers (one per CPU on sled, eight per CPU on PostgreSQL);
# PG_WORKERS sets the PostgreSQL server's.
# Usage: bench/engines.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-64}
workers=$(nproc)

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet --bin resellerd

tmp=$(mktemp -d)
chmod 755 "$tmp"
pg_url=$(scripts/pg-cluster start "$tmp/cluster")
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
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
  for _ in $(seq 100); do
    grep -q listening "$tmp/$name.out" 2>/dev/null && break
    sleep 0.1
  done
  sed -nE 's/^resellerd listening http=(http:[^ ]+).*/\1/p' "$tmp/$name.out"
}

# A reseller with 50 users on the server at $1 (data dir $tmp/$2); prints its key.
seed() {
  local api=$1 op key
  op=$(cat "$tmp/$2/operator-token")
  key=$(curl -sf -X POST "$api/api/v1/admin/resellers" -H "Authorization: Bearer $op" \
    -d '{"name":"Bench","email":"ops@bench.test"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"]["key"])')
  for i in $(seq 50); do
    curl -sf -o /dev/null -X POST "$api/api/v1/access_tokens" -H "Authorization: Bearer $key" \
      -d "{\"user\":{\"email\":\"seed$i@bench.test\"}}"
  done
  echo "$key"
}

sled_api=$(start_workers=$workers start sled)
pg_api=$(start_workers=${PG_WORKERS:-} start pg --database-url "${pg_url%/*}/bench")
sled_key=$(seed "$sled_api" sled)
pg_key=$(seed "$pg_api" pg)

rps() { wrk -t2 -c"$conns" -d"${secs}s" "$@" | awk '/Requests\/sec/ {print $2}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
sled_get=() pg_get=() sled_post=() pg_post=()
for _ in $(seq "${ROUNDS:-3}"); do
  sled_get+=("$(rps -H "Authorization: Bearer $sled_key" "$sled_api/api/v1/users?per_page=10")")
  pg_get+=("$(rps -H "Authorization: Bearer $pg_key" "$pg_api/api/v1/users?per_page=10")")
  sled_post+=("$(RESELLERD_KEY=$sled_key rps -s bench/create_token.lua "$sled_api")")
  pg_post+=("$(RESELLERD_KEY=$pg_key rps -s bench/create_token.lua "$pg_api")")
done
sg=$(median "${sled_get[@]}") pgg=$(median "${pg_get[@]}")
sp=$(median "${sled_post[@]}") pgp=$(median "${pg_post[@]}")
ratio() { python3 -c "print(f'{float($1) / float($2):.2f}x')"; }
echo "rounds: sled GET ${sled_get[*]} | PostgreSQL GET ${pg_get[*]} | sled POST ${sled_post[*]} | PostgreSQL POST ${pg_post[*]}"
printf '%-52s %10s %10s %8s\n' "" sled PostgreSQL ratio
printf '%-52s %10s %10s %8s\n' "GET /api/v1/users?per_page=10 (requests/s)" "$sg" "$pgg" "$(ratio "$pgg" "$sg")"
printf '%-52s %10s %10s %8s\n' "POST /api/v1/access_tokens, durable (requests/s)" "$sp" "$pgp" "$(ratio "$pgp" "$sp")"
