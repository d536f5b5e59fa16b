//! The rows of the report path's queries, decoded once, at the boundary, into [`Fact`]s, and
//! sorted out by agent into [`Answers`]; also the approval branches that the snapshot and the
//! write transaction both read.
//!
//! Every SELECT of the report path starts with a kind column naming what its row says, so a
//! multi-statement answer is read by what each row is, never by the position of its result set.
//! Rows of one `UNION ALL` share one column layout: kind, id, digest, pending count, name,
//! action, from_version, to_version, owner, last_seen (see each kind for the columns it uses).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use mysql_async::prelude::{FromRow, FromValue};
use mysql_async::{FromRowError, Row};

use super::sql::tuple;
use crate::pending::Pattern;

/// Kind of an agent's stored state: id (1), digest (2), pending rows (3), name (8), last_seen (9).
pub(crate) const AGENT: &str = "agent";
/// Kind of a package's id: id (1), name (4).
pub(crate) const PACKAGE: &str = "package";
/// Kind of an approval row: package (4), action (5), from (6), to (7), owner (8, NULL: every
/// agent).
pub(crate) const APPROVAL: &str = "approval";
/// Kind of an agent's id: id (1), name (2).
pub(crate) const AGENT_ID: &str = "agent_id";
/// Kind of a stored pending row: id (1), agent name (2), package id (3), action (4), from (5),
/// to (6).
pub(crate) const PENDING: &str = "pending";

/// What a snapshot knows about an agent.
#[derive(Debug, Clone)]
pub(crate) struct KnownAgent {
    pub id: u64,
    pub digest: Option<Vec<u8>>,
    pub last_seen: Option<i64>,
    pub pending_rows: u64,
}

/// Content of a stored pending row, as a report's wanted rows are compared with it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RowKey {
    pub package: u64,
    pub action: String,
    pub from_version: Option<String>,
    pub to_version: Option<String>,
}

/// One decoded row.
#[derive(Debug)]
pub(crate) enum Fact {
    Agent {
        name: String,
        known: KnownAgent,
    },
    Package {
        name: String,
        id: u64,
    },
    /// `owner: None`: an approval for every agent.
    Approval {
        owner: Option<String>,
        pattern: Pattern,
    },
    AgentId {
        name: String,
        id: u64,
    },
    Pending {
        agent: String,
        id: u64,
        key: RowKey,
    },
}

/// Column `i`, taken out of the row; `None` if absent or not a `T`.
fn take<T: FromValue>(row: &mut Row, i: usize) -> Option<T> {
    row.take_opt(i)?.ok()
}

impl FromRow for Fact {
    fn from_row_opt(mut row: Row) -> Result<Self, FromRowError> {
        let r = &mut row;
        let kind: Option<String> = take(r, 0);
        let fact = match kind.as_deref() {
            Some(AGENT) => (|| {
                let known = KnownAgent {
                    id: take(r, 1)?,
                    digest: take(r, 2)?,
                    pending_rows: take::<Option<u64>>(r, 3)?.unwrap_or(0),
                    last_seen: take(r, 9)?,
                };
                Some(Fact::Agent {
                    name: take(r, 8)?,
                    known,
                })
            })(),
            Some(PACKAGE) => (|| {
                Some(Fact::Package {
                    id: take(r, 1)?,
                    name: take(r, 4)?,
                })
            })(),
            Some(APPROVAL) => (|| {
                let pattern = Pattern {
                    package: take(r, 4)?,
                    action: take(r, 5)?,
                    from_version: take(r, 6)?,
                    to_version: take(r, 7)?,
                };
                Some(Fact::Approval {
                    owner: take(r, 8)?,
                    pattern,
                })
            })(),
            Some(AGENT_ID) => (|| {
                Some(Fact::AgentId {
                    id: take(r, 1)?,
                    name: take(r, 2)?,
                })
            })(),
            Some(PENDING) => (|| {
                // A row without package or action can never be wanted: key it so it never
                // matches.
                let id = take(r, 1)?;
                let agent = take(r, 2)?;
                let key = RowKey {
                    package: take::<Option<u64>>(r, 3)?.unwrap_or(0),
                    action: take::<Option<String>>(r, 4)?.unwrap_or_default(),
                    from_version: take(r, 5)?,
                    to_version: take(r, 6)?,
                };
                Some(Fact::Pending { agent, id, key })
            })(),
            _ => None,
        };
        fact.ok_or(FromRowError(row))
    }
}

