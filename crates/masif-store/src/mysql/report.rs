//! A report on the MySQL back end: the snapshot (see `snapshot`), the unchanged-report
//! shortcut, and the write of a changed one (see `write`), with bounded retries.
//!
//! Round trips per report, all shared with the reports that arrive at the same time:
//! * **unchanged report** (the steady state): the snapshot query. If the digest of the
//!   not-approved tasks equals the stored one and the pending row count agrees, nothing is
//!   written but `last_seen`, at most once per `last_seen_interval`, behind the report (see
//!   `last_seen`).
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
//! or rows a reset deleted meanwhile, start the report over from a fresh snapshot after a short
//! jittered backoff, at most `max_attempts` times, then fail with `RetriesExhausted`. Dropping
//! the future (the client went away; the master wraps each report in a deadline) stops
//! retrying, and a write whose report has gone before its second round trip is rolled back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use masif_proto::{AgentName, TaskSet};
use mysql_async::prelude::*;
use mysql_async::Row;
use rand::Rng;

use super::snapshot::Lists;
use super::sql::{db_error, is_conflict};
use super::write::{Change, WriteError};
use super::MysqlStore;
use crate::clock::unix_now;
use crate::pending::{pending_digest, split};
use crate::{Reports, Result, StoreError};

/// Counters of the report path since the store was opened (for benchmarks and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportStats {
    /// Reports handled (successfully or not).
    pub reports: u64,
    /// Queries sent to the server by reports (a multi-statement batch counts once).
    pub round_trips: u64,
    /// Changed reports written (several share a transaction when they arrive together).
    pub write_transactions: u64,
    /// Attempts that hit 1213/1205 and were rolled back.
    pub conflicts: u64,
}

/// The live counters behind [`ReportStats`].
#[derive(Debug, Default)]
pub(crate) struct Stats {
    reports: AtomicU64,
    round_trips: AtomicU64,
    write_transactions: AtomicU64,
    conflicts: AtomicU64,
}

impl Stats {
    pub(crate) fn snapshot(&self) -> ReportStats {
        ReportStats {
            reports: self.reports.load(Ordering::Relaxed),
            round_trips: self.round_trips.load(Ordering::Relaxed),
            write_transactions: self.write_transactions.load(Ordering::Relaxed),
            conflicts: self.conflicts.load(Ordering::Relaxed),
        }
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_round_trip(&self) {
        Self::bump(&self.round_trips);
    }

    pub(crate) fn count_written(&self, reports: usize) {
        self.write_transactions
            .fetch_add(reports as u64, Ordering::Relaxed);
    }
}

pub(crate) type DbResult<T> = std::result::Result<T, mysql_async::Error>;

#[async_trait]
impl Reports for MysqlStore {
    async fn report(&self, agent: &AgentName, tasks: &TaskSet) -> Result<TaskSet> {
        Stats::bump(&self.stats.reports);
        let lists = Arc::new(Lists::of(tasks));
        let mut retry = Retry::new(self.options.max_attempts, &self.stats);
        loop {
            let snapshot = match self.snapshots.read(agent.as_str(), &lists).await {
                Ok(snapshot) => snapshot,
                Err(e) => {
                    retry.after(&e).await?;
                    continue;
                }
            };
            let (approved, pending) = split(tasks, &snapshot.patterns);
            let digest = pending_digest(&pending);
            if let Some(known) = &snapshot.agent {
                if known.digest.as_deref() == Some(&digest[..])
                    && known.pending_rows == pending.len() as u64
                {
                    let interval = i64::try_from(self.options.last_seen_interval.as_secs())
                        .unwrap_or(i64::MAX);
                    if known
                        .last_seen
                        .is_none_or(|seen| unix_now() - seen >= interval)
                    {
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
            };
            match self.writes.write(change).await {
                Ok(answer) => return Ok(answer),
                Err(WriteError::Database(e)) => retry.after(&e).await?,
                Err(WriteError::RowsVanished) => retry.count("rows deleted meanwhile").await?,
            }
        }
    }

    async fn finish(&self) {
        self.last_seen.flush().await;
    }
}

/// Counts attempts and sleeps between them; turns the last conflict or any other error into
/// the store's error.
struct Retry<'a> {
    attempt: u32,
    max: u32,
    stats: &'a Stats,
}

impl<'a> Retry<'a> {
    fn new(max: u32, stats: &'a Stats) -> Self {
        Self {
            attempt: 0,
            max: max.max(1),
            stats,
        }
    }

    /// After a failed attempt: sleeps before the next one if `err` is a conflict and attempts
    /// are left, else returns the error to give up with.
    async fn after(&mut self, err: &mysql_async::Error) -> Result<()> {
        if !is_conflict(err) {
            return Err(db_error(err));
        }
        self.count(&err.to_string()).await
    }

    /// Counts a conflict (`why` is logged) and sleeps, or gives up when none is left.
    async fn count(&mut self, why: &str) -> Result<()> {
        Stats::bump(&self.stats.conflicts);
        self.attempt += 1;
        if self.attempt >= self.max {
            tracing::warn!("report gave up after {} conflicts: {why}", self.attempt);
            return Err(StoreError::RetriesExhausted {
                attempts: self.attempt,
            });
        }
        tracing::debug!("report conflict {}, retrying: {why}", self.attempt);
        // 5, 10, 20 … ms capped at 320 ms, jittered to 50–100 % so colliding reports part.
        let cap = 5u64 << self.attempt.min(6);
        let ms = rand::rng().random_range(cap / 2..=cap);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(())
    }
}

pub(crate) fn decode<T: FromRow>(rows: Vec<Row>) -> DbResult<Vec<T>> {
    rows.into_iter()
        .map(|row| {
            T::from_row_opt(row)
                .map_err(|e| mysql_async::Error::Other(format!("unexpected row shape: {e}").into()))
        })
        .collect()
}
