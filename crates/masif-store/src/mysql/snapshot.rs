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

use std::collections::HashMap;
use std::sync::Arc;

use mysql_async::prelude::*;
use mysql_async::Row;

use super::batch::{Batcher, Limits, Waiting};
use super::nodes::Nodes;
use super::rows::{approval_branches, union_of, Answers, Fact, KnownAgent, AGENT, PACKAGE};
use super::shared::{decode, Lists, Stats};
use super::sql::{shared_error, tuple};
use crate::pending::Pattern;
use crate::{Result, StoreError};

/// How many reports one snapshot query answers (their names and versions add up to at most
/// what one report body may carry, which the server's packet limit is checked against), and
/// how many queries run at once.
const LIMITS: Limits = Limits {
    max_batch: 128,
    max_weight: masif_proto::MAX_BODY_BYTES as usize,
    in_flight: 2,
};

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

/// The snapshot query for reports of `agents` with the given lists.
fn snapshot_sql<'a>(agents: &[&'a str], lists: impl IntoIterator<Item = &'a Lists>) -> String {
    let (names, versions) = union_of(lists);
    let agents = tuple(agents.iter().copied());
    let names = (!names.is_empty()).then(|| tuple(names));
    let mut branches = vec![format!(
        "SELECT '{AGENT}', a.id, r.pending_hash, \
           (SELECT COUNT(*) FROM task c WHERE c.agent = a.id AND c.approved = 0), \
           NULL, NULL, NULL, NULL, a.name, r.last_seen \
         FROM agent a LEFT JOIN agent_report r ON r.agent = a.id WHERE a.name IN {agents}"
    )];
    if let Some(names) = &names {
        branches.push(format!(
            "SELECT '{PACKAGE}', id, NULL, NULL, name, NULL, NULL, NULL, NULL, NULL \
             FROM package WHERE name IN {names}"
        ));
    }
    branches.extend(approval_branches(&agents, names.as_deref(), versions));
    branches.join(" UNION ALL ")
}

impl Answers {
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

/// A snapshot, or the failure of the query that was to read it (shared by its batch).
type Answer = std::result::Result<Snapshot, Arc<mysql_async::Error>>;

/// The queue of reports waiting for a snapshot.
#[derive(Debug)]
pub(crate) struct Snapshots {
    batcher: Batcher<Request, Answer>,
}

impl Snapshots {
    /// Starts the background task (on the current tokio runtime).
    pub(crate) fn start(nodes: Nodes, stats: Arc<Stats>) -> Self {
        let batcher = Batcher::start(LIMITS, weigh, move |batch| {
            let (nodes, stats) = (nodes.clone(), stats.clone());
            async move { answer(&nodes, &stats, batch).await }
        });
        Self { batcher }
    }

    /// The snapshot for a report of `agent`, read by a query that started after this call.
    pub(crate) async fn read(&self, agent: &str, lists: &Arc<Lists>) -> Result<Snapshot> {
        match self.batcher.call((agent.to_owned(), lists.clone())).await {
            Some(Ok(snapshot)) => Ok(snapshot),
            Some(Err(e)) => Err(shared_error("reading the state of reports", e)),
            None => Err(StoreError::Closed),
        }
    }
}

fn weigh(request: &Request) -> usize {
    request.0.len() + request.1.weight()
}

/// Runs one batch's query and hands every report its snapshot (or the shared error).
async fn answer(nodes: &Nodes, stats: &Stats, batch: Vec<Waiting<Request, Answer>>) {
    let agents: Vec<&str> = batch.iter().map(|w| w.request.0.as_str()).collect();
    let sql = snapshot_sql(&agents, batch.iter().map(|w| &*w.request.1));
    stats.count_round_trip();
    let facts = async {
        let mut conn = nodes.get_conn().await?;
        let rows: Vec<Row> = conn.query(sql).await?;
        decode::<Fact>(rows)
    }
    .await;
    match facts {
        Ok(facts) => {
            let answers = Answers::of(facts);
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
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn batch_rows_are_sorted_out_by_agent() {
        let approval = |package: &str, owner: Option<&str>| Fact::Approval {
            owner: owner.map(str::to_owned),
            pattern: Pattern {
                package: Some(package.to_owned()),
                action: Some("update".to_owned()),
                ..Pattern::default()
            },
        };
        let answers = Answers::of(vec![
            Fact::Agent {
                name: "one".into(),
                known: KnownAgent {
                    id: 1,
                    digest: None,
                    last_seen: None,
                    pending_rows: 3,
                },
            },
            Fact::Package {
                name: "perl".into(),
                id: 7,
            },
            approval("perl", None),
            approval("bash", Some("two")),
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
