//! The UI's side of the SQLite back end: the pending overview (see `overview`), agent listings
//! (see `agents`), runs and failing packages (see `runs`), host facts (see `host_facts`),
//! approvals, revocation, reset and the audit log.
//! Approvals, revocations and resets bump the approval generation in their transaction (see
//! `AgentLoop::approval_token`).

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use masif_proto::{AgentName, Task};
use rusqlite::{OptionalExtension, Transaction};

use super::agents::{self, summary_from_row, SUMMARY_GROUP, SUMMARY_SELECT};
use super::rows::{self, to_i64, to_u64, RawTask};
use super::{host_facts, overview, pending_counts, runs, summary, SqliteStore};
use crate::audit::{
    check_user, cut, describe_approval, describe_approve, describe_list, describe_task, tag_label,
    MAX_DETAIL_CHARS,
};
use crate::backoff::Failure;
use crate::clock::unix_now;
use crate::summary::Deltas;
use crate::{
    Admin, AgentCounts, AgentDetail, AgentFilter, AgentSummary, Approval, ApprovalOutcome,
    ApprovalProgress, ApprovalScope, ApprovalTask, AuditEntry, FailingPackage, Listing, Page,
    PendingFilter, PendingOverview, Result, RunRecord, StoreError, SummaryCheck, TableCounts,
    TaskKey,
};

#[async_trait]
impl Admin for SqliteStore {
    async fn pending_overview(
        &self,
        filter: &PendingFilter,
        page: Page,
    ) -> Result<PendingOverview> {
        let filter = filter.clone();
        self.read("reading the pending overview", move |tx| {
            overview::pending_overview(tx, &filter, page)
        })
        .await
    }

    async fn needs_of(&self, keys: &[TaskKey], scope: &ApprovalScope) -> Result<Vec<TaskKey>> {
        let (keys, scope) = (keys.to_vec(), scope.clone());
        self.read("reading what a selection needs", move |tx| {
            host_facts::needs_of(tx, &keys, &scope)
        })
        .await
    }

    async fn agents_awaiting(&self, keys: &[TaskKey], page: Page) -> Result<Listing<AgentSummary>> {
        let keys = keys.to_vec();
        self.read("finding the agents awaiting a selection", move |tx| {
            let mut named = BTreeMap::new();
            let mut stmt = tx.prepare_cached(
                "SELECT DISTINCT a.id, a.name FROM task t JOIN package p ON p.id = t.package
                   JOIN agent a ON a.id = t.agent
                  WHERE t.approved = 0 AND p.name = ?1 AND t.action = ?2 AND t.to_version IS ?3",
            )?;
            for key in &keys {
                let found = stmt.query_map(key_params(key), |r| {
                    Ok((r.get::<_, String>(1)?, r.get::<_, i64>(0)?))
                })?;
                for agent in found {
                    let (name, id) = agent?;
                    named.insert(name, id);
                }
            }
            let total = named.len() as u64;
            let offset = usize::try_from(page.offset).unwrap_or(usize::MAX);
            let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
            let mut agents = Vec::new();
            let mut summary =
                tx.prepare_cached(&format!("{SUMMARY_SELECT} WHERE a.id = ?1 {SUMMARY_GROUP}"))?;
            for id in named.into_values().skip(offset).take(limit) {
                if let Some(agent) = summary.query_row([id], summary_from_row).optional()? {
                    agents.push(agent?);
                }
            }
            Ok(Listing {
                rows: agents,
                total,
            })
        })
        .await
    }

    async fn agents(&self, filter: &AgentFilter, page: Page) -> Result<Listing<AgentSummary>> {
        let filter = filter.clone();
        self.read("listing agents", move |tx| {
            agents::agents(tx, &filter, page)
        })
        .await
    }

    async fn agent_counts(&self, offline_before: i64) -> Result<AgentCounts> {
        self.read("counting agents", move |tx| {
            Ok(agents::agent_counts(tx, offline_before)?)
        })
        .await
    }

    async fn pending_by_action(&self) -> Result<Vec<(masif_proto::Action, u64)>> {
        self.read("counting pending tasks by action", |tx| {
            Ok(pending_counts::pending_by_action(tx)?)
        })
        .await
    }

    async fn agent_runs(&self, name: &AgentName, page: Page) -> Result<Listing<RunRecord>> {
        let name = name.as_str().to_owned();
        self.read("reading an agent's runs", move |tx| {
            runs::agent_runs(tx, &name, page)
        })
        .await
    }

    async fn failing_packages(&self) -> Result<Vec<FailingPackage>> {
        self.read("reading the failing packages", runs::failing_packages)
            .await
    }

