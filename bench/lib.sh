# Shared by the bench scripts (sourced, not run): the tools they need, the server with a reseller,
# a user and a site deployed through the API, a reseller with 50 users, and the requests/s of a wrk
# run. The server functions expect `work` (a temp dir), `pids` (an array the caller kills on
# exit), RSD_PORT and WORKERS.

# Installs whichever of the named commands is missing (Debian packages of the same names).
bench_tools() {
  local need_apt=() tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || need_apt+=("$tool")
  done
  if [ ${#need_apt[@]} -gt 0 ]; then
    local sudo=sudo
    [ "$(id -u)" = 0 ] && sudo=""
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
}

# Starts the release build on RSD_PORT with extra flags ("$@"), access lines at `warn`, and
# waits until it listens; sets `api` and `key` (a new reseller's).
bench_resellerd() {
  RUST_LOG=${RUST_LOG:-warn} ./target/release/resellerd serve --data-dir "$work/data" \
    --http-addr "127.0.0.1:$RSD_PORT" --https-addr "127.0.0.1:${RSD_TLS:-0}" --workers "$WORKERS" "$@" \
    >"$work/resellerd.out" 2>"$work/resellerd.err" &
  pids+=($!)
  for _ in $(seq 50); do [ -s "$work/data/operator-token" ] && grep -q listening "$work/resellerd.out" && break; sleep 0.1; done
  api=http://127.0.0.1:$RSD_PORT/api/v1
  local op
  op=$(cat "$work/data/operator-token")
  key=$(curl -sS --fail-with-body -H "Authorization: Bearer $op" -H 'content-type: application/json' \
    -d '{"name":"Bench","email":"bench@example.test"}' "$api/admin/resellers" | bench_json "['key']['key']")
}

bench_json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# A new reseller with 50 users on the server at $1 (its data dir $2); prints the reseller's key.
bench_seed() {
  local api=$1 key i
  key=$(curl -sf -X POST "$api/api/v1/admin/resellers" -H "Authorization: Bearer $(cat "$2/operator-token")" \
    -d '{"name":"Bench","email":"ops@bench.test"}' | bench_json "['key']['key']")
  for i in $(seq 50); do
    curl -sf -o /dev/null -X POST "$api/api/v1/access_tokens" -H "Authorization: Bearer $key" \
      -d "{\"user\":{\"email\":\"seed$i@bench.test\"}}"
  done
  echo "$key"
}

# Deploys the named files of directory $1 as site `bench` of a new user, the digest way.
bench_site() {
  local dir=$1 tok files deploy f
  shift
  tok=$(curl -sS --fail-with-body -H "Authorization: Bearer $key" -H 'content-type: application/json' \
    -d '{"user":{"email":"user@example.test"}}' "$api/access_tokens" | bench_json "['access_token']")
  curl -sS --fail-with-body -H "Authorization: Bearer $tok" -H 'content-type: application/json' \
    -d '{"name":"bench"}' "$api/sites" >/dev/null
  files=$(cd "$dir" && for f in "$@"; do printf '"%s":"%s",' "$f" "$(sha1sum "$f" | cut -d' ' -f1)"; done)
  deploy=$(curl -sS --fail-with-body -H "Authorization: Bearer $tok" -H 'content-type: application/json' \
    -d "{\"files\":{${files%,}}}" "$api/sites/bench/deploys" | bench_json "['id']")
  for f in "$@"; do
    curl -sS --fail-with-body -X PUT -H "Authorization: Bearer $tok" -H 'content-type: application/octet-stream' \
      --data-binary "@$dir/$f" "$api/deploys/$deploy/files/$f" >/dev/null
  done
}

# nginx's temp paths, all in the work dir (for an `http {}` block).
bench_nginx_temp() {
  local kind
  for kind in client_body proxy fastcgi uwsgi scgi; do printf '  %s_temp_path %s;\n' "$kind" "$work/nginx-tmp"; done
}

rps() { wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "$@" | awk '/Requests\/sec/ {print $2}'; }
best() { python3 -c "import sys; print(max(float(x) for x in sys.argv[1:]))" "$@"; }
