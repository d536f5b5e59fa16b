//! The report transaction on SQLite: approvals matched as patterns, the agent's pending set
//! replaced by the not-approved rest, and a read-only fast path when nothing changed.

use std::collections::HashSet;

use async_trait::async_trait;
use masif_proto::{AgentName, Task, TaskSet};
use rusqlite::{OptionalExtension, Transaction};
use sha2::{Digest, Sha256};

use super::conn::{unix_now, Failure};
use super::rows::{self, RawTask};
use super::SqliteStore;
use crate::{Reports, Result};

/// An unchanged report rewrites `agent_report.last_seen` only when the stored value is at least
/// this old (seconds), so the steady state costs no write and `last_seen` stays this fresh.
pub(super) const LAST_SEEN_REFRESH_SECS: i64 = 60;

#[async_trait]
impl Reports for SqliteStore {
    async fn report(&self, agent: &AgentName, tasks: &TaskSet) -> Result<TaskSet> {
        let name = agent.as_str().to_owned();
        let reported = tasks.clone();
        let unchanged = self
            .read(move |tx| unchanged_answer(tx, &name, &reported))
            .await?;
        if let Some(approved) = unchanged {
            return Ok(approved);
        }
        let name = agent.as_str().to_owned();
        let reported = tasks.clone();
        self.write(move |tx| record(tx, &name, &reported)).await
    }
}

/// The approved subset if this report would change nothing stored: the agent is known, its
/// pending set has the stored digest and `last_seen` is fresh. `None` means "write".
fn unchanged_answer(
    tx: &Transaction<'_>,
    agent: &str,
    reported: &TaskSet,
) -> Result<Option<TaskSet>, Failure> {
    let Some(agent_id) = rows::agent_id(tx, agent)? else {
        return Ok(None);
    };
    let stored: Option<(Vec<u8>, i64)> = tx
        .query_row(
            "SELECT pending_hash, last_seen FROM agent_report WHERE agent = ?1",
            [agent_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((stored_hash, last_seen)) = stored else {
        return Ok(None);
    };
    let (approved, pending) = split(tx, agent_id, reported)?;
    let fresh = unix_now().saturating_sub(last_seen) < LAST_SEEN_REFRESH_SECS;
    Ok((fresh && stored_hash == pending_digest(&pending)).then_some(approved))
}

/// The write path: creates the agent if needed, replaces its pending rows by the not-approved
/// reported tasks (touching only the rows that differ), records digest and `last_seen`.
fn record(tx: &Transaction<'_>, agent: &str, reported: &TaskSet) -> Result<TaskSet, Failure> {
    let now = unix_now();
    tx.execute(
        "INSERT INTO agent (name, ctime, mtime) VALUES (?1, ?2, ?2) ON CONFLICT (name) DO NOTHING",
        (agent, now),
    )?;
    let agent_id = rows::agent_id(tx, agent)?
        .ok_or_else(|| crate::StoreError::Database(format!("agent {agent} vanished")))?;
    let (approved, pending) = split(tx, agent_id, reported)?;

    let mut wanted: HashSet<RawTask> = pending.iter().map(|t| RawTask::from_task(t)).collect();
    let mut stale = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT t.id, p.name, t.action, t.from_version, t.to_version
               FROM task t LEFT JOIN package p ON p.id = t.package
              WHERE t.agent = ?1 AND t.approved = 0",
        )?;
        let mut query = stmt.query([agent_id])?;
        while let Some(row) = query.next()? {
            let id: i64 = row.get(0)?;
            let raw = RawTask::from_row(row, 1)?;
            // Keep the first row of each wanted task; duplicates and unwanted rows go.
            if !wanted.remove(&raw) {
                stale.push(id);
            }
        }
    }
    for id in &stale {
        tx.prepare_cached("DELETE FROM task WHERE id = ?1")?
            .execute([id])?;
    }
    for task in pending
        .iter()
        .filter(|t| wanted.contains(&RawTask::from_task(t)))
    {
        let package_id = rows::ensure_package(tx, task.package().as_str())?;
        tx.prepare_cached(
            "INSERT INTO task (agent, package, from_version, to_version, action, approved)
             VALUES (?1, ?2, ?3, ?4, ?5, 0)",
        )?
        .execute((
            agent_id,
            package_id,
            task.from_version().map(|v| v.as_str()),
            task.to_version().map(|v| v.as_str()),
            task.action().as_str(),
        ))?;
    }
    if !stale.is_empty() || !wanted.is_empty() {
        tx.execute("UPDATE agent SET mtime = ?2 WHERE id = ?1", (agent_id, now))?;
    }
    tx.execute(
        "INSERT INTO agent_report (agent, pending_hash, last_seen) VALUES (?1, ?2, ?3)
         ON CONFLICT (agent) DO UPDATE SET pending_hash = excluded.pending_hash,
                                           last_seen = excluded.last_seen",
        (agent_id, pending_digest(&pending).as_slice(), now),
    )?;
    Ok(approved)
}

/// Splits the reported tasks into (approved, pending) by the approval patterns in force for
/// this agent.
fn split<'a>(
    tx: &Transaction<'_>,
    agent_id: i64,
    reported: &'a TaskSet,
) -> Result<(TaskSet, Vec<&'a Task>), Failure> {
    let patterns = rows::approval_patterns(tx, agent_id)?;
    let mut approved = TaskSet::new();
    let mut pending = Vec::new();
    for task in reported {
        if patterns.iter().any(|p| p.matches(task)) {
            approved.insert(task.clone());
        } else {
            pending.push(task);
        }
    }
    Ok((approved, pending))
}

/// SHA-256 of the pending tasks in set order; separators are control characters, which names
/// and versions cannot contain, and `\0` marks an absent version.
fn pending_digest(pending: &[&Task]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for task in pending {
        hash.update(task.package().as_str());
        hash.update([0x1f]);
        hash.update(task.action().as_str());
        for version in [task.from_version(), task.to_version()] {
            hash.update([0x1f]);
            hash.update(version.map_or("\0", |v| v.as_str()));
        }
        hash.update([0x1e]);
    }
    hash.finalize().into()
}
