//! The report transaction of the MySQL back end.
//!
//! Round trips per report:
//! * **unchanged report** (the steady state): one read-only query returning the agent's id,
//!   stored pending-set digest, `last_seen` and number of pending rows, the ids of the reported
//!   packages, and the approval rows that can match (agent NULL or this agent; package NULL or
//!   a reported one; target version NULL or a reported one: index ranges on
//!   `task (package, approved, agent, to_version)`, bounded however many approvals for other
//!   agents or old versions pile up). If the digest of the not-approved tasks equals the
//!   stored one and the row count agrees, nothing is written (`last_seen` at most once per
//!   `last_seen_interval`: one more autocommit UPDATE).
//! * **changed report**: the snapshot query, a multi-row upsert (+ re-select) for new packages
//!   and an upsert for a new agent, then a two-round-trip transaction: `START TRANSACTION`, lock
//!   the agent's row, read its pending rows and the approvals again, share-lock the package
//!   rows; then one multi-statement batch: multi-row DELETE by id, multi-row INSERT,
//!   `agent.mtime`, `agent_report`, `COMMIT`. Every report of an agent writes its
//!   `agent_report` row, so on Galera two masters writing one agent conflict at commit (1213)
//!   and one retries.
//!
//! Isolation: READ COMMITTED (session default, see `check_server` in `mod.rs`; REPEATABLE
//! READ where a statement-based binlog forbids it, with the same guarantees). Concurrent
//! reports of one agent serialize on the agent row's lock (`SELECT … FOR UPDATE` by primary key, a record
//! lock without gaps), and each reads the pending rows after getting it, so the pending set is
//! always exactly one report's, as in a serial execution per agent. Correctness does not rest
//! on SERIALIZABLE, which on InnoDB turns every read into a shared next-key lock: reports of
//! different agents then deadlock on the gaps of `task`'s indexes, which is what stalls the
//! original under concurrency (and Galera honours isolation only per node anyway). Under
//! READ COMMITTED no gap locks are taken (beyond InnoDB's duplicate-key checks of inserts), so
//! reports of different agents do not block each other (the benchmark sees no conflicts). An approval committed while a report is in flight takes effect at the agent's next
//! report at the latest (the approvals are re-read inside the transaction to keep the window
//! to milliseconds).
//!
//! Retries: a deadlock (1213, also Galera's certification failure) or lock wait timeout (1205)
//! rolls back and retries after a short jittered backoff, at most `max_attempts` times, then
//! fails with `RetriesExhausted`. Dropping the future (the client went away; the master wraps
//! each report in a deadline) stops retrying: the connection was marked for reset, so the pool
//! rolls back whatever was open.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use masif_proto::{AgentName, Task, TaskSet};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row};
use rand::Rng;

use super::snapshot::{pattern_branches, pattern_from, Lists, SnapshotRow, Who};
use super::sql::{db_error, is_conflict, lit, tuple};
use super::MysqlStore;
use crate::clock::unix_now;
use crate::pending::{diff, pending_digest, split, Pattern};
use crate::{Reports, Result, StoreError};

/// Counters of the report path since the store was opened (for benchmarks and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportStats {
    /// Reports handled (successfully or not).
    pub reports: u64,
    /// Queries sent to the server by reports (a multi-statement batch counts once).
    pub round_trips: u64,
    /// Report transactions committed (changed reports).
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
}

impl MysqlStore {
    /// A pooled connection for the report path.
    async fn session(&self) -> Result<Session<'_>> {
        Ok(Session {
            conn: self.pool.get_conn().await.map_err(db_error)?,
            stats: &self.stats,
        })
    }
}

type DbResult<T> = std::result::Result<T, mysql_async::Error>;

