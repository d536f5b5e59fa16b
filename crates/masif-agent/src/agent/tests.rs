//! The loop against scripted stand-ins for apt and the master: what is reported and when
//! (heartbeats, held reports), run results and their delivery, refused runs, given-up
//! packages, shutdown during a held report.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use masif_proto::v2::Outcome;
use masif_proto::Task;
use tokio::sync::Notify;

use super::*;
use crate::exec::Output;
use crate::pm::PlannedTask;

fn t(line: &str) -> Task {
    crate::apt::parse_line(1, line).unwrap().task
}

fn set(lines: &[&str]) -> TaskSet {
    lines.iter().map(|l| t(l)).collect()
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

const ALPHA: [&str; 2] = ["Inst alpha [1] (2 S)", "Conf alpha (2 S)"];
const ZETA: [&str; 2] = ["Inst zeta [1] (2 S)", "Conf zeta (2 S)"];

/// A package manager whose full plan is a set of tasks that runs remove, unless the package
/// is one that fails; a package's own plan is its tasks of the full plan plus any extra.
#[derive(Default)]
struct Pm {
    full: Mutex<TaskSet>,
    extra: Mutex<BTreeMap<String, TaskSet>>,
    failing: Mutex<BTreeSet<String>>,
    /// What the next simulation of a job shows instead of the job's plan.
    next_simulation: Mutex<Option<TaskSet>>,
    jobs: Mutex<Vec<Job>>,
    held: Mutex<BTreeSet<PackageName>>,
    /// Full plans made (one a cycle).
    full_plans: AtomicUsize,
}

impl Pm {
    fn with(tasks: &[&str]) -> Arc<Self> {
        let pm = Self::default();
        *pm.full.lock().unwrap() = set(tasks);
        Arc::new(pm)
    }

    fn jobs(&self) -> usize {
        self.jobs.lock().unwrap().len()
    }
}

#[async_trait]
impl PackageManager for Pm {
    async fn plan_full(&self) -> Result<Plan> {
        self.full_plans.fetch_add(1, Ordering::SeqCst);
        Ok(plan(&self.full.lock().unwrap()))
    }
    async fn plan_package(&self, package: &PackageName) -> Result<Plan> {
        let mut tasks: TaskSet = self
            .full
            .lock()
            .unwrap()
            .iter()
            .filter(|t| t.package() == package)
            .cloned()
            .collect();
        if let Some(extra) = self.extra.lock().unwrap().get(package.as_str()) {
            tasks.extend(extra.iter().cloned());
        }
        Ok(plan(&tasks))
    }
    async fn simulate_job(&self, job: &Job) -> Result<Plan> {
        let shown = self.next_simulation.lock().unwrap().take();
        Ok(plan(&shown.unwrap_or_else(|| job.plan.clone())))
    }
    async fn held(&self) -> Result<BTreeSet<PackageName>> {
        Ok(self.held.lock().unwrap().clone())
    }
    async fn run_job(&self, job: &Job) -> Result<RunOutcome> {
        self.jobs.lock().unwrap().push(job.clone());
        let fails = self.failing.lock().unwrap().contains(job.package.as_str());
        if !fails {
            self.full.lock().unwrap().retain(|t| !job.plan.contains(t));
        }
        Ok(RunOutcome::Ran(Output {
            status: std::os::unix::process::ExitStatusExt::from_raw(if fails {
                100 << 8
            } else {
                0
            }),
            stdout: format!("Setting up {} ...\n", job.package),
            stderr: if fails {
                "E: Sub-process /usr/bin/dpkg returned an error code (1)\n".into()
            } else {
                String::new()
            },
            elapsed: Duration::ZERO,
            truncated: false,
        }))
    }
}

/// A master approving whole packages; speaking v2 it holds reports until an approval
/// changes, and stores runs unless told to fail.
struct Master {
    v2: AtomicBool,
    approve_all: AtomicBool,
    packages: Mutex<BTreeSet<String>>,
    changed: Notify,
    reports: Mutex<Vec<(TaskSet, TaskSet, Duration)>>,
    /// The facts of each report.
    facts: Mutex<Vec<Facts>>,
    runs: Mutex<Vec<Run>>,
    refuse_runs: AtomicBool,
    deliveries: AtomicUsize,
}

impl Master {
    fn new(v2: bool) -> Arc<Self> {
        Arc::new(Self {
            v2: AtomicBool::new(v2),
            approve_all: AtomicBool::new(false),
            packages: Mutex::default(),
            changed: Notify::new(),
            reports: Mutex::default(),
            facts: Mutex::default(),
            runs: Mutex::default(),
            refuse_runs: AtomicBool::new(false),
            deliveries: AtomicUsize::new(0),
        })
    }

    fn approve(&self, package: &str) {
        self.packages.lock().unwrap().insert(package.into());
        self.changed.notify_waiters();
    }

    fn revoke(&self, package: &str) {
        self.packages.lock().unwrap().remove(package);
        self.changed.notify_waiters();
    }

    fn answer(&self, tasks: &TaskSet) -> TaskSet {
        let all = self.approve_all.load(Ordering::SeqCst);
        let packages = self.packages.lock().unwrap();
        tasks
            .iter()
            .filter(|t| all || packages.contains(t.package().as_str()))
            .cloned()
            .collect()
    }

    fn reports(&self) -> Vec<(TaskSet, TaskSet, Duration)> {
        self.reports.lock().unwrap().clone()
    }

    fn runs(&self) -> Vec<Run> {
        self.runs.lock().unwrap().clone()
    }
}

#[async_trait]
impl Reporter for Master {
    async fn report(
        &self,
        tasks: &TaskSet,
        known: &TaskSet,
        wait: Duration,
        facts: &Facts,
    ) -> std::result::Result<ReportAnswer, MasterError> {
        self.facts.lock().unwrap().push(facts.clone());
        self.reports
            .lock()
            .unwrap()
            .push((tasks.clone(), known.clone(), wait));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let answer = self.answer(tasks);
            if !self.speaks_v2() || wait.is_zero() || answer != *known {
                return Ok(ReportAnswer::approving(answer));
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(ReportAnswer::approving(self.answer(tasks)));
            }
        }
    }

    async fn lease(&self, _: LeaseRequest) -> std::result::Result<LeaseAnswer, MasterError> {
        Ok(LeaseAnswer::NoLeases)
    }

    async fn send_runs(&self, runs: &[Run]) -> std::result::Result<(), MasterError> {
        self.deliveries.fetch_add(1, Ordering::SeqCst);
        if self.refuse_runs.load(Ordering::SeqCst) {
            return Err(MasterError::Http {
                host: "stand-in".into(),
                detail: "connection reset".into(),
            });
        }
        let mut stored = self.runs.lock().unwrap();
        for run in runs {
            if !stored.iter().any(|r| r.id == run.id) {
                stored.push(run.clone());
            }
        }
        Ok(())
    }

    fn speaks_v2(&self) -> bool {
        self.v2.load(Ordering::SeqCst)
    }
}

