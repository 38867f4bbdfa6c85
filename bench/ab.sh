#!/usr/bin/env bash
# Benchmark (run by hand, not a test): two resellerd binaries side by side, e.g. the build before a
# change and after it. Both servers run at once with 50 users each; every round runs wrk on
# GET /api/v1/users?per_page=10 and on durable POST /api/v1/access_tokens against each in turn, so
# both see the same ups and downs of the machine. Prints requests/s and the server's CPU time
# (user + system, from /proc) per request wrk counted: the steadier figure on 2 shared cores.
# The rate limits are off, unless LIMITED=1: then they are on, set too high to refuse anything, so
# their cost shows.
# Usage: [LIMITED=1] bench/ab.sh BINARY_A BINARY_B [rounds=3] [seconds=8] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
a=$(realpath "${1:?binary A}") b=$(realpath "${2:?binary B}")
rounds=${3:-3} secs=${4:-8} conns=${5:-64}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
limits="--rate-limit-ip 0 --rate-limit-credential 0"
[ "${LIMITED:-0}" = 1 ] && limits="--rate-limit-ip 100000000 --rate-limit-credential 100000000"
tmp=$(mktemp -d)
# The servers start inside a process substitution, out of this shell's jobs: stopped by their pids.
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"' EXIT

# start NAME BINARY: prints "URL KEY PID" of a server with a reseller and 50 users.
start() {
  "$2" serve --data-dir "$tmp/$1" --http-addr 127.0.0.1:0 --https-addr 127.0.0.1:0 --workers "$(nproc)" \
    $limits > "$tmp/$1.out" 2>/dev/null &
  local pid=$!
  for _ in $(seq 100); do grep -q listening "$tmp/$1.out" 2>/dev/null && break; sleep 0.1; done
  local api
  api=$(sed -nE 's/^resellerd listening http=(http:[^ ]+).*/\1/p' "$tmp/$1.out")
  echo "$api $(bench_seed "$api" "$tmp/$1") $pid"
}
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# run PID WRK-ARGS...: "requests/s and µs of server CPU per request"
run() {
  local pid=$1 c0 c1 out
  shift
  c0=$(cpu "$pid")
  out=$(wrk -t2 -c"$conns" -d"${secs}s" "$@")
  c1=$(cpu "$pid")
  echo "$out" | awk -v ticks=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" '
    /requests in/ {n = $1} /Requests\/sec/ {r = $2}
    END {printf "%8.0f/s %5.1f us", r, ticks * 1e6 / hz / n}'
}
read -r api_a key_a pid_a < <(start a "$a")
pids+=("$pid_a")
read -r api_b key_b pid_b < <(start b "$b")
pids+=("$pid_b")
echo "A = $a"
echo "B = $b"
for r in $(seq "$rounds"); do
  ga=$(run "$pid_a" -H "Authorization: Bearer $key_a" "$api_a/api/v1/users?per_page=10")
  gb=$(run "$pid_b" -H "Authorization: Bearer $key_b" "$api_b/api/v1/users?per_page=10")
  pa=$(RESELLERD_KEY=$key_a run "$pid_a" -s bench/create_token.lua "$api_a")
  pb=$(RESELLERD_KEY=$key_b run "$pid_b" -s bench/create_token.lua "$api_b")
  echo "round $r: GET A $ga, B $gb | POST A $pa, B $pb"
done
