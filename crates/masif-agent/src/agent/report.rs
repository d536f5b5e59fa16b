//! The report step of a cycle: tell the master every task this host needs and learn from
//! its answer which of them are approved.

use std::time::Instant;

use masif_proto::TaskSet;

use super::state::State;
use super::stop::Stop;
use super::Agent;
use crate::master::MasterError;
use crate::status::Activity;

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
        if !self.report_due(st, needed) {
            return Reported::NotDue;
        }
        self.monitor.set_activity(Activity::Reporting);
        match stop.race(self.master.report(needed)).await {
            None => Reported::Stopped,
            Some(Ok(approved)) => {
                self.learn_approvals(st, needed, approved);
                Reported::Answered
            }
            Some(Err(e)) => Reported::Failed(self.report_failed(e)),
        }
    }

    /// A report is due when the needed tasks changed since the last answered report, or
    /// (with something needed) when that report is half a report interval old: cycles come
    /// faster while a lock is waited out or a failed package is retried.
    fn report_due(&self, st: &State, needed: &TaskSet) -> bool {
        let half_interval_passed = st
            .last_report_at
            .is_none_or(|t| t.elapsed() >= self.intervals.report / 2);
        st.last_reported.as_ref() != Some(needed) || (!needed.is_empty() && half_interval_passed)
    }

    /// Takes the master's answer as the approvals (only tasks that were reported count).
    fn learn_approvals(&self, st: &mut State, needed: &TaskSet, answer: TaskSet) {
        let approved: TaskSet = answer.into_iter().filter(|t| needed.contains(t)).collect();
        let revoked = st.approved.difference(&approved).count();
        if revoked > 0 {
            tracing::warn!(revoked, "approvals withdrawn by the master");
        }
        let pending = needed.len() - approved.len();
        tracing::info!(pending, approved = approved.len(), "reported to the master");
        st.approved = approved;
        st.last_reported = Some(needed.clone());
        st.last_report_at = Some(Instant::now());
        self.monitor.report_attempted(true, pending);
    }

    /// Shows a failed report and returns its message. Approvals known from the last answer
    /// stay valid until the next one.
    fn report_failed(&self, e: MasterError) -> String {
        let message = format!("report: {e}");
        tracing::warn!(error = %message, "report failed; retrying later");
        self.monitor.report_attempted(false, 0);
        self.monitor.error(message.clone());
        message
    }
}
