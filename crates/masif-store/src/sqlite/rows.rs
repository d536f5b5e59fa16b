//! Row conversion and the small lookups every SQLite query module shares: ids by name, raw task
//! rows, approval patterns, and turning stored text back into checked protocol types.

use masif_proto::{Action, AgentName, PackageName, Task, TaskSet, Version};
use rusqlite::{OptionalExtension, Row, Transaction};

use crate::backoff::Failure;
use crate::pending::Pattern;
use crate::stored::task_from_text;
use crate::{Approval, StoreError};

/// A task row as stored, before any validation: every column may be NULL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct RawTask {
    pub package: Option<String>,
    pub action: Option<String>,
    pub from_version: Option<String>,
    pub to_version: Option<String>,
}

impl RawTask {
    pub(super) fn from_task(task: &Task) -> Self {
        Self {
            package: Some(task.package().as_str().to_owned()),
            action: Some(task.action().as_str().to_owned()),
            from_version: task.from_version().map(|v| v.as_str().to_owned()),
            to_version: task.to_version().map(|v| v.as_str().to_owned()),
        }
    }

    /// Reads package name, action, from_version, to_version from columns `first..first + 4`.
    pub(super) fn from_row(row: &Row<'_>, first: usize) -> rusqlite::Result<Self> {
        Ok(Self {
            package: row.get(first)?,
            action: row.get(first + 1)?,
            from_version: row.get(first + 2)?,
            to_version: row.get(first + 3)?,
        })
    }

    /// The checked task, or an error naming what is wrong with the stored row.
    pub(super) fn to_task(&self) -> Result<Task, StoreError> {
        task_from_text(
            self.package.clone(),
            self.action.as_deref(),
            self.from_version.clone(),
            self.to_version.clone(),
        )
        .map_err(|why| StoreError::Unreadable(format!("task {self:?}: {why}")))
    }
}

pub(super) fn parse_action(stored: Option<&str>) -> Option<Action> {
    stored.and_then(|a| a.parse().ok())
}

/// The approval patterns that can match `reported` for `agent_id`: rows for this agent or
/// every agent (NULL), for any package (NULL) or one of the reported packages, read by index
/// range on `task (package, approved, agent)` however many other approvals pile up.
pub(super) fn approval_patterns(
    tx: &Transaction<'_>,
    agent_id: i64,
    reported: &TaskSet,
) -> rusqlite::Result<Vec<Pattern>> {
    let row_to_pattern = |package: Option<&str>| {
        let package = package.map(str::to_owned);
        move |r: &Row<'_>| pattern_from_row(r, package.clone())
    };
    let mut patterns: Vec<Pattern> = tx
        .prepare_cached(
            "SELECT action, from_version, to_version FROM task
              WHERE package IS NULL AND approved = 1 AND (agent IS NULL OR agent = ?1)",
        )?
        .query_map([agent_id], row_to_pattern(None))?
        .collect::<rusqlite::Result<_>>()?;
    let mut per_package = tx.prepare_cached(
        "SELECT t.action, t.from_version, t.to_version
           FROM package p JOIN task t ON t.package = p.id
          WHERE p.name = ?1 AND t.approved = 1 AND (t.agent IS NULL OR t.agent = ?2)",
    )?;
    let mut packages: Vec<&str> = reported.iter().map(|t| t.package().as_str()).collect();
    packages.dedup(); // a TaskSet is sorted by package first
    for package in packages {
        for pattern in per_package.query_map((package, agent_id), row_to_pattern(Some(package)))? {
            patterns.push(pattern?);
        }
    }
    Ok(patterns)
}

/// An approval row's action, from_version and to_version (columns 0 to 2) as a pattern for
/// `package` (`None`: any package).
pub(super) fn pattern_from_row(
    row: &Row<'_>,
    package: Option<String>,
) -> rusqlite::Result<Pattern> {
    Ok(Pattern {
        package,
        action: row.get(0)?,
        from_version: row.get(1)?,
        to_version: row.get(2)?,
    })
}

pub(super) fn agent_id(tx: &Transaction<'_>, name: &str) -> rusqlite::Result<Option<i64>> {
    tx.prepare_cached("SELECT id FROM agent WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()
}

/// The id of package `name`, creating the row if needed.
pub(super) fn ensure_package(tx: &Transaction<'_>, name: &str) -> rusqlite::Result<i64> {
    tx.prepare_cached("INSERT INTO package (name) VALUES (?1) ON CONFLICT (name) DO NOTHING")?
        .execute([name])?;
    tx.prepare_cached("SELECT id FROM package WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
}

/// Reads an [`Approval`] from `t.id, agent name, package name, action, from, to, approved_by,
/// approved_at` columns. A stored value that is not a valid name or version is an error.
pub(super) fn approval_from_row(row: &Row<'_>) -> Result<Approval, Failure> {
    let id: i64 = row.get(0)?;
    let text = |i: usize| row.get::<_, Option<String>>(i);
    let invalid = |e: masif_proto::TaskError| StoreError::Unreadable(format!("approval {id}: {e}"));
    let action = text(3)?;
    Ok(Approval {
        id: to_u64(id),
        agent: text(1)?.map(AgentName::new).transpose().map_err(invalid)?,
        package: text(2)?
            .map(PackageName::new)
            .transpose()
            .map_err(invalid)?,
        action: match action.as_deref() {
            None => None,
            Some(a) => Some(a.parse().map_err(invalid)?),
        },
        from_version: text(4)?.map(Version::new).transpose().map_err(invalid)?,
        to_version: text(5)?.map(Version::new).transpose().map_err(invalid)?,
        approved_by: row.get(6)?,
        approved_at: row.get(7)?,
    })
}

/// SQLite integers are signed; ids and counts are never negative.
pub(super) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// `LIMIT`/`OFFSET` values: SQLite takes signed 64-bit integers.
pub(super) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The ids of the agents carrying `tag`, in id order.
pub(super) fn tagged_agents(tx: &Transaction<'_>, tag: &str) -> rusqlite::Result<Vec<i64>> {
    tx.prepare_cached(
        "SELECT g.agent FROM agent_tag g JOIN agent a ON a.id = g.agent
          WHERE g.tag = ?1 ORDER BY g.agent",
    )?
    .query_map([tag], |r| r.get(0))?
    .collect()
}
