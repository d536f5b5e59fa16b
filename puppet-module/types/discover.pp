# @summary A PKI whose files masif-pki can discover: `puppet`, `icinga2` or `easyrsa:<dir>`.
type Masif_upgrader::Discover = Variant[Enum['puppet', 'icinga2'], Pattern[/\Aeasyrsa:\/[^\n\0]*\z/]]
