//! Run results on MySQL: recording a batch of an agent's runs (one transaction), purging old
//! ones in chunks, and the UI's reads of them (an agent's runs, the failing packages).
//!
//! A batch locks its agent's row first (created if needed, as a report does), so two batches of
//! one agent, and a batch and a report of that agent, take turns; everything else they write
//! is that agent's own rows. `run_latest` rows are upserted in primary-key order.

use std::collections::HashSet;

use masif_proto::v2::Run;
use masif_proto::{AgentName, PackageName};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};

use super::changes::{placeholders, BATCH};
use super::sql::{doing, tuple};
use crate::backoff::Failure;
use crate::clock::unix_now;
use crate::runs::{columns, latest_per_package, to_insert, StoredRun, PURGE_CHUNK};
use crate::{FailingPackage, Listing, Page, Result, RunRecord, StoreError};

/// One attempt of recording `runs` of `agent`, keeping its newest `keep` runs; returns how
/// many runs were new.
pub(super) async fn record_once(
    conn: &mut Conn,
    agent: &str,
    runs: &[Run],
    keep: u32,
) -> Result<u64, Failure> {
    conn.query_drop("START TRANSACTION").await?;
    let now = unix_now();
    // Creates the agent, or locks its row as SELECT … FOR UPDATE would.
    conn.exec_drop(
        "INSERT INTO agent (name, ctime, mtime) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE id = id",
        (agent, now, now),
    )
    .await?;
    let agent_id: u64 = conn
        .exec_first("SELECT id FROM agent WHERE name = ?", (agent,))
        .await?
        .ok_or_else(|| Failure::Conflict(StoreError::Vanished(format!("agent {agent}"))))?;

    let keys: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    let mut stored: Vec<String> = Vec::new();
    for chunk in keys.chunks(BATCH) {
        let mut params = vec![Value::from(agent_id)];
        params.extend(chunk.iter().map(|k| Value::from(*k)));
        let found: Vec<String> = conn
            .exec(
                format!(
                    "SELECT run_key FROM run WHERE agent = ? AND run_key IN {}",
                    placeholders(chunk.len())
                ),
                params,
            )
            .await?;
        stored.extend(found);
    }
    let stored: HashSet<&str> = stored.iter().map(String::as_str).collect();

    // One INSERT per run: a batch holds few runs, and each may be large (its task list).
    let mut inserted = Vec::new();
    for run in to_insert(runs, &stored) {
        let (outcome, tasks) = columns(run);
        conn.exec_drop(
            "INSERT INTO run (agent, run_key, package, started_at, duration_ms, exit_code,
                              outcome, tasks, output, received_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                Value::from(agent_id),
                run.id.as_str().into(),
                run.package.as_str().into(),
                run.started_at.into(),
                run.duration_ms.into(),
                run.exit_code.into(),
                outcome.into(),
                tasks.into(),
                run.output.as_str().into(),
                now.into(),
            ],
        )
        .await?;
        let id = conn
            .last_insert_id()
            .ok_or_else(|| mysql_async::Error::Other("a run insert generated no id".into()))?;
        inserted.push((id, run));
    }

    // The latest outcome per package, unless a stored one started later (a resent old run).
    // Assignments apply left to right: started_at last, so the conditions see the old one.
    for chunk in latest_per_package(&inserted).chunks(BATCH) {
        let params: Vec<Value> = chunk
            .iter()
            .flat_map(|l| {
                [
                    Value::from(agent_id),
                    l.package.into(),
                    l.run.into(),
                    l.failed.into(),
                    l.started_at.into(),
                ]
            })
            .collect();
        conn.exec_drop(
            format!(
                "INSERT INTO run_latest (agent, package, run, failed, started_at) VALUES {}
                 ON DUPLICATE KEY UPDATE
                   run = IF(VALUES(started_at) >= started_at, VALUES(run), run),
                   failed = IF(VALUES(started_at) >= started_at, VALUES(failed), failed),
                   started_at = GREATEST(started_at, VALUES(started_at))",
                vec![placeholders(5); chunk.len()].join(", ")
            ),
            params,
        )
        .await?;
    }

    // Only the newest `keep` runs stay: delete from the first one beyond them down.
    let beyond: Option<u64> = conn
        .exec_first(
            format!("SELECT id FROM run WHERE agent = ? ORDER BY id DESC LIMIT 1 OFFSET {keep}"),
            (agent_id,),
        )
        .await?;
    if let Some(beyond) = beyond {
        conn.exec_drop(
            "DELETE FROM run WHERE agent = ? AND id <= ?",
            (agent_id, beyond),
        )
        .await?;
    }
    conn.query_drop("COMMIT").await?;
    Ok(inserted.len() as u64)
}

