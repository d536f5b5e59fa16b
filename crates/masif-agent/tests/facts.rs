//! Host facts against the real apt-get, apt-mark and dpkg in sandbox roots: the origin apt
//! prints for a security archive, held packages (listed, and never run even when approved),
//! the reboot-required file, and what a package's own plan needs besides, as the loop
//! reports them to the master.

mod common;

use common::{eventually, start_loop, LoopConfig};
use masif_agent::apt::Apt;
use masif_agent::PackageManager;
use masif_proto::facts::Facts;
use masif_proto::{Action, PackageName, Task};
use masif_testkit::sandbox::{standard_packages, Sandbox, Stage};

const UPDATE: &[Action] = &[Action::Update, Action::Configure];

fn p(name: &str) -> PackageName {
    PackageName::new(name).unwrap()
}

/// The facts of `package`'s task with `action` in `facts`.
fn task_facts<'a>(
    facts: &'a Facts,
    package: &str,
    action: Action,
) -> Option<(&'a Task, &'a masif_proto::facts::TaskFacts)> {
    facts
        .tasks
        .iter()
        .find(|(t, _)| t.package().as_str() == package && t.action() == action)
}

#[tokio::test]
async fn apt_prints_the_security_archives_label_and_suite_as_the_origin() {
    let dir = tempfile::tempdir().unwrap();
    let sb = Sandbox::create(dir.path(), &standard_packages())
        .await
        .unwrap();
    // The 2.0 versions only in the security archive.
    sb.publish_security(Stage::V2).await.unwrap();
    let apt = Apt::new(sb.apt_settings());
    let plan = apt.plan_full().await.unwrap();
    let alpha = plan
        .steps()
        .iter()
        .find(|s| s.task.package().as_str() == "alpha" && s.task.action() == Action::Update)
        .unwrap();
    let origin = alpha.origin.as_deref().unwrap();
    assert!(
        origin.starts_with("Debian-Security:12/stable-security [") && origin.ends_with(']'),
        "{origin}"
    );
    // In both archives, apt names both.
    sb.publish(Stage::V2).await.unwrap();
    let plan = apt.plan_full().await.unwrap();
    let beta = plan
        .steps()
        .iter()
        .find(|s| s.task.package().as_str() == "beta" && s.task.action() == Action::Update)
        .unwrap();
    assert_eq!(
        beta.origin.as_deref(),
        Some("Sandbox:12/stable, Debian-Security:12/stable-security [all]")
    );
}

#[tokio::test]
async fn apt_mark_lists_the_sandboxs_held_packages() {
    let dir = tempfile::tempdir().unwrap();
    let sb = Sandbox::create(dir.path(), &standard_packages())
        .await
        .unwrap();
    sb.publish(Stage::V2).await.unwrap();
    let apt = Apt::new(sb.apt_settings());
    assert!(apt.held().await.unwrap().is_empty());
    sb.hold("delta").await.unwrap();
    sb.hold("zeta").await.unwrap();
    assert_eq!(apt.held().await.unwrap(), [p("delta"), p("zeta")].into());
    // apt keeps them back.
    let planned = apt.plan_full().await.unwrap().packages();
    assert!(!planned.contains(&p("delta")) && !planned.contains(&p("zeta")));
    sb.unhold("zeta").await.unwrap();
    assert_eq!(apt.held().await.unwrap(), [p("delta")].into());
}