fn intervals(check_ms: u64, report_ms: u64, retry_ms: u64) -> Intervals {
    Intervals {
        check: Duration::from_millis(check_ms),
        report: Duration::from_millis(report_ms),
        retry: Duration::from_millis(retry_ms),
    }
}

const HOUR: u64 = 3_600_000;

/// A running loop and the means to stop it.
struct Running {
    monitor: Monitor,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<()>>,
}

fn start(pm: &Arc<Pm>, master: &Arc<Master>, intervals: Intervals, max_failures: u32) -> Running {
    let monitor = Monitor::new();
    let agent = Agent::new(pm.clone(), master.clone(), intervals, monitor.clone())
        .with_max_failures(max_failures)
        .without_jitter();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(agent.run(async {
        let _ = rx.await;
    }));
    Running {
        monitor,
        stop: Some(tx),
        task,
    }
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the loop stops at once")
            .unwrap()
            .unwrap();
    }
}

/// Waits until `check` holds (a deadline against hangs, not a timing assertion).
async fn until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..3000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

/// The agent waits in a report the master holds (it asked to wait `wait`).
fn parked(r: &Running, master: &Master, wait: Duration) -> bool {
    matches!(
        r.monitor.status().activity,
        Activity::WaitingForApproval { .. }
    ) && master.reports().last().is_some_and(|(_, _, w)| *w == wait)
}

#[tokio::test]
async fn tasks_only_a_single_package_plan_shows_are_reported_before_it_runs() {
    let pm = Pm::with(&["Inst omega [1] (2 S)"]);
    pm.extra
        .lock()
        .unwrap()
        .insert("omega".into(), set(&["Inst x (1 S)"]));
    let master = Master::new(false);
    master.approve_all.store(true, Ordering::SeqCst);
    let r = start(&pm, &master, intervals(50, 50, 50), 3);
    until("omega upgraded and the empty plan reported", || {
        pm.jobs() == 1
            && master
                .reports()
                .last()
                .is_some_and(|(t, _, _)| t.is_empty())
    })
    .await;
    r.stop().await;
    let reports: Vec<TaskSet> = master.reports().into_iter().map(|(t, _, _)| t).collect();
    assert_eq!(reports[0], set(&["Inst omega [1] (2 S)"]));
    // The install appeared in a report (and so got approved) before omega ran.
    assert_eq!(reports[1], set(&["Inst omega [1] (2 S)", "Inst x (1 S)"]));
    assert_eq!(pm.jobs.lock().unwrap()[0].plan, reports[1]);
}

