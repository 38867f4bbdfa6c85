#!/usr/bin/env bash
# Benchmark at scale (run by hand, not a test; about 15 minutes at the defaults): builds USERS
# users (default 1,000,000) in one reseller through POST /api/v1/access_tokens at 64
# connections, then prints what the scale issue asks for, as bounds and ratios:
#   - the create rate per 10-second chunk, and the last chunks against the first;
#   - peak RSS while loading, idle RSS after a restart, restart time (exec -> /healthz 200);
#   - disk per user (the db directory after a restart, divided by users);
#   - GET /users: first page, the `last` page by cursor, a deep page by offset (page=),
#     an ?email= lookup, and the `next` page from the middle of the list;
#   - an online backup under write load: its duration and the slowest write meanwhile,
#     beside the slowest write of the same load without a backup;
#   - the login loop: tokens re-issued for the same LOOP_USERS users for LOOP_SECS seconds,
#     then disk, restart time and the sweep-free size beside the single-issue figures;
#   - many tenants, on a fresh data dir: RESELLERS resellers (default 10,000) with SPREAD users
#     each (default 100), then the operator's reseller list (first and last page), one
#     reseller's users, disk per user, restart and idle RSS.
# ENGINE (redb, the default, or sled) is the embedded engine the data dirs are made with.
# Usage: [USERS=1000000] [LOOP_USERS=100000] [LOOP_SECS=300] [RESELLERS=10000] [SPREAD=100] [ENGINE=redb] bench/scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
users=${USERS:-1000000}
loop_users=${LOOP_USERS:-100000}
loop_secs=${LOOP_SECS:-300}
resellers=${RESELLERS:-10000}
spread=${SPREAD:-100}
engine=${ENGINE:-redb}
conns=64
workers=$(nproc)

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet --bin resellerd

tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; cp "$tmp/server.err" "${TMPDIR:-/tmp}/scale-server.err" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

