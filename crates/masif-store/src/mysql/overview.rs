//! The pending page on MySQL: packages ranked by the number of agents awaiting them, one page
//! of them with their (action, target version) rows. Filters are bound as parameters.

use std::collections::HashMap;

use masif_proto::{Action, PackageName, Version};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};

use super::sql::{doing, tuple};
use crate::{Page, PendingFilter, PendingGroup, PendingOverview, PendingRow, Result};

/// Most package ids put into one `IN (…)` list.
const IDS_PER_QUERY: usize = 10_000;

/// `FROM …`, `WHERE …` and its parameters for the pending rows (`t`) that pass a filter.
struct Source {
    from: &'static str,
    conds: String,
    params: Vec<Value>,
}

impl Source {
    /// The pending rows that pass `filter` (case-insensitive substrings). The plan is fixed
    /// rather than left to the optimizer, which prefers the low-selectivity `approved` index and
    /// then sorts every pending row: a package filter drives from `package`, an agent filter
    /// alone from `agent` (by `task (agent, approved)`), no filter reads `task_overview`
    /// (migration 0007) in package order without touching a row.
    fn of(filter: &PendingFilter) -> Self {
        let mut conds = vec!["t.approved = 0", "t.agent IS NOT NULL"];
        let mut params = Vec::new();
        let from = match (&filter.package, &filter.agent) {
            (Some(package), agent) => {
                conds.push("INSTR(LOWER(fp.name), LOWER(?)) > 0");
                params.push(package.as_str().into());
                if let Some(agent) = agent {
                    conds.push("INSTR(LOWER(fa.name), LOWER(?)) > 0");
                    params.push(agent.as_str().into());
                    "package fp STRAIGHT_JOIN task t FORCE INDEX (task_overview) \
                     ON t.package = fp.id JOIN agent fa ON fa.id = t.agent"
                } else {
                    "package fp STRAIGHT_JOIN task t FORCE INDEX (task_overview) \
                     ON t.package = fp.id"
                }
            }
            (None, Some(agent)) => {
                conds.push("INSTR(LOWER(fa.name), LOWER(?)) > 0");
                params.push(agent.as_str().into());
                "agent fa STRAIGHT_JOIN task t FORCE INDEX (task_agent_approved) \
                 ON t.agent = fa.id"
            }
            (None, None) => "task t FORCE INDEX (task_overview)",
        };
        Self {
            from,
            conds: conds.join(" AND "),
            params,
        }
    }
}

/// The pending page: packages ranked (most agents first, then name), one page of them with
/// their rows.
pub(super) async fn pending_overview(
    conn: &mut Conn,
    filter: &PendingFilter,
    page: Page,
) -> Result<PendingOverview> {
    let source = Source::of(filter);
    let ranked = ranked_packages(conn, &source).await?;
    let total_packages = ranked.len() as u64;
    let offset = usize::try_from(page.offset).unwrap_or(usize::MAX);
    let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
    let mut groups: Vec<(u64, PendingGroup)> = Vec::new();
    for (id, agents, name) in ranked.into_iter().skip(offset).take(limit) {
        match PackageName::new(name) {
            Ok(package) => groups.push((
                id,
                PendingGroup {
                    held_on: 0, // STUB(facts)
                    package,
                    agents,
                    rows: Vec::new(),
                },
            )),
            Err(e) => tracing::warn!(package_id = id, error = %e, "skipping unusable package"),
        }
    }
    if !groups.is_empty() {
        add_rows(conn, &source, &mut groups).await?;
    }
    let groups = groups
        .into_iter()
        .map(|(_, mut g)| {
            g.rows
                .sort_by(|a, b| (a.action, &a.to_version).cmp(&(b.action, &b.to_version)));
            g
        })
        .collect();
    Ok(PendingOverview {
        security: Default::default(), // STUB(facts)
        groups,
        total_packages,
    })
}

/// Every matching package as (id, agents awaiting it, name), ranked. Counting is one pass over
/// the covering index; ordering happens here: sorting a few thousand (count, name) pairs costs
/// less than the server's materialize-join-sort of the same rows.
async fn ranked_packages(conn: &mut Conn, source: &Source) -> Result<Vec<(u64, u64, String)>> {
    let counts: Vec<(u64, u64)> = conn
        .exec(
            format!(
                "SELECT t.package, COUNT(DISTINCT t.agent) FROM {} WHERE {} GROUP BY t.package",
                source.from, source.conds
            ),
            source.params.clone(),
        )
        .await
        .map_err(doing("counting agents per pending package"))?;
    let mut names: HashMap<u64, String> = HashMap::with_capacity(counts.len());
    for chunk in counts.chunks(IDS_PER_QUERY) {
        let found: Vec<(u64, String)> = conn
            .query(format!(
                "SELECT id, name FROM package WHERE id IN {}",
                tuple(chunk.iter().map(|(id, _)| *id))
            ))
            .await
            .map_err(doing("reading the names of pending packages"))?;
        names.extend(found);
    }
    let mut ranked: Vec<(u64, u64, String)> = counts
        .into_iter()
        .filter_map(|(id, agents)| names.remove(&id).map(|name| (id, agents, name)))
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.2.cmp(&b.2)));
    Ok(ranked)
}

/// The (action, target version, agents) rows of the page's packages.
async fn add_rows(
    conn: &mut Conn,
    source: &Source,
    groups: &mut [(u64, PendingGroup)],
) -> Result<()> {
    let ids = tuple(groups.iter().map(|(id, _)| *id));
    let rows: Vec<Row> = conn
        .exec(
            format!(
                "SELECT t.package, t.action, t.to_version, COUNT(DISTINCT t.agent)
                   FROM {}
                  WHERE {} AND t.package IN {ids}
                  GROUP BY t.package, t.action, t.to_version",
                source.from, source.conds
            ),
            source.params.clone(),
        )
        .await
        .map_err(doing("reading the rows of pending packages"))?;
    let index: HashMap<u64, usize> = groups
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (*id, i))
        .collect();
    for row in rows {
        let package: u64 = row.get(0).unwrap_or(0);
        let Some(&i) = index.get(&package) else {
            continue;
        };
        let action = row.get::<Option<String>, _>(1).flatten();
        let to = row.get::<Option<String>, _>(2).flatten();
        let (Some(Ok(action)), Ok(to_version)) = (
            action.as_deref().map(str::parse::<Action>),
            to.map(Version::new).transpose(),
        ) else {
            tracing::warn!(
                package_id = package,
                "skipping pending rows without a valid action or version"
            );
            continue;
        };
        groups[i].1.rows.push(PendingRow {
            security: false,   // STUB(facts)
            needs: Vec::new(), // STUB(facts)
            action,
            to_version,
            agents: row.get(3).unwrap_or(0),
        });
    }
    Ok(())
}
