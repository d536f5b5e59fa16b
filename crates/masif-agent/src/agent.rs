//! The agent loop: plan, report the plan and learn what is approved, run exactly the
//! approved single-package plans (smallest first, re-planning after every run), hand each
//! run's result to the master, wait for approvals with a report the master may hold, retry
//! failures after the retry interval (up to `max_failures` in a row), wait out a busy lock,
//! and stop promptly, except while apt/dpkg runs.

mod audit;
mod facts;
mod lease;
mod plan;
mod report;
mod runs;
mod state;
mod stop;
mod upgrade;
mod wait;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use masif_proto::facts::Facts;
use masif_proto::v2::{LeaseRequest, ReportAnswer, Run};
use masif_proto::{PackageName, Tag, TaskSet};
use rand::Rng;
use tokio::sync::watch;

use crate::config::Intervals;
use crate::facts::FactFiles;
use crate::load::OpKind;
use crate::master::{LeaseAnswer, MasterClient, MasterError};
use crate::pm::{Job, PackageManager, Plan, RunOutcome};
use crate::status::{Activity, Monitor};
use crate::{Error, Result};
use report::Reported;
use state::{Cycle, State};
use stop::Stop;
use wait::Waited;

/// The default of `max_failures`: a package whose runs failed this often in a row is given up
/// until it is approved again or its plan changes.
pub const DEFAULT_MAX_FAILURES: u32 = 3;

/// Who the pending tasks and run results go to: the master, or a stand-in in tests.
#[async_trait]
pub trait Reporter: Send + Sync {
    /// Reports the planned `tasks` with the host's `facts`, with `known` the subset this
    /// agent holds as approved, and returns the answer: the subset approved to run now, the
    /// subset approved but deferred (a closed maintenance window, no free slot), and the
    /// lease that came with the approval, if any. A master speaking v2 may hold the answer
    /// up to `wait` while its approvals of `tasks` equal `known`; one speaking v1 answers at
    /// once (gets no facts, defers nothing).
    async fn report(
        &self,
        tasks: &TaskSet,
        known: &TaskSet,
        wait: Duration,
        facts: &Facts,
    ) -> std::result::Result<ReportAnswer, MasterError>;

    /// Delivers run results (at most [`masif_proto::v2::MAX_RUNS`]).
    async fn send_runs(&self, runs: &[Run]) -> std::result::Result<(), MasterError>;

    /// Renews or releases the agent's max-in-flight leases.
    async fn lease(&self, request: LeaseRequest) -> std::result::Result<LeaseAnswer, MasterError>;

    /// Whether the master holds reports and stores run results (protocol v2).
    fn speaks_v2(&self) -> bool;

    /// The `host:port` of the master in use, shown on `/v1/status` (`None`: not a master
    /// reached over the network).
    fn master_in_use(&self) -> Option<String> {
        None
    }
}

#[async_trait]
impl Reporter for MasterClient {
    async fn report(
        &self,
        tasks: &TaskSet,
        known: &TaskSet,
        wait: Duration,
        facts: &Facts,
    ) -> std::result::Result<ReportAnswer, MasterError> {
        MasterClient::report(self, tasks, known, wait, Some(facts)).await
    }

    async fn send_runs(&self, runs: &[Run]) -> std::result::Result<(), MasterError> {
        MasterClient::send_runs(self, runs).await
    }

    async fn lease(&self, request: LeaseRequest) -> std::result::Result<LeaseAnswer, MasterError> {
        MasterClient::lease(self, request).await
    }

    fn speaks_v2(&self) -> bool {
        MasterClient::speaks_v2(self)
    }

    fn master_in_use(&self) -> Option<String> {
        Some(self.host().to_owned())
    }
}

