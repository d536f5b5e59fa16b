//! The report step of a cycle: tell the master every task this host needs and learn from
//! its answer which of them are approved. Queued run results go first.

use std::time::{Duration, Instant};

use masif_proto::facts::Facts;
use masif_proto::v2::{DeferReason, ReportAnswer};
use masif_proto::TaskSet;

use super::state::State;
use super::stop::Stop;
use super::Agent;
use crate::master::MasterError;
use crate::status::{Activity, Deferral};

/// How the report step ended.
pub(super) enum Reported {
    /// Nothing changed and the last report is recent: no report was sent.
    NotDue,
    /// The master answered; its approvals are now the ones the loop knows.
    Answered,
    /// The report failed (the message says why); approvals known before stay valid.
    Failed(String),
    /// Shutdown came before the answer.
    Stopped,
}

impl Agent {
    /// Reports `needed` (every task this host needs, approved ones too) if a report is due,
    /// and learns what is approved from the answer.
    ///
    /// Every task is reported: the answer is the authoritative set of approvals, so one
    /// revoked in the UI stops counting at the next report. (The original reported only
    /// tasks not yet known to be approved and could never learn of a revocation.) The master
    /// stores the same pending set either way.
    pub(super) async fn report_if_due(
        &self,
        st: &mut State,
        needed: &TaskSet,
        stop: &mut Stop,
    ) -> Reported {
        let facts = st.known.facts_for(needed);
        if st.quiet_rest().is_some() || !self.report_due(st, needed, &facts) {
            return Reported::NotDue;
        }
        if self.deliver_runs(st, stop).await {
            return Reported::Stopped;
        }
        self.monitor.set_activity(Activity::Reporting);
        let known = st.approved.clone();
        match stop
            .race(self.master.report(needed, &known, Duration::ZERO, &facts))
            .await
        {
            None => Reported::Stopped,
            Some(Ok(answer)) => {
                self.learn_approvals(st, needed, facts, answer);
                Reported::Answered
            }
            Some(Err(e)) => Reported::Failed(self.report_failed(st, e)),
        }
    }

    /// A report is due when the needed tasks or the host's facts (a reboot now required, a
    /// package held) changed since the last answered report; with something needed, when
    /// that report is half a report interval old (cycles come faster while a lock is waited
    /// out or a failed package is retried); with nothing needed, when it is about a report
    /// interval old (a heartbeat: the master sees the agent alive).
    fn report_due(&self, st: &State, needed: &TaskSet, facts: &Facts) -> bool {
        if st.last_reported.as_ref() != Some(needed) {
            return true;
        }
        if st.last_facts.as_ref() != Some(facts) {
            tracing::debug!("the host's facts changed; reporting");
            return true;
        }
        let age = st.last_report_at.map(|t| t.elapsed());
        let due_after = if needed.is_empty() {
            self.intervals.report.mul_f64(super::wait::JITTER_LOW)
        } else {
            self.intervals.report / 2
        };
        age.is_none_or(|age| age >= due_after)
    }

    /// Takes the master's answer to a report of `needed` with `facts` as the approvals (only
    /// tasks that were reported count) and returns whether those that may run now differ
    /// from those known before. Deferred tasks are remembered (and shown) but not run; a
    /// lease that came with the answer is kept for the upgrade step. Failures of packages
    /// whose approval was withdrawn are forgotten: approved again, they are tried afresh.
    pub(super) fn learn_approvals(
        &self,
        st: &mut State,
        needed: &TaskSet,
        facts: Facts,
        answer: ReportAnswer,
    ) -> bool {
        let approved: TaskSet = answer
            .approved
            .into_iter()
            .filter(|t| needed.contains(t))
            .collect();
        let deferred: TaskSet = answer
            .deferred
            .into_iter()
            .filter(|t| needed.contains(t) && !approved.contains(t))
            .collect();
        let revoked = st
            .approved
            .difference(&approved)
            .filter(|t| !deferred.contains(t))
            .count();
        if revoked > 0 {
            tracing::warn!(revoked, "approvals withdrawn by the master");
        }
        let changed = approved != st.approved;
        let pending = needed.len() - approved.len() - deferred.len();
        tracing::info!(
            pending,
            approved = approved.len(),
            deferred = deferred.len(),
            "reported to the master"
        );
        let deferral = match deferred.is_empty() {
            true => Deferral::default(),
            false => Deferral {
                reason: answer.reason,
                not_before: answer.not_before,
            },
        };
        if (deferred.len(), deferral) != (st.deferred.len(), st.deferral) {
            match deferred.len() {
                0 => tracing::info!("no approved task waits for the roll-out controls any more"),
                n => tracing::info!("{}", deferral_message(n, deferral)),
            }
        }
        // A lease the master did not renew with this answer is still released once.
        st.lease = answer.lease_seconds.map(Duration::from_secs).or(st.lease);
        st.failures
            .forget_unapproved(needed, &approved.union(&deferred).cloned().collect());
        st.approved = approved;
        st.deferred = deferred;
        st.deferral = deferral;
        st.last_reported = Some(needed.clone());
        st.last_facts = Some(facts);
        st.last_report_at = Some(Instant::now());
        st.quiet_until = None;
        let protocol = if self.master.speaks_v2() { 2 } else { 1 };
        self.show_master();
        self.monitor.report_attempted(Some(protocol), pending);
        self.update_counts(st);
        changed
    }

