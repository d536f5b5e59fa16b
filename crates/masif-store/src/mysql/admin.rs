//! The `Admin` half of the MySQL back end: the UI's overviews (pending updates grouped by
//! package, agents, runs, failing packages, approvals, audit log) and its audited writes
//! (approve, revoke, reset).
//!
//! Reads are single statements outside explicit transactions; names, filters and keys are
//! bound as `?` parameters (ids read from the database go into `IN` lists as numbers). The
//! pending page is in `overview`, agent listings in `agents`, runs in `runs`. Writes (in
//! `changes`) run in one transaction each, on a connection marked for reset (a dropped future
//! is rolled back by the pool), and are retried from the start on a deadlock or lock wait
//! timeout (1213/1205) or a failed node (on the node the store moves to, see `nodes`), like
//! reports. A read that meets a failed node is not retried, but has the node checked (see
//! [`MysqlStore::read`]). Approvals, revocations and resets bump the approval generation in
//! their transaction (see `AgentLoop::approval_token`).

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use masif_proto::{AgentName, Task, Version};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row};

use super::agents::{self, summary_from_row, SUMMARY};
use super::approval_chunks::{Part, Written};
use super::changes::{
    approval_from_row, package_ids, reset_once, revoke_once, table_counts, APPROVAL, BATCH,
};
use super::sql::{attempt_failed, doing, node_failed, store_error_is_node_failure, tuple};
use super::{approval_chunks, host_facts, overview, pending_counts, runs, MysqlStore};
use crate::audit::check_user;
use crate::backoff::{Backoff, Failure};
use crate::clock::unix_now;
use crate::stored::task_from_text;
use crate::{
    Admin, AgentCounts, AgentDetail, AgentFilter, AgentSummary, Approval, ApprovalOutcome,
    ApprovalProgress, ApprovalScope, ApprovalTask, AuditEntry, FailingPackage, Listing, Page,
    PendingFilter, PendingOverview, Result, RunRecord, SummaryCheck, TableCounts, TaskKey,
    APPROVAL_CHUNK,
};
use std::sync::Arc;

#[async_trait]
impl Admin for MysqlStore {
    async fn pending_overview(
        &self,
        filter: &PendingFilter,
        page: Page,
    ) -> Result<PendingOverview> {
        self.read(async {
            let mut conn = self.conn().await?;
            overview::pending_overview(&mut conn, filter, page).await
        })
        .await
    }

    async fn needs_of(&self, keys: &[TaskKey], scope: &ApprovalScope) -> Result<Vec<TaskKey>> {
        self.read(async {
            let mut conn = self.conn().await?;
            host_facts::needs_of(&mut conn, keys, scope).await
        })
        .await
    }

    async fn agents_awaiting(&self, keys: &[TaskKey], page: Page) -> Result<Listing<AgentSummary>> {
        self.read(async {
            let mut conn = self.conn().await?;
            let packages = package_ids(&mut conn, keys, false)
                .await
                .map_err(doing("reading the ids of packages"))?;
            // Per key that exists: package, action, target version (NULL-safe).
            let rows: Vec<(u64, &str, Option<&str>)> = keys
                .iter()
                .filter_map(|k| {
                    let id = *packages.get(k.package.as_str())?;
                    Some((
                        id,
                        k.action.as_str(),
                        k.to_version.as_ref().map(Version::as_str),
                    ))
                })
                .collect();
            let named = overview::agents_awaiting_rows(
                &mut conn,
                &rows,
                "finding the agents awaiting a selection",
            )
            .await?;
            let total = named.len() as u64;
            let offset = usize::try_from(page.offset).unwrap_or(usize::MAX);
            let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
            let ids: Vec<u64> = named.into_values().skip(offset).take(limit).collect();
            let mut agents = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(BATCH) {
                let rows: Vec<Row> = conn
                    .query(format!(
                        "{SUMMARY} WHERE a.id IN {}",
                        tuple(chunk.iter().copied())
                    ))
                    .await
                    .map_err(doing("reading agents"))?;
                agents.extend(rows.into_iter().filter_map(summary_from_row));
            }
            agents.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(Listing {
                rows: agents,
                total,
            })
        })
        .await
    }

