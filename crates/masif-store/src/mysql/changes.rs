//! The UI's audited writes on MySQL, one attempt each (the caller retries conflicts): approve,
//! revoke, reset, and the audit entry each writes. Lists of ids and rows of multi-row INSERTs
//! are escaped literals (`sql::lit`); names looked up are bound as parameters.

use std::collections::{BTreeSet, HashMap};

use masif_proto::{AgentName, PackageName, Version};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};

use super::sql::{lit, tuple};
use super::summary::{self, Deleted};
use crate::audit::{
    cut, describe_approval, describe_approve, describe_list, describe_task, tag_label,
    MAX_DETAIL_CHARS,
};
use crate::backoff::Failure;
use crate::clock::unix_now;
use crate::summary::Deltas;
use crate::{
    Approval, ApprovalOutcome, ApprovalScope, ApprovalTask, StoreError, TableCounts, TaskKey,
};

/// Approval columns for [`approval_from_row`]; append `WHERE …`.
pub(super) const APPROVAL: &str = "
    SELECT t.id, a.name, p.name, t.action, t.from_version, t.to_version,
           ap.approved_by, ap.approved_at
      FROM task t
      LEFT JOIN agent a ON a.id = t.agent
      LEFT JOIN package p ON p.id = t.package
      LEFT JOIN approval ap ON ap.task = t.id";

/// Most values put into one `IN (…)` list or one multi-row INSERT: below MariaDB's
/// `in_predicate_conversion_threshold` (1000), which turns a longer list into a join with a
/// table of the values, whose plan may scan rows of other agents (and, in a locking read,
/// wait for their locks).
pub(super) const BATCH: usize = 999;

/// `(?, ?, …)` with `n` placeholders.
pub(super) fn placeholders(n: usize) -> String {
    format!("({})", vec!["?"; n].join(", "))
}

/// Ids of the packages named by `keys` that exist; with `lock`, share-locked until the
/// transaction ends (a concurrent reset cannot delete them under an approval).
pub(super) async fn package_ids(
    conn: &mut Conn,
    keys: &[TaskKey],
    lock: bool,
) -> mysql_async::Result<HashMap<String, u64>> {
    let names: BTreeSet<&str> = keys.iter().map(|k| k.package.as_str()).collect();
    let names: Vec<&str> = names.into_iter().collect();
    ids_by_name(conn, "package", &names, lock).await
}

/// Ids of the rows of `table` (`agent` or `package`) named in `names` that exist, in
/// [`BATCH`]-sized queries; with `lock`, share-locked until the transaction ends.
async fn ids_by_name(
    conn: &mut Conn,
    table: &'static str,
    names: &[&str],
    lock: bool,
) -> mysql_async::Result<HashMap<String, u64>> {
    let lock = if lock { " LOCK IN SHARE MODE" } else { "" };
    let mut ids = HashMap::new();
    for chunk in names.chunks(BATCH) {
        let rows: Vec<(u64, String)> = conn
            .exec(
                format!(
                    "SELECT id, name FROM {table} WHERE name IN {}{lock}",
                    placeholders(chunk.len())
                ),
                chunk.iter().map(|n| Value::from(*n)).collect::<Vec<_>>(),
            )
            .await?;
        ids.extend(rows.into_iter().map(|(id, name)| (name, id)));
    }
    Ok(ids)
}

/// `task` rows of an approval task: its package, action and target version (NULL-safe), and
/// its from-version when it names one.
pub(super) fn task_condition(package: u64, task: &ApprovalTask) -> String {
    let key = &task.key;
    let from = match &task.from_version {
        Some(from) => format!(" AND t.from_version = {}", lit(from.as_str())),
        None => String::new(),
    };
    format!(
        "(t.package = {package} AND t.action = {} AND t.to_version <=> {}{from})",
        lit(key.action.as_str()),
        lit(key.to_version.as_ref().map(Version::as_str))
    )
}

