#!/usr/bin/env bash
# Roll-out checks (called by scripts/test-all.sh after the Rust tests):
#   1. the copies of the systemd units, sysusers files and Icinga 2 CheckCommands in the Puppet
#      module and the Ansible roles are identical to packaging/; the CheckCommands load in a
#      real Icinga 2 (icinga2 daemon -C), where one is installed;
#   2. Puppet: parser validate, puppet-lint, rspec-puppet, and `puppet apply` of the agent
#      class into a scratch root (noop with diff, real, then again with no change);
#   3. Ansible: --syntax-check, ansible-lint, and the agent role run for real with
#      ansible_connection=local into scratch roots, twice, the second run changing nothing;
#   4. Puppet and Ansible write the same agent.yml for the same settings, and
#      `masif-agent --check-config` accepts it (real certificates made with openssl, a
#      Puppet ssldir layout for discovery);
#   5. the Debian packages: cargo build --release of the five binaries (masif without its
#      demo), packaging/build-debs.sh,
#      install into a scratch root with dpkg --root (maintainer scripts included), the files
#      where the table in docs/installation.md ("Files installed by the packages") says,
#      the packaged check_masifupgrader_agent link runs as the plugin, the packaged masif
#      has no demo and its check-fleet says UNKNOWN without a UI, units accepted by
#      systemd-analyze, remove and purge.
# Nothing outside a temporary directory is written (Puppet, Ansible and dpkg state included).
#
# MASIF_ROLLOUT_BIN_DIR=DIR uses the binaries in DIR instead of building release binaries
# (for a quick run while developing; CI leaves it unset).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

log() { printf '== rollout [%ss]: %s\n' "$SECONDS" "$*" >&2; }
fail() { printf 'rollout FAILED: %s\n' "$*" >&2; exit 1; }

# --- 0. the binaries --------------------------------------------------------------------------
if [ -n "${MASIF_ROLLOUT_BIN_DIR:-}" ]; then
  bin_dir=$MASIF_ROLLOUT_BIN_DIR
else
  log "cargo build --release of the five binaries"
  cargo build --release --locked -p masif-agent -p masif-master -p masif-ui -p masif-pki --bins >&2
  # The packaged masif is the command line alone, without the demo and its fixtures.
  cargo build --release --locked -p masif --no-default-features --bins >&2
  bin_dir=$repo/target/release
fi
for b in masif-agent masif-master masif-ui masif-pki masif; do
  [ -x "$bin_dir/$b" ] || fail "$bin_dir/$b is missing"
done
agent_bin=$bin_dir/masif-agent

# File owners in the scratch roots and dpkg --root need root; the build above stays with
# the invoking user.
if [ "$(id -u)" != 0 ]; then
  sudo -n true 2>/dev/null ||
    fail "needs root or password-less sudo (dpkg --root, file owners in scratch roots)"
  log "continuing as root (sudo)"
  exec sudo -n --preserve-env=PATH MASIF_ROLLOUT_BIN_DIR="$bin_dir" "$0"
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/masif-rollout.XXXXXX")
trap 'rm -rf "$T"' EXIT
chmod 0755 "$T"

# --- 1. one copy of every unit file ------------------------------------------------------
log "unit and sysusers copies match packaging/"
for f in masif-upgrader-agent.service masif-upgrader-master.service masif-upgrader-ui.service; do
  for copy in puppet-module/files ansible/roles/masif_upgrader_common/files; do
    cmp -s "packaging/systemd/$f" "$copy/$f" ||
      fail "$copy/$f differs from packaging/systemd/$f: copy it over"
  done
done
for f in masif-master.conf masif-ui.conf; do
  for copy in puppet-module/files ansible/roles/masif_upgrader_common/files; do
    cmp -s "packaging/sysusers/$f" "$copy/$f" ||
      fail "$copy/$f differs from packaging/sysusers/$f: copy it over"
  done
done
icinga_conf=packaging/icinga2/masif-upgrader.conf
for copy in puppet-module/files ansible/roles/masif_upgrader_agent/files; do
  cmp -s "$icinga_conf" "$copy/icinga2/masif-upgrader.conf" ||
    fail "$copy/icinga2/masif-upgrader.conf differs from $icinga_conf: copy it over"
done

if command -v icinga2 >/dev/null; then
  log "the Icinga 2 CheckCommands load in icinga2 daemon -C, with services using each"
  mkdir -p "$T/icinga2"
  cp "$icinga_conf" "$T/icinga2/"
  cat >"$T/icinga2/icinga2.conf" <<'EOF'
const PluginDir = "/usr/lib/nagios/plugins"
include <itl>
include <plugins>
include "masif-upgrader.conf"
object Host "agent01" { check_command = "dummy" }
object Service "masif-agent" {
  host_name = "agent01"
  check_command = "masif-agent"
  vars.masif_agent_report_warn = "3600"
  vars.masif_agent_load = [ "error-15m-warn=0", "query-1m-crit=@~:42" ]
}
object Service "masifupgrader_agent" {
  host_name = "agent01"
  check_command = "masifupgrader_agent"
  vars.masifupgrader_agent_restsock = "/run/masif-upgrader-agent/agent.sock"
  vars.masifupgrader_agent_query_1m_warn = "@~:42"
}
object Service "masif-fleet" { host_name = "agent01"; check_command = "masif-fleet"; vars.masif_fleet_url = "https://ui" }
object Service "masif-pki" { host_name = "agent01"; check_command = "masif-pki"; vars.masif_pki_role = "agent" }
EOF
  chmod -R a+rX "$T/icinga2" # icinga2 reads it as its own user
  icinga2 daemon -C -c "$T/icinga2/icinga2.conf" -x warning >"$T/icinga2.out" 2>&1 ||
    { cat "$T/icinga2.out" >&2; fail "icinga2 daemon -C rejected $icinga_conf"; }
else
  log "SKIPPED icinga2 daemon -C of the CheckCommands: icinga2 is not installed"
fi

