//! The `Admin` half of the MySQL back end: the UI's overviews (pending updates grouped by
//! package, agents, approvals, audit log) and its audited writes (approve, revoke, reset).
//!
//! Reads are single statements outside explicit transactions. Writes run in one transaction
//! each, on a connection marked for reset (a dropped future is rolled back by the pool), and
//! are retried from the start on a deadlock or lock wait timeout (1213/1205), like reports.
//! Values are bound as parameters, or as escaped literals (`sql::lit`) where a statement
//! carries a list.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use masif_proto::{Action, AgentName, PackageName, Task, Version};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row};

use super::sql::{db_error, is_conflict, lit, tuple};
use super::MysqlStore;
use crate::audit::{
    check_user, cut, describe_approval, describe_approve, describe_key, describe_list,
    MAX_DETAIL_CHARS,
};
use crate::clock::unix_now;
use crate::stored::task_from_text;
use crate::{
    Admin, AgentDetail, AgentSummary, Approval, ApprovalOutcome, ApprovalScope, AuditEntry,
    Listing, Page, PendingFilter, PendingGroup, PendingOverview, PendingRow, Result, StoreError,
    TableCounts, TaskKey,
};

/// Agent summary columns (name, times, pending counts); append `WHERE …`.
const SUMMARY: &str = "
    SELECT a.name, a.ctime, a.mtime, r.last_seen,
           (SELECT COUNT(*) FROM task t WHERE t.agent = a.id AND t.approved = 0),
           (SELECT COUNT(DISTINCT t.package) FROM task t WHERE t.agent = a.id AND t.approved = 0)
      FROM agent a
      LEFT JOIN agent_report r ON r.agent = a.id";

/// Approval columns for [`approval_from_row`]; append `WHERE …`.
const APPROVAL: &str = "
    SELECT t.id, a.name, p.name, t.action, t.from_version, t.to_version,
           ap.approved_by, ap.approved_at
      FROM task t
      LEFT JOIN agent a ON a.id = t.agent
      LEFT JOIN package p ON p.id = t.package
      LEFT JOIN approval ap ON ap.task = t.id";

/// Most values put into one `IN (…)` list or one multi-row INSERT.
const BATCH: usize = 1000;

