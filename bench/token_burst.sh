#!/usr/bin/env bash
# The token-lifecycle issue's space figure (run by hand, about 10 minutes): BURST token issues
# (default 2,000,000) for USERS users (default 20,000) at 64 connections, each token living
# TTL seconds (default 120); then waits until the sweeper has removed every expired token,
# restarts, and prints the data dir beside the live data (the size of a backup of it), then
# the same after `resellerd compact`. Target: the db within 1.5x of the live data.
# Usage: [BURST=2000000] [USERS=20000] [TTL=120] bench/token_burst.sh
set -euo pipefail
cd "$(dirname "$0")/.."
burst=${BURST:-2000000}
users=${USERS:-20000}
ttl=${TTL:-120}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet --bin resellerd
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
start() {
  rm -f "$tmp/server.out" # else the wait below could read the previous server's address
  ./target/release/resellerd serve --data-dir "$tmp/data" --http-addr 127.0.0.1:0 --https-addr 127.0.0.1:0 \
    --workers "$(nproc)" --rate-limit-ip 0 --rate-limit-credential 0 --token-sweep-interval 5 \
    > "$tmp/server.out" 2>"$tmp/server.err" &
  pid=$!
  until grep -q listening "$tmp/server.out" 2>/dev/null; do sleep 0.05; done
  api=$(sed -nE 's/^resellerd listening http=(http:[^ ]+).*/\1/p' "$tmp/server.out")
  until curl -sf -o /dev/null "$api/healthz"; do sleep 0.05; done
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
size() { du -sm "$tmp/data/db" | cut -f1; }
live() { # tokens still live, summed over the users' token_count
  python3 - "$api" "$key" <<'PY'
import json, sys, urllib.request
api, key = sys.argv[1], sys.argv[2]
url, n = f"{api}/api/v1/users?per_page=100", 0
while url:
    res = urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"}))
    n += sum(u.get("token_count", 0) for u in json.load(res))
    nxt = [p.split(";")[0].strip(" <>") for p in res.headers.get("Link", "").split(",") if 'rel="next"' in p]
    url = nxt[0] if nxt else None
print(n)
PY
}

start
op=$(cat "$tmp/data/operator-token")
key=$(curl -sf -X POST "$api/api/v1/admin/resellers" -H "Authorization: Bearer $op" \
  -d '{"name":"Burst","email":"ops@burst.test"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"]["key"])')
echo "== $burst token issues for $users users, each living ${ttl}s"
issued=0
t0=$(date +%s)
while [ "$issued" -lt "$burst" ]; do
  USERS=$users EXPIRES_IN=$ttl RESELLERD_KEY=$key wrk -t2 -c64 -d10s -s bench/login_loop.lua "$api" > "$tmp/wrk.txt"
  ok=$(awk '/requests in/ {r = $1} /Non-2xx/ {b = $4} END {print r - b}' "$tmp/wrk.txt")
  issued=$((issued + ok))
  printf '  %8d issued, db %d MiB\n' "$issued" "$(size)"
done
peak=$(size)
echo "== waiting for expiry and the sweeper"
sleep $(( ttl - ($(date +%s) - t0) > 0 ? ttl - ($(date +%s) - t0) : 0 ))
while [ "$(live)" -gt 0 ]; do sleep 5; done
swept=$(( $(date +%s) - t0 ))
stop
start
after=$(size)
curl -sf -o "$tmp/backup.tar" -H "Authorization: Bearer $op" "$api/api/v1/admin/backup"
live_mb=$(echo "scale=1; $(stat -c %s "$tmp/backup.tar") / 1048576" | bc)
stop
c0=$(date +%s)
./target/release/resellerd compact --data-dir "$tmp/data"
compact_secs=$(( $(date +%s) - c0 ))
start
compacted=$(size)
stop

cat <<OUT

token burst ($(nproc) cores, 64 connections, release build)
issued                              $issued tokens for $users users (cap per user: the reseller default)
db at the end of the burst          $peak MiB
every token expired and swept       ${swept}s after the burst began
db after a restart                  $after MiB
live data (a backup of it)          $live_mb MiB
ratio                               $(echo "scale=2; $after / $live_mb" | bc)x (target <= 1.5x)
db after resellerd compact          $compacted MiB = $(echo "scale=2; $compacted / $live_mb" | bc)x the live data (compact took ${compact_secs}s)
OUT
