#!/usr/bin/env bash
# Checks the UI's JSON API against its OpenAPI document with schemathesis (from PyPI, pinned,
# in a virtualenv under target/): a UI over a seeded SQLite store (the api-fixture example) is
# started on a free loopback port, and schemathesis runs every check on every operation with a
# bounded number of examples. Called by scripts/test-all.sh after the Rust tests.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
EXAMPLES=${API_SCHEMA_EXAMPLES:-40}
root=$(pwd)
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target="$root/$target" ;; esac
venv="$target/schemathesis-$SCHEMATHESIS_VERSION"
log() { printf '== %s\n' "$*" >&2; }

if [ ! -x "$venv/bin/schemathesis" ]; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build --quiet --locked -p masif-ui --example api-fixture
work=$(mktemp -d /tmp/masif-api-schema.XXXXXX)
token=$(openssl rand -hex 32)
# The fixture serves until its stdin closes: keep a pipe open on it, close it to stop.
mkfifo "$work/stdin"
"$target/debug/examples/api-fixture" "$work" "$token" <"$work/stdin" >"$work/out" 2>"$work/log" &
fixture=$!
exec 3>"$work/stdin"
cleanup() { exec 3>&-; wait "$fixture" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 1 100); do grep -q '^URL ' "$work/out" && break; sleep 0.1; done
url=$(sed -n 's/^URL //p' "$work/out")
[ -n "$url" ] || { cat "$work/log" >&2; log "the API fixture did not start"; exit 1; }
log "schemathesis against ${url}api/v1/openapi.json ($EXAMPLES examples per operation)"
# From the temporary directory: schemathesis keeps its cache (.schemathesis/) in the current one.
cd "$work"
"$venv/bin/schemathesis" --config-file "$root/scripts/schemathesis.toml" run "${url}api/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --max-examples "$EXAMPLES" \
  --generation-deterministic \
  --no-color
