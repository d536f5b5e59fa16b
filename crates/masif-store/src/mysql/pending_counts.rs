//! The pending tasks counted by action, for the UI's fleet metrics: read from the pending
//! summary (a few rows per package), not from every task row.

use masif_proto::Action;
use mysql_async::prelude::*;
use mysql_async::Conn;

use super::sql::doing;
use crate::pending_counts::by_action;
use crate::Result;

/// How many pending (not approved) tasks there are of each action: per package and action
/// the agents awaiting it, summed (an agent's two rows of one package and action, possible
/// only with two from-versions, count once).
pub(super) async fn pending_by_action(conn: &mut Conn) -> Result<Vec<(Action, u64)>> {
    let rows: Vec<(Option<String>, u64)> = conn
        .query(
            "SELECT action, CAST(SUM(agents) AS UNSIGNED) FROM pending_package_summary
              WHERE action <> '' GROUP BY action",
        )
        .await
        .map_err(doing("counting pending tasks by action"))?;
    Ok(by_action(rows))
}