#[tokio::test]
async fn the_loop_reports_origins_needs_and_the_hosts_facts() {
    let r = start_loop(&standard_packages(), LoopConfig::retry(1), |_| {}).await;
    eventually("a report with facts", || async {
        r.master.last_facts().is_some()
    })
    .await;
    let facts = r.master.last_facts().unwrap();
    assert_eq!(
        facts.agent_version.as_ref().map(|v| v.as_str()),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert!(facts.kernel.is_some(), "{facts:?}");
    assert!(!facts.reboot_required && facts.held.is_empty());
    // beta 2.0 depends on the new package gamma: approving beta pulls in gamma's install.
    let (_, beta) = task_facts(&facts, "beta", Action::Update).unwrap();
    let needs: Vec<(String, Action)> = beta
        .needs
        .iter()
        .map(|t| (t.package().to_string(), t.action()))
        .collect();
    assert_eq!(
        needs,
        [
            ("gamma".to_owned(), Action::Install),
            ("gamma".to_owned(), Action::Configure)
        ]
    );
    let (_, beta) = task_facts(&facts, "beta", Action::Update).unwrap();
    assert_eq!(
        beta.origin.as_ref().map(|o| o.as_str()),
        Some("Sandbox:12/stable")
    );
    assert!(!beta.is_security());
    // alpha needs nothing else.
    let (_, alpha) = task_facts(&facts, "alpha", Action::Update).unwrap();
    assert!(alpha.needs.is_empty());

    // The same versions published by the security archive: the next report says so.
    r.sb.publish_security(Stage::V2).await.unwrap();
    eventually("a security origin reported", || async {
        let facts = r.master.last_facts().unwrap();
        task_facts(&facts, "alpha", Action::Update).is_some_and(|(_, f)| f.is_security())
    })
    .await;
    let facts = r.master.last_facts().unwrap();
    let (_, alpha) = task_facts(&facts, "alpha", Action::Update).unwrap();
    assert_eq!(
        alpha.origin.as_ref().unwrap().as_str(),
        "Sandbox:12/stable, Debian-Security:12/stable-security"
    );
    r.stop().await.unwrap();
}

#[tokio::test]
async fn a_reboot_required_reaches_the_master_with_the_tasks_unchanged() {
    let r = start_loop(&standard_packages(), LoopConfig::retry(1), |_| {}).await;
    eventually("a first report", || async {
        r.master.last_facts().is_some()
    })
    .await;
    let tasks = r.master.last_report().unwrap();
    r.sb.require_reboot(&[
        "linux-image-6.1.0-28-amd64",
        "evil\u{1b}[2J",
        "de\u{200b}lta",
        "alpha",
    ])
    .unwrap();
    eventually("reboot_required reported", || async {
        r.master.last_facts().unwrap().reboot_required
    })
    .await;
    assert_eq!(r.master.last_report().unwrap(), tasks);
    let facts = r.master.last_facts().unwrap();
    assert_eq!(
        facts.reboot_packages,
        [p("alpha"), p("linux-image-6.1.0-28-amd64")].into()
    );
    assert!(r.monitor.status().reboot_required);
    r.sb.clear_reboot().unwrap();
    eventually("the reboot done", || async {
        !r.master.last_facts().unwrap().reboot_required
    })
    .await;
    r.stop().await.unwrap();
}

#[tokio::test]
async fn a_held_package_is_never_planned_nor_run_even_when_approved() {
    let config = LoopConfig {
        held: vec!["delta"],
        ..LoopConfig::retry(1)
    };
    let r = start_loop(&standard_packages(), config, |m| {
        // Everything delta's upgrade would need, and alpha.
        m.approve("delta", UPDATE);
        m.approve("epsilon", &[Action::Remove]);
        m.approve("alpha", UPDATE);
    })
    .await;
    eventually("alpha 2.0", || async {
        r.version("alpha").await.as_deref() == Some("2.0")
    })
    .await;
    r.cycles(3).await;
    // `hi`: held, installed.
    let delta = r.sb.package_state("delta").await.unwrap().unwrap();
    assert_eq!(
        (delta.status.as_str(), delta.version.as_str()),
        ("hi", "1.0")
    );
    assert_eq!(r.version("epsilon").await.as_deref(), Some("1.0"));
    assert!(r
        .master
        .runs()
        .iter()
        .all(|run| run.package.as_str() != "delta"));
    let reports = r.master.reports.lock().unwrap().clone();
    assert!(reports
        .iter()
        .flatten()
        .all(|t| t.package().as_str() != "delta"));
    let facts = r.master.last_facts().unwrap();
    assert_eq!(facts.held, [p("delta")].into());
    assert_eq!(
        r.monitor.status().held,
        ["delta".to_owned()].into_iter().collect()
    );
    // Released, it is planned and (approved) run at once.
    r.sb.unhold("delta").await.unwrap();
    eventually("delta 2.0", || async {
        r.version("delta").await.as_deref() == Some("2.0")
    })
    .await;
    assert_eq!(r.version("epsilon").await, None);
    r.stop().await.unwrap();
}
