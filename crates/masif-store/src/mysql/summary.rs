//! The pending summary on MySQL: the statements that apply [`Deltas`] to this store's slot
//! (upserts in key order, so concurrent writers lock the rows in one order, then the rows that
//! reached 0 deleted), and the approval's deletion of pending rows, counted per package once
//! all are gone.
//!
//! Every store writes its deltas to rows of its own slot (migration 0015, the session variable
//! [`SLOT_VARIABLE`]), so that masters writing through different Galera nodes never change
//! the same row; a key's count is the sum of its slots' rows (see [`SUMMED_PACKAGES`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use mysql_async::prelude::*;
use mysql_async::Conn;

use super::changes::BATCH;
use super::sql::{lit, tuple};
use crate::summary::{Deltas, Pending};

/// The session variable holding this store's slot of the summary (set with the session's
/// other settings, see `session_setup`).
pub(crate) const SLOT_VARIABLE: &str = "@masif_summary_slot";

/// A slot for a new store: one of 255 at random (0 holds what migration 0013 counted). Two
/// stores that draw the same slot only share rows, as every writer did before slots.
pub(crate) fn new_slot() -> u8 {
    rand::random_range(1..=255)
}

/// `pending_package_summary` as one row per key: its slots summed, keys that sum to 0 left
/// out.
pub(super) const SUMMED_PACKAGES: &str = "(SELECT package, action, \
     CAST(SUM(agents) AS SIGNED) AS agents FROM pending_package_summary \
     GROUP BY package, action HAVING SUM(agents) <> 0)";

/// The statements applying `deltas` to this store's slot (none if nothing changes).
pub(super) fn statements(deltas: &Deltas) -> Vec<String> {
    let mut sql = Vec::new();
    let rows: Vec<_> = deltas.rows().collect();
    if !rows.is_empty() {
        let values: Vec<String> = rows
            .iter()
            .map(|((p, a, t), d)| {
                format!(
                    "({p}, {}, {}, {SLOT_VARIABLE}, {d})",
                    lit(a.as_str()),
                    lit(t.as_str())
                )
            })
            .collect();
        sql.push(format!(
            "INSERT INTO pending_summary (package, action, to_version, slot, agents) VALUES {} \
             ON DUPLICATE KEY UPDATE agents = agents + VALUES(agents)",
            values.join(", ")
        ));
        let down: Vec<String> = rows
            .iter()
            .filter(|(_, d)| *d < 0)
            .map(|((p, a, t), _)| {
                format!(
                    "(package = {p} AND action = {} AND to_version = {})",
                    lit(a.as_str()),
                    lit(t.as_str())
                )
            })
            .collect();
        if !down.is_empty() {
            // Only this slot's rows, and only at 0: another slot may hold the other half.
            sql.push(format!(
                "DELETE FROM pending_summary \
                  WHERE slot = {SLOT_VARIABLE} AND agents = 0 AND ({})",
                down.join(" OR ")
            ));
        }
    }
    let packages: Vec<_> = deltas.packages().collect();
    if !packages.is_empty() {
        let values: Vec<String> = packages
            .iter()
            .map(|((p, a), d)| format!("({p}, {}, {SLOT_VARIABLE}, {d})", lit(a.as_str())))
            .collect();
        sql.push(format!(
            "INSERT INTO pending_package_summary (package, action, slot, agents) VALUES {} \
             ON DUPLICATE KEY UPDATE agents = agents + VALUES(agents)",
            values.join(", ")
        ));
        let down: Vec<String> = packages
            .iter()
            .filter(|(_, d)| *d < 0)
            .map(|((p, a), _)| format!("(package = {p} AND action = {})", lit(a.as_str())))
            .collect();
        if !down.is_empty() {
            sql.push(format!(
                "DELETE FROM pending_package_summary \
                  WHERE slot = {SLOT_VARIABLE} AND agents = 0 AND ({})",
                down.join(" OR ")
            ));
        }
    }
    sql
}

/// Applies `deltas` inside the caller's transaction.
pub(super) async fn apply(conn: &mut Conn, deltas: &Deltas) -> mysql_async::Result<()> {
    for statement in statements(deltas) {
        conn.query_drop(statement).await?;
    }
    Ok(())
}

