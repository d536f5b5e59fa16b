//! The back-end independent core of storing run results: which runs of a batch to insert and
//! in what order, each package's latest outcome among them, the purge cutoff, and a stored run
//! row read back into a checked [`RunRecord`]. Both back ends use it, so both store alike.

use std::collections::{BTreeMap, HashSet};

use masif_proto::v2::{Outcome, Run, RunId, RunOutput};
use masif_proto::{parse_task_list, render_task_list, PackageName};

use crate::{Retention, RunRecord, StoreError};

/// The runs of `runs` to insert: the first of each run id, without those whose id is in
/// `stored`, oldest start first (ties keep their order), so that ids, which order an agent's
/// runs, follow their start within a batch.
pub(crate) fn to_insert<'r>(runs: &'r [Run], stored: &HashSet<&str>) -> Vec<&'r Run> {
    let mut seen = HashSet::new();
    let mut new: Vec<&Run> = runs
        .iter()
        .filter(|r| !stored.contains(r.id.as_str()) && seen.insert(r.id.as_str()))
        .collect();
    new.sort_by_key(|r| r.started_at);
    new
}

/// The text columns of a run's row: (outcome, the task list as v1 JSON).
pub(crate) fn columns(run: &Run) -> (&'static str, String) {
    (run.outcome.as_str(), render_task_list(&run.tasks))
}

/// The latest outcome of one package on one agent, for `run_latest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Latest<'r> {
    pub package: &'r str,
    /// The row id of the run.
    pub run: u64,
    pub failed: bool,
    pub started_at: i64,
}

/// Per package, the newest of the `inserted` runs (row id, run): latest start, then highest id.
/// Sorted by package (the primary key order, in which every writer locks the rows).
pub(crate) fn latest_per_package<'r>(inserted: &[(u64, &'r Run)]) -> Vec<Latest<'r>> {
    let mut latest: BTreeMap<&str, Latest<'r>> = BTreeMap::new();
    for &(id, run) in inserted {
        let candidate = Latest {
            package: run.package.as_str(),
            run: id,
            failed: run.outcome == Outcome::Failed,
            started_at: run.started_at,
        };
        latest
            .entry(run.package.as_str())
            .and_modify(|l| {
                if (candidate.started_at, candidate.run) >= (l.started_at, l.run) {
                    *l = candidate.clone();
                }
            })
            .or_insert_with(|| candidate.clone());
    }
    latest.into_values().collect()
}

/// Runs (and latest outcomes) that started before this are purged.
pub(crate) fn purge_before(retention: &Retention, now: i64) -> i64 {
    let age = i64::try_from(retention.max_age_secs).unwrap_or(i64::MAX);
    now.saturating_sub(age)
}

/// The newest run of an agent as listings show it, from its stored outcome and start (both
/// NULL when the agent has no run); an outcome this program does not know is left out.
pub(crate) fn last_run(outcome: Option<String>, started_at: Option<i64>) -> Option<(Outcome, i64)> {
    let (outcome, started_at) = (outcome?, started_at?);
    match outcome.parse() {
        Ok(known) => Some((known, started_at)),
        Err(()) => {
            tracing::warn!(outcome, "skipping a run with an unknown outcome");
            None
        }
    }
}

/// Most rows one purge statement deletes.
pub(crate) const PURGE_CHUNK: usize = 10_000;

/// A run row as stored, before any check: another tool may have written anything.
#[derive(Debug, Clone, Default)]
pub(crate) struct StoredRun {
    /// The row id, to name the row in errors.
    pub id: u64,
    pub run_key: String,
    pub package: String,
    pub started_at: i64,
    pub duration_ms: u64,
    pub exit_code: Option<i32>,
    pub outcome: String,
    pub tasks: String,
    pub output: String,
}