    async fn agents(&self, filter: &AgentFilter, page: Page) -> Result<Listing<AgentSummary>> {
        self.read(async {
            let mut conn = self.conn().await?;
            agents::agents(&mut conn, filter, page).await
        })
        .await
    }

    async fn agent_counts(&self, offline_before: i64) -> Result<AgentCounts> {
        self.read(async {
            let mut conn = self.conn().await?;
            agents::agent_counts(&mut conn, offline_before).await
        })
        .await
    }

    async fn pending_by_action(&self) -> Result<Vec<(masif_proto::Action, u64)>> {
        self.read(async {
            let mut conn = self.conn().await?;
            pending_counts::pending_by_action(&mut conn).await
        })
        .await
    }

    async fn agent_runs(&self, name: &AgentName, page: Page) -> Result<Listing<RunRecord>> {
        self.read(async {
            let mut conn = self.conn().await?;
            runs::agent_runs(&mut conn, name, page).await
        })
        .await
    }

    async fn failing_packages(&self) -> Result<Vec<FailingPackage>> {
        self.read(async {
            let mut conn = self.conn().await?;
            runs::failing_packages(&mut conn).await
        })
        .await
    }

    async fn agent_detail(&self, name: &AgentName) -> Result<Option<AgentDetail>> {
        self.read(async {
            let mut conn = self.conn().await?;
            let row: Option<Row> = conn
                .exec_first(format!("{SUMMARY} WHERE a.name = ?"), (name.as_str(),))
                .await
                .map_err(doing("reading an agent"))?;
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
                .map_err(doing("reading an agent's pending tasks"))?;
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
            let (facts, task_facts) = host_facts::of_agent(&mut conn, name).await?;
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
        let outcome = self.approve_in_chunks(tasks, scope, user, progress).await;
        progress.finish();
        outcome
    }

    async fn approvals(&self, page: Page) -> Result<Listing<Approval>> {
        self.read(async {
            let mut conn = self.conn().await?;
            let total = conn
                .query_first::<u64, _>("SELECT COUNT(*) FROM task WHERE approved = 1")
                .await
                .map_err(doing("counting approvals"))?
                .unwrap_or(0);
            let rows: Vec<Row> = conn
                .query(format!(
                    "{APPROVAL} WHERE t.approved = 1 ORDER BY t.id DESC LIMIT {} OFFSET {}",
                    page.limit, page.offset
                ))
                .await
                .map_err(doing("listing approvals"))?;
            Ok(Listing {
                rows: rows.iter().filter_map(approval_from_row).collect(),
                total,
            })
        })
        .await
    }

    async fn revoke(&self, approval_id: u64, user: &str) -> Result<bool> {
        check_user(user)?;
        let user = user.to_owned();
        self.write("revoking an approval", move |mut conn| {
            let user = user.clone();
            Box::pin(async move {
                let r = revoke_once(&mut conn, approval_id, &user).await;
                (conn, r)
            })
        })
        .await
    }

    async fn counts(&self) -> Result<TableCounts> {
        self.read(async {
            let mut conn = self.conn().await?;
            table_counts(&mut conn)
                .await
                .map_err(doing("counting rows"))
        })
        .await
    }

    async fn reset(&self, packages_and_agents: bool, user: &str) -> Result<TableCounts> {
        check_user(user)?;
        let user = user.to_owned();
        self.write("resetting", move |mut conn| {
            let user = user.clone();
            Box::pin(async move {
                let r = reset_once(&mut conn, packages_and_agents, &user).await;
                (conn, r)
            })
        })
        .await
    }

    async fn check_pending_summary(&self, after: u64) -> Result<SummaryCheck> {
        self.write("checking the pending summary", move |mut conn| {
            Box::pin(async move {
                let r = super::summary::check_step(&mut conn, after)
                    .await
                    .map(|(next, corrected)| SummaryCheck { next, corrected })
                    .map_err(Failure::from);
                (conn, r)
            })
        })
        .await
    }

    async fn audit_log(&self, page: Page) -> Result<Listing<AuditEntry>> {
        self.read(async {
            let mut conn = self.conn().await?;
            let total = conn
                .query_first::<u64, _>("SELECT COUNT(*) FROM audit")
                .await
                .map_err(doing("counting audit entries"))?
                .unwrap_or(0);
            let rows: Vec<(u64, i64, String, String, String)> = conn
                .query(format!(
                    "SELECT id, at, user, action, detail FROM audit
                      ORDER BY id DESC LIMIT {} OFFSET {}",
                    page.limit, page.offset
                ))
                .await
                .map_err(doing("reading the audit log"))?;
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
        })
        .await
    }
}

/// One attempt of a write transaction: takes the connection and gives it back.
type Attempt<T> = Pin<Box<dyn Future<Output = (Conn, Result<T, Failure>)> + Send>>;

impl MysqlStore {
    /// A connection of the node in use (see `nodes`: one that cannot be had moves the store to
    /// the next working address).
    pub(super) async fn conn(&self) -> Result<Conn> {
        self.nodes
            .get_conn()
            .await
            .map_err(doing("getting a connection"))
    }

    /// `work`'s outcome; a node failure in it (which is not retried: reads are shown to a
    /// person who can reload) has the node in use checked in the background, so the next
    /// read goes to a node that works.
    pub(super) async fn read<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        let outcome = work.await;
        if let Err(e) = &outcome {
            if store_error_is_node_failure(e) {
                self.nodes.check_later(e);
            }
        }
        outcome
    }

    /// Runs `attempt` (which opens and commits its own transaction) until it succeeds, fails
    /// for a reason other than a conflict or a node failure, or has failed so `max_attempts`
    /// times (see [`MysqlStore::retry_policy`]). Each attempt takes a connection of the node
    /// in use, so after a node failure (checked before the pause, see `nodes`) the next one
    /// runs on the node the store moved to. `doing` says what the transaction is for.
    pub(super) async fn write<T, F>(&self, doing: &'static str, mut attempt: F) -> Result<T>
    where
        F: FnMut(Conn) -> Attempt<T>,
    {
        let mut backoff = Backoff::new(self.retry_policy());
        loop {
            let failure = match self.conn().await {
                Err(e) => attempt_failed(e),
                Ok(mut conn) => {
                    // If this future is dropped mid-transaction, the pool resets (rolls back)
                    // the connection instead of handing it out with the transaction open; the
                    // reset also puts a lifted plan guard back (the session setup sets it).
                    conn.reset_connection(true);
                    let lifted = self.lift_plan_guard(&mut conn).await;
                    let (mut conn, result) = match lifted {
                        Ok(()) => attempt(conn).await,
                        Err(e) => (conn, Err(Failure::from(e))),
                    };
                    match result {
                        Ok(value) => {
                            if self.restore_plan_guard(&mut conn).await {
                                conn.reset_connection(false);
                            }
                            return Ok(value);
                        }
                        Err(f) => {
                            let f = f.while_doing(doing);
                            if !node_failed(&f) {
                                match conn.query_drop("ROLLBACK").await {
                                    Ok(()) if self.restore_plan_guard(&mut conn).await => {
                                        conn.reset_connection(false)
                                    }
                                    Ok(()) => {}
                                    Err(e) => tracing::debug!("rollback after a failed write: {e}"),
                                }
                            }
                            f
                        }
                    }
                }
            };
            if let Failure::Conflict(_) = &failure {
                self.stats.count_conflict();
            }
            if node_failed(&failure) {
                self.nodes
                    .check(tokio::time::Instant::now(), failure.error())
                    .await;
            }
            tokio::time::sleep(backoff.after(failure, doing)?).await;
        }
    }
}

impl MysqlStore {
    /// Turns the plan guard (`max_join_size`, see [`super::MysqlOptions`]) off on `conn` for a
    /// write: approving for a whole fleet reads every pending row by design, and a refused
    /// statement would only fail the transaction. Nothing to do without a guard.
    async fn lift_plan_guard(&self, conn: &mut Conn) -> Result<(), mysql_async::Error> {
        if self.options.max_join_size.is_none() {
            return Ok(());
        }
        conn.query_drop("SET SESSION sql_big_selects = 1").await
    }

    /// Puts the plan guard back on `conn` after a write; `false` if that failed (the caller
    /// then leaves the connection marked for reset, whose session setup sets it again).
    async fn restore_plan_guard(&self, conn: &mut Conn) -> bool {
        let Some(size) = self.options.max_join_size else {
            return true;
        };
        match conn
            .query_drop(format!("SET SESSION max_join_size = {size}"))
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!("setting max_join_size again after a write: {e}");
                false
            }
        }
    }
}

