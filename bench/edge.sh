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

. bench/lib.sh
bench_tools nginx wrk curl

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
bench_resellerd
bench_site "$work/www" index.html 10k.bin

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
$(bench_nginx_temp)
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
