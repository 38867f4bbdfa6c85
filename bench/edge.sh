#!/usr/bin/env bash
# Edge benchmark (run by hand, not a test): GET of index.html and of a 10 KiB file over HTTP
# keep-alive, resellerd's edge (by Host header) side by side with nginx serving the same files.
# Prints requests/s of both and the ratio (goal: resellerd >= 1.0x nginx).
# Env: DURATION (default 10s), ROUNDS (default 3), CONNECTIONS (default 64), THREADS (default 2),
# WORKERS (default 2: resellerd workers and nginx worker_processes alike).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-2}
RSD_PORT=${RSD_PORT:-18280}
NGINX_PORT=${NGINX_PORT:-18290}

need_apt=()
for pair in nginx:nginx wrk:wrk curl:curl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || need_apt+=("${pair#*:}")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --quiet
[ -n "${BENCH_DEBUG:-}" ] && set -x
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# The same files on disk for nginx and in a deploy for resellerd.
mkdir -p "$work/www"
chmod 755 "$work"  # nginx workers may run as an unprivileged user
printf '<!doctype html><html><head><title>bench</title></head><body><h1>Hello from the edge</h1></body></html>\n' >"$work/www/index.html"
head -c 10240 /dev/urandom >"$work/www/10k.bin"
chmod 644 "$work/www/"*

# Access logs off on both sides (nginx: access_log off).
RUST_LOG=${RUST_LOG:-warn} ./target/release/resellerd serve --data-dir "$work/data" --http-addr "127.0.0.1:$RSD_PORT" \
  --https-addr 127.0.0.1:0 --workers "$WORKERS" >"$work/resellerd.out" 2>"$work/resellerd.err" &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/data/operator-token" ] && grep -q listening "$work/resellerd.out" && break; sleep 0.1; done

api=http://127.0.0.1:$RSD_PORT/api/v1
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
op=$(cat "$work/data/operator-token")
key=$(curl -sS --fail-with-body -H "Authorization: Bearer $op" -H 'content-type: application/json' \
  -d '{"name":"Bench","email":"bench@example.test"}' "$api/admin/resellers" | json "['key']['key']")
tok=$(curl -sS --fail-with-body -H "Authorization: Bearer $key" -H 'content-type: application/json' \
  -d '{"user":{"email":"user@example.test"}}' "$api/access_tokens" | json "['access_token']")
curl -sS --fail-with-body -H "Authorization: Bearer $tok" -H 'content-type: application/json' \
  -d '{"name":"bench"}' "$api/sites" >/dev/null
files=$(cd "$work/www" && for f in index.html 10k.bin; do printf '"%s":"%s",' "$f" "$(sha1sum "$f" | cut -d' ' -f1)"; done)
deploy=$(curl -sS --fail-with-body -H "Authorization: Bearer $tok" -H 'content-type: application/json' \
  -d "{\"files\":{${files%,}}}" "$api/sites/bench/deploys" | json "['id']")
for f in index.html 10k.bin; do
  curl -sS --fail-with-body -X PUT -H "Authorization: Bearer $tok" -H 'content-type: application/octet-stream' \
    --data-binary "@$work/www/$f" "$api/deploys/$deploy/files/$f" >/dev/null
done

cat >"$work/nginx.conf" <<CONF
worker_processes $WORKERS;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
daemon off;
events { worker_connections 4096; }
http {
  include /etc/nginx/mime.types;
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path $work/nginx-tmp;
  proxy_temp_path $work/nginx-tmp;
  fastcgi_temp_path $work/nginx-tmp;
  uwsgi_temp_path $work/nginx-tmp;
  scgi_temp_path $work/nginx-tmp;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $work/www;
    etag on;
  }
}
CONF
mkdir -p "$work/nginx-tmp"
"$NGINX" -c "$work/nginx.conf" -e "$work/nginx-error.log" &
pids+=($!)
sleep 0.5

check() { curl -sS --fail-with-body -o /dev/null "$@"; }
check -H 'Host: bench.localhost' "http://127.0.0.1:$RSD_PORT/10k.bin"
check "http://127.0.0.1:$NGINX_PORT/10k.bin"

rps() { wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "$@" | awk '/Requests\/sec/ {print $2}'; }
best() { python3 -c "import sys; print(max(float(x) for x in sys.argv[1:]))" "$@"; }
# Rounds alternate the two servers and the best of each counts, so a burst of load from
# elsewhere on the machine skews the ratio less.
printf '%-12s %14s %14s %8s   (best of %s rounds of %s)\n' path resellerd nginx ratio "$ROUNDS" "$DURATION"
for path in /index.html /10k.bin; do
  rs=() ns=()
  for _ in $(seq "$ROUNDS"); do
    rs+=("$(rps -H 'Host: bench.localhost' "http://127.0.0.1:$RSD_PORT$path")")
    ns+=("$(rps "http://127.0.0.1:$NGINX_PORT$path")")
  done
  r=$(best "${rs[@]}")
  n=$(best "${ns[@]}")
  printf '%-12s %14.0f %14.0f %7.2fx\n' "$path" "$r" "$n" "$(python3 -c "print($r/$n)")"
done
