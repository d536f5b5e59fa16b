//! The UI's YAML configuration file: its form (unknown keys rejected), and its validation
//! into [`Config`] reporting every problem with its key and file.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use masif_daemon::config::{Checked, Problems, Validate};
use masif_store::DbUrl;
use serde::Deserialize;

use crate::auth::htpasswd::Users;
use crate::auth::TrustedHeader;
use crate::{tls, ApiTokens, UiSettings};

pub use masif_daemon::config::ConfigError;
pub use masif_daemon::logging::LogLevel;

/// Default idle lifetime of a login session, seconds.
pub const DEFAULT_SESSION_TTL: u64 = 3600;

/// Default absolute lifetime of a login session, seconds.
pub const DEFAULT_SESSION_LIFETIME: u64 = 12 * 3600;

/// Default time without a report after which an agent is shown offline, seconds.
pub const DEFAULT_OFFLINE_AFTER: u64 = 900;

/// Accepted range of `offline_after`, seconds: a minute (agents report at least every report
/// interval, not continuously) to a year.
const OFFLINE_AFTER_RANGE: std::ops::RangeInclusive<u64> = 60..=365 * 24 * 3600;

/// Default time between two checks of the pending summary, seconds.
pub const DEFAULT_SUMMARY_CHECK_INTERVAL: u64 = 600;

/// Accepted range of `summary_check_interval` other than 0 (off), seconds.
const SUMMARY_CHECK_RANGE: std::ops::RangeInclusive<u64> = 10..=7 * 24 * 3600;

/// The file as written, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    listen: Checked<SocketAddr>,
    db: DbSection,
    auth: AuthSection,
    #[serde(default)]
    tls: Option<TlsSection>,
    /// Mark cookies `Secure` without `tls` (behind an HTTPS proxy).
    #[serde(default)]
    secure_cookies: bool,
    /// Seconds without a report after which an agent is shown offline.
    #[serde(default)]
    offline_after: Option<u64>,
    /// Seconds between two checks of the pending summary against the task rows; 0: never.
    #[serde(default)]
    summary_check_interval: Option<u64>,
    #[serde(default)]
    log: LogSection,
    /// Where to serve the Prometheus metrics (plain HTTP); off when absent.
    #[serde(default)]
    metrics_listen: Option<Checked<SocketAddr>>,
}

/// `db:` — one address (`url`) or several of one database (`urls`, see
/// `masif_store::open_any`); exactly one of them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DbSection {
    #[serde(default)]
    url: Option<Checked<DbUrl>>,
    #[serde(default)]
    urls: Option<Vec<Checked<DbUrl>>>,
}

