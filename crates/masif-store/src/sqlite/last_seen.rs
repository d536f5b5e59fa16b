//! Write-behind of agents' `last_seen` after unchanged reports, as in the MySQL back end: the
//! report only marks its agent as due, and a background task writes every due agent with one
//! UPDATE a second, so a heartbeat costs a set insertion instead of a write transaction of its
//! own. Marks not yet written when the process dies are lost (the next report marks again).

use std::collections::HashSet;
use std::sync::{Mutex, Weak};
use std::time::Duration;

use super::{Inner, SqliteStore};
use crate::clock::unix_now;

/// How often due marks are written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Agents (ids) whose contact is still to be written.
#[derive(Debug, Default)]
pub(super) struct Due(Mutex<HashSet<i64>>);

impl Due {
    pub(super) fn mark(&self, agent: i64) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(agent);
    }

    fn take(&self) -> Vec<i64> {
        let mut due = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut agents: Vec<i64> = due.drain().collect();
        agents.sort_unstable();
        agents
    }
}

impl SqliteStore {
    /// Writes every due mark now.
    pub(super) async fn write_last_seen(&self) {
        let agents = self.inner.last_seen_due.take();
        if agents.is_empty() {
            return;
        }
        let now = unix_now();
        let written = self
            .write("recording last_seen", move |tx| {
                let mut update = tx.prepare_cached(
                    "UPDATE agent_report SET last_seen = ?1 WHERE agent = ?2 AND last_seen < ?1",
                )?;
                for agent in &agents {
                    update.execute((now, agent))?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = written {
            tracing::warn!("recording last_seen failed: {e}");
        }
    }
}

/// Writes the marks every [`FLUSH_EVERY`] until the store is dropped.
pub(super) async fn flush_every(inner: Weak<Inner>) {
    let mut ticks = tokio::time::interval(FLUSH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        SqliteStore { inner }.write_last_seen().await;
    }
}