#[async_trait]
impl Admin for MysqlStore {
    async fn pending_overview(
        &self,
        filter: &PendingFilter,
        page: Page,
    ) -> Result<PendingOverview> {
        let mut conn = self.conn().await?;
        let (from, conds) = pending_source(filter);
        // Every matching package with the number of agents awaiting it: one pass over the
        // covering index. Ordering and paging happen here: sorting a few thousand (count, name)
        // pairs costs less than the server's materialize-join-sort of the same rows.
        let counts: Vec<(u64, u64)> = conn
            .query(format!(
                "SELECT t.package, COUNT(DISTINCT t.agent) FROM {from} WHERE {conds}
                  GROUP BY t.package"
            ))
            .await
            .map_err(db_error)?;
        let total_packages = counts.len() as u64;
        let mut names: HashMap<u64, String> = HashMap::with_capacity(counts.len());
        for chunk in counts.chunks(BATCH * 10) {
            let found: Vec<(u64, String)> = conn
                .query(format!(
                    "SELECT id, name FROM package WHERE id IN {}",
                    tuple(chunk.iter().map(|(id, _)| *id))
                ))
                .await
                .map_err(db_error)?;
            names.extend(found);
        }
        let mut ranked: Vec<(u64, u64, String)> = counts
            .into_iter()
            .filter_map(|(id, agents)| names.remove(&id).map(|name| (id, agents, name)))
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.2.cmp(&b.2)));
        let offset = usize::try_from(page.offset).unwrap_or(usize::MAX);
        let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
        let mut order: Vec<(u64, PendingGroup)> = Vec::new();
        for (id, agents, name) in ranked.into_iter().skip(offset).take(limit) {
            match PackageName::new(name) {
                Ok(package) => order.push((
                    id,
                    PendingGroup {
                        package,
                        agents,
                        rows: Vec::new(),
                    },
                )),
                Err(e) => tracing::warn!(package_id = id, error = %e, "skipping unusable package"),
            }
        }
        if !order.is_empty() {
            let ids = tuple(order.iter().map(|(id, _)| *id));
            let rows: Vec<Row> = conn
                .query(format!(
                    "SELECT t.package, t.action, t.to_version, COUNT(DISTINCT t.agent)
                       FROM {from}
                      WHERE {conds} AND t.package IN {ids}
                      GROUP BY t.package, t.action, t.to_version"
                ))
                .await
                .map_err(db_error)?;
            let index: HashMap<u64, usize> = order
                .iter()
                .enumerate()
                .map(|(i, (id, _))| (*id, i))
                .collect();
            for row in rows {
                let package: u64 = row.get(0).unwrap_or(0);
                let Some(&i) = index.get(&package) else {
                    continue;
                };
                let action = row.get::<Option<String>, _>(1).flatten();
                let to = row.get::<Option<String>, _>(2).flatten();
                let (Some(Ok(action)), Ok(to_version)) = (
                    action.as_deref().map(str::parse::<Action>),
                    to.map(Version::new).transpose(),
                ) else {
                    tracing::warn!(
                        package_id = package,
                        "skipping pending rows without a valid action or version"
                    );
                    continue;
                };
                order[i].1.rows.push(PendingRow {
                    action,
                    to_version,
                    agents: row.get(3).unwrap_or(0),
                });
            }
        }
        let groups = order
            .into_iter()
            .map(|(_, mut g)| {
                g.rows
                    .sort_by(|a, b| (a.action, &a.to_version).cmp(&(b.action, &b.to_version)));
                g
            })
            .collect();
        Ok(PendingOverview {
            groups,
            total_packages,
        })
    }

    async fn agents_awaiting(&self, keys: &[TaskKey]) -> Result<Vec<AgentSummary>> {
        let mut conn = self.conn().await?;
        let packages = package_ids(&mut conn, keys, false)
            .await
            .map_err(db_error)?;
        let conditions: Vec<String> = keys
            .iter()
            .filter_map(|k| {
                packages
                    .get(k.package.as_str())
                    .map(|id| key_condition(*id, k))
            })
            .collect();
        let mut ids = BTreeSet::new();
        for chunk in conditions.chunks(BATCH) {
            let found: Vec<u64> = conn
                .query(format!(
                    "SELECT DISTINCT t.agent FROM task t
                      WHERE t.approved = 0 AND t.agent IS NOT NULL AND ({})",
                    chunk.join(" OR ")
                ))
                .await
                .map_err(db_error)?;
            ids.extend(found);
        }
        let ids: Vec<u64> = ids.into_iter().collect();
        let mut agents = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH) {
            let rows: Vec<Row> = conn
                .query(format!(
                    "{SUMMARY} WHERE a.id IN {}",
                    tuple(chunk.iter().copied())
                ))
                .await
                .map_err(db_error)?;
            agents.extend(rows.into_iter().filter_map(summary_from_row));
        }
        agents.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(agents)
    }

    async fn agents(&self, name_filter: Option<&str>, page: Page) -> Result<Listing<AgentSummary>> {
        let mut conn = self.conn().await?;
        let cond = match name_filter {
            Some(f) => format!("INSTR(LOWER(a.name), LOWER({})) > 0", lit(f)),
            None => "TRUE".to_owned(),
        };
        let total = conn
            .query_first::<u64, _>(format!("SELECT COUNT(*) FROM agent a WHERE {cond}"))
            .await
            .map_err(db_error)?
            .unwrap_or(0);
        let rows: Vec<Row> = conn
            .query(format!(
                "{SUMMARY} WHERE {cond} ORDER BY a.name LIMIT {} OFFSET {}",
                page.limit, page.offset
            ))
            .await
            .map_err(db_error)?;
        Ok(Listing {
            rows: rows.into_iter().filter_map(summary_from_row).collect(),
            total,
        })
    }

    async fn agent_detail(&self, name: &AgentName) -> Result<Option<AgentDetail>> {
        let mut conn = self.conn().await?;
        let row: Option<Row> = conn
            .exec_first(format!("{SUMMARY} WHERE a.name = ?"), (name.as_str(),))
            .await
            .map_err(db_error)?;
        let Some(agent) = row.and_then(summary_from_row) else {
            return Ok(None);
        };
        let rows: Vec<Row> = conn
            .exec(
                "SELECT p.name, t.action, t.from_version, t.to_version
                   FROM task t
                   JOIN agent a ON a.id = t.agent
                   JOIN package p ON p.id = t.package
                  WHERE a.name = ? AND t.approved = 0",
                (name.as_str(),),
            )
            .await
            .map_err(db_error)?;
        let mut pending: Vec<Task> = rows
            .into_iter()
            .filter_map(|row| match task_from_row(&row) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(agent = %name, error = %e, "skipping unusable pending row");
                    None
                }
            })
            .collect();
        pending.sort();
        pending.dedup();
        Ok(Some(AgentDetail { agent, pending }))
    }

    async fn approve(
        &self,
        keys: &[TaskKey],
        scope: &ApprovalScope,
        user: &str,
    ) -> Result<ApprovalOutcome> {
        check_user(user)?;
        if matches!(scope, ApprovalScope::Agents(a) if a.is_empty()) {
            return Err(StoreError::Invalid("approval for no agents".into()));
        }
        let keys: Vec<TaskKey> = keys
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if keys.is_empty() {
            return Ok(ApprovalOutcome {
                approvals_written: 0,
                pending_rows_approved: 0,
            });
        }
        let (scope, user) = (scope.clone(), user.to_owned());
        self.write(move |mut conn| {
            let (keys, scope, user) = (keys.clone(), scope.clone(), user.clone());
            Box::pin(async move {
                let r = approve_once(&mut conn, &keys, &scope, &user).await;
                (conn, r)
            })
        })
        .await
    }

    async fn approvals(&self, page: Page) -> Result<Listing<Approval>> {
        let mut conn = self.conn().await?;
        let total = conn
            .query_first::<u64, _>("SELECT COUNT(*) FROM task WHERE approved = 1")
            .await
            .map_err(db_error)?
            .unwrap_or(0);
        let rows: Vec<Row> = conn
            .query(format!(
                "{APPROVAL} WHERE t.approved = 1 ORDER BY t.id DESC LIMIT {} OFFSET {}",
                page.limit, page.offset
            ))
            .await
            .map_err(db_error)?;
        Ok(Listing {
            rows: rows.iter().filter_map(approval_from_row).collect(),
            total,
        })
    }

    async fn revoke(&self, approval_id: u64, user: &str) -> Result<bool> {
        check_user(user)?;
        let user = user.to_owned();
        self.write(move |mut conn| {
            let user = user.clone();
            Box::pin(async move {
                let r = revoke_once(&mut conn, approval_id, &user).await;
                (conn, r)
            })
        })
        .await
    }

    async fn counts(&self) -> Result<TableCounts> {
        let mut conn = self.conn().await?;
        table_counts(&mut conn).await.map_err(db_error)
    }

    async fn reset(&self, packages_and_agents: bool, user: &str) -> Result<TableCounts> {
        check_user(user)?;
        let user = user.to_owned();
        self.write(move |mut conn| {
            let user = user.clone();
            Box::pin(async move {
                let r = reset_once(&mut conn, packages_and_agents, &user).await;
                (conn, r)
            })
        })
        .await
    }

    async fn audit_log(&self, page: Page) -> Result<Listing<AuditEntry>> {
        let mut conn = self.conn().await?;
        let total = conn
            .query_first::<u64, _>("SELECT COUNT(*) FROM audit")
            .await
            .map_err(db_error)?
            .unwrap_or(0);
        let rows: Vec<(u64, i64, String, String, String)> = conn
            .query(format!(
                "SELECT id, at, user, action, detail FROM audit
                  ORDER BY id DESC LIMIT {} OFFSET {}",
                page.limit, page.offset
            ))
            .await
            .map_err(db_error)?;
        Ok(Listing {
            rows: rows
                .into_iter()
                .map(|(id, at, user, action, detail)| AuditEntry {
                    id,
                    at,
                    user,
                    action,
                    detail,
                })
                .collect(),
            total,
        })
    }
}