/// The writes of an approval of `tasks` (already distinct and sorted) for `scope` at `now`,
/// audited, inside the caller's transaction (which bumps the generation and commits).
pub(super) async fn approve_in(
    conn: &mut Conn,
    tasks: &[ApprovalTask],
    scope: &ApprovalScope,
    user: &str,
    now: i64,
) -> Result<ApprovalOutcome, Failure> {
    let keys: Vec<TaskKey> = tasks.iter().map(|t| t.key.clone()).collect();
    let packages = lock_packages(conn, &keys).await?;
    let (targets, target_label) = lock_targets(conn, scope, true).await?;
    let mut outcome = ApprovalOutcome {
        approvals_written: 0,
        pending_rows_approved: 0,
    };
    let mut described = Vec::new();
    let mut deleted = Deleted::default();
    for task in tasks {
        let Some(&package) = packages.get(task.key.package.as_str()) else {
            let vanished = StoreError::Vanished(format!("package {}", task.key.package));
            return Err(Failure::Fatal(vanished));
        };
        outcome.pending_rows_approved +=
            approve_pending(conn, package, task, &targets, &mut deleted).await?;
        outcome.approvals_written +=
            write_approvals(conn, package, task, &targets, user, now).await?;
        described.push(describe_task(task));
    }
    let mut deltas = Deltas::default();
    summary::count_deleted(conn, deleted, &mut deltas).await?;
    summary::apply(conn, &deltas).await?;
    if let Some(detail) = describe_approve(&described, &target_label, &outcome) {
        audit(conn, user, "approve", &detail, now).await?;
    }
    Ok(outcome)
}

/// Share-locks the packages `keys` name, creating those no agent has reported yet (an approval
/// of them covers later reports), and returns their ids.
pub(super) async fn lock_packages(
    conn: &mut Conn,
    keys: &[TaskKey],
) -> Result<HashMap<String, u64>, Failure> {
    let packages = package_ids(conn, keys, true).await?;
    let missing: BTreeSet<&PackageName> = keys
        .iter()
        .map(|k| &k.package)
        .filter(|n| !packages.contains_key(n.as_str()))
        .collect();
    if missing.is_empty() {
        return Ok(packages);
    }
    let missing: Vec<&PackageName> = missing.into_iter().collect();
    for chunk in missing.chunks(BATCH) {
        let values: Vec<String> = chunk
            .iter()
            .map(|n| format!("({})", lit(n.as_str())))
            .collect();
        conn.query_drop(format!(
            "INSERT INTO package (name) VALUES {} ON DUPLICATE KEY UPDATE id = id",
            values.join(", ")
        ))
        .await?;
    }
    Ok(package_ids(conn, keys, true).await?)
}

/// The agent ids an approval is written for (`None`: every agent, agent NULL), share-locked
/// with `lock`, and how the audit names them. An unknown agent is refused.
pub(super) async fn lock_targets(
    conn: &mut Conn,
    scope: &ApprovalScope,
    lock: bool,
) -> Result<(Vec<Option<u64>>, String), Failure> {
    let share = if lock { " LOCK IN SHARE MODE" } else { "" };
    let names = match scope {
        ApprovalScope::AllAgents => return Ok((vec![None], "all agents".to_owned())),
        ApprovalScope::Agents(names) => names,
        ApprovalScope::Tag(tag) => {
            let found: Vec<u64> = conn
                .exec(
                    format!(
                        "SELECT g.agent FROM agent_tag g JOIN agent a ON a.id = g.agent
                          WHERE g.tag = ? ORDER BY g.agent{share}"
                    ),
                    (tag.as_str(),),
                )
                .await?;
            if found.is_empty() {
                return Err(StoreError::Invalid(format!("no agent carries tag {tag}")).into());
            }
            let label = tag_label(tag, found.len());
            return Ok((found.into_iter().map(Some).collect(), label));
        }
    };
    let names: BTreeSet<&str> = names.iter().map(AgentName::as_str).collect();
    let list: Vec<&str> = names.iter().copied().collect();
    let found = ids_by_name(conn, "agent", &list, lock).await?;
    if let Some(unknown) = list.iter().find(|n| !found.contains_key(**n)) {
        return Err(StoreError::Invalid(format!("unknown agent {unknown}")).into());
    }
    let label = describe_list(&list, "agent");
    Ok((list.iter().map(|n| Some(found[*n])).collect(), label))
}

