//! The pending tasks counted by action, for the UI's fleet metrics: read from the pending
//! summary, as on MySQL.

use masif_proto::Action;
use rusqlite::Transaction;

use super::rows::to_u64;
use crate::pending_counts::by_action;

/// How many pending (not approved) tasks there are of each action (see the MySQL one).
pub(super) fn pending_by_action(tx: &Transaction<'_>) -> rusqlite::Result<Vec<(Action, u64)>> {
    let mut statement = tx.prepare(
        "SELECT action, SUM(agents) FROM pending_package_summary
          WHERE action <> '' GROUP BY action",
    )?;
    let rows = statement
        .query_map([], |row| {
            Ok((row.get::<_, Option<String>>(0)?, to_u64(row.get(1)?)))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(by_action(rows))
}
