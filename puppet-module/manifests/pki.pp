# @summary The masif-pki package, for the daily certificate checks.
#
# Included by masif_upgrader::certificate_check; declare it to choose the package version.
#
# @param package_ensure
#   `ensure` of the masif-pki package.
class masif_upgrader::pki (
  String[1] $package_ensure = 'installed',
) {
  package { 'masif-pki':
    ensure => $package_ensure,
  }
}
