//! The UI's approvals on MySQL in bounded chunks: the packages and targets resolved first,
//! then one short transaction per [`APPROVAL_CHUNK`] agents (or, for every agent, per that
//! many pending rows of each task), each writing its approval rows, deleting the pending rows
//! they cover with the summary's deltas, the audit entry so far and a generation bump.

use mysql_async::prelude::*;
use mysql_async::Conn;

use super::changes::{
    audit_entry, bump_generation, lock_packages, lock_targets, task_condition, write_approvals,
};
use super::sql::tuple;
use super::summary::{self, Deleted};
use crate::audit::{describe_approve, describe_task};
use crate::backoff::Failure;
use crate::summary::Deltas;
use crate::{ApprovalOutcome, ApprovalScope, ApprovalTask, StoreError, TaskKey, APPROVAL_CHUNK};

/// What an approval is written for, resolved once before its chunks.
pub(super) struct Plan {
    /// Agent ids, or one `None` for every agent.
    pub(super) targets: Vec<Option<u64>>,
    /// How the audit names the targets.
    label: String,
}

/// Resolves the targets of an approval for `scope`, without locking them (each chunk
/// holds its own); an unknown agent is refused.
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
    /// For every agent: a task had a full chunk of pending rows, so there may be more.
    pub(super) more: bool,
}

/// One chunk of an approval, in its own transaction: `agents` (`[None]`: every agent, then
/// at most [`APPROVAL_CHUNK`] pending rows per task), after `before`. `last` says whether
/// this is the approval's last chunk of agents; the audit entry says how far it got
/// (`done` agents of the plan's) until then.
pub(super) async fn chunk(
    conn: &mut Conn,
    plan: &Plan,
    tasks: &[ApprovalTask],
    agents: &[Option<u64>],
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
    let mut ids: Vec<u64> = agents.iter().flatten().copied().collect();
    ids.sort_unstable();
    let (agents, limit) = if ids.is_empty() {
        (vec![None], Some(APPROVAL_CHUNK))
    } else {
        // Agents deleted since the plan (a reset) are skipped: the generation row locked above
        // orders this chunk and any reset, so none can delete them now. Not locked one by one:
        // a locking read of hundreds of ids may scan past them and wait for other agents'
        // reports.
        let found: Vec<u64> = conn
            .query(format!(
                "SELECT id FROM agent WHERE id IN {}",
                tuple(ids.iter().copied())
            ))
            .await?;
        (found.into_iter().map(Some).collect(), None)
    };
    let mut outcome = ApprovalOutcome {
        approvals_written: 0,
        pending_rows_approved: 0,
    };
    let mut more = false;
    let mut deleted = Deleted::default();
    let mut described = Vec::with_capacity(tasks.len());
    for task in tasks {
        let Some(&package) = packages.get(task.key.package.as_str()) else {
            let vanished = StoreError::Vanished(format!("package {}", task.key.package));
            return Err(Failure::Fatal(vanished));
        };
        let ids: Vec<u64> = agents.iter().flatten().copied().collect();
        let condition = if ids.is_empty() {
            task_condition(package, task)
        } else {
            format!(
                "{} AND t.agent IN {}",
                task_condition(package, task),
                tuple(ids)
            )
        };
        if !agents.is_empty() {
            let n = summary::delete_pending(conn, package, &condition, limit, &mut deleted).await?;
            more |= limit.is_some_and(|l| n >= l as u64);
            outcome.pending_rows_approved += n;
            outcome.approvals_written +=
                write_approvals(conn, package, task, &agents, user, now).await?;
        }
        described.push(describe_task(task));
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
        if !last || more {
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
        more,
    })
}