/// Union branches (kind [`APPROVAL`]) returning the approval rows that can match reports of
/// `agents` (an SQL tuple of names; rows for one agent name it as their owner) naming the
/// packages in `names` (an SQL tuple, `None` if they name none) and target versions
/// `to_versions`. The target-version condition keeps approvals of old versions, which pile
/// up, out of the answer and out of row lookups.
pub(crate) fn approval_branches<'v>(
    agents: &str,
    names: Option<&str>,
    to_versions: impl IntoIterator<Item = &'v str>,
) -> Vec<String> {
    let versions: Vec<&str> = to_versions.into_iter().collect();
    let to = if versions.is_empty() {
        "t.to_version IS NULL".to_owned()
    } else {
        format!(
            "(t.to_version IS NULL OR t.to_version IN {})",
            tuple(versions)
        )
    };
    // STRAIGHT_JOIN pins the join order the indexes are for: from the named packages into
    // `task_approval (package, approved, agent, to_version)`, or from the named agents into
    // `task_agent_approved (agent, approved)`. Left to itself, the optimizer has been seen to
    // scan all of `task` for the agents' branches.
    let mut branches = Vec::with_capacity(4);
    if let Some(names) = names {
        branches.push(format!(
            "{} FROM package p STRAIGHT_JOIN task t ON t.package = p.id \
             WHERE p.name IN {names} AND t.approved = 1 AND t.agent IS NULL AND {to}",
            columns("p.name", "NULL")
        ));
        branches.push(format!(
            "{} FROM agent a STRAIGHT_JOIN task t ON t.agent = a.id \
             STRAIGHT_JOIN package p ON p.id = t.package \
             WHERE a.name IN {agents} AND t.approved = 1 AND p.name IN {names} AND {to}",
            columns("p.name", "a.name")
        ));
    }
    branches.push(format!(
        "{} FROM task t WHERE t.package IS NULL AND t.approved = 1 AND t.agent IS NULL AND {to}",
        columns("NULL", "NULL")
    ));
    branches.push(format!(
        "{} FROM agent a STRAIGHT_JOIN task t ON t.agent = a.id \
         WHERE a.name IN {agents} AND t.package IS NULL AND t.approved = 1 AND {to}",
        columns("NULL", "a.name")
    ));
    branches
}

/// Every approval row in force (kind [`APPROVAL`]), for matching long-polling agents in
/// memory. A row naming an agent or package that no longer exists matches no report (the
/// report joins them by name), so it is left out rather than read as a wildcard.
pub(crate) fn all_approvals() -> String {
    format!(
        "{} FROM task t LEFT JOIN agent a ON a.id = t.agent \
         LEFT JOIN package p ON p.id = t.package \
         WHERE t.approved = 1 AND (t.agent IS NULL OR a.id IS NOT NULL) \
           AND (t.package IS NULL OR p.id IS NOT NULL)",
        columns("p.name", "a.name")
    )
}

/// The columns of an approval row (kind [`APPROVAL`]) with the given package and owner.
fn columns(package: &str, owner: &str) -> String {
    format!(
        "SELECT '{APPROVAL}', t.id, NULL, NULL, {package}, t.action, t.from_version, \
         t.to_version, {owner}, NULL"
    )
}

/// The names and target versions of several reports' lists, distinct and sorted.
pub(crate) fn union_of<'a>(
    lists: impl IntoIterator<Item = &'a super::shared::Lists>,
) -> (BTreeSet<&'a str>, BTreeSet<&'a str>) {
    let mut names = BTreeSet::new();
    let mut versions = BTreeSet::new();
    for l in lists {
        names.extend(l.names.iter().map(String::as_str));
        versions.extend(l.to_versions.iter().map(String::as_str));
    }
    (names, versions)
}

/// The facts of one answer, sorted out by agent.
#[derive(Debug, Default)]
pub(crate) struct Answers {
    pub agents: HashMap<String, KnownAgent>,
    pub agent_ids: HashMap<String, u64>,
    pub package_ids: Arc<HashMap<String, u64>>,
    /// Stored pending rows by agent name: (row id, content).
    pub pending: HashMap<String, Vec<(u64, RowKey)>>,
    /// Approvals for every agent.
    shared: Vec<Pattern>,
    /// Approvals for one agent, by name.
    own: HashMap<String, Vec<Pattern>>,
}

impl Answers {
    pub(crate) fn of(facts: Vec<Fact>) -> Self {
        let mut answers = Self::default();
        let mut package_ids = HashMap::new();
        for fact in facts {
            match fact {
                Fact::Agent { name, known } => {
                    answers.agents.insert(name, known);
                }
                Fact::Package { name, id } => {
                    package_ids.insert(name, id);
                }
                Fact::Approval {
                    owner: None,
                    pattern,
                } => answers.shared.push(pattern),
                Fact::Approval {
                    owner: Some(owner),
                    pattern,
                } => answers.own.entry(owner).or_default().push(pattern),
                Fact::AgentId { name, id } => {
                    answers.agent_ids.insert(name, id);
                }
                Fact::Pending { agent, id, key } => {
                    answers.pending.entry(agent).or_default().push((id, key));
                }
            }
        }
        answers.package_ids = Arc::new(package_ids);
        answers
    }

    /// The approvals that apply to `agent`: those for every agent and its own.
    pub(crate) fn patterns_for(&self, agent: &str) -> Vec<Pattern> {
        let mut patterns = self.shared.clone();
        if let Some(own) = self.own.get(agent) {
            patterns.extend(own.iter().cloned());
        }
        patterns
    }
}