#[async_trait]
impl Reports for MysqlStore {
    async fn report(&self, agent: &AgentName, tasks: &TaskSet) -> Result<TaskSet> {
        Stats::bump(&self.stats.reports);
        let now = unix_now();
        let lists = Arc::new(Lists::of(tasks));
        let mut retry = Retry::new(self.options.max_attempts, &self.stats);

        let snapshot = loop {
            match self.snapshots.read(agent.as_str(), &lists).await {
                Ok(snapshot) => break snapshot,
                Err(e) => retry.after(&e).await?,
            }
        };
        let (approved, pending) = split(tasks, &snapshot.patterns);
        let digest = pending_digest(&pending);
        if let Some(known) = &snapshot.agent {
            if known.digest.as_deref() == Some(&digest[..])
                && known.pending_rows == pending.len() as u64
            {
                let interval =
                    i64::try_from(self.options.last_seen_interval.as_secs()).unwrap_or(i64::MAX);
                if known.last_seen.is_none_or(|seen| now - seen >= interval) {
                    let mut s = self.session().await?;
                    // Autocommit, one row by primary key: nothing to retry but conflicts.
                    loop {
                        match s.exec(touch_last_seen(known.id, now)).await {
                            Ok(()) => break,
                            Err(e) => retry.after(&e).await?,
                        }
                    }
                }
                return Ok(approved);
            }
        }

        // Changed: make sure package and agent rows exist (idempotent, committed on their own).
        let mut s = self.session().await?;
        let mut package_ids = HashMap::clone(&snapshot.package_ids);
        let missing: Vec<&str> = pending
            .iter()
            .map(|t| t.package().as_str())
            .filter(|n| !package_ids.contains_key(*n))
            .collect();
        if !missing.is_empty() {
            let created = loop {
                match create_packages(&mut s, &missing).await {
                    Ok(ids) => break ids,
                    Err(e) => retry.after(&e).await?,
                }
            };
            package_ids.extend(created);
        }
        let mut agent_id = snapshot.agent.as_ref().map(|a| a.id);
        loop {
            let id = match agent_id {
                Some(id) => id,
                None => match create_agent(&mut s, agent.as_str(), now).await {
                    Ok(id) => id,
                    Err(e) => {
                        retry.after(&e).await?;
                        continue;
                    }
                },
            };
            agent_id = Some(id);
            let outcome = write(&mut s, id, tasks, &lists, &package_ids, now).await;
            // Unless committed, roll back: no transaction stays open on a pooled connection.
            if !matches!(outcome, Ok(Written::Done(_))) {
                if let Err(rollback) = s.exec("ROLLBACK".to_owned()).await {
                    // The connection stays marked for reset, so the pool cleans it up.
                    return Err(db_error(rollback));
                }
            }
            s.conn.reset_connection(false);
            match outcome {
                Ok(Written::Done(answer)) => {
                    Stats::bump(&self.stats.write_transactions);
                    return Ok(answer);
                }
                // Rows deleted by a reset in the meantime: create them again (bounded like a
                // conflict, in case a reset loop keeps deleting them).
                Ok(Written::AgentGone) => {
                    retry.count("agent row deleted meanwhile").await?;
                    agent_id = None;
                }
                Ok(Written::PackagesGone(names)) => {
                    retry.count("package rows deleted meanwhile").await?;
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    match create_packages(&mut s, &names).await {
                        Ok(created) => package_ids.extend(created),
                        Err(e) => retry.after(&e).await?,
                    }
                }
                Err(e) => retry.after(&e).await?,
            }
        }
    }
}

/// A pooled connection that counts its round trips.
struct Session<'a> {
    conn: Conn,
    stats: &'a Stats,
}

