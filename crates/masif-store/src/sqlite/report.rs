//! The report transaction on SQLite: approvals matched as patterns, the agent's pending set
//! replaced by the not-approved rest, and a read-only fast path when nothing changed.

use std::collections::HashSet;

use async_trait::async_trait;
use masif_proto::facts::Facts;
use masif_proto::{AgentName, TaskSet};
use rusqlite::{OptionalExtension, Transaction};

use super::rows::{self, RawTask};
use super::summary;
use super::SqliteStore;
use crate::backoff::Failure;
use crate::clock::{last_seen_due, unix_now};
use crate::facts::{facts_digest, report_digest, FactRows};
use crate::pending::{diff, split};
use crate::summary::Deltas;
use crate::{Reports, Result, StoreError};

#[async_trait]
impl Reports for SqliteStore {
    async fn report_with_facts(
        &self,
        agent: &AgentName,
        tasks: &TaskSet,
        facts: Option<&Facts>,
    ) -> Result<TaskSet> {
        let _place = self.inner.queue.enter()?;
        let name = agent.as_str().to_owned();
        let reported = tasks.clone();
        let interval = self.last_seen_interval();
        let digest = facts.map(facts_digest);
        let unchanged = self
            .read("reading the state of a report", move |tx| {
                unchanged_answer(tx, &name, &reported, digest.as_ref(), interval)
            })
            .await?;
        if let Some((approved, seen)) = unchanged {
            if let Some(agent_id) = seen {
                self.inner.last_seen_due.mark(agent_id);
            }
            return Ok(approved);
        }
        let name = agent.as_str().to_owned();
        let reported = tasks.clone();
        let facts = facts.map(|f| (f.clone(), facts_digest(f)));
        self.write("recording a report", move |tx| {
            record(tx, &name, &reported, facts.as_ref())
        })
        .await
    }

    async fn flush(&self) {
        self.write_last_seen().await;
    }

    async fn remove_orphan_packages(&self) -> Result<u64> {
        self.remove_orphans().await
    }

    fn retries(&self) -> u64 {
        self.conflicts()
    }
}

