//! The APT back end against the real apt-get and dpkg in sandbox roots: plans of every kind,
//! a real upgrade, runs of exactly the approved versions and nothing removed that was not
//! approved, a failing postinst and its aftermath, a held lock, snapshots, and the host's
//! own dpkg database left alone.

use std::collections::BTreeSet;

use masif_agent::apt::Apt;
use masif_agent::{Job, PackageManager, RunOutcome};
use masif_proto::{Action, PackageName};
use masif_testkit::sandbox::{standard_packages, FakePackage, Sandbox, SandboxLock, Stage};

fn p(name: &str) -> PackageName {
    PackageName::new(name).unwrap()
}

/// A job of `package`'s whole plan, as the agent runs it once every task is approved.
async fn job(apt: &Apt, package: &str) -> Job {
    let plan = apt.plan_package(&p(package)).await.unwrap().tasks();
    Job {
        package: p(package),
        plan,
    }
}

async fn sandbox_v2() -> (tempfile::TempDir, Sandbox, Apt) {
    let dir = tempfile::tempdir().unwrap();
    let sb = Sandbox::create(dir.path(), &standard_packages())
        .await
        .unwrap();
    sb.publish(Stage::V2).await.unwrap();
    let apt = Apt::new(sb.apt_settings());
    (dir, sb, apt)
}

/// `(action, package, to_version)` of every task, sorted.
fn summary(tasks: &masif_proto::TaskSet) -> Vec<String> {
    tasks
        .iter()
        .map(|t| {
            format!(
                "{} {} {}",
                t.action(),
                t.package(),
                t.to_version().map(|v| v.as_str()).unwrap_or("-")
            )
        })
        .collect()
}

#[tokio::test]
async fn a_fresh_sandbox_has_the_v1_set_and_nothing_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let sb = Sandbox::create(dir.path(), &standard_packages())
        .await
        .unwrap();
    let installed: Vec<(String, String, String)> = sb
        .packages()
        .await
        .unwrap()
        .into_iter()
        .map(|(n, s)| (n, s.status, s.version))
        .collect();
    let expected: Vec<(String, String, String)> = ["alpha", "beta", "delta", "epsilon", "zeta"]
        .iter()
        .map(|n| (n.to_string(), "ii".to_string(), "1.0".to_string()))
        .collect();
    assert_eq!(installed, expected);
    let apt = Apt::new(sb.apt_settings());
    assert!(apt.plan_full().await.unwrap().is_empty());
    // Rebuilding over an earlier sandbox is allowed; over a foreign directory it is not.
    Sandbox::create(dir.path(), &standard_packages())
        .await
        .unwrap();
    let foreign = tempfile::tempdir().unwrap();
    std::fs::write(foreign.path().join("precious"), "x").unwrap();
    let err = Sandbox::create(foreign.path(), &standard_packages())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("refusing to wipe"), "{err}");
    assert!(foreign.path().join("precious").exists());
}

