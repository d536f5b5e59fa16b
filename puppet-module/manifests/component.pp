# @summary One Masif Upgrader daemon: install it, write its configuration, run its service.
#
# Shared by the agent, master and UI classes; not meant to be declared directly.
#
# @param config
#   The content of /etc/masif-upgrader/<title>.yml.
# @param config_group
#   Group that may read the configuration (it may hold a database password).
# @param install
#   `package`: the Debian package masif-<title>; `binary`: copy `binary_source` to
#   /usr/local/bin and install the systemd unit (and system users) the package would
#   ship; `none`: the binary is already there.
# @param package_ensure
#   `ensure` of the package (`installed`, `latest` or a version).
# @param binary_source
#   A `source` for the binary (puppet:///, https://, or a local path); needed for `binary`.
# @param secret_files
#   More files the service reads (path => content), written root:config_group 0640.
# @param supplementary_groups
#   Extra groups for the service (a systemd drop-in), e.g. `puppet` to read Puppet's key.
# @param manage_service
#   Whether to manage the systemd service (never when masif_upgrader::root is set).
# @param service_ensure
#   `running` or `stopped`.
# @param service_enable
#   Whether the service starts at boot.
define masif_upgrader::component (
  Variant[String[1], Sensitive[String[1]]] $config,
  String[1] $config_group,
  Masif_upgrader::Install $install,
  String[1] $package_ensure,
  Optional[String[1]] $binary_source,
  Array[String[1]] $supplementary_groups,
  Boolean $manage_service,
  Enum['running', 'stopped'] $service_ensure,
  Boolean $service_enable,
  Hash[Masif_upgrader::Path, Sensitive[String]] $secret_files = {},
) {
  assert_type(Enum['agent', 'master', 'ui'], $title)
  include masif_upgrader
  $root = $masif_upgrader::root
  $program = "masif-${title}"
  $unit = "masif-upgrader-${title}.service"
  $config_mode = $config_group ? { 'root' => '0644', default => '0640' }

  case $install {
    'package': {
      package { $program:
        ensure => $package_ensure,
        before => File["${root}/etc/masif-upgrader/${title}.yml"],
      }
      $installed = [Package[$program]]
    }
    'binary': {
      if $binary_source == undef {
        fail("masif_upgrader::${title}: install => 'binary' needs binary_source")
      }
      file { "${root}/usr/local/bin/${program}":
        ensure => file,
        source => $binary_source,
        owner  => 'root',
        group  => 'root',
        mode   => '0755',
      }
      # The unit the package ships, pointed at the copied binary.
      file { "${root}/etc/systemd/system/${unit}":
        ensure  => file,
        content => regsubst(file("masif_upgrader/${unit}"), '/usr/bin/', '/usr/local/bin/', 'G'),
        owner   => 'root',
        group   => 'root',
        mode    => '0644',
      }
      $installed = [File["${root}/usr/local/bin/${program}"], File["${root}/etc/systemd/system/${unit}"]]
      if $title != 'agent' {
        # The system users the package would create, with the same sysusers.d file, in
        # the same place (/usr/lib/sysusers.d is there on every systemd host).
        file { "${root}/usr/lib/sysusers.d/${program}.conf":
          ensure => file,
          source => "puppet:///modules/masif_upgrader/${program}.conf",
          owner  => 'root',
          group  => 'root',
          mode   => '0644',
        }
        $sysusers_root = $root ? { '' => '', default => "--root=${shellquote($root)} " }
        exec { "masif_upgrader: system users of ${program}":
          command => "systemd-sysusers ${sysusers_root}${program}.conf",
          unless  => "grep -q '^${program}:' ${shellquote("${root}/etc/passwd")}",
          path    => ['/usr/bin', '/bin', '/usr/sbin', '/sbin'],
          require => File["${root}/usr/lib/sysusers.d/${program}.conf"],
          before  => File["${root}/etc/masif-upgrader/${title}.yml"],
        }
      }
    }
    default: {
      $installed = []
    }
  }

  file { "${root}/etc/masif-upgrader/${title}.yml":
    ensure  => file,
    content => $config,
    owner   => 'root',
    group   => $config_group,
    mode    => $config_mode,
    require => File["${root}/etc/masif-upgrader"],
  }

  $secret_files.each |$path, $content| {
    file { "${root}${path}":
      ensure  => file,
      content => $content,
      owner   => 'root',
      group   => $config_group,
      mode    => '0640',
      require => File["${root}/etc/masif-upgrader/${title}.yml"],
    }
  }

  $dropin_dir = "${root}/etc/systemd/system/${unit}.d"
  if $supplementary_groups.empty {
    file { "${dropin_dir}/masif-upgrader-groups.conf":
      ensure => absent,
    }
  } else {
    file { $dropin_dir:
      ensure => directory,
      owner  => 'root',
      group  => 'root',
      mode   => '0755',
    }
    file { "${dropin_dir}/masif-upgrader-groups.conf":
      ensure  => file,
      content => "# Managed by Puppet (masif_upgrader)\n[Service]\nSupplementaryGroups=${supplementary_groups.join(' ')}\n",
      owner   => 'root',
      group   => 'root',
      mode    => '0644',
    }
  }

  if $manage_service and $root == '' {
    service { $unit:
      ensure    => $service_ensure,
      enable    => $service_enable,
      subscribe => $installed + [
        File["${root}/etc/masif-upgrader/${title}.yml"],
        File["${dropin_dir}/masif-upgrader-groups.conf"],
      ] + $secret_files.keys.map |$path| { File["${root}${path}"] },
    }
  }
}
