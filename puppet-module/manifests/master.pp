# @summary The Masif Upgrader master: the HTTPS API agents report to.
#
# Writes /etc/masif-upgrader/master.yml (root:masif-master 0640) and runs
# masif-upgrader-master.service as the system user masif-master. By default it serves
# this host's Puppet certificate and checks agents against Puppet's CA; its service
# joins the `puppet` group (to read Puppet's key) where the host has one.
#
# @example MariaDB, password from Hiera (eyaml)
#   class { 'masif_upgrader::master':
#     db_url => Sensitive("mysql://masif:${lookup('masif_db_password')}@db.example.com:3306/masif_upgrader"),
#   }
#
# @param listen
#   Address agents connect to.
# @param api_v2
#   Serve protocol v2 (approvals reach waiting agents at once, run results are stored);
#   false: only v1, agents fall back to it.
# @param api_max_wait
#   Longest a v2 report is held waiting for an approval, in seconds (1 to 3600).
# @param tls
#   The master's certificate: `{ discover => ... }` or `{ cert, key, ca, crl }` files.
# @param db_url
#   `sqlite:///var/lib/masif-upgrader/masif.db` or `mysql://user:password@host:port/db`;
#   pass it as Sensitive when it holds a password.
# @param runs_keep
#   Newest results of package runs kept per agent (at least 1).
# @param runs_max_age_days
#   Results of runs that started longer ago than this many days are deleted (1 to 36500).
# @param log_level
#   `error`, `warning`, `info` or `debug`.
# @param install
#   `package`, `binary` (from binary_source) or `none`.
# @param package_ensure
#   `ensure` of the masif-master package.
# @param binary_source
#   Where to copy the binary from when install is `binary`.
# @param supplementary_groups
#   Groups for the service; default: `['puppet']` when discovering Puppet's certificate
#   on a host that has that group, else none.
# @param manage_service
#   Whether to manage masif-upgrader-master.service.
# @param service_ensure
#   `running` or `stopped`.
# @param certificate_check
#   Whether to check the certificate daily with masif-pki (masif-pki-check@master.timer,
#   arguments from the tls setting).
# @param service_enable
#   Whether the master starts at boot.
class masif_upgrader::master (
  Masif_upgrader::Listen $listen = '0.0.0.0:8150',
  Boolean $api_v2 = true,
  Integer[1, 3600] $api_max_wait = 900,
  Masif_upgrader::Tls $tls = { 'discover' => 'puppet' },
  Masif_upgrader::Db_url $db_url = 'sqlite:///var/lib/masif-upgrader/masif.db',
  Integer[1] $runs_keep = 50,
  Integer[1, 36500] $runs_max_age_days = 90,
  Masif_upgrader::Log_level $log_level = 'info',
  Masif_upgrader::Install $install = 'package',
  String[1] $package_ensure = 'installed',
  Optional[String[1]] $binary_source = undef,
  Optional[Array[String[1]]] $supplementary_groups = undef,
  Boolean $manage_service = true,
  Enum['running', 'stopped'] $service_ensure = 'running',
  Boolean $service_enable = true,
  Boolean $certificate_check = false,
) {
  masif_upgrader::component { 'master':
    config               => Sensitive(epp('masif_upgrader/master.yml.epp', {
          'listen'            => $listen,
          'api_v2'            => $api_v2,
          'api_max_wait'      => $api_max_wait,
          'tls'               => $tls,
          'db_url'            => $db_url.unwrap,
          'runs_keep'         => $runs_keep,
          'runs_max_age_days' => $runs_max_age_days,
          'log_level'         => $log_level,
    })),
    config_group         => 'masif-master',
    install              => $install,
    package_ensure       => $package_ensure,
    binary_source        => $binary_source,
    supplementary_groups => masif_upgrader::tls_groups($tls, $supplementary_groups),
    manage_service       => $manage_service,
    service_ensure       => $service_ensure,
    service_enable       => $service_enable,
  }

  if $certificate_check {
    masif_upgrader::certificate_check { 'master':
      tls             => $tls,
      user            => 'masif-master',
      install_package => $install == 'package',
      manage_service  => $manage_service,
    }
  }
}