/// A pending row deleted: id, agent, package, action, target version.
type DeletedRow = (u64, Option<u64>, Option<u64>, String, Option<String>);

/// A pending row of one package: agent, action, target version.
type AgentRow = (u64, String, Option<String>);

/// The (action, target version) of rows each agent lost, by package and agent.
type Lost = HashMap<u64, Vec<(String, Option<String>)>>;

/// The pending rows an approval deleted, counted once all of them are gone (one pass over
/// each package's remaining rows, however many of its tasks the approval names).
#[derive(Debug, Default)]
pub(super) struct Deleted(BTreeMap<u64, Lost>);

/// Deletes the pending rows matching `condition` (on `t`), found through `index`, locked
/// first so that the rows counted are the rows deleted, and records them in `deleted`.
/// Returns how many rows went.
pub(super) async fn delete_pending(
    conn: &mut Conn,
    condition: &str,
    index: &str,
    deleted: &mut Deleted,
) -> mysql_async::Result<u64> {
    // Rows of no agent (possible only in the original schema) go too, uncounted. The locking
    // read goes through the index the caller names (`task_approval` for agents, the primary
    // key for rows by id): a scan of other rows would wait for their locks, such as those of
    // a report in progress.
    let found: Vec<DeletedRow> = conn
        .query(format!(
            "SELECT t.id, t.agent, t.package, CAST(t.action AS CHAR), t.to_version
               FROM task t FORCE INDEX ({index})
              WHERE t.approved = 0 AND {condition} FOR UPDATE"
        ))
        .await?;
    let mut count = 0;
    for chunk in found.chunks(BATCH) {
        conn.query_drop(format!(
            "DELETE FROM task WHERE id IN {} AND approved = 0",
            tuple(chunk.iter().map(|(id, ..)| *id))
        ))
        .await?;
        count += conn.affected_rows();
    }
    for (_, agent, package, action, to) in found {
        if let (Some(agent), Some(package)) = (agent, package) {
            let lost = deleted.0.entry(package).or_default();
            lost.entry(agent).or_default().push((action, to));
        }
    }
    Ok(count)
}

/// Adds the change of every agent that lost rows in `deleted` to `deltas`: what it lost and
/// what it still has of each package.
pub(super) async fn count_deleted(
    conn: &mut Conn,
    deleted: Deleted,
    deltas: &mut Deltas,
) -> mysql_async::Result<()> {
    for (package, gone) in deleted.0 {
        let agents: BTreeSet<u64> = gone.keys().copied().collect();
        if agents.is_empty() {
            continue;
        }
        let remaining = remaining_rows(conn, package, &agents).await?;
        for (agent, lost) in &gone {
            let kept: Vec<Pending<'_>> = remaining
                .get(agent)
                .map(|rows| {
                    rows.iter()
                        .map(|(a, t)| (package, a.as_str(), t.as_deref()))
                        .collect()
                })
                .unwrap_or_default();
            let before = kept.iter().copied().chain(
                lost.iter()
                    .map(|(a, t)| (package, a.as_str(), t.as_deref())),
            );
            deltas.agent(before, kept.iter().copied());
        }
    }
    Ok(())
}

/// The pending rows of `package` that `agents` still have: through (package, approved, agent),
/// the agents' own rows of the package only, [`BATCH`] agents a query.
async fn remaining_rows(
    conn: &mut Conn,
    package: u64,
    agents: &BTreeSet<u64>,
) -> mysql_async::Result<HashMap<u64, Vec<(String, Option<String>)>>> {
    let agents: Vec<u64> = agents.iter().copied().collect();
    let mut rows: Vec<AgentRow> = Vec::new();
    for chunk in agents.chunks(BATCH) {
        let found: Vec<AgentRow> = conn
            .query(format!(
                "SELECT t.agent, CAST(t.action AS CHAR), t.to_version
                   FROM task t FORCE INDEX (task_approval)
                  WHERE t.package = {package} AND t.approved = 0 AND t.agent IN {}
                    AND t.action IS NOT NULL",
                tuple(chunk.iter().copied())
            ))
            .await?;
        rows.extend(found);
    }
    let mut by_agent: HashMap<u64, Vec<(String, Option<String>)>> = HashMap::new();
    for (agent, action, to) in rows {
        by_agent.entry(agent).or_default().push((action, to));
    }
    Ok(by_agent)
}

