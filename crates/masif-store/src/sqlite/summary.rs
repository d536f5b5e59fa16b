//! The pending summary on SQLite: [`Deltas`] applied (the keys that reach 0 deleted), and the
//! approval's deletion of pending rows with its deltas. The one writer makes both exact.

use std::collections::HashMap;

use rusqlite::Transaction;

use crate::summary::{Deltas, Pending};

/// Applies `deltas` inside the caller's transaction.
pub(super) fn apply(tx: &Transaction<'_>, deltas: &Deltas) -> rusqlite::Result<()> {
    for ((package, action, to), delta) in deltas.rows() {
        tx.prepare_cached(
            "INSERT INTO pending_summary (package, action, to_version, agents)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (package, action, to_version) DO UPDATE SET agents = agents + ?4",
        )?
        .execute((package, action, to, delta))?;
        if delta < 0 {
            tx.prepare_cached(
                "DELETE FROM pending_summary
                  WHERE package = ?1 AND action = ?2 AND to_version = ?3 AND agents <= 0",
            )?
            .execute((package, action, to))?;
        }
    }
    for ((package, action), delta) in deltas.packages() {
        tx.prepare_cached(
            "INSERT INTO pending_package_summary (package, action, agents) VALUES (?1, ?2, ?3)
             ON CONFLICT (package, action) DO UPDATE SET agents = agents + ?3",
        )?
        .execute((package, action, delta))?;
        if delta < 0 {
            tx.prepare_cached(
                "DELETE FROM pending_package_summary
                  WHERE package = ?1 AND action = ?2 AND agents <= 0",
            )?
            .execute((package, action))?;
        }
    }
    Ok(())
}

/// Deletes the pending rows of package `package` with `action`, target version `to` (NULL-safe),
/// of agent `agent` (`None`: any) and from-version `from` (`None`: any), adding the change of
/// every agent that lost one to `deltas`. Returns how many rows went.
pub(super) fn delete_pending(
    tx: &Transaction<'_>,
    package: i64,
    action: &str,
    to: Option<&str>,
    agent: Option<i64>,
    from: Option<&str>,
    deltas: &mut Deltas,
) -> rusqlite::Result<u64> {
    let found = tx
        .prepare_cached(
            "SELECT id, agent FROM task
              WHERE approved = 0 AND package = ?1 AND action = ?2
                AND to_version IS ?3 AND (?4 IS NULL OR agent = ?4)
                AND (?5 IS NULL OR from_version = ?5)",
        )?
        .query_map((package, action, to, agent, from), |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut lost: HashMap<i64, usize> = HashMap::new();
    for (id, agent) in &found {
        tx.prepare_cached("DELETE FROM task WHERE id = ?1")?
            .execute([id])?;
        // Rows of no agent (possible only in the original schema) go too, uncounted.
        if let Some(agent) = agent {
            *lost.entry(*agent).or_default() += 1;
        }
    }
    let package = u64::try_from(package).unwrap_or_default();
    for (agent, count) in lost {
        let kept = tx
            .prepare_cached(
                "SELECT action, to_version FROM task
                  WHERE agent = ?1 AND approved = 0 AND package = ?2 AND action IS NOT NULL",
            )?
            .query_map((agent, package), |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let kept: Vec<Pending<'_>> = kept
            .iter()
            .map(|(a, t)| (package, a.as_str(), t.as_deref()))
            .collect();
        let gone = std::iter::repeat_n((package, action, to), count);
        deltas.agent(kept.iter().copied().chain(gone), kept.iter().copied());
    }
    Ok(found.len() as u64)
}

/// Most packages one step of the summary check recounts.
const CHECK_PACKAGES: i64 = 64;

/// One step of the summary check (see [`crate::SummaryCheck`]) inside the writer's
/// transaction: the next [`CHECK_PACKAGES`] packages after `after`, recounted and corrected.
/// Returns the last package checked (`None` past the last) and the keys corrected.
pub(super) fn check_step(tx: &Transaction<'_>, after: u64) -> rusqlite::Result<(Option<u64>, u64)> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let ids = tx
        .prepare_cached("SELECT id FROM package WHERE id > ?1 ORDER BY id LIMIT ?2")?
        .query_map((after, CHECK_PACKAGES), |r| r.get::<_, i64>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let (Some(&first), Some(&last)) = (ids.first(), ids.last()) else {
        return Ok((None, 0));
    };
    let range = (first, last);
    let rows = tx
        .prepare_cached(
            "SELECT package, action, to_version, agents FROM pending_summary
              WHERE package BETWEEN ?1 AND ?2",
        )?
        .query_map(range, row_count)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let row_recount = tx
        .prepare_cached(
            "SELECT package, action, COALESCE(to_version, ''), COUNT(DISTINCT agent) FROM task
              WHERE package BETWEEN ?1 AND ?2 AND approved = 0 AND agent IS NOT NULL
                AND action IS NOT NULL
              GROUP BY package, action, COALESCE(to_version, '')",
        )?
        .query_map(range, row_count)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let packages = tx
        .prepare_cached(
            "SELECT package, action, agents FROM pending_package_summary
              WHERE package BETWEEN ?1 AND ?2",
        )?
        .query_map(range, package_count)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let package_recount = tx
        .prepare_cached(
            "SELECT package, action, COUNT(DISTINCT agent) FROM task
              WHERE package BETWEEN ?1 AND ?2 AND approved = 0 AND agent IS NOT NULL
                AND action IS NOT NULL
              GROUP BY package, action
             UNION ALL
             SELECT package, '', COUNT(DISTINCT agent) FROM task
              WHERE package BETWEEN ?1 AND ?2 AND approved = 0 AND agent IS NOT NULL
                AND action IS NOT NULL
              GROUP BY package",
        )?
        .query_map(range, package_count)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let deltas = Deltas::between(rows, row_recount, packages, package_recount);
    apply(tx, &deltas)?;
    Ok((u64::try_from(last).ok(), deltas.keys()))
}

fn row_count(r: &rusqlite::Row<'_>) -> rusqlite::Result<(crate::summary::RowKey, i64)> {
    Ok((
        (
            u64::try_from(r.get::<_, i64>(0)?).unwrap_or_default(),
            r.get(1)?,
            r.get(2)?,
        ),
        r.get(3)?,
    ))
}

fn package_count(r: &rusqlite::Row<'_>) -> rusqlite::Result<(crate::summary::PackageKey, i64)> {
    Ok((
        (
            u64::try_from(r.get::<_, i64>(0)?).unwrap_or_default(),
            r.get(1)?,
        ),
        r.get(2)?,
    ))
}