#[tokio::test]
async fn an_empty_plan_is_reported_every_report_interval() {
    let pm = Pm::with(&[]);
    let master = Master::new(true);
    // Planning once an hour, reporting every 100 ms: the reports are heartbeats.
    let r = start(&pm, &master, intervals(HOUR, 100, HOUR), 3);
    until("three reports", || master.reports().len() >= 3).await;
    r.stop().await;
    for (tasks, known, wait) in master.reports() {
        assert!(tasks.is_empty() && known.is_empty());
        assert_eq!(wait, Duration::ZERO, "an idle agent holds no report open");
    }
}

#[tokio::test]
async fn an_approval_answers_the_held_report_and_the_upgrade_starts_at_once() {
    let pm = Pm::with(&ALPHA);
    let master = Master::new(true);
    let r = start(&pm, &master, intervals(HOUR, HOUR, HOUR), 3);
    let hour = Duration::from_millis(HOUR);
    until("a held report", || parked(&r, &master, hour)).await;
    let reports = master.reports().len();
    let approved_at = Instant::now();
    master.approve("alpha");
    until("alpha upgraded", || pm.jobs() == 1).await;
    let latency = approved_at.elapsed();
    assert!(latency < Duration::from_secs(2), "{latency:?}");
    // The held report's answer was the report: none came between it and the run.
    assert_eq!(master.reports().len(), reports);
    until("the run delivered", || master.runs().len() == 1).await;
    let run = master.runs().remove(0);
    assert_eq!(
        (run.package.as_str(), run.outcome, run.exit_code),
        ("alpha", Outcome::Succeeded, Some(0))
    );
    assert_eq!(run.tasks, set(&ALPHA));
    assert_eq!(run.output.as_str(), "Setting up alpha ...\n");
    assert!(run.id.as_str().contains('-'), "{}", run.id.as_str());
    let last = r.monitor.status().last_run.unwrap();
    assert_eq!(
        (last.id.as_str(), last.outcome.as_str()),
        (run.id.as_str(), "succeeded")
    );
    r.stop().await;
}

#[tokio::test]
async fn shutdown_interrupts_a_held_report() {
    let pm = Pm::with(&ALPHA);
    let master = Master::new(true);
    let r = start(&pm, &master, intervals(HOUR, HOUR, HOUR), 3);
    until("a held report", || {
        parked(&r, &master, Duration::from_millis(HOUR))
    })
    .await;
    r.stop().await;
}

#[tokio::test]
async fn a_v1_master_gets_no_held_reports_and_no_runs() {
    let pm = Pm::with(&ALPHA);
    let master = Master::new(false);
    master.approve("alpha");
    let r = start(&pm, &master, intervals(100, 100, 100), 3);
    until("alpha upgraded", || pm.jobs() == 1).await;
    let after = master.reports().len();
    until("two more reports", || master.reports().len() >= after + 2).await;
    assert!(r.monitor.status().last_run.is_some());
    r.stop().await;
    assert!(master.reports().iter().all(|(_, _, w)| w.is_zero()));
    assert_eq!(master.deliveries.load(Ordering::SeqCst), 0, "runs dropped");
}

