//! The audit step of a cycle: `dpkg --audit` before anything else, a finding not seen before
//! (dpkg interrupted in an earlier life of the agent, or by someone else) handed to the master
//! as a failed run and shown on the monitoring socket. After each of its own runs the agent
//! audits again and takes what it finds as known: that run's result already tells the story.
//! Nothing is ever repaired here.

use std::time::{Instant, SystemTime};

use masif_proto::v2::Outcome;
use masif_proto::TaskSet;

use super::runs::Ended;
use super::state::State;
use super::Agent;
use crate::audit::{self, Audit, Findings, News};
use crate::load::OpKind;

impl Agent {
    /// Audits dpkg's database and reports a new finding, with `plan` (the full plan) giving
    /// the run its tasks.
    pub(super) async fn check_dpkg(&self, st: &mut State, plan: &TaskSet) {
        let started = (SystemTime::now(), Instant::now());
        let Some(audit) = self.audit(st).await else {
            return;
        };
        match audit::news(st.known_audit.as_deref(), &audit) {
            News::Nothing => {}
            News::Cleared => {
                tracing::info!("dpkg --audit finds nothing unfinished any more");
                st.known_audit = None;
            }
            News::Report(findings) => {
                st.known_audit = Some(findings.text.clone());
                self.report_findings(st, &findings, plan, started);
            }
        }
    }

    /// After a run of its own: what dpkg reports now is known (the run's result tells it).
    pub(super) async fn note_dpkg(&self, st: &mut State) {
        match self.audit(st).await {
            Some(Audit::Findings(f)) => st.known_audit = Some(f.text),
            Some(Audit::Clean) => st.known_audit = None,
            Some(Audit::Busy) | None => {}
        }
    }

    /// Runs the audit and shows its findings; `None` if it could not run (logged once until
    /// it works again).
    async fn audit(&self, st: &mut State) -> Option<Audit> {
        let start = Instant::now();
        let audit = self.pm.audit().await;
        self.monitor.record(OpKind::Query, start, Instant::now());
        match audit {
            Ok(audit) => {
                st.audit_failing = false;
                match &audit {
                    Audit::Findings(f) => self.monitor.set_dpkg_audit(Some(f.text.clone())),
                    Audit::Clean => self.monitor.set_dpkg_audit(None),
                    Audit::Busy => {}
                }
                Some(audit)
            }
            Err(e) => {
                if !std::mem::replace(&mut st.audit_failing, true) {
                    tracing::warn!(error = %e, "cannot audit dpkg's database; going on without");
                }
                None
            }
        }
    }

    /// Logs `findings`, shows them as the last error and queues them as a failed run.
    fn report_findings(
        &self,
        st: &mut State,
        findings: &Findings,
        plan: &TaskSet,
        (started, start): (SystemTime, Instant),
    ) {
        let names: Vec<&str> = findings.packages.iter().map(|p| p.as_str()).collect();
        let message = format!(
            "dpkg --audit reports unfinished packages ({}): was dpkg interrupted? The agent \
             does not repair this on its own (it runs only approved plans); check the host \
             and run `dpkg --configure -a` there",
            names.join(", ")
        );
        tracing::error!("{message}");
        self.monitor.error(message.clone());
        let Some((package, tasks)) = audit::run_of(findings, plan) else {
            tracing::warn!("apt plans nothing for these packages: no run result to send");
            return;
        };
        let run = st.runs.push(Ended {
            package,
            tasks,
            started,
            duration: start.elapsed(),
            exit_code: None,
            outcome: Outcome::Failed,
            output: format!("{message}\n\n$ dpkg --audit\n{}\n", findings.text),
        });
        self.monitor.last_run(&run);
    }
}