/// Why one attempt of a write transaction failed.
enum Failure {
    Sql(mysql_async::Error),
    Store(StoreError),
}

impl From<mysql_async::Error> for Failure {
    fn from(e: mysql_async::Error) -> Self {
        Failure::Sql(e)
    }
}

/// One attempt of a write transaction: takes the connection and gives it back.
type Attempt<T> = Pin<Box<dyn Future<Output = (Conn, Result<T, Failure>)> + Send>>;

impl MysqlStore {
    async fn conn(&self) -> Result<Conn> {
        self.pool.get_conn().await.map_err(db_error)
    }

    /// Runs `attempt` (which opens and commits its own transaction) until it succeeds, fails
    /// for a reason other than a conflict, or has conflicted `max_attempts` times.
    async fn write<T, F>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut(Conn) -> Attempt<T>,
    {
        let mut conn = self.conn().await?;
        // If this future is dropped mid-transaction, the pool resets (rolls back) the
        // connection instead of handing it out with the transaction open.
        conn.reset_connection(true);
        let max = self.options.max_attempts.max(1);
        for n in 1..=max {
            let (back, result) = attempt(conn).await;
            conn = back;
            let failure = match result {
                Ok(value) => {
                    conn.reset_connection(false);
                    return Ok(value);
                }
                Err(f) => f,
            };
            if let Err(e) = conn.query_drop("ROLLBACK").await {
                tracing::debug!("rollback after a failed write: {e}");
            }
            match failure {
                Failure::Sql(e) if is_conflict(&e) && n < max => {
                    tracing::debug!(attempt = n, "write transaction conflicted: {e}");
                    let jitter = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.subsec_nanos() % 20);
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(n) + u64::from(jitter)))
                        .await;
                }
                Failure::Sql(e) if is_conflict(&e) => {
                    return Err(StoreError::RetriesExhausted { attempts: max })
                }
                Failure::Sql(e) => return Err(db_error(e)),
                Failure::Store(e) => return Err(e),
            }
        }
        Err(StoreError::RetriesExhausted { attempts: max })
    }
}

