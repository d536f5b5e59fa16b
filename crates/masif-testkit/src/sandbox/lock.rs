//! Holding a sandbox's apt or dpkg lock from a helper process, as a running apt-get or dpkg
//! would, so tests can see "busy" answers.

use masif_agent::exec::Running;

use super::{Sandbox, PERL, STEP_TIMEOUT};
use crate::{Error, Result};

/// The lock files apt and dpkg take (POSIX fcntl locks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxLock {
    /// `var/lib/dpkg/lock-frontend`: what a running apt-get or dpkg frontend holds.
    DpkgFrontend,
    /// `var/lib/dpkg/lock`.
    Dpkg,
    /// `var/cache/apt/archives/lock`.
    Archives,
    /// `var/lib/apt/lists/lock`.
    Lists,
}

impl SandboxLock {
    pub(super) fn relative(self) -> &'static str {
        match self {
            SandboxLock::DpkgFrontend => "var/lib/dpkg/lock-frontend",
            SandboxLock::Dpkg => "var/lib/dpkg/lock",
            SandboxLock::Archives => "var/cache/apt/archives/lock",
            SandboxLock::Lists => "var/lib/apt/lists/lock",
        }
    }
}

/// A lock held by a helper process until [`LockHolder::release`] or drop.
#[derive(Debug)]
pub struct LockHolder {
    process: Running,
}

impl LockHolder {
    pub async fn release(self) {
        self.process.stop().await;
    }
}

/// The perl helper holding an fcntl write lock (flock(1) would take a BSD lock, which
/// apt and dpkg do not see). Prints `holding` once the lock is held, then sleeps.
const HOLD_LOCK_PERL: &str = r#"
use strict; use warnings; use Fcntl qw(F_SETLKW F_WRLCK SEEK_SET);
my $path = shift @ARGV;
open(my $fh, '+<', $path) or die "cannot open $path: $!\n";
# struct flock on LP64 Linux: short type, short whence, off_t start, off_t len, pid_t pid
my $want = pack('s s x![q] q q i x![q]', F_WRLCK, SEEK_SET, 0, 0, 0);
fcntl($fh, F_SETLKW, $want) or die "cannot lock $path: $!\n";
$| = 1; print "holding\n";
sleep;
"#;

impl Sandbox {
    /// Holds `lock` from a helper process (as a running apt/dpkg would) until released.
    pub async fn hold_lock(&self, lock: SandboxLock) -> Result<LockHolder> {
        let path = self.root().join(lock.relative());
        let mut process = self
            .runner
            .command(PERL.path())
            .args(["-e", HOLD_LOCK_PERL])
            .arg(&path)
            .spawn()
            .await?;
        match tokio::time::timeout(STEP_TIMEOUT, process.next_line()).await {
            Ok(Some(line)) if line == "holding" => Ok(LockHolder { process }),
            other => {
                process.stop().await;
                Err(Error::Sandbox(format!(
                    "could not hold {}: {other:?}",
                    path.display()
                )))
            }
        }
    }
}
