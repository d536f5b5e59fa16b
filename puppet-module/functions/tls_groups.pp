# @summary The supplementary groups of a service that reads TLS files.
#
# The groups given, or else `['puppet']` when the files are discovered from Puppet on a
# host that has a `puppet` group (Debian's puppet packages: the key is puppet:puppet 0640).
#
# @param tls
#   The service's `tls` setting.
# @param groups
#   Groups chosen explicitly (undef: decide from tls).
# @return [Array[String[1]]] the groups for SupplementaryGroups=
function masif_upgrader::tls_groups(
  Masif_upgrader::Tls $tls,
  Optional[Array[String[1]]] $groups,
) >> Array[String[1]] {
  if $groups =~ NotUndef {
    $groups
  } elsif $tls['discover'] == 'puppet' and $facts['masif_upgrader_puppet_group'] == true {
    ['puppet']
  } else {
    []
  }
}
