//! A measurement, run by hand (ignored by the test suite; nothing here is asserted about
//! time): approval in the UI → the agent starts apt, with the real master on MariaDB, the real
//! UI and real agents (report interval 300 s) on sandbox apt roots, each with 20 packages
//! waiting for approval. Each agent's apt-get is a wrapper that logs the time of each call,
//! which shows when the agent acted on the master's answer (its first apt-get call after the
//! approval) and when it started apt for the run (`apt-get -yqq`). Two cases, 20 approvals
//! each, each approval made while the agents hold their long-polls:
//!
//! * **fresh hosts**: 20 agents; one package is approved for one agent at a time on its
//!   agent page ("Approve selection for this agent"): each host had nothing approved since its
//!   last report, and the previous one is parked again (done planning after its run);
//! * **back to back on one host**: the 20 packages of one agent approved one after another
//!   on its agent page, each once the previous run was done and reported.
//!
//! Prints each approval's apt-get calls and p50, p99 and max; docs/performance.md
//! ("Long-poll") has the figures and how to rerun it:
//!
//! ```sh
//! MASIF_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306 \
//!   cargo test -p masif --test approval_latency -- --ignored --nocapture
//! ```

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::ui::Ui;
use common::world::{
    apt_get_wrapper, eventually, Backend, Options, Setup, TestAgent, World, MASTER_CN,
};
use masif_testkit::sandbox::{FakePackage, Sandbox, Stage};

/// A production-like pace: only the held report can bring an approval in time.
const SLOW: &str = "{ check: 300, report: 300, retry: 60 }";
const APPROVALS: usize = 20;

fn package(i: usize) -> String {
    format!("lat{i:02}")
}

/// Another of the packages than `package(i)`.
fn package_after(i: usize) -> String {
    package(i % APPROVALS + 1)
}

/// An agent whose apt-get logs its calls to `log`.
struct Timed {
    agent: TestAgent,
    log: PathBuf,
}

impl Timed {
    /// An agent named `name` on a copy of `template`.
    async fn start(world: &World, name: &str, template: &Sandbox) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = template
            .clone_to(&dir.path().join("sandbox"))
            .await
            .unwrap();
        let log = dir.path().join("apt-calls");
        let apt_get = apt_get_wrapper(
            &dir.path().join("apt"),
            &format!("echo \"$(date +%s%N) $*\" >> '{}'", log.display()),
        );
        let setup = Setup {
            masters: &[world.addr],
            tags: &[],
            apt_get: Some(&apt_get),
        };
        let agent =
            TestAgent::start_set_up(world, name, MASTER_CN, SLOW, dir, sandbox, setup).await;
        Self { agent, log }
    }

    /// Waits until `package`'s update is pending and the agent holds its long-poll.
    async fn parked_with(&self, world: &World, package: &str) {
        eventually(
            &format!("{package} pending, {} waiting", self.agent.name),
            || async {
                world
                    .pending(&self.agent.name)
                    .await
                    .contains(&format!("update {package} 2.0"))
                    && self.agent.status().await["activity"] == "waiting_for_approval"
            },
        )
        .await;
    }
}

/// The approval keys of `package`'s update.
fn keys(package: &str) -> [String; 2] {
    ["update", "configure"].map(|action| format!(r#"["{package}","{action}","2.0"]"#))
}

/// The time of each apt-get call since `since` (nanoseconds since the epoch), with its
/// arguments (first `-sqq`: a simulation, `-yqq`: a run).
fn calls_since(log: &Path, since: u128) -> Vec<(u128, String)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (at, args) = l.split_once(' ')?;
            Some((at.parse().ok()?, args.to_owned()))
        })
        .filter(|(at, _)| *at >= since)
        .collect()
}

fn nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

fn ms(from: u128, to: u128) -> f64 {
    (to - from) as f64 / 1e6
}

/// The three latencies of each approval, in milliseconds.
#[derive(Default)]
struct Latencies {
    to_first_call: Vec<f64>,
    first_call_to_run: Vec<f64>,
    to_run: Vec<f64>,
}

