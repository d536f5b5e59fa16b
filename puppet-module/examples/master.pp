# The master and the UI on one host, sharing an SQLite database; the UI behind an
# authenticating reverse proxy on the same host.
class { 'masif_upgrader::master':
}
class { 'masif_upgrader::ui':
  trusted_header => { 'name' => 'X-Remote-User', 'from' => ['127.0.0.1'] },
}
