# @summary Settings shared by every Masif Upgrader component on a host.
#
# Included by masif_upgrader::agent, masif_upgrader::master and masif_upgrader::ui;
# declare it yourself only to change `root`.
#
# @param root
#   A directory prepended to every path this module manages, to prepare an image or a
#   chroot (or to try the module in a scratch directory). Services are not managed when
#   it is set. Empty (the default) means the running system.
class masif_upgrader (
  Variant[Enum[''], Masif_upgrader::Path] $root = '',
) {
  file { "${root}/etc/masif-upgrader":
    ensure => directory,
    owner  => 'root',
    group  => 'root',
    mode   => '0755',
  }
}
