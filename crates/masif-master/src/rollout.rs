//! The roll-out settings of the master (`rollout:` in master.yml) and the roll-out loop:
//! every `advance` (jittered, so that several masters spread out) the store halts, promotes
//! and completes running roll-outs as their rings' results and the master's clock say. The
//! store makes each change once however many masters ask, so every master runs the loop.

use std::sync::Arc;
use std::time::Duration;

use masif_store::{RolloutChange, Store};

use crate::clock::Clock;

/// How the roll-out controls behave on this master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutSettings {
    /// Seconds a max-in-flight lease lasts unless the agent renews it.
    pub lease_seconds: u64,
    /// How often a held report waiting for a free slot asks the store again.
    pub slot_poll: Duration,
    /// How often running roll-outs are advanced (give or take a quarter).
    pub advance: Duration,
}

/// Default of [`RolloutSettings::lease_seconds`].
pub const DEFAULT_LEASE_SECONDS: u64 = 120;

impl Default for RolloutSettings {
    fn default() -> Self {
        Self {
            lease_seconds: DEFAULT_LEASE_SECONDS,
            slot_poll: Duration::from_secs(5),
            advance: Duration::from_secs(5),
        }
    }
}

/// Advances roll-outs every `every` (jittered by a quarter) until aborted.
pub(crate) async fn advance_loop(store: Arc<dyn Store>, clock: Clock, every: Duration) {
    let mut failing = false;
    loop {
        let quarter = every / 4;
        let pause = every - quarter + quarter.mul_f64(2.0 * rand::random::<f64>());
        tokio::time::sleep(pause).await;
        match store.advance_rollouts(clock.now()).await {
            Ok(changes) => {
                failing = false;
                for change in changes {
                    log(&change);
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "advancing roll-outs failed; retrying");
                }
                failing = true;
            }
        }
    }
}

fn log(change: &RolloutChange) {
    match change {
        RolloutChange::Promoted { id, ring } => {
            tracing::info!(rollout = id, %ring, "roll-out promoted to its next ring");
        }
        RolloutChange::Halted { id, reason } => {
            tracing::info!(rollout = id, reason, "roll-out halted");
        }
        RolloutChange::Completed { id } => tracing::info!(rollout = id, "roll-out completed"),
    }
}
