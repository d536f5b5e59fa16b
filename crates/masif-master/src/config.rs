//! The master's YAML configuration (`--config FILE`): parsing and validation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use masif_pki::TlsSource;
use serde::Deserialize;

/// `/etc/masif-upgrader/master.yml`, as DESIGN.md fixes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterConfig {
    pub api: ApiConfig,
    pub tls: TlsSource,
    pub db: DbConfig,
    #[serde(default)]
    pub log: LogConfig,
}

/// `api:` — where and how agents are served. Durations are seconds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// The name agents expect in this master's certificate (their `master.cn`); when given,
    /// start-up checks that the certificate carries it.
    #[serde(default)]
    pub name: Option<String>,
    /// Longest TLS handshake before the connection is dropped.
    #[serde(default = "defaults::handshake_timeout")]
    pub handshake_timeout: u64,
    /// An idle kept-alive agent connection is closed after this long.
    #[serde(default = "defaults::idle_timeout")]
    pub idle_timeout: u64,
    /// Longest time a report may take (database retries included) before a 503.
    #[serde(default = "defaults::report_timeout")]
    pub report_timeout: u64,
    /// How often certificate, key and CRL files are checked for changes.
    #[serde(default = "defaults::reload_interval")]
    pub reload_interval: u64,
    /// Most agent connections served at once; further ones wait in the kernel's backlog.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
}

/// `db:` — the shared database.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbConfig {
    pub url: String,
}

impl std::fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConfig")
            .field("url", &masif_store::redact_url(&self.url))
            .finish()
    }
}

/// `log:` — verbosity.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default = "defaults::log_level")]
    pub level: LogLevel,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: defaults::log_level(),
        }
    }
}

/// `log.level`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warning,
    Info,
    Debug,
}

impl LogLevel {
    /// The matching `tracing` filter directive.
    pub fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warning => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

mod defaults {
    pub fn handshake_timeout() -> u64 {
        10
    }
    pub fn idle_timeout() -> u64 {
        90
    }
    pub fn report_timeout() -> u64 {
        30
    }
    pub fn reload_interval() -> u64 {
        10
    }
    pub fn max_connections() -> usize {
        20_000
    }
    pub fn log_level() -> super::LogLevel {
        super::LogLevel::Info
    }
}

/// A configuration file that could not be used; the message names the file and the key.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: PathBuf,
    pub message: String,
}

impl MasterConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Self::parse(&text).map_err(|message| ConfigError {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses YAML text; the error names the offending key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: MasterConfig = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let api = &self.api;
        for (key, value) in [
            ("api.handshake_timeout", api.handshake_timeout),
            ("api.idle_timeout", api.idle_timeout),
            ("api.report_timeout", api.report_timeout),
            ("api.reload_interval", api.reload_interval),
        ] {
            if value == 0 {
                return Err(format!("{key}: must be at least 1 second"));
            }
        }
        if api.max_connections == 0 {
            return Err("api.max_connections: must be at least 1".into());
        }
        if !(self.db.url.starts_with("mysql://") || self.db.url.starts_with("sqlite://")) {
            return Err(format!(
                "db.url: expected mysql://… or sqlite:///path, got {}",
                masif_store::redact_url(&self.db.url)
            ));
        }
        Ok(())
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.api.handshake_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
api:
  listen: "0.0.0.0:8150"
tls:
  cert: /x/cert.pem
  key: /x/key.pem
  ca: /x/ca.pem
  crl: /x/crl.pem
db:
  url: "mysql://masif:secret@127.0.0.1:3306/masif_upgrader"
log:
  level: info
"#;

    #[test]
    fn the_design_example_parses() {
        let c = MasterConfig::parse(GOOD).unwrap();
        assert_eq!(c.api.listen.port(), 8150);
        assert_eq!(c.api.idle_timeout, 90);
        assert_eq!(c.log.level, LogLevel::Info);
        assert!(
            !format!("{c:?}").contains("secret"),
            "password must not be printed"
        );
    }

    #[test]
    fn discovery_form_parses() {
        let text = GOOD.replace(
            "tls:\n  cert: /x/cert.pem\n  key: /x/key.pem\n  ca: /x/ca.pem\n  crl: /x/crl.pem",
            "tls: { discover: puppet }",
        );
        MasterConfig::parse(&text).unwrap();
    }

    #[test]
    fn mistakes_name_the_key() {
        let cases = [
            (GOOD.replace("level: info", "level: loud"), "loud"),
            (GOOD.replace("listen:", "lisen:"), "lisen"),
            (
                GOOD.replace(
                    "db:\n  url: \"mysql://masif:secret@127.0.0.1:3306/masif_upgrader\"\n",
                    "",
                ),
                "db",
            ),
            (GOOD.replace("0.0.0.0:8150", "nowhere"), "listen"),
            (GOOD.replace("mysql://", "postgres://"), "db.url"),
            (format!("{GOOD}extra: 1\n"), "extra"),
            (
                GOOD.replace(
                    "  listen: \"0.0.0.0:8150\"",
                    "  listen: \"0.0.0.0:8150\"\n  idle_timeout: 0",
                ),
                "api.idle_timeout",
            ),
        ];
        for (text, key) in cases {
            let err = MasterConfig::parse(&text).unwrap_err();
            assert!(err.contains(key), "{err:?} should name {key:?}");
            assert!(!err.contains("secret"), "{err:?} leaks the password");
        }
    }

    #[test]
    fn load_names_the_file() {
        let err = MasterConfig::load(Path::new("/nonexistent/master.yml")).unwrap_err();
        assert!(
            err.to_string().starts_with("/nonexistent/master.yml: "),
            "{err}"
        );
    }
}
