//! The pending task rows counted by action, for the UI's fleet metrics: one grouped query
//! over the `approved` index.

use masif_proto::Action;
use mysql_async::prelude::*;
use mysql_async::Conn;

use super::sql::doing;
use crate::pending_counts::by_action;
use crate::Result;

/// How many pending (not approved) task rows there are of each action.
pub(super) async fn pending_by_action(conn: &mut Conn) -> Result<Vec<(Action, u64)>> {
    let rows: Vec<(Option<String>, u64)> = conn
        .query(
            "SELECT action, COUNT(*) FROM task
              WHERE approved = 0 AND agent IS NOT NULL GROUP BY action",
        )
        .await
        .map_err(doing("counting pending tasks by action"))?;
    Ok(by_action(rows))
}
