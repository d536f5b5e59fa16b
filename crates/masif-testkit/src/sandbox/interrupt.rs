//! dpkg killed mid-run, as a power cut or systemd's `KillMode=control-group` would leave it: a
//! postinst that blocks until released (so a kill lands deterministically while dpkg
//! configures), killing a process with everything it started, and an upgrade interrupted that
//! way.

use std::path::PathBuf;
use std::time::Duration;

use super::{Sandbox, APT_GET, STEP_TIMEOUT};
use crate::{Error, Result};

/// A postinst body that marks itself started (`$DPKG_ROOT/postinst-started`) and waits until
/// `$DPKG_ROOT/postinst-release` exists ([`Sandbox::release_postinst`]).
pub const BLOCKING_POSTINST: &str =
    "touch \"$DPKG_ROOT/postinst-started\"; echo 'postinst: waiting for release'; \
     while [ ! -e \"$DPKG_ROOT/postinst-release\" ]; do sleep 0.1; done";

impl Sandbox {
    /// Whether a [`BLOCKING_POSTINST`] is running (or ran) in this sandbox.
    pub fn postinst_started(&self) -> bool {
        self.root().join("postinst-started").exists()
    }

    /// Lets every [`BLOCKING_POSTINST`] of this sandbox finish, now and later.
    pub fn release_postinst(&self) -> Result<()> {
        let path = self.root().join("postinst-release");
        std::fs::write(&path, "").map_err(|source| Error::Io {
            context: path.display().to_string(),
            source,
        })
    }

    /// Upgrades `package` to `version` with apt-get and kills apt-get, dpkg and the postinst
    /// with SIGKILL while the package's [`BLOCKING_POSTINST`] runs: dpkg is left interrupted,
    /// the package half-configured, as after a crash.
    pub async fn interrupt_upgrade(&self, package: &str, version: &str) -> Result<()> {
        let apt = self
            .runner
            .command(APT_GET.path())
            .args(["install", "-yqq", "--only-upgrade"])
            .arg(format!("{package}={version}"))
            .env("DEBIAN_FRONTEND", "noninteractive")
            .spawn()
            .await?;
        let pid = apt
            .id()
            .ok_or_else(|| Error::Sandbox("apt-get ended at once".into()))?;
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        while !self.postinst_started() {
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Sandbox(format!(
                    "the postinst of {package} never started"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        kill_tree(pid).await?;
        let _ = apt.wait().await;
        Ok(())
    }
}

/// Kills process `pid` and all its descendants with SIGKILL, whatever their process group,
/// as systemd's `KillMode=control-group` does with a unit's processes: apt-get runs dpkg in
/// a process group of its own, so killing a group is not enough. Repeats until none is left.
pub async fn kill_tree(pid: u32) -> Result<()> {
    let runner = masif_agent::exec::Runner::default();
    for _ in 0..50 {
        let mut tree = descendants(pid);
        if process_exists(pid) {
            tree.push(pid);
        }
        if tree.is_empty() {
            return Ok(());
        }
        // Stop them all first, so none starts another child meanwhile.
        for signal in ["STOP", "KILL"] {
            let pids: Vec<String> = tree.iter().map(u32::to_string).collect();
            runner
                .command("/bin/kill")
                .args(["-s", signal])
                .args(&pids)
                .timeout(STEP_TIMEOUT)
                .run()
                .await?;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(Error::Sandbox(format!(
        "process {pid} and its children would not die"
    )))
}

fn process_exists(pid: u32) -> bool {
    // A zombie counts as gone: it is dead, only not yet waited for.
    std::fs::read_to_string(proc_path(pid, "stat"))
        .is_ok_and(|stat| stat_field(&stat, 0) != Some("Z"))
}

fn proc_path(pid: u32, file: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{file}"))
}

/// Field `n` after the command name of a /proc/PID/stat line (0: state, 1: parent).
fn stat_field(stat: &str, n: usize) -> Option<&str> {
    // "pid (comm) state ppid …": comm may hold blanks, so split after the last ')'.
    stat.rsplit_once(')')?.1.split_whitespace().nth(n)
}

/// Every living process whose chain of parents leads to `ancestor`.
pub fn descendants(ancestor: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(proc_path(pid, "stat")).ok()?;
            if stat_field(&stat, 0) == Some("Z") {
                return None;
            }
            Some((pid, stat_field(&stat, 1)?.parse().ok()?))
        })
        .collect();
    let mut found = vec![ancestor];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}
