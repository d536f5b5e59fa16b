//! The pending page on SQLite: packages ranked by the number of agents awaiting them, one page
//! of them with their (action, target version) rows, what the agents' facts say of them
//! (security, needs, holders) and the security summary.

use std::collections::{BTreeSet, HashMap, HashSet};

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Transaction};

use super::rows::{self, to_i64, to_u64};
use crate::backoff::Failure;
use crate::facts::{row_id, RowFacts, RowId};
use crate::summary::ANY_ACTION;
use crate::{
    Page, PendingFilter, PendingGroup, PendingOverview, PendingRow, SecuritySummary, StoreError,
};

/// A task fact (`f`) joined to the pending row (`s`) it describes: facts of rows approved since
/// are not read.
const FACT_OF_PENDING: &str = "task_fact f JOIN task s
    ON s.agent = f.agent AND s.package = f.package AND s.approved = 0 AND s.action = f.action
   AND s.from_version IS f.from_version AND s.to_version IS f.to_version";

/// Pending rows of known agents and packages that pass the substring filters `?1` (package)
/// and `?2` (agent), the action `?4` and the tag `?5`, NULL meaning no filter, and with `?3` only security rows (some agent
/// awaiting the same package, action and target version reported a security origin). SQLite's
/// `lower()` folds ASCII only. Read in `(package, approved, agent)` order from that index,
/// which covers the per-package agent counts (the planner would otherwise pick the `approved`
/// index and sort ~4 times slower).
fn filtered_pending() -> String {
    format!(
        "SELECT t.agent, t.package, t.action, t.from_version, t.to_version, t.ctime
           FROM task t INDEXED BY task_approval
          WHERE t.approved = 0 AND t.agent IS NOT NULL AND (?4 IS NULL OR t.action = ?4)
            AND (?1 IS NULL OR t.package IN (SELECT id FROM package
                                              WHERE instr(lower(name), lower(?1)) > 0))
            AND (?2 IS NULL OR t.agent IN (SELECT id FROM agent
                                            WHERE instr(lower(name), lower(?2)) > 0))
            AND (?5 IS NULL OR t.agent IN (SELECT agent FROM agent_tag WHERE tag = ?5))
            AND (?3 = 0 OR EXISTS (SELECT 1 FROM {FACT_OF_PENDING}
                                    WHERE f.security = 1 AND f.package = t.package
                                      AND f.action = t.action AND f.to_version IS t.to_version))"
    )
}

/// Whether the maintained summary (`pending_summary`, `pending_package_summary`) answers
/// `filter`: without a filter, or with package and action filters. Agent, tag and security
/// filters count the pending rows that pass them.
fn summary_answers(filter: &PendingFilter) -> bool {
    filter.agent.is_none() && filter.tag.is_none() && !filter.security_only
}

/// The ranked packages from the summary: `?1` the action (`''`: any), `?2` the package filter.
const SUMMARY_PACKAGES: &str = "
    SELECT s.package, p.name AS package_name, s.agents
      FROM pending_package_summary s JOIN package p ON p.id = s.package
     WHERE s.action = ?1 AND s.agents > 0
       AND (?2 IS NULL OR instr(lower(p.name), lower(?2)) > 0)";

/// One page of ranked packages (`?3` limit, `?4` offset) with their rows from the summary (`?5`
/// the action or NULL) and each row's earliest pending time from the task rows; the columns of
/// the counting query.
const SUMMARY_PAGE: &str = "
    WITH groups AS (
        SELECT s.package, p.name AS package_name, s.agents
          FROM pending_package_summary s JOIN package p ON p.id = s.package
         WHERE s.action = ?1 AND s.agents > 0
           AND (?2 IS NULL OR instr(lower(p.name), lower(?2)) > 0)
         ORDER BY s.agents DESC, p.name LIMIT ?3 OFFSET ?4)
    SELECT g.package_name, g.agents, r.action, NULLIF(r.to_version, ''), r.agents, g.package,
           (SELECT MIN(t.ctime) FROM task t
             WHERE t.package = r.package AND t.approved = 0 AND t.action = r.action
               AND t.to_version IS NULLIF(r.to_version, '') AND t.agent IS NOT NULL)
      FROM groups g JOIN pending_summary r ON r.package = g.package
     WHERE r.agents > 0 AND (?5 IS NULL OR r.action = ?5)
     ORDER BY g.agents DESC, g.package_name";

