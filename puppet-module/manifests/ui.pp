# @summary The Masif Upgrader browser UI, where administrators approve pending actions.
#
# Writes /etc/masif-upgrader/ui.yml (root:masif-ui 0640), optionally the password file,
# and runs masif-upgrader-ui.service as the system user masif-ui.
#
# @example Next to the master, SQLite, one administrator (hash from `htpasswd -nB admin`)
#   class { 'masif_upgrader::ui':
#     users => { 'admin' => Sensitive('$2y$05$...') },
#   }
#
# @param listen
#   Address the UI serves on.
# @param db_url
#   The master's database; pass it as Sensitive when it holds a password.
# @param htpasswd
#   Password file (`user:hash` lines, bcrypt or argon2). Default:
#   /etc/masif-upgrader/ui.htpasswd, unless only trusted_header is set.
# @param users
#   When not empty, the content of the htpasswd file: user name => password hash.
# @param trusted_header
#   Trust a user name set by an authenticating reverse proxy:
#   `{ name => 'X-Remote-User', from => ['127.0.0.1'] }`.
# @param tls
#   Serve HTTPS with `{ cert, key }` files.
# @param offline_after
#   Seconds without a report after which an agent is shown offline (60 to 31536000); keep
#   it above the agents' report_interval plus a minute.
# @param summary_check_interval
#   Seconds between two checks of the pending overview's maintained counts against the
#   task rows (the first when the UI starts): 0 for never, or 10 to 604800.
# @param log_level
#   `error`, `warning`, `info` or `debug`.
# @param install
#   `package`, `binary` (from binary_source) or `none`.
# @param package_ensure
#   `ensure` of the masif-ui package.
# @param binary_source
#   Where to copy the binary from when install is `binary`.
# @param manage_service
#   Whether to manage masif-upgrader-ui.service.
# @param service_ensure
#   `running` or `stopped`.
# @param service_enable
#   Whether the UI starts at boot.
class masif_upgrader::ui (
  Masif_upgrader::Listen $listen = '127.0.0.1:8151',
  Masif_upgrader::Db_url $db_url = 'sqlite:///var/lib/masif-upgrader/masif.db',
  Optional[Masif_upgrader::Path] $htpasswd = undef,
  Hash[Pattern[/\A[^:\s]+\z/], Variant[
      Pattern[/\A\$(2[aby]|argon2(id|i|d))\$[^\s]+\z/],
      Sensitive[Pattern[/\A\$(2[aby]|argon2(id|i|d))\$[^\s]+\z/]],
  ]] $users = {},
  Optional[Struct[{ name => Pattern[/\A[A-Za-z0-9-]+\z/], from => Array[String[1], 1] }]] $trusted_header = undef,
  Optional[Struct[{ cert => Masif_upgrader::Path, key => Masif_upgrader::Path }]] $tls = undef,
  Integer[60, 31536000] $offline_after = 900,
  Variant[Integer[0, 0], Integer[10, 604800]] $summary_check_interval = 600,
  Masif_upgrader::Log_level $log_level = 'info',
  Masif_upgrader::Install $install = 'package',
  String[1] $package_ensure = 'installed',
  Optional[String[1]] $binary_source = undef,
  Boolean $manage_service = true,
  Enum['running', 'stopped'] $service_ensure = 'running',
  Boolean $service_enable = true,
) {
  if $htpasswd != undef {
    $password_file = $htpasswd
  } elsif $trusted_header == undef or !$users.empty {
    $password_file = '/etc/masif-upgrader/ui.htpasswd'
  } else {
    $password_file = undef
  }

  masif_upgrader::component { 'ui':
    config               => Sensitive(epp('masif_upgrader/ui.yml.epp', {
          'listen'                 => $listen,
          'db_url'                 => $db_url.unwrap,
          'htpasswd'               => $password_file,
          'trusted_header'         => $trusted_header,
          'tls'                    => $tls,
          'offline_after'          => $offline_after,
          'summary_check_interval' => $summary_check_interval,
          'log_level'              => $log_level,
    })),
    config_group         => 'masif-ui',
    install              => $install,
    package_ensure       => $package_ensure,
    binary_source        => $binary_source,
    supplementary_groups => [],
    secret_files         => $users.empty ? {
      true    => {},
      default => {
        $password_file => Sensitive($users.map |$user, $hash| { "${user}:${hash.unwrap}\n" }.join('')),
      },
    },
    manage_service       => $manage_service,
    service_ensure       => $service_ensure,
    service_enable       => $service_enable,
  }
}