# --- test certificates: a CA, an agent certificate, a Puppet ssldir ----------------------
# (openssl, EC keys: fast). The agent's name is its certificate CN.
pki=$T/pki
mkdir -p "$pki"
(
  cd "$pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -keyout ca.key -out ca.crt -subj "/CN=Masif rollout test CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout agent.key -out agent.csr -subj "/CN=agent01.example.com"
  printf 'extendedKeyUsage=clientAuth\nsubjectAltName=DNS:agent01.example.com\n' >agent.ext
  openssl x509 -req -in agent.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
    -extfile agent.ext -out agent.crt
  chmod 0600 agent.key
  ssl=puppet-root/var/lib/puppet/ssl
  mkdir -p "$ssl/certs" "$ssl/private_keys"
  cp agent.crt "$ssl/certs/agent01.example.com.pem"
  cp agent.key "$ssl/private_keys/agent01.example.com.pem"
  cp ca.crt "$ssl/certs/ca.pem"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout master.key -out master.csr -subj "/CN=masif.example.com"
  printf 'extendedKeyUsage=serverAuth\nsubjectAltName=DNS:masif.example.com\n' >master.ext
  openssl x509 -req -in master.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
    -extfile master.ext -out master.crt
  chmod 0640 master.key
) 2>"$T/openssl.log" || { cat "$T/openssl.log" >&2; fail "making test certificates"; }

# The agent settings both tools write; values that need quoting on purpose. One master for
# the hosts with certificate files, two (master.hosts) for the ones discovering Puppet's.
master_host=masif.example.com:8150
master_host2=masif2.example.com:8150
apt_opt1=-o
apt_opt2='Acquire::http::Proxy="http://proxy.example.com:3128/"'
apt_config="$T/apt: sandbox.conf"

# --- 2. Puppet ---------------------------------------------------------------------------
puppet_dirs=(--vardir "$T/puppet/var" --confdir "$T/puppet/conf" --codedir "$T/puppet/code"
  --publicdir "$T/puppet/public" --ssldir "$T/puppet/ssl"
  --logdir "$T/puppet/log" --rundir "$T/puppet/run" --color=false)