/// The loop and its parts.
pub struct Agent {
    pm: Arc<dyn PackageManager>,
    master: Arc<dyn Reporter>,
    intervals: Intervals,
    max_failures: u32,
    monitor: Monitor,
    /// Spread sleeps and delay the first report randomly (off in some tests).
    jitter: bool,
    /// Where the host's facts are read from.
    fact_files: FactFiles,
    /// The host's tags, sent with the facts.
    tags: BTreeSet<Tag>,
}

impl Agent {
    pub fn new(
        pm: Arc<dyn PackageManager>,
        master: Arc<dyn Reporter>,
        intervals: Intervals,
        monitor: Monitor,
    ) -> Self {
        Self {
            pm,
            master,
            intervals,
            max_failures: DEFAULT_MAX_FAILURES,
            monitor,
            jitter: true,
            fact_files: FactFiles::default(),
            tags: BTreeSet::new(),
        }
    }

    /// Sends `tags` with every v2 report's facts.
    pub fn with_tags(mut self, tags: BTreeSet<Tag>) -> Self {
        self.tags = tags;
        self
    }

    /// Reads the host's facts (os-release, kernel release, reboot-required file) from
    /// `files` instead of the host's own files.
    pub fn with_fact_files(mut self, files: FactFiles) -> Self {
        self.fact_files = files;
        self
    }

    /// Gives a package up after `max` failed runs in a row (0: retry forever).
    pub fn with_max_failures(mut self, max: u32) -> Self {
        self.max_failures = max;
        self
    }

    /// Turns jitter off (tests that count reports).
    pub fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    pub fn monitor(&self) -> Monitor {
        self.monitor.clone()
    }

