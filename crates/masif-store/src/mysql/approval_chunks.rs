//! The UI's approvals on MySQL in bounded chunks: the targets resolved first, then one short
//! transaction per [`crate::APPROVAL_CHUNK`] agents, each writing their approval rows and
//! deleting their pending rows, or for every agent the approval rows first and then one per
//! that many pending rows (by id, read again until none is left); each with the summary's
//! deltas, the audit entry so far and a generation bump.

use mysql_async::prelude::*;
use mysql_async::Conn;

use super::changes::{
    audit_entry, bump_generation, lock_packages, lock_targets, package_ids, task_condition,
    write_approvals,
};
use super::sql::{doing, tuple};
use super::summary::{self, Deleted};
use crate::audit::{describe_approve, describe_task};
use crate::backoff::Failure;
use crate::summary::Deltas;
use crate::{ApprovalOutcome, ApprovalScope, ApprovalTask, StoreError, TaskKey};

/// What an approval is written for, resolved once before its chunks.
pub(super) struct Plan {
    /// Agent ids, or one `None` for every agent.
    pub(super) targets: Vec<Option<u64>>,
    /// How the audit names the targets.
    label: String,
}

/// Resolves the targets of an approval for `scope`, without locking them (each chunk reads
/// its agents again, ordered with resets by the generation row); an unknown agent is refused.
pub(super) async fn plan(conn: &mut Conn, scope: &ApprovalScope) -> Result<Plan, Failure> {
    let (targets, label) = lock_targets(conn, scope, false).await?;
    Ok(Plan { targets, label })
}

/// Where an approval stands between its chunks.
#[derive(Debug, Clone, Copy)]
pub(super) struct Written {
    pub(super) outcome: ApprovalOutcome,
    /// The audit entry, once a chunk changed anything.
    pub(super) audit: Option<u64>,
}

/// What one chunk did.
pub(super) struct Chunk {
    pub(super) written: Written,
    pub(super) outcome: ApprovalOutcome,
}