log "puppet parser validate"
puppet parser validate "${puppet_dirs[@]}" puppet-module/manifests/*.pp puppet-module/types/*.pp \
  puppet-module/functions/*.pp puppet-module/examples/*.pp
for f in puppet-module/templates/*.epp; do
  puppet epp validate "${puppet_dirs[@]}" "$f"
done
log "puppet-lint"
(cd puppet-module && puppet-lint --relative --fail-on-warnings manifests types functions examples)
log "rspec-puppet"
(cd puppet-module && HOME="$T/home" rspec --format progress spec)

log "puppet apply of masif_upgrader::agent into a scratch root"
proot=$T/puppet-root
mkdir -p "$proot/etc/systemd/system" "$proot/usr/local/bin" "$T/puppet/modules"
ln -s "$repo/puppet-module" "$T/puppet/modules/masif_upgrader"
puppet_apply() { # MANIFEST [extra puppet args]: puppet apply, exit code 0 or 2 (changes)
  local rc=0
  puppet apply "${puppet_dirs[@]}" --modulepath "$T/puppet/modules" --detailed-exitcodes \
    "${@:2}" "$1" >"$T/puppet.out" 2>&1 || rc=$?
  # Facter complains about /proc/1/environ in containers; that is not ours to fix.
  grep -v 'Facter: Permission denied' "$T/puppet.out" >&2 || true
  return "$rc"
}
manifest() { # TLS_HASH ICINGA2_COMMANDS MASTER_PARAMETERS
  cat <<EOF
class { 'masif_upgrader': root => '$proot' }
class { 'masif_upgrader::agent':
  $3
  tls             => $1,
  check_interval  => 600,
  report_interval => 60,
  retry_interval  => 0,
  max_failures    => 5,
  tags            => ['web', 'prod-eu.1'],
  apt_options     => ['$apt_opt1', '$apt_opt2'],
  apt_env         => { 'APT_CONFIG' => '$apt_config' },
  apt_timeout     => 1800,
  socket          => '$T/run/agent.sock',
  log_level       => 'debug',
  install         => 'binary',
  binary_source   => '$agent_bin',
  manage_service  => false,
  certificate_check => true,
  icinga2_commands => $2,
}
EOF
}
manifest "{ 'cert' => '$pki/agent.crt', 'key' => '$pki/agent.key', 'ca' => '$pki/ca.crt' }" true \
  "master_host     => '$master_host'," >"$T/agent-files.pp"
manifest "{ 'discover' => 'puppet', 'name' => 'agent01.example.com', 'root' => '$pki/puppet-root' }" false \
  "master_hosts    => ['$master_host', '$master_host2'], master_cn => 'masif.example.com'," >"$T/agent-puppet.pp"
mkdir -p "$proot/etc/icinga2/conf.d"
# (--noop exits 0 even with changes pending: look at what it would have done.)
puppet_apply "$T/agent-files.pp" --noop || fail "puppet apply --noop failed"
grep -q "agent.yml\]/ensure: current_value 'absent', should be 'file' (noop)" "$T/puppet.out" ||
  fail "puppet apply --noop would not write agent.yml"
[ ! -e "$proot/etc/masif-upgrader/agent.yml" ] || fail "puppet apply --noop wrote agent.yml"
rc=0; puppet_apply "$T/agent-files.pp" || rc=$?
[ "$rc" = 2 ] || fail "puppet apply: exit code $rc, expected 2 (changes made)"
rc=0; puppet_apply "$T/agent-files.pp" || rc=$?
[ "$rc" = 0 ] || fail "second puppet apply: exit code $rc, expected 0 (nothing to change)"
log "the agent.yml Puppet wrote:"
cat "$proot/etc/masif-upgrader/agent.yml" >&2
cmp -s "$agent_bin" "$proot/usr/local/bin/masif-agent" || fail "puppet did not copy the binary"
grep -qx 'ExecStart=/usr/local/bin/masif-agent --config /etc/masif-upgrader/agent.yml' \
  "$proot/etc/systemd/system/masif-upgrader-agent.service" || fail "puppet's unit does not run the copied binary"
cmp -s "$icinga_conf" "$proot/etc/icinga2/conf.d/masif-upgrader.conf" ||
  fail "puppet did not install the Icinga 2 CheckCommands (icinga2_commands => true)"
grep -qx 'tags: \["web","prod-eu.1"\]' "$proot/etc/masif-upgrader/agent.yml" ||
  fail "the agent.yml Puppet wrote has not the tags"
grep -qx "  host: \"$master_host\"" "$proot/etc/masif-upgrader/agent.yml" ||
  fail "the agent.yml Puppet wrote has not master.host"
cp "$proot/etc/masif-upgrader/agent.yml" "$T/agent-files.puppet.yml"
cp "$proot/etc/masif-upgrader/pki-check-agent.conf" "$T/pki-files.puppet.conf"
log "puppet apply --noop --show_diff of a change (Puppet discovery instead of files):"
puppet_apply "$T/agent-puppet.pp" --noop --show_diff || fail "puppet apply --noop of a change failed"
grep -q '^+tls: { discover: "puppet"' "$T/puppet.out" || fail "the noop diff does not show the new tls line"
rc=0; puppet_apply "$T/agent-puppet.pp" || rc=$?
[ "$rc" = 2 ] || fail "puppet apply of the change: exit code $rc, expected 2"
! grep -q 'masif-upgrader.conf' "$T/puppet.out" ||
  fail "puppet touched the Icinga 2 CheckCommands with icinga2_commands => false"
grep -qx "  hosts: \[\"$master_host\",\"$master_host2\"\]" "$proot/etc/masif-upgrader/agent.yml" ||
  fail "the agent.yml Puppet wrote has not master.hosts"
grep -qx '  cn: "masif.example.com"' "$proot/etc/masif-upgrader/agent.yml" ||
  fail "the agent.yml Puppet wrote has not master.cn"
cp "$proot/etc/masif-upgrader/agent.yml" "$T/agent-puppet.puppet.yml"
cp "$proot/etc/masif-upgrader/pki-check-agent.conf" "$T/pki-puppet.puppet.conf"

# --- 3. Ansible ----------------------------------------------------------------------------
export ANSIBLE_CONFIG=$repo/ansible/ansible.cfg ANSIBLE_ROLES_PATH=$repo/ansible/roles
export ANSIBLE_HOME=$T/ansible/home ANSIBLE_LOCAL_TEMP=$T/ansible/local ANSIBLE_REMOTE_TEMP=$T/ansible/remote
export ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0 XDG_CACHE_HOME=$T/cache
log "ansible-playbook --syntax-check"
(cd ansible && ansible-playbook --syntax-check site.yml tests/scratch-agents.yml tests/scratch-server.yml 2>&1 |
  grep -v "Could not match supplied host pattern" >&2)
log "ansible-lint"
(cd ansible && ansible-lint --offline -q site.yml tests/scratch-agents.yml tests/scratch-server.yml roles >&2)

log "the agent role, ansible_connection=local, into scratch roots, twice"
# Three hosts: certificate files on the host, Puppet discovery, files copied from the
# controller. Settings as in the Puppet run above.
for h in files puppet copy; do
  mkdir -p "$T/ansible-root/$h/etc/systemd/system" "$T/ansible-root/$h/usr/local/bin" \
    "$T/ansible-root/$h/etc/icinga2/conf.d" "$T/ansible-root/$h/etc/icinga2/zones.d/global-templates"
done
python3 - "$T" "$master_host" "$master_host2" "$apt_opt1" "$apt_opt2" "$apt_config" "$agent_bin" >"$T/inventory.json" <<'EOF'
import json, sys
t, master_host, master_host2, opt1, opt2, apt_config, agent_bin = sys.argv[1:]
pki = t + "/pki"
common = {
    "ansible_connection": "local",
    "ansible_python_interpreter": "/usr/bin/python3",  # Debian's, the one Ansible runs on
    "masif_upgrader_agent_master_host": master_host,
    "masif_upgrader_agent_check_interval": 600,
    "masif_upgrader_agent_report_interval": 60,
    "masif_upgrader_agent_retry_interval": 0,
    "masif_upgrader_agent_max_failures": 5,
    "masif_upgrader_agent_tags": ["web", "prod-eu.1"],
    "masif_upgrader_agent_apt_options": [opt1, opt2],
    "masif_upgrader_agent_apt_env": {"APT_CONFIG": apt_config},
    "masif_upgrader_agent_apt_timeout": 1800,
    "masif_upgrader_agent_socket": t + "/run/agent.sock",
    "masif_upgrader_agent_log_level": "debug",
    "masif_upgrader_agent_install": "binary",
    "masif_upgrader_agent_binary_src": agent_bin,
    "masif_upgrader_agent_manage_service": False,
    "masif_upgrader_agent_certificate_check": True,
}
# The Icinga 2 CheckCommands: default path (files), off (puppet), a global zone (copy).
icinga = {
    "files": {"masif_upgrader_agent_icinga2_commands": True},
    "puppet": {},
    "copy": {"masif_upgrader_agent_icinga2_commands": True,
             "masif_upgrader_agent_icinga2_commands_path": "/etc/icinga2/zones.d/global-templates/masif-upgrader.conf"},
}
tls = {
    "files": {"masif_upgrader_agent_tls": {"cert": pki + "/agent.crt", "key": pki + "/agent.key", "ca": pki + "/ca.crt"}},
    "puppet": {"masif_upgrader_agent_tls": {"discover": "puppet", "name": "agent01.example.com", "root": pki + "/puppet-root"}},
    "copy": {"masif_upgrader_agent_tls_copy": {"cert": pki + "/agent.crt", "key": pki + "/agent.key", "ca": pki + "/ca.crt"}},
}
# One master (files, copy) or two (puppet), as in the Puppet runs.
masters = {
    "files": {},
    "puppet": {"masif_upgrader_agent_master_host": "",
               "masif_upgrader_agent_master_hosts": [master_host, master_host2],
               "masif_upgrader_agent_master_cn": "masif.example.com"},
    "copy": {},
}
hosts = {f"scratch-{h}": dict(common, masif_upgrader_root=f"{t}/ansible-root/{h}", **v, **icinga[h], **masters[h])
         for h, v in tls.items()}
json.dump({"scratch_agents": {"hosts": hosts}}, sys.stdout, indent=1)
EOF
for run in 1 2; do
  (cd ansible && ansible-playbook -i "$T/inventory.json" tests/scratch-agents.yml) >"$T/ansible-$run.out" 2>&1 ||
    { cat "$T/ansible-$run.out" >&2; fail "ansible-playbook run $run"; }
  sed -n '/PLAY RECAP/,$p' "$T/ansible-$run.out" >&2
done
grep -Eq 'scratch-files +: ok=[0-9]+ +changed=[1-9]' "$T/ansible-1.out" || fail "the first Ansible run changed nothing"
if grep -E '^scratch-' "$T/ansible-2.out" | grep -Ev 'changed=0 .*failed=0'; then
  fail "the second Ansible run changed something (not idempotent)"
fi
a=$T/ansible-root
cmp -s "$agent_bin" "$a/files/usr/local/bin/masif-agent" || fail "ansible did not copy the binary"
cmp -s "$icinga_conf" "$a/files/etc/icinga2/conf.d/masif-upgrader.conf" ||
  fail "ansible did not install the Icinga 2 CheckCommands (icinga2_commands: true)"
cmp -s "$icinga_conf" "$a/copy/etc/icinga2/zones.d/global-templates/masif-upgrader.conf" ||
  fail "ansible did not install the Icinga 2 CheckCommands at icinga2_commands_path"
[ -z "$(find "$a/puppet/etc/icinga2" "$a/copy/etc/icinga2/conf.d" -type f)" ] ||
  fail "ansible installed Icinga 2 CheckCommands where icinga2_commands is off or elsewhere"
cmp -s packaging/systemd/masif-upgrader-agent.service \
  <(sed 's|/usr/local/bin/|/usr/bin/|' "$a/files/etc/systemd/system/masif-upgrader-agent.service") ||
  fail "ansible's unit is not the packaged one pointed at /usr/local/bin"
for f in agent.crt:644 agent.key:600 ca.crt:644; do
  cmp -s "$pki/${f%%:*}" "$a/copy/etc/masif-upgrader/tls/${f%%:*}" || fail "ansible did not copy ${f%%:*}"
  [ "$(stat -c %a "$a/copy/etc/masif-upgrader/tls/${f%%:*}")" = "${f##*:}" ] || fail "${f%%:*} is not mode ${f##*:}"
done
for h in files puppet copy; do
  grep -qx 'tags: \["web","prod-eu.1"\]' "$a/$h/etc/masif-upgrader/agent.yml" ||
    fail "the agent.yml Ansible wrote ($h) has not the tags"
done
for h in files copy; do
  grep -qx "  host: \"$master_host\"" "$a/$h/etc/masif-upgrader/agent.yml" ||
    fail "the agent.yml Ansible wrote ($h) has not master.host"
done
grep -qx "  hosts: \[\"$master_host\",\"$master_host2\"\]" "$a/puppet/etc/masif-upgrader/agent.yml" ||
  fail "the agent.yml Ansible wrote (puppet) has not master.hosts"
grep -q '^  cert: "/etc/masif-upgrader/tls/agent.crt"$' "$a/copy/etc/masif-upgrader/agent.yml" ||
  fail "the agent.yml of the copy host does not name the copied certificate"
if getent group puppet >/dev/null; then
  grep -qx 'SupplementaryGroups=puppet' "$a/puppet/etc/systemd/system/masif-upgrader-agent.service.d/masif-upgrader-groups.conf" ||
    fail "puppet discovery on a host with a puppet group: no SupplementaryGroups=puppet drop-in"
fi
[ ! -e "$a/files/etc/systemd/system/masif-upgrader-agent.service.d/masif-upgrader-groups.conf" ] ||
  fail "certificate files: the agent got a groups drop-in it does not need"

# --- 3b. bad settings change nothing -------------------------------------------------------
log "bad settings: the agent role and class fail with the setting's name, before any change"
bad_root=$T/bad-root
mkdir -p "$bad_root"
python3 - "$T/inventory.json" "$bad_root" >"$T/bad-inventory.json" <<'PY'
import json, sys
inventory = json.load(open(sys.argv[1]))
host = dict(inventory["scratch_agents"]["hosts"]["scratch-files"], masif_upgrader_root=sys.argv[2])
json.dump({"scratch_agents": {"hosts": {"scratch-bad": host}}}, sys.stdout)
PY
while IFS='|' read -r setting message; do
  rc=0
  (cd ansible && ansible-playbook -i "$T/bad-inventory.json" tests/scratch-agents.yml -e "$setting") \
    >"$T/bad.out" 2>&1 || rc=$?
  [ "$rc" != 0 ] || fail "the agent role accepted $setting"
  grep -q "$message" "$T/bad.out" || { cat "$T/bad.out" >&2; fail "no clear error for $setting"; }
  [ -z "$(ls -A "$bad_root")" ] || fail "the agent role changed files despite $setting"
done <<'CASES'
{"masif_upgrader_agent_master_host": "masif.example.com"}|masif_upgrader_agent: bad settings
{"masif_upgrader_agent_master_host": "a.example.com:8150\nlog: {level: debug}"}|masif_upgrader_agent: bad settings
{"masif_upgrader_agent_master_host": ""}|masif_upgrader_agent: bad settings
{"masif_upgrader_agent_master_hosts": ["m2.example.com:8150"], "masif_upgrader_agent_master_cn": "m"}|masif_upgrader_agent: bad settings
{"masif_upgrader_agent_master_host": "", "masif_upgrader_agent_master_hosts": ["m1.example.com:8150"]}|masif_upgrader_agent: bad settings
{"masif_upgrader_agent_master_host": "", "masif_upgrader_agent_master_hosts": "m1.example.com:8150", "masif_upgrader_agent_master_cn": "m"}|masif_upgrader_agent: bad settings
{"masif_upgrader_agent_master_host": "", "masif_upgrader_agent_master_hosts": ["m1.example.com:8150", "m2.example.com"], "masif_upgrader_agent_master_cn": "m"}|masif_upgrader_agent: bad settings
{"masif_upgrader_agent_master_host": "", "masif_upgrader_agent_master_hosts": ["m1.example.com:8150", 8150], "masif_upgrader_agent_master_cn": "m"}|masif_upgrader_agent: bad settings
{"masif_upgrader_agent_master_host": "", "masif_upgrader_agent_master_hosts": ["m1.example.com:8150", "M1.example.com:8150"], "masif_upgrader_agent_master_cn": "m"}|masif_upgrader_agent: bad settings
{"masif_upgrader_agent_master_host": "", "masif_upgrader_agent_master_hosts": ["m1:1", "m2:1", "m3:1", "m4:1", "m5:1", "m6:1", "m7:1", "m8:1", "m9:1", "m10:1", "m11:1", "m12:1", "m13:1", "m14:1", "m15:1", "m16:1", "m17:1"], "masif_upgrader_agent_master_cn": "m"}|masif_upgrader_agent: bad settings
{"masif_upgrader_agent_check_interval": 0}|masif_upgrader_agent: bad settings
{"masif_upgrader_agent_max_failures": 1001}|masif_upgrader_agent: bad settings
{"masif_upgrader_agent_max_failures": -1}|masif_upgrader_agent: bad settings
{"masif_upgrader_agent_apt_path": "apt-get"}|masif_upgrader_agent: bad settings
{"masif_upgrader_agent_tags": ["web", "-x"]}|masif_upgrader_agent: bad settings
{"masif_upgrader_agent_tags": ["web", "web"]}|masif_upgrader_agent: bad settings
{"masif_upgrader_agent_tags": "web"}|masif_upgrader_agent: bad settings
{"masif_upgrader_agent_tags": [2024]}|masif_upgrader_agent: bad settings
{"masif_upgrader_agent_apt_env": {"A B": "x"}}|masif_upgrader_agent: bad settings
{"masif_upgrader_agent_log_level": "verbose"}|masif_upgrader_agent: bad settings
{"masif_upgrader_agent_apt_timeout": 5}|masif_upgrader_agent: bad settings
{"masif_upgrader_agent_install": "binary", "masif_upgrader_agent_binary_src": ""}|masif_upgrader_agent: bad settings
{"masif_upgrader_agent_tls": {"discover": "vault"}}|masif_upgrader_agent_tls must be
{"masif_upgrader_agent_tls": {"discover": "puppet", "name": "../../etc/shadow"}}|masif_upgrader_agent_tls must be
{"masif_upgrader_agent_tls": {"cert": "/a", "key": "/b"}}|masif_upgrader_agent_tls must be
{"masif_upgrader_agent_tls": {"cert": "a.pem", "key": "/b", "ca": "/c"}}|masif_upgrader_agent_tls must be
{"masif_upgrader_agent_tls_copy": {"cert": "/a"}}|masif_upgrader_agent_tls must be
{"masif_upgrader_agent_icinga2_commands": "yes"}|masif_upgrader_agent: bad settings
{"masif_upgrader_agent_icinga2_commands": true, "masif_upgrader_agent_icinga2_commands_path": "conf.d/x.conf"}|masif_upgrader_agent: bad settings
CASES
sed "s|'$proot'|'$bad_root'|; s|'$master_host'|'masif.example.com'|" "$T/agent-files.pp" >"$T/bad.pp"
rc=0; puppet_apply "$T/bad.pp" || rc=$?
[ "$rc" = 1 ] || fail "puppet apply with a master_host without a port: exit code $rc, expected 1"
grep -q "parameter 'master_host' expects .*a match for Pattern" "$T/puppet.out" || fail "puppet's error does not name master_host"
[ -z "$(ls -A "$bad_root")" ] || fail "puppet apply changed files despite a bad master_host"

# --- 4. one format, accepted by the agent --------------------------------------------------
log "Puppet and Ansible write the same agent.yml"
for v in files puppet; do
  diff -u <(grep -v '^#' "$T/agent-$v.puppet.yml") <(grep -v '^#' "$a/$v/etc/masif-upgrader/agent.yml") >&2 ||
    fail "Puppet and Ansible wrote different agent.yml ($v)"
done
log "Puppet and Ansible write the same certificate check arguments, and masif-pki accepts them"
for v in files puppet; do
  diff -u <(grep -v '^#' "$T/pki-$v.puppet.conf") <(grep -v '^#' "$a/$v/etc/masif-upgrader/pki-check-agent.conf") >&2 ||
    fail "Puppet and Ansible wrote different pki-check-agent.conf ($v)"
  # An EnvironmentFile, not shell: systemd splits the unbraced $MASIF_PKI_CHECK_ARGS on spaces.
  args=$(sed -n 's/^MASIF_PKI_CHECK_ARGS=//p' "$T/pki-$v.puppet.conf")
  "$bin_dir/masif-pki" check --role agent $args >&2 ||
    fail "masif-pki check with the arguments in pki-check-agent.conf ($v) did not report OK"
done

log "masif-agent --check-config"
for f in "$T/agent-files.puppet.yml" "$T/agent-puppet.puppet.yml" "$a/files/etc/masif-upgrader/agent.yml" \
  "$a/puppet/etc/masif-upgrader/agent.yml"; do
  "$agent_bin" --check-config --config "$f" >&2 || fail "masif-agent --check-config rejected $f"
done
# ... and rejects a broken one, naming the key.
sed 's/^  cn: .*/  cn: "not a name"/' "$a/files/etc/masif-upgrader/agent.yml" >"$T/broken.yml"
if "$agent_bin" --check-config --config "$T/broken.yml" 2>"$T/broken.err"; then
  fail "masif-agent --check-config accepted a bad master.cn"
