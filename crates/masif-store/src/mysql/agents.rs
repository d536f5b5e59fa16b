//! Agents as the UI lists them on MySQL: the summary columns (last contact, pending counts,
//! last run, failing packages), the filtered listing and the counts at the top of the page,
//! each read from an index as large as what it shows (issue 18: 100,000 agents).

use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};

use super::sql::{doing, tuple};
use crate::rollout_core::tags_from_text;
use crate::runs::last_run;
use crate::{AgentCounts, AgentFilter, AgentSummary, Listing, Page, Result};

/// Agent summary columns (name, times, pending counts, last run, failing packages, reboot
/// required, tags separated by spaces) of `agent a`
/// and `agent_report r`; append `WHERE …`. The last run is one probe of `run (agent, id)`.
pub(super) const SUMMARY: &str = "
    SELECT a.name, a.ctime, a.mtime, r.last_seen,
           (SELECT COUNT(*) FROM task t WHERE t.agent = a.id AND t.approved = 0),
           (SELECT COUNT(DISTINCT t.package) FROM task t WHERE t.agent = a.id AND t.approved = 0),
           (SELECT ru.outcome FROM run ru WHERE ru.agent = a.id ORDER BY ru.id DESC LIMIT 1),
           (SELECT ru.started_at FROM run ru WHERE ru.agent = a.id ORDER BY ru.id DESC LIMIT 1),
           (SELECT COUNT(*) FROM run_latest l WHERE l.agent = a.id AND l.failed = 1),
           COALESCE((SELECT f.reboot_required FROM agent_facts f WHERE f.agent = a.id), 0),
           (SELECT GROUP_CONCAT(g.tag ORDER BY g.tag SEPARATOR ' ')
              FROM agent_tag g WHERE g.agent = a.id)
      FROM agent a
      LEFT JOIN agent_report r ON r.agent = a.id";

/// An agent's last contact: its last report, or for agents only the original master has seen
/// (no `agent_report` row) the last change of its pending set.
const LAST_CONTACT: &str = "COALESCE(r.last_seen, a.mtime)";

/// The agents with a report row not seen since `?`: a range of `agent_report_last_seen`, as
/// large as the offline part of the fleet.
const REPORTED_OFFLINE: &str = "a.id IN (SELECT r.agent FROM agent_report r WHERE r.last_seen < ?)";

/// Whether an agent has a package whose latest run failed.
const FAILING: &str = "EXISTS (SELECT 1 FROM run_latest l WHERE l.agent = a.id AND l.failed = 1)";

/// Whether an agent's latest facts say its host needs a reboot.
const REBOOT: &str =
    "EXISTS (SELECT 1 FROM agent_facts f WHERE f.agent = a.id AND f.reboot_required = 1)";

/// The agents `filter` selects, by name: the page's ids and the total, read without the
/// summary columns (a filter reads its own index: `agent_tag_tag`, `run_latest_failed`,
/// `agent_facts_reboot`, `agent_report_last_seen`; the name order reads `agent (name)` up to
/// the page), then the summary of the page's agents alone.
pub(super) async fn agents(
    conn: &mut Conn,
    filter: &AgentFilter,
    page: Page,
) -> Result<Listing<AgentSummary>> {
    let mut from = "agent a";
    let mut conds = vec!["TRUE".to_owned()];
    let mut params: Vec<Value> = Vec::new();
    if let Some(name) = &filter.name {
        conds.push("INSTR(LOWER(a.name), LOWER(?)) > 0".to_owned());
        params.push(name.as_str().into());
    }
    if let Some(before) = filter.not_seen_since {
        if every_agent_reported(conn).await? {
            conds.push(REPORTED_OFFLINE.to_owned());
        } else {
            from = "agent a LEFT JOIN agent_report r ON r.agent = a.id";
            conds.push(format!("{LAST_CONTACT} < ?"));
        }
        params.push(before.into());
    }
    if filter.failing {
        conds.push(FAILING.to_owned());
    }
    if filter.reboot_required {
        conds.push(REBOOT.to_owned());
    }
    if let Some(tag) = &filter.tag {
        conds.push("a.id IN (SELECT g.agent FROM agent_tag g WHERE g.tag = ?)".to_owned());
        params.push(tag.as_str().into());
    }
    let cond = conds.join(" AND ");
    let total = conn
        .exec_first::<u64, _, _>(
            format!("SELECT COUNT(*) FROM {from} WHERE {cond}"),
            params.clone(),
        )
        .await
        .map_err(doing("counting agents"))?
        .unwrap_or(0);
    let ids: Vec<u64> = conn
        .exec(
            format!(
                "SELECT a.id FROM {from} WHERE {cond} ORDER BY a.name LIMIT {} OFFSET {}",
                page.limit, page.offset
            ),
            params,
        )
        .await
        .map_err(doing("listing agents"))?;
    if ids.is_empty() {
        return Ok(Listing {
            rows: Vec::new(),
            total,
        });
    }
    let rows: Vec<Row> = conn
        .query(format!(
            "{SUMMARY} WHERE a.id IN {} ORDER BY a.name",
            tuple(ids)
        ))
        .await
        .map_err(doing("reading the listed agents"))?;
    Ok(Listing {
        rows: rows.into_iter().filter_map(summary_from_row).collect(),
        total,
    })
}