#[tokio::test]
async fn plans_list_every_kind_with_exact_versions_and_origins() {
    let (_dir, _sb, apt) = sandbox_v2().await;
    let full = apt.plan_full().await.unwrap();
    let expected: BTreeSet<String> = [
        "install gamma 1.0",
        "update alpha 2.0",
        "update beta 2.0",
        "update delta 2.0",
        "update zeta 2.0",
        "configure alpha 2.0",
        "configure beta 2.0",
        "configure delta 2.0",
        "configure gamma 1.0",
        "configure zeta 2.0",
        "remove epsilon -",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let got: BTreeSet<String> = summary(&full.tasks()).into_iter().collect();
    assert_eq!(got, expected, "{full:#?}");
    assert_eq!(full.steps().len(), 11);
    let arch_alpha = full
        .steps()
        .iter()
        .find(|s| s.task.package().as_str() == "alpha" && s.task.action() == Action::Update)
        .unwrap();
    let origin = arch_alpha.origin.as_deref().unwrap();
    assert!(origin.starts_with("Sandbox:12/stable ["), "{origin}");

    // Single-package plans are limited to the package and what it needs.
    let beta = apt.plan_package(&p("beta")).await.unwrap().tasks();
    assert_eq!(
        summary(&beta),
        [
            "update beta 2.0",
            "configure beta 2.0",
            "install gamma 1.0",
            "configure gamma 1.0"
        ]
    );
    let delta = apt.plan_package(&p("delta")).await.unwrap().tasks();
    assert_eq!(
        summary(&delta),
        [
            "update delta 2.0",
            "configure delta 2.0",
            "remove epsilon -"
        ]
    );
    let alpha = apt.plan_package(&p("alpha")).await.unwrap().tasks();
    assert_eq!(summary(&alpha), ["update alpha 2.0", "configure alpha 2.0"]);
}

#[tokio::test]
async fn a_real_upgrade_changes_only_the_sandbox() {
    let (_dir, sb, apt) = sandbox_v2().await;
    let host_before = std::fs::read_to_string("/var/lib/dpkg/status").unwrap();
    let outcome = apt.run_job(&job(&apt, "beta").await).await.unwrap();
    let RunOutcome::Ran(out) = outcome else {
        panic!("busy?")
    };
    assert!(out.success(), "{out:?}");
    assert_eq!(
        sb.installed_version("beta").await.unwrap().as_deref(),
        Some("2.0")
    );
    assert_eq!(
        sb.installed_version("gamma").await.unwrap().as_deref(),
        Some("1.0")
    );
    assert_eq!(
        sb.installed_version("alpha").await.unwrap().as_deref(),
        Some("1.0")
    );
    let file = std::fs::read_to_string(sb.root().join("usr/share/beta/VERSION")).unwrap();
    assert_eq!(file, "beta 2.0\n");
    // The host's dpkg database knows none of the fixtures, and its log never saw them.
    let host_after = std::fs::read_to_string("/var/lib/dpkg/status").unwrap();
    for status in [&host_before, &host_after] {
        for name in ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "slow"] {
            assert!(
                !status.contains(&format!("\nPackage: {name}\n")),
                "host has {name}"
            );
        }
    }
    if let Ok(log) = std::fs::read_to_string("/var/log/dpkg.log") {
        assert!(!log.contains(" beta:all "), "host dpkg.log mentions beta");
    }
    let sandbox_log = std::fs::read_to_string(sb.root().join("var/log/dpkg.log")).unwrap();
    assert!(
        sandbox_log.contains("upgrade beta:all 1.0 2.0"),
        "{sandbox_log}"
    );
}

#[tokio::test]
async fn a_failing_postinst_leaves_a_configure_task_and_poisons_later_runs() {
    let (_dir, sb, apt) = sandbox_v2().await;
    let RunOutcome::Ran(out) = apt.run_job(&job(&apt, "zeta").await).await.unwrap() else {
        panic!("busy?")
    };
    assert_eq!(out.code(), Some(100));
    assert!(
        out.stdout.contains("dpkg: error processing package zeta"),
        "{}",
        out.stdout
    );
    let state = sb.package_state("zeta").await.unwrap().unwrap();
    assert_eq!(
        (state.status.as_str(), state.version.as_str()),
        ("iF", "2.0")
    );
    assert_eq!(sb.installed_version("zeta").await.unwrap(), None);
    let full = apt.plan_full().await.unwrap().tasks();
    assert!(summary(&full).contains(&"configure zeta 2.0".to_string()));
    assert!(!summary(&full).contains(&"update zeta 2.0".to_string()));
    // alpha's plan now carries zeta's configure; its run upgrades alpha and still exits 100.
    let alpha = apt.plan_package(&p("alpha")).await.unwrap().tasks();
    assert!(summary(&alpha).contains(&"configure zeta 2.0".to_string()));
    let RunOutcome::Ran(out) = apt.run_job(&job(&apt, "alpha").await).await.unwrap() else {
        panic!("busy?")
    };
    assert_eq!(out.code(), Some(100));
    assert_eq!(
        sb.installed_version("alpha").await.unwrap().as_deref(),
        Some("2.0")
    );
}

#[tokio::test]
async fn a_held_lock_is_busy_not_a_failure() {
    let (_dir, sb, apt) = sandbox_v2().await;
    for lock in [SandboxLock::DpkgFrontend, SandboxLock::Dpkg] {
        let holder = sb.hold_lock(lock).await.unwrap();
        // Simulations take no lock.
        assert!(!apt.plan_full().await.unwrap().is_empty());
        match apt.run_job(&job(&apt, "alpha").await).await.unwrap() {
            RunOutcome::Busy(reason) => assert!(reason.contains("lock"), "{reason}"),
            RunOutcome::Ran(out) => panic!("ran despite {lock:?}: {out:?}"),
        }
        assert_eq!(
            sb.installed_version("alpha").await.unwrap().as_deref(),
            Some("1.0")
        );
        holder.release().await;
    }
    let RunOutcome::Ran(out) = apt.run_job(&job(&apt, "alpha").await).await.unwrap() else {
        panic!("still busy after release")
    };
    assert!(out.success());
    assert_eq!(
        sb.installed_version("alpha").await.unwrap().as_deref(),
        Some("2.0")
    );
}