impl DbSection {
    /// The addresses (see `masif_store::db_addresses`).
    fn validate(self, problems: &mut Problems) -> Option<Vec<DbUrl>> {
        problems.check_all(masif_store::db_addresses(
            self.url.map(Checked::into_result),
            self.urls
                .map(|urls| urls.into_iter().map(Checked::into_result).collect()),
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthSection {
    #[serde(default)]
    htpasswd: Option<PathBuf>,
    #[serde(default)]
    trusted_header: Option<TrustedHeaderSection>,
    /// API bearer tokens: `name:hash` lines like htpasswd.
    #[serde(default)]
    tokens: Option<PathBuf>,
    /// Idle lifetime of a login session, seconds.
    #[serde(default)]
    session_ttl: Option<u64>,
    /// Absolute lifetime of a login session, seconds.
    #[serde(default)]
    session_lifetime: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustedHeaderSection {
    name: String,
    from: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsSection {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogSection {
    #[serde(default)]
    level: Checked<LogLevel>,
}

/// A configuration that passed validation.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// `db.url` as a list of one, or `db.urls`; `Debug` and `Display` show them without
    /// passwords.
    pub db_urls: Vec<DbUrl>,
    pub log_level: LogLevel,
    pub settings: UiSettings,
    /// Where to serve the Prometheus metrics (`GET /metrics`); off when `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// How often the pending summary is checked against the task rows; never when `None`.
    pub summary_check_interval: Option<Duration>,
}

/// Reads and validates `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    masif_daemon::config::load(path)
}

/// Parses and validates the text of the file named `path`.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    masif_daemon::config::parse(path, text)
}

impl Validate for Config {
    type File = ConfigFile;

    fn validate(raw: ConfigFile, problems: &mut Problems) -> Option<Self> {
        let listen = problems.take("listen", raw.listen);
        let db_urls = raw.db.validate(problems);
        let log_level = problems.take("log.level", raw.log.level);
        let metrics_listen = metrics_listen(raw.metrics_listen, listen, problems);
        let users = match &raw.auth.htpasswd {
            Some(p) => problems.check("auth.htpasswd", Users::load(p)),
            None => None,
        };
        let tokens = match &raw.auth.tokens {
            Some(p) => problems.check("auth.tokens", ApiTokens::load(p)),
            None => None,
        };
        let trusted = raw
            .auth
            .trusted_header
            .as_ref()
            .and_then(|t| trusted_header(t, problems));
        if raw.auth.htpasswd.is_none()
            && raw.auth.trusted_header.is_none()
            && raw.auth.tokens.is_none()
        {
            problems.add("auth", "needs htpasswd, trusted_header or tokens");
        }
        let session_ttl = raw.auth.session_ttl.unwrap_or(DEFAULT_SESSION_TTL);
        if session_ttl == 0 {
            problems.add("auth.session_ttl", "must be at least 1 second");
        }
        let session_lifetime = raw
            .auth
            .session_lifetime
            .unwrap_or(DEFAULT_SESSION_LIFETIME);
        if session_lifetime == 0 {
            problems.add("auth.session_lifetime", "must be at least 1 second");
        }
        let offline_after = raw.offline_after.unwrap_or(DEFAULT_OFFLINE_AFTER);
        if !OFFLINE_AFTER_RANGE.contains(&offline_after) {
            problems.add(
                "offline_after",
                format!(
                    "{offline_after} is out of range ({} to {} seconds)",
                    OFFLINE_AFTER_RANGE.start(),
                    OFFLINE_AFTER_RANGE.end()
                ),
            );
        }
        let summary_check = raw
            .summary_check_interval
            .unwrap_or(DEFAULT_SUMMARY_CHECK_INTERVAL);
        if summary_check != 0 && !SUMMARY_CHECK_RANGE.contains(&summary_check) {
            problems.add(
                "summary_check_interval",
                format!(
                    "{summary_check} is out of range (0 for never, or {} to {} seconds)",
                    SUMMARY_CHECK_RANGE.start(),
                    SUMMARY_CHECK_RANGE.end()
                ),
            );
        }
        let tls = match &raw.tls {
            Some(t) => Some(problems.check("tls", tls::server_config(&t.cert, &t.key))?),
            None => None,
        };
        Some(Config {
            listen: listen?,
            db_urls: db_urls?,
            log_level: log_level?,
            metrics_listen,
            summary_check_interval: (summary_check != 0)
                .then(|| Duration::from_secs(summary_check)),
            settings: UiSettings {
                users: users.unwrap_or_default(),
                tokens: tokens.map(Arc::new),
                trusted_header: trusted,
                tls: tls.map(Arc::new),
                session_ttl,
                session_lifetime,
                secure_cookies: raw.secure_cookies,
                offline_after,
                ..UiSettings::with_users(Users::default())
            },
        })
    }
}

/// `metrics_listen`, which must not take `listen`'s port.
fn metrics_listen(
    value: Option<Checked<SocketAddr>>,
    listen: Option<SocketAddr>,
    problems: &mut Problems,
) -> Option<SocketAddr> {
    let addr = problems.take("metrics_listen", value?)?;
    if addr.port() != 0 && listen.is_some_and(|l| l.port() == addr.port()) {
        problems.add("metrics_listen", "must use another port than listen");
    }
    Some(addr)
}

/// `auth.trusted_header`, or `None` with its problems recorded.
fn trusted_header(t: &TrustedHeaderSection, problems: &mut Problems) -> Option<TrustedHeader> {
    let name = t.name.trim();
    let mut ok = true;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        problems.add(
            "auth.trusted_header.name",
            format!("{:?} is not a header name", t.name),
        );
        ok = false;
    }
    if t.from.is_empty() {
        problems.add("auth.trusted_header.from", "lists no proxy address");
        ok = false;
    }
    let mut from = Vec::new();
    for (i, a) in t.from.iter().enumerate() {
        match a.trim().parse::<IpAddr>() {
            Ok(ip) => from.push(ip),
            Err(_) => {
                problems.add(
                    format!("auth.trusted_header.from[{i}]"),
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
        parse(Path::new("/etc/ui.yml"), text).map_err(|e| e.lines().collect())
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
        assert_eq!(c.log_level, LogLevel::Warning);
        assert_eq!(c.log_level.directive(), "warn");
        assert!(!format!("{c:?}").contains("secret"), "password printed");
        assert_eq!(c.settings.users.len(), 1);
        let t = c.settings.trusted_header.unwrap();
        assert_eq!(t.name, "x-remote-user");
        assert!(c.settings.tls.is_none());
        assert_eq!(c.settings.offline_after, DEFAULT_OFFLINE_AFTER);
        assert_eq!(c.settings.session_ttl, 3600);
        assert_eq!(c.settings.session_lifetime, 43200);
        assert!(!c.settings.secure_cookies);
    }

    #[test]
    fn metrics_listen_is_off_by_default_and_checked() {
        let h = htpasswd();
        let base = format!(
            "listen: \"127.0.0.1:8151\"\ndb: {{ url: \"sqlite:///x\" }}\nauth: {{ htpasswd: {} }}\n",
            h.path().display()
        );
        assert_eq!(parse_str(&base).unwrap().metrics_listen, None);
        let on = parse_str(&format!("{base}metrics_listen: \"127.0.0.1:9151\"\n")).unwrap();
        assert_eq!(on.metrics_listen, Some("127.0.0.1:9151".parse().unwrap()));
        for (value, says) in [
            ("\"nowhere\"", "metrics_listen: "),
            ("[1]", "metrics_listen: "),
            ("\"127.0.0.1:8151\"", "another port than listen"),
        ] {
            let err = parse_str(&format!("{base}metrics_listen: {value}\n")).unwrap_err();
            assert_eq!(err.len(), 1, "{err:?}");
            assert!(
                err[0].starts_with("/etc/ui.yml: metrics_listen: "),
                "{err:?}"
            );
            assert!(err[0].contains(says), "{value}: {err:?}");
        }
    }

    #[test]
    fn session_lifetimes_and_secure_cookies_are_read() {
        let h = htpasswd();
        let c = parse_str(&format!(
            "listen: \"127.0.0.1:1\"\ndb: {{ url: \"sqlite:///x\" }}\nsecure_cookies: true\n\
             auth: {{ htpasswd: {}, session_ttl: 600, session_lifetime: 7200 }}\n",
            h.path().display()
        ))
        .unwrap();
        assert_eq!(c.settings.session_ttl, 600);
        assert_eq!(c.settings.session_lifetime, 7200);
        assert!(c.settings.secure_cookies);
        let e = parse_str(&format!(
            "listen: \"127.0.0.1:1\"\ndb: {{ url: \"sqlite:///x\" }}\nsecure_cookies: maybe\nauth: {{ htpasswd: {} }}\n",
            h.path().display()
        ))
        .unwrap_err();
        assert!(e.join("\n").contains("secure_cookies"), "{e:?}");
    }

    #[test]
    fn offline_after_is_checked() {
        let h = htpasswd();
        let with = |value: &str| {
            parse_str(&format!(
                "listen: \"127.0.0.1:1\"\ndb: {{ url: \"sqlite:///x\" }}\nauth: {{ htpasswd: {} }}\noffline_after: {value}\n",
                h.path().display()
            ))
        };
        assert_eq!(with("60").unwrap().settings.offline_after, 60);
        assert_eq!(with("3600").unwrap().settings.offline_after, 3600);
        for bad in ["59", "0", "31536001"] {
            let e = with(bad).unwrap_err();
            assert_eq!(
                e,
                vec![format!(
                    "/etc/ui.yml: offline_after: {bad} is out of range (60 to 31536000 seconds)"
                )]
            );
        }
        for bad in ["-5", "soon", "[1]"] {
            let e = with(bad).unwrap_err().join("\n");
            assert!(e.starts_with("/etc/ui.yml: offline_after"), "{bad}: {e}");
        }
    }

    #[test]
    fn summary_check_interval_defaults_to_ten_minutes_and_is_checked() {
        let h = htpasswd();
        let with = |line: &str| {
            parse_str(&format!(
                "listen: \"127.0.0.1:1\"\ndb: {{ url: \"sqlite:///x\" }}\nauth: {{ htpasswd: {} }}\n{line}\n",
                h.path().display()
            ))
        };
        let interval = |line: &str| with(line).unwrap().summary_check_interval;
        assert_eq!(interval(""), Some(Duration::from_secs(600)));
        assert_eq!(interval("summary_check_interval: 0"), None);
        assert_eq!(
            interval("summary_check_interval: 60"),
            Some(Duration::from_secs(60))
        );
        for bad in ["9", "604801"] {
            let e = with(&format!("summary_check_interval: {bad}")).unwrap_err();
            assert_eq!(
                e,
                vec![format!(
                    "/etc/ui.yml: summary_check_interval: {bad} is out of range (0 for never, \
                     or 10 to 604800 seconds)"
                )]
            );
        }
        let e = with("summary_check_interval: often")
            .unwrap_err()
            .join("\n");
        assert!(e.contains("summary_check_interval"), "{e}");
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
    fn db_urls_are_an_alternative_to_db_url() {
        let with_db = |db: &str| {
            parse_str(&format!(
                "listen: \"127.0.0.1:1\"\ndb: {db}\nauth: {{ trusted_header: {{ name: X-User, from: [\"127.0.0.1\"] }} }}\n"
            ))
        };
        let c =
            with_db("{ urls: [\"mysql://u:secret@db1/m\", \"mysql://u:secret@db2/m\"] }").unwrap();
        let shown: Vec<String> = c.db_urls.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["mysql://u:***@db1/m", "mysql://u:***@db2/m"]);
        assert_eq!(
            with_db("{ url: \"sqlite:///x\" }").unwrap().db_urls.len(),
            1
        );
        for (db, key, says) in [
            (
                "{ url: \"mysql://a/m\", urls: [\"mysql://b/m\"] }",
                "db.urls",
                "both",
            ),
            ("{}", "db", "url"),
            ("{ urls: [] }", "db.urls", "at least one"),
            (
                "{ urls: [\"mysql://a/m\", \"sqlite:///x\"] }",
                "db.urls[1]",
                "one file",
            ),
            (
                "{ urls: [\"mysql://u:secret@a/m\", \"mysql://A:3306/m\"] }",
                "db.urls[1]",
                "same address",
            ),
            (
                "{ urls: [\"mysql://a/m\", \"ftp://u:secret@b/m\"] }",
                "db.urls[1]",
                "expected mysql://",
            ),
        ] {
            let e = with_db(db).unwrap_err();
            assert_eq!(e.len(), 1, "{db}: {e:?}");
            assert!(
                e[0].starts_with(&format!("/etc/ui.yml: {key}: ")),
                "{db}: {e:?}"
            );
            assert!(e[0].contains(says), "{db}: {e:?}");
            assert!(!e[0].contains("secret"), "{db}: {e:?}");
        }
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
             auth: { htpasswd: /nonexistent/htpasswd, trusted_header: { name: \"X Bad\", from: [\"10.0.0.300\"] }, session_ttl: 0, session_lifetime: 0 }\n\
             tls: { cert: /nonexistent/c.pem, key: /nonexistent/k.pem }\nlog: { level: loud }\noffline_after: 30\n",
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
            "auth.session_lifetime:",
            "offline_after:",
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
    fn api_tokens_are_read_and_bad_files_named() {
        let tokens = htpasswd();
        let c = parse_str(&format!(
            "listen: \"127.0.0.1:1\"\ndb: {{ url: \"sqlite:///x\" }}\nauth: {{ tokens: {} }}\n",
            tokens.path().display()
        ))
        .unwrap();
        assert_eq!(c.settings.tokens.unwrap().len(), 1);
        let mut bad = tempfile::NamedTempFile::new().unwrap();
        writeln!(bad, "# tokens\nci:plaintext-secret").unwrap();
        for path in [bad.path(), Path::new("/nonexistent/tokens")] {
            let e = parse_str(&format!(
                "listen: \"127.0.0.1:1\"\ndb: {{ url: \"sqlite:///x\" }}\nauth: {{ tokens: {} }}\n",
                path.display()
            ))
            .unwrap_err()
            .join("\n");
            assert!(e.starts_with("/etc/ui.yml: auth.tokens: "), "{e}");
            assert!(!e.contains("plaintext-secret"), "{e}");
        }
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
