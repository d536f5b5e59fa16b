# @summary The `masif-pki check` arguments that check the certificate a service uses.
#
# @param tls
#   The service's `tls` setting.
# @param user
#   The service user that must be able to read the files, if not root.
# @return [String] arguments for MASIF_PKI_CHECK_ARGS (split on white space by systemd)
function masif_upgrader::pki_check_args(
  Masif_upgrader::Tls $tls,
  Optional[String[1]] $user,
) >> String {
  $files = ['cert', 'key', 'ca', 'crl'].filter |$key| { $key in $tls }
  $source = $tls['discover'] ? {
    undef   => $files.map |$key| { "--${key}=${tls[$key]}" },
    default => ["--source=${tls['discover']}"] + ['name', 'root'].filter |$key| { $key in $tls }.map |$key| {
      "--${key}=${tls[$key]}"
    },
  }
  $args = $source + ($user ? { undef => [], default => ["--user=${user}"] })
  $args.each |$arg| {
    if $arg =~ /\s/ {
      fail("masif_upgrader: the certificate check cannot take a path with white space: ${arg}")
    }
  }
  $args.join(' ')
}
