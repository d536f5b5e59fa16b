//! Max-in-flight leases while the upgrade step runs: when the master's approval came with a
//! lease (`lease_seconds`), a background task renews it every third of that time through the
//! master client, and the lease is released when the step ends, however it ends. Failures
//! are logged and never stop a run; a master without leases (404) is not asked again.

use std::sync::Arc;
use std::time::Duration;

use masif_proto::v2::LeaseRequest;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::Reporter;
use crate::master::LeaseAnswer;

/// Shortest time between renewals, whatever lease the master gives.
const MIN_RENEWAL: Duration = Duration::from_millis(100);

/// A lease being renewed; [`Renewal::end`] stops renewing and releases it.
pub(super) struct Renewal {
    master: Arc<dyn Reporter>,
    stop: oneshot::Sender<()>,
    /// Ends with whether the master keeps leases.
    task: JoinHandle<bool>,
}

impl Renewal {
    /// Renews the lease of `ttl` every `ttl / 3` until ended.
    pub(super) fn start(master: Arc<dyn Reporter>, ttl: Duration) -> Self {
        let every = (ttl / 3).max(MIN_RENEWAL);
        let (stop, stopped) = oneshot::channel();
        tracing::debug!(
            lease_secs = ttl.as_secs(),
            "holding a max-in-flight lease while upgrading"
        );
        let task = tokio::spawn(renew(master.clone(), every, stopped));
        Self { master, stop, task }
    }

    /// Stops renewing (a renewal under way finishes first: the connection stays usable) and
    /// releases the lease, unless the master said it keeps none.
    pub(super) async fn end(self) {
        let _ = self.stop.send(());
        let supported = self.task.await.unwrap_or(true);
        if !supported {
            return;
        }
        match self.master.lease(LeaseRequest::Release).await {
            Ok(LeaseAnswer::Done { leases }) => {
                tracing::debug!(leases, "max-in-flight lease released")
            }
            Ok(LeaseAnswer::NoLeases) => {}
            Err(e) => tracing::warn!(
                error = %e,
                "releasing the max-in-flight lease failed; the master frees it when it expires"
            ),
        }
    }
}

/// Renews every `every` until `stopped`; returns `false` if the master keeps no leases.
async fn renew(
    master: Arc<dyn Reporter>,
    every: Duration,
    mut stopped: oneshot::Receiver<()>,
) -> bool {
    let mut lost_logged = false;
    loop {
        tokio::select! {
            _ = &mut stopped => return true,
            _ = tokio::time::sleep(every) => {}
        }
        match master.lease(LeaseRequest::Renew).await {
            Ok(LeaseAnswer::NoLeases) => {
                tracing::info!("the master keeps no leases (404); not renewing");
                return false;
            }
            Ok(LeaseAnswer::Done { leases: 0 }) if !lost_logged => {
                lost_logged = true;
                tracing::warn!(
                    "the master holds no lease for this agent any more (it expired); \
                     the run goes on"
                );
            }
            Ok(LeaseAnswer::Done { leases }) => tracing::debug!(leases, "lease renewed"),
            Err(e) => {
                tracing::warn!(error = %e, "renewing the max-in-flight lease failed; the run goes on")
            }
        }
    }
}
