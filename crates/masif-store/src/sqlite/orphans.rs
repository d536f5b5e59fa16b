//! Orphan packages on SQLite: `package` rows no `task` row references any more. SQLite has one
//! writer at a time (`BEGIN IMMEDIATE` takes the file's write lock up front), and reports and
//! approvals look up or create their packages inside their own write transactions, so a
//! package found unreferenced in a write transaction stays so until it commits.

use rusqlite::params_from_iter;

use super::SqliteStore;
use crate::Result;

/// Most packages deleted in one transaction (the writer is held that long).
const BATCH: usize = 1000;

impl SqliteStore {
    /// See [`crate::Reports::remove_orphan_packages`].
    pub(super) async fn remove_orphans(&self) -> Result<u64> {
        let mut removed = 0;
        let mut after = 0i64;
        loop {
            let (deleted, last) = self
                .write("removing orphan packages", move |tx| {
                    let orphans: Vec<i64> = tx
                        .prepare_cached(
                            "SELECT p.id FROM package p
                              WHERE p.id > ?1
                                AND NOT EXISTS (SELECT 1 FROM task t WHERE t.package = p.id)
                              ORDER BY p.id LIMIT ?2",
                        )?
                        .query_map((after, BATCH as i64), |row| row.get(0))?
                        .collect::<rusqlite::Result<_>>()?;
                    let marks = vec!["?"; orphans.len()].join(", ");
                    if !orphans.is_empty() {
                        tx.execute(
                            &format!("DELETE FROM package WHERE id IN ({marks})"),
                            params_from_iter(&orphans),
                        )?;
                        // (security, package) is the only index task_fact has on package.
                        tx.execute(
                            &format!(
                                "DELETE FROM task_fact WHERE security IN (0, 1) \
                                 AND package IN ({marks})"
                            ),
                            params_from_iter(&orphans),
                        )?;
                    }
                    Ok((orphans.len(), orphans.last().copied()))
                })
                .await?;
            removed += deleted as u64;
            match last {
                Some(last) if deleted == BATCH => after = last,
                _ => return Ok(removed),
            }
        }
    }
}
