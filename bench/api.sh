#!/usr/bin/env bash
# Benchmark (run by hand, not a test): wrk against authenticated GET /api/v1/users and durable
# POST /api/v1/access_tokens, side by side with a bare actix-web handler from the same build.
# Also measures resellerd's /healthz: the cost of the middleware alone, a ceiling for any API call.
# Prints the median requests/s of ROUNDS rounds (default 3; the loads take turns, so
# they share the machine's ups and downs) and the ratios. Usage: bench/api.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-64}
workers=$(nproc)

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet --bin resellerd --example bare_hello

tmp=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

./target/release/resellerd serve --data-dir "$tmp/data" --http-addr 127.0.0.1:0 --https-addr 127.0.0.1:0 \
  --workers "$workers" --rate-limit-ip 0 --rate-limit-credential 0 > "$tmp/server.out" 2>/dev/null &
./target/release/examples/bare_hello 127.0.0.1:0 "$workers" > "$tmp/bare.out" &
for _ in $(seq 100); do
  grep -q listening "$tmp/server.out" 2>/dev/null && grep -q listening "$tmp/bare.out" 2>/dev/null && break
  sleep 0.1
done
api=$(sed -nE 's/^resellerd listening http=(http:[^ ]+).*/\1/p' "$tmp/server.out")
bare=$(sed -nE 's/^listening (http:.*)/\1/p' "$tmp/bare.out")
op=$(cat "$tmp/data/operator-token")
key=$(curl -sf -X POST "$api/api/v1/admin/resellers" -H "Authorization: Bearer $op" \
  -d '{"name":"Bench","email":"ops@bench.test"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"]["key"])')
for i in $(seq 50); do
  curl -sf -o /dev/null -X POST "$api/api/v1/access_tokens" -H "Authorization: Bearer $key" -d "{\"user\":{\"email\":\"seed$i@bench.test\"}}"
done

rps() { wrk -t2 -c"$conns" -d"${secs}s" "$@" | awk '/Requests\/sec/ {print $2}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
bare_all=() page_all=() health_all=() get_all=() post_all=()
for _ in $(seq "${ROUNDS:-3}"); do
  bare_all+=("$(rps "$bare/")")
  page_all+=("$(rps "$bare/page")")
  health_all+=("$(rps "$api/healthz")")
  get_all+=("$(rps -H "Authorization: Bearer $key" "$api/api/v1/users?per_page=10")")
  post_all+=("$(RESELLERD_KEY=$key rps -s bench/create_token.lua "$api")")
done
echo "rounds: bare ${bare_all[*]} | page ${page_all[*]} | healthz ${health_all[*]} | GET ${get_all[*]} | POST ${post_all[*]}"
bare_rps=$(median "${bare_all[@]}")
page_rps=$(median "${page_all[@]}")
health_rps=$(median "${health_all[@]}")
get_rps=$(median "${get_all[@]}")
post_rps=$(median "${post_all[@]}")

printf '%-44s %12s\n' "endpoint ($conns connections, ${secs}s, $workers workers)" "requests/s"
printf '%-44s %12s\n' "bare actix-web GET / (baseline)" "$bare_rps"
printf '%-44s %12s   (a fixed page of the same size and headers)\n' "bare actix-web GET /page (context)" "$page_rps"
printf '%-44s %12s   %.2fx baseline (every middleware; no credential, no store)\n' "resellerd GET /healthz (context)" "$health_rps" "$(echo "$health_rps / $bare_rps" | bc -l)"
printf '%-44s %12s   %.2fx baseline (target >= 0.7x), %.2fx /page\n' "resellerd GET /api/v1/users" "$get_rps" "$(echo "$get_rps / $bare_rps" | bc -l)" "$(echo "$get_rps / $page_rps" | bc -l)"
printf '%-44s %12s   %.2fx baseline (target >= 5000/s)\n' "resellerd POST /api/v1/access_tokens (durable)" "$post_rps" "$(echo "$post_rps / $bare_rps" | bc -l)"