/// Deletes at most [`PURGE_CHUNK`] runs that started before `before` (ids read by the
/// `started_at` index, then deleted by primary key); returns how many.
pub(super) async fn purge_runs_chunk(conn: &mut Conn, before: i64) -> Result<u64, Failure> {
    let ids: Vec<u64> = conn
        .exec(
            format!("SELECT id FROM run WHERE started_at < ? LIMIT {PURGE_CHUNK}"),
            (before,),
        )
        .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    conn.query_drop(format!("DELETE FROM run WHERE id IN {}", tuple(ids)))
        .await?;
    Ok(conn.affected_rows())
}

/// Deletes at most [`PURGE_CHUNK`] latest outcomes that started before `before` (in primary
/// key order, which a statement-based binary log needs of a DELETE … LIMIT); returns how many.
pub(super) async fn purge_latest_chunk(conn: &mut Conn, before: i64) -> Result<u64, Failure> {
    conn.exec_drop(
        format!(
            "DELETE FROM run_latest WHERE started_at < ? ORDER BY agent, package \
             LIMIT {PURGE_CHUNK}"
        ),
        (before,),
    )
    .await?;
    Ok(conn.affected_rows())
}

/// One agent's runs, newest first; an unknown agent has none.
pub(super) async fn agent_runs(
    conn: &mut Conn,
    name: &AgentName,
    page: Page,
) -> Result<Listing<RunRecord>> {
    let agent_id: Option<u64> = conn
        .exec_first("SELECT id FROM agent WHERE name = ?", (name.as_str(),))
        .await
        .map_err(doing("reading an agent"))?;
    let Some(agent_id) = agent_id else {
        return Ok(Listing {
            rows: Vec::new(),
            total: 0,
        });
    };
    let total = conn
        .exec_first::<u64, _, _>("SELECT COUNT(*) FROM run WHERE agent = ?", (agent_id,))
        .await
        .map_err(doing("counting an agent's runs"))?
        .unwrap_or(0);
    let rows: Vec<Row> = conn
        .exec(
            format!(
                "SELECT id, run_key, package, started_at, duration_ms, exit_code, outcome,
                        tasks, output
                   FROM run WHERE agent = ? ORDER BY id DESC LIMIT {} OFFSET {}",
                page.limit, page.offset
            ),
            (agent_id,),
        )
        .await
        .map_err(doing("reading an agent's runs"))?;
    let rows = rows
        .into_iter()
        .map(|row| stored_run(row)?.into_record())
        .collect::<Result<_>>()?;
    Ok(Listing { rows, total })
}

/// A row of `agent_runs`' columns, or which column of which run holds what it cannot.
fn stored_run(mut row: Row) -> Result<StoredRun> {
    let id: u64 = take(&mut row, 0, "?")?;
    let run = &id.to_string();
    Ok(StoredRun {
        id,
        run_key: take(&mut row, 1, run)?,
        package: take(&mut row, 2, run)?,
        started_at: take(&mut row, 3, run)?,
        duration_ms: take(&mut row, 4, run)?,
        exit_code: take(&mut row, 5, run)?,
        outcome: take(&mut row, 6, run)?,
        tasks: take(&mut row, 7, run)?,
        output: take(&mut row, 8, run)?,
    })
}

fn take<T: FromValue>(row: &mut Row, i: usize, run: &str) -> Result<T> {
    match row.take_opt::<T, _>(i) {
        Some(Ok(value)) => Ok(value),
        _ => Err(StoreError::Unreadable(format!("run {run}: column {i}"))),
    }
}

/// Packages whose latest run failed on an agent that exists, most agents first.
pub(super) async fn failing_packages(conn: &mut Conn) -> Result<Vec<FailingPackage>> {
    let rows: Vec<(String, u64, i64)> = conn
        .query(
            "SELECT l.package, COUNT(*), MAX(l.started_at)
               FROM run_latest l JOIN agent a ON a.id = l.agent
              WHERE l.failed = 1
              GROUP BY l.package
              ORDER BY COUNT(*) DESC, l.package",
        )
        .await
        .map_err(doing("reading the failing packages"))?;
    Ok(rows
        .into_iter()
        .filter_map(
            |(name, agents, last_failed_at)| match PackageName::new(name) {
                Ok(package) => Some(FailingPackage {
                    package,
                    agents,
                    last_failed_at,
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a failing package with an unusable name");
                    None
                }
            },
        )
        .collect())
}
