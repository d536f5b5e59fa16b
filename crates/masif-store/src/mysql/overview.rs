//! The pending page on MySQL: packages ranked by the number of agents awaiting them, one page
//! of them with their (action, target version) rows, what the agents' facts say of them
//! (security, needs, holders) and the security summary. Filters are bound as parameters.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use masif_proto::{Action, PackageName, Version};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};

use super::changes::{placeholders, BATCH};
use super::sql::{doing, tuple};
use super::summary::SUMMED_PACKAGES;
use crate::facts::{row_id, RowFacts, RowId};
use crate::summary::ANY_ACTION;
use crate::{
    Page, PendingFilter, PendingGroup, PendingOverview, PendingRow, Result, SecuritySummary,
};

/// A task fact (`f`) joined to the pending row (`s`) it describes: facts of rows approved
/// since are not read.
const FACT_OF_PENDING: &str = "task_fact f STRAIGHT_JOIN task s
    ON s.agent = f.agent AND s.package = f.package AND s.approved = 0 AND s.action = f.action
   AND s.from_version <=> f.from_version AND s.to_version <=> f.to_version";

/// Whether pending row `t`'s (package, action, target version) is a security update: some
/// agent awaiting it reported a security origin.
fn security_row() -> String {
    format!(
        "EXISTS (SELECT 1 FROM {FACT_OF_PENDING}
                  WHERE f.security = 1 AND f.package = t.package AND f.action = t.action
                    AND f.to_version <=> t.to_version)"
    )
}

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
    /// alone from `agent` (by `task (agent, approved)`), a tag filter alone from the tag's
    /// agents (`agent_tag (tag, agent)`, then the same index), no filter reads `task_overview`
    /// (migration 0007) in package order without touching a row.
    fn of(filter: &PendingFilter) -> Self {
        let security = security_row();
        let mut conds = vec!["t.approved = 0", "t.agent IS NOT NULL"];
        if filter.security_only {
            conds.push(&security);
        }
        let mut params = Vec::new();
        if let Some(action) = filter.action {
            conds.push("t.action = ?");
            params.push(action.as_str().into());
        }
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
            (None, None) if filter.tag.is_some() => {
                "agent_tag g STRAIGHT_JOIN task t FORCE INDEX (task_agent_approved) \
                 ON t.agent = g.agent"
            }
            (None, None) => "task t FORCE INDEX (task_overview)",
        };
        if let Some(tag) = &filter.tag {
            if filter.package.is_none() && filter.agent.is_none() {
                conds.push("g.tag = ?");
            } else {
                conds.push(
                    "EXISTS (SELECT 1 FROM agent_tag g WHERE g.agent = t.agent AND g.tag = ?)",
                );
            }
            params.push(tag.as_str().into());
        }
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
    let from_summary = summary_answers(filter);
    let ranked = if from_summary {
        summarised_packages(conn, filter).await?
    } else {
        ranked_packages(conn, &source).await?
    };
    let total_packages = ranked.len() as u64;
    let offset = usize::try_from(page.offset).unwrap_or(usize::MAX);
    let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
    let mut groups: Vec<(u64, PendingGroup)> = Vec::new();
    for (id, agents, name) in ranked.into_iter().skip(offset).take(limit) {
        match PackageName::new(name) {
            Ok(package) => groups.push((
                id,
                PendingGroup {
                    held_on: 0,
                    package,
                    agents,
                    rows: Vec::new(),
                },
            )),
            Err(e) => tracing::warn!(package_id = id, error = %e, "skipping unusable package"),
        }
    }
    if !groups.is_empty() {
        if from_summary {
            add_summarised_rows(conn, filter, &mut groups).await?;
        } else {
            add_rows(conn, &source, &mut groups).await?;
        }
        add_facts(conn, &source, &mut groups).await?;
        add_holders(conn, &mut groups).await?;
    }
    let groups = groups
        .into_iter()
        .map(|(_, mut g)| {
            g.rows.sort_by(|a, b| {
                (!a.security, a.action, &a.to_version).cmp(&(!b.security, b.action, &b.to_version))
            });
            g
        })
        .collect();
    Ok(PendingOverview {
        security: security_summary(conn).await?,
        groups,
        total_packages,
    })
}

/// Whether the maintained summary (`pending_summary`, `pending_package_summary`) answers
/// `filter`: without a filter, or with package and action filters. Agent, tag and security
/// filters count the pending rows that pass them ([`Source`]).
fn summary_answers(filter: &PendingFilter) -> bool {
    filter.agent.is_none() && filter.tag.is_none() && !filter.security_only
}