/// The parameters `?1` to `?5` of [`filtered_pending`].
type Filters<'f> = (
    Option<&'f str>,
    Option<&'f str>,
    bool,
    Option<&'f str>,
    Option<&'f str>,
);

pub(super) fn pending_overview(
    tx: &Transaction<'_>,
    filter: &PendingFilter,
    page: Page,
) -> Result<PendingOverview, Failure> {
    let pending = filtered_pending();
    let filters = (
        filter.package.as_deref(),
        filter.agent.as_deref(),
        filter.security_only,
        filter.action.map(masif_proto::Action::as_str),
        filter.tag.as_ref().map(|t| t.as_str()),
    );
    let (total, mut stmt, params) = if summary_answers(filter) {
        let action = filter.action.map(masif_proto::Action::as_str);
        let params: Vec<Value> = vec![
            action.unwrap_or(ANY_ACTION).to_owned().into(),
            filter.package.clone().into(),
            to_i64(page.limit).into(),
            to_i64(page.offset).into(),
            action.map(str::to_owned).into(),
        ];
        let total: i64 = tx.query_row(
            &format!("SELECT COUNT(*) FROM ({SUMMARY_PACKAGES})"),
            params_from_iter(&params[..2]),
            |r| r.get(0),
        )?;
        (total, tx.prepare_cached(SUMMARY_PAGE)?, params)
    } else {
        let total: i64 = tx.query_row(
            &format!("SELECT COUNT(DISTINCT package) FROM ({pending})"),
            filters,
            |r| r.get(0),
        )?;
        let stmt = tx.prepare_cached(&format!(
            "WITH groups AS (
                 SELECT counted.package, p.name AS package_name, counted.agents
                   FROM (SELECT package, COUNT(DISTINCT agent) AS agents
                           FROM ({pending}) GROUP BY package) counted
                   JOIN package p ON p.id = counted.package
                  ORDER BY counted.agents DESC, p.name LIMIT ?6 OFFSET ?7)
             SELECT g.package_name, g.agents, pe.action, pe.to_version, COUNT(DISTINCT pe.agent),
                    g.package, MIN(pe.ctime)
               FROM groups g CROSS JOIN ({pending}) pe ON pe.package = g.package
              GROUP BY g.package, pe.action, pe.to_version
              ORDER BY g.agents DESC, g.package_name"
        ))?;
        let params: Vec<Value> = vec![
            filters.0.map(str::to_owned).into(),
            filters.1.map(str::to_owned).into(),
            i64::from(filters.2).into(),
            filters.3.map(str::to_owned).into(),
            filters.4.map(str::to_owned).into(),
            to_i64(page.limit).into(),
            to_i64(page.offset).into(),
        ];
        (total, stmt, params)
    };
    let mut query = stmt.query(params_from_iter(&params))?;
    let mut groups: Vec<(i64, PendingGroup)> = Vec::new();
    while let Some(row) = query.next()? {
        let name: String = row.get(0)?;
        let action: Option<String> = row.get(2)?;
        let Some(action) = rows::parse_action(action.as_deref()) else {
            tracing::warn!(package = %name, "skipping pending rows without a valid action");
            continue;
        };
        let to_version = row
            .get::<_, Option<String>>(3)?
            .map(masif_proto::Version::new)
            .transpose()
            .map_err(|e| StoreError::Unreadable(format!("version of package {name}: {e}")))?;
        let pending_row = PendingRow {
            security: false,
            needs: Vec::new(),
            action,
            to_version,
            agents: to_u64(row.get(4)?),
            since: row.get(6)?,
        };
        match groups.last_mut() {
            Some((_, group)) if group.package.as_str() == name => group.rows.push(pending_row),
            _ => groups.push((
                row.get(5)?,
                PendingGroup {
                    held_on: 0,
                    package: masif_proto::PackageName::new(name.clone())
                        .map_err(|e| StoreError::Unreadable(format!("package {name:?}: {e}")))?,
                    agents: to_u64(row.get(1)?),
                    rows: vec![pending_row],
                },
            )),
        }
    }
    drop(query);
    add_facts(tx, &pending, filters, &mut groups)?;
    let groups = groups
        .into_iter()
        .map(|(_, mut group)| {
            group.rows.sort_by(|a, b| {
                (!a.security, a.action, &a.to_version).cmp(&(!b.security, b.action, &b.to_version))
            });
            group
        })
        .collect();
    Ok(PendingOverview {
        security: security_summary(tx)?,
        groups,
        total_packages: to_u64(total),
    })
}

