# @summary A daily `masif-pki check` of the certificate a role uses (title: agent or master).
#
# Writes /etc/masif-upgrader/pki-check-<role>.conf with the arguments that match the
# role's `tls` setting and runs masif-pki-check@<role>.timer: the check's unit fails (and
# says why in the journal) before a certificate or CRL expires or when a file is wrong.
# Declared by the agent and master classes when their `certificate_check` is true.
#
# @param tls
#   The role's `tls` setting.
# @param user
#   The service user that must be able to read the files (the master's), if not root.
# @param install_package
#   Whether to install the masif-pki package (with masif_upgrader::pki).
# @param manage_service
#   Whether to run the timer (never when masif_upgrader::root is set).
define masif_upgrader::certificate_check (
  Masif_upgrader::Tls $tls,
  Optional[String[1]] $user = undef,
  Boolean $install_package = true,
  Boolean $manage_service = true,
) {
  assert_type(Enum['agent', 'master'], $title)
  include masif_upgrader
  $root = $masif_upgrader::root
  $conf = "${root}/etc/masif-upgrader/pki-check-${title}.conf"

  if $install_package {
    include masif_upgrader::pki
    Class['masif_upgrader::pki'] -> File[$conf]
  }
  $args = masif_upgrader::pki_check_args($tls, $user)
  file { $conf:
    ensure  => file,
    content => "# Managed by Puppet (masif_upgrader): arguments of masif-pki-check@${title}.service\nMASIF_PKI_CHECK_ARGS=${args}\n",
    owner   => 'root',
    group   => 'root',
    mode    => '0644',
    require => File["${root}/etc/masif-upgrader"],
  }
  if $manage_service and $root == '' {
    service { "masif-pki-check@${title}.timer":
      ensure  => running,
      enable  => true,
      require => File[$conf],
    }
  }
}
