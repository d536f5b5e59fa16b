//! `AgentLoop` on MySQL: the approval token and the approvals in force for long-polling
//! agents, and run results recorded (see `runs`) and purged, with the bounded retries of the
//! UI's writes.

use std::sync::Arc;

use async_trait::async_trait;
use masif_proto::v2::Run;
use masif_proto::AgentName;
use mysql_async::prelude::*;
use mysql_async::Row;

use super::rows::{all_approvals, Fact};
use super::runs::{purge_latest_chunk, purge_runs_chunk, record_once};
use super::shared::decode;
use super::sql::doing;
use super::MysqlStore;
use crate::clock::unix_now;
use crate::runs::{purge_before, PURGE_CHUNK};
use crate::{AgentLoop, ApprovalPatterns, ApprovalToken, Result, Retention};

#[async_trait]
impl AgentLoop for MysqlStore {
    async fn approval_token(&self, deep: bool) -> Result<ApprovalToken> {
        self.read(async {
            let mut conn = self.conn().await?;
            if !deep {
                let counters: Option<(u64, u64)> = conn
                    .query_first("SELECT generation, gate FROM approval_generation WHERE id = 1")
                    .await
                    .map_err(doing("reading the approval generation"))?;
                let (generation, gate) = counters.unwrap_or_default();
                return Ok(ApprovalToken {
                    generation,
                    gate,
                    rows: None,
                });
            }
            // One statement, one snapshot; the aggregate reads only `task_approved (approved)`.
            let token: Option<(Option<u64>, Option<u64>, u64, u64)> = conn
                .query_first(
                    "SELECT (SELECT generation FROM approval_generation WHERE id = 1),
                            (SELECT gate FROM approval_generation WHERE id = 1), COUNT(*),
                            CAST(COALESCE(SUM(id), 0) AS UNSIGNED)
                       FROM task WHERE approved = 1",
                )
                .await
                .map_err(doing("reading the approval token"))?;
            let (generation, gate, count, sum) = token.unwrap_or_default();
            Ok(ApprovalToken {
                generation: generation.unwrap_or(0),
                gate: gate.unwrap_or(0),
                rows: Some((count, sum)),
            })
        })
        .await
    }

    async fn approval_patterns(&self) -> Result<ApprovalPatterns> {
        self.read(async {
            let mut conn = self.conn().await?;
            let rows: Vec<Row> = conn
                .query(all_approvals())
                .await
                .map_err(doing("reading the approvals in force"))?;
            let facts = decode::<Fact>(rows).map_err(doing("reading the approvals in force"))?;
            Ok(ApprovalPatterns::new(facts.into_iter().filter_map(
                |fact| match fact {
                    Fact::Approval { owner, pattern } => Some((owner, pattern)),
                    _ => None,
                },
            )))
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
        self.write("recording runs", move |mut conn| {
            let (agent, runs) = (agent.clone(), runs.clone());
            Box::pin(async move {
                let r = record_once(&mut conn, &agent, &runs, keep).await;
                (conn, r)
            })
        })
        .await
    }

    async fn purge_runs(&self, retention: &Retention) -> Result<u64> {
        let before = purge_before(retention, unix_now());
        let mut purged = 0;
        // Chunks commit one by one, so reports and batches of runs get through in between.
        loop {
            let deleted = self
                .write("purging runs", move |mut conn| {
                    Box::pin(async move {
                        let r = purge_runs_chunk(&mut conn, before).await;
                        (conn, r)
                    })
                })
                .await?;
            purged += deleted;
            if deleted < PURGE_CHUNK as u64 {
                break;
            }
        }
        loop {
            let deleted = self
                .write("purging latest outcomes", move |mut conn| {
                    Box::pin(async move {
                        let r = purge_latest_chunk(&mut conn, before).await;
                        (conn, r)
                    })
                })
                .await?;
            if deleted < PURGE_CHUNK as u64 {
                break;
            }
        }
        Ok(purged)
    }
}