fi
grep -q 'master.cn' "$T/broken.err" || fail "the --check-config error does not name master.cn"

# --- 4b. master and UI ---------------------------------------------------------------------
# Their files belong to the groups masif-master and masif-ui, which this host has not got:
# Puppet and Ansible run in a private mount namespace whose /etc/passwd and /etc/group have
# those users (the host's files stay untouched).
if unshare -m --propagation private true 2>/dev/null; then
  log "master and UI: puppet apply and the master role, service users in a mount namespace"
  cp /etc/passwd "$T/passwd"
  cp /etc/group "$T/group"
  id=64900
  for name in masif-upgrader masif-master masif-ui; do
    while getent group "$id" >/dev/null || getent passwd "$id" >/dev/null; do id=$((id + 1)); done
    members=
    [ "$name" != masif-upgrader ] || members=masif-master,masif-ui
    printf '%s:x:%s:%s\n' "$name" "$id" "$members" >>"$T/group"
    [ "$name" = masif-upgrader ] ||
      printf '%s:x:%s:%s::/nonexistent:/usr/sbin/nologin\n' "$name" "$id" "$id" >>"$T/passwd"
    id=$((id + 1))
  done
  in_ns() {
    unshare -m --propagation private -- sh -c \
      'mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && shift 2 && exec "$@"' \
      sh "$T/passwd" "$T/group" "$@"
  }
  # bcrypt of "U*U" (OpenBSD's test vector): the UI only needs a well-formed hash here.
  ui_hash='$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW'
  sroot=$T/puppet-server
  mkdir -p "$sroot/etc/systemd/system" "$sroot/usr/lib/sysusers.d" "$sroot/usr/local/bin"
  cat >"$T/server.pp" <<PP