impl Session<'_> {
    async fn exec(&mut self, sql: String) -> DbResult<()> {
        Stats::bump(&self.stats.round_trips);
        self.conn.query_drop(sql).await
    }

    async fn rows(&mut self, sql: String) -> DbResult<Vec<Row>> {
        Stats::bump(&self.stats.round_trips);
        self.conn.query(sql).await
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

fn touch_last_seen(agent: u64, now: i64) -> String {
    format!("UPDATE agent_report SET last_seen = {now} WHERE agent = {agent} AND last_seen < {now}")
}

/// Creates the package rows `names` (one multi-row upsert; no IGNORE, so strict mode still
/// rejects what a column cannot hold) and returns their ids.
async fn create_packages(s: &mut Session<'_>, names: &[&str]) -> DbResult<HashMap<String, u64>> {
    let values: Vec<String> = names.iter().map(|n| format!("({})", lit(*n))).collect();
    s.exec(format!(
        "INSERT INTO package (name) VALUES {} ON DUPLICATE KEY UPDATE id = id",
        values.join(", ")
    ))
    .await?;
    let rows: Vec<(u64, String)> = decode(
        s.rows(format!(
            "SELECT id, name FROM package WHERE name IN {}",
            tuple(names.iter().copied())
        ))
        .await?,
    )?;
    Ok(rows.into_iter().map(|(id, name)| (name, id)).collect())
}

/// Creates the agent row if needed and returns its id.
async fn create_agent(s: &mut Session<'_>, name: &str, now: i64) -> DbResult<u64> {
    Stats::bump(&s.stats.round_trips);
    let result = s
        .conn
        .query_iter(format!(
            "INSERT INTO agent (name, ctime, mtime) VALUES ({}, {now}, {now}) \
             ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id)",
            lit(name)
        ))
        .await?;
    let id = result.last_insert_id();
    result.drop_result().await?;
    id.ok_or_else(|| mysql_async::Error::Other("agent upsert returned no id".into()))
}

enum Written {
    Done(TaskSet),
    /// The agent row vanished (a reset deleted it): create it again.
    AgentGone,
    /// These package rows vanished (a reset deleted them): create them again.
    PackagesGone(Vec<String>),
}

/// A stored pending row: id, package id, action, from_version, to_version.
type StoredRow = (
    u64,
    Option<u64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Content of a pending row: package id, action, from_version, to_version.
type RowKey = (u64, String, Option<String>, Option<String>);

/// One attempt of the transaction. Leaves a transaction open on error (the caller rolls back).
async fn write(
    s: &mut Session<'_>,
    agent_id: u64,
    tasks: &TaskSet,
    lists: &Lists,
    package_ids: &HashMap<String, u64>,
    now: i64,
) -> DbResult<Written> {
    // Round trip 1: begin, lock the agent row, read its pending rows and the approvals, and
    // share-lock the package rows the new pending rows will name (a concurrent reset deleting
    // them waits for the commit instead of leaving rows that name no package).
    let known_ids: Vec<u64> = lists
        .names
        .iter()
        .filter_map(|n| package_ids.get(n).copied())
        .collect();
    let packages_sql = if known_ids.is_empty() {
        "SELECT id FROM package WHERE FALSE".to_owned()
    } else {
        format!(
            "SELECT id FROM package WHERE id IN {} LOCK IN SHARE MODE",
            tuple(known_ids.iter().copied())
        )
    };
    let names = (!lists.names.is_empty()).then(|| tuple(lists.names.iter().map(String::as_str)));
    let patterns_sql = pattern_branches(
        &Who::Id(agent_id),
        names.as_deref(),
        lists.to_versions.iter().map(String::as_str),
    )
    .join(" UNION ALL ");
    s.conn.reset_connection(true); // a dropped future must not leave this transaction open
    Stats::bump(&s.stats.round_trips);
    let mut result = s
        .conn
        .query_iter(format!(
            "START TRANSACTION; \
             SELECT id FROM agent WHERE id = {agent_id} FOR UPDATE; \
             SELECT id, package, action, from_version, to_version FROM task \
               WHERE agent = {agent_id} AND approved = 0; \
             {patterns_sql}; \
             {packages_sql}"
        ))
        .await?;
    let _: Vec<Row> = result.collect().await?;
    let locked: Vec<Row> = result.collect().await?;
    let stored: Vec<StoredRow> = decode(result.collect().await?)?;
    let patterns: Vec<SnapshotRow> = decode(result.collect().await?)?;
    let existing: HashSet<u64> = decode::<u64>(result.collect().await?)?
        .into_iter()
        .collect();
    result.drop_result().await?;
    if locked.is_empty() {
        return Ok(Written::AgentGone);
    }
    let patterns: Vec<Pattern> = patterns.iter().map(pattern_from).collect();
    let (approved, pending) = split(tasks, &patterns);

    let mut wanted = Vec::with_capacity(pending.len());
    let mut gone = Vec::new();
    for task in &pending {
        match package_ids.get(task.package().as_str()) {
            Some(id) if existing.contains(id) => wanted.push((row_key(*id, task), *task)),
            _ => gone.push(task.package().as_str().to_owned()),
        }
    }
    if !gone.is_empty() {
        gone.dedup();
        return Ok(Written::PackagesGone(gone));
    }
    let stored = stored.into_iter().map(|(id, package, action, from, to)| {
        // A row without package or action can never be wanted: key it so it never matches.
        (
            id,
            (package.unwrap_or(0), action.unwrap_or_default(), from, to),
        )
    });
    let (stale, inserts) = diff(stored, wanted);

    // Round trip 2: every write and the commit in one batch.
    let mut batch = Vec::with_capacity(5);
    if !stale.is_empty() {
        batch.push(format!(
            "DELETE FROM task WHERE id IN {} AND agent = {agent_id} AND approved = 0",
            tuple(stale.iter().copied())
        ));
    }
    if !inserts.is_empty() {
        let rows: Vec<String> = inserts
            .iter()
            .map(|t| insert_row(agent_id, package_ids[t.package().as_str()], t))
            .collect();
        batch.push(format!(
            "INSERT INTO task (agent, package, from_version, to_version, action, approved) \
             VALUES {}",
            rows.join(", ")
        ));
    }
    if !stale.is_empty() || !inserts.is_empty() {
        batch.push(format!(
            "UPDATE agent SET mtime = {now} WHERE id = {agent_id}"
        ));
    }
    let digest: String = pending_digest(&pending)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    batch.push(format!(
        "INSERT INTO agent_report (agent, pending_hash, last_seen) \
         VALUES ({agent_id}, X'{digest}', {now}) \
         ON DUPLICATE KEY UPDATE pending_hash = VALUES(pending_hash), last_seen = VALUES(last_seen)"
    ));
    batch.push("COMMIT".to_owned());
    s.exec(batch.join("; ")).await?;
    Ok(Written::Done(approved))
}

fn row_key(package_id: u64, task: &Task) -> RowKey {
    (
        package_id,
        task.action().as_str().to_owned(),
        task.from_version().map(|v| v.as_str().to_owned()),
        task.to_version().map(|v| v.as_str().to_owned()),
    )
}

fn insert_row(agent_id: u64, package_id: u64, task: &Task) -> String {
    format!(
        "({agent_id}, {package_id}, {}, {}, {}, 0)",
        lit(task.from_version().map(|v| v.as_str())),
        lit(task.to_version().map(|v| v.as_str())),
        lit(task.action().as_str())
    )
}
