//! The UI's YAML configuration file: parsing (unknown keys rejected), validation that reports
//! every problem with its key and file, and turning a valid file into [`UiSettings`].

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::auth::htpasswd::Users;
use crate::auth::TrustedHeader;
use crate::{tls, UiSettings};

/// Default idle lifetime of a login session, seconds.
pub const DEFAULT_SESSION_TTL: u64 = 12 * 3600;

/// The file as written, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub listen: String,
    pub db: DbSection,
    pub auth: AuthSection,
    #[serde(default)]
    pub tls: Option<TlsSection>,
    #[serde(default)]
    pub log: LogSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbSection {
    pub url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    #[serde(default)]
    pub htpasswd: Option<PathBuf>,
    #[serde(default)]
    pub trusted_header: Option<TrustedHeaderSection>,
    /// Idle lifetime of a login session, seconds.
    #[serde(default)]
    pub session_ttl: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedHeaderSection {
    pub name: String,
    pub from: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            level: default_level(),
        }
    }
}

fn default_level() -> String {
    "info".into()
}

/// A configuration that passed validation.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub db_url: String,
    /// A `tracing` filter directive (`warning` is spelled `warn` there).
    pub log_level: &'static str,
    pub settings: UiSettings,
}

/// Reads and validates `path`. The error lists every problem, one per line, each naming the
/// file and the key.
pub fn load(path: &Path) -> Result<Config, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{}: cannot read: {e}", path.display())])?;
    parse(path, &text)
}

