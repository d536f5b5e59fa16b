# @summary The `tls:` key of agent.yml and master.yml.
#
# Either a PKI to discover the host's certificate in (optionally with the certificate name
# and a root prefix), or explicit PEM files (the CRL is optional).
type Masif_upgrader::Tls = Variant[
  Struct[{
    discover       => Masif_upgrader::Discover,
    Optional[name] => Pattern[/\A[A-Za-z0-9_][A-Za-z0-9._-]{0,252}\z/],
    Optional[root] => Masif_upgrader::Path,
  }],
  Struct[{
    cert          => Masif_upgrader::Path,
    key           => Masif_upgrader::Path,
    ca            => Masif_upgrader::Path,
    Optional[crl] => Masif_upgrader::Path,
  }],
]
