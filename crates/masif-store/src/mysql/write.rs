//! The write half of changed reports, batched: the changes of reports that arrive together are
//! written in one transaction of two round trips and one commit (see `batch`).
//!
//! * Round trip 1: `START TRANSACTION`; upsert the agents' rows (creating new agents, and
//!   locking existing rows as `SELECT … FOR UPDATE` would); upsert packages no snapshot saw;
//!   read the agents' ids; share-lock the reported packages' rows (a reset deleting them waits
//!   for the commit instead of leaving rows that name no package); read the agents' pending
//!   rows and the approvals in force again (an approval committed meanwhile is missed only in
//!   the milliseconds until the commit, and applies at the next report).
//! * Round trip 2: one multi-row DELETE of stale pending rows, one multi-row INSERT of new
//!   ones, `agent.mtime` of the agents whose rows changed, every agent's `agent_report` row
//!   (pending-set digest and `last_seen`), the host facts of the reports that carry them (see
//!   `fact_rows`), the pending summary's changes (see `summary`), `COMMIT`. The pending rows
//!   read in round trip 1 are locked (`FOR UPDATE`), so an approval deleting some of them
//!   meanwhile either waits for this commit or is seen, and the summary's changes are exact.
//!
//! Locks: agent rows are locked in name order (the upsert's rows are sorted like the unique
//! index), so two batches naming one agent wait for each other instead of deadlocking, and a
//! batch holds each agent's lock while it reads and replaces its pending rows: the pending set
//! is always exactly one report's, as in a serial execution per agent. Batches of different
//! agents share no exclusive lock. One batch never holds two reports of the same agent.
//!
//! Failures: a batch that fails (a conflict, or a value a column cannot hold) is rolled back
//! and its changes are then written one at a time, so one report's problem is never
//! another's. A single change's error goes back to its report, which retries conflicts from a
//! fresh snapshot (see `report`). A report whose caller gave up before round trip 2 is left
//! out, and a batch of only such reports is rolled back: a client that has gone writes
//! nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use masif_proto::facts::Facts;
use masif_proto::{Task, TaskSet};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row};

use super::batch::{Batcher, Limits, Waiting};
use super::fact_rows::FactStatements;
use super::nodes::Nodes;
use super::rows::{approval_branches, union_of, Answers, Fact, RowKey, AGENT_ID, PACKAGE, PENDING};
use super::shared::{decode, DbResult, Lists, Stats};
use super::sql::{attempt_failed, is_node_failure, lit, shared_error, tuple};
use super::summary;
use crate::backoff::Failure;
use crate::clock::unix_now;
use crate::facts::{self, report_digest, FactRows};
use crate::pending::{diff, split};
use crate::summary::{Deltas, Pending};
use crate::StoreError;

/// How many changed reports one transaction carries (their rows add up to at most what one
/// report body may carry), and how many transactions run at once.
const LIMITS: Limits = Limits {
    max_batch: 64,
    max_weight: masif_proto::MAX_BODY_BYTES as usize,
    in_flight: 2,
};

/// A changed report to write.
#[derive(Debug)]
pub(crate) struct Change {
    pub agent: String,
    pub tasks: TaskSet,
    pub lists: Arc<Lists>,
    /// Ids of packages the report's snapshot saw.
    pub package_ids: Arc<HashMap<String, u64>>,
    /// The report's host facts and their digest (`None`: a v1 report, stored facts stay).
    pub facts: Option<(Arc<Facts>, [u8; 32])>,
}

/// The tasks approved for the change's agent, or why the change was not written (package rows
/// the snapshot saw deleted meanwhile by a reset are a conflict: the report starts over).
type Answer = Result<TaskSet, Failure>;
type Job = Waiting<Arc<Change>, Answer>;

/// The queue of changed reports waiting to be written.
#[derive(Debug)]
pub(crate) struct Writes {
    batcher: Batcher<Arc<Change>, Answer>,
}