/// `Some(chunk)` per [`BATCH`] of the targets' agent ids, or one `None` for "every agent".
fn chunks_or_all(targets: &[Option<u64>]) -> Vec<Option<Vec<u64>>> {
    let ids: Vec<u64> = targets.iter().flatten().copied().collect();
    if ids.is_empty() {
        vec![None]
    } else {
        ids.chunks(BATCH).map(|c| Some(c.to_vec())).collect()
    }
}

/// Deletes the pending rows of `task` the approval covers, recorded in `deleted` for the
/// summary; returns how many.
async fn approve_pending(
    conn: &mut Conn,
    package: u64,
    task: &ApprovalTask,
    targets: &[Option<u64>],
    deleted: &mut Deleted,
) -> Result<u64, Failure> {
    let this_task = task_condition(package, task);
    let mut approved = 0;
    for chunk in chunks_or_all(targets) {
        let agents = match chunk {
            Some(ids) => format!("AND t.agent IN {}", tuple(ids)),
            None => String::new(),
        };
        let condition = format!("{this_task} {agents}");
        approved += summary::delete_pending(conn, &condition, "task_approval", deleted).await?;
    }
    Ok(approved)
}

/// Writes the approval rows of `task` for the targets that have none in force yet, with who
/// and when; returns how many.
pub(super) async fn write_approvals(
    conn: &mut Conn,
    package: u64,
    task: &ApprovalTask,
    targets: &[Option<u64>],
    user: &str,
    now: i64,
) -> Result<u64, Failure> {
    let key = &task.key;
    let from = lit(task.from_version.as_ref().map(Version::as_str));
    // The task's rows with exactly its from-version (NULL: any).
    let this_task = format!(
        "{} AND t.from_version <=> {from}",
        task_condition(package, &ApprovalTask::from(key.clone()))
    );
    // Approval rows already in force for exactly this key are not written twice.
    let mut existing: BTreeSet<Option<u64>> = BTreeSet::new();
    for chunk in chunks_or_all(targets) {
        let agents = match chunk {
            Some(ids) => format!("t.agent IN {}", tuple(ids)),
            None => "t.agent IS NULL".to_owned(),
        };
        let found: Vec<Option<u64>> = conn
            .query(format!(
                "SELECT t.agent FROM task t
                  WHERE t.approved = 1 AND {this_task} AND {agents}"
            ))
            .await?;
        existing.extend(found);
    }
    let new: Vec<Option<u64>> = targets
        .iter()
        .filter(|t| !existing.contains(t))
        .copied()
        .collect();
    let mut written = 0;
    for chunk in new.chunks(BATCH) {
        let rows: Vec<String> = chunk
            .iter()
            .map(|agent| {
                format!(
                    "({}, {package}, {from}, {}, {}, 1)",
                    lit(*agent),
                    lit(key.to_version.as_ref().map(Version::as_str)),
                    lit(key.action.as_str())
                )
            })
            .collect();
        conn.query_drop(format!(
            "INSERT INTO task (agent, package, from_version, to_version, action, approved)
             VALUES {}",
            rows.join(", ")
        ))
        .await?;
        let first = conn.last_insert_id().unwrap_or(0);
        let agents = if chunk == [None] {
            "t.agent IS NULL".to_owned()
        } else {
            format!("t.agent IN {}", tuple(chunk.iter().flatten().copied()))
        };
        // Every id a statement generates is at least the first one it reports: a range of
        // the primary key from there holds the rows just written (and the few written since).
        // Named, so that the plan stays that range whatever the optimizer makes of the list
        // of agents (the server already chose it; pinned like the UI's other reads).
        conn.exec_drop(
            format!(
                "INSERT INTO approval (task, approved_by, approved_at)
                 SELECT t.id, ?, ? FROM task t FORCE INDEX (PRIMARY)
                  WHERE t.id >= {first} AND t.approved = 1 AND {this_task} AND {agents}
                 ON DUPLICATE KEY UPDATE task = approval.task"
            ),
            (user, now),
        )
        .await?;
        written += chunk.len() as u64;
    }
    Ok(written)
}

