//! The agent loop: plan, report the plan and learn what is approved, upgrade only
//! packages whose whole single-package plan is approved (smallest first, re-planning after
//! every run), retry failures after the retry interval, wait out a busy lock, and stop
//! promptly, except while apt/dpkg runs.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use masif_proto::{PackageName, TaskSet};
use rand::Rng;
use tokio::sync::watch;

use crate::apt::last_lines;
use crate::config::Intervals;
use crate::decide::{self, Failures};
use crate::load::OpKind;
use crate::master::{MasterClient, MasterError};
use crate::pm::{PackageManager, Plan, RunOutcome};
use crate::status::{unix_now, Activity, Monitor};
use crate::{Error, Result};

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

/// What the loop remembers between cycles.
#[derive(Default)]
struct State {
    /// Tasks the master said are approved (pruned to what is still planned).
    approved: TaskSet,
    /// Per candidate package, the tasks of its single-package plan missing from the full
    /// plan: reported too, or a package needing them could never be approved.
    extra: BTreeMap<PackageName, TaskSet>,
    /// The tasks of the last successful report, and when it was.
    last_reported: Option<TaskSet>,
    last_report_at: Option<Instant>,
    failures: Failures,
}

/// How one cycle ended.
#[derive(Debug, Default)]
struct Cycle {
    stopped: bool,
    remaining: bool,
    /// The package whose upgrade found the package manager's lock held.
    busy: Option<PackageName>,
    report_failed: Option<String>,
    upgrade_failed: Option<String>,
}

/// Shutdown as a level: set once, seen by every later check.
struct Stop(watch::Receiver<bool>);

