//! The agent loop against the real apt-get/dpkg in a sandbox root, with an in-process stand-in
//! for the master's approval logic ([`FakeMaster`]: approval patterns, held reports, stored
//! runs, v1 mode, downtime, deferred approvals and max-in-flight leases) and a package manager that can change the package lists right
//! before a run (between approval and execution). The master's answers and the package
//! manager's calls go to one [`Events`] log, in the order they happened.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use masif_agent::apt::Apt;
use masif_agent::{
    Agent, Intervals, Job, LeaseAnswer, MasterError, Monitor, PackageManager, Plan, Reporter,
    RunOutcome,
};
use masif_proto::facts::Facts;
use masif_proto::v2::{DeferReason, LeaseRequest, ReportAnswer, Run};
use masif_proto::{Action, PackageName, Tag, TaskSet};
use masif_testkit::sandbox::{FakePackage, Sandbox, Stage};
use tokio::sync::Notify;

use super::approvals::Approvals;

/// Approves reported tasks matching (package, action) patterns, like approval rows with
/// from_version and to_version NULL; speaking v2 (unless told otherwise) it holds reports
/// until an approval changes and stores runs; it can pretend to be down.
#[derive(Default)]
pub struct FakeMaster {
    pub approvals: Approvals,
    changed: Notify,
    pub reports: Mutex<Vec<TaskSet>>,
    /// The facts of each report.
    pub facts: Mutex<Vec<Facts>>,
    /// The wait each report asked for.
    pub waits: Mutex<Vec<Duration>>,
    pub runs: Mutex<Vec<Run>>,
    pub down: Mutex<bool>,
    pub v1: AtomicBool,
    /// Every lease request, in order.
    pub leases: Mutex<Vec<LeaseRequest>>,
    /// Its answers, and the calls of the loop's package manager.
    pub events: Arc<Events>,
}

/// What the master and the package manager did, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The master answered a report, approving these tasks to run now.
    Answered(TaskSet),
    /// The full plan (`apt-get -s dist-upgrade`).
    PlanFull,
    /// A package's own plan (`apt-get -s install --only-upgrade PKG`).
    PlanPackage(String),
    /// The check of a run against its approval (the run's arguments with `-s`).
    Simulate(String),
    /// The run of a package's approved plan.
    Run(String),
}

/// The log of [`Event`]s.
#[derive(Default)]
pub struct Events(Mutex<Vec<Event>>);

impl Events {
    fn push(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }

    /// Every event so far.
    pub fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
}

impl FakeMaster {
    pub fn approve(&self, package: &str, actions: &[Action]) {
        self.approvals.approve(package, actions);
        self.changed.notify_waiters();
    }

    pub fn revoke(&self, package: &str) {
        self.approvals.revoke(package);
        self.changed.notify_waiters();
    }

    /// From now on approved tasks are deferred (`None`: approved again), as the master's
    /// maintenance windows and max in flight do.
    pub fn defer(&self, deferral: Option<(DeferReason, Option<i64>)>) {
        self.approvals.defer(deferral);
        self.changed.notify_waiters();
    }

    pub fn leases(&self) -> Vec<LeaseRequest> {
        self.leases.lock().unwrap().clone()
    }

    pub fn last_report(&self) -> Option<TaskSet> {
        self.reports.lock().unwrap().last().cloned()
    }

    pub fn last_facts(&self) -> Option<Facts> {
        self.facts.lock().unwrap().last().cloned()
    }

    pub fn runs(&self) -> Vec<Run> {
        self.runs.lock().unwrap().clone()
    }

    /// The tags the agent sent with its last report.
    pub fn last_tags(&self) -> Option<Vec<Tag>> {
        self.last_facts().map(|f| f.tags.into_iter().collect())
    }

