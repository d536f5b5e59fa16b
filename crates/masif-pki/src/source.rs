//! The `tls:` key shared by master and agent configs: explicit files or a PKI to discover.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{PkiError, Result};
use crate::tls::TlsFiles;

/// Which side of the connection a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Presents a client certificate (EKU clientAuth) to the master.
    Agent,
    /// Serves TLS (EKU serverAuth) to the agents.
    Master,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Agent => "agent",
            Role::Master => "master",
        })
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "agent" => Ok(Role::Agent),
            "master" => Ok(Role::Master),
            other => Err(format!("unknown role {other:?} (agent or master)")),
        }
    }
}

/// A PKI that masif-pki knows how to find files in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discover {
    /// Puppet's ssldir (`/etc/puppetlabs/puppet/ssl` or Debian's `/var/lib/puppet/ssl`).
    Puppet,
    /// Icinga 2's `/var/lib/icinga2/certs` (or the pre-2.8 `/etc/icinga2/pki`).
    Icinga2,
    /// An easy-rsa PKI directory (`ca.crt`, `issued/`, `private/`, `crl.pem`).
    EasyRsa(PathBuf),
}

impl fmt::Display for Discover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Discover::Puppet => f.write_str("puppet"),
            Discover::Icinga2 => f.write_str("icinga2"),
            Discover::EasyRsa(dir) => write!(f, "easyrsa:{}", dir.display()),
        }
    }
}

impl FromStr for Discover {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "puppet" => Ok(Discover::Puppet),
            "icinga2" => Ok(Discover::Icinga2),
            _ => match s.strip_prefix("easyrsa:") {
                Some("") => Err(
                    "easyrsa: needs the PKI directory, e.g. easyrsa:/etc/masif-upgrader/pki".into(),
                ),
                Some(dir) => Ok(Discover::EasyRsa(PathBuf::from(dir))),
                None => Err(format!(
                    "unknown discover source {s:?} (puppet, icinga2 or easyrsa:<dir>)"
                )),
            },
        }
    }
}

