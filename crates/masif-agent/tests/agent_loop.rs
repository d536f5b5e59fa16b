//! The agent loop against the real apt-get/dpkg in sandbox roots, with an in-process stand-in
//! for the master's approval logic (the end-to-end tests in `crates/masif/tests` use the real
//! master and database): the safety rule, failures, a busy lock, shutdown during a run.

use std::sync::Arc;
use std::time::Duration;

mod common;

use common::{eventually, start_loop, FakeMaster, LoopConfig, Running};
use masif_agent::apt::Apt;
use masif_agent::{Activity, Agent, Monitor};
use masif_proto::Action;
use masif_testkit::sandbox::{standard_packages, FakePackage, SandboxLock};

const UPDATE: &[Action] = &[Action::Update, Action::Configure];
const INSTALL: &[Action] = &[Action::Install, Action::Configure];

async fn start(packages: &[FakePackage], retry: u64, prepare: impl FnOnce(&FakeMaster)) -> Running {
    start_loop(packages, LoopConfig::retry(retry), prepare).await
}

/// Lets the agent run a few more cycles.
async fn cycles(r: &Running, n: usize) {
    r.cycles(n).await
}

#[tokio::test]
async fn only_approved_packages_are_upgraded() {
    let r = start(&standard_packages(), 2, |m| m.approve("alpha", UPDATE)).await;
    eventually("alpha 2.0", || async {
        r.version("alpha").await.as_deref() == Some("2.0")
    })
    .await;
    cycles(&r, 2).await;
    for (name, version) in [
        ("beta", "1.0"),
        ("delta", "1.0"),
        ("epsilon", "1.0"),
        ("zeta", "1.0"),
    ] {
        assert_eq!(r.version(name).await.as_deref(), Some(version), "{name}");
    }
    assert_eq!(r.version("gamma").await, None);
    // The first report held all 11 tasks; alpha's are gone once it is upgraded.
    let first = r.master.reports.lock().unwrap()[0].clone();
    assert_eq!(first.len(), 11);
    let last = r.master.last_report().unwrap();
    assert!(
        last.iter().all(|t| t.package().as_str() != "alpha"),
        "{last:?}"
    );
    assert_eq!(last.len(), 9);
    assert_eq!(r.monitor.status().pending_tasks, 9);
    let status = r.monitor.status();
    assert!(status.last_report.is_some());
    assert_eq!(status.upgrades_done, 1);
    assert!(status.last_error.is_none(), "{:?}", status.last_error);
    let load = r.monitor.load_json();
    assert!(load["update"][0].as_f64().unwrap() >= 1.0, "{load}");
    assert!(load["query"][0].as_f64().unwrap() >= 3.0, "{load}");
    r.stop().await.unwrap();
}

#[tokio::test]
async fn an_install_pulled_in_by_a_dependency_waits_for_its_own_approval() {
    let r = start(&standard_packages(), 2, |m| m.approve("beta", UPDATE)).await;
    cycles(&r, 3).await;
    assert_eq!(r.version("beta").await.as_deref(), Some("1.0"));
    assert_eq!(r.version("gamma").await, None);
    r.master.approve("gamma", INSTALL);
    eventually("beta 2.0", || async {
        r.version("beta").await.as_deref() == Some("2.0")
    })
    .await;
    assert_eq!(r.version("gamma").await.as_deref(), Some("1.0"));
    assert_eq!(r.version("alpha").await.as_deref(), Some("1.0"));
    r.stop().await.unwrap();
}

#[tokio::test]
async fn a_removal_pulled_in_by_a_dependency_waits_for_its_own_approval() {
    let r = start(&standard_packages(), 2, |m| m.approve("delta", UPDATE)).await;
    cycles(&r, 3).await;
    assert_eq!(r.version("delta").await.as_deref(), Some("1.0"));
    assert_eq!(r.version("epsilon").await.as_deref(), Some("1.0"));
    r.master.approve("epsilon", &[Action::Remove]);
    eventually("delta 2.0", || async {
        r.version("delta").await.as_deref() == Some("2.0")
    })
    .await;
    assert_eq!(r.version("epsilon").await, None);
    r.stop().await.unwrap();
}

