//! Write-behind of agents' `last_seen` after unchanged reports: the report only marks its agent
//! as due, and a background task writes every due agent with one UPDATE per `flush` interval,
//! so a heartbeat costs a set insertion instead of a write and a commit. `last_seen` is then
//! at most one interval late; marks not yet written when the process dies are lost (the next
//! report marks the agent again).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mysql_async::prelude::*;

use super::nodes::Nodes;
use super::shared::Stats;
use super::sql::{is_node_failure, tuple};
use crate::clock::unix_now;

/// Most agents one UPDATE names.
const CHUNK: usize = 1_000;

/// Agents whose contact is still to be written, shared with the background task.
#[derive(Debug, Default)]
struct Due {
    agents: Mutex<HashSet<u64>>,
}

impl Due {
    fn take(&self) -> Vec<u64> {
        let mut agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        agents.drain().collect()
    }
}

/// The marks and the task that writes them; the task writes what is left and ends once this
/// is dropped.
#[derive(Debug)]
pub(crate) struct LastSeen {
    due: Arc<Due>,
    nodes: Nodes,
    stats: Arc<Stats>,
}

impl LastSeen {
    /// Starts the background task (on the current tokio runtime).
    pub(crate) fn start(nodes: Nodes, stats: Arc<Stats>, flush: Duration) -> Self {
        let due = Arc::new(Due::default());
        tokio::spawn(flush_every(
            Arc::downgrade(&due),
            nodes.clone(),
            stats.clone(),
            flush,
        ));
        Self { due, nodes, stats }
    }

    /// Marks agent `id` as seen now.
    pub(crate) fn mark(&self, id: u64) {
        let mut agents = self.due.agents.lock().unwrap_or_else(|e| e.into_inner());
        agents.insert(id);
    }

    /// Writes every mark now (at shutdown).
    pub(crate) async fn flush(&self) {
        write(&self.nodes, &self.stats, self.due.take()).await;
    }
}

async fn flush_every(
    due: std::sync::Weak<Due>,
    nodes: Nodes,
    stats: Arc<Stats>,
    interval: Duration,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(due) = due.upgrade() else {
            return;
        };
        let agents = due.take();
        drop(due);
        write(&nodes, &stats, agents).await;
    }
}

/// One UPDATE per [`CHUNK`] agents. A failure is logged, not retried: the next report marks
/// the agent again.
async fn write(nodes: &Nodes, stats: &Stats, mut agents: Vec<u64>) {
    if agents.is_empty() {
        return;
    }
    agents.sort_unstable(); // primary-key order, the order every writer locks rows in
    let now = unix_now();
    for chunk in agents.chunks(CHUNK) {
        stats.count_round_trip();
        let done = async {
            let mut conn = nodes.get_conn().await?;
            conn.query_drop(format!(
                "UPDATE agent_report SET last_seen = {now} \
                 WHERE agent IN {} AND last_seen < {now}",
                tuple(chunk.iter().copied())
            ))
            .await
        }
        .await;
        if let Err(e) = done {
            tracing::warn!(agents = chunk.len(), "recording last_seen failed: {e}");
            if is_node_failure(&e) {
                nodes.check(tokio::time::Instant::now(), &e).await;
            }
        }
    }
}