    async fn agent_detail(&self, name: &AgentName) -> Result<Option<AgentDetail>> {
        let name = name.as_str().to_owned();
        self.read("reading an agent", move |tx| {
            let Some(agent_id) = rows::agent_id(tx, &name)? else {
                return Ok(None);
            };
            let agent = tx
                .prepare_cached(&format!("{SUMMARY_SELECT} WHERE a.id = ?1 {SUMMARY_GROUP}"))?
                .query_row([agent_id], summary_from_row)??;
            let mut stmt = tx.prepare_cached(
                "SELECT p.name, t.action, t.from_version, t.to_version
                   FROM task t LEFT JOIN package p ON p.id = t.package
                  WHERE t.agent = ?1 AND t.approved = 0",
            )?;
            let mut pending: Vec<Task> = Vec::new();
            for raw in stmt.query_map([agent_id], |r| RawTask::from_row(r, 0))? {
                match raw?.to_task() {
                    Ok(task) => pending.push(task),
                    Err(e) => tracing::warn!(agent = %name, error = %e, "skipping pending row"),
                }
            }
            pending.sort();
            let (facts, task_facts) = host_facts::of_agent(tx, agent_id)?;
            Ok(Some(AgentDetail {
                agent,
                pending,
                facts,
                task_facts,
            }))
        })
        .await
    }

    async fn approve_tasks_tracked(
        &self,
        tasks: &[ApprovalTask],
        scope: &ApprovalScope,
        user: &str,
        progress: &ApprovalProgress,
    ) -> Result<ApprovalOutcome> {
        // One transaction: the one writer is taken for the whole approval.
        let outcome = self.approve_at_once(tasks, scope, user).await;
        if let Ok(outcome) = &outcome {
            progress.add(0, outcome);
        }
        progress.finish();
        outcome
    }

    async fn approvals(&self, page: Page) -> Result<Listing<Approval>> {
        self.read("listing approvals", move |tx| {
            let total: i64 =
                tx.query_row("SELECT COUNT(*) FROM task WHERE approved = 1", [], |r| {
                    r.get(0)
                })?;
            let mut stmt = tx.prepare_cached(
                "SELECT t.id, a.name, p.name, t.action, t.from_version, t.to_version,
                        ap.approved_by, ap.approved_at
                   FROM task t
                   LEFT JOIN agent a ON a.id = t.agent
                   LEFT JOIN package p ON p.id = t.package
                   LEFT JOIN approval ap ON ap.task = t.id
                  WHERE t.approved = 1
                  ORDER BY t.id DESC LIMIT ?1 OFFSET ?2",
            )?;
            let mut rows = Vec::new();
            let mut query = stmt.query((to_i64(page.limit), to_i64(page.offset)))?;
            while let Some(row) = query.next()? {
                rows.push(rows::approval_from_row(row)?);
            }
            Ok(Listing {
                rows,
                total: to_u64(total),
            })
        })
        .await
    }

    async fn revoke(&self, approval_id: u64, user: &str) -> Result<bool> {
        check_user(user)?;
        let user = user.to_owned();
        let Ok(id) = i64::try_from(approval_id) else {
            return Ok(false);
        };
        self.write("revoking an approval", move |tx| {
            let described = tx
                .query_row(
                    "SELECT t.id, a.name, p.name, t.action, t.from_version, t.to_version,
                            NULL, NULL
                       FROM task t
                       LEFT JOIN agent a ON a.id = t.agent
                       LEFT JOIN package p ON p.id = t.package
                      WHERE t.id = ?1 AND t.approved = 1",
                    [id],
                    |row| Ok(rows::approval_from_row(row)),
                )
                .optional()?;
            let Some(approval) = described else {
                return Ok(false);
            };
            let approval = approval?;
            tx.execute("DELETE FROM task WHERE id = ?1", [id])?;
            tx.execute("DELETE FROM approval WHERE task = ?1", [id])?;
            audit(
                tx,
                &user,
                "revoke",
                &format!("revoked approval {id}: {}", describe_approval(&approval)),
            )?;
            bump_generation(tx)?;
            Ok(true)
        })
        .await
    }

    async fn counts(&self) -> Result<TableCounts> {
        self.read("counting rows", |tx| Ok(table_counts(tx)?)).await
    }

