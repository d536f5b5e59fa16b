//! A report on the MySQL back end: the snapshot (see `snapshot`), the unchanged-report
//! shortcut, and the write of a changed one (see `write`), with bounded retries.
//!
//! Round trips per report, all shared with the reports that arrive at the same time:
//! * **unchanged report** (the steady state): the snapshot query. If the digest of the
//!   not-approved tasks equals the stored one and the pending row count agrees, nothing is
//!   written but `last_seen`, at most once per `last_seen_interval`, behind the report (see
//!   `last_seen`). With host facts (a v2 report) the digest covers them too (see
//!   `crate::facts::report_digest`), so changed facts take the write path.
//! * **changed report**: the snapshot query and the two round trips of a write transaction,
//!   which also creates new agent and package rows. Every written report writes its agent's
//!   `agent_report` row, so on Galera two masters writing one agent conflict at commit (1213)
//!   and one retries.
//!
//! Isolation: READ COMMITTED (session default, see `check_server` in `mod.rs`; REPEATABLE
//! READ where a statement-based binlog forbids it, with the same guarantees). Concurrent
//! reports of one agent serialize on the agent row's lock (a record lock without gaps), and
//! each reads the pending rows after getting it, so the pending set is always exactly one
//! report's, as in a serial execution per agent. Correctness does not rest on SERIALIZABLE,
//! which on InnoDB turns every read into a shared next-key lock: reports of different agents
//! then deadlock on the gaps of `task`'s indexes, which is what stalls the original under
//! concurrency (and Galera honours isolation only per node anyway). Under READ COMMITTED no
//! gap locks are taken (beyond InnoDB's duplicate-key checks of inserts), so reports of
//! different agents do not block each other (the benchmark sees no conflicts). An approval
//! committed while a report is in flight takes effect at the agent's next report at the latest.
//!
//! Retries: a deadlock (1213, also Galera's certification failure) or lock wait timeout (1205),
//! rows a reset deleted meanwhile, or a node failure (out of reach, or 1047: the node left the
//! Galera cluster; the store first checks the node and moves to another address if it failed,
//! see `nodes`), start the report over from a fresh snapshot after a short
//! jittered backoff (`crate::backoff`), at most `max_attempts` times, then fail with
//! `RetriesExhausted`. Dropping
//! the future (the client went away; the master wraps each report in a deadline) stops
//! retrying, and a write whose report has gone before its second round trip is rolled back.

use std::sync::Arc;

use async_trait::async_trait;
use masif_proto::facts::Facts;
use masif_proto::{AgentName, TaskSet};

use super::shared::Lists;
use super::sql::{attempt_failed, node_failed};
use super::write::Change;
use super::MysqlStore;
use crate::backoff::{Backoff, Failure};
use crate::clock::{last_seen_due, unix_now};
use crate::facts::{facts_digest, report_digest};
use crate::pending::split;
use crate::{Reports, Result};
use tokio::time::Instant;

#[async_trait]
impl Reports for MysqlStore {
    async fn report_with_facts(
        &self,
        agent: &AgentName,
        tasks: &TaskSet,
        facts: Option<&Facts>,
    ) -> Result<TaskSet> {
        self.stats.count_report();
        let _place = self.queue.enter()?;
        let lists = Arc::new(Lists::of(tasks));
        let facts = facts.map(|f| (f, facts_digest(f)));
        let mut backoff = Backoff::new(self.retry_policy());
        loop {
            let failure = match self
                .attempt(agent, tasks, &lists, facts.as_ref().map(|(f, d)| (*f, d)))
                .await
            {
                Ok(approved) => return Ok(approved),
                Err(failure) => failure,
            };
            if let Failure::Conflict(_) = failure {
                self.stats.count_conflict();
            }
            if node_failed(&failure) {
                // Before the pause: the next attempt goes to a node that works.
                self.nodes.check(Instant::now(), failure.error()).await;
            }
            tokio::time::sleep(backoff.after(failure, "report")?).await;
        }
    }

    async fn flush(&self) {
        self.last_seen.flush().await;
    }

    async fn remove_orphan_packages(&self) -> Result<u64> {
        self.remove_orphans().await
    }

    fn retries(&self) -> u64 {
        self.stats.snapshot().conflicts
    }
}

impl MysqlStore {
    /// One attempt of a report: its snapshot, then the unchanged-report shortcut or the write.
    async fn attempt(
        &self,
        agent: &AgentName,
        tasks: &TaskSet,
        lists: &Arc<Lists>,
        facts: Option<(&Facts, &[u8; 32])>,
    ) -> Result<TaskSet, Failure> {
        let snapshot = self
            .snapshots
            .read(agent.as_str(), lists)
            .await
            .map_err(attempt_failed)?;
        let (approved, pending) = split(tasks, &snapshot.patterns);
        let digest = report_digest(&pending, facts.map(|(_, digest)| digest));
        if let Some(known) = &snapshot.agent {
            if known.digest.as_deref() == Some(&digest[..])
                && known.pending_rows == pending.len() as u64
            {
                if last_seen_due(known.last_seen, unix_now(), self.options.last_seen_interval) {
                    self.last_seen.mark(known.id);
                }
                return Ok(approved);
            }
        }
        let change = Change {
            agent: agent.as_str().to_owned(),
            tasks: tasks.clone(),
            lists: lists.clone(),
            package_ids: snapshot.package_ids,
            facts: facts.map(|(f, d)| (Arc::new(f.clone()), *d)),
        };
        self.writes.write(change).await
    }
}
