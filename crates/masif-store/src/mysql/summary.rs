//! The pending summary on MySQL: the statements that apply [`Deltas`] (upserts in key order,
//! so concurrent writers lock the rows in one order, then the keys that reached 0 deleted),
//! and the approval's deletion of pending rows with its deltas.

use std::collections::{BTreeSet, HashMap};

use mysql_async::prelude::*;
use mysql_async::Conn;

use super::changes::BATCH;
use super::sql::{lit, tuple};
use crate::summary::{Deltas, Pending};

/// The statements applying `deltas` (none if nothing changes).
pub(super) fn statements(deltas: &Deltas) -> Vec<String> {
    let mut sql = Vec::new();
    let rows: Vec<_> = deltas.rows().collect();
    if !rows.is_empty() {
        let values: Vec<String> = rows
            .iter()
            .map(|((p, a, t), d)| format!("({p}, {}, {}, {d})", lit(a.as_str()), lit(t.as_str())))
            .collect();
        sql.push(format!(
            "INSERT INTO pending_summary (package, action, to_version, agents) VALUES {} \
             ON DUPLICATE KEY UPDATE agents = agents + VALUES(agents)",
            values.join(", ")
        ));
        let down: Vec<String> = rows
            .iter()
            .filter(|(_, d)| *d < 0)
            .map(|((p, a, t), _)| {
                format!(
                    "(package = {p} AND action = {} AND to_version = {})",
                    lit(a.as_str()),
                    lit(t.as_str())
                )
            })
            .collect();
        if !down.is_empty() {
            sql.push(format!(
                "DELETE FROM pending_summary WHERE agents <= 0 AND ({})",
                down.join(" OR ")
            ));
        }
    }
    let packages: Vec<_> = deltas.packages().collect();
    if !packages.is_empty() {
        let values: Vec<String> = packages
            .iter()
            .map(|((p, a), d)| format!("({p}, {}, {d})", lit(a.as_str())))
            .collect();
        sql.push(format!(
            "INSERT INTO pending_package_summary (package, action, agents) VALUES {} \
             ON DUPLICATE KEY UPDATE agents = agents + VALUES(agents)",
            values.join(", ")
        ));
        let down: Vec<String> = packages
            .iter()
            .filter(|(_, d)| *d < 0)
            .map(|((p, a), _)| format!("(package = {p} AND action = {})", lit(a.as_str())))
            .collect();
        if !down.is_empty() {
            sql.push(format!(
                "DELETE FROM pending_package_summary WHERE agents <= 0 AND ({})",
                down.join(" OR ")
            ));
        }
    }
    sql
}

/// Applies `deltas` inside the caller's transaction.
pub(super) async fn apply(conn: &mut Conn, deltas: &Deltas) -> mysql_async::Result<()> {
    for statement in statements(deltas) {
        conn.query_drop(statement).await?;
    }
    Ok(())
}

/// A pending row of one package: agent, action, target version.
type AgentRow = (u64, String, Option<String>);

/// Deletes the pending rows of `package` matching `condition` (on `t`), locked first so that
/// the rows counted are the rows deleted, and adds the change of every agent that lost one to
/// `deltas`. Returns how many rows went.
pub(super) async fn delete_pending(
    conn: &mut Conn,
    package: u64,
    condition: &str,
    deltas: &mut Deltas,
) -> mysql_async::Result<u64> {
    // Rows of no agent (possible only in the original schema) go too, uncounted.
    let found: Vec<(u64, Option<u64>, String, Option<String>)> = conn
        .query(format!(
            "SELECT t.id, t.agent, CAST(t.action AS CHAR), t.to_version FROM task t
              WHERE t.approved = 0 AND {condition} FOR UPDATE"
        ))
        .await?;
    if found.is_empty() {
        return Ok(0);
    }
    let mut deleted = 0;
    for chunk in found.chunks(BATCH) {
        conn.query_drop(format!(
            "DELETE FROM task WHERE id IN {} AND approved = 0",
            tuple(chunk.iter().map(|(id, ..)| *id))
        ))
        .await?;
        deleted += conn.affected_rows();
    }
    let mut gone: HashMap<u64, Vec<(String, Option<String>)>> = HashMap::new();
    for (_, agent, action, to) in found {
        if let Some(agent) = agent {
            gone.entry(agent).or_default().push((action, to));
        }
    }
    let agents: BTreeSet<u64> = gone.keys().copied().collect();
    if agents.is_empty() {
        return Ok(deleted);
    }
    let remaining = remaining_rows(conn, package, &agents).await?;
    for (agent, lost) in &gone {
        let kept: Vec<Pending<'_>> = remaining
            .get(agent)
            .map(|rows| {
                rows.iter()
                    .map(|(a, t)| (package, a.as_str(), t.as_deref()))
                    .collect()
            })
            .unwrap_or_default();
        let before = kept.iter().copied().chain(
            lost.iter()
                .map(|(a, t)| (package, a.as_str(), t.as_deref())),
        );
        deltas.agent(before, kept.iter().copied());
    }
    Ok(deleted)
}

/// The pending rows of `package` that `agents` still have: by agent for a few agents, else one
/// pass over the package's rows in `task_overview`.
async fn remaining_rows(
    conn: &mut Conn,
    package: u64,
    agents: &BTreeSet<u64>,
) -> mysql_async::Result<HashMap<u64, Vec<(String, Option<String>)>>> {
    let mut rows: Vec<AgentRow> = Vec::new();
    if agents.len() <= BATCH {
        rows = conn
            .query(format!(
                "SELECT t.agent, CAST(t.action AS CHAR), t.to_version
                   FROM task t FORCE INDEX (task_agent_approved)
                  WHERE t.agent IN {} AND t.approved = 0 AND t.package = {package}
                    AND t.action IS NOT NULL",
                tuple(agents.iter().copied())
            ))
            .await?;
    } else {
        let all: Vec<AgentRow> = conn
            .query(format!(
                "SELECT t.agent, CAST(t.action AS CHAR), t.to_version
                   FROM task t FORCE INDEX (task_overview)
                  WHERE t.package = {package} AND t.approved = 0 AND t.agent IS NOT NULL
                    AND t.action IS NOT NULL"
            ))
            .await?;
        rows.extend(all.into_iter().filter(|(a, ..)| agents.contains(a)));
    }
    let mut by_agent: HashMap<u64, Vec<(String, Option<String>)>> = HashMap::new();
    for (agent, action, to) in rows {
        by_agent.entry(agent).or_default().push((action, to));
    }
    Ok(by_agent)
}