    async fn reset(&self, packages_and_agents: bool, user: &str) -> Result<TableCounts> {
        check_user(user)?;
        let user = user.to_owned();
        self.write("resetting", move |tx| {
            let before = table_counts(tx)?;
            tx.execute("DELETE FROM task", [])?;
            tx.execute("DELETE FROM approval", [])?;
            tx.execute("DELETE FROM task_fact", [])?;
            tx.execute("DELETE FROM pending_summary", [])?;
            tx.execute("DELETE FROM pending_package_summary", [])?;
            let deleted = if packages_and_agents {
                tx.execute("DELETE FROM agent_report", [])?;
                tx.execute("DELETE FROM agent_facts", [])?;
                tx.execute("DELETE FROM agent_held", [])?;
                tx.execute("DELETE FROM run_latest", [])?;
                tx.execute("DELETE FROM run", [])?;
                tx.execute("DELETE FROM agent_tag", [])?;
                tx.execute("DELETE FROM tag_lease", [])?;
                tx.execute("DELETE FROM package", [])?;
                tx.execute("DELETE FROM agent", [])?;
                before
            } else {
                // The agents' report state stays, as on MySQL: a report whose pending rows were
                // deleted differs from the stored row count and writes them again, and one
                // with nothing pending has nothing to write.
                TableCounts {
                    tasks: before.tasks,
                    ..TableCounts::default()
                }
            };
            audit(
                tx,
                &user,
                "reset",
                &format!(
                    "deleted {} tasks, {} packages, {} agents",
                    deleted.tasks, deleted.packages, deleted.agents
                ),
            )?;
            // Tags and leases may go too.
            bump_gate_generation(tx)?;
            Ok(deleted)
        })
        .await
    }

    async fn check_pending_summary(&self, after: u64) -> Result<SummaryCheck> {
        self.write("checking the pending summary", move |tx| {
            let (next, corrected) = super::summary::check_step(tx, after)?;
            Ok(SummaryCheck { next, corrected })
        })
        .await
    }

    async fn audit_log(&self, page: Page) -> Result<Listing<AuditEntry>> {
        self.read("reading the audit log", move |tx| {
            let total: i64 = tx.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))?;
            let mut stmt = tx.prepare_cached(
                "SELECT id, at, user, action, detail FROM audit
                  ORDER BY id DESC LIMIT ?1 OFFSET ?2",
            )?;
            let rows = stmt
                .query_map((to_i64(page.limit), to_i64(page.offset)), |r| {
                    Ok(AuditEntry {
                        id: to_u64(r.get(0)?),
                        at: r.get(1)?,
                        user: r.get(2)?,
                        action: r.get(3)?,
                        detail: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Listing {
                rows,
                total: to_u64(total),
            })
        })
        .await
    }
}

fn approve(
    tx: &Transaction<'_>,
    tasks: &[ApprovalTask],
    scope: &ApprovalScope,
    user: &str,
) -> Result<ApprovalOutcome, Failure> {
    let outcome = approve_in(tx, tasks, scope, user, unix_now())?;
    bump_generation(tx)?;
    Ok(outcome)
}

/// The writes of an approval of `tasks` (already distinct and sorted) for `scope` at `now`,
/// audited, inside the caller's transaction (which bumps the generation).
pub(super) fn approve_in(
    tx: &Transaction<'_>,
    tasks: &[ApprovalTask],
    scope: &ApprovalScope,
    user: &str,
    now: i64,
) -> Result<ApprovalOutcome, Failure> {
    // `None` = every agent (agent NULL in the approval row).
    let (targets, target_label): (Vec<Option<i64>>, String) = match scope {
        ApprovalScope::AllAgents => (vec![None], "all agents".to_owned()),
        ApprovalScope::Agents(agents) => {
            let names: BTreeSet<&str> = agents.iter().map(AgentName::as_str).collect();
            let ids = names
                .iter()
                .map(|name| match rows::agent_id(tx, name)? {
                    Some(id) => Ok(Some(id)),
                    None => Err(Failure::Fatal(StoreError::Invalid(format!(
                        "unknown agent {name}"
                    )))),
                })
                .collect::<Result<_, Failure>>()?;
            let names: Vec<&str> = names.into_iter().collect();
            (ids, describe_list(&names, "agent"))
        }
        ApprovalScope::Tag(tag) => {
            let ids = rows::tagged_agents(tx, tag.as_str())?;
            if ids.is_empty() {
                return Err(Failure::Fatal(StoreError::Invalid(format!(
                    "no agent carries tag {tag}"
                ))));
            }
            let label = tag_label(tag, ids.len());
            (ids.into_iter().map(Some).collect(), label)
        }
    };
    let mut outcome = ApprovalOutcome {
        approvals_written: 0,
        pending_rows_approved: 0,
    };
    let mut described = Vec::new();
    let mut deltas = Deltas::default();
    for task in tasks {
        let key = &task.key;
        let package_id = rows::ensure_package(tx, key.package.as_str())?;
        let to_version = key.to_version.as_ref().map(|v| v.as_str());
        let from_version = task.from_version.as_ref().map(|v| v.as_str());
        for &agent_id in &targets {
            // A from-version of NULL approves the pending rows from any version.
            let approved = summary::delete_pending(
                tx,
                package_id,
                key.action.as_str(),
                to_version,
                agent_id,
                from_version,
                &mut deltas,
            )?;
            outcome.pending_rows_approved += approved;
            let existing: Option<i64> = tx
                .prepare_cached(
                    "SELECT id FROM task WHERE approved = 1 AND agent IS ?1 AND package = ?2
                        AND action = ?3 AND from_version IS ?5 AND to_version IS ?4",
                )?
                .query_row(
                    (
                        agent_id,
                        package_id,
                        key.action.as_str(),
                        to_version,
                        from_version,
                    ),
                    |r| r.get(0),
                )
                .optional()?;
            if existing.is_some() {
                continue;
            }
            tx.prepare_cached(
                "INSERT INTO task (agent, package, from_version, to_version, action, approved)
                 VALUES (?1, ?2, ?5, ?3, ?4, 1)",
            )?
            .execute((
                agent_id,
                package_id,
                to_version,
                key.action.as_str(),
                from_version,
            ))?;
            let task_id = tx.last_insert_rowid();
            tx.prepare_cached(
                "INSERT INTO approval (task, approved_by, approved_at) VALUES (?1, ?2, ?3)",
            )?
            .execute((task_id, user, now))?;
            outcome.approvals_written += 1;
        }
        described.push(describe_task(task));
    }
    summary::apply(tx, &deltas)?;
    if let Some(detail) = describe_approve(&described, &target_label, &outcome) {
        audit_at(tx, user, "approve", &detail, now)?;
    }
    Ok(outcome)
}

fn key_params(key: &TaskKey) -> (&str, &str, Option<&str>) {
    (
        key.package.as_str(),
        key.action.as_str(),
        key.to_version.as_ref().map(|v| v.as_str()),
    )
}

fn table_counts(tx: &Transaction<'_>) -> rusqlite::Result<TableCounts> {
    tx.query_row(
        "SELECT (SELECT COUNT(*) FROM task), (SELECT COUNT(*) FROM package),
                (SELECT COUNT(*) FROM agent)",
        [],
        |r| {
            Ok(TableCounts {
                tasks: to_u64(r.get(0)?),
                packages: to_u64(r.get(1)?),
                agents: to_u64(r.get(2)?),
            })
        },
    )
}

/// Bumps the approval generation (see `AgentLoop::approval_token`), recreating its row if it
/// is gone.
pub(super) fn bump_generation(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO approval_generation (id, generation) VALUES (1, 1)
         ON CONFLICT (id) DO UPDATE SET generation = generation + 1",
    )?
    .execute([])?;
    Ok(())
}