class { 'masif_upgrader': root => '$sroot' }
class { 'masif_upgrader::master':
  listen         => '127.0.0.1:8150',
  api_v2         => false,
  api_max_wait   => 120,
  tls            => { 'cert' => '$pki/master.crt', 'key' => '$pki/master.key', 'ca' => '$pki/ca.crt' },
  db_url         => Sensitive('sqlite://$T/masif.db'),
  runs_keep      => 10,
  runs_max_age_days => 30,
  log_level      => 'debug',
  install        => 'binary',
  binary_source  => '$bin_dir/masif-master',
  manage_service => false,
  certificate_check => true,
}
class { 'masif_upgrader::ui':
  listen         => '[::1]:8151',
  db_url         => 'sqlite://$T/masif.db',
  users          => { 'admin' => Sensitive('$ui_hash') },
  trusted_header => { 'name' => 'X-Remote-User', 'from' => ['127.0.0.1', '::1'] },
  offline_after  => 3600,
  summary_check_interval => 0,
  install        => 'binary',
  binary_source  => '$bin_dir/masif-ui',
  manage_service => false,
}
PP
  for want in 2 0; do
    rc=0
    in_ns puppet apply "${puppet_dirs[@]}" --modulepath "$T/puppet/modules" --detailed-exitcodes \
      "$T/server.pp" >"$T/puppet-server.out" 2>&1 || rc=$?
    grep -v 'Facter: Permission denied' "$T/puppet-server.out" >&2 || true
    [ "$rc" = "$want" ] || fail "puppet apply of master and UI: exit code $rc, expected $want"
  done
  grep -q '^masif-master:' "$sroot/etc/passwd" || fail "puppet (binary install) made no masif-master user in the root"

  python3 - "$T" "$pki" "$bin_dir" "$ui_hash" >"$T/server-inventory.json" <<'PY'
