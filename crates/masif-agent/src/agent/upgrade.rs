//! The upgrade step of a cycle: upgrade approved packages one at a time (the one with the
//! smallest fully approved plan first), each exactly as approved (refused if apt's plan for it
//! changed meanwhile), finding out from a new full plan what each run did. A max-in-flight
//! lease that came with the approvals is renewed while the step runs and released after it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use masif_proto::v2::Outcome;
use masif_proto::{PackageName, TaskSet};

use super::lease::Renewal;
use super::plan::Planned;
use super::runs::Ended;
use super::state::{Cycle, State};
use super::stop::Stop;
use super::Agent;
use crate::apt::last_lines;
use crate::decide;
use crate::exec::Output;
use crate::load::OpKind;
use crate::pm::{Job, Plan, RunOutcome};
use crate::status::Activity;
use crate::Result;

/// How the upgrade of one package ended.
enum Upgrade {
    Done,
    Busy,
    Failed(String),
    /// Not run: apt would no longer do exactly the approved plan.
    PlanChanged,
}

impl Agent {
    /// Upgrades approved packages until none is left to try, planning each candidate on
    /// its own first; `full` ends as the last full plan. Each package is tried at most once
    /// per cycle (retried after the retry interval), so this ends even with a retry
    /// interval of zero. Each run's result goes to the master right after it. Notes in `out`
    /// whether shutdown came, which package found the lock held, the last failure, and
    /// whether anything remains to do.
    ///
    /// With a lease from the master's last answer, the step renews it in the background
    /// while it runs and releases it when it ends (also on failure or shutdown).
    pub(super) async fn upgrade_approved(
        &self,
        st: &mut State,
        full: &mut Plan,
        stop: &mut Stop,
        out: &mut Cycle,
    ) -> Result<()> {
        let lease = st
            .lease
            .take()
            .map(|ttl| Renewal::start(self.master.clone(), ttl));
        let result = self.upgrade_each(st, full, stop, out).await;
        if let Some(lease) = lease {
            lease.end().await;
        }
        result
    }

