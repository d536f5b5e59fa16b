//! Protocol v2 in the agent loop, against the real apt-get/dpkg in sandbox roots: an approval
//! answers the held report and apt starts at once; after a run, the next approval goes
//! straight to its package (the other updates' `needs` were planned before the held report);
//! runs carry exactly the approved versions; a plan that changed between approval and run
//! (the package lists were updated) is refused, reported as such and planned again; a
//! removal that appears meanwhile is not done; a package is given up after `max_failures`
//! failed runs until approved again; a v1 master gets the old behaviour.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod common;

use common::{eventually, start_loop, Event, LoopConfig, Running};
use masif_agent::{Activity, Intervals};
use masif_proto::v2::{Outcome, Run};
use masif_proto::Action;
use masif_testkit::sandbox::{standard_packages, FakePackage, Stage};

const UPDATE: &[Action] = &[Action::Update, Action::Configure];
const INSTALL: &[Action] = &[Action::Install, Action::Configure];
const HOUR: Duration = Duration::from_secs(3600);

/// "action package from -> to" of each task of a run.
fn tasks_of(run: &Run) -> Vec<String> {
    run.tasks.iter().map(|t| t.to_string()).collect()
}

/// The standard packages and `extra`, published with [`Stage::V3`].
fn with_v3(extra: Vec<FakePackage>) -> Vec<FakePackage> {
    let mut packages = standard_packages();
    packages.extend(extra.into_iter().map(FakePackage::v3));
    packages
}

/// Runs delivered, once there are `n`.
async fn runs(r: &Running, n: usize) -> Vec<Run> {
    eventually(&format!("{n} runs delivered"), || async {
        r.master.runs().len() >= n
    })
    .await;
    r.master.runs()
}

/// `(package, from, to)` of each upgrade in the sandbox's dpkg log, in order.
fn upgrades(r: &Running) -> Vec<(String, String, String)> {
    let log = std::fs::read_to_string(r.sb.root().join("var/log/dpkg.log")).unwrap();
    log.lines()
        .filter_map(|l| l.split(" upgrade ").nth(1))
        .map(|rest| {
            let f: Vec<&str> = rest.split(' ').collect();
            let package = f[0].split(':').next().unwrap().to_owned();
            (package, f[1].to_owned(), f[2].to_owned())
        })
        .collect()
}

/// Planning, reporting and retrying once an hour, one attempt per package: only a held
/// report can bring an approval within a test.
fn hourly() -> LoopConfig {
    LoopConfig {
        intervals: Intervals {
            check: HOUR,
            report: HOUR,
            retry: HOUR,
        },
        ..LoopConfig::retry(1)
    }
}

#[tokio::test]
async fn an_approval_answers_the_held_report_and_apt_starts_at_once() {
    // Planning and reporting once an hour: only the held report can bring the approval.
    let config = hourly();
    let r = start_loop(&standard_packages(), config, |_| {}).await;
    eventually("a held report", || async {
        matches!(
            r.monitor.status().activity,
            Activity::WaitingForApproval { .. }
        ) && r.master.waits.lock().unwrap().last() == Some(&HOUR)
    })
    .await;
    let approved_at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    r.master.approve("alpha", UPDATE);
    let run = runs(&r, 1).await.remove(0);
    assert_eq!(r.version("alpha").await.as_deref(), Some("2.0"));
    assert_eq!((run.outcome, run.exit_code), (Outcome::Succeeded, Some(0)));
    assert_eq!(
        tasks_of(&run),
        ["update alpha 1.0 -> 2.0", "configure alpha 2.0"]
    );
    assert!(
        run.started_at <= approved_at.as_secs() as i64 + 2,
        "apt started {} s after the approval",
        run.started_at - approved_at.as_secs() as i64
    );
    r.stop().await.unwrap();
}