import json, sys
t, pki, bin_dir, ui_hash = sys.argv[1:]
host = {
    "ansible_connection": "local",
    "ansible_python_interpreter": "/usr/bin/python3",  # Debian's, the one Ansible runs on
    "masif_upgrader_root": t + "/ansible-root/server",
    "masif_upgrader_master_listen": "127.0.0.1:8150",
    "masif_upgrader_master_api_v2": False,
    "masif_upgrader_master_api_max_wait": 120,
    "masif_upgrader_master_tls": {"cert": pki + "/master.crt", "key": pki + "/master.key", "ca": pki + "/ca.crt"},
    "masif_upgrader_master_db_url": "sqlite://" + t + "/masif.db",
    "masif_upgrader_master_runs_keep": 10,
    "masif_upgrader_master_runs_max_age_days": 30,
    "masif_upgrader_master_log_level": "debug",
    "masif_upgrader_master_install": "binary",
    "masif_upgrader_master_binary_src": bin_dir + "/masif-master",
    "masif_upgrader_master_manage_service": False,
    "masif_upgrader_master_certificate_check": True,
    "masif_upgrader_ui_listen": "[::1]:8151",
    "masif_upgrader_ui_users": {"admin": ui_hash},
    "masif_upgrader_ui_trusted_header": {"name": "X-Remote-User", "from": ["127.0.0.1", "::1"]},
    "masif_upgrader_ui_offline_after": 3600,
    "masif_upgrader_ui_summary_check_interval": 0,
    "masif_upgrader_ui_install": "binary",
    "masif_upgrader_ui_binary_src": bin_dir + "/masif-ui",
    "masif_upgrader_ui_manage_service": False,
}
json.dump({"scratch_servers": {"hosts": {"scratch-server": host}}}, sys.stdout, indent=1)
PY
  mkdir -p "$a/server/etc/systemd/system" "$a/server/usr/lib/sysusers.d" "$a/server/usr/local/bin"
  for run in 1 2; do
    (cd ansible && in_ns ansible-playbook -i "$T/server-inventory.json" tests/scratch-server.yml) \
      >"$T/ansible-server-$run.out" 2>&1 || { cat "$T/ansible-server-$run.out" >&2; fail "master role run $run"; }
    sed -n '/PLAY RECAP/,$p' "$T/ansible-server-$run.out" >&2
  done
  grep -Eq '^scratch-server +: .*changed=[1-9]' "$T/ansible-server-1.out" || fail "the first master role run changed nothing"
  grep -Eq '^scratch-server +: .*changed=0 .*failed=0' "$T/ansible-server-2.out" ||
    fail "the second master role run changed something (not idempotent)"
  grep -q '^masif-ui:' "$a/server/etc/passwd" || fail "ansible (binary install) made no masif-ui user in the root"
  # A bad UI setting stops the role before the master is touched either.
  bad_server=$T/bad-server
  mkdir -p "$bad_server"
  while IFS='|' read -r setting message; do
    rc=0
    (cd ansible && in_ns ansible-playbook -i "$T/server-inventory.json" tests/scratch-server.yml \
      -e "{\"masif_upgrader_root\": \"$bad_server\"}" -e "$setting") >"$T/bad.out" 2>&1 || rc=$?
    [ "$rc" != 0 ] || fail "the master role accepted $setting"
    grep -q "$message" "$T/bad.out" || { cat "$T/bad.out" >&2; fail "no clear error for $setting"; }
    [ -z "$(ls -A "$bad_server")" ] || fail "the master role changed files despite $setting"
  done <<'CASES'
{"masif_upgrader_ui_users": {"admin": "plain-text password"}}|masif_upgrader_ui: bad settings
{"masif_upgrader_ui_users": {"ad:min": "$2y$05$abcdefghijklmnopqrstuu"}}|masif_upgrader_ui: bad settings
{"masif_upgrader_ui_trusted_header": {"name": "X User", "from": ["127.0.0.1"]}}|masif_upgrader_ui: bad settings
{"masif_upgrader_ui_offline_after": 59}|masif_upgrader_ui: bad settings
{"masif_upgrader_ui_summary_check_interval": 5}|masif_upgrader_ui: bad settings
{"masif_upgrader_ui_summary_check_interval": 604801}|masif_upgrader_ui: bad settings
{"masif_upgrader_master_api_v2": "yes"}|masif_upgrader_master: bad settings
{"masif_upgrader_master_api_max_wait": 3601}|masif_upgrader_master: bad settings
{"masif_upgrader_master_runs_keep": 0}|masif_upgrader_master: bad settings
{"masif_upgrader_master_runs_max_age_days": 36501}|masif_upgrader_master: bad settings
{"masif_upgrader_master_db_url": "postgres://db/masif"}|masif_upgrader_master: bad settings
{"masif_upgrader_master_listen": "localhost:8150"}|masif_upgrader_master: bad settings
{"masif_upgrader_master_tls": {"discover": "puppet", "crl": "/x"}}|masif_upgrader_master_tls must be
CASES

  for f in master.yml ui.yml pki-check-master.conf; do
    diff -u <(grep -v '^#' "$sroot/etc/masif-upgrader/$f") <(grep -v '^#' "$a/server/etc/masif-upgrader/$f") >&2 ||
      fail "Puppet and Ansible wrote different $f"
  done
  # 0 (the check off) is the value a truthiness test in a template would drop.
  grep -qx 'summary_check_interval: 0' "$sroot/etc/masif-upgrader/ui.yml" ||
    fail "the ui.yml Puppet and Ansible wrote lacks summary_check_interval: 0"
  gid() { awk -F: -v g="$1" '$1 == g { print $3 }' "$T/group"; }
  for r in "$sroot" "$a/server"; do
    [ "$(stat -c '%u %g %a' "$r/etc/masif-upgrader/master.yml")" = "0 $(gid masif-master) 640" ] ||
      fail "$r: master.yml is not root:masif-master 0640"
    [ "$(stat -c '%u %g %a' "$r/etc/masif-upgrader/ui.htpasswd")" = "0 $(gid masif-ui) 640" ] ||
      fail "$r: ui.htpasswd is not root:masif-ui 0640"
    [ "$(cat "$r/etc/masif-upgrader/ui.htpasswd")" = "admin:$ui_hash" ] || fail "$r: wrong ui.htpasswd"
  done
  log "the master.yml and ui.yml Puppet and Ansible wrote:"
  cat "$sroot/etc/masif-upgrader/master.yml" "$sroot/etc/masif-upgrader/ui.yml" >&2
  "$bin_dir/masif-master" --check-config --config "$sroot/etc/masif-upgrader/master.yml" >&2 ||
    fail "masif-master --check-config rejected the master.yml Puppet wrote"
  grep -qx "MASIF_PKI_CHECK_ARGS=--cert=$pki/master.crt --key=$pki/master.key --ca=$pki/ca.crt --user=masif-master" \
    "$sroot/etc/masif-upgrader/pki-check-master.conf" || fail "unexpected pki-check-master.conf"
  chgrp "$(gid masif-master)" "$pki/master.key" # as the packages' users would have it
  args=$(sed -n 's/^MASIF_PKI_CHECK_ARGS=//p' "$sroot/etc/masif-upgrader/pki-check-master.conf")
  in_ns "$bin_dir/masif-pki" check --role master --name masif.example.com $args >&2 ||
    fail "masif-pki check with the arguments in pki-check-master.conf did not report OK"
  # The password file is named by its path on the target: point it into the scratch root.
  sed "s|^  htpasswd: \"/|  htpasswd: \"$sroot/|" "$sroot/etc/masif-upgrader/ui.yml" >"$T/ui-check.yml"
  "$bin_dir/masif-ui" --check-config --config "$T/ui-check.yml" >&2 ||
    fail "masif-ui --check-config rejected the ui.yml Puppet wrote"
