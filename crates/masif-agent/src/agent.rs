//! The agent loop: plan, report the plan and learn what is approved, upgrade only
//! packages whose whole single-package plan is approved (smallest first, re-planning after
//! every run), retry failures after the retry interval, wait out a busy lock, and stop
//! promptly, except while apt/dpkg runs.

mod plan;
mod report;
mod state;
mod stop;
mod upgrade;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use masif_proto::{PackageName, TaskSet};
use rand::Rng;
use tokio::sync::watch;

use crate::config::Intervals;
use crate::load::OpKind;
use crate::master::{MasterClient, MasterError};
use crate::pm::{PackageManager, Plan, RunOutcome};
use crate::status::{unix_now, Activity, Monitor};
use crate::{Error, Result};
use report::Reported;
use state::{Cycle, State};
use stop::Stop;

/// Who the pending tasks are reported to: the master, or a stand-in in tests.
#[async_trait]
pub trait Reporter: Send + Sync {
    /// Reports the planned `tasks` and returns the subset approved for this agent.
    async fn report(&self, tasks: &TaskSet) -> std::result::Result<TaskSet, MasterError>;
}

#[async_trait]
impl Reporter for MasterClient {
    async fn report(&self, tasks: &TaskSet) -> std::result::Result<TaskSet, MasterError> {
        MasterClient::report(self, tasks).await
    }
}