    /// Runs until `shutdown` resolves. A running apt/dpkg call is never interrupted: the
    /// loop ends after it. With a retry interval of zero the first failure ends the loop
    /// with an error (the original's behaviour).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
        let mut stop = Stop(rx);
        let mut state = State::new(self.max_failures);
        state.known.set_tags(self.tags.clone());
        if self.jitter {
            // Ten thousand agents restarted together must not report in the same second.
            let spread = self.intervals.report.min(Duration::from_secs(60));
            let delay = spread.mul_f64(rand::rng().random_range(0.0..1.0));
            if stop.sleep(delay).await {
                self.stopping();
                return Ok(());
            }
        }
        loop {
            if stop.is_set() {
                break;
            }
            let cycle = match self.cycle(&mut state, &mut stop).await {
                Ok(c) => c,
                Err(e) => {
                    // Planning failed (apt missing, broken, or printing what we cannot read).
                    let message = e.to_string();
                    tracing::error!(error = %message, "check failed");
                    self.monitor.error(message);
                    if self.intervals.retry.is_zero() {
                        self.stopping();
                        return Err(e);
                    }
                    if self
                        .sleep(&mut stop, self.jittered(self.intervals.retry))
                        .await
                    {
                        break;
                    }
                    continue;
                }
            };
            if cycle.stopped {
                break;
            }
            let failed = cycle.report_failed.clone().or(cycle.upgrade_failed.clone());
            if let Some(message) = failed.filter(|_| self.intervals.retry.is_zero()) {
                self.stopping();
                return Err(Error::GaveUp(message));
            }
            if let Some(package) = &cycle.busy {
                // Another apt/dpkg holds the lock: look again soon (reporting at the usual
                // pace meanwhile, so approvals and revocations still arrive).
                self.monitor.set_activity(Activity::WaitingForLock {
                    package: package.to_string(),
                });
                if stop.sleep(self.busy_wait()).await {
                    break;
                }
                continue;
            }
            let stopped = if cycle.report_failed.is_some() {
                self.sleep(&mut stop, self.failure_wait(&state)).await
            } else if cycle.remaining {
                match self
                    .await_approval(&mut state, &mut stop, &cycle.needed)
                    .await
                {
                    Waited::Done => false,
                    Waited::Stopped => true,
                    Waited::Failed(message) if self.intervals.retry.is_zero() => {
                        self.stopping();
                        return Err(Error::GaveUp(message));
                    }
                    Waited::Failed(_) => self.sleep(&mut stop, self.failure_wait(&state)).await,
                }
            } else {
                self.sleep(&mut stop, self.idle_wait(&state)).await
            };
            if stopped {
                break;
            }
        }
        self.stopping();
        Ok(())
    }

    /// How long to wait before trying again when the lock is held.
    fn busy_wait(&self) -> Duration {
        self.intervals
            .retry
            .clamp(Duration::from_secs(1), Duration::from_secs(10))
    }

    fn stopping(&self) {
        tracing::info!("agent stopping");
        self.monitor.set_activity(Activity::Stopping);
    }

    /// One pass of the loop: plan, report what the plan needs (learning what is approved),
    /// then upgrade what is approved, and if that changed the full plan, refresh the facts
    /// for the new one. An error means a full plan could not be made.
    ///
    /// The refresh after the runs plans every remaining update on its own for its `needs`.
    /// Done here, before the held report that waits for the next approval, it is off that
    /// approval's path: the next cycle finds the facts made for its full plan and goes
    /// straight to the approved package.
    async fn cycle(&self, st: &mut State, stop: &mut Stop) -> Result<Cycle> {
        let mut plan = self.plan_full().await?;
        self.refresh_facts(st, &plan, stop).await;
        let full = plan.tasks();
        let needed = st.forget_unplanned(&full);
        self.check_dpkg(st, &full).await;
        let mut out = Cycle::default();
        match self.report_if_due(st, &needed, stop).await {
            Reported::Stopped => {
                out.stopped = true;
                return Ok(out);
            }
            Reported::Failed(message) => out.report_failed = Some(message),
            Reported::NotDue | Reported::Answered => {}
        }
        self.upgrade_approved(st, &mut plan, stop, &mut out).await?;
        let full = plan.tasks();
        if !out.stopped && st.known.plans_stale(&full) {
            self.refresh_facts(st, &plan, stop).await;
        }
        out.needed = st.forget_unplanned(&full);
        Ok(out)
    }

    fn update_counts(&self, st: &State) {
        self.monitor.set_counts(
            st.approved.len(),
            st.failures.packages().map(|p| p.to_string()),
            st.failures.given_up_packages().map(|p| p.to_string()),
        );
        self.monitor.set_deferred(st.deferred.len(), st.deferral);
    }

    // The package manager's calls, shown on the monitoring socket and timed for its load
    // figures.

    /// The full plan (`apt-get -s dist-upgrade`).
    async fn plan_full(&self) -> Result<Plan> {
        self.monitor.set_activity(Activity::Planning);
        let start = Instant::now();
        let plan = self.pm.plan_full().await;
        self.monitor.record(OpKind::Query, start, Instant::now());
        plan
    }

    /// The plan of upgrading `package` alone.
    async fn plan_package(&self, package: &PackageName) -> Result<Plan> {
        let start = Instant::now();
        let plan = self.pm.plan_package(package).await;
        self.monitor.record(OpKind::Query, start, Instant::now());
        plan
    }

    /// What running `job` would do now.
    async fn simulate_job(&self, job: &Job) -> Result<Plan> {
        let start = Instant::now();
        let plan = self.pm.simulate_job(job).await;
        self.monitor.record(OpKind::Query, start, Instant::now());
        plan
    }

    /// Runs `job`; returns its outcome and when it started and ended. Its tasks count in
    /// the load figures only once a new plan shows them done.
    async fn run_job(&self, job: &Job) -> (Result<RunOutcome>, Instant, Instant) {
        tracing::info!(package = %job.package, tasks = job.plan.len(), "upgrading");
        self.monitor.set_activity(Activity::Executing {
            package: job.package.to_string(),
        });
        let start = Instant::now();
        let ran = self.pm.run_job(job).await;
        (ran, start, Instant::now())
    }
}

#[cfg(test)]
mod tests;
