//! Between cycles: with tasks waiting for approval, a report the master may hold until an
//! approval changes (protocol v2; a v1 master gets a sleep instead); with nothing to do, a
//! sleep until the next check or heartbeat report. Sleeps are jittered so that agents started
//! together spread out.

use std::time::{Duration, Instant};

use masif_proto::TaskSet;
use rand::Rng;

use super::state::State;
use super::stop::Stop;
use super::Agent;
use crate::status::{unix_now, Activity};

/// Report-paced waits are jittered down to this fraction, never up: a report comes at least
/// once per report interval.
pub(super) const JITTER_LOW: f64 = 0.8;
/// Cycles started early by a changed answer come at most this often.
const MIN_EARLY_GAP: Duration = Duration::from_secs(1);
/// Shortest wait for an approval (a retry due now still leaves the master this long).
const MIN_WAIT: Duration = Duration::from_millis(200);

/// How the wait for an approval ended.
pub(super) enum Waited {
    /// Time for the next cycle (approvals changed, or the wait is over).
    Done,
    /// The held report failed (the message says why).
    Failed(String),
    /// Shutdown came first.
    Stopped,
}

impl Agent {
    /// `d` spread by ±20 %.
    pub(super) fn jittered(&self, d: Duration) -> Duration {
        if !self.jitter {
            return d;
        }
        d.mul_f64(rand::rng().random_range(JITTER_LOW..1.2))
    }

    /// `d` shortened by up to 20 %.
    fn jittered_below(&self, d: Duration) -> Duration {
        if !self.jitter {
            return d;
        }
        d.mul_f64(rand::rng().random_range(JITTER_LOW..1.0))
    }

    /// Sleeps `wait`, showing it; `true` if shutdown came first.
    pub(super) async fn sleep(&self, stop: &mut Stop, wait: Duration) -> bool {
        self.monitor.set_activity(Activity::Sleeping {
            until: unix_now() + wait.as_secs() as i64,
        });
        stop.sleep(wait).await
    }

    /// While tasks remain: how long until the next report, the next check (new facts, such
    /// as a reboot now required, reach the master then) or the next retry of a failed
    /// package is due.
    fn approval_wait(&self, st: &State) -> Duration {
        let retry_due = st
            .failures
            .next_retry(self.intervals.retry)
            .map(|t| t.saturating_duration_since(Instant::now()));
        self.intervals
            .report
            .min(self.intervals.check)
            .min(retry_due.unwrap_or(Duration::MAX))
            .max(MIN_WAIT)
    }

    /// With nothing to do: until the next check, or the next heartbeat report if that comes
    /// first.
    pub(super) fn idle_wait(&self, st: &State) -> Duration {
        let check = self.jittered(self.intervals.check);
        let heartbeat = st
            .last_report_at
            .map(|t| self.jittered_below(self.intervals.report.saturating_sub(t.elapsed())))
            .map(|due| due.max(st.quiet_rest().unwrap_or_default()));
        check.min(heartbeat.unwrap_or(Duration::MAX))
    }

    /// After a failed report: what the master asked for (`Retry-After`), or else the retry
    /// interval.
    pub(super) fn failure_wait(&self, st: &State) -> Duration {
        st.quiet_rest()
            .unwrap_or_else(|| self.jittered(self.intervals.retry))
    }

    /// Waits for the next report or retry with `needed` reported and the known approvals:
    /// a master speaking v2 holds the report and answers as soon as an approval of these
    /// tasks changes, and a changed answer ends the wait at once (it counts as the next
    /// cycle's report). A v1 master gets no report here: the agent sleeps, and the next
    /// cycle reports.
    pub(super) async fn await_approval(
        &self,
        st: &mut State,
        stop: &mut Stop,
        needed: &TaskSet,
    ) -> Waited {
        if let Some(rest) = st.quiet_rest() {
            // The master asked to be left alone: no held report until then.
            return self.sleep_rest(stop, rest, Instant::now()).await;
        }
        let wait = self.jittered_below(self.approval_wait(st));
        let started = Instant::now();
        if self.deliver_runs(st, stop).await {
            return Waited::Stopped;
        }
        if !self.master.speaks_v2() {
            return self.sleep_rest(stop, wait, started).await;
        }
        self.monitor.set_activity(Activity::WaitingForApproval {
            until: unix_now() + wait.as_secs() as i64,
        });
        let known = st.approved.clone();
        let facts = st.known.facts_for(needed);
        let held_report = self.master.report(needed, &known, wait, &facts);
        let answer = match stop.race(held_report).await {
            None => return Waited::Stopped,
            Some(Err(e)) => return Waited::Failed(self.report_failed(st, e)),
            Some(Ok(answer)) => answer,
        };
        if !self.learn_approvals(st, needed, facts, answer) {
            // The wait is over, or the master answered early (a v1 master, or one that held
            // the report for less): wait out the rest.
            return self.sleep_rest(stop, wait, started).await;
        }
        let gap = st.last_early_cycle.map_or(Duration::ZERO, |t| {
            MIN_EARLY_GAP.saturating_sub(t.elapsed())
        });
        tracing::debug!(
            after_ms = started.elapsed().as_millis() as u64,
            "approvals changed; acting on them now"
        );
        st.last_early_cycle = Some(Instant::now() + gap);
        if stop.sleep(gap).await {
            return Waited::Stopped;
        }
        Waited::Done
    }

    /// Sleeps what is left of `wait` since `started`.
    async fn sleep_rest(&self, stop: &mut Stop, wait: Duration, started: Instant) -> Waited {
        let rest = wait.saturating_sub(started.elapsed());
        if self.sleep(stop, rest).await {
            Waited::Stopped
        } else {
            Waited::Done
        }
    }
}
