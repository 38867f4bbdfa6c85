#!/usr/bin/env bash
# Hostile-tenant benchmark (run by hand, not a test), each figure against a baseline run side by side:
#  1. rule cost: GET of the path the last of 10,000 redirect rules matches, against a site with one rule;
#  2. slow bodies: durable POST /access_tokens while 200 clients trickle request bodies (one byte a
#     second), against the same load with no slow clients;
#  3. zip deploy memory: peak RSS growth of the server over a 64 MiB zip deploy.
# Env: DURATION (default 8s), CONNECTIONS (default 32), THREADS (default 2), WORKERS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-2}
PORT=${RSD_PORT:-18380}

for pair in wrk:wrk curl:curl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || {
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pair#*:}" >/dev/null
  }
done

cargo build --release --quiet
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

RUST_LOG=warn ./target/release/resellerd serve --data-dir "$work/data" --http-addr "127.0.0.1:$PORT" \
  --https-addr 127.0.0.1:0 --workers "$WORKERS" --rate-limit-ip 0 --rate-limit-credential 0 \
  --body-timeout 600 >"$work/out" 2>"$work/err" &
server=$!
pids+=($server)
for _ in $(seq 50); do [ -s "$work/data/operator-token" ] && grep -q listening "$work/out" && break; sleep 0.1; done

api=http://127.0.0.1:$PORT/api/v1
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
op=$(cat "$work/data/operator-token")
key=$(curl -sS --fail-with-body -H "Authorization: Bearer $op" -d '{"name":"Bench","email":"b@example.test"}' \
  "$api/admin/resellers" | json "['key']['key']")
tok=$(curl -sS --fail-with-body -H "Authorization: Bearer $key" -d '{"user":{"email":"u@example.test"}}' \
  "$api/access_tokens" | json "['access_token']")
deploy_zip() { # site, zip file
  curl -sS --fail-with-body -H "Authorization: Bearer $tok" -d "{\"name\":\"$1\"}" "$api/sites" >/dev/null
  curl -sS --fail-with-body -H "Authorization: Bearer $tok" -H 'content-type: application/zip' \
    --data-binary "@$2" "$api/sites/$1/deploys" >/dev/null
}
python3 - "$work" <<'PY'
import sys, zipfile
work = sys.argv[1]
for name, n in (("one", 1), ("many", 10_000)):
    with zipfile.ZipFile(f"{work}/{name}.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("index.html", "<h1>rules</h1>")
        z.writestr("_redirects", "".join(f"/old-{i} /new-{i}\n" for i in range(n)))
PY
deploy_zip one "$work/one.zip"
deploy_zip many "$work/many.zip"

rps() { wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "$@" | awk '/Requests\/sec/ {print $2}'; }
ratio() { python3 -c "print(f'{$1/$2:.2f}x')"; }

one=$(rps -H 'Host: one.localhost' "http://127.0.0.1:$PORT/old-0")
many=$(rps -H 'Host: many.localhost' "http://127.0.0.1:$PORT/old-9999")
printf '%-44s %10s req/s\n%-44s %10s req/s  %s\n' "redirect, site with 1 rule (baseline)" "$one" \
  "redirect, last of 10,000 rules" "$many" "$(ratio "$many" "$one")"

export RESELLERD_KEY=$key
calm=$(rps -s bench/create_token.lua "http://127.0.0.1:$PORT")
python3 - "$PORT" "$key" <<'PY' &
import socket, sys, time
port, key = int(sys.argv[1]), sys.argv[2]
conns = []
for _ in range(200):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall((f"POST /api/v1/access_tokens HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {key}\r\n"
               "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n").encode())
    conns.append(s)
for _ in range(30):
    for s in conns:
        try: s.sendall(b" ")
        except OSError: pass
    time.sleep(1)
PY
pids+=($!)
sleep 1
stormy=$(rps -s bench/create_token.lua "http://127.0.0.1:$PORT")
printf '%-44s %10s req/s\n%-44s %10s req/s  %s\n' "durable POST /access_tokens (baseline)" "$calm" \
  "same, 200 clients trickling bodies" "$stormy" "$(ratio "$stormy" "$calm")"

python3 - "$work" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(f"{sys.argv[1]}/big.zip", "w", zipfile.ZIP_DEFLATED) as z:
    for i in range(16):
        z.writestr(f"f{i}.bin", os.urandom(4 << 20))
PY
hwm() { awk '/VmHWM/ {print $2}' "/proc/$server/status"; }
before=$(hwm)
deploy_zip big "$work/big.zip"
after=$(hwm)
printf '%-44s %10s MiB (peak RSS %s -> %s MiB)\n' "peak RSS growth over a 64 MiB zip deploy" \
  "$(( (after - before) / 1024 ))" "$(( before / 1024 ))" "$(( after / 1024 ))"
