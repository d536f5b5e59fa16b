# @summary How a component gets onto the host: its Debian package, a binary copied from
# a source (with the systemd unit the package would ship), or not at all.
type Masif_upgrader::Install = Enum['package', 'binary', 'none']