/// Every package of the summary that passes the package and action filters, as
/// (id, agents awaiting it, name), ranked.
async fn summarised_packages(
    conn: &mut Conn,
    filter: &PendingFilter,
) -> Result<Vec<(u64, u64, String)>> {
    let action = filter.action.map_or(ANY_ACTION, Action::as_str);
    let ranked: Vec<(u64, u64, String)> = conn
        .exec(
            format!(
                "SELECT s.package, s.agents, p.name
                   FROM {SUMMED_PACKAGES} s JOIN package p ON p.id = s.package
                  WHERE s.action = ? AND s.agents > 0
                    AND (? IS NULL OR INSTR(LOWER(p.name), LOWER(?)) > 0)"
            ),
            (action, filter.package.as_deref(), filter.package.as_deref()),
        )
        .await
        .map_err(doing("reading the pending packages' counts"))?;
    Ok(ranked_by_agents(ranked))
}

/// The (action, target version, agents) rows of the page's packages from the summary, with the
/// earliest pending time of each from `task_overview` (one index dive per row).
async fn add_summarised_rows(
    conn: &mut Conn,
    filter: &PendingFilter,
    groups: &mut [(u64, PendingGroup)],
) -> Result<()> {
    let ids = tuple(groups.iter().map(|(id, _)| *id));
    let action = filter.action.map(Action::as_str);
    let rows: Vec<(u64, String, String, u64)> = conn
        .exec(
            format!(
                "SELECT package, action, to_version, CAST(SUM(agents) AS UNSIGNED)
                   FROM pending_summary
                  WHERE package IN {ids} AND (? IS NULL OR action = ?)
                  GROUP BY package, action, to_version HAVING SUM(agents) > 0"
            ),
            (action, action),
        )
        .await
        .map_err(doing("reading the pending rows' counts"))?;
    // Every action's rows (a few per package): with only constants besides the grouped columns,
    // the server reads each MIN(ctime) by a loose index scan ("Using index for group-by").
    let since: Vec<(u64, String, Option<String>, Option<i64>)> = conn
        .query(format!(
            "SELECT t.package, CAST(t.action AS CHAR), t.to_version, MIN(t.ctime)
               FROM task t FORCE INDEX (task_overview)
              WHERE t.package IN {ids} AND t.approved = 0
              GROUP BY t.package, t.approved, t.action, t.to_version"
        ))
        .await
        .map_err(doing("reading since when rows are pending"))?;
    let since: HashMap<(u64, String, String), Option<i64>> = since
        .into_iter()
        .map(|(p, a, t, s)| ((p, a, t.unwrap_or_default()), s))
        .collect();
    let index: HashMap<u64, usize> = groups
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (*id, i))
        .collect();
    for (package, action, to, agents) in rows {
        let Some(&i) = index.get(&package) else {
            continue;
        };
        let first = since
            .get(&(package, action.clone(), to.clone()))
            .copied()
            .flatten();
        let to_version = (!to.is_empty()).then(|| Version::new(to)).transpose();
        let (Ok(action), Ok(to_version)) = (action.parse::<Action>(), to_version) else {
            tracing::warn!(
                package_id = package,
                "skipping pending rows without a valid action or version"
            );
            continue;
        };
        groups[i].1.rows.push(PendingRow {
            security: false,
            needs: Vec::new(),
            action,
            to_version,
            agents,
            since: first,
        });
    }
    Ok(())
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
    let ranked: Vec<(u64, u64, String)> = counts
        .into_iter()
        .filter_map(|(id, agents)| names.remove(&id).map(|name| (id, agents, name)))
        .collect();
    Ok(ranked_by_agents(ranked))
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
                "SELECT t.package, t.action, t.to_version, COUNT(DISTINCT t.agent), MIN(t.ctime)
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
            security: false,
            needs: Vec::new(),
            action,
            to_version,
            agents: row.get(3).unwrap_or(0),
            since: row.get::<Option<i64>, _>(4).flatten(),
        });
    }
    Ok(())
}