/// Parses and validates the text of the file named `path`.
pub fn parse(path: &Path, text: &str) -> Result<Config, Vec<String>> {
    let file = path.display().to_string();
    let raw: ConfigFile = serde_yaml::from_str(text).map_err(|e| vec![format!("{file}: {e}")])?;
    let mut problems = Vec::new();
    let mut problem = |key: &str, msg: String| problems.push(format!("{file}: {key}: {msg}"));

    let listen = raw
        .listen
        .parse::<SocketAddr>()
        .map_err(|_| problem("listen", format!("{:?} is not an address:port", raw.listen)))
        .ok();
    let db_url = raw.db.url.trim().to_owned();
    if !(db_url.starts_with("mysql://") || db_url.starts_with("sqlite://")) {
        problem(
            "db.url",
            format!(
                "{:?} is not a mysql:// or sqlite:// url",
                masif_store::redact_url(&db_url)
            ),
        );
    }
    let log_level = match raw.log.level.as_str() {
        "error" => Some("error"),
        "warning" | "warn" => Some("warn"),
        "info" => Some("info"),
        "debug" => Some("debug"),
        other => {
            problem(
                "log.level",
                format!("{other:?} is not one of error, warning, info, debug"),
            );
            None
        }
    };
    let users = match &raw.auth.htpasswd {
        Some(p) => match Users::load(p) {
            Ok(u) => Some(u),
            Err(e) => {
                problem("auth.htpasswd", e.to_string());
                None
            }
        },
        None => None,
    };
    let trusted = raw.auth.trusted_header.as_ref().and_then(|t| {
        let name = t.name.trim();
        let mut ok = true;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            problem(
                "auth.trusted_header.name",
                format!("{:?} is not a header name", t.name),
            );
            ok = false;
        }
        if t.from.is_empty() {
            problem(
                "auth.trusted_header.from",
                "lists no proxy address".to_owned(),
            );
            ok = false;
        }
        let mut from = Vec::new();
        for (i, a) in t.from.iter().enumerate() {
            match a.trim().parse::<IpAddr>() {
                Ok(ip) => from.push(ip),
                Err(_) => {
                    problem(
                        &format!("auth.trusted_header.from[{i}]"),
                        format!("{a:?} is not an IP address"),
                    );
                    ok = false;
                }
            }
        }
        ok.then(|| TrustedHeader {
            name: name.to_ascii_lowercase(),
            from,
        })
    });
    if raw.auth.htpasswd.is_none() && raw.auth.trusted_header.is_none() {
        problem(
            "auth",
            "needs htpasswd or trusted_header (or both)".to_owned(),
        );
    }
    let session_ttl = raw.auth.session_ttl.unwrap_or(DEFAULT_SESSION_TTL);
    if session_ttl == 0 {
        problem("auth.session_ttl", "must be at least 1 second".to_owned());
    }
    let tls = raw.tls.as_ref().and_then(|t| {
        tls::server_config(&t.cert, &t.key)
            .map_err(|e| problem("tls", e.to_string()))
            .ok()
    });

    if !problems.is_empty() {
        return Err(problems);
    }
    let (Some(listen), Some(log_level)) = (listen, log_level) else {
        unreachable!("every missing value recorded a problem");
    };
    Ok(Config {
        listen,
        db_url,
        log_level,
        settings: UiSettings {
            users: users.unwrap_or_default(),
            trusted_header: trusted,
            tls: tls.map(Arc::new),
            session_ttl,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn htpasswd() -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let hash = bcrypt::hash("pw", 4).unwrap();
        writeln!(f, "admin:{hash}").unwrap();
        f
    }

    fn parse_str(text: &str) -> Result<Config, Vec<String>> {
        parse(Path::new("/etc/ui.yml"), text)
    }

    #[test]
    fn the_design_example_parses() {
        let h = htpasswd();
        let text = format!(
            "listen: \"127.0.0.1:8151\"\ndb: {{ url: \"mysql://masif_ui:secret@127.0.0.1:3306/masif\" }}\n\
             auth:\n  htpasswd: {}\n  trusted_header: {{ name: X-Remote-User, from: [\"127.0.0.1\"] }}\n\
             log: {{ level: warning }}\n",
            h.path().display()
        );
        let c = parse_str(&text).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8151".parse().unwrap());
        assert_eq!(c.log_level, "warn");
        assert_eq!(c.settings.users.len(), 1);
        let t = c.settings.trusted_header.unwrap();
        assert_eq!(t.name, "x-remote-user");
        assert!(c.settings.tls.is_none());
    }

    #[test]
    fn unknown_keys_are_named_with_the_file() {
        let e = parse_str(
            "listen: \"127.0.0.1:1\"\ndb: { url: \"sqlite:///x\" }\nauth: { htpaswd: /x }\n",
        )
        .unwrap_err();
        assert!(e[0].starts_with("/etc/ui.yml: "), "{e:?}");
        assert!(e[0].contains("htpaswd"), "{e:?}");
    }

    #[test]
    fn missing_keys_are_named() {
        let e = parse_str("db: { url: \"sqlite:///x\" }\nauth: {}\n").unwrap_err();
        assert!(e[0].contains("listen"), "{e:?}");
    }

    #[test]
    fn every_bad_value_is_reported() {
        let e = parse_str(
            "listen: nowhere\ndb: { url: \"postgres://u:pw@h/db\" }\n\
             auth: { htpasswd: /nonexistent/htpasswd, trusted_header: { name: \"X Bad\", from: [\"10.0.0.300\"] }, session_ttl: 0 }\n\
             tls: { cert: /nonexistent/c.pem, key: /nonexistent/k.pem }\nlog: { level: loud }\n",
        )
        .unwrap_err();
        let all = e.join("\n");
        for key in [
            "listen:",
            "db.url:",
            "auth.htpasswd:",
            "auth.trusted_header.name:",
            "auth.trusted_header.from[0]:",
            "auth.session_ttl:",
            "tls:",
            "log.level:",
        ] {
            assert!(
                all.contains(&format!("/etc/ui.yml: {key}")),
                "{key} in {all}"
            );
        }
        assert!(!all.contains("pw@"), "password leaked: {all}");
    }

    #[test]
    fn some_authentication_is_required() {
        let e = parse_str("listen: \"127.0.0.1:1\"\ndb: { url: \"sqlite:///x\" }\nauth: {}\n")
            .unwrap_err();
        assert!(e.join("\n").contains("auth: needs htpasswd"), "{e:?}");
    }

    #[test]
    fn hostile_yaml_is_rejected() {
        let bomb = "a: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n";
        assert!(parse_str(bomb).is_err());
        assert!(parse_str("- just\n- a list\n").is_err());
        assert!(parse_str("").is_err());
    }
}