impl Latencies {
    /// Waits for `package` 2.0 on `timed`'s host, approved at `posted`, and notes the times
    /// of its apt-get calls.
    async fn note(&mut self, timed: &Timed, package: &str, posted: SystemTime) {
        timed.agent.wait_version(package, "2.0").await;
        let posted = nanos(posted);
        let calls = calls_since(&timed.log, posted);
        let first = calls.first().expect("apt-get called after the approval").0;
        let run = calls
            .iter()
            .find(|(_, args)| args.starts_with("-yqq "))
            .expect("the run")
            .0;
        println!(
            "{} {package}: approval → first apt-get {:.1} ms, → apt run {:.1} ms",
            timed.agent.name,
            ms(posted, first),
            ms(posted, run)
        );
        for (at, args) in calls.iter().take_while(|(at, _)| *at <= run) {
            println!("  +{:7.1} ms apt-get {args}", ms(posted, *at));
        }
        self.to_first_call.push(ms(posted, first));
        self.first_call_to_run.push(ms(first, run));
        self.to_run.push(ms(posted, run));
    }

    fn print(self, case: &str) {
        println!("== {case}");
        summary(
            "approval posted → agent's first apt-get call",
            self.to_first_call,
        );
        summary(
            "agent's first apt-get call → apt-get run started",
            self.first_call_to_run,
        );
        summary("approval posted → apt-get run started", self.to_run);
    }
}

/// Nearest-rank percentile `p` of `ms` (sorted).
fn percentile(ms: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * ms.len() as f64).ceil() as usize;
    ms[rank.clamp(1, ms.len()) - 1]
}

fn summary(what: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{what}: n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
        ms.len(),
        percentile(&ms, 50.0),
        percentile(&ms, 99.0),
        ms[ms.len() - 1]
    );
}

/// Spreads approvals over the master's 250 ms approval poll, as the load bench does (not a
/// wait for a condition: the agents are parked already).
async fn spread(i: usize) {
    tokio::time::sleep(Duration::from_millis((i as u64 * 137) % 1000)).await;
}

#[tokio::test]
#[ignore = "a measurement, run by hand: prints approval → apt start latencies"]
async fn approval_to_apt_start_with_long_polling_agents_on_mariadb() {
    let world = World::start_with(Options {
        backend: Backend::Mysql,
        ..Options::default()
    })
    .await;
    let ui = world.start_ui(Duration::from_secs(900)).await;
    let template_dir = tempfile::tempdir().unwrap();
    let packages: Vec<FakePackage> = (1..=APPROVALS)
        .flat_map(|i| {
            [
                FakePackage::new(&package(i), "1.0"),
                FakePackage::new(&package(i), "2.0").v2(),
            ]
        })
        .collect();
    let template = Sandbox::create(template_dir.path(), &packages)
        .await
        .unwrap();
    template.publish(Stage::V2).await.unwrap();

    let mut fresh = Vec::new();
    for i in 1..=APPROVALS {
        let name = format!("fresh{i:02}.latency.test");
        fresh.push(Timed::start(&world, &name, &template).await);
    }
    // All planned and parked before the first approval: none is busy starting meanwhile.
    for (i, timed) in fresh.iter().enumerate() {
        timed.parked_with(&world, &package(i + 1)).await;
    }
    let mut latencies = Latencies::default();
    for (i, timed) in fresh.iter().enumerate() {
        let package = package(i + 1);
        timed.parked_with(&world, &package).await;
        spread(i).await;
        let [update, configure] = keys(&package);
        let posted = ui
            .approve_for_agent(&timed.agent.name, &[&update, &configure])
            .await;
        latencies.note(timed, &package, posted).await;
        // Parked again before the next approval: its run changed its plan, and the needs of
        // its other updates, planned before it parks, would take the next agent's CPU here
        // (on a fleet, each host has its own).
        timed.parked_with(&world, &package_after(i + 1)).await;
    }
    latencies.print("fresh hosts: one approval each, 20 agents parked");
    for timed in fresh {
        timed.agent.stop().await;
    }

    let one = Timed::start(&world, "one.latency.test", &template).await;
    back_to_back(&world, &ui, &one).await;
    one.agent.stop().await;
    ui.stop().await;
    world.stop().await;
}

/// Approves `one`'s packages one after another, each once the previous run is reported.
async fn back_to_back(world: &World, ui: &Ui, one: &Timed) {
    let mut latencies = Latencies::default();
    for i in 1..=APPROVALS {
        let package = package(i);
        one.parked_with(world, &package).await;
        spread(i).await;
        let [update, configure] = keys(&package);
        let posted = ui
            .approve_for_agent(&one.agent.name, &[&update, &configure])
            .await;
        latencies.note(one, &package, posted).await;
    }
    latencies.print("back to back on one host: 20 approvals, each after the previous run");
}