/// Security flag and needs of the page's rows (see `RowFacts`).
async fn add_facts(
    conn: &mut Conn,
    source: &Source,
    groups: &mut [(u64, PendingGroup)],
) -> Result<()> {
    let ids = tuple(groups.iter().map(|(id, _)| *id));
    let needs: Vec<(u64, String, Option<String>, Option<String>)> = conn
        .exec(
            format!(
                "SELECT t.package, CAST(t.action AS CHAR), t.to_version, f.needs
                   FROM {} JOIN task_fact f
                     ON f.agent = t.agent AND f.package = t.package AND f.action = t.action
                    AND f.from_version <=> t.from_version AND f.to_version <=> t.to_version
                  WHERE {} AND t.package IN {ids} AND f.needs IS NOT NULL",
                source.from, source.conds
            ),
            source.params.clone(),
        )
        .await
        .map_err(doing("reading the needs of pending packages"))?;
    let security: Vec<(u64, String, Option<String>)> = conn
        .query(format!(
            "SELECT DISTINCT f.package, f.action, f.to_version FROM {FACT_OF_PENDING}
              WHERE f.security = 1 AND f.package IN {ids}"
        ))
        .await
        .map_err(doing("reading the security rows of pending packages"))?;
    let mut facts: HashMap<(u64, RowId), RowFacts> = HashMap::new();
    for (package, action, to, needs) in needs {
        facts
            .entry((package, (action, to)))
            .or_default()
            .add_needs(needs.as_deref());
    }
    for (package, action, to) in security {
        facts
            .entry((package, (action, to)))
            .or_default()
            .mark_security();
    }
    for (id, group) in groups.iter_mut() {
        for row in &mut group.rows {
            if let Some(facts) = facts.get(&(*id, row_id(row))) {
                facts.apply(row);
            }
        }
    }
    Ok(())
}

/// How many agents hold each of the page's packages.
async fn add_holders(conn: &mut Conn, groups: &mut [(u64, PendingGroup)]) -> Result<()> {
    let names: Vec<Value> = groups
        .iter()
        .map(|(_, g)| g.package.as_str().into())
        .collect();
    let counts: Vec<(String, u64)> = conn
        .exec(
            format!(
                "SELECT package, COUNT(*) FROM agent_held WHERE package IN {} GROUP BY package",
                placeholders(names.len())
            ),
            names,
        )
        .await
        .map_err(doing("counting the holders of pending packages"))?;
    let counts: HashMap<String, u64> = counts.into_iter().collect();
    for (_, group) in groups {
        group.held_on = counts.get(group.package.as_str()).copied().unwrap_or(0);
    }
    Ok(())
}

/// Distinct pending security rows (package id, action, target version) and the distinct agents
/// awaiting them, whatever the page's filter.
async fn security_summary(conn: &mut Conn) -> Result<SecuritySummary> {
    let keys: Vec<(u64, String, Option<String>)> = conn
        .query(format!(
            "SELECT DISTINCT f.package, f.action, f.to_version FROM {FACT_OF_PENDING}
              WHERE f.security = 1 AND f.action <> 'configure'"
        ))
        .await
        .map_err(doing("reading the pending security updates"))?;
    let keys: BTreeSet<(u64, String, Option<String>)> = keys.into_iter().collect();
    let rows: Vec<(u64, &str, Option<&str>)> = keys
        .iter()
        .map(|(package, action, to)| (*package, action.as_str(), to.as_deref()))
        .collect();
    let agents =
        agents_awaiting_rows(conn, &rows, "finding the agents awaiting security updates").await?;
    Ok(SecuritySummary {
        updates: keys.len() as u64,
        agents: agents.len() as u64,
    })
}

/// The agents with a pending task on any of `rows` (package id, action, target version; the
/// version compared NULL-safe), by name (to id), a few hundred rows a query.
pub(super) async fn agents_awaiting_rows(
    conn: &mut Conn,
    rows: &[(u64, &str, Option<&str>)],
    what: &'static str,
) -> Result<BTreeMap<String, u64>> {
    let mut agents = BTreeMap::new();
    for chunk in rows.chunks(BATCH / 3) {
        let conditions =
            vec!["(t.package = ? AND t.action = ? AND t.to_version <=> ?)"; chunk.len()];
        let params: Vec<Value> = chunk
            .iter()
            .flat_map(|(package, action, to)| {
                [
                    Value::from(*package),
                    Value::from(*action),
                    Value::from(*to),
                ]
            })
            .collect();
        let found: Vec<(u64, String)> = conn
            .exec(
                format!(
                    "SELECT a.id, a.name
                       FROM (SELECT DISTINCT t.agent FROM task t FORCE INDEX (task_overview)
                              WHERE t.approved = 0 AND t.agent IS NOT NULL AND ({})) x
                       JOIN agent a ON a.id = x.agent",
                    conditions.join(" OR ")
                ),
                params,
            )
            .await
            .map_err(doing(what))?;
        agents.extend(found.into_iter().map(|(id, name)| (name, id)));
    }
    Ok(agents)
}

/// Packages (id, agents, name) with the most agents first, then by name.
fn ranked_by_agents(mut packages: Vec<(u64, u64, String)>) -> Vec<(u64, u64, String)> {
    packages.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.2.cmp(&b.2)));
    packages
}