else
  log "SKIPPED master and UI runs: no mount namespaces here (unshare -m)"
fi

# --- 5. Debian packages ----------------------------------------------------------------------
log "packaging/build-debs.sh"
packaging/build-debs.sh --bin-dir "$bin_dir" --out "$T/debs" >"$T/debs.list"
mapfile -t debs <"$T/debs.list"
[ "${#debs[@]}" = 5 ] || fail "expected 5 packages, got ${#debs[@]}"
for d in "${debs[@]}"; do
  dpkg-deb --info "$d" >&2
done

log "dpkg --root: install into a scratch root"
R=$T/dpkg-root
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/etc" "$R/var/log"
touch "$R/var/lib/dpkg/status"
host_users_before=$(getent passwd masif-master masif-ui || true)
# --force-script-chrootless: the maintainer scripts run here with DPKG_ROOT=$R and act on
# $R only; --force-depends: the scratch root has no libc6, apt or systemd.
dpkg --root="$R" --log="$R/var/log/dpkg.log" --force-script-chrootless --force-depends \
  -i "${debs[@]}" >"$T/dpkg.out" 2>&1 || { cat "$T/dpkg.out" >&2; fail "dpkg -i into the scratch root"; }
[ "$(getent passwd masif-master masif-ui || true)" = "$host_users_before" ] ||
  fail "installing into the scratch root changed the host's users"
for p in masif-agent masif-master masif-ui masif-pki masif; do
  dpkg-query --root="$R" -W -f='${db:Status-Abbrev}' "$p" | grep -q '^ii' || fail "$p is not installed in $R"
done

files_doc=docs/installation.md
files_title="Files installed by the packages"
files_section="## $files_title"
log "files where $files_doc (\"$files_title\") says"
[ "$(grep -cxF "$files_section" "$files_doc")" = 1 ] ||
  fail "$files_doc needs exactly one section \"$files_section\""
rows=$(awk -v h="$files_section" '$0 == h { d = 1; next } /^## / { d = 0 } d && /^\| `\// { print }' "$files_doc" |
  sed -E 's/^\| `([^`]+)` \| ([a-z-]+) \|.*/\2 \1/')
[ -n "$rows" ] || fail "$files_doc has no file table in its section \"$files_section\""
while read -r pkg path; do
  matched=0
  for f in $R$path; do
    [ -e "$f" ] || continue
    dpkg-query --root="$R" -L "$pkg" | grep -qxF "${f#"$R"}" || fail "$path: ${f#"$R"} is not in package $pkg"
    matched=1
  done
  [ "$matched" = 1 ] || fail "$files_doc lists $path ($pkg), but it is not installed"
done <<<"$rows"
# ... and every installed file is in the table.
for p in masif-agent masif-master masif-ui masif-pki masif; do
  while read -r f; do
    [ -f "$R$f" ] || continue
    listed=0
    while read -r pkg path; do
      # shellcheck disable=SC2053 # $path is a glob on purpose
      [ "$pkg" = "$p" ] && [[ $f == $path ]] && { listed=1; break; }
    done <<<"$rows"
    [ "$listed" = 1 ] || fail "$f (package $p) is missing from the table in $files_doc"
  done < <(dpkg-query --root="$R" -L "$p")
done

log "maintainer scripts: users, groups and config permissions in the scratch root"
grep -q '^masif-master:' "$R/etc/passwd" || fail "no masif-master user in $R/etc/passwd"
grep -q '^masif-ui:' "$R/etc/passwd" || fail "no masif-ui user in $R/etc/passwd"
grep -Eq '^masif-upgrader:x:[0-9]+:(masif-master,masif-ui|masif-ui,masif-master)$' "$R/etc/group" ||
  fail "masif-upgrader group without both service users"
gid() { awk -F: -v g="$1" '$1 == g { print $3 }' "$R/etc/group"; }
[ "$(stat -c '%u %g %a' "$R/etc/masif-upgrader/master.yml")" = "0 $(gid masif-master) 640" ] ||
  fail "master.yml is not root:masif-master 0640"