/// Bumps the approval generation and the gate's counter with it, for a change that may alter
/// the roll-out gate's answer to any held report (see [`ApprovalToken::gate`]).
///
/// [`ApprovalToken::gate`]: crate::ApprovalToken::gate
pub(super) fn bump_gate_generation(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO approval_generation (id, generation, gate) VALUES (1, 1, 1)
         ON CONFLICT (id) DO UPDATE SET generation = generation + 1, gate = gate + 1",
    )?
    .execute([])?;
    Ok(())
}

fn audit(tx: &Transaction<'_>, user: &str, action: &str, detail: &str) -> rusqlite::Result<()> {
    audit_at(tx, user, action, detail, unix_now())
}

/// Writes an audit entry at `at`.
pub(super) fn audit_at(
    tx: &Transaction<'_>,
    user: &str,
    action: &str,
    detail: &str,
    at: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT INTO audit (at, user, action, detail) VALUES (?1, ?2, ?3, ?4)")?
        .execute((at, user, action, cut(detail, MAX_DETAIL_CHARS)))?;
    Ok(())
}

impl SqliteStore {
    /// An approval in one transaction.
    async fn approve_at_once(
        &self,
        tasks: &[ApprovalTask],
        scope: &ApprovalScope,
        user: &str,
    ) -> Result<ApprovalOutcome> {
        let keys = ApprovalTask::checked(tasks, scope, user)?;
        if keys.is_empty() {
            return Ok(ApprovalOutcome {
                approvals_written: 0,
                pending_rows_approved: 0,
            });
        }
        let scope = scope.clone();
        let user = user.to_owned();
        self.write("approving", move |tx| approve(tx, &keys, &scope, &user))
            .await
    }
}