/// `FROM …` and `WHERE …` of the pending rows (`t`) that pass `filter` (case-insensitive
/// substrings). The plan is fixed rather than left to the optimizer, which prefers the
/// low-selectivity `approved` index and then sorts every pending row: a package filter drives
/// from `package`, an agent filter alone from `agent` (by `task (agent, approved)`), no filter
/// reads `task_overview` (migration 0007) in package order without touching a row.
fn pending_source(filter: &PendingFilter) -> (String, String) {
    let mut conds = vec![
        "t.approved = 0".to_owned(),
        "t.agent IS NOT NULL".to_owned(),
    ];
    let substring =
        |column: &str, needle: &str| format!("INSTR(LOWER({column}), LOWER({})) > 0", lit(needle));
    let from = match (&filter.package, &filter.agent) {
        (Some(package), agent) => {
            conds.push(substring("fp.name", package));
            let mut from = "package fp STRAIGHT_JOIN task t FORCE INDEX (task_overview) \
                            ON t.package = fp.id"
                .to_owned();
            if let Some(agent) = agent {
                from.push_str(" JOIN agent fa ON fa.id = t.agent");
                conds.push(substring("fa.name", agent));
            }
            from
        }
        (None, Some(agent)) => {
            conds.push(substring("fa.name", agent));
            "agent fa STRAIGHT_JOIN task t FORCE INDEX (task_agent_approved) ON t.agent = fa.id"
                .to_owned()
        }
        (None, None) => "task t FORCE INDEX (task_overview)".to_owned(),
    };
    (from, conds.join(" AND "))
}