impl StoredRun {
    /// The checked record, or [`StoreError::Unreadable`] naming the row and what is wrong.
    pub(crate) fn into_record(self) -> Result<RunRecord, StoreError> {
        let id = self.id;
        let bad =
            |what: &str, why: String| StoreError::Unreadable(format!("run {id}: {what} {why}"));
        Ok(RunRecord {
            run_id: RunId::new(self.run_key).map_err(|e| bad("id", e))?,
            package: PackageName::new(self.package).map_err(|e| bad("package", e.to_string()))?,
            started_at: self.started_at,
            duration_ms: self.duration_ms,
            exit_code: self.exit_code,
            outcome: self
                .outcome
                .parse()
                .map_err(|()| bad("outcome", format!("{:?} is not known", self.outcome)))?,
            tasks: parse_task_list(self.tasks.as_bytes())
                .map_err(|e| bad("tasks", e.to_string()))?,
            output: RunOutput::new(self.output).map_err(|e| bad("output", e))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use masif_proto::{Action, Task, TaskSet, Version};

    fn run(id: &str, package: &str, started_at: i64, outcome: Outcome) -> Run {
        let task = Task::new(
            PackageName::new(package).unwrap(),
            Action::Update,
            Some(Version::new("1").unwrap()),
            Some(Version::new("2").unwrap()),
        )
        .unwrap();
        Run {
            id: RunId::new(id).unwrap(),
            package: PackageName::new(package).unwrap(),
            started_at,
            duration_ms: 5,
            exit_code: Some(0),
            outcome,
            tasks: TaskSet::from([task]),
            output: RunOutput::new("ok").unwrap(),
        }
    }

    #[test]
    fn batches_insert_each_new_id_once_oldest_first() {
        let runs = [
            run("c", "p", 30, Outcome::Succeeded),
            run("a", "p", 10, Outcome::Failed),
            run("b", "q", 20, Outcome::Succeeded),
            run("a", "p", 99, Outcome::Succeeded),
        ];
        let stored = HashSet::from(["b"]);
        let ids: Vec<&str> = to_insert(&runs, &stored)
            .iter()
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(ids, ["a", "c"]);
    }

    #[test]
    fn the_latest_run_of_each_package_wins() {
        let (a, b, c, d) = (
            run("a", "p", 10, Outcome::Failed),
            run("b", "p", 30, Outcome::Succeeded),
            run("c", "p", 30, Outcome::Failed),
            run("d", "q", 5, Outcome::PlanChanged),
        );
        let latest = latest_per_package(&[(1, &a), (3, &c), (2, &b), (4, &d)]);
        assert_eq!(
            latest,
            [
                Latest {
                    package: "p",
                    run: 3,
                    failed: true,
                    started_at: 30
                },
                Latest {
                    package: "q",
                    run: 4,
                    failed: false,
                    started_at: 5
                },
            ]
        );
    }

    #[test]
    fn stored_rows_are_checked() {
        let good = StoredRun {
            id: 7,
            run_key: "r1".into(),
            package: "perl".into(),
            outcome: "plan-changed".into(),
            tasks: r#"[{"package":"perl","action":"install","to_version":"1"}]"#.into(),
            output: "<b>ü</b>\n".into(),
            ..StoredRun::default()
        };
        let record = good.clone().into_record().unwrap();
        assert_eq!(record.outcome, Outcome::PlanChanged);
        assert_eq!(record.output.as_str(), "<b>ü</b>\n");
        for bad in [
            StoredRun {
                outcome: "exploded".into(),
                ..good.clone()
            },
            StoredRun {
                tasks: "not json".into(),
                ..good.clone()
            },
            StoredRun {
                output: "bell \u{7}".into(),
                ..good.clone()
            },
            StoredRun {
                run_key: "white space".into(),
                ..good.clone()
            },
        ] {
            let err = bad.into_record().unwrap_err();
            assert!(
                matches!(&err, StoreError::Unreadable(m) if m.starts_with("run 7: ")),
                "{err}"
            );
        }
        assert_eq!(
            purge_before(&Retention::default(), 100 * 86_400),
            10 * 86_400
        );
    }
}
