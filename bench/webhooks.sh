#!/usr/bin/env bash
# Benchmark (run by hand, not a test): what webhooks cost. Durable POST /api/v1/access_tokens (each
# creates a user, so each is a `user.created` event) with no endpoint, then with one endpoint
# subscribed to every event, posting to a loopback receiver (`bare_hello`'s POST /hook), rounds
# taking turns. Prints the create rates and their ratio (target: >= 0.9x), and the deliveries per
# second: all deliveries of a round over the time from its start until the outbox is empty.
# RECEIVER_NICE=19 runs the receiver at that nice value, as a stand-in for a receiver on another
# machine (it still shares the cores, but yields them to resellerd and wrk).
# Usage: bench/webhooks.sh [seconds] [connections]
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
  --workers "$workers" --rate-limit-ip 0 --rate-limit-credential 0 --allow-private-targets \
  > "$tmp/server.out" 2>/dev/null &
nice -n "${RECEIVER_NICE:-0}" ./target/release/examples/bare_hello 127.0.0.1:0 1 > "$tmp/sink.out" &
for _ in $(seq 100); do
  grep -q listening "$tmp/server.out" 2>/dev/null && grep -q listening "$tmp/sink.out" 2>/dev/null && break
  sleep 0.1
done
api=$(sed -nE 's/^resellerd listening http=(http:[^ ]+).*/\1/p' "$tmp/server.out")
sink=$(sed -nE 's/^listening (http:.*)/\1/p' "$tmp/sink.out")
op=$(cat "$tmp/data/operator-token")
key=$(curl -sf -X POST "$api/api/v1/admin/resellers" -H "Authorization: Bearer $op" \
  -d '{"name":"Bench","email":"ops@bench.test"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"]["key"])')
hook=$(curl -sf -X POST "$api/api/v1/webhooks" -H "Authorization: Bearer $key" \
  -d "{\"url\":\"$sink/hook\",\"events\":[\"*\"]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
enable() {
  curl -sf -o /dev/null -X PATCH "$api/api/v1/webhooks/$hook" -H "Authorization: Bearer $key" -d "{\"enabled\":$1}"
}
depth() {
  curl -sf "$api/metrics" -H "Authorization: Bearer $op" | awk '$1 == "resellerd_webhook_outbox_depth" {print $2}'
}
create() { RESELLERD_KEY=$key wrk -t2 -c"$conns" -d"${secs}s" -s bench/create_token.lua "$api" | awk '/Requests\/sec/ {print $2}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

without=() with=() delivered=()
for _ in $(seq "${ROUNDS:-3}"); do
  enable false
  without+=("$(create)")
  enable true
  before=$(curl -sf "$sink/hook")
  start=$(date +%s.%N)
  with+=("$(create)")
  # Until every event of the round is delivered (the dispatcher may still hold a batch).
  sleep 0.5
  while [ "$(depth)" != "0" ]; do sleep 0.1; done
  end=$(date +%s.%N)
  after=$(curl -sf "$sink/hook")
  delivered+=("$(echo "($after - $before) / ($end - $start)" | bc -l)")
done
echo "rounds: creates without ${without[*]} | with ${with[*]} | deliveries/s ${delivered[*]}"
w=$(median "${without[@]}")
h=$(median "${with[@]}")
d=$(median "${delivered[@]}")
printf '%-58s %10.0f/s\n' "durable POST /access_tokens, no endpoint" "$w"
printf '%-58s %10.0f/s   %.2fx (target >= 0.9x)\n' "the same, one endpoint subscribed to every event" "$h" "$(echo "$h / $w" | bc -l)"
printf '%-58s %10.0f/s   (start of the round to an empty outbox)\n' "deliveries to a loopback receiver" "$d"
