//! The agent's YAML configuration (`/etc/masif-upgrader/agent.yml`): parsed strictly
//! (unknown keys are errors), then validated, every problem naming the file and the key.
//! `master:` is read in `master`.

mod master;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use masif_daemon::config::{Checked, Problems, Validate};
use masif_pki::TlsSource;
use masif_proto::{Tag, MAX_TAGS};
use serde::Deserialize;

use crate::apt::AptSettings;
use crate::facts::DEFAULT_REBOOT_REQUIRED_FILE;
use master::{master_settings, RawMaster};

pub use masif_daemon::config::ConfigError;
pub use masif_daemon::logging::LogLevel;

/// Where the monitoring socket goes unless configured.
pub(crate) const DEFAULT_SOCKET: &str = "/run/masif-upgrader-agent/agent.sock";
/// Longest interval accepted (a week), so sums of instants cannot overflow.
const MAX_INTERVAL_SECS: u64 = 7 * 24 * 3600;
/// Largest `max_failures` accepted.
const MAX_FAILURES_LIMIT: u64 = 1000;

/// The check, report and retry intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intervals {
    /// Between simulations when nothing is to be done.
    pub check: Duration,
    /// Between reports while tasks wait for approval.
    pub report: Duration,
    /// Before retrying a failed operation; zero means "never retry: exit on the first error".
    pub retry: Duration,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub intervals: Intervals,
    /// Failed runs in a row after which a package is given up until approved anew or its
    /// plan changes; 0: retry forever.
    pub max_failures: u32,
    /// The masters' `host:port`, at least one (`master.host`, or each of `master.hosts`): the
    /// agent uses one at a time and moves to the next when it does not answer.
    pub master_hosts: Vec<String>,
    /// The name every master's certificate must be valid for.
    pub master_cn: String,
    pub tls: TlsSource,
    pub apt: AptSettings,
    pub socket: PathBuf,
    /// The file whose existence means "reboot required" (its packages in the same path plus
    /// `.pkgs`), reported as a fact; the agent never reboots.
    pub reboot_required_file: PathBuf,
    pub log_level: LogLevel,
    /// Spread the first check (a random part of the report interval, at most a minute) and
    /// the intervals randomly, so a fleet restarted together does not report in the same
    /// second. Always on from a configuration file; `masif demo` turns it off so that its
    /// agents report at once.
    pub jitter: bool,
    /// The host's tags, sent with every v2 report (maintenance windows, max in flight and
    /// roll-out rings are set per tag on the master).
    pub tags: BTreeSet<Tag>,
}

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    #[serde(default)]
    interval: RawIntervals,
    max_failures: Option<u64>,
    master: RawMaster,
    tls: TlsSource,
    #[serde(default)]
    apt: RawApt,
    socket: Option<PathBuf>,
    reboot_required_file: Option<PathBuf>,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    tags: Checked<Option<Vec<serde_yaml::Value>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntervals {
    #[serde(default = "default_check")]
    check: u64,
    #[serde(default = "default_check")]
    report: u64,
    #[serde(default = "default_retry")]
    retry: u64,
}

fn default_check() -> u64 {
    300
}

fn default_retry() -> u64 {
    60
}

impl Default for RawIntervals {
    fn default() -> Self {
        Self {
            check: default_check(),
            report: default_check(),
            retry: default_retry(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApt {
    path: Option<PathBuf>,
    #[serde(default)]
    options: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Longest a real upgrade may run (seconds).
    timeout: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default)]
    level: Checked<LogLevel>,
}

impl AgentConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        masif_daemon::config::load(path)
    }

    /// Parses and validates YAML `text`; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        masif_daemon::config::parse(Path::new(file), text)
    }
}

/// `secs` as a duration if it lies between `min` and a week.
fn interval(secs: u64, min: u64) -> Result<Duration, String> {
    if secs < min || secs > MAX_INTERVAL_SECS {
        Err(format!(
            "{secs} is out of range ({min} to {MAX_INTERVAL_SECS} seconds)"
        ))
    } else {
        Ok(Duration::from_secs(secs))
    }
}

