//! The APT back end: plans with `apt-get -s`, runs an approved single-package plan with
//! `install --only-upgrade [--no-remove] PKG=VERSION…` (simulated first with the same
//! arguments), and tells a held dpkg lock ("busy") from a failure. Every call goes through
//! [`crate::exec::Runner`].

mod dpkg;
mod parse;

pub use parse::{parse_line, parse_simulation, ParseError, MAX_LINES, MAX_LINE_BYTES};

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use masif_proto::{Action, PackageName, TaskSet, Version};

use crate::audit::Audit;
use crate::exec::{Output, Runner};
use crate::pm::{Job, PackageManager, Plan, RunOutcome};
use crate::{Error, Result};

/// How to run apt-get: which binary, extra arguments and environment, time limits.
#[derive(Debug, Clone)]
pub struct AptSettings {
    pub path: PathBuf,
    /// Extra arguments put before the sub-command (e.g. `-o Debug::NoLocking=0`).
    pub options: Vec<String>,
    /// Extra environment (e.g. `APT_CONFIG` of a sandbox root).
    pub env: Vec<(String, String)>,
    /// Longest a simulation may take.
    pub plan_timeout: Duration,
    /// Longest a real upgrade may take before its process group is killed.
    pub run_timeout: Duration,
}

impl AptSettings {
    /// The `apt-mark` beside [`AptSettings::path`] (a wrapper directory needs both).
    pub fn apt_mark(&self) -> PathBuf {
        self.path.with_file_name("apt-mark")
    }
}

impl Default for AptSettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/usr/bin/apt-get"),
            options: Vec::new(),
            env: Vec::new(),
            plan_timeout: Duration::from_secs(600),
            run_timeout: Duration::from_secs(3600),
        }
    }
}

/// apt-get driven through the command wrapper.
#[derive(Debug, Clone)]
pub struct Apt {
    settings: AptSettings,
    runner: Runner,
}

impl Apt {
    pub fn new(settings: AptSettings) -> Self {
        let runner = Runner::new(settings.env.clone());
        Self { settings, runner }
    }

    fn command_line(&self, args: &[&str]) -> String {
        let mut s = self.settings.path.display().to_string();
        for a in self
            .settings
            .options
            .iter()
            .map(String::as_str)
            .chain(args.iter().copied())
        {
            s.push(' ');
            s.push_str(a);
        }
        s
    }

    async fn simulate(&self, args: &[&str]) -> Result<Plan> {
        let out = self
            .runner
            .command(&self.settings.path)
            .args(&self.settings.options)
            .args(args)
            .timeout(self.settings.plan_timeout)
            .run()
            .await?;
        let command = self.command_line(args);
        if !out.success() {
            return Err(Error::AptFailed {
                command,
                status: out.describe_status(),
                stderr: last_lines(&out.stderr, 5),
            });
        }
        if out.truncated {
            return Err(Error::AptFailed {
                command,
                status: "output too large or incomplete".into(),
                stderr: last_lines(&out.stderr, 5),
            });
        }
        parse_simulation(&out.stdout).map_err(|source| Error::AptOutput { command, source })
    }
}

/// Package names come from apt's own output; still, never let one pass as an option.
fn checked(package: &PackageName) -> Result<&str> {
    let name = package.as_str();
    if name.starts_with('-') || name.contains(char::is_whitespace) {
        return Err(Error::BadPackageName(name.to_owned()));
    }
    Ok(name)
}

#[async_trait]
impl PackageManager for Apt {
    async fn plan_full(&self) -> Result<Plan> {
        self.simulate(&["-sqq", "dist-upgrade"]).await
    }

    async fn plan_package(&self, package: &PackageName) -> Result<Plan> {
        let name = checked(package)?;
        self.simulate(&["-sqq", "install", "--only-upgrade", name])
            .await
    }

    async fn simulate_job(&self, job: &Job) -> Result<Plan> {
        let args = job_args(job)?;
        let args: Vec<&str> = std::iter::once("-sqq")
            .chain(args.iter().map(String::as_str))
            .collect();
        self.simulate(&args).await
    }

