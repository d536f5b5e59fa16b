#!/usr/bin/env bash
# Runs every check and test of the project on this machine, setting up what they need first:
# Debian packages (apt-get), a reachable MariaDB (the local one, or a throwaway one started
# here), a 3-node Galera cluster (scripts/galera.sh, stopped at the end); then checks the links
# between the Markdown files and runs cargo fmt, clippy and the whole test suite. The README's
# test command.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '== %s\n' "$*" >&2; }

# What to undo when the script ends, however it ends: one trap runs them all, last first.
cleanups=()
run_cleanups() {
  for ((i = ${#cleanups[@]} - 1; i >= 0; i--)); do eval "${cleanups[i]}" || true; done
}
trap run_cleanups EXIT

# --- Debian packages the tests use -------------------------------------------------------
# (apt sandboxes need only apt and dpkg: their repositories are written in Rust)
# dpkg-dev: dpkg-shlibdeps for the Debian packages the roll-out checks build;
# openssl, easy-rsa: certificate fixtures; curl: a client with its default protocol choice; chromium, chromium-driver: UI browser tests;
# puppet, puppet-lint, ruby-rspec-puppet, ansible, ansible-lint: roll-out code checks;
# python3, python3-venv: schemathesis (from PyPI) against the API's OpenAPI document;
# icinga2-bin, icinga2-common: icinga2 daemon -C of the shipped CheckCommands;
# tzdata: the IANA time zones of maintenance windows.
PACKAGES=(dpkg-dev openssl easy-rsa curl chromium chromium-driver
          puppet puppet-lint ruby-rspec-puppet ansible ansible-lint systemd
          python3 python3-venv icinga2-bin icinga2-common tzdata)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- MariaDB -----------------------------------------------------------------------------
# Tests create their own uniquely named databases through MASIF_TEST_MYSQL_URL and drop them.
mysql_ok() { mariadb --protocol=tcp -h "$1" -P "$2" -uroot -e 'SELECT 1' >/dev/null 2>&1; }
if [ -z "${MASIF_TEST_MYSQL_URL:-}" ]; then
  if command -v mariadb >/dev/null && mysql_ok 127.0.0.1 3306; then
    export MASIF_TEST_MYSQL_URL="mysql://root@127.0.0.1:3306"
  else
    if ! command -v mariadbd >/dev/null; then
      log "installing MariaDB server"
      SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends mariadb-server mariadb-client >/dev/null
    fi
    if mysql_ok 127.0.0.1 3306; then
      export MASIF_TEST_MYSQL_URL="mysql://root@127.0.0.1:3306"
    else
      # A throwaway server of our own on another port, removed when this script ends.
      dir=$(mktemp -d /tmp/masif-mariadb.XXXXXX)
      port=33069
      log "starting a throwaway MariaDB in $dir on port $port"
      mariadb-install-db --no-defaults --datadir="$dir/data" --auth-root-authentication-method=normal --user="$(id -un)" >/dev/null
      mariadbd --no-defaults --datadir="$dir/data" --socket="$dir/sock" --port=$port \
        --bind-address=127.0.0.1 --user="$(id -un)" >"$dir/log" 2>&1 &
      dbpid=$!
      cleanups+=('kill $dbpid 2>/dev/null; wait $dbpid 2>/dev/null; rm -rf "$dir"')
      for _ in $(seq 1 60); do mysql_ok 127.0.0.1 $port && break; sleep 0.5; done
      mysql_ok 127.0.0.1 $port || { cat "$dir/log" >&2; log "MariaDB did not start"; exit 1; }
      export MASIF_TEST_MYSQL_URL="mysql://root@127.0.0.1:$port"
    fi
  fi
fi
log "MariaDB for tests: $MASIF_TEST_MYSQL_URL"

# --- A 3-node Galera cluster -------------------------------------------------------------
# The Galera tests (crates/masif/tests/galera_*.rs) create their databases on it through
# MASIF_TEST_GALERA_URLS; tests that kill a node start clusters of their own. Needs root (the
# nodes run as the mysql user).
if [ -z "${MASIF_TEST_GALERA_URLS:-}" ]; then
  galera_missing=()
  for p in mariadb-server galera-4 rsync; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || galera_missing+=("$p")
  done
  if ((${#galera_missing[@]})); then
    log "installing for Galera: ${galera_missing[*]}"
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${galera_missing[@]}" >/dev/null
  fi
  galera_dir=$(mktemp -d /tmp/masif-galera.XXXXXX)
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  cleanups+=('$SUDO scripts/galera.sh stop "$galera_dir"; $SUDO rm -rf "$galera_dir"')
  log "starting a 3-node Galera cluster in $galera_dir"
  galera_urls=$($SUDO scripts/galera.sh start "$galera_dir" "${MASIF_GALERA_BASE_PORT:-31060}")
  MASIF_TEST_GALERA_URLS=$(echo "$galera_urls" | paste -sd, -)
  export MASIF_TEST_GALERA_URLS
fi
log "Galera cluster for tests: $MASIF_TEST_GALERA_URLS"

# --- Documentation links -----------------------------------------------------------------
log "relative links in the Markdown files"
scripts/check-links.sh

# --- Rust checks and tests ---------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
log "the API against its OpenAPI document (schemathesis)"
scripts/test-api-schema.sh
if [ -x scripts/test-rollout.sh ]; then
  log "roll-out checks"
  scripts/test-rollout.sh
fi
log "all tests passed"
