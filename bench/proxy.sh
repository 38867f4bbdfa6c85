#!/usr/bin/env bash
# Proxy benchmark (run by hand, not a test): GET through a `_redirects` 200 rule to a proxy
# profile's origin (an nginx serving index.html and a 10 KiB file on loopback), resellerd's edge side
# by side with nginx's own proxy_pass to the same origin, both adding a secret header and keeping
# upstream connections alive. Prints requests/s of both and the ratio.
# Env: DURATION (default 10s), ROUNDS (default 3), CONNECTIONS (default 64), THREADS (default 2),
# WORKERS (default 2: resellerd workers and the proxying nginx's worker_processes alike).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-2}
RSD_PORT=${RSD_PORT:-18380}
NGINX_PORT=${NGINX_PORT:-18390}
ORIGIN_PORT=${ORIGIN_PORT:-18391}

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

mkdir -p "$work/www" "$work/site" "$work/nginx-tmp"
chmod 755 "$work"  # nginx workers may run as an unprivileged user
printf '<!doctype html><html><head><title>bench</title></head><body><h1>Hello from the origin</h1></body></html>\n' >"$work/www/index.html"
head -c 10240 /dev/urandom >"$work/www/10k.bin"
chmod 644 "$work/www/"*
printf '/api/*  http://127.0.0.1:%s/:splat  200\n' "$ORIGIN_PORT" >"$work/site/_redirects"
printf 'home\n' >"$work/site/index.html"

# The origin (one nginx, 2 workers) and the baseline proxy (another nginx, WORKERS workers):
# access logs off, upstream keep-alive, the same secret header added.
cat >"$work/nginx.conf" <<CONF
worker_processes $WORKERS;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
daemon off;
events { worker_connections 4096; }
http {
  include /etc/nginx/mime.types;
  access_log off;
  keepalive_requests 1000000;
$(bench_nginx_temp)
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location /api/ {
      proxy_pass http://origin/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Api-Key bench-secret;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_buffering off;
    }
  }
}
CONF
cat >"$work/origin.conf" <<CONF
worker_processes 2;
pid $work/origin.pid;
error_log $work/origin-error.log;
daemon off;
events { worker_connections 4096; }
http {
  include /etc/nginx/mime.types;
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
$(bench_nginx_temp)
  server { listen 127.0.0.1:$ORIGIN_PORT; root $work/www; }
}
CONF
"$NGINX" -c "$work/origin.conf" -e "$work/origin-error.log" &
pids+=($!)
"$NGINX" -c "$work/nginx.conf" -e "$work/nginx-error.log" &
pids+=($!)

bench_resellerd --allow-private-targets
curl -sS --fail-with-body -H "Authorization: Bearer $key" -H 'content-type: application/json' \
  -d "{\"name\":\"Origin\",\"origin\":\"http://127.0.0.1:$ORIGIN_PORT\",\"headers\":{\"X-Api-Key\":\"bench-secret\"}}" \
  "$api/proxy_profiles" >/dev/null
bench_site "$work/site" index.html _redirects
sleep 0.5

check() { curl -sS --fail-with-body -o /dev/null "$@"; }
check -H 'Host: bench.localhost' "http://127.0.0.1:$RSD_PORT/api/10k.bin"
check "http://127.0.0.1:$NGINX_PORT/api/10k.bin"
cmp <(curl -sS -H 'Host: bench.localhost' "http://127.0.0.1:$RSD_PORT/api/10k.bin") "$work/www/10k.bin"

printf '%-16s %14s %14s %8s   (best of %s rounds of %s)\n' path resellerd nginx ratio "$ROUNDS" "$DURATION"
for path in /api/index.html /api/10k.bin; do
  rs=() ns=()
  for _ in $(seq "$ROUNDS"); do
    rs+=("$(rps -H 'Host: bench.localhost' "http://127.0.0.1:$RSD_PORT$path")")
    ns+=("$(rps "http://127.0.0.1:$NGINX_PORT$path")")
  done
  r=$(best "${rs[@]}")
  n=$(best "${ns[@]}")
  printf '%-16s %14.0f %14.0f %7.2fx\n' "$path" "$r" "$n" "$(python3 -c "print($r/$n)")"
done