#[tokio::test]
async fn a_failed_upgrade_is_reported_and_other_packages_still_get_served() {
    let r = start(&standard_packages(), 3600, |m| m.approve("zeta", UPDATE)).await;
    eventually("zeta failed", || async {
        r.monitor.status().failed_packages.contains("zeta")
    })
    .await;
    let status = r.monitor.status();
    let error = status.last_error.unwrap().message;
    assert!(error.contains("zeta"), "{error}");
    assert!(error.contains("post-installation script"), "{error}");
    assert_eq!(
        r.sb.package_state("zeta").await.unwrap().unwrap().status,
        "iF"
    );
    assert!(r.monitor.load_json()["error"][0].as_f64().unwrap() >= 1.0);
    // Not retried before the retry interval (an hour here): one failure only.
    cycles(&r, 3).await;
    let errors = r.monitor.load_json()["error"][2].as_f64().unwrap();
    assert_eq!(errors, 1.0);
    // alpha's run also configures zeta again (approved), fails on zeta, but upgrades alpha.
    r.master.approve("alpha", UPDATE);
    eventually("alpha 2.0", || async {
        r.version("alpha").await.as_deref() == Some("2.0")
    })
    .await;
    cycles(&r, 1).await;
    assert!(r.monitor.status().failed_packages.contains("zeta"));
    assert!(!r.monitor.status().failed_packages.contains("alpha"));
    r.stop().await.unwrap();
}

