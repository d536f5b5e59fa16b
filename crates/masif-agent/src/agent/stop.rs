//! Shutdown as the loop sees it: a level set once, waited on between steps and raced
//! against sleeps and reports (never against an apt/dpkg run).

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// Shutdown as a level: set once, seen by every later check.
pub(super) struct Stop(pub(super) watch::Receiver<bool>);

impl Stop {
    pub(super) fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    async fn wait(&mut self) {
        if self.0.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Sleeps `d`; `true` if shutdown came first.
    pub(super) async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = self.wait() => true,
            _ = tokio::time::sleep(d) => false,
        }
    }

    /// Runs `f` unless shutdown comes first (`None`). Never used around apt runs.
    pub(super) async fn race<F: Future>(&mut self, f: F) -> Option<F::Output> {
        tokio::select! {
            _ = self.wait() => None,
            out = f => Some(out),
        }
    }
}