/// Ids of the packages named by `keys` that exist; with `lock`, share-locked until the
/// transaction ends (a concurrent reset cannot delete them under an approval).
async fn package_ids(
    conn: &mut Conn,
    keys: &[TaskKey],
    lock: bool,
) -> mysql_async::Result<HashMap<String, u64>> {
    let lock = if lock { " LOCK IN SHARE MODE" } else { "" };
    let names: BTreeSet<&str> = keys.iter().map(|k| k.package.as_str()).collect();
    let names: Vec<&str> = names.into_iter().collect();
    let mut ids = HashMap::new();
    for chunk in names.chunks(BATCH) {
        let rows: Vec<(u64, String)> = conn
            .query(format!(
                "SELECT id, name FROM package WHERE name IN {}{lock}",
                tuple(chunk.iter().copied())
            ))
            .await?;
        ids.extend(rows.into_iter().map(|(id, name)| (name, id)));
    }
    Ok(ids)
}

/// `task` rows of a key: its package, action and target version (NULL-safe).
fn key_condition(package: u64, key: &TaskKey) -> String {
    format!(
        "(t.package = {package} AND t.action = {} AND t.to_version <=> {})",
        lit(key.action.as_str()),
        lit(key.to_version.as_ref().map(Version::as_str))
    )
}

