//! Faults under the agent: the `masif-agent` binary killed with SIGKILL (with everything it
//! started, as systemd's `KillMode=control-group` does) while dpkg configures a package; a full
//! disk under dpkg's database during an approved upgrade; a master answering 429 and 503 with
//! `Retry-After`. Real apt-get and dpkg in sandbox roots, real mutual TLS.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eventually, FakeMaster, StandInMaster, MASTER_CN};
use masif_agent::apt::Apt;
use masif_agent::exec::{Runner, Running};
use masif_agent::{Agent, Intervals, MasterClient, Monitor};
use masif_proto::v2::{Outcome, Run};
use masif_proto::Action;
use masif_testkit::sandbox::{kill_tree, FakePackage, Sandbox, Stage, BLOCKING_POSTINST};

const BIN: &str = env!("CARGO_BIN_EXE_masif-agent");

async fn spawn_agent(config: &Path) -> Running {
    Runner::default()
        .command(BIN)
        .arg("--config")
        .arg(config)
        .spawn()
        .await
        .unwrap()
}

/// The runs the master got that report `dpkg --audit` findings.
fn audit_runs(master: &StandInMaster) -> Vec<Run> {
    master
        .runs
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.output.as_str().contains("$ dpkg --audit"))
        .cloned()
        .collect()
}

#[tokio::test]
async fn an_agent_killed_during_dpkg_reports_the_interrupted_state_once_and_repairs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let master = StandInMaster::start().await;
    master.v2.store(true, Ordering::SeqCst);
    let tls = master.agent_files("killed.agent-tests.invalid");
    let packages = [
        FakePackage::new("sloth", "1.0"),
        FakePackage::new("sloth", "2.0")
            .postinst(BLOCKING_POSTINST)
            .v2(),
        FakePackage::new("alpha", "1.0"),
        FakePackage::new("alpha", "2.0").v2(),
    ];
    let sandbox = Sandbox::create(&dir.path().join("sb"), &packages)
        .await
        .unwrap();
    sandbox.publish(Stage::V2).await.unwrap();
    let socket = dir.path().join("agent.sock");
    let config = dir.path().join("agent.yml");
    std::fs::write(
        &config,
        common::agent_yaml(&master, &tls, &sandbox, &socket, 1),
    )
    .unwrap();
    // sloth's upgrade is approved, alpha's is not.
    master.approve("sloth", &[Action::Update, Action::Configure]);

    let first = spawn_agent(&config).await;
    eventually("sloth's postinst running", || async {
        sandbox.postinst_started()
    })
    .await;
    kill_tree(first.id().unwrap()).await.unwrap();
    let _ = first.wait().await;
    let state = sandbox.package_state("sloth").await.unwrap().unwrap();
    assert_ne!(state.status, "ii", "dpkg was interrupted: {state:?}");
    // From now on a configure of sloth would finish: had the agent run `dpkg --configure -a`,
    // sloth would end up installed.
    sandbox.release_postinst().unwrap();
    // The killed agent left its socket behind: the new one replaces it.

    let second = spawn_agent(&config).await;
    eventually("the interrupted state reported as a failed run", || async {
        !audit_runs(&master).is_empty()
    })
    .await;
    let run = audit_runs(&master).remove(0);
    assert_eq!(run.package.as_str(), "sloth");
    assert_eq!(run.outcome, Outcome::Failed);
    assert!(
        run.output.as_str().contains("only half configured")
            && run.output.as_str().contains("was dpkg interrupted?"),
        "{}",
        run.output.as_str()
    );
    // Several cycles later: reported once, nothing repaired, nothing unapproved done.
    let requests = master.requests.load(Ordering::SeqCst);
    eventually("more reports", || async {
        master.requests.load(Ordering::SeqCst) >= requests + 6
    })
    .await;
    assert_eq!(audit_runs(&master).len(), 1, "reported once");
    let state = sandbox.package_state("sloth").await.unwrap().unwrap();
    assert_ne!(state.status, "ii", "nobody configured sloth: {state:?}");
    assert_eq!(
        sandbox.installed_version("alpha").await.unwrap().as_deref(),
        Some("1.0")
    );
    let status = masif_agent::api::query(&socket, "/v1/status")
        .await
        .unwrap();
    assert!(
        status["dpkg_audit"]
            .as_str()
            .is_some_and(|a| a.contains("sloth")),
        "{status}"
    );
    kill_tree(second.id().unwrap()).await.unwrap();
    let _ = second.wait().await;
}

/// A tmpfs mounted over a directory for as long as it lives (the test runs as root).
struct Tmpfs {
    at: std::path::PathBuf,
}

