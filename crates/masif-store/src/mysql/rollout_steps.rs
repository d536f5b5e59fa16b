//! The roll-out transactions of the MySQL back end: creating a roll-out, promoting it by hand,
//! one step of `advance_rollouts` (a compare-and-set on the roll-out's row, locked), and the
//! current ring's tally. Each attempt opens and commits its own transaction.

use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};

use super::changes::{approve_in, audit, bump_gate_generation, placeholders};
use super::sql::doing;
use crate::backoff::Failure;
use crate::model::{ApprovalScope, ApprovalTask};
use crate::rollout_core::{self as core, RolloutRow, Step, Tally, ROLLOUT_COLUMNS, ROLLOUT_USER};
use crate::rollouts::{Rollout, RolloutChange, RolloutSpec, RolloutState};
use crate::{Result, StoreError};

/// One attempt of creating a roll-out and approving its first ring; returns its id.
pub(super) async fn create_once(
    conn: &mut Conn,
    spec: &RolloutSpec,
    user: &str,
    now: i64,
) -> Result<u64, Failure> {
    conn.query_drop("START TRANSACTION").await?;
    let tasks = ApprovalTask::with_configure_steps(&spec.tasks);
    approve_in(
        conn,
        &tasks,
        &ApprovalScope::Tag(spec.rings[0].clone()),
        user,
        now,
    )
    .await?;
    let state = if spec.rings.len() == 1 {
        RolloutState::Completed
    } else {
        RolloutState::Running
    };
    conn.exec_drop(
        "INSERT INTO rollout (tasks, rings, soak_secs, max_failure_percent, state, current_ring,
                              ring_started_at, halted_reason, created_by, created_at)
         VALUES (?, ?, ?, ?, ?, 0, ?, NULL, ?, ?)",
        (
            core::tasks_to_text(&spec.tasks),
            core::rings_to_text(&spec.rings),
            spec.soak_secs,
            spec.max_failure_percent,
            state.as_str(),
            now,
            user,
            now,
        ),
    )
    .await?;
    let id = conn.last_insert_id().unwrap_or(0);
    audit(
        conn,
        user,
        "start rollout",
        &core::describe_start(id, spec),
        now,
    )
    .await?;
    bump_gate_generation(conn).await?;
    conn.query_drop("COMMIT").await?;
    Ok(id)
}

/// One attempt of a promotion by hand.
pub(super) async fn promote_once(
    conn: &mut Conn,
    id: u64,
    user: &str,
    now: i64,
    force: bool,
) -> Result<(), Failure> {
    conn.query_drop("START TRANSACTION").await?;
    let row: Option<Row> = conn
        .exec_first(format!("{ROLLOUT_COLUMNS} WHERE id = ? FOR UPDATE"), (id,))
        .await?;
    let Some(row) = row else {
        conn.query_drop("ROLLBACK").await?;
        return Err(StoreError::Invalid(format!("no roll-out {id}")).into());
    };
    let rollout = rollout_row(row)?.parse()?;
    let forced = match core::check_promotion(&rollout, force) {
        Ok(forced) => forced,
        Err(e) => {
            conn.query_drop("ROLLBACK").await?;
            return Err(e.into());
        }
    };
    let next = rollout.current_ring + 1;
    approve_ring(conn, &rollout, next, user, now).await?;
    let detail = core::describe_promote(&rollout, next, forced.as_deref());
    audit(conn, user, "promote rollout", &detail, now).await?;
    bump_gate_generation(conn).await?;
    conn.query_drop("COMMIT").await?;
    Ok(())
}

/// Approves ring `ring` for its tag's agents and moves the roll-out there (completed if it is
/// the last); a tag without agents is `Invalid`.
async fn approve_ring(
    conn: &mut Conn,
    rollout: &Rollout,
    ring: usize,
    user: &str,
    now: i64,
) -> Result<RolloutState, Failure> {
    let Some(tag) = rollout.rings.get(ring) else {
        return Err(StoreError::Invalid(format!(
            "roll-out {} has no ring {}",
            rollout.id,
            ring + 1
        ))
        .into());
    };
    let tasks = ApprovalTask::with_configure_steps(&rollout.tasks);
    approve_in(conn, &tasks, &ApprovalScope::Tag(tag.clone()), user, now).await?;
    let state = core::state_after(rollout, ring);
    conn.exec_drop(
        "UPDATE rollout SET current_ring = ?, ring_started_at = ?, state = ?, halted_reason = NULL
          WHERE id = ?",
        (ring as u64, now, state.as_str(), rollout.id),
    )
    .await?;
    Ok(state)
}