/// The loop and its parts.
pub struct Agent {
    pm: Arc<dyn PackageManager>,
    master: Arc<dyn Reporter>,
    intervals: Intervals,
    monitor: Monitor,
    /// Spread sleeps by ±20 % and delay the first report randomly (off in some tests).
    jitter: bool,
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
            monitor,
            jitter: true,
        }
    }

    /// Turns jitter off (tests that count reports).
    pub fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    pub fn monitor(&self) -> Monitor {
        self.monitor.clone()
    }

    fn jittered(&self, d: Duration) -> Duration {
        if !self.jitter {
            return d;
        }
        d.mul_f64(rand::rng().random_range(0.8..1.2))
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
        let mut state = State::default();
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
                    if self.sleep(&mut stop, self.intervals.retry).await {
                        break;
                    }
                    continue;
                }
            };
            if cycle.stopped {
                break;
            }
            if self.intervals.retry.is_zero() {
                if let Some(m) = cycle.report_failed.clone().or(cycle.upgrade_failed.clone()) {
                    self.stopping();
                    return Err(Error::GaveUp(m));
                }
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
            let wait = if cycle.report_failed.is_some() {
                self.intervals.retry
            } else if cycle.remaining {
                let retry_due = state
                    .failures
                    .next_retry(self.intervals.retry)
                    .map(|t| t.saturating_duration_since(Instant::now()));
                self.intervals
                    .report
                    .min(retry_due.unwrap_or(Duration::MAX))
                    .max(Duration::from_millis(200))
            } else {
                self.intervals.check
            };
            if self.sleep(&mut stop, wait).await {
                break;
            }
        }
        self.stopping();
        Ok(())
    }

    /// Sleeps about `wait` (jittered), showing it; `true` if shutdown came first.
    async fn sleep(&self, stop: &mut Stop, wait: Duration) -> bool {
        let wait = self.jittered(wait);
        self.monitor.set_activity(Activity::Sleeping {
            until: unix_now() + wait.as_secs() as i64,
        });
        stop.sleep(wait).await
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
    /// then upgrade what is approved. An error means a full plan could not be made.
    async fn cycle(&self, st: &mut State, stop: &mut Stop) -> Result<Cycle> {
        let mut full = self.plan_full().await?.tasks();
        let needed = st.forget_unplanned(&full);
        let mut out = Cycle::default();
        match self.report_if_due(st, &needed, stop).await {
            Reported::Stopped => {
                out.stopped = true;
                return Ok(out);
            }
            Reported::Failed(message) => out.report_failed = Some(message),
            Reported::NotDue | Reported::Answered => {}
        }
        self.upgrade_approved(st, &mut full, stop, &mut out).await?;
        Ok(out)
    }

    fn update_counts(&self, st: &State) {
        self.monitor.set_counts(
            st.approved.len(),
            st.failures.packages().map(|p| p.to_string()),
        );
    }

    // The package manager's three calls, shown on the monitoring socket and timed for its
    // load figures.

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

    /// Runs the upgrade of `package` (a plan of `tasks` tasks); returns its outcome and when
    /// it started and ended. Its tasks count in the load figures only once a new plan shows
    /// them done.
    async fn run_upgrade(
        &self,
        package: &PackageName,
        tasks: usize,
    ) -> (Result<RunOutcome>, Instant, Instant) {
        tracing::info!(%package, tasks, "upgrading");
        self.monitor.set_activity(Activity::Executing {
            package: package.to_string(),
        });
        let start = Instant::now();
        let ran = self.pm.upgrade_package(package).await;
        (ran, start, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pm::PlannedTask;
    use std::sync::Mutex;

    fn t(line: &str) -> masif_proto::Task {
        crate::apt::parse_line(1, line).unwrap().task
    }

    fn plan(tasks: &TaskSet) -> Plan {
        Plan::new(
            tasks
                .iter()
                .map(|task| PlannedTask {
                    task: task.clone(),
                    origin: None,
                })
                .collect(),
        )
    }

    /// A package manager whose single-package plan for omega needs an install that the full
    /// plan does not show (apt may resolve the two differently).
    #[derive(Default)]
    struct Scripted {
        upgraded: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl PackageManager for Scripted {
        async fn plan_full(&self) -> Result<Plan> {
            if self.upgraded.lock().unwrap().is_empty() {
                Ok(plan(&[t("Inst omega [1] (2 S)")].into()))
            } else {
                Ok(Plan::default())
            }
        }
        async fn plan_package(&self, _: &PackageName) -> Result<Plan> {
            Ok(plan(&[t("Inst omega [1] (2 S)"), t("Inst x (1 S)")].into()))
        }
        async fn upgrade_package(&self, package: &PackageName) -> Result<RunOutcome> {
            self.upgraded.lock().unwrap().push(package.to_string());
            Ok(RunOutcome::Ran(crate::exec::Output {
                status: std::os::unix::process::ExitStatusExt::from_raw(0),
                stdout: String::new(),
                stderr: String::new(),
                elapsed: Duration::ZERO,
                truncated: false,
            }))
        }
    }

    /// Approves everything it is told about, and remembers each report.
    #[derive(Default)]
    struct ApproveAll {
        reports: Mutex<Vec<TaskSet>>,
    }

    #[async_trait]
    impl Reporter for ApproveAll {
        async fn report(&self, pending: &TaskSet) -> std::result::Result<TaskSet, MasterError> {
            self.reports.lock().unwrap().push(pending.clone());
            Ok(pending.clone())
        }
    }

    #[tokio::test]
    async fn tasks_only_a_single_package_plan_shows_are_reported_before_it_runs() {
        let pm = Arc::new(Scripted::default());
        let master = Arc::new(ApproveAll::default());
        let intervals = Intervals {
            check: Duration::from_millis(50),
            report: Duration::from_millis(50),
            retry: Duration::from_millis(50),
        };
        let agent =
            Agent::new(pm.clone(), master.clone(), intervals, Monitor::new()).without_jitter();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(agent.run(async {
            let _ = rx.await;
        }));
        for _ in 0..200 {
            let done = !pm.upgraded.lock().unwrap().is_empty();
            if done && master.reports.lock().unwrap().last() == Some(&TaskSet::new()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = tx.send(());
        run.await.unwrap().unwrap();
        assert_eq!(*pm.upgraded.lock().unwrap(), ["omega"]);
        let reports = master.reports.lock().unwrap().clone();
        assert_eq!(reports[0], [t("Inst omega [1] (2 S)")].into());
        // The install appeared in a report (and so got approved) before omega ran.
        assert_eq!(
            reports[1],
            [t("Inst omega [1] (2 S)"), t("Inst x (1 S)")].into()
        );
        assert_eq!(
            reports.last().unwrap(),
            &TaskSet::new(),
            "the empty set is reported once"
        );
    }
}
