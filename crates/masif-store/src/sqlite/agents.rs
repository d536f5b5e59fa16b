//! Agents as the UI lists them on SQLite: the summary columns (last contact, pending counts,
//! last run, failing packages), the filtered listing and the counts at the top of the page.

use masif_proto::AgentName;
use rusqlite::{Row, Transaction};

use super::rows::{to_i64, to_u64};
use crate::backoff::Failure;
use crate::rollout_core::tags_from_text;
use crate::runs::last_run;
use crate::{AgentCounts, AgentFilter, AgentSummary, Listing, Page, StoreError};

/// Agent summary columns; append `WHERE …` before [`SUMMARY_GROUP`]. The last run is one
/// probe of `run (agent, id)`.
pub(super) const SUMMARY_SELECT: &str = "
    SELECT a.name, a.ctime, a.mtime, r.last_seen, COUNT(t.id), COUNT(DISTINCT t.package),
           (SELECT ru.outcome FROM run ru WHERE ru.agent = a.id ORDER BY ru.id DESC LIMIT 1),
           (SELECT ru.started_at FROM run ru WHERE ru.agent = a.id ORDER BY ru.id DESC LIMIT 1),
           (SELECT COUNT(*) FROM run_latest l WHERE l.agent = a.id AND l.failed = 1),
           COALESCE((SELECT f.reboot_required FROM agent_facts f WHERE f.agent = a.id), 0),
           (SELECT group_concat(g.tag, ' ') FROM agent_tag g WHERE g.agent = a.id)
      FROM agent a
      LEFT JOIN agent_report r ON r.agent = a.id
      LEFT JOIN task t ON t.agent = a.id AND t.approved = 0";
pub(super) const SUMMARY_GROUP: &str = " GROUP BY a.id ORDER BY a.name";

/// An agent's last contact: its last report, or for agents only the original master has seen
/// (no `agent_report` row) the last change of its pending set.
const LAST_CONTACT: &str = "COALESCE(r.last_seen, a.mtime)";

/// Whether an agent has a package whose latest run failed.
const FAILING: &str = "EXISTS (SELECT 1 FROM run_latest l WHERE l.agent = a.id AND l.failed = 1)";

/// Whether an agent's latest facts say its host needs a reboot.
const REBOOT: &str =
    "EXISTS (SELECT 1 FROM agent_facts f WHERE f.agent = a.id AND f.reboot_required = 1)";

/// The agents `filter` selects (`?1` name substring, `?2` last contact before, `?3` failing,
/// `?4` reboot required, `?5` tag; NULL or 0 = no filter), by name. SQLite's `lower()` folds ASCII only.
pub(super) fn agents(
    tx: &Transaction<'_>,
    filter: &AgentFilter,
    page: Page,
) -> Result<Listing<AgentSummary>, Failure> {
    let cond = format!(
        "(?1 IS NULL OR instr(lower(a.name), lower(?1)) > 0)
         AND (?2 IS NULL OR {LAST_CONTACT} < ?2) AND (?3 = 0 OR {FAILING})
         AND (?4 = 0 OR {REBOOT})
         AND (?5 IS NULL OR EXISTS (SELECT 1 FROM agent_tag g
                                     WHERE g.agent = a.id AND g.tag = ?5))"
    );
    let params = (
        &filter.name,
        filter.not_seen_since,
        filter.failing,
        filter.reboot_required,
        filter.tag.as_ref().map(|t| t.as_str()),
    );
    let total: i64 = tx.query_row(
        &format!(
            "SELECT COUNT(*) FROM agent a LEFT JOIN agent_report r ON r.agent = a.id \
             WHERE {cond}"
        ),
        params,
        |r| r.get(0),
    )?;
    let mut stmt = tx.prepare_cached(&format!(
        "{SUMMARY_SELECT} WHERE {cond} {SUMMARY_GROUP} LIMIT ?6 OFFSET ?7"
    ))?;
    let rows = stmt
        .query_map(
            (
                params.0,
                params.1,
                params.2,
                params.3,
                params.4,
                to_i64(page.limit),
                to_i64(page.offset),
            ),
            summary_from_row,
        )?
        .map(|r| r?.map_err(Failure::from))
        .collect::<Result<Vec<_>, Failure>>()?;
    Ok(Listing {
        rows,
        total: to_u64(total),
    })
}

/// All agents, the offline ones (last contact before `offline_before`), the failing ones and
/// those needing a reboot, in one pass over `agent`.
pub(super) fn agent_counts(
    tx: &Transaction<'_>,
    offline_before: i64,
) -> rusqlite::Result<AgentCounts> {
    tx.query_row(
        &format!(
            "SELECT COUNT(*), COALESCE(SUM({LAST_CONTACT} < ?1), 0), COALESCE(SUM({FAILING}), 0),
                    COALESCE(SUM({REBOOT}), 0)
               FROM agent a LEFT JOIN agent_report r ON r.agent = a.id"
        ),
        [offline_before],
        |r| {
            Ok(AgentCounts {
                reboot_required: to_u64(r.get(3)?),
                agents: to_u64(r.get(0)?),
                offline: to_u64(r.get(1)?),
                failing: to_u64(r.get(2)?),
            })
        },
    )
}

/// An agent of [`SUMMARY_SELECT`]'s columns, or what is wrong with its stored name.
pub(super) fn summary_from_row(
    row: &Row<'_>,
) -> rusqlite::Result<Result<AgentSummary, StoreError>> {
    let name: String = row.get(0)?;
    let summary = |name: AgentName| -> rusqlite::Result<AgentSummary> {
        Ok(AgentSummary {
            reboot_required: row.get::<_, i64>(9)? != 0,
            name,
            ctime: row.get(1)?,
            mtime: row.get(2)?,
            last_seen: row.get(3)?,
            pending_tasks: to_u64(row.get(4)?),
            pending_packages: to_u64(row.get(5)?),
            last_run: last_run(row.get(6)?, row.get(7)?),
            failing_packages: to_u64(row.get(8)?),
            tags: tags_from_text(row.get(10)?),
        })
    };
    match AgentName::new(name.clone()) {
        Ok(valid) => summary(valid).map(Ok),
        Err(e) => Ok(Err(StoreError::Unreadable(format!(
            "agent name {name:?}: {e}"
        )))),
    }
}