async fn approve_once(
    conn: &mut Conn,
    keys: &[TaskKey],
    scope: &ApprovalScope,
    user: &str,
) -> Result<ApprovalOutcome, Failure> {
    conn.query_drop("START TRANSACTION").await?;
    let now = unix_now();
    // Approving a package no agent has reported yet is allowed (it covers later reports).
    let mut packages = package_ids(conn, keys, true).await?;
    let missing: Vec<&str> = keys
        .iter()
        .map(|k| k.package.as_str())
        .filter(|n| !packages.contains_key(*n))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !missing.is_empty() {
        for chunk in missing.chunks(BATCH) {
            let values: Vec<String> = chunk.iter().map(|n| format!("({})", lit(*n))).collect();
            conn.query_drop(format!(
                "INSERT INTO package (name) VALUES {} ON DUPLICATE KEY UPDATE id = id",
                values.join(", ")
            ))
            .await?;
        }
        packages = package_ids(conn, keys, true).await?;
    }
    // `None`: every agent (agent NULL).
    let (targets, target_label): (Vec<Option<u64>>, String) = match scope {
        ApprovalScope::AllAgents => (vec![None], "all agents".to_owned()),
        ApprovalScope::Agents(names) => {
            let names: BTreeSet<&str> = names.iter().map(AgentName::as_str).collect();
            let mut found: HashMap<String, u64> = HashMap::new();
            let list: Vec<&str> = names.iter().copied().collect();
            for chunk in list.chunks(BATCH) {
                let rows: Vec<(u64, String)> = conn
                    .query(format!(
                        "SELECT id, name FROM agent WHERE name IN {} LOCK IN SHARE MODE",
                        tuple(chunk.iter().copied())
                    ))
                    .await?;
                found.extend(rows.into_iter().map(|(id, name)| (name, id)));
            }
            if let Some(unknown) = names.iter().find(|n| !found.contains_key(**n)) {
                return Err(Failure::Store(StoreError::Invalid(format!(
                    "unknown agent {unknown}"
                ))));
            }
            let label = describe_list(&list, "agent");
            (names.iter().map(|n| Some(found[*n])).collect(), label)
        }
    };
    let agent_ids: Vec<u64> = targets.iter().flatten().copied().collect();
    let mut outcome = ApprovalOutcome {
        approvals_written: 0,
        pending_rows_approved: 0,
    };
    let mut described = Vec::new();
    for key in keys {
        let Some(&package) = packages.get(key.package.as_str()) else {
            return Err(Failure::Store(StoreError::Database(format!(
                "package {} vanished during the approval",
                key.package
            ))));
        };
        let this_key = key_condition(package, key);
        // The pending rows this approval covers.
        for chunk in chunks_or_all(&agent_ids) {
            let agents = match chunk {
                Some(ids) => format!("AND t.agent IN {}", tuple(ids.iter().copied())),
                None => String::new(),
            };
            conn.query_drop(format!(
                "DELETE t FROM task t WHERE t.approved = 0 AND {this_key} {agents}"
            ))
            .await?;
            outcome.pending_rows_approved += conn.affected_rows();
        }
        // Approval rows already in force for exactly this key are not written twice.
        let mut existing: BTreeSet<Option<u64>> = BTreeSet::new();
        for chunk in chunks_or_all(&agent_ids) {
            let agents = match chunk {
                Some(ids) => format!("t.agent IN {}", tuple(ids.iter().copied())),
                None => "t.agent IS NULL".to_owned(),
            };
            let found: Vec<Option<u64>> = conn
                .query(format!(
                    "SELECT t.agent FROM task t
                      WHERE t.approved = 1 AND t.from_version IS NULL AND {this_key} AND {agents}"
                ))
                .await?;
            existing.extend(found);
        }
        let new: Vec<Option<u64>> = targets
            .iter()
            .filter(|t| !existing.contains(t))
            .copied()
            .collect();
        for chunk in new.chunks(BATCH) {
            let rows: Vec<String> = chunk
                .iter()
                .map(|agent| {
                    format!(
                        "({}, {package}, NULL, {}, {}, 1)",
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
            // Every id a statement generates is at least the first one it reports.
            conn.query_drop(format!(
                "INSERT INTO approval (task, approved_by, approved_at)
                 SELECT t.id, {}, {now} FROM task t
                  WHERE t.id >= {first} AND t.approved = 1 AND t.from_version IS NULL
                    AND {this_key} AND {agents}
                 ON DUPLICATE KEY UPDATE task = approval.task",
                lit(user)
            ))
            .await?;
            outcome.approvals_written += chunk.len() as u64;
        }
        described.push(describe_key(key));
    }
    if let Some(detail) = describe_approve(&described, &target_label, &outcome) {
        audit(conn, user, "approve", &detail, now).await?;
    }
    conn.query_drop("COMMIT").await?;
    Ok(outcome)
}

/// `Some(chunk)` per [`BATCH`] of agent ids, or one `None` for "every agent".
fn chunks_or_all(agent_ids: &[u64]) -> Vec<Option<&[u64]>> {
    if agent_ids.is_empty() {
        vec![None]
    } else {
        agent_ids.chunks(BATCH).map(Some).collect()
    }
}

async fn revoke_once(conn: &mut Conn, id: u64, user: &str) -> Result<bool, Failure> {
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
    conn.query_drop("COMMIT").await?;
    Ok(true)
}

async fn reset_once(conn: &mut Conn, everything: bool, user: &str) -> Result<TableCounts, Failure> {
    conn.query_drop("START TRANSACTION").await?;
    let before = table_counts(conn).await?;
    conn.query_drop("DELETE FROM task").await?;
    conn.query_drop("DELETE FROM approval").await?;
    let deleted = if everything {
        conn.query_drop("DELETE FROM agent_report").await?;
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

async fn table_counts(conn: &mut Conn) -> mysql_async::Result<TableCounts> {
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

async fn audit(
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

fn summary_from_row(row: Row) -> Option<AgentSummary> {
    let name: Option<String> = row.get(0);
    let name = match name.map(AgentName::new) {
        Some(Ok(n)) => n,
        other => {
            tracing::warn!(?other, "skipping agent with an unusable name");
            return None;
        }
    };
    Some(AgentSummary {
        name,
        ctime: row.get(1).unwrap_or(0),
        mtime: row.get(2).unwrap_or(0),
        last_seen: row.get::<Option<i64>, _>(3).flatten(),
        pending_tasks: row.get(4).unwrap_or(0),
        pending_packages: row.get(5).unwrap_or(0),
    })
}

fn approval_from_row(row: &Row) -> Option<Approval> {
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

fn task_from_row(row: &Row) -> Result<Task, String> {
    let text = |i: usize| row.get::<Option<String>, _>(i).flatten();
    task_from_text(text(0), text(1).as_deref(), text(2), text(3))
}