impl Writes {
    /// Starts the background task (on the current tokio runtime).
    pub(crate) fn start(nodes: Nodes, stats: Arc<Stats>) -> Self {
        let batcher = Batcher::start(LIMITS, weigh, move |jobs| {
            let (nodes, stats) = (nodes.clone(), stats.clone());
            async move { write_all(&nodes, &stats, jobs).await }
        });
        Self { batcher }
    }

    /// Writes `change` (with others that arrive together) and returns the tasks approved for
    /// its agent.
    pub(crate) async fn write(&self, change: Change) -> Answer {
        self.batcher
            .call(Arc::new(change))
            .await
            .unwrap_or(Err(Failure::Fatal(StoreError::Closed)))
    }
}

/// Roughly the bytes a change adds to the transaction's statements.
fn weigh(change: &Arc<Change>) -> usize {
    let rows: usize = change
        .tasks
        .iter()
        .map(|t| {
            let versions = [t.from_version(), t.to_version()];
            let versions: usize = versions.iter().flatten().map(|v| v.as_str().len()).sum();
            40 + versions
        })
        .sum();
    let facts = change.facts.as_ref().map_or(0, |(f, _)| facts::weight(f));
    change.agent.len() + change.lists.weight() + rows + facts
}

/// Writes a batch; a second report of an agent goes into a batch after the first one's.
async fn write_all(nodes: &Nodes, stats: &Stats, mut jobs: Vec<Job>) {
    while !jobs.is_empty() {
        let mut agents = HashSet::new();
        let (now, later): (Vec<Job>, Vec<Job>) = jobs
            .into_iter()
            .partition(|job| agents.insert(job.request.agent.clone()));
        write_distinct(nodes, stats, now).await;
        jobs = later;
    }
}

/// Writes reports of distinct agents in one transaction, or one by one if that fails.
async fn write_distinct(nodes: &Nodes, stats: &Stats, jobs: Vec<Job>) {
    match attempt(nodes, stats, &jobs).await {
        Err(e) if jobs.len() > 1 && !is_node_failure(&e) => {
            tracing::debug!(
                reports = jobs.len(),
                "batched write failed, writing one by one: {e}"
            );
            for job in jobs {
                let outcome = attempt(nodes, stats, std::slice::from_ref(&job)).await;
                deliver(vec![job], outcome);
            }
        }
        outcome => deliver(jobs, outcome),
    }
}

/// Hands the outcome of one attempt to its reports. An error reaches here from an attempt with
/// one report (a batch that fails is written again one by one), or from a batch whose node
/// failed: each report then starts over, on the node the store moves to.
fn deliver(jobs: Vec<Job>, outcome: DbResult<Option<Vec<Option<TaskSet>>>>) {
    match outcome {
        Ok(Some(answers)) => {
            for (job, answer) in jobs.into_iter().zip(answers) {
                if let Some(answer) = answer {
                    job.answer(Ok(answer));
                }
            }
        }
        Ok(None) => {
            for job in jobs {
                let vanished =
                    StoreError::Vanished("package rows the report's snapshot saw".into());
                job.answer(Err(Failure::Conflict(vanished)));
            }
        }
        Err(e) => {
            let e = Arc::new(e);
            for job in jobs {
                job.answer(Err(attempt_failed(shared_error(
                    "writing a report",
                    e.clone(),
                ))));
            }
        }
    }
}