impl Validate for AgentConfig {
    type File = AgentFile;

    fn validate(raw: AgentFile, problems: &mut Problems) -> Option<Self> {
        let check = problems.check("interval.check", interval(raw.interval.check, 1));
        let report = problems.check("interval.report", interval(raw.interval.report, 1));
        let retry = problems.check("interval.retry", interval(raw.interval.retry, 0));
        let max_failures = problems.check("max_failures", max_failures(raw.max_failures));
        let master = master_settings(raw.master, problems);
        let apt = apt_settings(raw.apt, problems);
        let socket = raw.socket.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
        if !socket.is_absolute() {
            problems.add(
                "socket",
                format!("{} is not an absolute path", socket.display()),
            );
        }
        let reboot_required_file = raw
            .reboot_required_file
            .unwrap_or_else(|| PathBuf::from(DEFAULT_REBOOT_REQUIRED_FILE));
        problems.check(
            "reboot_required_file",
            check_reboot_file(&reboot_required_file),
        );
        let log_level = problems.take("log.level", raw.log.level);
        let tags = problems
            .take("tags", raw.tags)
            .map(|tags| check_tags(&tags.unwrap_or_default(), problems));
        let master = master?;
        Some(Self {
            intervals: Intervals {
                check: check?,
                report: report?,
                retry: retry?,
            },
            max_failures: max_failures?,
            master_hosts: master.hosts,
            master_cn: master.cn,
            tls: raw.tls,
            apt,
            socket,
            reboot_required_file,
            log_level: log_level?,
            jitter: true,
            tags: tags?,
        })
    }
}

/// `tags:`: at most [`MAX_TAGS`] distinct tags, each problem recorded as `tags[i]`.
fn check_tags(raw: &[serde_yaml::Value], problems: &mut Problems) -> BTreeSet<Tag> {
    if raw.len() > MAX_TAGS {
        problems.add("tags", format!("{} tags; at most {MAX_TAGS}", raw.len()));
    }
    let mut tags = BTreeSet::new();
    for (i, value) in raw.iter().enumerate() {
        let key = format!("tags[{i}]");
        let Some(text) = value.as_str() else {
            problems.add(key, "not a string (quote a tag that looks like a number)");
            continue;
        };
        match Tag::new(text) {
            Ok(tag) if tags.contains(&tag) => {
                problems.add(key, format!("{text:?} is given twice"));
            }
            Ok(tag) => {
                tags.insert(tag);
            }
            Err(e) => problems.add(key, format!("{text:?}: {e}")),
        }
    }
    tags
}

/// `max_failures`, 3 unless given.
fn max_failures(raw: Option<u64>) -> Result<u32, String> {
    match raw {
        None => Ok(crate::agent::DEFAULT_MAX_FAILURES),
        Some(n) if n <= MAX_FAILURES_LIMIT => Ok(n as u32),
        Some(n) => Err(format!(
            "{n} is out of range (0 to {MAX_FAILURES_LIMIT}; 0: retry forever)"
        )),
    }
}

/// `apt:`, its problems recorded.
fn apt_settings(raw: RawApt, problems: &mut Problems) -> AptSettings {
    let mut apt = AptSettings::default();
    if let Some(path) = raw.path {
        if !path.is_absolute() {
            problems.add(
                "apt.path",
                format!("{} is not an absolute path", path.display()),
            );
        }
        apt.path = path;
    }
    for (i, option) in raw.options.iter().enumerate() {
        if option.is_empty() || option.contains('\0') {
            problems.add(format!("apt.options[{i}]"), "empty or contains a NUL byte");
        }
    }
    apt.options = raw.options;
    for (name, value) in &raw.env {
        let key = format!("apt.env.{name}");
        let ok_name = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !ok_name {
            problems.add(key, "not a valid environment variable name");
        } else if name == "LC_ALL" {
            problems.add(key, "LC_ALL is always C (apt's output is parsed)");
        } else if value.contains('\0') {
            problems.add(key, "contains a NUL byte");
        }
    }
    apt.env = raw.env.into_iter().collect();
    if let Some(secs) = raw.timeout {
        if let Some(timeout) = problems.check("apt.timeout", interval(secs, 10)) {
            apt.run_timeout = timeout;
        }
    }
    apt
}