fn task_from_row(row: &Row) -> Result<Task, String> {
    let text = |i: usize| row.get::<Option<String>, _>(i).flatten();
    task_from_text(text(0), text(1).as_deref(), text(2), text(3))
}

impl MysqlStore {
    /// [`Admin::approve_tasks_tracked`]: the plan, then its chunks, each retried on its own.
    async fn approve_in_chunks(
        &self,
        tasks: &[ApprovalTask],
        scope: &ApprovalScope,
        user: &str,
        progress: &ApprovalProgress,
    ) -> Result<ApprovalOutcome> {
        let tasks = ApprovalTask::checked(tasks, scope, user)?;
        let mut written = Written {
            outcome: ApprovalOutcome {
                approvals_written: 0,
                pending_rows_approved: 0,
            },
            audit: None,
        };
        if tasks.is_empty() {
            return Ok(written.outcome);
        }
        let scope = scope.clone();
        let plan = self
            .write("approving", |mut conn| {
                let scope = scope.clone();
                Box::pin(async move {
                    let r = approval_chunks::plan(&mut conn, &scope).await;
                    (conn, r)
                })
            })
            .await?;
        let plan = Arc::new(plan);
        let agents: Vec<u64> = plan.targets.iter().flatten().copied().collect();
        progress.start(agents.len() as u64);
        let now = unix_now();
        let step = |part: Part, done: usize, last: bool, before: Written| {
            let (plan, tasks) = (plan.clone(), tasks.clone());
            async move {
                self.write("approving", move |mut conn| {
                    let (plan, tasks, part) = (plan.clone(), tasks.clone(), part.clone());
                    let user = user.to_owned();
                    Box::pin(async move {
                        let r = approval_chunks::chunk(
                            &mut conn,
                            &plan,
                            &tasks,
                            &part,
                            (done, last),
                            before,
                            (&user, now),
                        )
                        .await;
                        (conn, r)
                    })
                })
                .await
            }
        };
        if agents.is_empty() {
            // The approval rows first; then the pending rows they cover, read again until none
            // is left (a report racing the first chunk may still have written one).
            let chunk = step(Part::Every(Vec::new()), 0, false, written).await?;
            written = chunk.written;
            progress.add(0, &chunk.outcome);
            loop {
                let rows = self
                    .read(async {
                        let mut conn = self.conn().await?;
                        approval_chunks::pending_rows(&mut conn, &tasks).await
                    })
                    .await?;
                if rows.is_empty() {
                    break;
                }
                for ids in rows.chunks(APPROVAL_CHUNK) {
                    let chunk = step(Part::Every(ids.to_vec()), 0, false, written).await?;
                    written = chunk.written;
                    progress.add(0, &chunk.outcome);
                }
            }
            written = step(Part::Every(Vec::new()), 0, true, written)
                .await?
                .written;
        } else {
            let mut done = 0;
            let chunks: Vec<&[u64]> = agents.chunks(APPROVAL_CHUNK).collect();
            for (i, ids) in chunks.iter().enumerate() {
                done += ids.len();
                let last = i + 1 == chunks.len();
                let chunk = step(Part::Agents(ids.to_vec()), done, last, written).await?;
                written = chunk.written;
                progress.add(ids.len() as u64, &chunk.outcome);
            }
        }
        Ok(written.outcome)
    }
}