/// One transaction for `jobs` on a pooled connection, rolled back unless committed. `Ok(None)`:
/// rows vanished; otherwise one answer per job, `None` for a job whose caller has gone.
async fn attempt(
    nodes: &Nodes,
    stats: &Stats,
    jobs: &[Job],
) -> DbResult<Option<Vec<Option<TaskSet>>>> {
    let mut conn = nodes.get_conn().await?;
    conn.reset_connection(true); // a dropped future must not leave this transaction open
    let outcome = transaction(&mut conn, stats, jobs, unix_now()).await;
    if !matches!(outcome, Ok(Outcome::Done(_))) {
        stats.count_round_trip();
        // On error the connection stays marked for reset, so the pool cleans it up.
        conn.query_drop("ROLLBACK").await?;
    }
    conn.reset_connection(false);
    match outcome? {
        Outcome::Done(answers) => {
            stats.count_written(answers.iter().flatten().count());
            Ok(Some(answers))
        }
        Outcome::Abandoned => Ok(Some(vec![None; jobs.len()])),
        // The report counts this as a conflict when it starts over.
        Outcome::RowsVanished => Ok(None),
    }
}

enum Outcome {
    Done(Vec<Option<TaskSet>>),
    /// Every caller gave up.
    Abandoned,
    RowsVanished,
}

/// One attempt of the transaction. Leaves a transaction open on error (the caller rolls back).
async fn transaction(conn: &mut Conn, stats: &Stats, jobs: &[Job], now: i64) -> DbResult<Outcome> {
    let read = read_locked(conn, stats, jobs, now).await?;
    let read = Answers::of(read);

    let mut answers = Vec::with_capacity(jobs.len());
    let (mut stale, mut inserts, mut touched, mut reports) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut fact_rows = FactStatements::default();
    let mut deltas = Deltas::default();
    for job in jobs {
        let change = &*job.request;
        if job.abandoned() {
            answers.push(None);
            continue;
        }
        let agent_id = *read.agent_ids.get(&change.agent).ok_or_else(|| {
            mysql_async::Error::Other(
                format!("agent {:?} has no row after its upsert", change.agent).into(),
            )
        })?;
        let patterns = read.patterns_for(&change.agent);
        let (approved, pending) = split(&change.tasks, &patterns);
        let mut wanted = Vec::with_capacity(pending.len());
        for task in &pending {
            match read.package_ids.get(task.package().as_str()) {
                Some(id) => wanted.push((row_key(*id, task), *task)),
                None => return Ok(Outcome::RowsVanished),
            }
        }
        let stored = read.pending.get(&change.agent).cloned().unwrap_or_default();
        deltas.agent(
            stored.iter().map(|(_, k)| pending_key(k)),
            wanted.iter().map(|(k, _)| pending_key(k)),
        );
        let (gone, new) = diff(stored, wanted);
        if !gone.is_empty() || !new.is_empty() {
            touched.push(agent_id);
        }
        stale.extend(gone);
        inserts.extend(new.into_iter().map(|task| {
            insert_row(
                agent_id,
                read.package_ids[task.package().as_str()],
                task,
                now,
            )
        }));
        let facts = change.facts.as_ref();
        if let Some((facts, _)) = facts {
            let rows = FactRows::of(facts, &pending);
            fact_rows.add(agent_id, &rows, &read.package_ids, now);
        }
        let digest: String = report_digest(&pending, facts.map(|(_, digest)| digest))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        reports.push(format!("({agent_id}, X'{digest}', {now})"));
        answers.push(Some(approved));
    }
    if reports.is_empty() {
        return Ok(Outcome::Abandoned);
    }

    // Round trip 2: every write and the commit in one batch.
    let mut batch = Vec::with_capacity(10);
    if !stale.is_empty() {
        batch.push(format!(
            "DELETE FROM task WHERE id IN {} AND approved = 0",
            tuple(stale)
        ));
    }
    if !inserts.is_empty() {
        batch.push(format!(
            "INSERT INTO task (agent, package, from_version, to_version, action, approved, ctime) \
             VALUES {}",
            inserts.join(", ")
        ));
    }
    if !touched.is_empty() {
        batch.push(format!(
            "UPDATE agent SET mtime = {now} WHERE id IN {}",
            tuple(touched)
        ));
    }
    batch.push(format!(
        "INSERT INTO agent_report (agent, pending_hash, last_seen) VALUES {} \
         ON DUPLICATE KEY UPDATE pending_hash = VALUES(pending_hash), last_seen = VALUES(last_seen)",
        reports.join(", ")
    ));
    batch.extend(fact_rows.statements());
    batch.extend(summary::statements(&deltas));
    batch.push("COMMIT".to_owned());
    stats.count_round_trip();
    conn.query_drop(batch.join("; ")).await?;
    Ok(Outcome::Done(answers))
}

