//! Orphan packages on MySQL: `package` rows no `task` row references any more, deleted in
//! batches without racing the writers that are about to reference them.
//!
//! Every transaction that writes a `task` row naming a package first locks that package's row
//! in share mode and keeps the lock until it commits: a report's write (`write`, after
//! creating the packages it did not see) and an approval (`changes::lock_packages`). So one
//! batch here:
//! 1. finds candidates with a plain read outside any transaction (no locks, nothing held);
//! 2. `START TRANSACTION`, then locks the candidates' rows exclusively, by the unique name
//!    index in name order as the writers do (so they wait for each other instead of
//!    deadlocking). Writers holding a share lock finish first; writers coming later wait;
//! 3. reads which of the locked packages `task` references now. This is the transaction's
//!    first plain read, so its view starts after the locks were granted (READ COMMITTED reads
//!    afresh anyway): it sees every row of the writers that held a lock;
//! 4. deletes the rest, and the `task_fact` rows that still name them (facts of tasks whose
//!    rows went; readers join them to task rows, so they counted for nothing), and commits.
//!
//! A writer that waited finds its package gone (`RowsVanished` in `write`, a missing id in
//! an approval) and starts over, creating it again. Several masters doing this at once lock
//! in the same order; conflicts (1213/1205) retry as the UI's writes do. The original master,
//! which inserts `task` rows without any lock, could still lose a package this way
//! (docs/security.md, "The database under faults").

use std::collections::BTreeSet;

use mysql_async::prelude::*;
use mysql_async::Conn;

use super::changes::BATCH;
use super::sql::{doing, tuple};
use super::MysqlStore;
use crate::backoff::Failure;
use crate::Result;

impl MysqlStore {
    /// See [`crate::Reports::remove_orphan_packages`].
    pub(super) async fn remove_orphans(&self) -> Result<u64> {
        let mut removed = 0;
        let mut after = 0u64;
        loop {
            let candidates: Vec<(u64, String)> = {
                let mut conn = self.conn().await?;
                conn.query(format!(
                    "SELECT p.id, p.name FROM package p \
                     WHERE p.id > {after} \
                       AND NOT EXISTS (SELECT 1 FROM task t WHERE t.package = p.id) \
                     ORDER BY p.id LIMIT {BATCH}"
                ))
                .await
                .map_err(doing("finding orphan packages"))?
            };
            let Some((last, _)) = candidates.last() else {
                return Ok(removed);
            };
            after = *last;
            let full = candidates.len() == BATCH;
            let mut names: Vec<String> = candidates.into_iter().map(|(_, name)| name).collect();
            names.sort_unstable();
            removed += self
                .write("removing orphan packages", move |mut conn| {
                    let names = names.clone();
                    Box::pin(async move {
                        let r = remove_unreferenced(&mut conn, &names).await;
                        (conn, r)
                    })
                })
                .await?;
            if !full {
                return Ok(removed);
            }
        }
    }
}

/// One attempt: locks the packages named `names` (sorted), deletes those no task references,
/// commits. Returns how many were deleted.
async fn remove_unreferenced(conn: &mut Conn, names: &[String]) -> Result<u64, Failure> {
    conn.query_drop("START TRANSACTION").await?;
    let locked: Vec<u64> = conn
        .query(format!(
            "SELECT id FROM package FORCE INDEX (name) WHERE name IN {} ORDER BY name FOR UPDATE",
            tuple(names.iter().map(String::as_str))
        ))
        .await?;
    let orphans: Vec<u64> = if locked.is_empty() {
        Vec::new()
    } else {
        let referenced: BTreeSet<u64> = conn
            .query(format!(
                "SELECT DISTINCT package FROM task WHERE package IN {}",
                tuple(locked.iter().copied())
            ))
            .await?
            .into_iter()
            .collect();
        locked
            .into_iter()
            .filter(|id| !referenced.contains(id))
            .collect()
    };
    let mut removed = 0;
    if !orphans.is_empty() {
        let ids = tuple(orphans.iter().copied());
        conn.query_drop(format!("DELETE FROM package WHERE id IN {ids}"))
            .await?;
        removed = conn.affected_rows();
        // (security, package) is the only index task_fact has on package.
        conn.query_drop(format!(
            "DELETE FROM task_fact WHERE security IN (0, 1) AND package IN {ids}"
        ))
        .await?;
    }
    conn.query_drop("COMMIT").await?;
    Ok(removed)
}
