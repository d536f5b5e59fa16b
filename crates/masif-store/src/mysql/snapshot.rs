//! The read every report starts with, coalesced: reports that arrive while snapshot queries
//! are in flight wait for the next one, which reads the state of all of them in one round trip.
//!
//! A snapshot is what one report needs to know before deciding whether to write: the agent's
//! id, stored pending-set digest and number of pending rows, the ids of the
//! reported packages, and the approval rows that can match (agent NULL or this agent; package
//! NULL or a reported one; target version NULL or a reported one: index ranges on
//! `task (package, approved, agent, to_version)`).
//!
//! Every query starts after the reports it answers arrived, so an answer is as fresh as a query
//! of its own would be; nothing is cached. A batch is one text query (a `UNION ALL` whose agent
//! rows and agent-specific approval rows name their agent), so its parse and plan are paid once
//! for a batch of reports, at most two batches at a time (see [`LIMITS`] and `batch`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use mysql_async::prelude::*;
use mysql_async::{Pool, Row};

use super::batch::{Batcher, Limits, Waiting};
use super::report::{decode, Stats};
use super::sql::tuple;
use crate::pending::Pattern;

/// How many reports one snapshot query answers (their names and versions add up to at most
/// what one report body may carry, which the server's packet limit is checked against), and
/// how many queries run at once.
const LIMITS: Limits = Limits {
    max_batch: 128,
    max_weight: masif_proto::MAX_BODY_BYTES as usize,
    in_flight: 2,
};

/// A snapshot query's failure, shared by every report of its batch.
pub(crate) type SharedError = Arc<mysql_async::Error>;

/// What a snapshot knows about the agent.
#[derive(Debug, Clone)]
pub(crate) struct KnownAgent {
    pub id: u64,
    pub digest: Option<Vec<u8>>,
    pub last_seen: Option<i64>,
    pub pending_rows: u64,
}

/// The state one report is decided on.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub agent: Option<KnownAgent>,
    /// Ids of the reported packages that exist (of a batch: of every package its reports
    /// named, a superset).
    pub package_ids: Arc<HashMap<String, u64>>,
    /// The approval rows that can match the report (of a batch: possibly more, which match
    /// none of this report's tasks).
    pub patterns: Vec<Pattern>,
}

/// The reported package names and target versions of one report, built once per report.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lists {
    /// The reported package names, sorted and distinct.
    pub names: Vec<String>,
    /// The reported target versions.
    pub to_versions: BTreeSet<String>,
}

impl Lists {
    /// Roughly the bytes these lists add to a statement.
    pub(crate) fn weight(&self) -> usize {
        let names: usize = self.names.iter().map(|n| n.len() + 4).sum();
        let versions: usize = self.to_versions.iter().map(|v| v.len() + 4).sum();
        names + versions
    }

    pub(crate) fn of(tasks: &masif_proto::TaskSet) -> Self {
        let mut names: Vec<String> = tasks
            .iter()
            .map(|t| t.package().as_str().to_owned())
            .collect();
        names.dedup(); // a TaskSet is sorted by package first
        let to_versions = tasks
            .iter()
            .filter_map(|t| t.to_version().map(|v| v.as_str().to_owned()))
            .collect();
        Self { names, to_versions }
    }
}

