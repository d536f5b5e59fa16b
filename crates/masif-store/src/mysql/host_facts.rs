//! The UI's reads of host facts on MySQL: one agent's facts and its pending tasks' facts, and
//! what approving some rows pulls in (`needs_of`). Names and keys are bound as parameters.

use std::collections::{BTreeMap, BTreeSet};

use masif_proto::facts::TaskFacts;
use masif_proto::{AgentName, Task, Version};
use mysql_async::prelude::*;
use mysql_async::{Conn, Value};

use super::changes::placeholders;
use super::sql::doing;
use crate::facts::{host_facts, needs_keys, needs_without, task_facts, HostRow};
use crate::stored::task_from_text;
use crate::{ApprovalScope, HostFacts, Result, TaskKey};

/// Pending task rows (`t`) with the agent's facts of them (`f`).
const PENDING_WITH_FACTS: &str = "task t JOIN task_fact f
    ON f.agent = t.agent AND f.package = t.package AND f.action = t.action
   AND f.from_version <=> t.from_version AND f.to_version <=> t.to_version";

/// The stored facts of agent `name`: its host facts (if it ever sent any) and the facts of its
/// pending tasks.
pub(super) async fn of_agent(
    conn: &mut Conn,
    name: &AgentName,
) -> Result<(Option<HostFacts>, BTreeMap<Task, TaskFacts>)> {
    let host: Option<HostRow> = conn
        .exec_first(
            "SELECT f.os, f.kernel, f.agent_version, f.reboot_required <> 0, f.reboot_packages,
                    f.reported_at
               FROM agent a JOIN agent_facts f ON f.agent = a.id WHERE a.name = ?",
            (name.as_str(),),
        )
        .await
        .map_err(doing("reading an agent's host facts"))?;
    let host = match host {
        Some(row) => {
            let held: Vec<String> = conn
                .exec(
                    "SELECT h.package FROM agent a JOIN agent_held h ON h.agent = a.id
                      WHERE a.name = ?",
                    (name.as_str(),),
                )
                .await
                .map_err(doing("reading an agent's held packages"))?;
            Some(host_facts(row, held))
        }
        None => None,
    };
    type Row = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = conn
        .exec(
            format!(
                "SELECT p.name, CAST(t.action AS CHAR), t.from_version, t.to_version, f.origin,
                        f.needs
                   FROM agent a STRAIGHT_JOIN {PENDING_WITH_FACTS}
                   JOIN package p ON p.id = t.package
                  WHERE t.agent = a.id AND a.name = ? AND t.approved = 0"
            ),
            (name.as_str(),),
        )
        .await
        .map_err(doing("reading the facts of an agent's pending tasks"))?;
    let mut tasks = BTreeMap::new();
    for (package, action, from, to, origin, needs) in rows {
        match task_from_text(package, action.as_deref(), from, to) {
            Ok(task) => {
                tasks.insert(task, task_facts(origin, needs.as_deref()));
            }
            Err(e) => tracing::warn!(agent = %name, error = %e, "skipping unusable task fact"),
        }
    }
    Ok((host, tasks))
}

/// The union of the needs of the pending rows matching `keys` of the agents in `scope`,
/// without `keys` themselves.
pub(super) async fn needs_of(
    conn: &mut Conn,
    keys: &[TaskKey],
    scope: &ApprovalScope,
) -> Result<Vec<TaskKey>> {
    let (in_scope, scope_params): (String, Vec<Value>) = match scope {
        ApprovalScope::AllAgents => (String::new(), Vec::new()),
        ApprovalScope::Agents(names) => {
            let names: BTreeSet<&str> = names.iter().map(AgentName::as_str).collect();
            if names.is_empty() {
                return Ok(Vec::new());
            }
            (
                format!(
                    "AND t.agent IN (SELECT id FROM agent WHERE name IN {})",
                    placeholders(names.len())
                ),
                names.into_iter().map(Value::from).collect(),
            )
        }
        ApprovalScope::Tag(tag) => (
            "AND t.agent IN (SELECT agent FROM agent_tag WHERE tag = ?)".to_owned(),
            vec![Value::from(tag.as_str())],
        ),
    };
    let sql = format!(
        "SELECT f.needs FROM package p STRAIGHT_JOIN {PENDING_WITH_FACTS}
          WHERE t.package = p.id AND p.name = ? AND t.action = ? AND t.to_version <=> ?
            AND t.approved = 0 AND f.needs IS NOT NULL {in_scope}"
    );
    let mut union = BTreeSet::new();
    for key in keys {
        let mut params = vec![
            Value::from(key.package.as_str()),
            Value::from(key.action.as_str()),
            Value::from(key.to_version.as_ref().map(Version::as_str)),
        ];
        params.extend(scope_params.iter().cloned());
        let needs: Vec<Option<String>> = conn
            .exec(sql.as_str(), params)
            .await
            .map_err(doing("reading what a selection needs"))?;
        union.extend(needs_keys(needs.iter().map(Option::as_deref)));
    }
    Ok(needs_without(union, keys))
}