/// A row-level count as read back: package, action, target version (`''` for none), agents.
type RowCount = (u64, String, String, i64);
/// A package-level count as read back: package, action (`''` for every action), agents.
type PackageCount = (u64, String, i64);

/// One step of the summary check (see [`crate::SummaryCheck`]): the next [`CHECK_PACKAGES`]
/// packages after `after`, recounted from their pending rows and corrected where the summary
/// differs. Runs under REPEATABLE READ: the summary rows of those packages, and the gaps
/// between them, are locked first, so that no transaction adds deltas for them while they are
/// counted, and the rows are counted in a snapshot taken after the locks were granted.
/// Returns the last package checked (`None` past the last) and the keys corrected.
pub(super) async fn check_step(
    conn: &mut Conn,
    after: u64,
) -> mysql_async::Result<(Option<u64>, u64)> {
    conn.query_drop("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await?;
    conn.query_drop("START TRANSACTION").await?;
    let ids: Vec<u64> = conn
        .query(format!(
            "SELECT id FROM package WHERE id > {after} ORDER BY id LIMIT {CHECK_PACKAGES} \
             LOCK IN SHARE MODE"
        ))
        .await?;
    let (Some(&first), Some(&last)) = (ids.first(), ids.last()) else {
        conn.query_drop("COMMIT").await?;
        return Ok((None, 0));
    };
    let range = format!("package BETWEEN {first} AND {last}");
    // Every slot's rows locked, then summed per key.
    let rows: Vec<RowCount> = conn
        .query(format!(
            "SELECT package, action, to_version, CAST(SUM(agents) AS SIGNED)
               FROM pending_summary WHERE {range}
              GROUP BY package, action, to_version FOR UPDATE"
        ))
        .await?;
    let packages: Vec<PackageCount> = conn
        .query(format!(
            "SELECT package, action, CAST(SUM(agents) AS SIGNED)
               FROM pending_package_summary WHERE {range}
              GROUP BY package, action FOR UPDATE"
        ))
        .await?;
    let counted = format!(
        "FROM task t FORCE INDEX (task_overview)
         WHERE t.{range} AND t.approved = 0 AND t.agent IS NOT NULL AND t.action IS NOT NULL"
    );
    let row_recount: Vec<RowCount> = conn
        .query(format!(
            "SELECT t.package, CAST(t.action AS CHAR), COALESCE(t.to_version, ''),
                    COUNT(DISTINCT t.agent) {counted}
              GROUP BY t.package, t.action, COALESCE(t.to_version, '')"
        ))
        .await?;
    let mut package_recount: Vec<PackageCount> = conn
        .query(format!(
            "SELECT t.package, CAST(t.action AS CHAR), COUNT(DISTINCT t.agent) {counted}
              GROUP BY t.package, t.action"
        ))
        .await?;
    let any: Vec<PackageCount> = conn
        .query(format!(
            "SELECT t.package, '', COUNT(DISTINCT t.agent) {counted} GROUP BY t.package"
        ))
        .await?;
    package_recount.extend(any);
    let deltas = Deltas::between(
        rows.into_iter().map(|(p, a, t, n)| ((p, a, t), n)),
        row_recount.into_iter().map(|(p, a, t, n)| ((p, a, t), n)),
        packages.into_iter().map(|(p, a, n)| ((p, a), n)),
        package_recount.into_iter().map(|(p, a, n)| ((p, a), n)),
    );
    let corrected = deltas.keys();
    apply(conn, &deltas).await?;
    conn.query_drop("COMMIT").await?;
    Ok((Some(last), corrected))
}

/// Most packages one step of the summary check recounts.
pub(super) const CHECK_PACKAGES: usize = 64;