/// Columns of every branch of the snapshot union: kind, id, digest, pending count, name,
/// action, from_version, to_version, owner, last_seen (the agent a row is about; NULL for rows
/// about every agent).
pub(crate) type SnapshotRow = (
    String,
    u64,
    Option<Vec<u8>>,
    Option<u64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

/// Union branches (`kind` 'p') returning the approval rows that can match reports of `agents`
/// (an SQL tuple of names; rows for one agent name it as their owner) naming the packages in
/// `names` (an SQL tuple, `None` if they name none) and target versions `to_versions`. The target-version condition keeps approvals of old versions,
/// which pile up, out of the answer and out of row lookups.
pub(crate) fn pattern_branches<'v>(
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
    let columns = |package: &str, owner: &str| {
        format!(
            "SELECT 'p', t.id, NULL, NULL, {package}, t.action, t.from_version, \
             t.to_version, {owner}, NULL"
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

/// An approval row of a snapshot union as a pattern.
fn pattern_from(row: &SnapshotRow) -> Pattern {
    Pattern {
        package: row.4.clone(),
        action: row.5.clone(),
        from_version: row.6.clone(),
        to_version: row.7.clone(),
    }
}

/// The snapshot query for reports of `agents` with the given lists.
fn snapshot_sql<'a>(agents: &[&'a str], lists: impl IntoIterator<Item = &'a Lists>) -> String {
    let mut names = BTreeSet::new();
    let mut versions = BTreeSet::new();
    for l in lists {
        names.extend(l.names.iter().map(String::as_str));
        versions.extend(l.to_versions.iter().map(String::as_str));
    }
    let agents = tuple(agents.iter().copied());
    let names = (!names.is_empty()).then(|| tuple(names));
    let mut branches = vec![format!(
        "SELECT 'a', a.id, r.pending_hash, \
           (SELECT COUNT(*) FROM task c WHERE c.agent = a.id AND c.approved = 0), \
           NULL, NULL, NULL, NULL, a.name, r.last_seen \
         FROM agent a LEFT JOIN agent_report r ON r.agent = a.id WHERE a.name IN {agents}"
    )];
    if let Some(names) = &names {
        branches.push(format!(
            "SELECT 'k', id, NULL, NULL, name, NULL, NULL, NULL, NULL, NULL \
             FROM package WHERE name IN {names}"
        ));
    }
    branches.extend(pattern_branches(&agents, names.as_deref(), versions));
    branches.join(" UNION ALL ")
}

/// The rows of a snapshot query (or of the approval branches alone), sorted out by agent.
pub(crate) struct Answers {
    agents: HashMap<String, KnownAgent>,
    package_ids: Arc<HashMap<String, u64>>,
    /// Approvals for every agent.
    shared: Vec<Pattern>,
    /// Approvals for one agent, by name.
    own: HashMap<String, Vec<Pattern>>,
}

impl Answers {
    pub(crate) fn of(rows: Vec<SnapshotRow>) -> Self {
        let mut agents = HashMap::new();
        let mut package_ids = HashMap::new();
        let mut shared = Vec::new();
        let mut own: HashMap<String, Vec<Pattern>> = HashMap::new();
        for row in rows {
            match (row.0.as_str(), &row.8) {
                ("a", Some(owner)) => {
                    let known = KnownAgent {
                        id: row.1,
                        digest: row.2,
                        last_seen: row.9,
                        pending_rows: row.3.unwrap_or(0),
                    };
                    agents.insert(owner.clone(), known);
                }
                ("k", _) => {
                    if let Some(name) = row.4 {
                        package_ids.insert(name, row.1);
                    }
                }
                (_, None) => shared.push(pattern_from(&row)),
                (_, Some(owner)) => own
                    .entry(owner.clone())
                    .or_default()
                    .push(pattern_from(&row)),
            }
        }
        Self {
            agents,
            package_ids: Arc::new(package_ids),
            shared,
            own,
        }
    }

    /// The approvals that apply to `agent`: those for every agent and its own.
    pub(crate) fn patterns_for(&self, agent: &str) -> Vec<Pattern> {
        let mut patterns = self.shared.clone();
        if let Some(own) = self.own.get(agent) {
            patterns.extend(own.iter().cloned());
        }
        patterns
    }

    fn snapshot(&self, agent: &str) -> Snapshot {
        Snapshot {
            agent: self.agents.get(agent).cloned(),
            package_ids: self.package_ids.clone(),
            patterns: self.patterns_for(agent),
        }
    }
}

/// A report's request for a snapshot: the agent and its lists.
type Request = (String, Arc<Lists>);

/// The queue of reports waiting for a snapshot.
#[derive(Debug)]
pub(crate) struct Snapshots {
    batcher: Batcher<Request, Result<Snapshot, SharedError>>,
}

impl Snapshots {
    /// Starts the background task (on the current tokio runtime).
    pub(crate) fn start(pool: Pool, stats: Arc<Stats>) -> Self {
        let batcher = Batcher::start(LIMITS, weigh, move |batch| {
            let (pool, stats) = (pool.clone(), stats.clone());
            async move { answer(&pool, &stats, batch).await }
        });
        Self { batcher }
    }

    /// The snapshot for a report of `agent`, read by a query that started after this call.
    pub(crate) async fn read(
        &self,
        agent: &str,
        lists: &Arc<Lists>,
    ) -> Result<Snapshot, SharedError> {
        self.batcher
            .call((agent.to_owned(), lists.clone()))
            .await
            .unwrap_or_else(|| Err(Arc::new(store_closed())))
    }
}

fn weigh(request: &Request) -> usize {
    request.0.len() + request.1.weight()
}

/// The error of a report that finds the store's background tasks gone.
pub(crate) fn store_closed() -> mysql_async::Error {
    mysql_async::Error::Other("the store was closed".into())
}

/// Runs one batch's query and hands every report its snapshot (or the shared error).
async fn answer(
    pool: &Pool,
    stats: &Stats,
    batch: Vec<Waiting<Request, Result<Snapshot, SharedError>>>,
) {
    let agents: Vec<&str> = batch.iter().map(|w| w.request.0.as_str()).collect();
    let sql = snapshot_sql(&agents, batch.iter().map(|w| &*w.request.1));
    stats.count_round_trip();
    let rows = async {
        let mut conn = pool.get_conn().await?;
        let rows: Vec<Row> = conn.query(sql).await?;
        decode::<SnapshotRow>(rows)
    }
    .await;
    match rows {
        Ok(rows) => {
            let answers = Answers::of(rows);
            for w in batch {
                let snapshot = answers.snapshot(&w.request.0);
                w.answer(Ok(snapshot));
            }
        }
        Err(e) => {
            let e = Arc::new(e);
            for w in batch {
                w.answer(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_rows_are_sorted_out_by_agent() {
        let row = |kind: &str, id: u64, name: Option<&str>, owner: Option<&str>| -> SnapshotRow {
            (
                kind.to_owned(),
                id,
                None,
                Some(3),
                name.map(str::to_owned),
                Some("update".to_owned()),
                None,
                None,
                owner.map(str::to_owned),
                None,
            )
        };
        let answers = Answers::of(vec![
            row("a", 1, None, Some("one")),
            row("k", 7, Some("perl"), None),
            row("p", 10, Some("perl"), None),
            row("p", 11, Some("bash"), Some("two")),
        ]);
        let one = answers.snapshot("one");
        assert_eq!(one.agent.as_ref().map(|a| a.pending_rows), Some(3));
        assert_eq!(one.package_ids.get("perl"), Some(&7));
        assert_eq!(one.patterns.len(), 1, "only the shared approval");
        let two = answers.snapshot("two");
        assert!(two.agent.is_none(), "agent two has no row yet");
        let packages: Vec<_> = two.patterns.iter().map(|p| p.package.clone()).collect();
        assert_eq!(packages, [Some("perl".into()), Some("bash".into())]);
    }

    #[test]
    fn batch_query_names_every_agent_once_and_quotes_hostile_names() {
        let lists = [
            Lists {
                names: vec!["perl".into()],
                to_versions: ["2".to_owned()].into(),
            },
            Lists {
                names: vec!["a'b".into(), "perl".into()],
                to_versions: BTreeSet::new(),
            },
        ];
        let sql = snapshot_sql(&["h1", "h'2"], lists.iter());
        assert!(sql.contains(r"a.name IN ('h1', 'h\'2')"), "{sql}");
        assert!(sql.contains(r"name IN ('a\'b', 'perl')"), "{sql}");
        assert!(sql.contains("t.to_version IN ('2')"), "{sql}");
    }
}