/// Round trip 1: begin, create or lock the agents' rows, create unseen packages, and read
/// ids, pending rows and approvals (every row decoded by its kind, see `rows`).
async fn read_locked(
    conn: &mut Conn,
    stats: &Stats,
    jobs: &[Job],
    now: i64,
) -> DbResult<Vec<Fact>> {
    let mut agents: Vec<&str> = jobs.iter().map(|j| j.request.agent.as_str()).collect();
    agents.sort_unstable();
    let (packages, versions) = union_of(jobs.iter().map(|j| &*j.request.lists));
    let unseen: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|name| {
            !jobs
                .iter()
                .any(|j| j.request.package_ids.contains_key(*name))
        })
        .collect();
    let agent_list = tuple(agents.iter().copied());
    let package_list = (!packages.is_empty()).then(|| tuple(packages.iter().copied()));

    let mut sql = vec![
        "START TRANSACTION".to_owned(),
        format!(
            "INSERT INTO agent (name, ctime, mtime) VALUES {} ON DUPLICATE KEY UPDATE id = id",
            agents
                .iter()
                .map(|a| format!("({}, {now}, {now})", lit(*a)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ];
    if !unseen.is_empty() {
        // No IGNORE: strict mode still rejects what a column cannot hold.
        sql.push(format!(
            "INSERT INTO package (name) VALUES {} ON DUPLICATE KEY UPDATE id = id",
            unseen
                .iter()
                .map(|n| format!("({})", lit(*n)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    sql.push(format!(
        "SELECT '{AGENT_ID}', id, name FROM agent WHERE name IN {agent_list}"
    ));
    if let Some(list) = &package_list {
        sql.push(format!(
            "SELECT '{PACKAGE}', id, NULL, NULL, name FROM package WHERE name IN {list} \
             LOCK IN SHARE MODE"
        ));
    }
    sql.push(format!(
        "SELECT '{PENDING}', t.id, a.name, t.package, t.action, t.from_version, t.to_version \
         FROM agent a STRAIGHT_JOIN task t ON t.agent = a.id \
         WHERE a.name IN {agent_list} AND t.approved = 0 FOR UPDATE"
    ));
    sql.push(approval_branches(&agent_list, package_list.as_deref(), versions).join(" UNION ALL "));

    stats.count_round_trip();
    let mut result = conn.query_iter(sql.join("; ")).await?;
    // Statements without rows (the transaction's start, the upserts) answer empty sets.
    let mut facts = Vec::new();
    while !result.is_empty() {
        let rows: Vec<Row> = result.collect().await?;
        facts.extend(decode::<Fact>(rows)?);
    }
    Ok(facts)
}

fn row_key(package_id: u64, task: &Task) -> RowKey {
    RowKey {
        package: package_id,
        action: task.action().as_str().to_owned(),
        from_version: task.from_version().map(|v| v.as_str().to_owned()),
        to_version: task.to_version().map(|v| v.as_str().to_owned()),
    }
}

fn pending_key(key: &RowKey) -> Pending<'_> {
    (key.package, &key.action, key.to_version.as_deref())
}

fn insert_row(agent_id: u64, package_id: u64, task: &Task, now: i64) -> String {
    format!(
        "({agent_id}, {package_id}, {}, {}, {}, 0, {now})",
        lit(task.from_version().map(|v| v.as_str())),
        lit(task.to_version().map(|v| v.as_str())),
        lit(task.action().as_str())
    )
}