/// One attempt of revoking approval `id`; `false` if there is none.
pub(super) async fn revoke_once(conn: &mut Conn, id: u64, user: &str) -> Result<bool, Failure> {
    conn.query_drop("START TRANSACTION").await?;
    let row: Option<Row> = conn
        .exec_first(
            format!("{APPROVAL} WHERE t.id = ? AND t.approved = 1 FOR UPDATE"),
            (id,),
        )
        .await?;
    let Some(row) = row else {
        conn.query_drop("COMMIT").await?;
        return Ok(false);
    };
    let what = approval_from_row(&row).map_or_else(
        || "an unreadable approval row".to_owned(),
        |a| describe_approval(&a),
    );
    conn.exec_drop("DELETE FROM task WHERE id = ?", (id,))
        .await?;
    conn.exec_drop("DELETE FROM approval WHERE task = ?", (id,))
        .await?;
    audit(
        conn,
        user,
        "revoke",
        &format!("revoked approval {id}: {what}"),
        unix_now(),
    )
    .await?;
    bump_generation(conn).await?;
    conn.query_drop("COMMIT").await?;
    Ok(true)
}

/// One attempt of a reset: every task, approval and task fact deleted, with `everything` also
/// agents and packages (and the agents' report state, host facts, held packages, runs, tags and
/// leases).
pub(super) async fn reset_once(
    conn: &mut Conn,
    everything: bool,
    user: &str,
) -> Result<TableCounts, Failure> {
    conn.query_drop("START TRANSACTION").await?;
    // First, so that an approval's chunk (which bumps it first too) either ends before the
    // reset or sees what it deleted. The gate's too: tags and leases may go.
    bump_gate_generation(conn).await?;
    let before = table_counts(conn).await?;
    conn.query_drop("DELETE FROM task").await?;
    conn.query_drop("DELETE FROM approval").await?;
    conn.query_drop("DELETE FROM task_fact").await?;
    conn.query_drop("DELETE FROM pending_summary").await?;
    conn.query_drop("DELETE FROM pending_package_summary")
        .await?;
    let deleted = if everything {
        conn.query_drop("DELETE FROM agent_report").await?;
        conn.query_drop("DELETE FROM agent_facts").await?;
        conn.query_drop("DELETE FROM agent_held").await?;
        conn.query_drop("DELETE FROM run_latest").await?;
        conn.query_drop("DELETE FROM run").await?;
        conn.query_drop("DELETE FROM agent_tag").await?;
        conn.query_drop("DELETE FROM tag_lease").await?;
        conn.query_drop("DELETE FROM package").await?;
        conn.query_drop("DELETE FROM agent").await?;
        before
    } else {
        TableCounts {
            tasks: before.tasks,
            ..TableCounts::default()
        }
    };
    let detail = format!(
        "deleted {} tasks, {} packages, {} agents",
        deleted.tasks, deleted.packages, deleted.agents
    );
    audit(conn, user, "reset", &detail, unix_now()).await?;
    conn.query_drop("COMMIT").await?;
    Ok(deleted)
}