/// An absolute path naming a file (not a directory, not ending in `/`).
fn check_reboot_file(path: &Path) -> Result<(), String> {
    let text = path.as_os_str().to_string_lossy();
    if !path.is_absolute() {
        Err(format!("{} is not an absolute path", path.display()))
    } else if text.ends_with('/') || path.file_name().is_none() {
        Err(format!("{} names a directory, not a file", path.display()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// DESIGN.md's example, verbatim.
    const EXAMPLE: &str = r#"
# /etc/masif-upgrader/agent.yml
interval: { check: 300, report: 300, retry: 60 }
master:
  host: "master.example.com:8150"
  cn: "master.example.com"     # name to require in the master's certificate
tls: { discover: puppet }      # or cert/key/ca files
apt:
  path: /usr/bin/apt-get       # the apt-get to run
  options: []                  # extra apt-get arguments
  env: {}                      # extra environment, e.g. { APT_CONFIG: /srv/sandbox/apt.conf }
socket: /run/masif-upgrader-agent/agent.sock
log: { level: info }
"#;

    #[test]
    fn the_design_example_parses() {
        let c = AgentConfig::parse(EXAMPLE, "agent.yml").unwrap();
        assert_eq!(c.intervals.check, Duration::from_secs(300));
        assert_eq!(c.intervals.retry, Duration::from_secs(60));
        assert_eq!(c.max_failures, 3);
        assert_eq!(c.master_hosts, ["master.example.com:8150"]);
        assert_eq!(c.master_cn, "master.example.com");
        assert_eq!(c.apt.path, PathBuf::from("/usr/bin/apt-get"));
        assert_eq!(c.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(
            c.reboot_required_file,
            PathBuf::from("/var/run/reboot-required")
        );
        assert_eq!(c.log_level, LogLevel::Info);
        assert!(matches!(c.tls, TlsSource::Discover(_)));
    }

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../../../packaging/config/agent.yml");
        let c = AgentConfig::parse(text, "packaging/config/agent.yml").unwrap();
        assert_eq!(c.master_cn, "master.example.com");
        // And with its commented timeout switched on.
        let text = text
            .replace("# timeout: 3600", "timeout: 3600")
            .replace("# tags: [web, prod]", "tags: [web, prod]");
        let c = AgentConfig::parse(&text, "agent.yml").unwrap();
        assert_eq!(c.apt.run_timeout, Duration::from_secs(3600));
        assert_eq!(c.tags.len(), 2);
    }

    #[rstest]
    #[case::forever("max_failures: 0\n", 0)]
    #[case::once("max_failures: 1\n", 1)]
    #[case::limit("max_failures: 1000\n", 1000)]
    fn max_failures_is_read(#[case] extra: &str, #[case] expected: u32) {
        let c = AgentConfig::parse(&format!("{BASE}{extra}"), "a.yml").unwrap();
        assert_eq!(c.max_failures, expected);
    }

    #[test]
    fn the_reboot_required_file_is_configurable() {
        let yaml = format!("{BASE}reboot_required_file: /srv/sb/root/run/reboot-required\n");
        let c = AgentConfig::parse(&yaml, "a.yml").unwrap();
        assert_eq!(
            c.reboot_required_file,
            PathBuf::from("/srv/sb/root/run/reboot-required")
        );
    }

    #[test]
    fn tags_are_read_and_each_bad_one_named() {
        let c = AgentConfig::parse(
            &format!("{BASE}tags: [web, prod-eu.1, \"2024\"]\n"),
            "a.yml",
        );
        let tags: Vec<String> = c.unwrap().tags.iter().map(|t| t.to_string()).collect();
        assert_eq!(tags, ["2024", "prod-eu.1", "web"]);
        for none in ["", "tags:\n", "tags: []\n"] {
            let c = AgentConfig::parse(&format!("{BASE}{none}"), "a.yml").unwrap();
            assert!(c.tags.is_empty(), "{none:?}");
        }
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        for (tags, problem) in [
            ("tags: web\n", "a.yml: tags: "),
            (
                "tags: [web, -x]\n",
                "a.yml: tags[1]: \"-x\": must be 1 to 64",
            ),
            ("tags: [web, \"a b\"]\n", "a.yml: tags[1]: \"a b\""),
            ("tags: [2024]\n", "a.yml: tags[0]: not a string"),
            ("tags: [[web]]\n", "a.yml: tags[0]: not a string"),
            (
                "tags: [web, db, web]\n",
                "a.yml: tags[2]: \"web\" is given twice",
            ),
            (
                &format!("tags: [{}]\n", many.join(", ")),
                "a.yml: tags: 33 tags; at most 32",
            ),
        ] {
            let msg = AgentConfig::parse(&format!("{BASE}{tags}"), "a.yml")
                .unwrap_err()
                .to_string();
            assert!(msg.starts_with(problem), "{tags:?}: {msg}");
        }
    }

    #[test]
    fn files_sandbox_environment_and_defaults() {
        let yaml = r#"
master: { host: "127.0.0.1:8150", cn: master }
tls: { cert: /c.pem, key: /k.pem, ca: /ca.pem }
apt: { env: { APT_CONFIG: /srv/sb/apt.conf, TMPDIR: /srv/sb/tmp }, options: ["-o", "Debug::pkgProblemResolver=0"], timeout: 900 }
"#;
        let c = AgentConfig::parse(yaml, "a.yml").unwrap();
        assert_eq!(c.intervals.report, Duration::from_secs(300));
        assert_eq!(
            c.apt.env,
            [
                ("APT_CONFIG".to_owned(), "/srv/sb/apt.conf".to_owned()),
                ("TMPDIR".to_owned(), "/srv/sb/tmp".to_owned())
            ]
        );
        assert_eq!(c.apt.options.len(), 2);
        assert_eq!(c.apt.run_timeout, Duration::from_secs(900));
        assert!(matches!(c.tls, TlsSource::Files(_)));
    }

    const BASE: &str = "master: { host: \"m:8150\", cn: m }\ntls: { discover: puppet }\n";

    #[rstest]
    #[case::unknown_top_key("frobnicate: 1\n", "frobnicate")]
    #[case::unknown_interval_key("interval: { chek: 5 }\n", "chek")]
    #[case::unknown_apt_key("apt: { paht: /x }\n", "paht")]
    #[case::bad_interval_type("interval: { check: soon }\n", "interval.check")]
    #[case::negative_interval("interval: { report: -5 }\n", "interval.report")]
    #[case::zero_check("interval: { check: 0 }\n", "interval.check")]
    #[case::huge_interval("interval: { retry: 99999999999 }\n", "interval.retry")]
    #[case::bad_level("log: { level: verbose }\n", "log.level")]
    #[case::relative_apt("apt: { path: apt-get }\n", "apt.path")]
    #[case::env_name("apt: { env: { \"A=B\": x } }\n", "apt.env.A=B")]
    #[case::env_lc_all("apt: { env: { LC_ALL: de_DE } }\n", "apt.env.LC_ALL")]
    #[case::relative_socket("socket: agent.sock\n", "socket")]
    #[case::relative_reboot_file("reboot_required_file: reboot-required\n", "reboot_required_file")]
    #[case::reboot_file_dir("reboot_required_file: /var/run/\n", "reboot_required_file")]
    #[case::reboot_file_root("reboot_required_file: /\n", "reboot_required_file")]
    #[case::reboot_file_list("reboot_required_file: [a]\n", "reboot_required_file")]
    #[case::short_timeout("apt: { timeout: 1 }\n", "apt.timeout")]
    #[case::huge_max_failures("max_failures: 1001\n", "max_failures")]
    #[case::negative_max_failures("max_failures: -1\n", "max_failures")]
    #[case::text_max_failures("max_failures: often\n", "max_failures")]
    fn bad_values_name_the_file_and_key(#[case] extra: &str, #[case] key: &str) {
        let yaml = format!("{BASE}{extra}");
        match AgentConfig::parse(&yaml, "/etc/masif-upgrader/agent.yml") {
            Ok(_) => panic!("{extra:?} was accepted"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.starts_with("/etc/masif-upgrader/agent.yml: "), "{msg}");
                assert!(msg.contains(key), "{msg:?} should name {key:?}");
            }
        }
    }

    #[rstest]
    #[case::no_master("tls: { discover: puppet }\n", "master")]
    #[case::no_cn("master: { host: \"m:1\" }\ntls: { discover: puppet }\n", "cn")]
    #[case::no_tls("master: { host: \"m:1\", cn: m }\n", "tls")]
    #[case::tls_missing_key(
        "master: { host: \"m:1\", cn: m }\ntls: { cert: /c, ca: /ca }\n",
        "key"
    )]
    #[case::tls_unknown_key(
        "master: { host: \"m:1\", cn: m }\ntls: { discover: puppet, colour: red }\n",
        "colour"
    )]
    #[case::host_without_port(
        "master: { host: m, cn: m }\ntls: { discover: puppet }\n",
        "master.host"
    )]
    #[case::host_bad_port(
        "master: { host: \"m:99999\", cn: m }\ntls: { discover: puppet }\n",
        "master.host"
    )]
    #[case::bad_cn(
        "master: { host: \"m:1\", cn: \"not a name\" }\ntls: { discover: puppet }\n",
        "master.cn"
    )]
    #[case::not_a_map("- just\n- a list\n", "")]
    #[case::empty("", "")]
    #[case::garbage("{{{{", "")]
    fn missing_and_malformed(#[case] yaml: &str, #[case] key: &str) {
        let msg = AgentConfig::parse(yaml, "agent.yml")
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("agent.yml: "), "{msg}");
        assert!(msg.contains(key), "{msg:?} should name {key:?}");
    }

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let yaml = "interval: { check: 0, retry: 99999999999 }\nmax_failures: 5000\n\
                    master: { host: m, cn: \"not a name\" }\ntls: { discover: puppet }\n\
                    apt: { path: apt-get, options: [\"\"], env: { LC_ALL: C }, timeout: 1 }\n\
                    socket: agent.sock\nreboot_required_file: rr\nlog: { level: verbose }\n";
        let err = AgentConfig::parse(yaml, "agent.yml").unwrap_err();
        let lines: Vec<String> = err.lines().collect();
        for key in [
            "interval.check",
            "interval.retry",
            "max_failures",
            "master.host",
            "master.cn",
            "apt.path",
            "apt.options[0]",
            "apt.env.LC_ALL",
            "apt.timeout",
            "socket",
            "reboot_required_file",
            "log.level",
        ] {
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(&format!("agent.yml: {key}: "))),
                "{key} in {lines:?}"
            );
        }
        assert_eq!(lines.len(), 12, "{lines:?}");
    }

    #[test]
    fn alias_bombs_are_rejected_quickly() {
        let mut yaml = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
        for i in 0..12 {
            let prev = if i == 0 {
                "a".to_owned()
            } else {
                format!("b{}", i - 1)
            };
            yaml.push_str(&format!("b{i}: &b{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        assert!(AgentConfig::parse(&yaml, "bomb.yml").is_err());
    }

    #[test]
    fn a_missing_file_is_named() {
        let msg = AgentConfig::load(Path::new("/nonexistent/agent.yml"))
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("/nonexistent/agent.yml: "), "{msg}");
    }
}
