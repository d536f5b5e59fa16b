//! The master's YAML configuration (`--config FILE`): the file's form, and its validation
//! into [`MasterConfig`] reporting every problem with the file and the key.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use masif_daemon::config::{Checked, Problems, Validate};
use masif_pki::TlsSource;
use serde::Deserialize;

use crate::rollout::RolloutSettings;
use db::{DbConfig, DbFile};

mod db;

pub use masif_daemon::config::ConfigError;
pub use masif_daemon::logging::LogLevel;

/// `/etc/masif-upgrader/master.yml`, as DESIGN.md fixes it, validated.
#[derive(Debug)]
pub struct MasterConfig {
    pub api: ApiConfig,
    pub tls: TlsSource,
    pub db: DbConfig,
    pub runs: RunsConfig,
    /// `rollout:` — leases of a tag's max in flight, slot polls, the roll-out loop.
    pub rollout: RolloutSettings,
    pub log_level: LogLevel,
    /// Where to serve the Prometheus metrics (plain HTTP, `GET /metrics`); off when `None`.
    pub metrics_listen: Option<SocketAddr>,
}

/// `runs:` — how many results of agents' package runs are kept.
#[derive(Debug, Clone, Copy)]
pub struct RunsConfig {
    /// Newest runs kept per agent.
    pub keep: u32,
    /// Runs older than this many days are deleted.
    pub max_age_days: u32,
}

