#!/usr/bin/env bash
# The edge as a visitor meets it (run by hand, not a test): over TLS, access logs on, resellerd side
# by side with nginx (http2, gzip_static, Debian's brotli_static module) and Caddy (file_server with
# `precompressed br gzip`), all three serving the same files, each with WORKERS CPUs' worth of workers.
#
#   h2load, HTTP/2 over TLS: a 2 KiB HTML page and the 40 small CSS/JS assets it links (br, gzip
#     accepted, as a browser does), CONNECTIONS connections with STREAMS streams each;
#   wrk, HTTP/1.1 over TLS: a 10 KiB and a 1 MiB file (incompressible);
#   h2load: the bytes on the wire of the page and its 40 assets on one connection.
#
# Prints requests/s of each and the ratios (goals: resellerd >= 1.2x nginx and >= 1.5x Caddy in every
# row; bytes per page no more than nginx's). Rounds alternate the servers; the best of each counts.
# Env: DURATION (10s), ROUNDS (3), CONNECTIONS (64), STREAMS (10), THREADS (2), WORKERS (2).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
STREAMS=${STREAMS:-10}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-2}
RSD_PORT=${RSD_PORT:-18380}
RSD_TLS=${RSD_TLS:-18381}
NGINX_TLS=${NGINX_TLS:-18391}
CADDY_TLS=${CADDY_TLS:-18393}

. bench/lib.sh
bench_tools nginx wrk curl h2load caddy brotli openssl
[ -f /etc/nginx/modules-enabled/50-mod-http-brotli-static.conf ] || bench_tools libnginx-mod-http-brotli-static

cargo build --release --quiet
[ -n "${BENCH_DEBUG:-}" ] && set -x
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
chmod 755 "$work"

# The page, its 40 assets (text that compresses like real CSS and JS), and two binary files.
mkdir -p "$work/www"
python3 - "$work/www" <<'PY'
import os, random, sys
d = sys.argv[1]
random.seed(7)
words = "color margin padding border flex grid font weight display block none auto inherit".split()
links = []
for i in range(40):
    ext = "css" if i % 2 == 0 else "js"
    name = f"a{i}.{ext}"
    links.append(name)
    if ext == "css":
        body = "".join(f".c{i}-{j} {{ {random.choice(words)}: {random.randint(0, 99)}px; {random.choice(words)}: {random.choice(words)}; }}\n" for j in range(60))
    else:
        body = "".join(f"function f{i}_{j}(x) {{ return x.{random.choice(words)} + {random.randint(0, 999)}; }}\n" for j in range(50))
    open(os.path.join(d, name), "w").write(body)
head = "".join(f'<link rel="stylesheet" href="/{n}">\n' if n.endswith("css") else f'<script src="/{n}"></script>\n' for n in links)
page = f"<!doctype html><html><head><title>bench</title>\n{head}</head><body><h1>Hello from the edge</h1></body></html>\n"
open(os.path.join(d, "index.html"), "w").write(page)
open(os.path.join(d, "10k.bin"), "wb").write(os.urandom(10240))
open(os.path.join(d, "1m.bin"), "wb").write(os.urandom(1 << 20))
PY
chmod 644 "$work/www/"*
assets=$(cd "$work/www" && ls a*.css a*.js | sort -V)
# Precompressed files for nginx and Caddy (resellerd makes its own after the deploy).
for f in index.html $assets; do
  gzip -9 -k "$work/www/$f"
  brotli -q 11 -k "$work/www/$f"
done
chmod 644 "$work/www/"*

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench.localhost \
  -addext subjectAltName=DNS:bench.localhost -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

# resellerd: its self-signed certificate, access lines to a file.
bench_resellerd --access-log "$work/resellerd-access.log"
bench_site "$work/www" index.html $assets 10k.bin 1m.bin

cat >"$work/nginx.conf" <<CONF
load_module modules/ngx_http_brotli_static_module.so;
worker_processes $WORKERS;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
daemon off;
events { worker_connections 4096; }
http {
  include /etc/nginx/mime.types;
  access_log $work/nginx-access.log;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  gzip_static on;
  brotli_static on;
$(bench_nginx_temp)
  server {
    listen 127.0.0.1:$NGINX_TLS ssl http2;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    root $work/www;
    etag on;
  }
}
CONF
mkdir -p "$work/nginx-tmp"
"$NGINX" -c "$work/nginx.conf" -e "$work/nginx-error.log" &
pids+=($!)

cat >"$work/Caddyfile" <<CONF
{
  admin off
  auto_https off
}
https://bench.localhost:$CADDY_TLS, https://127.0.0.1:$CADDY_TLS {
  tls $work/cert.pem $work/key.pem
  root * $work/www
  file_server {
    precompressed br gzip
  }
  log {
    output file $work/caddy-access.log
  }
}
CONF
GOMAXPROCS=$WORKERS XDG_DATA_HOME=$work/caddy-data XDG_CONFIG_HOME=$work/caddy-config \
  caddy run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.out" 2>&1 &
