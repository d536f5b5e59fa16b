#!/usr/bin/env bash
# A 3-node MariaDB Galera cluster on one machine, for tests and benchmarks.
#
#   scripts/galera.sh start DIR [BASE_PORT]   # prints the nodes' URLs, one per line
#   scripts/galera.sh stop DIR
#
# Each node gets its own data directory under DIR (created on the first start), its own SQL,
# group-communication, IST and SST ports on 127.0.0.1 (BASE_PORT, default 31060: node N's SQL
# port is BASE_PORT+N, its others BASE_PORT+10+N, +20+N, +30+N; below the kernel's ephemeral
# range, 32768-60999, so that no outgoing connection holds one of them), a socket, a pid file,
# a temporary directory and an error log. The first node bootstraps the cluster; the others
# join once it answers SQL, and `start` returns when the cluster has 3 members. Root connects
# over TCP without a password, as the tests' MASIF_TEST_MYSQL_URL expects. The nodes run as the
# `mysql` user (rsync's state transfer drops to it), so DIR must be reachable by it. Needs
# mariadb-server (galera-4) and rsync.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR [BASE_PORT]" >&2; exit 2; }
log() { printf '== galera: %s\n' "$*" >&2; }

[ $# -ge 2 ] || usage
command=$1
dir=$(realpath -m "$2")
base=${3:-31060}
provider=/usr/lib/galera/libgalera_smm.so
nodes=(1 2 3)
[[ $base =~ ^[0-9]+$ ]] && [ "$base" -ge 1024 ] && [ "$base" -le 65400 ] || usage

sql_port() { echo $((base + $1)); }
gcomm_port() { echo $((base + 10 + $1)); }
ist_port() { echo $((base + 20 + $1)); }
sst_port() { echo $((base + 30 + $1)); }
node_dir() { echo "$dir/node$1"; }

answers() {
  mariadb --no-defaults --protocol=tcp -h 127.0.0.1 -P "$(sql_port "$1")" -uroot \
    -N -e "$2" 2>/dev/null
}

wait_for() { # WHAT SECONDS COMMAND...
  local what=$1 seconds=$2
  shift 2
  for _ in $(seq 1 $((seconds * 4))); do
    if "$@"; then return 0; fi
    sleep 0.25
  done
  log "timed out waiting for $what"
  return 1
}

cluster_size_is() { [ "$(answers "$1" "SHOW STATUS LIKE 'wsrep_cluster_size'" | cut -f2)" = "$2" ]; }
sql_up() { answers "$1" "SELECT 1" >/dev/null; }

install_system_tables() { # NODE_DIR
  mariadb-install-db --no-defaults --datadir="$1/data" --tmpdir="$1/tmp" --user=mysql \
    --auth-root-authentication-method=normal >"$1/install.log" 2>&1
}

start_node() { # N [--wsrep-new-cluster]
  local n=$1 d
  d=$(node_dir "$n")
  shift
  local members=()
  for m in "${nodes[@]}"; do members+=("127.0.0.1:$(gcomm_port "$m")"); done
  local cluster
  cluster=$(IFS=,; echo "${members[*]}")
  # Each node keeps its temporary files in its own directory, not in the machine's /tmp, which
  # other servers and tests share (a bootstrap once failed in CI when its temporary table in
  # /tmp vanished under it).
  mkdir -p "$d/tmp"
  chown mysql:mysql "$d/tmp"
  if [ ! -d "$d/data/mysql" ]; then
    install_system_tables "$d" || {
      log "node $n: installing the system tables failed; once more from an empty directory"
      cat "$d/install.log" >&2
      rm -rf "$d/data"
      install_system_tables "$d" || { cat "$d/install.log" >&2; return 1; }
    }
  fi
  chown -R mysql:mysql "$d"
  # Galera refuses to bootstrap from a node that was not the last to leave, unless told.
  [ $# -eq 0 ] || sed -i 's/^safe_to_bootstrap: 0/safe_to_bootstrap: 1/' "$d/data/grastate.dat" 2>/dev/null || true
  mariadbd --no-defaults --user=mysql --datadir="$d/data" \
    --bind-address=127.0.0.1 --port="$(sql_port "$n")" \
    --socket="$d/mysqld.sock" --pid-file="$d/mysqld.pid" --log-error="$d/error.log" \
    --tmpdir="$d/tmp" \
    --skip-name-resolve \
    --wsrep-on=ON --wsrep-provider="$provider" \
    --wsrep-cluster-name=masif-test --wsrep-cluster-address="gcomm://$cluster" \
    --wsrep-node-name="node$n" --wsrep-node-address="127.0.0.1:$(gcomm_port "$n")" \
    --wsrep-provider-options="gmcast.listen_addr=tcp://127.0.0.1:$(gcomm_port "$n");ist.recv_addr=127.0.0.1:$(ist_port "$n")" \
    --wsrep-sst-method=rsync --wsrep-sst-receive-address="127.0.0.1:$(sst_port "$n")" \
    --binlog-format=ROW --innodb-autoinc-lock-mode=2 \
    "$@" >/dev/null 2>&1 &
  wait_for "node $n to answer SQL" 120 sql_up "$n" || { tail -n 30 "$d/error.log" >&2; return 1; }
}

stop_node() {
  local pidfile pid
  pidfile="$(node_dir "$1")/mysqld.pid"
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 240); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.25
  done
  log "node $1 did not stop in 60 s; killing it"
  kill -9 "$pid" 2>/dev/null || true
}

case $command in
  start)
    [ -x "$provider" ] || [ -f "$provider" ] || { log "$provider missing: install mariadb-server (galera-4)"; exit 1; }
    command -v rsync >/dev/null || { log "rsync missing"; exit 1; }
    for n in "${nodes[@]}"; do
      if sql_up "$n"; then log "node $n already answers on port $(sql_port "$n")"; exit 1; fi
    done
    mkdir -p "$dir"
    chmod 0755 "$dir"
    log "bootstrapping node 1 in $dir"
    start_node 1 --wsrep-new-cluster
    for n in 2 3; do
      log "node $n joins"
      start_node "$n"
    done
    wait_for "a cluster of 3" 120 cluster_size_is 1 3
    log "cluster of 3 up"
    for n in "${nodes[@]}"; do echo "mysql://root@127.0.0.1:$(sql_port "$n")"; done
    ;;
  stop)
    # The last to stop is node 1, which is then safe to bootstrap from at the next start.
    for n in 3 2 1; do stop_node "$n"; done
    log "stopped"
    ;;
  *) usage ;;
esac