/// Security flag, needs and holders of the page's rows (see `RowFacts`).
fn add_facts(
    tx: &Transaction<'_>,
    pending: &str,
    filters: Filters<'_>,
    groups: &mut [(i64, PendingGroup)],
) -> Result<(), Failure> {
    let mut needs = tx.prepare_cached(&format!(
        "SELECT pe.action, pe.to_version, f.needs
           FROM ({pending}) pe JOIN task_fact f
             ON f.agent = pe.agent AND f.package = pe.package AND f.action = pe.action
            AND f.from_version IS pe.from_version AND f.to_version IS pe.to_version
          WHERE pe.package = ?6 AND f.needs IS NOT NULL"
    ))?;
    let mut security = tx.prepare_cached(&format!(
        "SELECT DISTINCT f.action, f.to_version FROM {FACT_OF_PENDING}
          WHERE f.security = 1 AND f.package = ?1"
    ))?;
    let mut holders = tx.prepare_cached("SELECT COUNT(*) FROM agent_held WHERE package = ?1")?;
    for (id, group) in groups {
        let mut by_row: HashMap<RowId, RowFacts> = HashMap::new();
        let params = (filters.0, filters.1, filters.2, filters.3, filters.4, *id);
        let rows = needs.query_map(params, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?;
        for row in rows {
            let (action, to, needs) = row?;
            by_row
                .entry((action, to))
                .or_default()
                .add_needs(needs.as_deref());
        }
        let rows = security.query_map([*id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        for row in rows {
            by_row.entry(row?).or_default().mark_security();
        }
        for row in &mut group.rows {
            if let Some(facts) = by_row.get(&row_id(row)) {
                facts.apply(row);
            }
        }
        let held: i64 = holders.query_row([group.package.as_str()], |r| r.get(0))?;
        group.held_on = to_u64(held);
    }
    Ok(())
}

/// Distinct pending security rows (package, action, target version) and the distinct agents
/// awaiting them, whatever the page's filter.
fn security_summary(tx: &Transaction<'_>) -> Result<SecuritySummary, Failure> {
    let mut keys = tx.prepare_cached(&format!(
        "SELECT DISTINCT f.package, f.action, f.to_version FROM {FACT_OF_PENDING}
          WHERE f.security = 1 AND f.action <> 'configure'"
    ))?;
    let keys = keys
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<BTreeSet<_>>>()?;
    let mut awaiting = tx.prepare_cached(
        "SELECT DISTINCT agent FROM task
          WHERE approved = 0 AND agent IS NOT NULL AND package = ?1 AND action = ?2
            AND to_version IS ?3",
    )?;
    let mut agents = HashSet::new();
    for key in &keys {
        let (package, action, to) = key;
        for agent in awaiting.query_map((package, action, to), |r| r.get::<_, i64>(0))? {
            agents.insert(agent?);
        }
    }
    Ok(SecuritySummary {
        updates: keys.len() as u64,
        agents: agents.len() as u64,
    })
}
