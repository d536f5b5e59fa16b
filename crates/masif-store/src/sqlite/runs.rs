//! Run results on SQLite: recording a batch of an agent's runs (one write transaction),
//! purging old ones in chunks, and the UI's reads of them (an agent's runs, the failing
//! packages).

use std::collections::HashSet;

use masif_proto::v2::Run;
use masif_proto::PackageName;
use rusqlite::Transaction;

use super::rows::{self, to_i64, to_u64};
use crate::backoff::Failure;
use crate::clock::unix_now;
use crate::runs::{columns, latest_per_package, to_insert, StoredRun, PURGE_CHUNK};
use crate::{FailingPackage, Listing, Page, RunRecord, StoreError};

/// Records `runs` of `agent` (created if needed), keeping its newest `keep` runs; returns how
/// many runs were new.
pub(super) fn record(
    tx: &Transaction<'_>,
    agent: &str,
    runs: &[Run],
    keep: u32,
) -> Result<u64, Failure> {
    let now = unix_now();
    tx.prepare_cached(
        "INSERT INTO agent (name, ctime, mtime) VALUES (?1, ?2, ?2) ON CONFLICT (name) DO NOTHING",
    )?
    .execute((agent, now))?;
    let agent_id =
        rows::agent_id(tx, agent)?.ok_or_else(|| StoreError::Vanished(format!("agent {agent}")))?;

    // A run already stored is skipped by the unique (agent, run_key) key.
    let mut insert = tx.prepare_cached(
        "INSERT INTO run (agent, run_key, package, started_at, duration_ms, exit_code, outcome,
                          tasks, output, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (agent, run_key) DO NOTHING",
    )?;
    let mut inserted = Vec::new();
    for run in to_insert(runs, &HashSet::new()) {
        let (outcome, tasks) = columns(run);
        let duration_ms = i64::try_from(run.duration_ms).map_err(|_| {
            StoreError::Invalid(format!("run {}: duration out of range", run.id.as_str()))
        })?;
        let added = insert.execute(rusqlite::params![
            agent_id,
            run.id.as_str(),
            run.package.as_str(),
            run.started_at,
            duration_ms,
            run.exit_code,
            outcome,
            tasks,
            run.output.as_str(),
            now,
        ])?;
        if added == 1 {
            inserted.push((to_u64(tx.last_insert_rowid()), run));
        }
    }

    // The latest outcome per package, unless a stored one started later (a resent old run).
    let mut latest = tx.prepare_cached(
        "INSERT INTO run_latest (agent, package, run, failed, started_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (agent, package) DO UPDATE
            SET run = excluded.run, failed = excluded.failed, started_at = excluded.started_at
          WHERE excluded.started_at >= run_latest.started_at",
    )?;
    for l in latest_per_package(&inserted) {
        latest.execute((agent_id, l.package, to_i64(l.run), l.failed, l.started_at))?;
    }

    // Only the newest `keep` runs stay: delete from the first one beyond them down.
    tx.prepare_cached(
        "DELETE FROM run WHERE agent = ?1
            AND id <= (SELECT id FROM run WHERE agent = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
    )?
    .execute((agent_id, i64::from(keep)))?;
    Ok(inserted.len() as u64)
}

/// Deletes at most [`PURGE_CHUNK`] rows of `table` (`run` or `run_latest`) that started before
/// `before`; returns how many.
pub(super) fn purge_chunk(
    tx: &Transaction<'_>,
    table: &'static str,
    before: i64,
) -> Result<u64, Failure> {
    let deleted = tx
        .prepare_cached(&format!(
            "DELETE FROM {table} WHERE rowid IN
               (SELECT rowid FROM {table} WHERE started_at < ?1 LIMIT ?2)"
        ))?
        .execute((before, PURGE_CHUNK as i64))?;
    Ok(deleted as u64)
}

/// One agent's runs, newest first; an unknown agent has none.
pub(super) fn agent_runs(
    tx: &Transaction<'_>,
    name: &str,
    page: Page,
) -> Result<Listing<RunRecord>, Failure> {
    let Some(agent_id) = rows::agent_id(tx, name)? else {
        return Ok(Listing {
            rows: Vec::new(),
            total: 0,
        });
    };
    let total: i64 = tx
        .prepare_cached("SELECT COUNT(*) FROM run WHERE agent = ?1")?
        .query_row([agent_id], |r| r.get(0))?;
    let mut stmt = tx.prepare_cached(
        "SELECT id, run_key, package, started_at, duration_ms, exit_code, outcome, tasks, output
           FROM run WHERE agent = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3",
    )?;
    let stored = stmt
        .query_map((agent_id, to_i64(page.limit), to_i64(page.offset)), |r| {
            Ok(StoredRun {
                id: to_u64(r.get(0)?),
                run_key: r.get(1)?,
                package: r.get(2)?,
                started_at: r.get(3)?,
                duration_ms: to_u64(r.get(4)?),
                exit_code: r.get(5)?,
                outcome: r.get(6)?,
                tasks: r.get(7)?,
                output: r.get(8)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let rows = stored
        .into_iter()
        .map(StoredRun::into_record)
        .collect::<Result<_, _>>()?;
    Ok(Listing {
        rows,
        total: to_u64(total),
    })
}

/// Packages whose latest run failed on an agent that exists, most agents first.
pub(super) fn failing_packages(tx: &Transaction<'_>) -> Result<Vec<FailingPackage>, Failure> {
    let mut stmt = tx.prepare_cached(
        "SELECT l.package, COUNT(*), MAX(l.started_at)
           FROM run_latest l JOIN agent a ON a.id = l.agent
          WHERE l.failed = 1
          GROUP BY l.package
          ORDER BY COUNT(*) DESC, l.package",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows
        .into_iter()
        .filter_map(
            |(name, agents, last_failed_at)| match PackageName::new(name) {
                Ok(package) => Some(FailingPackage {
                    package,
                    agents: to_u64(agents),
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