    /// The answer to a report of `tasks` by an agent knowing `known` approved: held up to
    /// `wait` (v2) while what may run now equals `known`.
    async fn answer(&self, tasks: &TaskSet, known: &TaskSet, wait: Duration) -> ReportAnswer {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let answer = self.approvals.gated(tasks);
            if !self.speaks_v2() {
                // v1: gated the same way, without saying what waits.
                return ReportAnswer::approving(answer.approved);
            }
            // Held while what may run now equals what the agent knows.
            if wait.is_zero() || answer.approved != *known {
                return answer;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.approvals.gated(tasks);
            }
        }
    }

    fn check_up(&self) -> Result<(), MasterError> {
        if *self.down.lock().unwrap() {
            return Err(MasterError::Http {
                host: "fake".into(),
                detail: "connection refused".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Reporter for FakeMaster {
    async fn report(
        &self,
        tasks: &TaskSet,
        known: &TaskSet,
        wait: Duration,
        facts: &Facts,
    ) -> Result<ReportAnswer, MasterError> {
        self.check_up()?;
        self.reports.lock().unwrap().push(tasks.clone());
        self.facts.lock().unwrap().push(facts.clone());
        self.waits.lock().unwrap().push(wait);
        let answer = self.answer(tasks, known, wait).await;
        self.events.push(Event::Answered(answer.approved.clone()));
        Ok(answer)
    }

    async fn lease(&self, request: LeaseRequest) -> Result<LeaseAnswer, MasterError> {
        self.check_up()?;
        self.leases.lock().unwrap().push(request);
        Ok(LeaseAnswer::Done { leases: 1 })
    }

    async fn send_runs(&self, runs: &[Run]) -> Result<(), MasterError> {
        self.check_up()?;
        let mut stored = self.runs.lock().unwrap();
        for run in runs {
            if !stored.iter().any(|r| r.id == run.id) {
                stored.push(run.clone());
            }
        }
        Ok(())
    }

    fn speaks_v2(&self) -> bool {
        !self.v1.load(Ordering::SeqCst)
    }
}

/// APT in the sandbox; publishes a stage of the repository right before the first run is
/// simulated (the package lists change between approval and execution).
struct Apt2 {
    apt: Apt,
    sb: Sandbox,
    publish_before_run: Mutex<Option<Stage>>,
    events: Arc<Events>,
}

#[async_trait]
impl PackageManager for Apt2 {
    async fn plan_full(&self) -> masif_agent::Result<Plan> {
        self.events.push(Event::PlanFull);
        self.apt.plan_full().await
    }
    async fn plan_package(&self, package: &PackageName) -> masif_agent::Result<Plan> {
        self.events.push(Event::PlanPackage(package.to_string()));
        self.apt.plan_package(package).await
    }
    async fn simulate_job(&self, job: &Job) -> masif_agent::Result<Plan> {
        let stage = self.publish_before_run.lock().unwrap().take();
        if let Some(stage) = stage {
            self.sb.publish(stage).await.unwrap();
        }
        self.events.push(Event::Simulate(job.package.to_string()));
        self.apt.simulate_job(job).await
    }
    async fn run_job(&self, job: &Job) -> masif_agent::Result<RunOutcome> {
        self.events.push(Event::Run(job.package.to_string()));
        self.apt.run_job(job).await
    }
    async fn held(&self) -> masif_agent::Result<BTreeSet<PackageName>> {
        self.apt.held().await
    }
    async fn audit(&self) -> masif_agent::Result<masif_agent::Audit> {
        self.apt.audit().await
    }
}

/// How to run the loop.
pub struct LoopConfig {
    pub intervals: Intervals,
    pub max_failures: u32,
    /// Publish this stage right before the first run's simulation.
    pub publish_before_run: Option<Stage>,
    /// Packages held (`apt-mark hold`) before the loop starts.
    pub held: Vec<&'static str>,
    /// The agent's tags.
    pub tags: Vec<&'static str>,
}

impl LoopConfig {
    /// Checks every second, reports every 500 ms, retries after `retry` seconds.
    pub fn retry(retry: u64) -> Self {
        Self {
            intervals: Intervals {
                check: Duration::from_secs(1),
                report: Duration::from_millis(500),
                retry: Duration::from_secs(retry),
            },
            max_failures: 3,
            publish_before_run: None,
            held: Vec::new(),
            tags: Vec::new(),
        }
    }
}

/// The loop running against a sandbox with the V2 stage published.
pub struct Running {
    _dir: tempfile::TempDir,
    pub sb: Sandbox,
    pub master: Arc<FakeMaster>,
    pub monitor: Monitor,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<masif_agent::Result<()>>,
}

pub async fn start_loop(
    packages: &[FakePackage],
    config: LoopConfig,
    prepare: impl FnOnce(&FakeMaster),
) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let sb = Sandbox::create(dir.path(), packages).await.unwrap();
    sb.publish(Stage::V2).await.unwrap();
    for package in &config.held {
        sb.hold(package).await.unwrap();
    }
    let master = Arc::new(FakeMaster::default());
    prepare(&master);
    let monitor = Monitor::new();
    let pm = Apt2 {
        apt: Apt::new(sb.apt_settings()),
        sb: sb.clone(),
        publish_before_run: Mutex::new(config.publish_before_run),
        events: master.events.clone(),
    };
    let agent = Agent::new(
        Arc::new(pm),
        master.clone(),
        config.intervals,
        monitor.clone(),
    )
    .with_max_failures(config.max_failures)
    .with_fact_files(sb.fact_files())
    .with_tags(config.tags.iter().map(|t| Tag::new(*t).unwrap()).collect())
    .without_jitter();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(agent.run(async {
        let _ = rx.await;
    }));
    Running {
        _dir: dir,
        sb,
        master,
        monitor,
        stop: Some(tx),
        task,
    }
}

impl Running {
    pub async fn stop(self) -> masif_agent::Result<()> {
        self.stop_keeping_sandbox().await.0
    }

    /// Stops the agent; the sandbox directory lives as long as the returned guard.
    pub async fn stop_keeping_sandbox(mut self) -> (masif_agent::Result<()>, tempfile::TempDir) {
        let _ = self.stop.take().unwrap().send(());
        (self.task.await.unwrap(), self._dir)
    }

    pub async fn version(&self, package: &str) -> Option<String> {
        self.sb.installed_version(package).await.unwrap()
    }

    /// Lets the agent run `n` more reports.
    pub async fn cycles(&self, n: usize) {
        let start = self.master.reports.lock().unwrap().len();
        super::eventually("more reports", || async {
            self.master.reports.lock().unwrap().len() >= start + n
        })
        .await;
    }
}
