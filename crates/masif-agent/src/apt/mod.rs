//! The APT back end: plans with `apt-get -s`, upgrades one package with
//! `install --only-upgrade`, and tells a held dpkg lock ("busy") from a failure. Every call
//! goes through [`crate::exec::Runner`].

mod parse;

pub use parse::{parse_line, parse_simulation, ParseError, MAX_LINES, MAX_LINE_BYTES};

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use masif_proto::PackageName;

use crate::exec::{Output, Runner};
use crate::pm::{PackageManager, Plan, RunOutcome};
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

    async fn upgrade_package(&self, package: &PackageName) -> Result<RunOutcome> {
        let name = checked(package)?;
        let args = [
            "-yqq",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
            "install",
            "--only-upgrade",
            name,
        ];
        let out = self
            .runner
            .command(&self.settings.path)
            .args(&self.settings.options)
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .timeout(self.settings.run_timeout)
            .run()
            .await?;
        if let Some(reason) = busy_reason(&out) {
            tracing::info!(package = name, %reason, "package manager busy");
            return Ok(RunOutcome::Busy(reason));
        }
        Ok(RunOutcome::Ran(out))
    }
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
