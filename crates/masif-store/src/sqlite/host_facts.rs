//! The UI's reads of host facts on SQLite: one agent's facts and its pending tasks' facts, and
//! what approving some rows pulls in (`needs_of`).

use std::collections::{BTreeMap, BTreeSet};

use masif_proto::facts::TaskFacts;
use masif_proto::{AgentName, Task};
use rusqlite::{OptionalExtension, Transaction};

use super::rows::{self, RawTask};
use crate::backoff::Failure;
use crate::facts::{host_facts, needs_keys, needs_without, task_facts, HostRow};
use crate::{ApprovalScope, HostFacts, TaskKey};

/// Pending task rows (`t`) with the agent's facts of them (`f`).
const PENDING_WITH_FACTS: &str = "task t JOIN task_fact f
    ON f.agent = t.agent AND f.package = t.package AND f.action = t.action
   AND f.from_version IS t.from_version AND f.to_version IS t.to_version";

/// The stored facts of agent `agent_id`: its host facts (if it ever sent any) and the facts of
/// its pending tasks.
pub(super) fn of_agent(
    tx: &Transaction<'_>,
    agent_id: i64,
) -> Result<(Option<HostFacts>, BTreeMap<Task, TaskFacts>), Failure> {
    let host: Option<HostRow> = tx
        .prepare_cached(
            "SELECT os, kernel, agent_version, reboot_required, reboot_packages, reported_at
               FROM agent_facts WHERE agent = ?1",
        )?
        .query_row([agent_id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .optional()?;
    let host = match host {
        Some(row) => {
            let held = tx
                .prepare_cached("SELECT package FROM agent_held WHERE agent = ?1")?
                .query_map([agent_id], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Some(host_facts(row, held))
        }
        None => None,
    };
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT p.name, t.action, t.from_version, t.to_version, f.origin, f.needs
           FROM {PENDING_WITH_FACTS} LEFT JOIN package p ON p.id = t.package
          WHERE t.agent = ?1 AND t.approved = 0"
    ))?;
    let rows = stmt.query_map([agent_id], |r| {
        Ok((
            RawTask::from_row(r, 0)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, Option<String>>(5)?,
        ))
    })?;
    let mut tasks = BTreeMap::new();
    for row in rows {
        let (raw, origin, needs) = row?;
        match raw.to_task() {
            Ok(task) => {
                tasks.insert(task, task_facts(origin, needs.as_deref()));
            }
            Err(e) => tracing::warn!(agent_id, error = %e, "skipping unusable task fact"),
        }
    }
    Ok((host, tasks))
}

/// The union of the needs of the pending rows matching `keys` of the agents in `scope`,
/// without `keys` themselves.
pub(super) fn needs_of(
    tx: &Transaction<'_>,
    keys: &[TaskKey],
    scope: &ApprovalScope,
) -> Result<Vec<TaskKey>, Failure> {
    // `None`: every agent.
    let agents: Vec<Option<i64>> = match scope {
        ApprovalScope::AllAgents => vec![None],
        ApprovalScope::Agents(names) => {
            let names: BTreeSet<&str> = names.iter().map(AgentName::as_str).collect();
            let mut ids = Vec::new();
            for name in names {
                if let Some(id) = rows::agent_id(tx, name)? {
                    ids.push(Some(id));
                }
            }
            ids
        }
        ApprovalScope::Tag(tag) => rows::tagged_agents(tx, tag.as_str())?
            .into_iter()
            .map(Some)
            .collect(),
    };
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT f.needs FROM {PENDING_WITH_FACTS} JOIN package p ON p.id = t.package
          WHERE p.name = ?1 AND t.action = ?2 AND t.to_version IS ?3 AND t.approved = 0
            AND f.needs IS NOT NULL AND (?4 IS NULL OR t.agent = ?4)"
    ))?;
    let mut union = BTreeSet::new();
    for key in keys {
        for agent in &agents {
            let needs = stmt
                .query_map(
                    (
                        key.package.as_str(),
                        key.action.as_str(),
                        key.to_version.as_ref().map(|v| v.as_str()),
                        agent,
                    ),
                    |r| r.get::<_, Option<String>>(0),
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            union.extend(needs_keys(needs.iter().map(Option::as_deref)));
        }
    }
    Ok(needs_without(union, keys))
}