#[tokio::test]
async fn after_a_run_the_next_approval_goes_straight_to_its_package() {
    // Planning and reporting once an hour: only held reports bring approvals.
    let config = hourly();
    let r = start_loop(&standard_packages(), config, |_| {}).await;
    let parked = |without: &'static str| {
        let r = &r;
        async move {
            matches!(
                r.monitor.status().activity,
                Activity::WaitingForApproval { .. }
            ) && r.master.waits.lock().unwrap().last() == Some(&HOUR)
                && r.master
                    .last_report()
                    .is_some_and(|tasks| !tasks.iter().any(|t| t.to_string() == without))
        }
    };
    eventually("a held report", || parked("")).await;
    r.master.approve("alpha", UPDATE);
    runs(&r, 1).await;
    eventually("held again without alpha", || {
        parked("update alpha 1.0 -> 2.0")
    })
    .await;
    // The run changed the full plan: every remaining update was planned on its own for its
    // needs before the held report, which carries them.
    let after_alpha = r.master.events.all();
    let run = after_alpha
        .iter()
        .position(|e| *e == Event::Run("alpha".into()))
        .unwrap();
    let planned: BTreeSet<&str> = after_alpha[run..]
        .iter()
        .filter_map(|e| match e {
            Event::PlanPackage(p) => Some(p.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(planned, BTreeSet::from(["beta", "delta", "zeta"]));
    let facts = r.master.last_facts().unwrap();
    let beta = facts
        .tasks
        .iter()
        .find(|(t, _)| t.to_string() == "update beta 1.0 -> 2.0")
        .unwrap()
        .1;
    let needs: BTreeSet<String> = beta.needs.iter().map(|t| t.to_string()).collect();
    assert_eq!(
        needs,
        BTreeSet::from(["install gamma 1.0".into(), "configure gamma 1.0".into()])
    );

    r.master.approve("beta", UPDATE);
    r.master.approve("gamma", INSTALL);
    let run = runs(&r, 2).await.remove(1);
    assert_eq!(run.outcome, Outcome::Succeeded);
    // From the answer that started beta's cycle to its run: the full plan, beta's own plan
    // and the check of the run against its approval, as on a host that ran nothing before;
    // no other package planned.
    let events = r.master.events.all();
    let ran = events
        .iter()
        .position(|e| *e == Event::Run("beta".into()))
        .unwrap();
    let answered = events[..ran]
        .iter()
        .rposition(|e| matches!(e, Event::Answered(_)))
        .unwrap();
    assert!(answered >= after_alpha.len(), "{events:#?}");
    assert_eq!(
        events[answered + 1..ran],
        [
            Event::PlanFull,
            Event::PlanPackage("beta".into()),
            Event::Simulate("beta".into()),
        ],
        "{events:#?}"
    );
    r.stop().await.unwrap();
}

#[tokio::test]
async fn a_run_installs_the_approved_version_even_if_a_newer_one_appeared() {
    let config = LoopConfig {
        publish_before_run: Some(Stage::V3),
        ..LoopConfig::retry(1)
    };
    let packages = with_v3(vec![FakePackage::new("alpha", "3.0").native()]);
    // The approval pattern covers any version of alpha: 3.0 gets its own run.
    let r = start_loop(&packages, config, |m| m.approve("alpha", UPDATE)).await;
    let runs = runs(&r, 2).await;
    assert_eq!(
        tasks_of(&runs[0]),
        ["update alpha 1.0 -> 2.0", "configure alpha 2.0"]
    );
    assert_eq!(
        tasks_of(&runs[1]),
        ["update alpha 2.0 -> 3.0", "configure alpha 3.0"]
    );
    assert!(runs.iter().all(|r| r.outcome == Outcome::Succeeded));
    let expected = [("alpha", "1.0", "2.0"), ("alpha", "2.0", "3.0")]
        .map(|(p, f, t)| (p.to_owned(), f.to_owned(), t.to_owned()));
    assert_eq!(upgrades(&r), expected);
    r.stop().await.unwrap();
}

#[tokio::test]
async fn a_run_whose_plan_changed_is_refused_and_planned_again() {
    let config = LoopConfig {
        publish_before_run: Some(Stage::V3),
        ..LoopConfig::retry(1)
    };
    let packages = with_v3(vec![FakePackage::new("gamma", "1.1")]);
    let r = start_loop(&packages, config, |m| {
        m.approve("beta", UPDATE);
        m.approve("gamma", INSTALL);
    })
    .await;
    let runs = runs(&r, 2).await;
    assert_eq!(
        (runs[0].outcome, runs[0].exit_code),
        (Outcome::PlanChanged, None)
    );
    let why = runs[0].output.as_str();
    assert!(
        why.contains("now also install gamma 1.1, configure gamma 1.1")
            && why.contains("no longer install gamma 1.0, configure gamma 1.0"),
        "{why}"
    );
    // Planned again, the new dependency (approved by the pattern) came with the next run.
    assert_eq!(runs[1].outcome, Outcome::Succeeded);
    assert!(tasks_of(&runs[1]).contains(&"install gamma 1.1".to_owned()));
    assert_eq!(r.version("beta").await.as_deref(), Some("2.0"));
    assert_eq!(r.version("gamma").await.as_deref(), Some("1.1"));
    let log = std::fs::read_to_string(r.sb.root().join("var/log/dpkg.log")).unwrap();
    assert!(!log.contains("gamma:all <none> 1.0"), "{log}");
    assert_eq!(r.monitor.status().last_run.unwrap().outcome, "succeeded");
    r.stop().await.unwrap();
}

#[tokio::test]
async fn a_removal_that_appeared_before_the_run_is_not_done() {
    let config = LoopConfig {
        publish_before_run: Some(Stage::V3),
        ..LoopConfig::retry(1)
    };
    let packages = with_v3(vec![
        FakePackage::new("gamma", "1.1").field("Conflicts: epsilon")
    ]);
    let r = start_loop(&packages, config, |m| {
        m.approve("beta", UPDATE);
        m.approve("gamma", INSTALL);
    })
    .await;
    let refused = runs(&r, 1).await.remove(0);
    assert_eq!(refused.outcome, Outcome::PlanChanged);
    assert!(
        refused.output.as_str().contains("remove is disabled"),
        "{}",
        refused.output.as_str()
    );
    // beta's new plan removes epsilon, which nobody approved: it waits.
    eventually("beta's new plan reported", || async {
        r.master
            .last_report()
            .is_some_and(|t| t.iter().any(|t| t.to_string() == "install gamma 1.1"))
    })
    .await;
    r.cycles(3).await;
    assert_eq!(r.master.runs().len(), 1);
    for (package, version) in [
        ("beta", Some("1.0")),
        ("epsilon", Some("1.0")),
        ("gamma", None),
    ] {
        assert_eq!(r.version(package).await.as_deref(), version, "{package}");
    }
    r.master.approve("epsilon", &[Action::Remove]);
    let done = runs(&r, 2).await.remove(1);
    assert_eq!(done.outcome, Outcome::Succeeded);
    assert!(tasks_of(&done).contains(&"remove epsilon 1.0".to_owned()));
    assert_eq!(r.version("epsilon").await, None);
    assert_eq!(r.version("beta").await.as_deref(), Some("2.0"));
    r.stop().await.unwrap();
}

#[tokio::test]
async fn a_package_is_given_up_after_max_failures_until_approved_again() {
    let config = LoopConfig {
        max_failures: 2,
        ..LoopConfig::retry(1)
    };
    let r = start_loop(&standard_packages(), config, |m| m.approve("zeta", UPDATE)).await;
    eventually("zeta given up", || async {
        r.monitor.status().given_up_packages.contains("zeta")
    })
    .await;
    // The second run only configured the half-installed zeta: the same attempt.
    let failed = r.master.runs();
    assert_eq!(failed.len(), 2, "{failed:#?}");
    assert!(failed
        .iter()
        .all(|r| r.outcome == Outcome::Failed && r.exit_code == Some(100)));
    assert_eq!(tasks_of(&failed[1]), ["configure zeta 2.0"]);
    assert!(
        failed[1].output.as_str().contains("zeta"),
        "{:?}",
        failed[1].output
    );
    // Retry intervals pass without a third run.
    r.cycles(4).await;
    assert_eq!(r.master.runs().len(), 2);
    r.master.revoke("zeta");
    eventually("the failures forgotten", || async {
        r.monitor.status().failed_packages.is_empty()
    })
    .await;
    r.master.approve("zeta", UPDATE);
    runs(&r, 3).await;
    r.stop().await.unwrap();
}

#[tokio::test]
async fn a_v1_master_gets_reports_at_the_report_interval_and_no_runs() {
    let r = start_loop(&standard_packages(), LoopConfig::retry(1), |m| {
        m.v1.store(true, std::sync::atomic::Ordering::SeqCst);
        m.approve("alpha", UPDATE);
    })
    .await;
    eventually("alpha 2.0", || async {
        r.version("alpha").await.as_deref() == Some("2.0")
    })
    .await;
    r.cycles(2).await;
    assert!(r.master.waits.lock().unwrap().iter().all(Duration::is_zero));
    assert!(r.master.runs().is_empty());
    assert_eq!(r.monitor.status().last_run.unwrap().outcome, "succeeded");
    r.stop().await.unwrap();
}