    async fn run_job(&self, job: &Job) -> Result<RunOutcome> {
        let args = job_args(job)?;
        let out = self
            .runner
            .command(&self.settings.path)
            .args(&self.settings.options)
            .arg("-yqq")
            .args(&args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .timeout(self.settings.run_timeout)
            .run()
            .await?;
        if let Some(reason) = busy_reason(&out) {
            tracing::info!(package = %job.package, %reason, "package manager busy");
            return Ok(RunOutcome::Busy(reason));
        }
        Ok(RunOutcome::Ran(out))
    }

    /// `apt-mark showhold`, run like apt-get (same environment, so `APT_CONFIG` of a sandbox
    /// root applies: apt-mark reads dpkg's status file through APT's `Dir::State::status`,
    /// where `dpkg-query` would need the admin directory spelled out). The apt-mark next to
    /// the configured apt-get is used.
    async fn held(&self) -> Result<BTreeSet<PackageName>> {
        let path = self.settings.apt_mark();
        let out = self
            .runner
            .command(&path)
            .arg("showhold")
            .timeout(self.settings.plan_timeout)
            .run()
            .await?;
        if !out.success() || out.truncated {
            return Err(Error::AptFailed {
                command: format!("{} showhold", path.display()),
                status: out.describe_status(),
                stderr: last_lines(&out.stderr, 5),
            });
        }
        Ok(crate::facts::package_lines(&out.stdout, "held"))
    }

    /// `dpkg --audit`, with the dpkg program and options apt-get would use (`apt-config`
    /// beside the configured apt-get, same environment).
    async fn audit(&self) -> Result<Audit> {
        self.dpkg_audit().await
    }
}

/// The arguments (after `-sqq` or `-yqq`) that carry out exactly `job`'s plan: every package
/// it updates, and every package it only configures, named with its target version
/// (`PKG=VERSION`); packages it installs are not named (`--only-upgrade` would skip them):
/// they come as dependencies, and the simulation shows which version apt picked. Without a
/// removal in the plan, `--no-remove` makes apt refuse one instead of doing it.
fn job_args(job: &Job) -> Result<Vec<String>> {
    let names = exact_names(&job.plan).map_err(|reason| Error::BadJob {
        package: job.package.to_string(),
        reason,
    })?;
    if !names.contains_key(&job.package) {
        return Err(Error::BadJob {
            package: job.package.to_string(),
            reason: "the plan neither updates nor configures it".into(),
        });
    }
    let removes = job
        .plan
        .iter()
        .any(|t| matches!(t.action(), Action::Remove | Action::Purge));
    let mut args: Vec<String> = [
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
        "install",
        "--only-upgrade",
    ]
    .map(String::from)
    .into();
    if !removes {
        args.push("--no-remove".into());
    }
    for (package, version) in names {
        args.push(format!(
            "{}={}",
            checked(package)?,
            checked_version(version)?
        ));
    }
    Ok(args)
}

/// Each updated or only-configured package of `plan` with its target version.
fn exact_names(plan: &TaskSet) -> Result<BTreeMap<&PackageName, &Version>, String> {
    let installed: Vec<&PackageName> = plan
        .iter()
        .filter(|t| t.action() == Action::Install)
        .map(|t| t.package())
        .collect();
    let mut names: BTreeMap<&PackageName, &Version> = BTreeMap::new();
    for task in plan {
        let named = match task.action() {
            Action::Update => true,
            Action::Configure => !installed.contains(&task.package()),
            Action::Install | Action::Remove | Action::Purge => false,
        };
        let Some(version) = task.to_version().filter(|_| named) else {
            continue;
        };
        if let Some(other) = names.insert(task.package(), version) {
            if other != version {
                return Err(format!(
                    "the plan names {} in versions {other} and {version}",
                    task.package()
                ));
            }
        }
    }
    Ok(names)
}

/// Versions come from apt's own output; still, only what Debian allows goes on the command
/// line.
fn checked_version(version: &Version) -> Result<&str> {
    let v = version.as_str();
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".+~:-".contains(c);
    if v.is_empty() || !v.chars().all(allowed) {
        return Err(Error::BadVersion(v.to_owned()));
    }
    Ok(v)
}

/// `Some(apt's message)` if the run failed only because another process holds a lock
/// (notes/apt-sandbox.md §8), never for a permission problem.
pub fn busy_reason(out: &Output) -> Option<String> {
    let stderr = &out.stderr;
    let lock_line = |l: &&str| {
        l.starts_with("E: Could not get lock ")
            || l.contains("Unable to acquire the dpkg frontend lock")
            || l.contains("Unable to lock the administration directory")
            || l.contains("lock was locked by another process")
    };
    let apt_busy = out.code() == Some(100) || out.code() == Some(2);
    if !apt_busy || stderr.contains("(13: Permission denied)") || stderr.contains("are you root?") {
        return None;
    }
    stderr.lines().find(lock_line).map(str::to_owned)
}

/// The last `n` non-empty lines of `text`, joined, for error messages.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    fn output(code: i32, stderr: &str) -> Output {
        Output {
            status: ExitStatus::from_raw(code << 8),
            stdout: String::new(),
            stderr: stderr.into(),
            elapsed: Duration::ZERO,
            truncated: false,
        }
    }

    #[test]
    fn held_locks_are_busy() {
        // Exactly as apt 2.6 / dpkg 1.21 print them (notes/apt-sandbox.md §8).
        let cases = [
            (100, "E: Could not get lock /sb/root/var/lib/dpkg/lock-frontend. It is held by process 441 (perl)\nE: Unable to acquire the dpkg frontend lock (/sb/root/var/lib/dpkg/lock-frontend), is another process using it?\n"),
            (100, "E: Unable to acquire the dpkg frontend lock (/sb/root/var/lib/dpkg/lock-frontend), is another process using it?\n"),
            (100, "E: Could not get lock /sb/root/var/lib/dpkg/lock. It is held by process 9 (perl)\nE: Unable to lock the administration directory (/sb/root/var/lib/dpkg/), is another process using it?\n"),
            (100, "E: Could not get lock /sb/root/var/cache/apt/archives/lock. It is held by process 9 (perl)\nE: Unable to lock directory /sb/root/var/cache/apt/archives/\n"),
            (2, "dpkg: error: dpkg frontend lock was locked by another process with pid 441\nNote: removing the lock file is always wrong, can damage the locked area\n"),
        ];
        for (code, stderr) in cases {
            assert!(busy_reason(&output(code, stderr)).is_some(), "{stderr}");
        }
    }

    #[test]
    fn failures_are_not_busy() {
        let cases = [
            (100, "E: Could not open lock file /var/lib/dpkg/lock-frontend - open (13: Permission denied)\nE: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), are you root?\n"),
            (100, "E: Sub-process /usr/bin/dpkg returned an error code (1)\n"),
            (0, ""),
            (1, "E: Could not get lock x. It is held by process 1 (perl)\n"),
        ];
        for (code, stderr) in cases {
            assert_eq!(busy_reason(&output(code, stderr)), None, "{stderr}");
        }
    }

    #[test]
    fn option_like_package_names_are_refused() {
        let bad = PackageName::new("-oAPT::Get::Something=1").unwrap();
        assert!(matches!(checked(&bad), Err(Error::BadPackageName(_))));
        assert!(checked(&PackageName::new("libc6:i386").unwrap()).is_ok());
    }

    fn job(package: &str, lines: &[&str]) -> Job {
        Job {
            package: PackageName::new(package).unwrap(),
            plan: lines
                .iter()
                .map(|l| parse_line(1, l).unwrap().task)
                .collect(),
        }
    }

    /// The arguments after the fixed `-o Dpkg::Options…`, `install --only-upgrade`.
    fn tail(job: &Job) -> Vec<String> {
        let args = job_args(job).unwrap();
        assert_eq!(args[4..6], ["install", "--only-upgrade"]);
        args[6..].to_vec()
    }

    #[test]
    fn a_job_names_exact_versions_and_removes_only_what_was_approved() {
        let alpha = job("alpha", &["Inst alpha [1.0] (2.0 S)", "Conf alpha (2.0 S)"]);
        assert_eq!(tail(&alpha), ["--no-remove", "alpha=2.0"]);
        // A new dependency is pulled in, not named (--only-upgrade would skip it).
        let beta = job(
            "beta",
            &[
                "Inst gamma (1.0 S)",
                "Inst beta [1.0] (2.0 S)",
                "Conf gamma (1.0 S)",
                "Conf beta (2.0 S)",
            ],
        );
        assert_eq!(tail(&beta), ["--no-remove", "beta=2.0"]);
        let delta = job(
            "delta",
            &[
                "Remv epsilon [1.0]",
                "Inst delta [1.0] (2.0 S)",
                "Conf delta (2.0 S)",
            ],
        );
        assert_eq!(tail(&delta), ["delta=2.0"]);
        // A half-configured package is configured at its version, also in another's run.
        let poisoned = job(
            "alpha",
            &[
                "Inst alpha [1.0] (2:2.0~rc1+b1 S)",
                "Conf alpha (2:2.0~rc1+b1 S)",
                "Conf zeta (2.0 S)",
            ],
        );
        assert_eq!(
            tail(&poisoned),
            ["--no-remove", "alpha=2:2.0~rc1+b1", "zeta=2.0"]
        );
    }

    #[test]
    fn a_job_that_cannot_be_named_exactly_is_refused() {
        let not_in_plan = job("alpha", &["Inst beta [1.0] (2.0 S)"]);
        let err = job_args(&not_in_plan).unwrap_err().to_string();
        assert!(err.contains("plan of alpha"), "{err}");
        let two_versions = job("alpha", &["Inst alpha [1.0] (2.0 S)", "Conf alpha (3.0 S)"]);
        let err = job_args(&two_versions).unwrap_err().to_string();
        assert!(err.contains("versions 2.0 and 3.0"), "{err}");
        let odd = job("alpha", &["Inst alpha [1.0] (2.0=evil S)"]);
        assert!(matches!(job_args(&odd), Err(Error::BadVersion(_))));
    }

    #[tokio::test]
    async fn a_failing_simulation_is_an_error_with_apts_message() {
        let apt = Apt::new(AptSettings {
            path: "/bin/sh".into(),
            options: vec!["-c".into(), "echo 'E: broken' >&2; exit 100".into()],
            ..AptSettings::default()
        });
        let err = apt.plan_full().await.unwrap_err().to_string();
        assert!(
            err.contains("exit code 100") && err.contains("E: broken"),
            "{err}"
        );
    }
}