    /// Shows a failed report and returns its message. Approvals known from the last answer
    /// stay valid until the next one. A master that asked to be left alone is.
    pub(super) fn report_failed(&self, st: &mut State, e: MasterError) -> String {
        self.back_off(st, &e);
        let message = format!("report: {e}");
        tracing::warn!(error = %message, "report failed; retrying later");
        self.show_master();
        self.monitor.report_attempted(None, 0);
        self.monitor.error(message.clone());
        message
    }
}

impl Agent {
    /// Shows the master in use (another one after a failed request) on the status.
    fn show_master(&self) {
        if let Some(host) = self.master.master_in_use() {
            self.monitor.set_master(&host);
        }
    }

    /// If `e` is a 429 or 503 answer with `Retry-After`: no report or run delivery goes to
    /// the master before that many seconds have passed (at least one second, at most a
    /// report interval, so a master asking for hours cannot silence the agent longer). Logged
    /// at warning once per episode (until the next answered report).
    pub(super) fn back_off(&self, st: &mut State, e: &MasterError) {
        let Some(asked) = e.retry_after() else {
            return;
        };
        let wait = asked.clamp(MIN_BACKOFF, self.intervals.report.max(MIN_BACKOFF));
        let first = st.quiet_until.is_none();
        st.quiet_until = Some(Instant::now() + wait);
        if first {
            tracing::warn!(
                error = %e,
                asked_secs = asked.as_secs(),
                wait_secs = wait.as_secs(),
                "the master asked the agent to come back later; pausing reports"
            );
        } else {
            tracing::debug!(wait_secs = wait.as_secs(), "the master still asks to wait");
        }
    }
}

/// What waits and why, for the log: "3 approved tasks wait for the maintenance window until
/// 2026-12-08T21:00:00Z".
fn deferral_message(n: usize, deferral: Deferral) -> String {
    let tasks = match n {
        1 => "1 approved task waits".to_owned(),
        n => format!("{n} approved tasks wait"),
    };
    let when = |t: i64| {
        jiff::Timestamp::from_second(t).map_or_else(|_| format!("{t} (unix)"), |t| t.to_string())
    };
    match (deferral.reason, deferral.not_before) {
        (Some(DeferReason::Window), Some(t)) => {
            format!("{tasks} for the maintenance window until {}", when(t))
        }
        (Some(DeferReason::Window), None) => {
            format!("{tasks} for a maintenance window; the master knows none that opens again")
        }
        (Some(DeferReason::MaxInFlight), _) => {
            format!("{tasks} for a free slot (a tag's max in flight is reached)")
        }
        (None, _) => format!("{tasks}: the master defers them"),
    }
}

/// Shortest pause a `Retry-After` makes (`0` would mean a busy loop).
const MIN_BACKOFF: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferral_messages_say_what_waits_for_what() {
        let window = |not_before| Deferral {
            reason: Some(DeferReason::Window),
            not_before,
        };
        assert_eq!(
            deferral_message(3, window(Some(1_796_763_600))),
            "3 approved tasks wait for the maintenance window until 2026-12-08T21:00:00Z"
        );
        assert!(deferral_message(1, window(None)).starts_with("1 approved task waits for a"));
        let slot = Deferral {
            reason: Some(DeferReason::MaxInFlight),
            not_before: None,
        };
        assert!(deferral_message(2, slot).contains("free slot"));
    }
}