[ "$(stat -c '%u %g %a' "$R/etc/masif-upgrader/ui.yml")" = "0 $(gid masif-ui) 640" ] ||
  fail "ui.yml is not root:masif-ui 0640"
[ "$(stat -c '%u %g %a' "$R/etc/masif-upgrader/agent.yml")" = "0 0 644" ] || fail "agent.yml is not root:root 0644"
uid() { awk -F: -v u="$1" '$1 == u { print $3 }' "$R/etc/passwd"; }
[ "$(stat -c '%u %g %a' "$R/var/lib/masif-upgrader")" = "$(uid masif-master) $(gid masif-upgrader) 770" ] ||
  fail "/var/lib/masif-upgrader is not masif-master:masif-upgrader 0770"
"$R/usr/bin/masif-agent" --help >/dev/null || fail "the packaged masif-agent does not run"
plugin=$R/usr/lib/nagios/plugins/check_masifupgrader_agent
[ "$(readlink "$plugin")" = ../../../bin/masif-agent ] || fail "$plugin is not a relative link to masif-agent"
rc=0; out=$("$plugin" -restsock "$T/no-agent.sock" -query-1m-warn '@~:42') || rc=$?
[ "$rc" = 3 ] && [[ $out == "MASIF-AGENT UNKNOWN - "*"no-agent.sock"* ]] ||
  fail "the packaged check_masifupgrader_agent without an agent: exit code $rc, expected 3 UNKNOWN: $out"
# The packaged masif is the command line without the demo; with no UI to reach, the fleet
# check is UNKNOWN.
rc=0; "$R/usr/bin/masif" demo --help >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "the packaged masif knows 'demo' (exit code $rc): it must be built without it"
rc=0; out=$(MASIF_TOKEN=x "$R/usr/bin/masif" check-fleet --url http://127.0.0.1:9/ --timeout 5) || rc=$?
[ "$rc" = 3 ] && [[ $out == "MASIF-FLEET UNKNOWN - "* ]] ||
  fail "the packaged masif check-fleet without a UI: exit code $rc, expected 3 UNKNOWN: $out"

log "the command line of the packaged masif-pki-check@agent.service"
cmd=$(sed -n 's/^ExecStart=//p' "$R/lib/systemd/system/masif-pki-check@.service")
cmd=${cmd//%i/agent}
cmd=${cmd//\$MASIF_PKI_CHECK_ARGS/--source=puppet --root=$pki/puppet-root --name=agent01.example.com}
cmd=${cmd//\/usr\/bin\//$R/usr/bin/}
rc=0
$cmd >&2 || rc=$? # word splitting on purpose, as systemd does for $VAR
[ "$rc" = 0 ] || fail "masif-pki-check@agent.service's command did not report OK (exit code $rc): $cmd"

log "systemd-analyze verify of the packaged units"
units=$T/units
mkdir -p "$units"
for f in "$R"/lib/systemd/system/*; do
  # Point ExecStart at the scratch root, so verify can check the binaries exist.
  sed "s|/usr/bin/masif-|$R/usr/bin/masif-|" "$f" >"$units/${f##*/}"
done
(cd "$units" && systemd-analyze verify masif-upgrader-agent.service masif-upgrader-master.service \
  masif-upgrader-ui.service masif-pki-check@agent.service masif-pki-check@agent.timer) >"$T/verify.out" 2>&1 || true
if [ -s "$T/verify.out" ]; then
  cat "$T/verify.out" >&2
  fail "systemd-analyze verify complained about the units"
fi

log "master and UI units raise the descriptor limit"
for u in masif-upgrader-master.service:131072 masif-upgrader-ui.service:65536; do
  grep -qx "LimitNOFILE=${u#*:}" "$units/${u%%:*}" ||
    fail "${u%%:*}: no LimitNOFILE=${u#*:} (with 1,024 descriptors idle connections lock agents out)"
done

log "systemd-analyze security --offline: master, UI and the pki check stay hardened"
cp "$units/masif-pki-check@.service" "$units/masif-pki-check@agent.service"
for u in masif-upgrader-master.service masif-upgrader-ui.service masif-pki-check@agent.service; do
  # --threshold=20: fail above an exposure level of 2.0 (of 10).
  (cd "$units" && systemd-analyze security --offline=true --threshold=20 --no-pager "./$u") \
    >"$T/security.out" 2>&1 || { cat "$T/security.out" >&2; fail "$u: exposure level above 2.0"; }
  tail -1 "$T/security.out" >&2
done
# The agent runs apt-get and every maintainer script: exposed by design, shown for the record.
(cd "$units" && systemd-analyze security --offline=true --no-pager ./masif-upgrader-agent.service) 2>&1 | tail -1 >&2

log "dpkg --root: an upgrade keeps the configuration Puppet or Ansible wrote"
cp "$T/agent-files.puppet.yml" "$R/etc/masif-upgrader/agent.yml"
packaging/build-debs.sh --bin-dir "$bin_dir" --out "$T/debs2" --version 0.1.0+rollout1 >"$T/debs2.list"
mapfile -t debs2 <"$T/debs2.list"
# stdin from /dev/null: a conffile question would fail the upgrade instead of waiting.
dpkg --root="$R" --log="$R/var/log/dpkg.log" --force-script-chrootless --force-depends \
  -i "${debs2[@]}" </dev/null >"$T/dpkg-upgrade.out" 2>&1 ||
  { cat "$T/dpkg-upgrade.out" >&2; fail "upgrading the packages in the scratch root"; }
[ "$(dpkg-query --root="$R" -W -f='${Version}' masif-agent)" = 0.1.0+rollout1 ] || fail "masif-agent was not upgraded"
cmp -s "$T/agent-files.puppet.yml" "$R/etc/masif-upgrader/agent.yml" || fail "the upgrade replaced the managed agent.yml"
[ "$(stat -c '%u %g %a' "$R/etc/masif-upgrader/master.yml")" = "0 $(gid masif-master) 640" ] ||
  fail "after the upgrade master.yml is not root:masif-master 0640"

log "dpkg --root: remove and purge"
dpkg --root="$R" --log="$R/var/log/dpkg.log" --force-script-chrootless --force-depends \
  --purge masif-agent masif-master masif-ui masif-pki masif >"$T/dpkg-purge.out" 2>&1 ||
  { cat "$T/dpkg-purge.out" >&2; fail "dpkg --purge in the scratch root"; }
left=$(cd "$R" && find usr lib etc/masif-upgrader -type f 2>/dev/null || true)
[ -z "$left" ] || fail "files left after purge: $left"

log "all roll-out checks passed"