impl Tmpfs {
    /// Mounts a 1 MiB tmpfs over `dir` holding a copy of its contents, then fills it.
    async fn full_over(dir: &Path) -> Self {
        let copy = dir.with_extension("orig");
        let runner = Runner::default();
        let run = |program: &'static str, args: Vec<String>| {
            let runner = runner.clone();
            async move {
                let out = runner.command(program).args(&args).run().await.unwrap();
                assert!(out.success(), "{program} {args:?}: {out:?}");
            }
        };
        let d = dir.display().to_string();
        let c = copy.display().to_string();
        run("/bin/cp", vec!["-a".into(), d.clone(), c.clone()]).await;
        run(
            "/bin/mount",
            vec!["-t".into(), "tmpfs".into(), "-o".into(), "size=1m".into()]
                .into_iter()
                .chain(["tmpfs".into(), d.clone()])
                .collect(),
        )
        .await;
        let guard = Self { at: dir.into() };
        run("/bin/cp", vec!["-a".into(), format!("{c}/."), d]).await;
        guard.fill();
        guard
    }

    fn filler(&self) -> std::path::PathBuf {
        self.at.join("filler")
    }

    /// Writes zeros until the file system is full.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.filler()).unwrap();
        let chunk = [0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
    }

    fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // A test fixture: umount(8) before the directory goes away.
        #[allow(clippy::disallowed_methods)]
        let _ = std::process::Command::new("/bin/umount")
            .arg("-l")
            .arg(&self.at)
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_under_dpkg_fails_clearly_and_the_upgrade_succeeds_once_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let packages = [
        FakePackage::new("alpha", "1.0"),
        FakePackage::new("alpha", "2.0").v2(),
    ];
    let sb = Sandbox::create(dir.path(), &packages).await.unwrap();
    sb.publish(Stage::V2).await.unwrap();
    let disk = Tmpfs::full_over(&sb.root().join("var/lib/dpkg")).await;
    let master = Arc::new(FakeMaster::default());
    master.approve("alpha", &[Action::Update, Action::Configure]);
    let monitor = Monitor::new();
    let intervals = Intervals {
        check: Duration::from_secs(1),
        report: Duration::from_millis(500),
        retry: Duration::from_secs(1),
    };
    // One failure gives a package up, unless a full disk caused it.
    let agent = Agent::new(
        Arc::new(Apt::new(sb.apt_settings())),
        master.clone(),
        intervals,
        monitor.clone(),
    )
    .with_max_failures(1)
    .with_fact_files(sb.fact_files())
    .without_jitter();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(agent.run(async {
        let _ = stopped.await;
    }));
    eventually("two failed runs on the full disk", || async {
        master
            .runs()
            .iter()
            .filter(|r| {
                r.outcome == Outcome::Failed
                    && r.output.as_str().contains("No space left on device")
            })
            .count()
            >= 2
    })
    .await;
    let status = monitor.status();
    let error = status.last_error.clone().unwrap().message;
    assert!(error.starts_with("disk full: upgrading alpha"), "{error}");
    assert!(status.given_up_packages.is_empty(), "{status:?}");
    assert_eq!(
        sb.installed_version("alpha").await.unwrap().as_deref(),
        Some("1.0")
    );
    disk.free();
    eventually("alpha 2.0 once there is space", || async {
        sb.installed_version("alpha").await.unwrap().as_deref() == Some("2.0")
    })
    .await;
    assert!(!task.is_finished(), "the agent kept running");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    drop(disk);
}

/// The loop with the real master client against the stand-in (speaking v2 or v1 only),
/// reporting every 3 s and retrying after 100 ms.
async fn overloaded_master_is_left_alone_as_asked(v2: bool) {
    let dir = tempfile::tempdir().unwrap();
    // The stand-in plays an overloaded master: ours answers 429 to an agent reporting too
    // often and 503 when its report queue is full, both with Retry-After.
    let master = StandInMaster::start().await;
    master.v2.store(v2, Ordering::SeqCst);
    let tls = master.agent_files("busy.agent-tests.invalid");
    let client = MasterClient::new(&tls, &[master.addr.to_string()], MASTER_CN).unwrap();
    let sb = Sandbox::create(dir.path(), &[FakePackage::new("calm", "1.0")])
        .await
        .unwrap();
    let monitor = Monitor::new();
    let intervals = Intervals {
        check: Duration::from_secs(1),
        report: Duration::from_secs(3),
        retry: Duration::from_millis(100),
    };
    let agent = Agent::new(
        Arc::new(Apt::new(sb.apt_settings())),
        Arc::new(client),
        intervals,
        monitor.clone(),
    )
    .without_jitter();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(agent.run(async {
        let _ = stopped.await;
    }));
    eventually("a first report", || async { monitor.status().reports >= 1 }).await;
    let overloaded_arrivals = |from: usize| -> Vec<Instant> {
        master.arrivals.lock().unwrap()[from..]
            .iter()
            .filter(|(_, overloaded)| *overloaded)
            .map(|(t, _)| *t)
            .collect()
    };
    for (status, asked, waited) in [(503, 2, 2), (429, 3600, 3)] {
        let from = master.arrivals.lock().unwrap().len();
        *master.overloaded.lock().unwrap() = Some((status, asked));
        eventually("three requests answered as overloaded", || async {
            overloaded_arrivals(from).len() >= 3
        })
        .await;
        // Each came at least the asked time (capped at the report interval) after the last.
        let times = overloaded_arrivals(from);
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::from_secs(waited),
                "{status} Retry-After {asked}: the next request came after {gap:?}"
            );
        }
        *master.overloaded.lock().unwrap() = None;
        let reports = monitor.status().reports;
        eventually("reports again", || async {
            monitor.status().reports > reports
        })
        .await;
    }
    assert_eq!(monitor.status().protocol, Some(if v2 { 2 } else { 1 }));
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn retry_after_is_honoured_on_v2() {
    overloaded_master_is_left_alone_as_asked(true).await;
}

#[tokio::test]
async fn retry_after_is_honoured_on_v1() {
    overloaded_master_is_left_alone_as_asked(false).await;
}
