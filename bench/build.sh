#!/usr/bin/env bash
# What a build from git costs: the site of tests/fixtures/npm-site (`npm ci` of one small
# dependency from the registry, `npm run build`) built by resellerd (clone, sandbox, proxy,
# deploy) against the same commands run directly on the host, cold (empty npm cache) and warm.
# Wall time of ROUNDS builds each; the git server is `git http-backend` behind bench/git-server.mjs.
# Run by hand from the repository root: bash bench/build.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
ROUNDS=${ROUNDS:-5}
RSD_PORT=${RSD_PORT:-18480}
WORKERS=${WORKERS:-2}
work=$(mktemp -d)
chmod 711 "$work"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
cargo build --release --locked --bin resellerd >/dev/null 2>&1

# The repository, served over smart HTTP.
mkdir -p "$work/git/work"
cp tests/fixtures/npm-site/* "$work/git/work/"
(cd "$work/git/work" && git init -q -b main && git add -A && git -c user.name=b -c user.email=b@b.test commit -qm site)
git clone -q --bare "$work/git/work" "$work/git/repos/site.git"
node bench/git-server.mjs "$work/git/repos" 18481 &
pids+=($!)
sleep 1
repo=http://127.0.0.1:18481/site.git

# Directly on the host: a fresh clone, then the commands, with an empty or a filled npm cache.
host_build() {
  local dir=$work/host-$1-$2
  rm -rf "$dir"
  git clone -q --depth 1 "$repo" "$dir"
  (cd "$dir" && npm_config_cache=$work/npm-cache-$1 npm ci --no-audit --no-fund >/dev/null && npm run build >/dev/null)
}
time_ms() { local s; s=$(date +%s%N); "$@"; echo $((($(date +%s%N) - s) / 1000000)); }

echo "host, cold:"
for r in $(seq "$ROUNDS"); do time_ms host_build "cold$r" x; done
echo "host, warm:"
host_build warm prime
for r in $(seq "$ROUNDS"); do time_ms host_build warm "$r"; done

# Through resellerd: each build is queued, cloned, run in the sandbox and deployed.
bench_resellerd --allow-private-targets --build-dir "$work/builds"
tok=$(curl -sS --fail-with-body -H "Authorization: Bearer $key" -d '{"user":{"email":"u@b.test"}}' \
  "$api/access_tokens" | bench_json "['access_token']")
curl -sS --fail-with-body -H "Authorization: Bearer $tok" -d '{"name":"built"}' "$api/sites" >/dev/null
curl -sS --fail-with-body -X PATCH -H "Authorization: Bearer $tok" \
  -d "{\"repo\":{\"repo_url\":\"$repo\",\"cmd\":\"npm ci && npm run build\",\"dir\":\"dist\"}}" \
  "$api/sites/built" >/dev/null
rsd_build() {
  local id state
  id=$(curl -sS --fail-with-body -X POST -H "Authorization: Bearer $tok" "$api/sites/built/builds?clear_cache=$1" |
    bench_json "['id']")
  while :; do
    state=$(curl -sS -H "Authorization: Bearer $tok" "$api/builds/$id" | bench_json "['state']")
    case $state in done) return ;; error | canceled) echo "build $state" >&2; exit 1 ;; esac
    sleep 0.05
  done
}
echo "resellerd, cold (clear_cache=true):"
for _ in $(seq "$ROUNDS"); do time_ms rsd_build true; done
echo "resellerd, warm:"
rsd_build false
for _ in $(seq "$ROUNDS"); do time_ms rsd_build false; done