/// One chunk of an approval, in its own transaction: `part` of it, after `before`. `last`
/// says whether this is the approval's last chunk; the audit entry says how far it got
/// (`done` agents of the plan's) until then.
pub(super) async fn chunk(
    conn: &mut Conn,
    plan: &Plan,
    tasks: &[ApprovalTask],
    part: &Part,
    (done, last): (usize, bool),
    before: Written,
    (user, now): (&str, i64),
) -> Result<Chunk, Failure> {
    conn.query_drop("START TRANSACTION").await?;
    // First, so that its lock orders this chunk with resets (which bump it first too) and
    // other approvals' chunks. Bumped even by a chunk that changes nothing: whoever waits
    // looks again and finds the same answer.
    bump_generation(conn).await?;
    // Locked again by every chunk, as every writer of a task row does (see `orphans`).
    let keys: Vec<TaskKey> = tasks.iter().map(|t| t.key.clone()).collect();
    let packages = lock_packages(conn, &keys).await?;
    let agents: Vec<Option<u64>> = match part {
        Part::Every(_) => vec![None],
        Part::Agents(ids) => {
            // Agents deleted since the plan (a reset) are skipped: the generation row locked
            // above orders this chunk and any reset, so none can delete them now. Not locked
            // one by one: a locking read of hundreds of ids may scan past them and wait for
            // other agents' reports.
            let found: Vec<u64> = conn
                .query(format!(
                    "SELECT id FROM agent WHERE id IN {}",
                    tuple(ids.iter().copied())
                ))
                .await?;
            found.into_iter().map(Some).collect()
        }
    };
    let mut outcome = ApprovalOutcome {
        approvals_written: 0,
        pending_rows_approved: 0,
    };
    let mut deleted = Deleted::default();
    let mut described = Vec::with_capacity(tasks.len());
    // For every agent: the conditions of the tasks whose rows this chunk deletes.
    let mut covered: Vec<String> = Vec::new();
    for task in tasks {
        let Some(&package) = packages.get(task.key.package.as_str()) else {
            let vanished = StoreError::Vanished(format!("package {}", task.key.package));
            return Err(Failure::Fatal(vanished));
        };
        let this_task = task_condition(package, task);
        match part {
            // The approval rows, once; the rows of every task are deleted together below.
            Part::Every(rows) => {
                if rows.is_empty() {
                    outcome.approvals_written +=
                        write_approvals(conn, package, task, &agents, user, now).await?;
                } else {
                    covered.push(this_task);
                }
            }
            Part::Agents(_) if agents.is_empty() => {}
            Part::Agents(_) => {
                let ids = agents.iter().flatten().copied();
                let condition = format!("{this_task} AND t.agent IN {}", tuple(ids));
                outcome.pending_rows_approved +=
                    summary::delete_pending(conn, &condition, "task_approval", &mut deleted)
                        .await?;
                outcome.approvals_written +=
                    write_approvals(conn, package, task, &agents, user, now).await?;
            }
        }
        described.push(describe_task(task));
    }
    if let (Part::Every(rows), false) = (part, covered.is_empty()) {
        let condition = format!(
            "t.id IN {} AND ({})",
            tuple(rows.iter().copied()),
            covered.join(" OR ")
        );
        outcome.pending_rows_approved +=
            summary::delete_pending(conn, &condition, "PRIMARY", &mut deleted).await?;
    }
    let mut deltas = Deltas::default();
    summary::count_deleted(conn, deleted, &mut deltas).await?;
    summary::apply(conn, &deltas).await?;
    let total = ApprovalOutcome {
        approvals_written: before.outcome.approvals_written + outcome.approvals_written,
        pending_rows_approved: before.outcome.pending_rows_approved + outcome.pending_rows_approved,
    };
    let mut audit = before.audit;
    if let Some(mut detail) = describe_approve(&described, &plan.label, &total) {
        if !last {
            let agents = plan.targets.iter().flatten().count();
            if agents > 0 {
                detail.push_str(&format!(" (in progress: {done} of {agents} agents)"));
            } else {
                detail.push_str(" (in progress)");
            }
        }
        audit = Some(audit_entry(conn, audit, user, &detail, now).await?);
    }
    conn.query_drop("COMMIT").await?;
    Ok(Chunk {
        written: Written {
            outcome: total,
            audit,
        },
        outcome,
    })
}

/// What one chunk covers.
#[derive(Debug, Clone)]
pub(super) enum Part {
    /// An approval for every agent: these pending rows (by id) of its tasks; with none, the
    /// approval rows only (the first chunk), or the audit entry's final word (the last).
    Every(Vec<u64>),
    /// These agents (by id): their approval rows and their pending rows of its tasks.
    Agents(Vec<u64>),
}

/// The ids of the pending rows `tasks` cover on every agent, read without locks (each chunk
/// locks its rows and checks them again).
pub(super) async fn pending_rows(
    conn: &mut Conn,
    tasks: &[ApprovalTask],
) -> crate::Result<Vec<u64>> {
    let keys: Vec<TaskKey> = tasks.iter().map(|t| t.key.clone()).collect();
    let packages = package_ids(conn, &keys, false)
        .await
        .map_err(doing("reading the ids of packages"))?;
    let mut rows = Vec::new();
    for task in tasks {
        let Some(&package) = packages.get(task.key.package.as_str()) else {
            continue;
        };
        let found: Vec<u64> = conn
            .query(format!(
                "SELECT t.id FROM task t FORCE INDEX (task_overview)
                  WHERE t.approved = 0 AND {}",
                task_condition(package, task)
            ))
            .await
            .map_err(doing("reading the pending rows to approve"))?;
        rows.extend(found);
    }
    rows.sort_unstable();
    rows.dedup();
    Ok(rows)
}