    /// The upgrade step's loop, one package at a time.
    async fn upgrade_each(
        &self,
        st: &mut State,
        full: &mut Plan,
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
            let tasks = full.tasks();
            let candidates = self.candidates_now(st, &tasks, &attempted, now);
            if candidates.is_empty() {
                break;
            }
            let Planned {
                plans,
                failed,
                given_up,
            } = self.plan_candidates(st, candidates, &tasks, now).await;
            attempted.extend(given_up);
            for (package, message) in failed {
                attempted.insert(package);
                out.upgrade_failed = Some(message);
            }
            let Some((package, plan)) = fully_approved(&plans, &st.approved) else {
                break;
            };
            let upgrade = self.upgrade(st, &package, &plan, full).await;
            if self.deliver_runs(st, stop).await {
                out.stopped = true;
                return upgrade.map(|_| ());
            }
            match upgrade? {
                Upgrade::Busy => {
                    out.busy = Some(package);
                    break;
                }
                Upgrade::Done | Upgrade::PlanChanged => {
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

    /// Checks that apt would do exactly the approved `plan`, runs it (the critical section:
    /// never interrupted), finds out from a new plan what it did (`full` becomes that plan)
    /// and queues the run's result.
    async fn upgrade(
        &self,
        st: &mut State,
        package: &PackageName,
        plan: &TaskSet,
        full: &mut Plan,
    ) -> Result<Upgrade> {
        let job = Job {
            package: package.clone(),
            plan: plan.clone(),
        };
        let checked = (SystemTime::now(), Instant::now());
        if let Some(why) = self.plan_changed(&job).await {
            tracing::warn!(%package, %why, "not upgrading: apt would no longer do exactly what was approved; planning again");
            let took = (checked.0, checked.1.elapsed());
            self.queue_run(st, &job, took, None, Outcome::PlanChanged, why);
            *full = self.plan_full().await?;
            return Ok(Upgrade::PlanChanged);
        }
        let started = SystemTime::now();
        let (ran, start, end) = self.run_job(&job).await;
        let took = (started, end - start);
        let (output, text) = match ran {
            Ok(RunOutcome::Busy(reason)) => {
                tracing::info!(%package, %reason, "package manager busy; waiting");
                self.monitor.set_activity(Activity::WaitingForLock {
                    package: package.to_string(),
                });
                return Ok(Upgrade::Busy);
            }
            Ok(RunOutcome::Ran(output)) => {
                let text = format!("{}{}", output.stdout, output.stderr);
                (Some(output), text)
            }
            Err(e) => {
                // Could not run or timed out: what happened is found out below.
                tracing::error!(%package, error = %e, "running the upgrade failed");
                self.monitor.error(format!("upgrading {package}: {e}"));
                (None, e.to_string())
            }
        };
        let exit_code = output.as_ref().and_then(Output::code);
        let after = match self.plan_full().await {
            Ok(after) => after,
            Err(e) => {
                self.queue_run(st, &job, took, exit_code, Outcome::Failed, text);
                return Err(e);
            }
        };
        self.note_dpkg(st).await;
        let disk_full = decide::out_of_space(&text);
        let unfinished = self.record_outcome(st, plan, &after.tasks(), (start, end), disk_full);
        *full = after;
        let outcome = if unfinished.is_empty() {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        };
        self.queue_run(st, &job, took, exit_code, outcome, text);
        if unfinished.is_empty() {
            self.monitor.upgrade_done();
            match &output {
                Some(o) if !o.success() => tracing::warn!(
                    %package,
                    status = %o.describe_status(),
                    stderr = %last_lines(&o.stderr, 5),
                    "upgraded, but apt reported an error"
                ),
                _ => tracing::info!(%package, "upgraded"),
            }
            return Ok(Upgrade::Done);
        }
        let mut message = unfinished_message(package, &unfinished, output.as_ref());
        if disk_full {
            message = format!(
                "disk full: {message} (retried after the retry interval until there is space, \
                 without counting towards max_failures)"
            );
        }
        tracing::error!(%package, error = %message, "upgrade failed; retrying after the retry interval");
        self.monitor.error(message.clone());
        Ok(Upgrade::Failed(message))
    }

    /// Why `job` may not run now, if it may not: a simulation of exactly its command shows
    /// other tasks than the approved plan (the package lists changed since), or fails (a
    /// version is gone, or a removal would be needed).
    async fn plan_changed(&self, job: &Job) -> Option<String> {
        let now = match self.simulate_job(job).await {
            Ok(plan) => plan.tasks(),
            Err(e) => return Some(format!("the approved plan cannot be run now: {e}")),
        };
        if now == job.plan {
            return None;
        }
        let describe = |tasks: Vec<&masif_proto::Task>| -> String {
            let shown: Vec<String> = tasks.iter().map(|t| t.to_string()).collect();
            if shown.is_empty() {
                "nothing".into()
            } else {
                shown.join(", ")
            }
        };
        Some(format!(
            "apt's plan changed since it was approved: now also {}; no longer {}",
            describe(now.difference(&job.plan).collect()),
            describe(job.plan.difference(&now).collect()),
        ))
    }

    /// Queues the result of a run of `job` that started and took as `took` says (apt's run,
    /// or the check that refused it), and shows it.
    fn queue_run(
        &self,
        st: &mut State,
        job: &Job,
        (started, duration): (SystemTime, Duration),
        exit_code: Option<i32>,
        outcome: Outcome,
        output: String,
    ) {
        let run = st.runs.push(Ended {
            package: job.package.clone(),
            tasks: job.plan.clone(),
            started,
            duration,
            exit_code,
            outcome,
            output,
        });
        self.monitor.last_run(&run);
    }

    /// Compares the run `plan` with the plan `after` it and returns the packages it left
    /// unfinished. The finished tasks count in the load figures (run from `start` to `end`);
    /// unfinished packages are recorded as failed (and given up after `max_failures` in a
    /// row, unless the run failed on a full disk), the others' failures are cleared.
    fn record_outcome(
        &self,
        st: &mut State,
        plan: &TaskSet,
        after: &TaskSet,
        (start, end): (Instant, Instant),
        disk_full: bool,
    ) -> BTreeSet<PackageName> {
        let unfinished = decide::unfinished(plan, after);
        for task in plan {
            if !unfinished.contains(task.package()) {
                self.monitor
                    .record(OpKind::Action(task.action()), start, end);
            }
        }
        let now = Instant::now();
        let packages: BTreeSet<&PackageName> = plan.iter().map(|t| t.package()).collect();
        for p in packages {
            if !unfinished.contains(p) {
                st.failures.clear(p);
            } else if disk_full {
                st.failures.record_planning(p.clone(), now);
            } else if st.failures.record(p.clone(), plan, now) {
                tracing::warn!(
                    package = %p,
                    failures = self.max_failures,
                    "giving up after this many failed runs in a row; it is tried again once \
                     its approval is withdrawn and given again, or its plan changes"
                );
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
