//! The agent under the master's roll-out controls, with real apt-get and dpkg in sandbox
//! roots: its tags reach the master in the facts; approved tasks the master defers (a closed
//! maintenance window, no free slot) are not run, are shown on the status, and run once an
//! answer to the still-held report lets them; a max-in-flight lease is renewed over the real
//! mutual-TLS client while a slow run goes on and released after it.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, start_loop, LoopConfig, StandInMaster, MASTER_CN};
use masif_agent::apt::Apt;
use masif_agent::{Activity, Agent, Intervals, MasterClient, Monitor};
use masif_proto::v2::{DeferReason, LeaseRequest};
use masif_proto::Action;
use masif_testkit::sandbox::{standard_packages, FakePackage, Sandbox, Stage, BLOCKING_POSTINST};

const UPDATE: &[Action] = &[Action::Update, Action::Configure];
const HOUR: Duration = Duration::from_secs(3600);
/// 2026-12-08T21:00:00Z
const OPENS: i64 = 1_796_763_600;

#[tokio::test]
async fn the_configured_tags_reach_the_master_with_every_report() {
    let config = LoopConfig {
        tags: vec!["web", "prod-eu.1"],
        ..LoopConfig::retry(1)
    };
    let r = start_loop(&standard_packages(), config, |_| {}).await;
    r.cycles(2).await;
    for facts in r.master.facts.lock().unwrap().iter() {
        let tags: Vec<&str> = facts.tags.iter().map(|t| t.as_str()).collect();
        assert_eq!(tags, ["prod-eu.1", "web"]);
    }
    r.stop().await.unwrap();
}

#[tokio::test]
async fn deferred_tasks_wait_in_a_held_report_and_run_once_the_master_lets_them() {
    // Checking and reporting once an hour: only the held report can bring the go-ahead.
    let config = LoopConfig {
        intervals: Intervals {
            check: HOUR,
            report: HOUR,
            retry: HOUR,
        },
        ..LoopConfig::retry(1)
    };
    let packages = [
        FakePackage::new("alpha", "1.0"),
        FakePackage::new("alpha", "2.0").v2(),
    ];
    let r = start_loop(&packages, config, |m| {
        m.approve("alpha", UPDATE);
        m.defer(Some((DeferReason::Window, Some(OPENS))));
    })
    .await;
    // Everything the host needs is approved but deferred: nothing pending, nothing run, and
    // still a report held for the go-ahead rather than an hour's sleep.
    eventually("the deferral shown", || async {
        r.monitor.status().deferred_tasks > 0
    })
    .await;
    eventually("a held report", || async {
        matches!(
            r.monitor.status().activity,
            Activity::WaitingForApproval { .. }
        )
    })
    .await;
    assert!(r.master.waits.lock().unwrap().last().unwrap() > &Duration::ZERO);
    let status = serde_json::to_value(r.monitor.status()).unwrap();
    assert_eq!(status["deferred_reason"], "window", "{status}");
    assert_eq!(status["not_before"], OPENS, "{status}");
    assert_eq!(status["approved_tasks"], 0, "{status}");
    assert_eq!(status["approved_since"], serde_json::Value::Null);
    assert_eq!(status["pending_tasks"], 0, "{status}");
    assert_eq!(r.version("alpha").await.as_deref(), Some("1.0"));
    assert!(r.master.runs().is_empty());

    // The window opens: the held report is answered and alpha is upgraded at once.
    r.master.defer(None);
    eventually("alpha 2.0", || async {
        r.version("alpha").await.as_deref() == Some("2.0")
    })
    .await;
    eventually("the deferral gone", || async {
        r.monitor.status().deferred_tasks == 0
    })
    .await;
    let status = serde_json::to_value(r.monitor.status()).unwrap();
    assert!(status["deferred_reason"].is_null() && status["not_before"].is_null());
    r.stop().await.unwrap();
}

#[tokio::test]
async fn a_lease_is_renewed_while_a_slow_run_goes_on_and_released_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let master = StandInMaster::start().await;
    master.v2.store(true, Ordering::SeqCst);
    // Renewed every third of a second.
    *master.approvals.lease_seconds.lock().unwrap() = Some(1);
    master.approve("sloth", UPDATE);
    let tls = master.agent_files("leased.agent-tests.invalid");
    let client = MasterClient::new(&tls, &[master.addr.to_string()], MASTER_CN).unwrap();
    let packages = [
        FakePackage::new("sloth", "1.0"),
        FakePackage::new("sloth", "2.0")
            .postinst(BLOCKING_POSTINST)
            .v2(),
    ];
    let sb = Sandbox::create(dir.path(), &packages).await.unwrap();
    sb.publish(Stage::V2).await.unwrap();
    let intervals = Intervals {
        check: Duration::from_secs(1),
        report: Duration::from_secs(1),
        retry: Duration::from_secs(1),
    };
    let monitor = Monitor::new();
    let agent = Agent::new(
        Arc::new(Apt::new(sb.apt_settings())),
        Arc::new(client),
        intervals,
        monitor.clone(),
    )
    .with_fact_files(sb.fact_files())
    .without_jitter();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(agent.run(async {
        let _ = stopped.await;
    }));

    eventually("sloth's postinst running", || async {
        sb.postinst_started()
    })
    .await;
    eventually("two renewals during the run", || async {
        master.leases().len() >= 2
    })
    .await;
    assert!(
        master.leases().iter().all(|l| *l == LeaseRequest::Renew),
        "{:?}",
        master.leases()
    );
    sb.release_postinst().unwrap();
    eventually("the lease released after the run", || async {
        master.leases().last() == Some(&LeaseRequest::Release)
    })
    .await;
    assert_eq!(
        sb.installed_version("sloth").await.unwrap().as_deref(),
        Some("2.0")
    );
    // Later reports carry no approval, so no lease: nothing more is renewed or released.
    let reports = monitor.status().reports;
    eventually("two more reports", || async {
        monitor.status().reports >= reports + 2
    })
    .await;
    let leases = master.leases();
    assert_eq!(leases.last(), Some(&LeaseRequest::Release));
    assert_eq!(
        leases
            .iter()
            .filter(|l| **l == LeaseRequest::Release)
            .count(),
        1,
        "{leases:?}"
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