/// Bumps the approval generation (see `AgentLoop::approval_token`), recreating its row if it
/// is gone. Run last in the transaction: the row is then locked only until the commit, and
/// after every other lock, so approvals never wait for each other in a cycle.
pub(super) async fn bump_generation(conn: &mut Conn) -> mysql_async::Result<()> {
    conn.query_drop(
        "INSERT INTO approval_generation (id, generation) VALUES (1, 1) \
         ON DUPLICATE KEY UPDATE generation = generation + 1",
    )
    .await
}

/// Bumps the approval generation and the gate's counter with it, for a change that may alter
/// the roll-out gate's answer to any held report (see [`ApprovalToken::gate`]); placed in the
/// transaction as [`bump_generation`].
///
/// [`ApprovalToken::gate`]: crate::ApprovalToken::gate
pub(super) async fn bump_gate_generation(conn: &mut Conn) -> mysql_async::Result<()> {
    conn.query_drop(
        "INSERT INTO approval_generation (id, generation, gate) VALUES (1, 1, 1) \
         ON DUPLICATE KEY UPDATE generation = generation + 1, gate = gate + 1",
    )
    .await
}

pub(super) async fn table_counts(conn: &mut Conn) -> mysql_async::Result<TableCounts> {
    let (tasks, packages, agents): (u64, u64, u64) = conn
        .query_first(
            "SELECT (SELECT COUNT(*) FROM task), (SELECT COUNT(*) FROM package),
                    (SELECT COUNT(*) FROM agent)",
        )
        .await?
        .unwrap_or((0, 0, 0));
    Ok(TableCounts {
        tasks,
        packages,
        agents,
    })
}

pub(super) async fn audit(
    conn: &mut Conn,
    user: &str,
    action: &str,
    detail: &str,
    now: i64,
) -> mysql_async::Result<()> {
    let detail = cut(detail, MAX_DETAIL_CHARS);
    conn.exec_drop(
        "INSERT INTO audit (at, user, action, detail) VALUES (?, ?, ?, ?)",
        (now, user, action, detail),
    )
    .await
}

/// Writes the audit entry of an approval, or brings `existing` up to date (a chunked approval
/// says how far it got); returns its id.
pub(super) async fn audit_entry(
    conn: &mut Conn,
    existing: Option<u64>,
    user: &str,
    detail: &str,
    now: i64,
) -> mysql_async::Result<u64> {
    let detail = cut(detail, MAX_DETAIL_CHARS);
    match existing {
        Some(id) => {
            conn.exec_drop("UPDATE audit SET detail = ? WHERE id = ?", (detail, id))
                .await?;
            Ok(id)
        }
        None => {
            audit(conn, user, "approve", &detail, now).await?;
            Ok(conn.last_insert_id().unwrap_or(0))
        }
    }
}

pub(super) fn approval_from_row(row: &Row) -> Option<Approval> {
    let text = |i: usize| row.get::<Option<String>, _>(i).flatten();
    let parsed = (|| -> Result<Approval, String> {
        Ok(Approval {
            id: row.get(0).ok_or("no id")?,
            agent: text(1)
                .map(AgentName::new)
                .transpose()
                .map_err(|e| e.to_string())?,
            package: text(2)
                .map(PackageName::new)
                .transpose()
                .map_err(|e| e.to_string())?,
            action: text(3)
                .map(|a| a.parse())
                .transpose()
                .map_err(|e: masif_proto::TaskError| e.to_string())?,
            from_version: text(4)
                .map(Version::new)
                .transpose()
                .map_err(|e| e.to_string())?,
            to_version: text(5)
                .map(Version::new)
                .transpose()
                .map_err(|e| e.to_string())?,
            approved_by: text(6),
            approved_at: row.get::<Option<i64>, _>(7).flatten(),
        })
    })();
    parsed
        .map_err(|e| tracing::warn!(error = %e, "skipping unusable approval row"))
        .ok()
}