/// Whether every agent has an `agent_report` row, so that the offline ones are a range of
/// `agent_report_last_seen`. Agents only the original master has seen have none (all of
/// them, just after an existing database was adopted); report rows of agents deleted by other
/// means than this store (the original UI's reset) are left behind. Both kinds are rare and
/// finding them takes a look at every agent, so the two tables are compared by the count and
/// the sum of the agent ids instead: two scans of small indexes, no join.
async fn every_agent_reported(conn: &mut Conn) -> Result<bool> {
    let same: Option<bool> = conn
        .query_first(format!("SELECT {EVERY_AGENT_REPORTED} FROM {AGENT_IDS}"))
        .await
        .map_err(doing("comparing agents and their report rows"))?;
    Ok(same.unwrap_or(false))
}

/// `a.n` agents and the sum `a.s` of their ids: a scan of the name index.
const AGENT_IDS: &str = "(SELECT COUNT(*) n, COALESCE(SUM(id), 0) s FROM agent) a";

/// Of [`AGENT_IDS`]: whether `agent_report` has as many rows and the same sum of agent ids
/// (see [`every_agent_reported`]). A scalar subquery: the optimizer estimates a join of two
/// derived tables as the product of their tables' rows, which the plan guard refuses.
const EVERY_AGENT_REPORTED: &str = "CONCAT(a.n, ':', a.s) = \
    (SELECT CONCAT(COUNT(*), ':', COALESCE(SUM(agent), 0)) FROM agent_report)";

/// All agents, the offline ones (last contact before `offline_before`), the failing ones and
/// those needing a reboot. Each is counted from its own index (see [`agents`]); where some
/// agent has no report row (see [`every_agent_reported`]) the offline ones are counted by
/// looking at every agent instead.
pub(super) async fn agent_counts(conn: &mut Conn, offline_before: i64) -> Result<AgentCounts> {
    let counts: Option<(u64, bool, u64, u64, u64)> = conn
        .exec_first(
            format!(
                "SELECT a.n, {EVERY_AGENT_REPORTED},
                        (SELECT COUNT(*) FROM agent a WHERE {REPORTED_OFFLINE}),
                        (SELECT COUNT(*) FROM agent a WHERE {FAILING}),
                        (SELECT COUNT(*) FROM agent a WHERE {REBOOT})
                   FROM {AGENT_IDS}"
            ),
            (offline_before,),
        )
        .await
        .map_err(doing("counting agents"))?;
    let (agents, all_reported, mut offline, failing, reboot_required) = counts.unwrap_or_default();
    if !all_reported {
        offline = conn
            .exec_first(
                format!(
                    "SELECT COUNT(*) FROM agent a LEFT JOIN agent_report r ON r.agent = a.id
                      WHERE {LAST_CONTACT} < ?"
                ),
                (offline_before,),
            )
            .await
            .map_err(doing("counting offline agents"))?
            .unwrap_or(0);
    }
    Ok(AgentCounts {
        reboot_required,
        agents,
        offline,
        failing,
    })
}

/// An agent of [`SUMMARY`]'s columns; an unusable name is skipped with a warning.
pub(super) fn summary_from_row(mut row: Row) -> Option<AgentSummary> {
    let name: Option<String> = row.get(0);
    let name = match name.map(masif_proto::AgentName::new) {
        Some(Ok(n)) => n,
        other => {
            tracing::warn!(?other, "skipping agent with an unusable name");
            return None;
        }
    };
    let outcome = row.take::<Option<String>, _>(6).flatten();
    let started_at = row.take::<Option<i64>, _>(7).flatten();
    Some(AgentSummary {
        reboot_required: row.get::<Option<u8>, _>(9).flatten().unwrap_or(0) != 0,
        name,
        ctime: row.get(1).unwrap_or(0),
        mtime: row.get(2).unwrap_or(0),
        last_seen: row.get::<Option<i64>, _>(3).flatten(),
        pending_tasks: row.get(4).unwrap_or(0),
        pending_packages: row.get(5).unwrap_or(0),
        last_run: last_run(outcome, started_at),
        failing_packages: row.get(8).unwrap_or(0),
        tags: tags_from_text(row.take::<Option<String>, _>(10).flatten()),
    })
}