pids+=($!)

urls() { # $1: port; the page and its assets as bench.localhost URLs
  printf 'https://bench.localhost:%s/index.html\n' "$1"
  for a in $assets; do printf 'https://bench.localhost:%s/%s\n' "$1" "$a"; done
}
resolve() { printf -- '--resolve bench.localhost:%s:127.0.0.1' "$1"; }

# Ready, and resellerd's variants made (they are made after the deploy is ready).
for _ in $(seq 100); do
  enc=$(curl -sk $(resolve "$RSD_TLS") -o /dev/null -D - -H 'accept-encoding: br' \
    "https://bench.localhost:$RSD_TLS/a39.js" | tr -d '\r' | awk -F': ' 'tolower($1)=="content-encoding" {print $2}')
  [ "$enc" = br ] && break
  sleep 0.2
done
[ "$enc" = br ] || { echo "resellerd made no brotli variant" >&2; exit 1; }
for port in "$NGINX_TLS" "$CADDY_TLS"; do
  for _ in $(seq 50); do curl -skf $(resolve "$port") -o /dev/null "https://bench.localhost:$port/10k.bin" && break; sleep 0.1; done
  curl -skf --http2 $(resolve "$port") -o /dev/null -w '%{http_version}\n' "https://bench.localhost:$port/index.html" | grep -q '^2$' \
    || { echo "port $port does not speak HTTP/2" >&2; cat "$work/caddy.out" "$work/nginx-error.log" >&2; exit 1; }
done
curl -skf --http2 $(resolve "$RSD_TLS") -o /dev/null -w '%{http_version}\n' "https://bench.localhost:$RSD_TLS/index.html" | grep -q '^2$' \
  || { echo "resellerd does not speak HTTP/2" >&2; exit 1; }

# Bytes on the wire for the page and its assets, fetched as a browser does: one HTTP/2 connection,
# br and gzip accepted (h2load's count: frames with HPACK-compressed headers, and bodies).
wire() {
  urls "$1" >"$work/urls-wire"
  h2load -n 41 -c 1 -m 1 --connect-to="127.0.0.1:$1" -H 'accept-encoding: br, gzip' -i "$work/urls-wire" 2>/dev/null \
    | awk '/^traffic:/ {gsub(/[()]/, "", $3); print $3}'
}
printf 'bytes on the wire per page (the page and 40 assets, one connection): resellerd %s, nginx %s, Caddy %s\n' \
  "$(wire "$RSD_TLS")" "$(wire "$NGINX_TLS")" "$(wire "$CADDY_TLS")"

h2rps() { # $1: port; requests/s of h2load over the page and its assets
  urls "$1" >"$work/urls"
  h2load -D "${DURATION%s}" -c "$CONNECTIONS" -m "$STREAMS" -t "$THREADS" \
    --connect-to="127.0.0.1:$1" -H 'accept-encoding: br, gzip' -i "$work/urls" 2>/dev/null \
    | awk '/^finished in/ {gsub(",", "", $4); print $4}'
}
tlsrps() { # $1: port, $2: path
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -H 'Host: bench.localhost' "https://127.0.0.1:$1$2" \
    | awk '/Requests\/sec/ {print $2}'
}

printf '%-22s %12s %12s %12s %9s %9s   (best of %s rounds of %s)\n' row resellerd nginx Caddy "vs nginx" "vs Caddy" "$ROUNDS" "$DURATION"
row() { # $1: label, then the three best figures
  printf '%-22s %12.0f %12.0f %12.0f %8.2fx %8.2fx\n' "$1" "$2" "$3" "$4" \
    "$(python3 -c "print($2/$3)")" "$(python3 -c "print($2/$4)")"
}
rs=() ns=() cs=()
for _ in $(seq "$ROUNDS"); do
  rs+=("$(h2rps "$RSD_TLS")"); ns+=("$(h2rps "$NGINX_TLS")"); cs+=("$(h2rps "$CADDY_TLS")")
done
row "h2 page + 40 assets" "$(best "${rs[@]}")" "$(best "${ns[@]}")" "$(best "${cs[@]}")"
for path in /10k.bin /1m.bin; do
  rs=() ns=() cs=()
  for _ in $(seq "$ROUNDS"); do
    rs+=("$(tlsrps "$RSD_TLS" "$path")"); ns+=("$(tlsrps "$NGINX_TLS" "$path")"); cs+=("$(tlsrps "$CADDY_TLS" "$path")")
  done
  row "h1 $path" "$(best "${rs[@]}")" "$(best "${ns[@]}")" "$(best "${cs[@]}")"
done
printf 'access lines written: resellerd %s, nginx %s, Caddy %s\n' \
  "$(cat "$work"/resellerd-access.log* 2>/dev/null | wc -l)" "$(wc -l <"$work/nginx-access.log")" "$(wc -l <"$work/caddy-access.log")"