/// `api:` — where and how agents are served. Durations are seconds.
#[derive(Debug)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// The name agents expect in this master's certificate (their `master.cn`); when given,
    /// start-up checks that the certificate carries it.
    pub name: Option<String>,
    /// Longest TLS handshake before the connection is dropped.
    pub handshake_timeout: u64,
    /// An idle kept-alive agent connection is closed after this long.
    pub idle_timeout: u64,
    /// Longest time a report may take (database retries included) before a 503.
    pub report_timeout: u64,
    /// How often certificate, key and CRL files are checked for changes.
    pub reload_interval: u64,
    /// Most agent connections served at once; further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Serve protocol v2 (long-poll for approvals, run results).
    pub v2: bool,
    /// Longest a v2 report is held waiting for approvals.
    pub max_wait: u64,
    /// Most tasks one report may hold; a larger one gets a 413.
    pub max_tasks: usize,
    /// Reports one agent may send per minute (with a burst of as many); more get a 429.
    pub max_reports_per_minute: u32,
    /// Request body bytes held in memory at once across all connections; a request that
    /// would go over waits for room until its deadline, then gets a 503.
    pub max_body_bytes_in_flight: usize,
    /// TLS handshakes in progress from one source address (IPv6: one /64).
    pub max_handshakes_per_source: usize,
}

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterFile {
    api: ApiFile,
    tls: TlsSource,
    db: DbFile,
    #[serde(default)]
    runs: RunsFile,
    #[serde(default)]
    rollout: RolloutFile,
    #[serde(default)]
    log: LogFile,
    #[serde(default)]
    metrics_listen: Option<Checked<SocketAddr>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsFile {
    #[serde(default = "defaults::keep")]
    keep: u32,
    #[serde(default = "defaults::max_age_days")]
    max_age_days: u32,
}

impl Default for RunsFile {
    fn default() -> Self {
        Self {
            keep: defaults::keep(),
            max_age_days: defaults::max_age_days(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutFile {
    #[serde(default = "defaults::lease_seconds")]
    lease_seconds: u64,
    #[serde(default = "defaults::slot_poll_seconds")]
    slot_poll_seconds: u64,
    #[serde(default = "defaults::advance_seconds")]
    advance_seconds: u64,
}

impl Default for RolloutFile {
    fn default() -> Self {
        Self {
            lease_seconds: defaults::lease_seconds(),
            slot_poll_seconds: defaults::slot_poll_seconds(),
            advance_seconds: defaults::advance_seconds(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiFile {
    listen: Checked<SocketAddr>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default = "defaults::handshake_timeout")]
    handshake_timeout: u64,
    #[serde(default = "defaults::idle_timeout")]
    idle_timeout: u64,
    #[serde(default = "defaults::report_timeout")]
    report_timeout: u64,
    #[serde(default = "defaults::reload_interval")]
    reload_interval: u64,
    #[serde(default = "defaults::max_connections")]
    max_connections: usize,
    #[serde(default = "defaults::v2")]
    v2: bool,
    #[serde(default = "defaults::max_wait")]
    max_wait: u64,
    #[serde(default = "defaults::max_tasks")]
    max_tasks: usize,
    #[serde(default = "defaults::max_reports_per_minute")]
    max_reports_per_minute: u32,
    #[serde(default = "defaults::max_body_bytes_in_flight")]
    max_body_bytes_in_flight: usize,
    #[serde(default = "defaults::max_handshakes_per_source")]
    max_handshakes_per_source: usize,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogFile {
    #[serde(default)]
    level: Checked<LogLevel>,
}

mod defaults {
    pub(super) fn handshake_timeout() -> u64 {
        10
    }
    pub(super) fn idle_timeout() -> u64 {
        90
    }
    pub(super) fn report_timeout() -> u64 {
        30
    }
    pub(super) fn reload_interval() -> u64 {
        10
    }
    pub(super) fn max_connections() -> usize {
        20_000
    }
    pub(super) fn v2() -> bool {
        true
    }
    pub(super) fn max_wait() -> u64 {
        900
    }
    pub(super) fn max_tasks() -> usize {
        crate::server::DEFAULT_MAX_TASKS
    }
    pub(super) fn max_reports_per_minute() -> u32 {
        crate::server::DEFAULT_MAX_REPORTS_PER_MINUTE
    }
    pub(super) fn max_body_bytes_in_flight() -> usize {
        crate::server::DEFAULT_MAX_BODY_BYTES_IN_FLIGHT
    }
    pub(super) fn max_handshakes_per_source() -> usize {
        masif_daemon::serve::DEFAULT_MAX_HANDSHAKES_PER_SOURCE
    }
    pub(super) fn keep() -> u32 {
        50
    }
    pub(super) fn max_age_days() -> u32 {
        90
    }
    pub(super) fn lease_seconds() -> u64 {
        crate::rollout::DEFAULT_LEASE_SECONDS
    }
    pub(super) fn slot_poll_seconds() -> u64 {
        5
    }
    pub(super) fn advance_seconds() -> u64 {
        5
    }
}

impl Validate for MasterConfig {
    type File = MasterFile;

    fn validate(file: MasterFile, problems: &mut Problems) -> Option<Self> {
        let api = file.api;
        let listen = problems.take("api.listen", api.listen);
        for (key, value) in [
            ("api.handshake_timeout", api.handshake_timeout),
            ("api.idle_timeout", api.idle_timeout),
            ("api.report_timeout", api.report_timeout),
            ("api.reload_interval", api.reload_interval),
        ] {
            if value == 0 {
                problems.add(key, "must be at least 1 second");
            }
        }
        for (key, value) in [
            ("api.max_connections", api.max_connections),
            ("api.max_tasks", api.max_tasks),
            (
                "api.max_reports_per_minute",
                api.max_reports_per_minute as usize,
            ),
            (
                "api.max_handshakes_per_source",
                api.max_handshakes_per_source,
            ),
        ] {
            if value == 0 {
                problems.add(key, "must be at least 1");
            }
        }
        if api.max_body_bytes_in_flight < masif_proto::MAX_BODY_BYTES as usize {
            problems.add(
                "api.max_body_bytes_in_flight",
                format!(
                    "must be at least {} (one largest body)",
                    masif_proto::MAX_BODY_BYTES
                ),
            );
        }
        if !(1..=masif_proto::v2::MAX_WAIT_SECS).contains(&api.max_wait) {
            problems.add(
                "api.max_wait",
                format!("must be 1 to {} seconds", masif_proto::v2::MAX_WAIT_SECS),
            );
        }
        if file.runs.keep == 0 {
            problems.add("runs.keep", "must be at least 1");
        }
        if !(1..=36_500).contains(&file.runs.max_age_days) {
            problems.add("runs.max_age_days", "must be 1 to 36500 days");
        }
        let rollout = file.rollout;
        for (key, value, range) in [
            ("rollout.lease_seconds", rollout.lease_seconds, 10..=3600),
            (
                "rollout.slot_poll_seconds",
                rollout.slot_poll_seconds,
                1..=600,
            ),
            ("rollout.advance_seconds", rollout.advance_seconds, 1..=3600),
        ] {
            if !range.contains(&value) {
                let (low, high) = range.into_inner();
                problems.add(key, format!("must be {low} to {high} seconds"));
            }
        }
        let db = file.db.validate(problems);
        let log_level = problems.take("log.level", file.log.level);
        let metrics_listen = file
            .metrics_listen
            .and_then(|addr| problems.take("metrics_listen", addr));
        if metrics_listen
            .is_some_and(|m| m.port() != 0 && listen.is_some_and(|l| l.port() == m.port()))
        {
            problems.add("metrics_listen", "must use another port than api.listen");
        }
        Some(MasterConfig {
            api: ApiConfig {
                listen: listen?,
                name: api.name,
                handshake_timeout: api.handshake_timeout,
                idle_timeout: api.idle_timeout,
                report_timeout: api.report_timeout,
                reload_interval: api.reload_interval,
                max_connections: api.max_connections,
                v2: api.v2,
                max_wait: api.max_wait,
                max_tasks: api.max_tasks,
                max_reports_per_minute: api.max_reports_per_minute,
                max_body_bytes_in_flight: api.max_body_bytes_in_flight,
                max_handshakes_per_source: api.max_handshakes_per_source,
            },
            tls: file.tls,
            db: db?,
            runs: RunsConfig {
                keep: file.runs.keep,
                max_age_days: file.runs.max_age_days,
            },
            rollout: RolloutSettings {
                lease_seconds: rollout.lease_seconds,
                slot_poll: Duration::from_secs(rollout.slot_poll_seconds),
                advance: Duration::from_secs(rollout.advance_seconds),
            },
            log_level: log_level?,
            metrics_listen,
        })
    }
}

impl MasterConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        masif_daemon::config::load(path)
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.api.handshake_timeout)
    }

    /// The run retention as the store takes it.
    pub fn retention(&self) -> masif_store::Retention {
        masif_store::Retention {
            keep_per_agent: self.runs.keep,
            max_age_secs: u64::from(self.runs.max_age_days) * 24 * 3600,
        }
    }

    /// What `--check-config` checks beyond the file: the TLS files resolve and make a server
    /// configuration. Each problem names its key (`tls`).
    pub fn check(&self) -> Vec<String> {
        match self
            .tls
            .resolve(masif_pki::Role::Master)
            .and_then(|f| masif_pki::server_config(&f).map(|_| ()))
        {
            Ok(()) => Vec::new(),
            Err(e) => vec![format!("tls: {e:#}")],
        }
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

    fn parse(text: &str) -> Result<MasterConfig, ConfigError> {
        masif_daemon::config::parse(Path::new("master.yml"), text)
    }

    #[test]
    fn the_design_example_parses() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.api.listen.port(), 8150);
        assert_eq!(c.api.idle_timeout, 90);
        assert!(c.api.v2, "v2 is on by default");
        assert_eq!(c.api.max_wait, 900);
        assert_eq!(c.api.max_tasks, 5000);
        assert_eq!(c.api.max_reports_per_minute, 60);
        assert_eq!(c.api.max_body_bytes_in_flight, 64 << 20);
        assert_eq!(c.api.max_handshakes_per_source, 64);
        assert_eq!(c.retention(), masif_store::Retention::default());
        assert_eq!(c.rollout, RolloutSettings::default());
        assert_eq!(c.log_level, LogLevel::Info);
        assert!(
            !format!("{c:?}").contains("secret"),
            "password must not be printed"
        );
    }

    #[test]
    fn metrics_listen_is_off_by_default_and_checked() {
        assert_eq!(parse(GOOD).unwrap().metrics_listen, None);
        let on = parse(&format!("{GOOD}metrics_listen: \"127.0.0.1:9150\"\n")).unwrap();
        assert_eq!(on.metrics_listen, Some("127.0.0.1:9150".parse().unwrap()));
        for (value, says) in [
            ("\"nowhere\"", "metrics_listen"),
            ("9150", "metrics_listen"),
            ("\"0.0.0.0:8150\"", "another port than api.listen"),
        ] {
            let err = parse(&format!("{GOOD}metrics_listen: {value}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("master.yml: metrics_listen: "), "{err}");
            assert!(err.contains(says), "{value}: {err}");
        }
    }

    #[test]
    fn rollout_settings_are_read() {
        let c = parse(&format!(
            "{GOOD}rollout: {{ lease_seconds: 600, slot_poll_seconds: 2, advance_seconds: 30 }}\n"
        ))
        .unwrap();
        assert_eq!(
            c.rollout,
            RolloutSettings {
                lease_seconds: 600,
                slot_poll: Duration::from_secs(2),
                advance: Duration::from_secs(30),
            }
        );
    }

    #[test]
    fn discovery_form_parses() {
        let text = GOOD.replace(
            "tls:\n  cert: /x/cert.pem\n  key: /x/key.pem\n  ca: /x/ca.pem\n  crl: /x/crl.pem",
            "tls: { discover: puppet }",
        );
        parse(&text).unwrap();
    }

    #[test]
    fn mistakes_name_the_key() {
        let cases = [
            (GOOD.replace("level: info", "level: loud"), "log.level"),
            (GOOD.replace("listen:", "lisen:"), "lisen"),
            (
                GOOD.replace(
                    "db:\n  url: \"mysql://masif:secret@127.0.0.1:3306/masif_upgrader\"\n",
                    "",
                ),
                "db",
            ),
            (GOOD.replace("0.0.0.0:8150", "nowhere"), "api.listen"),
            (GOOD.replace("mysql://", "postgres://"), "db.url"),
            (GOOD.replace("/masif_upgrader", ""), "db.url"),
            (format!("{GOOD}extra: 1\n"), "extra"),
            (format!("{GOOD}runs: {{ keep: 0 }}\n"), "runs.keep"),
            (
                format!("{GOOD}rollout: {{ lease_seconds: 9 }}\n"),
                "rollout.lease_seconds",
            ),
            (
                format!("{GOOD}rollout: {{ lease_seconds: 3601 }}\n"),
                "rollout.lease_seconds",
            ),
            (
                format!("{GOOD}rollout: {{ slot_poll_seconds: 0 }}\n"),
                "rollout.slot_poll_seconds",
            ),
            (
                format!("{GOOD}rollout: {{ advance_seconds: 0 }}\n"),
                "rollout.advance_seconds",
            ),
            (format!("{GOOD}rollout: {{ lease: 60 }}\n"), "lease"),
            (
                format!("{GOOD}runs: {{ max_age_days: 0 }}\n"),
                "runs.max_age_days",
            ),
            (
                GOOD.replace(
                    "  listen: \"0.0.0.0:8150\"",
                    "  listen: \"0.0.0.0:8150\"\n  max_wait: 0",
                ),
                "api.max_wait",
            ),
            (
                GOOD.replace(
                    "  listen: \"0.0.0.0:8150\"",
                    "  listen: \"0.0.0.0:8150\"\n  idle_timeout: 0",
                ),
                "api.idle_timeout",
            ),
            (
                GOOD.replace(
                    "  listen: \"0.0.0.0:8150\"",
                    "  listen: \"0.0.0.0:8150\"\n  max_tasks: 0",
                ),
                "api.max_tasks",
            ),
            (
                GOOD.replace(
                    "  listen: \"0.0.0.0:8150\"",
                    "  listen: \"0.0.0.0:8150\"\n  max_reports_per_minute: 0",
                ),
                "api.max_reports_per_minute",
            ),
            (
                GOOD.replace(
                    "  listen: \"0.0.0.0:8150\"",
                    "  listen: \"0.0.0.0:8150\"\n  max_body_bytes_in_flight: 1000",
                ),
                "api.max_body_bytes_in_flight",
            ),
        ];
        for (text, key) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                err.starts_with("master.yml: "),
                "{err:?} should name the file"
            );
            assert!(err.contains(key), "{err:?} should name {key:?}");
            assert!(!err.contains("secret"), "{err:?} leaks the password");
        }
        let err = parse(&GOOD.replace("level: info", "level: loud"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("loud"), "{err}");
    }

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let text = GOOD
            .replace("0.0.0.0:8150", "nowhere")
            .replace("mysql://", "postgres://")
            .replace("level: info", "level: loud")
            .replace(
                "  listen: \"nowhere\"",
                "  listen: \"nowhere\"\n  report_timeout: 0\n  max_connections: 0",
            );
        let err = parse(&text).unwrap_err();
        let lines: Vec<String> = err.lines().collect();
        for key in [
            "api.listen",
            "api.report_timeout",
            "api.max_connections",
            "db.url",
            "log.level",
        ] {
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(&format!("master.yml: {key}: "))),
                "{key} in {lines:?}"
            );
        }
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert!(!err.to_string().contains("secret"), "{err}");
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
