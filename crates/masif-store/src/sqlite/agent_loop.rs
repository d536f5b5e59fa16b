//! `AgentLoop` on SQLite: the approval token and the approvals in force for long-polling
//! agents, and run results recorded and purged (see `runs`).

use std::sync::Arc;

use async_trait::async_trait;
use masif_proto::v2::Run;
use masif_proto::AgentName;
use rusqlite::{OptionalExtension, Transaction};

use super::rows::{pattern_from_row, to_u64};
use super::runs::{purge_chunk, record};
use super::SqliteStore;
use crate::clock::unix_now;
use crate::runs::{purge_before, PURGE_CHUNK};
use crate::{AgentLoop, ApprovalPatterns, ApprovalToken, Result, Retention};

#[async_trait]
impl AgentLoop for SqliteStore {
    async fn approval_token(&self, deep: bool) -> Result<ApprovalToken> {
        self.read("reading the approval token", move |tx| {
            let counters: Option<(i64, i64)> = tx
                .prepare_cached("SELECT generation, gate FROM approval_generation WHERE id = 1")?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let (generation, gate) = counters.unwrap_or_default();
            let rows = if deep {
                // Reads only the index task_approved (approved), which holds task.id.
                let (count, sum): (i64, i64) = tx
                    .prepare_cached(
                        "SELECT COUNT(*), COALESCE(SUM(id), 0) FROM task WHERE approved = 1",
                    )?
                    .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Some((to_u64(count), to_u64(sum)))
            } else {
                None
            };
            Ok(ApprovalToken {
                generation: to_u64(generation),
                gate: to_u64(gate),
                rows,
            })
        })
        .await
    }

    async fn approval_patterns(&self) -> Result<ApprovalPatterns> {
        self.read("reading the approvals in force", |tx| {
            Ok(ApprovalPatterns::new(all_approvals(tx)?))
        })
        .await
    }

    async fn record_runs(
        &self,
        agent: &AgentName,
        runs: &[Run],
        retention: &Retention,
    ) -> Result<u64> {
        if runs.is_empty() {
            return Ok(0);
        }
        let agent = agent.as_str().to_owned();
        let runs: Arc<[Run]> = runs.into();
        let keep = retention.keep_per_agent;
        self.write("recording runs", move |tx| record(tx, &agent, &runs, keep))
            .await
    }

    async fn purge_runs(&self, retention: &Retention) -> Result<u64> {
        let before = purge_before(retention, unix_now());
        let mut purged = 0;
        // Chunks commit one by one, so reports get the write lock in between.
        for table in ["run", "run_latest"] {
            loop {
                let deleted = self
                    .write("purging runs", move |tx| purge_chunk(tx, table, before))
                    .await?;
                if table == "run" {
                    purged += deleted;
                }
                if deleted < PURGE_CHUNK as u64 {
                    break;
                }
            }
        }
        Ok(purged)
    }
}

/// Every approval row in force as (agent name or NULL, pattern), the same patterns a report
/// reads (`rows::approval_patterns`). A row naming an agent or package that no longer exists
/// matches no report (reports find them by id and name), so it is left out rather than read as
/// a wildcard.
fn all_approvals(
    tx: &Transaction<'_>,
) -> rusqlite::Result<Vec<(Option<String>, crate::pending::Pattern)>> {
    let mut stmt = tx.prepare_cached(
        "SELECT t.action, t.from_version, t.to_version, p.name, a.name
           FROM task t
           LEFT JOIN agent a ON a.id = t.agent
           LEFT JOIN package p ON p.id = t.package
          WHERE t.approved = 1 AND (t.agent IS NULL OR a.id IS NOT NULL)
            AND (t.package IS NULL OR p.id IS NOT NULL)",
    )?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(4)?, pattern_from_row(r, r.get(3)?)?)))?
        .collect();
    rows
}