impl Stop {
    fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    async fn wait(&mut self) {
        if self.0.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Sleeps `d`; `true` if shutdown came first.
    async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = self.wait() => true,
            _ = tokio::time::sleep(d) => false,
        }
    }

    /// Runs `f` unless shutdown comes first (`None`). Never used around apt runs.
    async fn race<F: Future>(&mut self, f: F) -> Option<F::Output> {
        tokio::select! {
            _ = self.wait() => None,
            out = f => Some(out),
        }
    }
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

    async fn plan_full(&self) -> Result<Plan> {
        self.monitor.set_activity(Activity::Planning);
        let start = Instant::now();
        let plan = self.pm.plan_full().await;
        self.monitor.record(OpKind::Query, start, Instant::now());
        plan
    }

    async fn plan_package(&self, package: &PackageName) -> Result<Plan> {
        let start = Instant::now();
        let plan = self.pm.plan_package(package).await;
        self.monitor.record(OpKind::Query, start, Instant::now());
        plan
    }

    async fn cycle(&self, st: &mut State, stop: &mut Stop) -> Result<Cycle> {
        let mut out = Cycle::default();
        let mut full = self.plan_full().await?.tasks();
        if full.is_empty() {
            st.approved.clear();
            st.extra.clear();
            st.failures.clear_all();
        }
        let candidates = decide::candidates(&full, &st.approved);
        st.extra.retain(|p, tasks| {
            tasks.retain(|t| !full.contains(t));
            candidates.contains(p) && !tasks.is_empty()
        });
        let known: TaskSet = full
            .iter()
            .chain(st.extra.values().flatten())
            .cloned()
            .collect();
        st.approved.retain(|t| known.contains(t));
        // Every task is reported, approved ones too: the answer is the authoritative set of
        // approvals, so one revoked in the UI stops counting at the next report. (The
        // original reported only tasks not yet known to be approved and could never learn
        // of a revocation.) The master stores the same pending set either way.
        // Report when the plan changed, else at most every half report interval (cycles
        // come faster while a lock is waited out or a failed package is retried).
        let due = st
            .last_report_at
            .is_none_or(|t| t.elapsed() >= self.intervals.report / 2);
        if st.last_reported.as_ref() != Some(&known) || (!known.is_empty() && due) {
            self.monitor.set_activity(Activity::Reporting);
            match stop.race(self.master.report(&known)).await {
                None => {
                    out.stopped = true;
                    return Ok(out);
                }
                Some(Ok(approved)) => {
                    let approved: TaskSet =
                        approved.into_iter().filter(|t| known.contains(t)).collect();
                    let revoked = st.approved.difference(&approved).count();
                    if revoked > 0 {
                        tracing::warn!(revoked, "approvals withdrawn by the master");
                    }
                    let pending = known.len() - approved.len();
                    tracing::info!(pending, approved = approved.len(), "reported to the master");
                    st.approved = approved;
                    st.last_reported = Some(known.clone());
                    st.last_report_at = Some(Instant::now());
                    self.monitor.report_attempted(true, pending);
                }
                Some(Err(e)) => {
                    // Approvals known from the last answer stay valid until the next one.
                    let message = format!("report: {e}");
                    tracing::warn!(error = %message, "report failed; retrying later");
                    self.monitor.report_attempted(false, 0);
                    self.monitor.error(message.clone());
                    out.report_failed = Some(message);
                }
            }
        }

        // Each package is tried at most once per cycle (retried after the retry interval),
        // so the loop ends even with a retry interval of zero.
        let mut attempted = BTreeSet::new();
        loop {
            self.update_counts(st);
            if stop.is_set() {
                out.stopped = true;
                return Ok(out);
            }
            let now = Instant::now();
            let candidates: BTreeSet<PackageName> = decide::candidates(&full, &st.approved)
                .into_iter()
                .filter(|p| !attempted.contains(p))
                .filter(|p| st.failures.allowed(p, now, self.intervals.retry))
                .collect();
            if candidates.is_empty() {
                break;
            }
            self.monitor.set_activity(Activity::Planning);
            let mut plans = BTreeMap::new();
            for package in candidates {
                match self.plan_package(&package).await {
                    Ok(plan) => {
                        let tasks = plan.tasks();
                        let extra: TaskSet = tasks
                            .iter()
                            .filter(|t| !full.contains(t))
                            .cloned()
                            .collect();
                        if extra.is_empty() {
                            st.extra.remove(&package);
                        } else {
                            tracing::info!(%package, extra = extra.len(), "its plan needs tasks the full plan lacks; reporting them too");
                            st.extra.insert(package.clone(), extra);
                        }
                        plans.insert(package, tasks);
                    }
                    Err(e) => {
                        let message = format!("planning the upgrade of {package}: {e}");
                        tracing::error!(error = %message);
                        self.monitor.error(message.clone());
                        st.failures.record(package.clone(), now);
                        attempted.insert(package);
                        out.upgrade_failed = Some(message);
                    }
                }
            }
            let Some((package, plan)) = decide::pick(&plans, &st.approved) else {
                for (package, plan) in &plans {
                    let missing = plan.difference(&st.approved).count();
                    tracing::debug!(%package, missing, "waiting for approval of its whole plan");
                }
                break;
            };
            let (package, plan) = (package.clone(), plan.clone());
            match self.upgrade(st, &package, &plan, &mut full).await? {
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
        Ok(out)
    }

    fn update_counts(&self, st: &State) {
        self.monitor.set_counts(
            st.approved.len(),
            st.failures.packages().map(|p| p.to_string()),
        );
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
        tracing::info!(%package, tasks = plan.len(), "upgrading");
        self.monitor.set_activity(Activity::Executing {
            package: package.to_string(),
        });
        let start = Instant::now();
        let ran = self.pm.upgrade_package(package).await;
        let end = Instant::now();
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
        let unfinished = decide::unfinished(plan, full);
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
        let names: Vec<String> = unfinished.iter().map(|p| p.to_string()).collect();
        let message = match &output {
            Some(o) => format!(
                "upgrading {package} left {} unfinished ({}): {}",
                names.join(", "),
                o.describe_status(),
                last_lines(&format!("{}\n{}", o.stdout, o.stderr), 8)
            ),
            None => format!("upgrading {package} left {} unfinished", names.join(", ")),
        };
        tracing::error!(%package, error = %message, "upgrade failed; retrying after the retry interval");
        self.monitor.error(message.clone());
        Ok(Upgrade::Failed(message))
    }
}

enum Upgrade {
    Done,
    Busy,
    Failed(String),
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
