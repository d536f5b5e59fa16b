//! The upgrade step of a cycle: upgrade approved packages one at a time (the one with the
//! smallest fully approved plan first), finding out from a new full plan what each run did.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use masif_proto::{PackageName, TaskSet};

use super::plan::Planned;
use super::state::{Cycle, State};
use super::stop::Stop;
use super::Agent;
use crate::apt::last_lines;
use crate::decide;
use crate::exec::Output;
use crate::load::OpKind;
use crate::pm::RunOutcome;
use crate::status::Activity;
use crate::Result;

/// How the upgrade of one package ended.
enum Upgrade {
    Done,
    Busy,
    Failed(String),
}

impl Agent {
    /// Upgrades approved packages until none is left to try, planning each candidate on
    /// its own first; `full` ends as the last full plan. Each package is tried at most once
    /// per cycle (retried after the retry interval), so this ends even with a retry
    /// interval of zero. Notes in `out` whether shutdown came, which package found the lock
    /// held, the last failure, and whether anything remains to do.
    pub(super) async fn upgrade_approved(
        &self,
        st: &mut State,
        full: &mut TaskSet,
        stop: &mut Stop,
        out: &mut Cycle,
    ) -> Result<()> {
        let mut attempted = BTreeSet::new();
        loop {
            self.update_counts(st);
            if stop.is_set() {
                out.stopped = true;
                return Ok(());
            }
            let now = Instant::now();
            let candidates = self.candidates_now(st, full, &attempted, now);
            if candidates.is_empty() {
                break;
            }
            let Planned { plans, failed } = self.plan_candidates(st, candidates, full, now).await;
            for (package, message) in failed {
                attempted.insert(package);
                out.upgrade_failed = Some(message);
            }
            let Some((package, plan)) = fully_approved(&plans, &st.approved) else {
                break;
            };
            match self.upgrade(st, &package, &plan, full).await? {
                Upgrade::Busy => {
                    out.busy = Some(package);
                    break;
                }
                Upgrade::Done => {
                    attempted.insert(package);
                }
                Upgrade::Failed(message) => {
                    attempted.insert(package);
                    out.upgrade_failed = Some(message);
                }
            }
        }
        out.remaining = !full.is_empty();
        self.update_counts(st);
        Ok(())
    }

    /// Runs one upgrade (the critical section: never interrupted) and finds out from a new
    /// plan what it did; `full` becomes that plan.
    async fn upgrade(
        &self,
        st: &mut State,
        package: &PackageName,
        plan: &TaskSet,
        full: &mut TaskSet,
    ) -> Result<Upgrade> {
        let (ran, start, end) = self.run_upgrade(package, plan.len()).await;
        let output = match ran {
            Ok(RunOutcome::Busy(reason)) => {
                tracing::info!(%package, %reason, "package manager busy; waiting");
                self.monitor.set_activity(Activity::WaitingForLock {
                    package: package.to_string(),
                });
                return Ok(Upgrade::Busy);
            }
            Ok(RunOutcome::Ran(output)) => Some(output),
            Err(e) => {
                // Could not run or timed out: what happened is found out below.
                tracing::error!(%package, error = %e, "running the upgrade failed");
                self.monitor.error(format!("upgrading {package}: {e}"));
                None
            }
        };
        *full = self.plan_full().await?.tasks();
        let unfinished = self.record_outcome(st, plan, full, start, end);
        if unfinished.is_empty() {
            self.monitor.upgrade_done();
            match &output {
                Some(o) if !o.success() => tracing::warn!(
                    %package,
                    status = %o.describe_status(),
                    stderr = %last_lines(&o.stderr, 5),
                    "upgraded, but apt reported an error (about another package?)"
                ),
                _ => tracing::info!(%package, "upgraded"),
            }
            return Ok(Upgrade::Done);
        }
        let message = unfinished_message(package, &unfinished, output.as_ref());
        tracing::error!(%package, error = %message, "upgrade failed; retrying after the retry interval");
        self.monitor.error(message.clone());
        Ok(Upgrade::Failed(message))
    }

    /// Compares the run `plan` with the plan `after` it and returns the packages it left
    /// unfinished. The finished tasks count in the load figures (run from `start` to `end`);
    /// unfinished packages are recorded as failed, the others' failures are cleared.
    fn record_outcome(
        &self,
        st: &mut State,
        plan: &TaskSet,
        after: &TaskSet,
        start: Instant,
        end: Instant,
    ) -> BTreeSet<PackageName> {
        let unfinished = decide::unfinished(plan, after);
        for task in plan {
            if !unfinished.contains(task.package()) {
                self.monitor
                    .record(OpKind::Action(task.action()), start, end);
            }
        }
        let now = Instant::now();
        for p in plan.iter().map(|t| t.package()) {
            if unfinished.contains(p) {
                st.failures.record(p.clone(), now);
            } else {
                st.failures.clear(p);
            }
        }
        unfinished
    }
}

/// The package to upgrade next, with its plan: the one whose whole plan is approved and
/// smallest (`decide::pick`). `None` if every plan still waits for an approval.
fn fully_approved(
    plans: &BTreeMap<PackageName, TaskSet>,
    approved: &TaskSet,
) -> Option<(PackageName, TaskSet)> {
    let Some((package, plan)) = decide::pick(plans, approved) else {
        for (package, plan) in plans {
            let missing = plan.difference(approved).count();
            tracing::debug!(%package, missing, "waiting for approval of its whole plan");
        }
        return None;
    };
    Some((package.clone(), plan.clone()))
}

/// Why an upgrade of `package` failed: what it left unfinished and, if apt ran, its exit
/// status and last lines of output.
fn unfinished_message(
    package: &PackageName,
    unfinished: &BTreeSet<PackageName>,
    output: Option<&Output>,
) -> String {
    let names: Vec<String> = unfinished.iter().map(|p| p.to_string()).collect();
    match output {
        Some(o) => format!(
            "upgrading {package} left {} unfinished ({}): {}",
            names.join(", "),
            o.describe_status(),
            last_lines(&format!("{}\n{}", o.stdout, o.stderr), 8)
        ),
        None => format!("upgrading {package} left {} unfinished", names.join(", ")),
    }
}