start() {
  local t0 out
  t0=$(date +%s.%N)
  rm -f "$tmp/server.out" # else the wait below could read the previous server's address
  ./target/release/resellerd serve --data-dir "$tmp/data" --http-addr 127.0.0.1:0 --https-addr 127.0.0.1:0 \
    --workers "$workers" --rate-limit-ip 0 --rate-limit-credential 0 --store-engine "$engine" "$@" > "$tmp/server.out" 2>"$tmp/server.err" &
  pid=$!
  for _ in $(seq 3000); do
    grep -q listening "$tmp/server.out" 2>/dev/null && break
    sleep 0.01
  done
  api=$(sed -nE 's/^resellerd listening http=(http:[^ ]+).*/\1/p' "$tmp/server.out")
  until curl -sf -o /dev/null "$api/healthz"; do sleep 0.01; done
  started=$(echo "$(date +%s.%N) - $t0" | bc -l)
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
rss() { awk -v k="$1:" '$1 == k {print int($2 / 1024)}' "/proc/$pid/status"; }
size() { du -smc $(ls -d "$tmp/data/db" "$tmp/data/store.redb" 2>/dev/null) | tail -1 | cut -f1; }
secs() { curl -s -o /dev/null -w '%{time_total}' -H "Authorization: Bearer ${2:-$key}" "$api$1"; }
link() { # the URL of a Link relation of GET $1 (as $3, default the reseller's key)
  curl -s -D - -o /dev/null -H "Authorization: Bearer ${3:-$key}" "$api$1" |
    tr ',' '\n' | sed -nE "s/.*<https?:\/\/[^/]+([^>]*)>; rel=\"$2\".*/\1/p" | head -1
}
total() { curl -s -D - -o /dev/null -H "Authorization: Bearer $key" "$api/api/v1/users?per_page=1" |
  tr -d '\r' | awk 'tolower($1) == "x-total-count:" {print $2}'; }

start
op=$(cat "$tmp/data/operator-token")
key=$(curl -sf -X POST "$api/api/v1/admin/resellers" -H "Authorization: Bearer $op" \
  -d '{"name":"Scale","email":"ops@scale.test"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"]["key"])')

echo "== creating $users users ($conns connections, $workers workers, default cache)"
rates=()
while [ "$(total)" -lt "$users" ]; do
  r=$(RESELLERD_KEY=$key wrk -t2 -c"$conns" -d10s -s bench/create_token.lua "$api" | awk '/Requests\/sec/ {print $2}')
  rates+=("$r")
  printf '  %8d users, %8.0f creates/s, RSS %d MiB\n' "$(total)" "$r" "$(rss VmRSS)"
done
n=$(total)
peak=$(rss VmHWM)
created_disk=$(size)
created_per_user=$(echo "$created_disk * 1048576 / $n" | bc)
created_n=$n
first=${rates[0]}
tail_n=$(( ${#rates[@]} < 3 ? ${#rates[@]} : 3 ))
tail_avg=$(printf '%s\n' "${rates[@]: -$tail_n}" | awk '{s += $1} END {print s / NR}')

echo "== lists at $n users"
first_page=$(secs "/api/v1/users?per_page=100")
last_url=$(link "/api/v1/users?per_page=100" last)
last_page=$(secs "$last_url")
deep=$((n / 200))
offset_page=$(secs "/api/v1/users?per_page=100&page=$deep")
mid_cursor=$(link "/api/v1/users?per_page=100&page=$deep" next)
mid_page=$(secs "${mid_cursor/page=$((deep + 1))&/}")
email=$(curl -s -H "Authorization: Bearer $key" "$api/api/v1/users?per_page=1&page=$deep" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["email"])')
email_lookup=$(secs "/api/v1/users?email=$email")
get_rps=$(wrk -t2 -c"$conns" -d10s -H "Authorization: Bearer $key" "$api/api/v1/users?per_page=10" | awk '/Requests\/sec/ {print $2}')

echo "== backup under write load"
# The load runs in 5-second rounds from before the backup starts until after it ends, so the
# start and the cut both fall under load; the slowest write is the max over the rounds.
ms() { awk '/Latency/ && !/Distribution/ {v = $4; u = v; gsub(/[0-9.]/, "", u); sub(/[a-z]+$/, "", v)
  f = (u == "us") ? 0.001 : (u == "s") ? 1000 : (u == "m") ? 60000 : 1; if (v * f > m) m = v * f} END {printf "%.1f", m}' "$@"; }
RESELLERD_KEY=$key wrk -t2 -c"$conns" -d20s --latency -s bench/create_token.lua "$api" > "$tmp/plain.txt"
rm -f "$tmp/backup.done"
log_from=$(($(wc -l < "$tmp/server.err") + 1))
( while [ ! -f "$tmp/backup.done" ]; do
    RESELLERD_KEY=$key wrk -t2 -c"$conns" -d5s --latency -s bench/create_token.lua "$api" >> "$tmp/during.txt"
  done ) &
load=$!
sleep 5
# BACKUP_OUT=/dev/null keeps the archive off the data dir's disk (its writes compete with the
# server's fsyncs).
backup_out=${BACKUP_OUT:-$tmp/backup.tar}
read -r backup backup_bytes < <(curl -s -o "$backup_out" -w '%{time_total} %{size_download}\n' \
  -H "Authorization: Bearer $op" "$api/api/v1/admin/backup")
touch "$tmp/backup.done"
backup_mb=$((backup_bytes >> 20))
[ "$backup_out" = /dev/null ] || rm -f "$backup_out"
wait "$load"
max_plain=$(ms "$tmp/plain.txt")
max_during=$(ms "$tmp/during.txt")
# Flushes of 100 ms or more the server logged since the load began (every write in one waited
# that long).
slow_flushes=$(tail -n +"$log_from" "$tmp/server.err" | { grep 'a slow flush' || true; } | python3 -c 'import json,sys
ms=[json.loads(l)["fields"]["ms"] for l in sys.stdin]; print("%d, the slowest %s ms" % (len(ms), max(ms)) if ms else "none")')
cp "$tmp/server.err" "${TMPDIR:-/tmp}/scale-backup-server.err"
held=$(grep 'backup snapshot taken' "$tmp/server.err" | tail -1 |
  python3 -c 'import json,sys; f=json.loads(sys.stdin.read())["fields"]; print("%.1f ms at the start, %.1f ms at the cut" % (f["start_held_ms"], f["cut_held_ms"]))')

stop
start
restart=$started
sleep 2
idle=$(rss VmRSS)
n=$(total)
disk=$(size)
per_user=$(echo "$disk * 1048576 / $n" | bc)

echo "== restart after a kill -9 under write load"
RESELLERD_KEY=$key wrk -t2 -c"$conns" -d10s -s bench/create_token.lua "$api" > /dev/null &
crash_load=$!
sleep 5
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
pid=
wait "$crash_load" || true
start
crash_restart=$started
sleep 2
crash_idle=$(rss VmRSS)
n=$(total)
stop
# Where the file's bytes go (redb: doctor reads its page statistics), and what compact gives back.
space=$(./target/release/resellerd doctor --data-dir "$tmp/data" 2>&1 |
  grep -oE 'file [0-9]+ MiB on disk, pages in use [0-9]+ MiB, keys and values [0-9]+ MiB' || true)
# compact prints "… compacted: BEFORE -> AFTER bytes on disk (…)".
t0=$(date +%s.%N)
compacted=$(./target/release/resellerd compact --data-dir "$tmp/data" |
  grep -oE '[0-9]+ -> [0-9]+ bytes' | awk -v n="$n" '{printf "%d MiB = %d bytes per user", $3 / 1048576, $3 / n}')
compact_secs=$(echo "$(date +%s.%N) - $t0" | bc)
start

if [ "$loop_secs" -gt 0 ]; then
echo "== login loop: tokens re-issued for $loop_users users for ${loop_secs}s"
USERS=$loop_users RESELLERD_KEY=$key wrk -t2 -c"$conns" -d"${loop_secs}s" -s bench/login_loop.lua "$api" > "$tmp/loop.txt"
loop_rps=$(awk '/Requests\/sec/ {print $2}' "$tmp/loop.txt")
loop_peak=$(rss VmHWM)
stop
start
loop_restart=$started
loop_disk=$(size)
sleep 2
loop_idle=$(rss VmRSS)
fi

if [ "$resellers" -gt 0 ]; then
echo "== many tenants: $resellers resellers x $spread users, fresh data dir"
stop
rm -rf "$tmp/data"
start
op=$(cat "$tmp/data/operator-token")
python3 - "$api" "$op" "$resellers" > "$tmp/keys.txt" <<'PY'
import http.client, json, sys, threading, urllib.parse
api, op, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
url = urllib.parse.urlparse(api)
keys, lock, next_i = [], threading.Lock(), [0]
def work():
    conn = http.client.HTTPConnection(url.hostname, url.port)
    while True:
        with lock:
            i = next_i[0]; next_i[0] += 1
        if i >= n:
            return
        body = json.dumps({"name": f"Tenant {i}", "email": f"ops{i}@tenants.test"})
        conn.request("POST", "/api/v1/admin/resellers", body,
                     {"Authorization": f"Bearer {op}", "Content-Type": "application/json"})
        res = conn.getresponse(); data = res.read()
        if res.status != 201:
            sys.exit(f"reseller {i}: {res.status} {data[:200]!r}")
        with lock:
            keys.append(json.loads(data)["key"]["key"])
threads = [threading.Thread(target=work) for _ in range(16)]
for t in threads: t.start()
for t in threads: t.join()
print("\n".join(keys))
PY
made=0
target=$((resellers * spread))
while [ "$made" -lt "$target" ]; do
  RESELLERD_KEYS=$tmp/keys.txt wrk -t2 -c"$conns" -d10s -s bench/create_spread.lua "$api" > "$tmp/spread.txt"
  ok=$(awk '/requests in/ {r = $1} /Non-2xx/ {b = $4} END {print r - b}' "$tmp/spread.txt")
  made=$((made + ok))
  printf '  %8d users, %8.0f creates/s, RSS %d MiB\n' "$made" "$(awk '/Requests\/sec/ {print $2}' "$tmp/spread.txt")" "$(rss VmRSS)"
done
many_peak=$(rss VmHWM)
one=$(head -1 "$tmp/keys.txt")
many_first=$(secs "/api/v1/admin/resellers?per_page=100" "$op")
many_last=$(secs "$(link "/api/v1/admin/resellers?per_page=100" last "$op")" "$op")
many_users=$(secs "/api/v1/users?per_page=100" "$one")
stop
start
many_restart=$started
sleep 2
many_idle=$(rss VmRSS)
many_disk=$(size)
many_per_user=$(echo "$many_disk * 1048576 / $made" | bc)
fi

cat <<EOF

scale figures ($engine, $workers cores, $conns connections, release build, default --cache-mb)
users                                   $n
creates/s first 10 s                    $first
creates/s last 30 s                     $tail_avg  ($(echo "$tail_avg / $first" | bc -l | cut -c1-4)x the first; target >= 0.8x)
peak RSS while creating                 $peak MiB  (target <= 400)
restart (exec -> /healthz 200)          ${restart} s  (target <= 1)
idle RSS after restart                  $idle MiB  (target <= 80)
restart after a kill -9 under load      ${crash_restart} s, idle RSS $crash_idle MiB
database space at $n users            ${space:-(sled: no page statistics)}; after compact ($compact_secs s) $compacted
db on disk after the creates alone      $created_disk MiB at $created_n users = $created_per_user bytes per user (target <= 1536)
db on disk after the backup's load      $disk MiB = $per_user bytes per user (free pages the snapshot kept; compact gives them back)
GET /users first page (100)             ${first_page} s
GET /users last page by cursor          ${last_page} s
GET /users page=$deep by offset          ${offset_page} s  (page= is O(offset))
GET /users next page by cursor there    ${mid_page} s
GET /users?email= (index lookup)        ${email_lookup} s
GET /users?per_page=10 at 64 conns      $get_rps requests/s
online backup                           ${backup} s, $backup_mb MiB
slowest create without / with backup    $max_plain ms / $max_during ms  (target: the backup adds <= 100 ms)
writes held by the backup's gate         $held
slow flushes (>= 100 ms) in that phase   $slow_flushes
login loop ($loop_users users, ${loop_secs}s)     ${loop_rps:-} tokens/s, peak RSS ${loop_peak:-} MiB
after the login loop                    db ${loop_disk:-} MiB, restart ${loop_restart:-} s, idle RSS ${loop_idle:-} MiB
$resellers resellers x $spread users           ${made:-} users made, peak RSS ${many_peak:-} MiB
  GET /admin/resellers first / last page  ${many_first:-} s / ${many_last:-} s
  GET /users (100 of one reseller)        ${many_users:-} s
  restart, idle RSS                       ${many_restart:-} s, ${many_idle:-} MiB
  db on disk after restart                ${many_disk:-} MiB = ${many_per_user:-} bytes per user
EOF
