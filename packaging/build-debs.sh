#!/usr/bin/env bash
# Builds the Debian packages masif-agent, masif-master, masif-ui, masif-pki and masif with
# dpkg-deb from already built release binaries (cargo build --release), the systemd units
# in packaging/systemd/, the example configs in packaging/config/, the schema files and the
# section-8 man pages generated from the command lines (masif-xtask man), the monitoring
# plugin link and the Icinga 2 CheckCommands (packaging/icinga2/).
#
#   packaging/build-debs.sh [--bin-dir DIR] [--out DIR] [--version VERSION] [--man-dir DIR]
#
# --bin-dir  where masif-agent, masif-master, masif-ui, masif-pki and masif are (default
#            target/release; build masif with --no-default-features: the command line without
#            its demo)
# --out      where the .deb files go (default target/debian); prints their paths
# --version  package version (default: the workspace version in Cargo.toml)
# --man-dir  where masif-agent.8 … masif-pki.8 and masif.8 are (default: generated now with
#            cargo run --release -p masif-xtask -- man DIR)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
bin_dir=$repo/target/release
out_dir=$repo/target/debian
version=
man_dir=

die() { printf 'build-debs: %s\n' "$*" >&2; exit 1; }

while (($#)); do
  case $1 in
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
    --out) out_dir=${2:?--out needs a directory}; shift 2 ;;
    --version) version=${2:?--version needs a value}; shift 2 ;;
    --man-dir) man_dir=${2:?--man-dir needs a directory}; shift 2 ;;
    *) die "unknown argument '$1' (see the comment at the top of $0)" ;;
  esac
done

