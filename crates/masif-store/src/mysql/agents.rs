//! Agents as the UI lists them on MySQL: the summary columns (last contact, pending counts,
//! last run, failing packages), the filtered listing and the counts at the top of the page.

use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};

use super::sql::doing;
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

/// Whether an agent has a package whose latest run failed.
const FAILING: &str = "EXISTS (SELECT 1 FROM run_latest l WHERE l.agent = a.id AND l.failed = 1)";

/// Whether an agent's latest facts say its host needs a reboot.
const REBOOT: &str =
    "EXISTS (SELECT 1 FROM agent_facts f WHERE f.agent = a.id AND f.reboot_required = 1)";

/// The agents `filter` selects, by name.
pub(super) async fn agents(
    conn: &mut Conn,
    filter: &AgentFilter,
    page: Page,
) -> Result<Listing<AgentSummary>> {
    let mut conds = vec!["TRUE".to_owned()];
    let mut params: Vec<Value> = Vec::new();
    if let Some(name) = &filter.name {
        conds.push("INSTR(LOWER(a.name), LOWER(?)) > 0".to_owned());
        params.push(name.as_str().into());
    }
    if let Some(before) = filter.not_seen_since {
        conds.push(format!("{LAST_CONTACT} < ?"));
        params.push(before.into());
    }
    if filter.failing {
        conds.push(FAILING.to_owned());
    }
    if filter.reboot_required {
        conds.push(REBOOT.to_owned());
    }
    if let Some(tag) = &filter.tag {
        conds.push(
            "EXISTS (SELECT 1 FROM agent_tag g WHERE g.agent = a.id AND g.tag = ?)".to_owned(),
        );
        params.push(tag.as_str().into());
    }
    let cond = conds.join(" AND ");
    let total = conn
        .exec_first::<u64, _, _>(
            format!(
                "SELECT COUNT(*) FROM agent a LEFT JOIN agent_report r ON r.agent = a.id \
                 WHERE {cond}"
            ),
            params.clone(),
        )
        .await
        .map_err(doing("counting agents"))?
        .unwrap_or(0);
    let rows: Vec<Row> = conn
        .exec(
            format!(
                "{SUMMARY} WHERE {cond} ORDER BY a.name LIMIT {} OFFSET {}",
                page.limit, page.offset
            ),
            params,
        )
        .await
        .map_err(doing("listing agents"))?;
    Ok(Listing {
        rows: rows.into_iter().filter_map(summary_from_row).collect(),
        total,
    })
}

/// All agents, the offline ones (last contact before `offline_before`), the failing ones and
/// those needing a reboot, in one pass over `agent`.
pub(super) async fn agent_counts(conn: &mut Conn, offline_before: i64) -> Result<AgentCounts> {
    let counts: Option<(u64, u64, u64, u64)> = conn
        .exec_first(
            format!(
                "SELECT COUNT(*), CAST(COALESCE(SUM({LAST_CONTACT} < ?), 0) AS UNSIGNED),
                        CAST(COALESCE(SUM({FAILING}), 0) AS UNSIGNED),
                        CAST(COALESCE(SUM({REBOOT}), 0) AS UNSIGNED)
                   FROM agent a LEFT JOIN agent_report r ON r.agent = a.id"
            ),
            (offline_before,),
        )
        .await
        .map_err(doing("counting agents"))?;
    let (agents, offline, failing, reboot_required) = counts.unwrap_or_default();
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
