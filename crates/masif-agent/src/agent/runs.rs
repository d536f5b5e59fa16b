//! Run results: each run of an approved plan (or refusal to run one whose plan changed) as a
//! [`Run`], queued (at most [`MAX_RUNS`], the oldest dropped) and delivered to the master
//! right after the run and before every report; a failed delivery is retried, a master
//! speaking v1 only gets none.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use masif_proto::v2::{Outcome, Run, RunId, RunOutput, MAX_RUNS};
use masif_proto::{PackageName, TaskSet};

use super::state::State;
use super::stop::Stop;
use super::Agent;
use crate::master::MasterError;

/// Longest duration a run may claim (the protocol's limit): 30 days.
const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Runs not yet delivered, and the counter that makes run ids unique.
#[derive(Debug, Default)]
pub(super) struct RunQueue {
    queue: VecDeque<Run>,
    counter: u64,
}

/// What is known of a run when it has ended.
pub(super) struct Ended {
    pub(super) package: PackageName,
    pub(super) tasks: TaskSet,
    /// When it started (wall clock).
    pub(super) started: SystemTime,
    pub(super) duration: Duration,
    pub(super) exit_code: Option<i32>,
    pub(super) outcome: Outcome,
    /// apt-get's stdout and stderr, or why it did not run.
    pub(super) output: String,
}

impl RunQueue {
    /// Turns `ended` into a [`Run`] with a fresh id and queues it; returns a copy.
    pub(super) fn push(&mut self, ended: Ended) -> Run {
        let run = Run {
            id: self.next_id(),
            package: ended.package,
            started_at: unix_secs(ended.started),
            duration_ms: ended.duration.min(MAX_DURATION).as_millis() as u64,
            exit_code: ended.exit_code,
            outcome: ended.outcome,
            tasks: ended.tasks,
            output: RunOutput::tail_of(&ended.output),
        };
        if self.queue.len() >= MAX_RUNS {
            if let Some(dropped) = self.queue.pop_front() {
                tracing::warn!(
                    run = dropped.id.as_str(),
                    package = %dropped.package,
                    "too many run results not delivered; dropping the oldest"
                );
            }
        }
        self.queue.push_back(run.clone());
        run
    }

    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }

    /// `{unix milliseconds}-{counter}`: unique for this agent, also across restarts.
    fn next_id(&mut self) -> RunId {
        self.counter += 1;
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        RunId::new(format!("{millis}-{}", self.counter)).expect("digits and a dash")
    }
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Agent {
    /// Delivers the queued runs, if any: they leave the queue once the master has them, or
    /// at once if it speaks v1 only (it cannot store them). A failed delivery keeps them for
    /// the next attempt. `true` if shutdown came first.
    pub(super) async fn deliver_runs(&self, st: &mut State, stop: &mut Stop) -> bool {
        if st.runs.queue.is_empty() || st.quiet_rest().is_some() {
            return false;
        }
        let runs = &mut st.runs;
        if !self.master.speaks_v2() {
            tracing::debug!(
                runs = runs.len(),
                "the master speaks protocol v1 only; dropping run results"
            );
            runs.queue.clear();
            return false;
        }
        let batch: Vec<Run> = runs.queue.iter().cloned().collect();
        match stop.race(self.master.send_runs(&batch)).await {
            None => return true,
            Some(Ok(())) => {
                tracing::debug!(runs = batch.len(), "run results delivered");
                runs.queue.clear();
            }
            Some(Err(MasterError::V1Only { .. })) => {
                tracing::debug!(
                    runs = batch.len(),
                    "the master speaks protocol v1 only; dropping run results"
                );
                runs.queue.clear();
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, runs = batch.len(), "delivering run results failed; retrying with the next report");
                self.back_off(st, &e);
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(package: &str) -> Ended {
        let tasks: TaskSet = [crate::apt::parse_line(1, "Inst alpha [1] (2 S)")
            .unwrap()
            .task]
        .into();
        Ended {
            package: PackageName::new(package).unwrap(),
            tasks,
            started: SystemTime::now(),
            duration: Duration::from_millis(1500),
            exit_code: Some(0),
            outcome: Outcome::Succeeded,
            output: "\u{1b}[1mdone\n".into(),
        }
    }

    #[test]
    fn runs_get_unique_ids_and_the_oldest_is_dropped_past_the_limit() {
        let mut q = RunQueue::default();
        let first = q.push(ended("p0"));
        assert_eq!(first.duration_ms, 1500);
        assert_eq!(first.output.as_str(), "\u{fffd}[1mdone\n");
        for i in 1..=MAX_RUNS {
            q.push(ended(&format!("p{i}")));
        }
        assert_eq!(q.len(), MAX_RUNS);
        assert_eq!(q.queue.front().unwrap().package.as_str(), "p1");
        let ids: std::collections::BTreeSet<&str> = q.queue.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids.len(), MAX_RUNS);
        assert!(!ids.contains(first.id.as_str()));
    }
}