#[tokio::test]
async fn a_held_lock_delays_the_upgrade_and_is_no_failure() {
    let dir_lock;
    let r = start(&standard_packages(), 1, |_| {}).await;
    dir_lock = r.sb.hold_lock(SandboxLock::DpkgFrontend).await.unwrap();
    r.master.approve("alpha", UPDATE);
    eventually("waiting for the lock", || async {
        matches!(r.monitor.status().activity, Activity::WaitingForLock { .. })
    })
    .await;
    assert_eq!(r.version("alpha").await.as_deref(), Some("1.0"));
    dir_lock.release().await;
    eventually("alpha 2.0", || async {
        r.version("alpha").await.as_deref() == Some("2.0")
    })
    .await;
    let status = r.monitor.status();
    assert!(status.last_error.is_none(), "{:?}", status.last_error);
    assert!(status.failed_packages.is_empty());
    r.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_during_a_run_waits_for_it_to_finish() {
    let packages = vec![
        FakePackage::new("sloth", "1.0"),
        FakePackage::new("sloth", "2.0").postinst("sleep 3").v2(),
    ];
    let r = start(&packages, 2, |m| m.approve("sloth", UPDATE)).await;
    eventually("executing", || async {
        matches!(r.monitor.status().activity, Activity::Executing { .. })
    })
    .await;
    let sb = r.sb.clone();
    let (result, _dir) = r.stop_keeping_sandbox().await;
    result.unwrap();
    // run() returned only after apt and dpkg were done: sloth is fully installed.
    let state = sb.package_state("sloth").await.unwrap().unwrap();
    assert_eq!(
        (state.status.as_str(), state.version.as_str()),
        ("ii", "2.0")
    );
}

#[tokio::test]
async fn shutdown_while_idle_is_immediate() {
    let r = start(&standard_packages(), 2, |_| {}).await;
    cycles(&r, 1).await;
    let stopped = tokio::time::timeout(Duration::from_secs(30), r.stop()).await;
    stopped.expect("stopped").unwrap();
}

#[tokio::test]
async fn the_agent_catches_up_when_the_master_comes_back() {
    let r = start(&standard_packages(), 1, |m| {
        *m.down.lock().unwrap() = true;
        m.approve("alpha", UPDATE);
    })
    .await;
    eventually("a failed report", || async {
        r.monitor.status().last_report_attempt.is_some()
    })
    .await;
    assert!(r.monitor.status().last_report.is_none());
    assert!(r
        .monitor
        .status()
        .last_error
        .unwrap()
        .message
        .contains("connection refused"));
    *r.master.down.lock().unwrap() = false;
    eventually("alpha 2.0", || async {
        r.version("alpha").await.as_deref() == Some("2.0")
    })
    .await;
    assert!(r.monitor.status().last_report.is_some());
    r.stop().await.unwrap();
}

#[tokio::test]
async fn with_retry_zero_the_first_failure_ends_the_agent() {
    let r = start(&standard_packages(), 0, |m| m.approve("zeta", UPDATE)).await;
    let result = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if r.task.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    result.expect("agent ended");
    let err = r.stop().await.unwrap_err().to_string();
    assert!(err.contains("giving up") && err.contains("zeta"), "{err}");
}

#[tokio::test]
async fn a_revoked_approval_stops_counting_at_the_next_report() {
    let r = start(&standard_packages(), 2, |m| m.approve("beta", UPDATE)).await;
    cycles(&r, 2).await;
    assert_eq!(r.monitor.status().approved_tasks, 2);
    r.master.revoke("beta");
    cycles(&r, 2).await;
    assert_eq!(r.monitor.status().approved_tasks, 0);
    // gamma's approval alone must not let the formerly approved beta through.
    r.master.approve("gamma", INSTALL);
    cycles(&r, 3).await;
    assert_eq!(r.version("beta").await.as_deref(), Some("1.0"));
    assert_eq!(r.version("gamma").await, None);
    r.stop().await.unwrap();
}

#[tokio::test]
async fn while_a_lock_is_waited_out_reports_go_on_and_a_revocation_is_honoured() {
    let r = start(&standard_packages(), 1, |_| {}).await;
    let lock = r.sb.hold_lock(SandboxLock::DpkgFrontend).await.unwrap();
    r.master.approve("alpha", UPDATE);
    eventually("waiting for the lock", || async {
        matches!(r.monitor.status().activity, Activity::WaitingForLock { .. })
    })
    .await;
    cycles(&r, 2).await;
    r.master.revoke("alpha");
    cycles(&r, 2).await;
    lock.release().await;
    cycles(&r, 3).await;
    assert_eq!(r.version("alpha").await.as_deref(), Some("1.0"));
    assert!(r.monitor.status().last_error.is_none());
    r.stop().await.unwrap();
}

#[tokio::test]
async fn unreadable_apt_output_is_an_error_quoting_it_and_the_agent_keeps_going() {
    use masif_agent::apt::AptSettings;
    // An "apt-get" that prints something no simulation prints.
    let apt = Apt::new(AptSettings {
        path: "/bin/sh".into(),
        options: vec!["-c".into(), "echo 'Reading package lists... Done'".into()],
        ..AptSettings::default()
    });
    let master = Arc::new(FakeMaster::default());
    let monitor = Monitor::new();
    let agent = Agent::new(
        Arc::new(apt),
        master.clone(),
        LoopConfig::retry(1).intervals,
        monitor.clone(),
    )
    .without_jitter();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(agent.run(async {
        let _ = rx.await;
    }));
    eventually("an error", || async {
        monitor.status().last_error.is_some()
    })
    .await;
    let message = monitor.status().last_error.unwrap().message;
    assert!(
        message.contains("unexpected apt-get output on line 1: \"Reading package lists... Done\""),
        "{message}"
    );
    assert!(
        master.reports.lock().unwrap().is_empty(),
        "nothing reported"
    );
    eventually("a second attempt", || async {
        monitor.load_json()["error"][0].as_f64().unwrap() >= 2.0
    })
    .await;
    assert!(!task.is_finished());
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_smallest_plan_runs_first_and_every_run_is_planned_afresh() {
    let r = start(&standard_packages(), 2, |m| {
        m.approve("beta", UPDATE);
        m.approve("gamma", INSTALL);
        m.approve("delta", UPDATE);
        m.approve("epsilon", &[Action::Remove]);
        m.approve("alpha", UPDATE);
    })
    .await;
    eventually("all three upgraded", || async {
        r.version("alpha").await.as_deref() == Some("2.0")
            && r.version("beta").await.as_deref() == Some("2.0")
            && r.version("delta").await.as_deref() == Some("2.0")
    })
    .await;
    // dpkg's own log in the sandbox says in which order the upgrades ran:
    // alpha (2 tasks), then delta (3: with epsilon's removal), then beta (4: with gamma).
    let log = std::fs::read_to_string(r.sb.root().join("var/log/dpkg.log")).unwrap();
    let order: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split(" upgrade ").nth(1))
        .filter_map(|rest| rest.split(':').next())
        .collect();
    assert_eq!(order, ["alpha", "delta", "beta"], "{log}");
    // (The agent counts a run once it has planned again after it.)
    eventually("three runs counted", || async {
        r.monitor.status().upgrades_done == 3
    })
    .await;
    assert_eq!(r.version("zeta").await.as_deref(), Some("1.0"));
    r.stop().await.unwrap();
}