/// One attempt of `step` for a roll-out read as `rollout`: made only if the roll-out is still
/// running at the same ring (compare-and-set).
pub(super) async fn advance_once(
    conn: &mut Conn,
    rollout: &Rollout,
    tally: &Tally,
    step: &Step,
    now: i64,
) -> Result<Vec<RolloutChange>, Failure> {
    conn.query_drop("START TRANSACTION").await?;
    let current: Option<(String, u64)> = conn
        .exec_first(
            "SELECT state, current_ring FROM rollout WHERE id = ? FOR UPDATE",
            (rollout.id,),
        )
        .await?;
    if current != Some(("running".to_owned(), rollout.current_ring as u64)) {
        conn.query_drop("ROLLBACK").await?;
        return Ok(Vec::new());
    }
    let id = rollout.id;
    let mut changes = Vec::new();
    let next = rollout.current_ring + 1;
    let halt = match step {
        Step::Halt(reason) => Some(reason.clone()),
        Step::Promote => {
            let agents: u64 = conn
                .exec_first(core::RING_AGENTS, (rollout.rings[next].as_str(),))
                .await?
                .unwrap_or(0);
            (agents == 0).then(|| core::empty_ring_reason(rollout, next))
        }
        Step::Complete | Step::Wait => None,
    };
    if let Some(reason) = halt {
        conn.exec_drop(
            "UPDATE rollout SET state = 'halted', halted_reason = ? WHERE id = ?",
            (reason.as_str(), id),
        )
        .await?;
        let detail = format!("roll-out {id} halted: {reason}");
        audit(conn, ROLLOUT_USER, "halt rollout", &detail, now).await?;
        changes.push(RolloutChange::Halted { id, reason });
    } else if *step == Step::Promote {
        let state = approve_ring(conn, rollout, next, ROLLOUT_USER, now).await?;
        let detail = format!(
            "{} after soaking {} s: {} of {} agents succeeded",
            core::describe_promote(rollout, next, None),
            rollout.soak_secs.unwrap_or(0),
            tally.succeeded,
            tally.agents
        );
        audit(conn, ROLLOUT_USER, "promote rollout", &detail, now).await?;
        changes.push(RolloutChange::Promoted {
            id,
            ring: rollout.rings[next].clone(),
        });
        if state == RolloutState::Completed {
            changes.push(RolloutChange::Completed { id });
        }
    } else if *step == Step::Complete {
        conn.exec_drop("UPDATE rollout SET state = 'completed' WHERE id = ?", (id,))
            .await?;
        let detail = format!("roll-out {id} completed: its last ring is approved");
        audit(conn, ROLLOUT_USER, "complete rollout", &detail, now).await?;
        changes.push(RolloutChange::Completed { id });
    }
    bump_gate_generation(conn).await?;
    conn.query_drop("COMMIT").await?;
    Ok(changes)
}

/// The current ring's tally of `rollout`.
pub(super) async fn tally(conn: &mut Conn, rollout: &Rollout) -> Result<Tally> {
    let tag = rollout.rings[rollout.current_ring].as_str();
    let agents: u64 = conn
        .exec_first(core::RING_AGENTS, (tag,))
        .await
        .map_err(doing("counting a ring's agents"))?
        .unwrap_or(0);
    let packages = core::rollout_packages(rollout);
    let mut params = vec![Value::from(tag), Value::from(rollout.ring_started_at)];
    params.extend(packages.iter().map(|p| Value::from(p.as_str())));
    let ran: Vec<(String, i64, i64)> = conn
        .exec(
            format!(
                "{}{} GROUP BY a.name",
                core::RING_RUNS,
                placeholders(packages.len())
            ),
            params,
        )
        .await
        .map_err(doing("reading a ring's runs"))?;
    Ok(Tally::of(
        agents,
        ran.into_iter()
            .map(|(name, failed, succeeded)| (name, failed != 0, succeeded != 0))
            .collect(),
    ))
}

/// A row of [`ROLLOUT_COLUMNS`].
pub(super) fn rollout_row(row: Row) -> Result<RolloutRow> {
    let id: Option<u64> = row.get(0);
    let unreadable = || StoreError::Unreadable(format!("roll-out row {id:?}"));
    Ok(RolloutRow {
        id: id.ok_or_else(unreadable)?,
        tasks: row.get(1).ok_or_else(unreadable)?,
        rings: row.get(2).ok_or_else(unreadable)?,
        soak_secs: row.get::<Option<u64>, _>(3).ok_or_else(unreadable)?,
        max_failure_percent: row.get(4).ok_or_else(unreadable)?,
        state: row.get(5).ok_or_else(unreadable)?,
        current_ring: row.get(6).ok_or_else(unreadable)?,
        ring_started_at: row.get(7).ok_or_else(unreadable)?,
        halted_reason: row.get::<Option<String>, _>(8).ok_or_else(unreadable)?,
        created_by: row.get(9).ok_or_else(unreadable)?,
        created_at: row.get(10).ok_or_else(unreadable)?,
    })
}
