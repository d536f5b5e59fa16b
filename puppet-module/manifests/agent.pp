# @summary The Masif Upgrader agent: reports pending package actions, runs approved ones.
#
# Writes /etc/masif-upgrader/agent.yml and runs masif-upgrader-agent.service (as root:
# apt-get needs it). By default the agent uses this host's Puppet certificate
# (`tls => { discover => 'puppet' }`), and its service joins the `puppet` group where
# the host has one (see the fact masif_upgrader_puppet_group).
#
# @example Every host reports to one master
#   class { 'masif_upgrader::agent':
#     master_host => 'masif.example.com:8150',
#   }
#
# @example Two masters: each agent uses one, and the other when it does not answer
#   class { 'masif_upgrader::agent':
#     master_hosts => ['masif1.example.com:8150', 'masif2.example.com:8150'],
#     master_cn    => 'masif.example.com',
#   }
#
# @param master_host
#   The master's API as `host:port`. Give this or master_hosts.
# @param master_hosts
#   Several masters (1 to 16 distinct `host:port`) serving the same database: the agent
#   starts with one drawn at random and moves to the next when it does not answer. Needs
#   master_cn. Give this or master_host.
# @param master_cn
#   The name every master's certificate must carry; default with master_host: its host part.
# @param tls
#   This host's client certificate: `{ discover => 'puppet' | 'icinga2' | 'easyrsa:<dir>' }`
#   (optionally with `name` and `root`), or `{ cert, key, ca }` files.
# @param check_interval
#   Seconds between plans while nothing is pending.
# @param report_interval
#   Seconds between reports while tasks are pending.
# @param retry_interval
#   Seconds to wait after a failure; 0 makes the agent exit on the first error.
# @param max_failures
#   After this many failed runs in a row of the same plan a package is not retried until
#   it is approved again or its plan changes (0 to 1000); 0: retry forever.
# @param tags
#   This host's tags (at most 32, distinct; each 1 to 64 characters of A-Z a-z 0-9 . _ -,
#   starting with a letter or digit), sent to the master with every report: approvals,
#   maintenance windows, max in flight and roll-out rings go by tag. Empty: none.
# @param apt_path
#   The apt-get to run.
# @param apt_options
#   Extra apt-get arguments.
# @param apt_env
#   Extra environment for apt-get, e.g. `{ 'APT_CONFIG' => '/srv/sandbox/apt.conf' }`.
# @param apt_timeout
#   Longest a real upgrade may run, in seconds (at least 10); undef: the agent's default.
# @param socket
#   The local monitoring socket.
# @param log_level
#   `error`, `warning`, `info` or `debug`.
# @param install
#   `package`, `binary` (from binary_source) or `none`.
# @param package_ensure
#   `ensure` of the masif-agent package.
# @param binary_source
#   Where to copy the binary from when install is `binary`.
# @param supplementary_groups
#   Groups for the service; default: `['puppet']` when discovering Puppet's certificate
#   on a host that has that group, else none.
# @param manage_service
#   Whether to manage masif-upgrader-agent.service.
# @param service_ensure
#   `running` or `stopped`.
# @param certificate_check
#   Whether to check the certificate daily with masif-pki (masif-pki-check@agent.timer,
#   arguments from the tls setting).
# @param service_enable
#   Whether the agent starts at boot.
# @param icinga2_commands
#   Whether to install the Icinga 2 CheckCommands (masif-agent, masifupgrader_agent,
#   masif-fleet, masif-pki) at icinga2_commands_path, for an Icinga 2 that loads that
#   directory (reload it yourself, e.g. `File[...] ~> Service['icinga2']`). Off: the file is
#   not managed.
# @param icinga2_commands_path
#   Where the CheckCommands go, e.g. a global zone's directory on the Icinga master.
class masif_upgrader::agent (
  Optional[Pattern[/\A[A-Za-z0-9.\[\]:-]+:\d{1,5}\z/]] $master_host = undef,
  Optional[Array[Pattern[/\A[A-Za-z0-9.\[\]:-]+:\d{1,5}\z/], 1, 16]] $master_hosts = undef,
  Optional[Pattern[/\A[A-Za-z0-9*][A-Za-z0-9.*_-]*\z/]] $master_cn = undef,
  Masif_upgrader::Tls $tls = { 'discover' => 'puppet' },
  Integer[1] $check_interval = 300,
  Integer[1] $report_interval = 300,
  Integer[0] $retry_interval = 60,
  Integer[0, 1000] $max_failures = 3,
  Array[Pattern[/\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\z/], 0, 32] $tags = [],
  Masif_upgrader::Path $apt_path = '/usr/bin/apt-get',
  Array[String[1]] $apt_options = [],
  Hash[Pattern[/\A[A-Za-z_][A-Za-z0-9_]*\z/], String] $apt_env = {},
  Optional[Integer[10, 604800]] $apt_timeout = undef,
  Masif_upgrader::Path $socket = '/run/masif-upgrader-agent/agent.sock',
  Masif_upgrader::Log_level $log_level = 'info',
  Masif_upgrader::Install $install = 'package',
  String[1] $package_ensure = 'installed',
  Optional[String[1]] $binary_source = undef,
  Optional[Array[String[1]]] $supplementary_groups = undef,
  Boolean $manage_service = true,
  Enum['running', 'stopped'] $service_ensure = 'running',
  Boolean $service_enable = true,
  Boolean $certificate_check = false,
  Boolean $icinga2_commands = false,
  Masif_upgrader::Path $icinga2_commands_path = '/etc/icinga2/conf.d/masif-upgrader.conf',
) {
  if $master_host == undef and $master_hosts == undef {
    fail('masif_upgrader::agent: needs master_host (one master) or master_hosts (several)')
  }
  if $master_host != undef and $master_hosts != undef {
    fail('masif_upgrader::agent: give master_host (one master) or master_hosts (several), not both')
  }
  if $master_hosts != undef {
    if $master_hosts.map |$h| { downcase($h) }.unique.length != $master_hosts.length {
      fail("masif_upgrader::agent: master_hosts ${master_hosts} name a master more than once")
    }
    if $master_cn == undef {
      fail('masif_upgrader::agent: master_hosts needs master_cn, the name every master\'s certificate carries')
    }
  }
  $cn = $master_cn ? {
    undef   => regsubst($master_host, /:\d+\z/, ''),
    default => $master_cn,
  }

  if $tags.unique != $tags {
    fail("masif_upgrader::agent: tags ${tags} name a tag more than once")
  }

  masif_upgrader::component { 'agent':
    config               => epp('masif_upgrader/agent.yml.epp', {
        'check_interval'  => $check_interval,
        'report_interval' => $report_interval,
        'retry_interval'  => $retry_interval,
        'max_failures'    => $max_failures,
        'tags'            => $tags,
        'master_host'     => $master_host,
        'master_hosts'    => $master_hosts,
        'master_cn'       => $cn,
        'tls'             => $tls,
        'apt_path'        => $apt_path,
        'apt_options'     => $apt_options,
        'apt_env'         => $apt_env,
        'apt_timeout'     => $apt_timeout,
        'socket'          => $socket,
        'log_level'       => $log_level,
    }),
    config_group         => 'root',
    install              => $install,
    package_ensure       => $package_ensure,
    binary_source        => $binary_source,
    supplementary_groups => masif_upgrader::tls_groups($tls, $supplementary_groups),
    manage_service       => $manage_service,
    service_ensure       => $service_ensure,
    service_enable       => $service_enable,
  }

  if $certificate_check {
    masif_upgrader::certificate_check { 'agent':
      tls             => $tls,
      user            => undef,
      install_package => $install == 'package',
      manage_service  => $manage_service,
    }
  }

  if $icinga2_commands {
    include masif_upgrader
    file { "${masif_upgrader::root}${icinga2_commands_path}":
      ensure => file,
      source => 'puppet:///modules/masif_upgrader/icinga2/masif-upgrader.conf',
      owner  => 'root',
      group  => 'root',
      mode   => '0644',
    }
  }
}
