#!/usr/bin/env bash
# Many sites on one VM (run by hand, not a test): deploys SITES small sites (default 100,000; 100
# clients of one reseller, a zip of two files each) through the API at CONCURRENCY connections,
# then measures:
#   - the deploy rate per 10,000 sites, and the last block against the first;
#   - RSS after the deploys, after a restart (idle), and after a first request to FIRST sites;
#   - restart time (exec -> /readyz 200);
#   - the first request to a site not served since the restart (p50, p99, max over FIRST sites,
#     sequential), and a second request to the same sites;
#   - disk per site (database and blobs);
#   - CERTS certificates (default 10,000; ECDSA P-256, stored in the data dir as ACME-issued ones
#     are): restart time and idle RSS with them against without, and a TLS handshake by SNI.
# Usage: [SITES=100000] [FIRST=5000] [CERTS=10000] [CONCURRENCY=32] bench/sites.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SITES=${SITES:-100000}
FIRST=${FIRST:-5000}
CERTS=${CERTS:-10000}
CONCURRENCY=${CONCURRENCY:-32}
WORKERS=${WORKERS:-2}
PORT=${PORT:-18480}

cargo build --release --quiet --bin resellerd --example seed_certs
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# Starts the server (rate limits off: one client deploys everything) and waits for /readyz;
# leaves the time from exec to ready in $took.
start() {
  local t0
  t0=$(date +%s.%N)
  RUST_LOG=warn ./target/release/resellerd serve --data-dir "$work/data" --http-addr "127.0.0.1:$PORT" \
    --https-addr "127.0.0.1:$((PORT + 1))" --workers "$WORKERS" --rate-limit-ip 0 --rate-limit-credential 0 \
    >"$work/out" 2>"$work/err" &
  pid=$!
  until curl -sf -o /dev/null "http://127.0.0.1:$PORT/readyz"; do sleep 0.02; done
  until [ -s "$work/data/operator-token" ] && grep -q listening "$work/out"; do sleep 0.02; done
  took=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.2f}')")
}
rss() { awk '/VmRSS/ {printf "%.0f MiB", $2/1024}' "/proc/$pid/status"; }
stop() { kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

start
python3 bench/sites.py deploy "http://127.0.0.1:$PORT" "$work/data/operator-token" "$SITES" "$CONCURRENCY" "$work/names"
echo "RSS after the deploys: $(rss)"
stop
start
echo "restart: ${took} s, idle RSS $(rss)"
python3 bench/sites.py first "http://127.0.0.1:$PORT" "$work/names" "$FIRST"
echo "RSS after $FIRST first requests: $(rss)"
db=$(du -sk "$work/data" --exclude=blobs | cut -f1)
blobs=$(du -sk "$work/data/blobs" | cut -f1)
python3 -c "print(f'disk: {$db/1024:.0f} MiB of database ({$db*1024/$SITES:.0f} B per site), {$blobs/1024:.0f} MiB of blobs ({$blobs*1024/$SITES:.0f} B per site)')"
stop
./target/release/examples/seed_certs "$work/data" "$CERTS"
start
echo "with $CERTS certificates: restart ${took} s, idle RSS $(rss)"
python3 -c "
import socket, ssl, time
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ts = []
for i in range(0, $CERTS, max(1, $CERTS // 200)):
    name = f'd{i}.certs.bench.test'
    t = time.perf_counter()
    with socket.create_connection(('127.0.0.1', $((PORT + 1)))) as s:
        with ctx.wrap_socket(s, server_hostname=name) as tls:
            cn = tls.getpeercert(binary_form=True)
    ts.append((time.perf_counter() - t) * 1000)
    assert name.encode() in cn, name
ts.sort()
print(f'TLS handshake by SNI to {len(ts)} of them: p50 {ts[len(ts)//2]:.2f} ms, max {ts[-1]:.2f} ms, each with its own certificate')
"
