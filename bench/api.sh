#!/usr/bin/env bash
# Benchmark (run by hand, not a test): wrk against authenticated GET /api/v1/users and durable
# POST /api/v1/access_tokens, side by side with baselines from the same build: `bare_users`, a
# minimal actix-web + redb handler doing the same work as GET /users?per_page=10 (Bearer token
# resolved by SHA-256 in a redb table, ten user records scanned, JSON with Link and
# X-Total-Count), and `bare_hello` (an empty handler, for context). Also measures /healthz: the
# cost of the middleware alone.
# Prints the median requests/s of ROUNDS rounds (default 3; the loads take turns, so
# they share the machine's ups and downs) and the ratios. The rate limits are off, unless
# LIMITED=1: then they are on, set too high to refuse anything, so their cost shows.
# Usage: [LIMITED=1] bench/api.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-64}
workers=$(nproc)

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet --bin resellerd --example bare_hello --example bare_users

limits="--rate-limit-ip 0 --rate-limit-credential 0"
[ "${LIMITED:-0}" = 1 ] && limits="--rate-limit-ip 100000000 --rate-limit-credential 100000000"
tmp=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

./target/release/resellerd serve --data-dir "$tmp/data" --http-addr 127.0.0.1:0 --https-addr 127.0.0.1:0 \
  --workers "$workers" $limits > "$tmp/server.out" 2>/dev/null &
./target/release/examples/bare_hello 127.0.0.1:0 "$workers" > "$tmp/bare.out" &
./target/release/examples/bare_users 127.0.0.1:0 "$workers" "$tmp/bare-users" > "$tmp/same.out" &
for _ in $(seq 100); do
  grep -q listening "$tmp/server.out" 2>/dev/null && grep -q listening "$tmp/bare.out" 2>/dev/null &&
    grep -q token "$tmp/same.out" 2>/dev/null && break
  sleep 0.1
done
same=$(sed -nE 's/^listening (http:.*)/\1/p' "$tmp/same.out")
same_token=$(sed -nE 's/^token (.*)/\1/p' "$tmp/same.out")
api=$(sed -nE 's/^resellerd listening http=(http:[^ ]+).*/\1/p' "$tmp/server.out")
bare=$(sed -nE 's/^listening (http:.*)/\1/p' "$tmp/bare.out")
op=$(cat "$tmp/data/operator-token")
key=$(curl -sf -X POST "$api/api/v1/admin/resellers" -H "Authorization: Bearer $op" \
  -d '{"name":"Bench","email":"ops@bench.test"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"]["key"])')
for i in $(seq 50); do
  curl -sf -o /dev/null -X POST "$api/api/v1/access_tokens" -H "Authorization: Bearer $key" -d "{\"user\":{\"email\":\"seed$i@bench.test\"}}"
done

rps() { wrk -t2 -c"$conns" -d"${secs}s" "$@" | awk '/Requests\/sec/ {print $2}'; }
# requests/s and p99 latency in ms, as "rps p99".
rps_p99() {
  wrk -t2 -c"$conns" -d"${secs}s" --latency "$@" | awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /Requests\/sec/ {r = $2} $1 == "99%" {p = ms($2)} END {print r, p}'
}
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
bare_all=() page_all=() health_all=() get_all=() post_all=() same_all=() same_p99=() get_p99=()
for _ in $(seq "${ROUNDS:-3}"); do
  bare_all+=("$(rps "$bare/")")
  page_all+=("$(rps "$bare/page")")
  health_all+=("$(rps "$api/healthz")")
  read -r r p < <(rps_p99 -H "Authorization: Bearer $same_token" "$same/api/v1/users?per_page=10")
  same_all+=("$r") same_p99+=("$p")
  read -r r p < <(rps_p99 -H "Authorization: Bearer $key" "$api/api/v1/users?per_page=10")
  get_all+=("$r") get_p99+=("$p")
  post_all+=("$(RESELLERD_KEY=$key rps -s bench/create_token.lua "$api")")
done
echo "rounds: bare ${bare_all[*]} | page ${page_all[*]} | healthz ${health_all[*]} | same-work ${same_all[*]} (p99 ${same_p99[*]}) | GET ${get_all[*]} (p99 ${get_p99[*]}) | POST ${post_all[*]}"
same_rps=$(median "${same_all[@]}")
same_lat=$(median "${same_p99[@]}")
get_lat=$(median "${get_p99[@]}")
bare_rps=$(median "${bare_all[@]}")
page_rps=$(median "${page_all[@]}")
health_rps=$(median "${health_all[@]}")
get_rps=$(median "${get_all[@]}")
post_rps=$(median "${post_all[@]}")

printf '%-44s %12s\n' "endpoint ($conns connections, ${secs}s, $workers workers)" "requests/s"
printf '%-44s %12s\n' "bare actix-web GET / (baseline)" "$bare_rps"
printf '%-44s %12s   (a fixed page of the same size and headers)\n' "bare actix-web GET /page (context)" "$page_rps"
printf '%-44s %12s   %.2fx baseline (every middleware; no credential, no store)\n' "resellerd GET /healthz (context)" "$health_rps" "$(echo "$health_rps / $bare_rps" | bc -l)"
printf '%-44s %12s   p99 %s ms\n' "same-work actix-web + sled GET /users (baseline)" "$same_rps" "$same_lat"
printf '%-44s %12s   %.2fx same-work (target >= 0.85x), p99 %s ms = %.2fx (target <= 1.2x)\n' "resellerd GET /api/v1/users?per_page=10" "$get_rps" "$(echo "$get_rps / $same_rps" | bc -l)" "$get_lat" "$(echo "$get_lat / $same_lat" | bc -l)"
printf '%-44s %12s   %.2fx baseline (target >= 5000/s)\n' "resellerd POST /api/v1/access_tokens (durable)" "$post_rps" "$(echo "$post_rps / $bare_rps" | bc -l)"
