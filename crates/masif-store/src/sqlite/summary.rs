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