#[tokio::test]
async fn snapshots_restore_the_dpkg_database() {
    let (_dir, sb, apt) = sandbox_v2().await;
    sb.snapshot().unwrap();
    apt.run_job(&job(&apt, "delta").await).await.unwrap();
    assert_eq!(
        sb.installed_version("delta").await.unwrap().as_deref(),
        Some("2.0")
    );
    assert_eq!(sb.installed_version("epsilon").await.unwrap(), None);
    sb.restore().unwrap();
    assert_eq!(
        sb.installed_version("delta").await.unwrap().as_deref(),
        Some("1.0")
    );
    assert_eq!(
        sb.installed_version("epsilon").await.unwrap().as_deref(),
        Some("1.0")
    );
    assert_eq!(apt.plan_full().await.unwrap().tasks().len(), 11);
}

#[tokio::test]
async fn a_clone_has_the_same_state_and_is_independent() {
    let (_dir, sb, apt) = sandbox_v2().await;
    let other = tempfile::tempdir().unwrap();
    let copy = sb.clone_to(other.path()).await.unwrap();
    assert_ne!(copy.apt_config(), sb.apt_config());
    let copy_apt = Apt::new(copy.apt_settings());
    assert_eq!(
        copy_apt.plan_full().await.unwrap().tasks(),
        apt.plan_full().await.unwrap().tasks()
    );
    let RunOutcome::Ran(out) = copy_apt
        .run_job(&job(&copy_apt, "alpha").await)
        .await
        .unwrap()
    else {
        panic!("busy?")
    };
    assert!(out.success(), "{out:?}");
    assert_eq!(
        copy.installed_version("alpha").await.unwrap().as_deref(),
        Some("2.0")
    );
    assert_eq!(
        sb.installed_version("alpha").await.unwrap().as_deref(),
        Some("1.0")
    );
    // Cloning onto itself is refused before anything is touched.
    assert!(sb.clone_to(sb.dir()).await.is_err());
    assert_eq!(apt.plan_full().await.unwrap().tasks().len(), 11);
    // The copy reads its own repository: the original's may go away.
    drop(_dir);
    assert_eq!(copy_apt.plan_full().await.unwrap().tasks().len(), 9);
}

#[tokio::test]
async fn a_job_runs_the_approved_versions_even_after_newer_ones_appear() {
    let dir = tempfile::tempdir().unwrap();
    let mut packages = standard_packages();
    packages.push(FakePackage::new("alpha", "3.0").native().v3());
    let sb = Sandbox::create(dir.path(), &packages).await.unwrap();
    sb.publish(Stage::V2).await.unwrap();
    let apt = Apt::new(sb.apt_settings());
    let alpha = job(&apt, "alpha").await;
    assert_eq!(
        summary(&alpha.plan),
        ["update alpha 2.0", "configure alpha 2.0"]
    );
    sb.publish(Stage::V3).await.unwrap();
    // Planned afresh, alpha would go to 3.0; the approved job still shows (and does) 2.0.
    let now = apt.plan_package(&p("alpha")).await.unwrap().tasks();
    assert_eq!(summary(&now), ["update alpha 3.0", "configure alpha 3.0"]);
    assert_eq!(apt.simulate_job(&alpha).await.unwrap().tasks(), alpha.plan);
    let RunOutcome::Ran(out) = apt.run_job(&alpha).await.unwrap() else {
        panic!("busy?")
    };
    assert!(out.success(), "{out:?}");
    assert_eq!(
        sb.installed_version("alpha").await.unwrap().as_deref(),
        Some("2.0")
    );
}

#[tokio::test]
async fn without_an_approved_removal_apt_removes_nothing() {
    let (_dir, sb, apt) = sandbox_v2().await;
    let mut delta = job(&apt, "delta").await;
    assert!(summary(&delta.plan).contains(&"remove epsilon -".to_string()));
    // A plan that (wrongly) lacks the removal: the simulation refuses, and so does the run.
    delta.plan.retain(|t| t.action() != Action::Remove);
    let err = apt.simulate_job(&delta).await.unwrap_err().to_string();
    assert!(err.contains("--no-remove delta=2.0"), "{err}");
    assert!(
        err.contains("Packages need to be removed but remove is disabled"),
        "{err}"
    );
    let RunOutcome::Ran(out) = apt.run_job(&delta).await.unwrap() else {
        panic!("busy?")
    };
    assert_eq!(out.code(), Some(100));
    assert!(out.stderr.contains("remove is disabled"), "{}", out.stderr);
    for (name, version) in [("delta", "1.0"), ("epsilon", "1.0")] {
        assert_eq!(
            sb.installed_version(name).await.unwrap().as_deref(),
            Some(version),
            "{name}"
        );
    }
}