if [ -z "$version" ]; then
  version=$(awk '/^\[workspace.package\]/ { p = 1; next } /^\[/ { p = 0 }
                 p && $1 == "version" { gsub(/"/, "", $3); print $3; exit }' "$repo/Cargo.toml")
fi
[[ $version =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || die "bad package version '$version'"
arch=$(dpkg --print-architecture)

for b in masif-agent masif-master masif-ui masif-pki masif; do
  [ -x "$bin_dir/$b" ] || die "$bin_dir/$b is missing: run cargo build --release -p $b first"
done
"$bin_dir/masif" demo --help >/dev/null 2>&1 &&
  die "$bin_dir/masif has the demo in it: build it with cargo build --release -p masif --no-default-features"

work=$(mktemp -d "${TMPDIR:-/tmp}/masif-debs.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$out_dir"

if [ -z "$man_dir" ]; then
  man_dir=$work/man
  cargo run --quiet --locked --release --manifest-path "$repo/Cargo.toml" -p masif-xtask -- man "$man_dir" ||
    die "generating the man pages failed"
fi
for b in masif-agent masif-master masif-ui masif-pki masif; do
  [ -s "$man_dir/$b.8" ] || die "$man_dir/$b.8 is missing or empty"
done

# put SRC DEST MODE: copy one file into the package tree being built ($stage).
put() { install -D -m "$3" "$1" "$stage$2"; }

# Starts a package tree: binary, man page, unit files, docs.
begin() {
  pkg=$1
  stage=$work/$pkg
  mkdir -p "$stage/DEBIAN"
  chmod 0755 "$stage" # dpkg applies the mode of the tree's root to the target's /
  put "$bin_dir/$pkg" "/usr/bin/$pkg" 0755
  strip --strip-unneeded "$stage/usr/bin/$pkg"
  gzip -9n <"$man_dir/$pkg.8" >"$work/$pkg.8.gz"
  put "$work/$pkg.8.gz" "/usr/share/man/man8/$pkg.8.gz" 0644
  put "$repo/packaging/debian/copyright" "/usr/share/doc/$pkg/copyright" 0644
  put "$repo/packaging/debian/$pkg.README.Debian" "/usr/share/doc/$pkg/README.Debian" 0644
}

# maintscripts SYSUSERS CONFIG CONFIG_GROUP UNITS [TMPFILES]: the generated maintainer scripts.
maintscripts() {
  local s
  for s in postinst prerm postrm; do
    sed -e "s|@PACKAGE@|$pkg|g" -e "s|@SYSUSERS@|$1|g" -e "s|@CONFIG@|$2|g" \
      -e "s|@CONFIG_GROUP@|$3|g" -e "s|@UNITS@|$4|g" -e "s|@TMPFILES@|${5:-}|g" \
      "$repo/packaging/debian/$s.in" >"$stage/DEBIAN/$s"
    chmod 0755 "$stage/DEBIAN/$s"
  done
}

# finish DEPENDS RECOMMENDS SUMMARY DESCRIPTION: control, conffiles, md5sums, the .deb.
finish() {
  local shlibs size deps
  # dpkg-shlibdeps wants to run in a source tree: give it an empty one.
  mkdir -p "$work/src-$pkg/debian"
  touch "$work/src-$pkg/debian/control"
  shlibs=$(cd "$work/src-$pkg" && dpkg-shlibdeps -O "$stage/usr/bin/$pkg" 2>/dev/null |
    sed -n 's/^shlibs:Depends=//p')
  deps=$shlibs${1:+, $1}
  size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
  {
    printf 'Package: %s\nVersion: %s\nArchitecture: %s\n' "$pkg" "$version" "$arch"
    printf 'Maintainer: Masif Upgrader developers <masif-upgrader@example.invalid>\n'
    printf 'Installed-Size: %s\nSection: admin\nPriority: optional\n' "$size"
    printf 'Homepage: https://example.invalid/masif-upgrader\n'
    printf 'Depends: %s\n' "$deps"
    [ -z "$2" ] || printf 'Recommends: %s\n' "$2"
    printf 'Description: %s\n' "$3"
    printf '%s\n' "$4" | fold -s -w 78 | sed -e 's/ *$//' -e 's/^/ /'
  } >"$stage/DEBIAN/control"
  # Everything under /etc is a conffile (a package may have none: masif).
  : >"$stage/DEBIAN/conffiles"
  [ ! -d "$stage/etc" ] || (cd "$stage" && find etc -type f | sed 's|^|/|' | sort) >"$stage/DEBIAN/conffiles"
  [ -s "$stage/DEBIAN/conffiles" ] || rm "$stage/DEBIAN/conffiles"
  (cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
    xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
  dpkg-deb --root-owner-group --build "$stage" "$out_dir/${pkg}_${version}_$arch.deb" >/dev/null
  printf '%s\n' "$out_dir/${pkg}_${version}_$arch.deb"
}

about="Masif Upgrader is a distributed update manager for fleets of Debian hosts: agents \
report the package actions an upgrade needs to a master, an administrator approves them \
in a browser UI, agents execute only what was approved."

begin masif-agent
put "$repo/packaging/systemd/masif-upgrader-agent.service" /lib/systemd/system/masif-upgrader-agent.service 0644
put "$repo/packaging/config/agent.yml" /etc/masif-upgrader/agent.yml 0644
put "$repo/packaging/config/agent.yml" /usr/share/doc/masif-agent/examples/agent.yml 0644
put "$repo/packaging/needrestart/masif-upgrader-agent.conf" /etc/needrestart/conf.d/masif-upgrader-agent.conf 0644
# The monitoring plugin under the original's name: masif-agent behaves as `masif-agent check`
# when called so. The Icinga 2 CheckCommands are an example: plugins-contrib.d is loaded
# unconditionally, and a site's own definitions of the same names would then fail to load.
mkdir -p "$stage/usr/lib/nagios/plugins"
ln -s ../../../bin/masif-agent "$stage/usr/lib/nagios/plugins/check_masifupgrader_agent"
put "$repo/packaging/icinga2/masif-upgrader.conf" /usr/share/doc/masif-agent/examples/icinga2/masif-upgrader.conf 0644
maintscripts "" "" "" masif-upgrader-agent.service
finish "apt" "" "Masif Upgrader agent (reports and runs approved package upgrades)" \
  "$about This package holds the agent, which runs on every managed host as root, plans \
upgrades with apt-get and executes the approved ones."

begin masif-master
put "$repo/packaging/systemd/masif-upgrader-master.service" /lib/systemd/system/masif-upgrader-master.service 0644
put "$repo/packaging/config/master.yml" /etc/masif-upgrader/master.yml 0640
put "$repo/packaging/config/master.yml" /usr/share/doc/masif-master/examples/master.yml 0644
put "$repo/packaging/grafana/masif-upgrader.json" /usr/share/doc/masif-master/examples/grafana-masif-upgrader.json 0644
put "$repo/packaging/sysusers/masif-master.conf" /usr/lib/sysusers.d/masif-master.conf 0644
put "$repo/packaging/tmpfiles/masif-master.conf" /usr/lib/tmpfiles.d/masif-master.conf 0644
for f in "$repo"/schema/*/*.sql; do
  put "$f" "/usr/share/masif-upgrader/schema/${f#"$repo/schema/"}" 0644
done
maintscripts masif-master.conf /etc/masif-upgrader/master.yml masif-master masif-upgrader-master.service \
  masif-master.conf
finish "systemd-sysusers, systemd-tmpfiles, tzdata" "" "Masif Upgrader master (agent-facing HTTPS API)" \
  "$about This package holds the master, which authenticates agents by their client \
certificates and keeps their tasks and the approvals in MySQL/MariaDB or SQLite."

begin masif-ui
put "$repo/packaging/systemd/masif-upgrader-ui.service" /lib/systemd/system/masif-upgrader-ui.service 0644
put "$repo/packaging/config/ui.yml" /etc/masif-upgrader/ui.yml 0640
put "$repo/packaging/config/ui.yml" /usr/share/doc/masif-ui/examples/ui.yml 0644
put "$repo/packaging/sysusers/masif-ui.conf" /usr/lib/sysusers.d/masif-ui.conf 0644
maintscripts masif-ui.conf /etc/masif-upgrader/ui.yml masif-ui masif-upgrader-ui.service
finish "systemd-sysusers, tzdata" "" "Masif Upgrader UI (browser approvals)" \
  "$about This package holds the web UI in which administrators review pending package \
actions and approve them for all hosts or chosen ones."

begin masif-pki
put "$repo/packaging/systemd/masif-pki-check@.service" "/lib/systemd/system/masif-pki-check@.service" 0644
put "$repo/packaging/systemd/masif-pki-check@.timer" "/lib/systemd/system/masif-pki-check@.timer" 0644
put "$repo/packaging/config/pki-check.conf" /etc/masif-upgrader/pki-check.conf 0644
put "$repo/packaging/config/pki-check.conf" /usr/share/doc/masif-pki/examples/pki-check.conf 0644
while IFS= read -r -d '' f; do
  put "$f" "/usr/share/masif-upgrader/pki/${f#"$repo/pki/"}" 0644
done < <(find "$repo/pki" -type f -print0 2>/dev/null)
maintscripts "" "" "" ""
finish "" "easy-rsa, openssl" "Masif Upgrader certificate tool (check, discover, easy-rsa)" \
  "$about This package holds masif-pki, which checks agent and master certificates from \
Puppet, Icinga 2 or easy-rsa before they break TLS, and makes a new PKI with easy-rsa."

begin masif
put "$repo/packaging/icinga2/masif-upgrader.conf" /usr/share/doc/masif/examples/icinga2/masif-upgrader.conf 0644
maintscripts "" "" "" ""
finish "" "" "Masif Upgrader command line (JSON API client, fleet check)" \
  "$about This package holds masif, the command line on the UI's JSON API (pending updates, \
approvals, agents, audit) and masif check-fleet, the Icinga/Nagios check of the whole fleet."