#[tokio::test]
async fn runs_stay_queued_until_delivered() {
    let pm = Pm::with(&[ALPHA[0], ALPHA[1], ZETA[0], ZETA[1]]);
    pm.failing.lock().unwrap().insert("zeta".into());
    let master = Master::new(true);
    master.refuse_runs.store(true, Ordering::SeqCst);
    master.approve("alpha");
    master.approve("zeta");
    let r = start(&pm, &master, intervals(HOUR, 100, HOUR), 3);
    until("both run, delivery tried", || {
        pm.jobs() == 2 && master.deliveries.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert!(master.runs().is_empty());
    master.refuse_runs.store(false, Ordering::SeqCst);
    until("both delivered", || master.runs().len() == 2).await;
    r.stop().await;
    let runs = master.runs();
    let by_package: BTreeMap<&str, &Run> = runs.iter().map(|r| (r.package.as_str(), r)).collect();
    assert_eq!(by_package["alpha"].outcome, Outcome::Succeeded);
    let zeta = by_package["zeta"];
    assert_eq!((zeta.outcome, zeta.exit_code), (Outcome::Failed, Some(100)));
    assert!(
        zeta.output.as_str().ends_with("error code (1)\n"),
        "{:?}",
        zeta.output
    );
    assert_ne!(by_package["alpha"].id, zeta.id);
}

#[tokio::test]
async fn a_plan_that_changed_since_its_approval_is_not_run() {
    let pm = Pm::with(&ALPHA);
    *pm.next_simulation.lock().unwrap() = Some(set(&["Inst alpha [1] (3 S)", "Conf alpha (3 S)"]));
    let master = Master::new(true);
    master.approve("alpha");
    let r = start(&pm, &master, intervals(HOUR, 100, HOUR), 3);
    until("two runs delivered", || master.runs().len() == 2).await;
    r.stop().await;
    let runs = master.runs();
    assert_eq!(runs[0].outcome, Outcome::PlanChanged);
    assert_eq!(runs[0].exit_code, None);
    let why = runs[0].output.as_str();
    assert!(
        why.contains("now also update alpha 1 -> 3")
            && why.contains("no longer update alpha 1 -> 2"),
        "{why}"
    );
    // apt ran once, for the attempt whose simulation matched the approved plan.
    assert_eq!(pm.jobs(), 1);
    assert_eq!(runs[1].outcome, Outcome::Succeeded);
}

#[tokio::test]
async fn a_package_is_given_up_after_max_failures_until_approved_again() {
    let pm = Pm::with(&ZETA);
    pm.failing.lock().unwrap().insert("zeta".into());
    let master = Master::new(true);
    master.approve("zeta");
    let r = start(&pm, &master, intervals(HOUR, 50, 50), 2);
    until("zeta given up", || {
        r.monitor.status().given_up_packages.contains("zeta")
    })
    .await;
    assert_eq!(pm.jobs(), 2);
    // Reports and retry intervals go by without a third run.
    let reports = master.reports().len();
    until("five more reports", || {
        master.reports().len() >= reports + 5
    })
    .await;
    assert_eq!(pm.jobs(), 2);
    master.revoke("zeta");
    until("the failures forgotten", || {
        r.monitor.status().failed_packages.is_empty()
    })
    .await;
    master.approve("zeta");
    until("zeta tried again", || pm.jobs() == 3).await;
    r.stop().await;
    let outcomes: Vec<Outcome> = master.runs().iter().map(|r| r.outcome).collect();
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Failed),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn a_held_package_is_never_run_even_when_approved() {
    let pm = Pm::with(&[ALPHA[0], ALPHA[1], ZETA[0], ZETA[1], "Inst omega [1] (2 S)"]);
    // omega's own plan upgrades alpha too: it changes a held package.
    pm.extra.lock().unwrap().insert("omega".into(), set(&ALPHA));
    pm.held
        .lock()
        .unwrap()
        .insert(PackageName::new("alpha").unwrap());
    let master = Master::new(true);
    master.approve_all.store(true, Ordering::SeqCst);
    let r = start(&pm, &master, intervals(50, 50, 50), 3);
    until("zeta upgraded and two more reports", || {
        pm.jobs() == 1 && master.reports().len() >= 4
    })
    .await;
    r.stop().await;
    let jobs = pm.jobs.lock().unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].package.as_str(), "zeta");
    let facts = master.facts.lock().unwrap();
    assert!(facts.iter().all(|f| f.held.len() == 1), "{facts:?}");
}

#[tokio::test]
async fn facts_carry_needs_and_their_change_makes_a_report_due() {
    let pm = Pm::with(&["Inst beta [1] (2 S)", "Conf beta (2 S)"]);
    pm.extra.lock().unwrap().insert(
        "beta".into(),
        set(&["Inst gamma (1 S)", "Conf gamma (1 S)"]),
    );
    // A v1 master holds no report: every report after the first is one the loop found due.
    let master = Master::new(false);
    let r = start(&pm, &master, intervals(20, HOUR, HOUR), 3);
    until("the first report", || !master.reports().is_empty()).await;
    let first = master.facts.lock().unwrap()[0].clone();
    let beta = t("Inst beta [1] (2 S)");
    assert_eq!(
        first.tasks[&beta].needs,
        set(&["Inst gamma (1 S)", "Conf gamma (1 S)"])
    );
    assert!(first.held.is_empty() && !first.reboot_required);
    // Let the loop cycle a while (the check interval is 20 ms): nothing is due.
    until("more cycles", || pm.full_plans.load(Ordering::SeqCst) >= 10).await;
    assert_eq!(master.reports().len(), 1, "no report due before a change");
    pm.held
        .lock()
        .unwrap()
        .insert(PackageName::new("delta").unwrap());
    until("a report with the hold", || {
        master
            .facts
            .lock()
            .unwrap()
            .iter()
            .any(|f| !f.held.is_empty())
    })
    .await;
    r.stop().await;
    assert_eq!(master.reports().len(), 2);
    let last = master.facts.lock().unwrap().last().unwrap().clone();
    assert_eq!(last.held, [PackageName::new("delta").unwrap()].into());
}