/// The approved subset if this report would change no pending row: the agent is known and its
/// pending set has the stored digest and row count; with the agent's id when its `last_seen` is
/// due (the rule both back ends share, `clock::last_seen_due`), to be written behind. `None`
/// means "write the report".
fn unchanged_answer(
    tx: &Transaction<'_>,
    agent: &str,
    reported: &TaskSet,
    facts_digest: Option<&[u8; 32]>,
    last_seen_interval: std::time::Duration,
) -> Result<Option<(TaskSet, Option<i64>)>, Failure> {
    let Some(agent_id) = rows::agent_id(tx, agent)? else {
        return Ok(None);
    };
    let stored: Option<(Vec<u8>, i64, i64)> = tx
        .prepare_cached(
            "SELECT r.pending_hash, r.last_seen,
                    (SELECT COUNT(*) FROM task WHERE agent = ?1 AND approved = 0)
               FROM agent_report r WHERE r.agent = ?1",
        )?
        .query_row([agent_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((stored_hash, last_seen, stored_rows)) = stored else {
        return Ok(None);
    };
    let patterns = rows::approval_patterns(tx, agent_id, reported)?;
    let (approved, pending) = split(reported, &patterns);
    let fresh = !last_seen_due(Some(last_seen), unix_now(), last_seen_interval);
    let same = stored_hash == report_digest(&pending, facts_digest)
        && usize::try_from(stored_rows).is_ok_and(|n| n == pending.len());
    Ok(same.then_some((approved, (!fresh).then_some(agent_id))))
}

/// The write path: creates the agent if needed, replaces its pending rows by the not-approved
/// reported tasks (touching only the rows that differ), records digest and `last_seen`, and
/// with facts replaces the agent's stored facts (a facts-only change leaves `mtime` alone).
fn record(
    tx: &Transaction<'_>,
    agent: &str,
    reported: &TaskSet,
    facts: Option<&(Facts, [u8; 32])>,
) -> Result<TaskSet, Failure> {
    let now = unix_now();
    tx.prepare_cached(
        "INSERT INTO agent (name, ctime, mtime) VALUES (?1, ?2, ?2) ON CONFLICT (name) DO NOTHING",
    )?
    .execute((agent, now))?;
    let agent_id =
        rows::agent_id(tx, agent)?.ok_or_else(|| StoreError::Vanished(format!("agent {agent}")))?;
    let patterns = rows::approval_patterns(tx, agent_id, reported)?;
    let (approved, pending) = split(reported, &patterns);

    let stored = tx
        .prepare_cached(
            "SELECT t.id, p.name, t.action, t.from_version, t.to_version, t.package
               FROM task t LEFT JOIN package p ON p.id = t.package
              WHERE t.agent = ?1 AND t.approved = 0",
        )?
        .query_map([agent_id], |row| {
            Ok((
                (row.get::<_, i64>(0)?, RawTask::from_row(row, 1)?),
                row.get::<_, Option<i64>>(5)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let (stored, package_ids): (Vec<_>, Vec<_>) = stored.into_iter().unzip();
    // The summary's view of the stored rows: (row id, package id, action, target version).
    let before: Vec<(i64, u64, String, Option<String>)> = stored
        .iter()
        .zip(&package_ids)
        .filter_map(|((id, raw), package)| {
            let (package, action) = (u64::try_from((*package)?).ok()?, raw.action.clone()?);
            Some((*id, package, action, raw.to_version.clone()))
        })
        .collect();
    let (stale, inserts) = diff(stored, pending.iter().map(|t| (RawTask::from_task(t), *t)));
    let gone: HashSet<i64> = stale.iter().copied().collect();
    let mut after: Vec<(u64, &str, Option<&str>)> = before
        .iter()
        .filter(|(id, ..)| !gone.contains(id))
        .map(|(_, p, a, t)| (*p, a.as_str(), t.as_deref()))
        .collect();
    for id in &stale {
        tx.prepare_cached("DELETE FROM task WHERE id = ?1")?
            .execute([id])?;
    }
    for task in &inserts {
        let package_id = rows::ensure_package(tx, task.package().as_str())?;
        after.push((
            u64::try_from(package_id).unwrap_or_default(),
            task.action().as_str(),
            task.to_version().map(|v| v.as_str()),
        ));
        tx.prepare_cached(
            "INSERT INTO task (agent, package, from_version, to_version, action, approved, ctime)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
        )?
        .execute((
            agent_id,
            package_id,
            task.from_version().map(|v| v.as_str()),
            task.to_version().map(|v| v.as_str()),
            task.action().as_str(),
            now,
        ))?;
    }
    let mut deltas = Deltas::default();
    deltas.agent(
        before
            .iter()
            .map(|(_, p, a, t)| (*p, a.as_str(), t.as_deref())),
        after,
    );
    summary::apply(tx, &deltas)?;
    if !stale.is_empty() || !inserts.is_empty() {
        tx.prepare_cached("UPDATE agent SET mtime = ?2 WHERE id = ?1")?
            .execute((agent_id, now))?;
    }
    tx.prepare_cached(
        "INSERT INTO agent_report (agent, pending_hash, last_seen) VALUES (?1, ?2, ?3)
         ON CONFLICT (agent) DO UPDATE SET pending_hash = excluded.pending_hash,
                                           last_seen = excluded.last_seen",
    )?
    .execute((
        agent_id,
        report_digest(&pending, facts.map(|(_, digest)| digest)).as_slice(),
        now,
    ))?;
    if let Some((facts, _)) = facts {
        write_facts(tx, agent_id, &FactRows::of(facts, &pending), now)?;
    }
    Ok(approved)
}

/// Replaces the host facts, held packages, tags and pending tasks' facts of agent `agent_id`.
fn write_facts(
    tx: &Transaction<'_>,
    agent_id: i64,
    rows: &FactRows<'_>,
    now: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO agent_facts
           (agent, os, kernel, agent_version, reboot_required, reboot_packages, reported_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (agent) DO UPDATE SET os = excluded.os, kernel = excluded.kernel,
           agent_version = excluded.agent_version, reboot_required = excluded.reboot_required,
           reboot_packages = excluded.reboot_packages, reported_at = excluded.reported_at",
    )?
    .execute((
        agent_id,
        rows.os,
        rows.kernel,
        rows.agent_version,
        rows.reboot_required,
        &rows.reboot_packages,
        now,
    ))?;
    tx.prepare_cached("DELETE FROM agent_held WHERE agent = ?1")?
        .execute([agent_id])?;
    for name in &rows.held {
        tx.prepare_cached("INSERT INTO agent_held (agent, package) VALUES (?1, ?2)")?
            .execute((agent_id, name))?;
    }
    tx.prepare_cached("DELETE FROM agent_tag WHERE agent = ?1")?
        .execute([agent_id])?;
    for tag in &rows.tags {
        tx.prepare_cached("INSERT INTO agent_tag (agent, tag) VALUES (?1, ?2)")?
            .execute((agent_id, tag))?;
    }
    tx.prepare_cached("DELETE FROM task_fact WHERE agent = ?1")?
        .execute([agent_id])?;
    for row in &rows.tasks {
        let package_id = rows::ensure_package(tx, row.task.package().as_str())?;
        tx.prepare_cached(
            "INSERT INTO task_fact
               (agent, package, action, from_version, to_version, origin, security, needs)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute((
            agent_id,
            package_id,
            row.task.action().as_str(),
            row.task.from_version().map(|v| v.as_str()),
            row.task.to_version().map(|v| v.as_str()),
            row.origin,
            row.security,
            row.needs.as_deref(),
        ))?;
    }
    Ok(())
}
