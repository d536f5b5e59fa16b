# @summary Verbosity of a Masif Upgrader daemon (`log.level`).
type Masif_upgrader::Log_level = Enum['error', 'warning', 'info', 'debug']
