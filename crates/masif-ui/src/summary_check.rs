//! The pending summary's periodic check: every `summary_check_interval` the UI walks every
//! package with [`Admin::check_pending_summary`], a few packages per short transaction, and
//! says what it corrected. Only writes that bypass the store make the summary wrong: the
//! original master or UI running beside ours, or hand-written SQL.

use std::time::Duration;

use masif_store::{Admin, Store};

/// Checks the summary every `interval`, the first time right away; runs until dropped.
pub(crate) async fn run(store: &dyn Store, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match check(store).await {
            Ok(0) => tracing::debug!("pending summary checked: nothing to correct"),
            Ok(corrected) => tracing::warn!(
                "pending summary: {corrected} counts were wrong and are corrected; something \
                 other than Masif Upgrader changed pending task rows (the original master or \
                 UI, or SQL)"
            ),
            Err(e) => tracing::warn!("pending summary check failed, next in {interval:?}: {e}"),
        }
    }
}

/// One pass over every package; returns how many counts were corrected.
async fn check(store: &dyn Admin) -> masif_store::Result<u64> {
    let (mut after, mut corrected) = (0, 0);
    loop {
        let step = store.check_pending_summary(after).await?;
        corrected += step.corrected;
        match step.next {
            Some(next) => after = next,
            None => return Ok(corrected),
        }
    }
}