impl<'de> Deserialize<'de> for Discover {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Discover {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Where to discover certificates, with optional overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiscoverRequest {
    pub discover: Discover,
    /// The certname / NodeName / easy-rsa entity name; default: from the PKI's config or the FQDN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A prefix put before every default path (as if the tree were mounted there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
}

/// The `tls:` configuration value: `{cert, key, ca, crl?}` or `{discover, name?, root?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawTlsSource", untagged)]
pub enum TlsSource {
    Files(TlsFiles),
    Discover(DiscoverRequest),
}

/// The union of both shapes, so unknown keys and mixed shapes get precise messages.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsSource {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    crl: Option<PathBuf>,
    discover: Option<Discover>,
    name: Option<String>,
    root: Option<PathBuf>,
}

impl TryFrom<RawTlsSource> for TlsSource {
    type Error = String;
    fn try_from(raw: RawTlsSource) -> std::result::Result<Self, String> {
        let file_keys = [
            ("cert", raw.cert.is_some()),
            ("key", raw.key.is_some()),
            ("ca", raw.ca.is_some()),
            ("crl", raw.crl.is_some()),
        ];
        let given: Vec<&str> = file_keys
            .iter()
            .filter(|(_, g)| *g)
            .map(|(k, _)| *k)
            .collect();
        match raw.discover {
            Some(discover) => {
                if !given.is_empty() {
                    return Err(format!(
                        "give either `discover` or cert/key/ca files, not both (found {})",
                        given.join(", ")
                    ));
                }
                if raw.name.as_deref().is_some_and(|n| !valid_name(n)) {
                    return Err(format!(
                        "`name` {:?} is not a valid certificate name",
                        raw.name.unwrap_or_default()
                    ));
                }
                Ok(TlsSource::Discover(DiscoverRequest {
                    discover,
                    name: raw.name,
                    root: raw.root,
                }))
            }
            None => {
                if raw.name.is_some() || raw.root.is_some() {
                    return Err("`name` and `root` only go with `discover`".into());
                }
                let (Some(cert), Some(key), Some(ca)) = (raw.cert, raw.key, raw.ca) else {
                    let missing: Vec<&str> = file_keys[..3]
                        .iter()
                        .filter(|(_, g)| !*g)
                        .map(|(k, _)| *k)
                        .collect();
                    return Err(format!(
                        "missing {} (or use `discover: puppet | icinga2 | easyrsa:<dir>`)",
                        missing.join(", ")
                    ));
                };
                Ok(TlsSource::Files(TlsFiles {
                    cert,
                    key,
                    ca,
                    crl: raw.crl,
                }))
            }
        }
    }
}

/// A certificate name usable as a file name: host-name characters only, no path tricks.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// The largest daemon configuration file [`TlsSource::from_config_file`] reads.
const MAX_CONFIG_SIZE: u64 = 1024 * 1024;

impl TlsSource {
    /// The `tls:` key of a `masif-master` or `masif-agent` YAML configuration file (other
    /// keys are not looked at), so `masif-pki check --config` checks what the daemon will use.
    pub fn from_config_file(path: &Path) -> Result<TlsSource> {
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_CONFIG_SIZE + 1).read_to_string(&mut text))
            .map_err(|e| PkiError::read(path, e))?;
        if text.len() as u64 > MAX_CONFIG_SIZE {
            return Err(PkiError::invalid(
                path,
                format!("larger than {MAX_CONFIG_SIZE} bytes"),
            ));
        }
        let document: serde_yaml::Value = serde_yaml::from_str(&text)
            .map_err(|e| PkiError::invalid(path, format!("not valid YAML: {e}")))?;
        let tls = document
            .get("tls")
            .ok_or_else(|| PkiError::invalid(path, "has no `tls:` key"))?;
        TlsSource::deserialize(tls.clone())
            .map_err(|e| PkiError::invalid(path, format!("tls: {e}")))
    }

    /// The files to use for `role`: explicit files as given, or found by discovery.
    pub fn resolve(&self, role: Role) -> Result<TlsFiles> {
        match self {
            TlsSource::Files(files) => Ok(files.clone()),
            TlsSource::Discover(request) => {
                crate::discover::discover(request, role).map(|d| d.files)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn parse(yaml: &str) -> std::result::Result<TlsSource, String> {
        serde_yaml::from_str::<TlsSource>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn explicit_files_parse() {
        let source = parse("cert: /a.pem\nkey: /a.key\nca: /ca.pem\ncrl: /crl.pem\n").unwrap();
        assert_eq!(
            source,
            TlsSource::Files(TlsFiles {
                cert: "/a.pem".into(),
                key: "/a.key".into(),
                ca: "/ca.pem".into(),
                crl: Some("/crl.pem".into()),
            })
        );
        assert_eq!(
            source.resolve(Role::Agent).unwrap().cert,
            PathBuf::from("/a.pem")
        );
    }

    #[rstest]
    #[case("discover: puppet", Discover::Puppet, None, None)]
    #[case(
        "{discover: icinga2, name: node1.example.com}",
        Discover::Icinga2,
        Some("node1.example.com"),
        None
    )]
    #[case("{discover: \"easyrsa:/etc/masif/pki\", root: /srv/x}", Discover::EasyRsa("/etc/masif/pki".into()), None, Some("/srv/x"))]
    fn discover_forms_parse(
        #[case] yaml: &str,
        #[case] discover: Discover,
        #[case] name: Option<&str>,
        #[case] root: Option<&str>,
    ) {
        assert_eq!(
            parse(yaml).unwrap(),
            TlsSource::Discover(DiscoverRequest {
                discover,
                name: name.map(String::from),
                root: root.map(PathBuf::from),
            })
        );
    }

    #[rstest]
    #[case::unknown_key("cert: a\nkey: b\nca: c\nkeyfile: d", "unknown field `keyfile`")]
    #[case::missing_key("cert: a\nca: c", "missing key")]
    #[case::missing_all("crl: a", "missing cert, key, ca")]
    #[case::both_shapes("discover: puppet\ncert: a", "not both (found cert)")]
    #[case::unknown_source("discover: vault", "unknown discover source \"vault\"")]
    #[case::empty_easyrsa("discover: \"easyrsa:\"", "needs the PKI directory")]
    #[case::name_without_discover("cert: a\nkey: b\nca: c\nname: x", "only go with `discover`")]
    #[case::path_in_name(
        "{discover: puppet, name: ../../etc/shadow}",
        "not a valid certificate name"
    )]
    #[case::not_a_map("puppet", "")]
    #[case::wrong_type("discover: [puppet]", "")]
    fn malformed_tls_values_are_refused(#[case] yaml: &str, #[case] expected: &str) {
        let err = parse(yaml).unwrap_err();
        assert!(err.contains(expected), "{err:?} lacks {expected:?}");
    }

    #[rstest]
    #[case::files("api: { listen: x }\ntls:\n  cert: /c\n  key: /k\n  ca: /a\n", None)]
    #[case::discover("interval: {check: 1}\ntls: { discover: icinga2 }\n", None)]
    #[case::no_tls("api: {}\n", Some("has no `tls:` key"))]
    #[case::bad_tls("tls: { discover: vault }\n", Some("tls: unknown discover source"))]
    #[case::not_yaml("tls: [unclosed\n", Some("not valid YAML"))]
    #[case::alias_bomb("a: &a [x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\ntls: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n", Some("repetition limit exceeded"))]
    fn tls_key_of_a_daemon_config(#[case] yaml: &str, #[case] error: Option<&str>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.yml");
        std::fs::write(&path, yaml).unwrap();
        match (TlsSource::from_config_file(&path), error) {
            (Ok(_), None) => {}
            (Err(e), Some(expected)) => {
                let text = e.to_string();
                assert!(
                    text.contains(expected) && text.contains("daemon.yml"),
                    "{text}"
                );
            }
            (other, _) => panic!("{yaml:?}: {other:?}"),
        }
    }

    #[test]
    fn discover_round_trips_through_its_text_form() {
        for text in ["puppet", "icinga2", "easyrsa:/x/y"] {
            assert_eq!(text.parse::<Discover>().unwrap().to_string(), text);
        }
    }
}
