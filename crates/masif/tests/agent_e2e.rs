//! End to end: the real agent (`masif_agent::run`, configured from a YAML file) against real
//! apt-get/dpkg in sandbox roots, the real master over mutual TLS with certificates made here,
//! and the real MariaDB, with approvals written the way the UI writes them
//! (`masif_store::Admin::approve`). Cases (a)–(g) of issue 3, plus a master certificate that
//! does not match `master.cn` and an approval revoked in the UI.

mod common;

use common::world::{eventually, TestAgent, World};
use masif_proto::{Action, AgentName};
use masif_store::{ApprovalScope, Page};
use masif_testkit::sandbox::SandboxLock;

fn host_dpkg_knows_no_fixture() {
    let status = std::fs::read_to_string("/var/lib/dpkg/status").unwrap();
    for name in ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "slow"] {
        assert!(
            !status.contains(&format!("\nPackage: {name}\n")),
            "the host's dpkg database has {name}"
        );
    }
}

#[tokio::test]
async fn a_reported_update_is_installed_only_after_approval() {
    let world = World::start().await;
    let agent = TestAgent::start(&world, "agent-a.e2e.test").await;
    eventually("alpha pending at the master", || async {
        world
            .pending("agent-a.e2e.test")
            .await
            .contains(&"update alpha 2.0".to_string())
    })
    .await;
    assert_eq!(world.pending("agent-a.e2e.test").await.len(), 11);
    let status = agent.status().await;
    assert_eq!(status["agent"], "agent-a.e2e.test");
    assert_eq!(status["master"], world.addr.to_string());
    agent.cycles(2).await;
    assert_eq!(agent.version("alpha").await.as_deref(), Some("1.0"));

    world.approve_update("alpha", "2.0").await;
    agent.wait_version("alpha", "2.0").await;
    agent.cycles(1).await;
    for (package, version) in [
        ("beta", "1.0"),
        ("delta", "1.0"),
        ("epsilon", "1.0"),
        ("zeta", "1.0"),
    ] {
        assert_eq!(
            agent.version(package).await.as_deref(),
            Some(version),
            "{package}"
        );
    }
    let pending = world.pending("agent-a.e2e.test").await;
    assert!(
        !pending.iter().any(|t| t.contains(" alpha ")),
        "{pending:?}"
    );
    assert_eq!(pending.len(), 9, "{pending:?}");
    let load = masif_agent::api::query(&agent.socket, "/v1/load")
        .await
        .unwrap();
    assert!(load["update"][2].as_f64().unwrap() >= 1.0, "{load}");
    host_dpkg_knows_no_fixture();
    agent.stop().await;
    world.stop().await;
}

#[tokio::test]
async fn an_update_needing_a_new_package_waits_for_its_install_approval() {
    let world = World::start().await;
    let agent = TestAgent::start(&world, "agent-b.e2e.test").await;
    world.approve_update("beta", "2.0").await;
    agent.cycles(3).await;
    assert_eq!(agent.version("beta").await.as_deref(), Some("1.0"));
    assert_eq!(agent.version("gamma").await, None);
    let pending = world.pending("agent-b.e2e.test").await;
    assert!(
        pending.contains(&"install gamma 1.0".to_string()),
        "{pending:?}"
    );

    world
        .approve(
            "gamma",
            &[
                (Action::Install, Some("1.0")),
                (Action::Configure, Some("1.0")),
            ],
            ApprovalScope::AllAgents,
        )
        .await;
    agent.wait_version("beta", "2.0").await;
    assert_eq!(agent.version("gamma").await.as_deref(), Some("1.0"));
    assert_eq!(agent.version("alpha").await.as_deref(), Some("1.0"));
    agent.stop().await;
    world.stop().await;
}

#[tokio::test]
async fn an_update_removing_a_package_waits_for_the_removal_approval() {
    let world = World::start().await;
    let agent = TestAgent::start(&world, "agent-c.e2e.test").await;
    world.approve_update("delta", "2.0").await;
    agent.cycles(3).await;
    assert_eq!(agent.version("delta").await.as_deref(), Some("1.0"));
    assert_eq!(agent.version("epsilon").await.as_deref(), Some("1.0"));

    world
        .approve(
            "epsilon",
            &[(Action::Remove, None)],
            ApprovalScope::AllAgents,
        )
        .await;
    agent.wait_version("delta", "2.0").await;
    assert_eq!(agent.version("epsilon").await, None);
    agent.stop().await;
    world.stop().await;
}

#[tokio::test]
async fn a_failing_postinst_is_reported_and_other_packages_are_still_served() {
    let world = World::start().await;
    let agent = TestAgent::start(&world, "agent-d.e2e.test").await;
    world.approve_update("zeta", "2.0").await;
    eventually("zeta reported as failed", || async {
        let s = agent.status().await;
        s["failed_packages"]
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p == "zeta"))
    })
    .await;
    let status = agent.status().await;
    let error = status["last_error"]["message"].as_str().unwrap().to_owned();
    assert!(
        error.contains("zeta") && error.contains("post-installation script"),
        "{error}"
    );
    assert_eq!(
        agent
            .sandbox
            .package_state("zeta")
            .await
            .unwrap()
            .unwrap()
            .status,
        "iF"
    );

    world.approve_update("alpha", "2.0").await;
    agent.wait_version("alpha", "2.0").await;
    let load = masif_agent::api::query(&agent.socket, "/v1/load")
        .await
        .unwrap();
    assert!(load["error"][2].as_f64().unwrap() >= 1.0, "{load}");
    agent.stop().await;
    world.stop().await;
}

#[tokio::test]
async fn a_held_dpkg_lock_delays_the_upgrade_without_failing_it() {
    let world = World::start().await;
    let agent = TestAgent::start(&world, "agent-e.e2e.test").await;
    let lock = agent
        .sandbox
        .hold_lock(SandboxLock::DpkgFrontend)
        .await
        .unwrap();
    world.approve_update("alpha", "2.0").await;
    eventually("waiting for the lock", || async {
        agent.status().await["activity"] == "waiting_for_lock"
    })
    .await;
    assert_eq!(agent.version("alpha").await.as_deref(), Some("1.0"));
    lock.release().await;
    agent.wait_version("alpha", "2.0").await;
    let status = agent.status().await;
    assert!(status["last_error"].is_null(), "{status}");
    assert_eq!(status["failed_packages"].as_array().unwrap().len(), 0);
    agent.stop().await;
    world.stop().await;
}

#[tokio::test]
async fn an_approval_for_one_agent_upgrades_only_that_agent() {
    let world = World::start().await;
    let one = TestAgent::start(&world, "agent-f1.e2e.test").await;
    let two = TestAgent::start(&world, "agent-f2.e2e.test").await;
    for name in [&one.name, &two.name] {
        eventually("both agents known", || async {
            !world.pending(name).await.is_empty()
        })
        .await;
    }
    world
        .approve(
            "alpha",
            &[
                (Action::Update, Some("2.0")),
                (Action::Configure, Some("2.0")),
            ],
            ApprovalScope::Agents(vec![AgentName::new(&one.name).unwrap()]),
        )
        .await;
    one.wait_version("alpha", "2.0").await;
    two.cycles(3).await;
    assert_eq!(two.version("alpha").await.as_deref(), Some("1.0"));
    assert!(world
        .pending(&two.name)
        .await
        .contains(&"update alpha 2.0".to_string()));
    one.stop().await;
    two.stop().await;
    world.stop().await;
}

#[tokio::test]
async fn an_agent_started_while_the_master_is_down_catches_up() {
    let mut world = World::without_master().await;
    world.approve_update("alpha", "2.0").await;
    let agent = TestAgent::start(&world, "agent-g.e2e.test").await;
    eventually("a failed report", || async {
        let s = agent.status().await;
        s["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("connecting to the master"))
    })
    .await;
    assert!(agent.status().await["last_report"].is_null());
    assert_eq!(agent.version("alpha").await.as_deref(), Some("1.0"));

    world.bring_master_up().await;
    agent.wait_version("alpha", "2.0").await;
    assert!(!agent.status().await["last_report"].is_null());
    agent.stop().await;
    world.stop().await;
}

#[tokio::test]
async fn a_master_certificate_not_matching_master_cn_is_refused_clearly() {
    let world = World::start().await;
    let agent =
        TestAgent::start_expecting(&world, "agent-h.e2e.test", "other-master.e2e.test").await;
    eventually("a name mismatch error", || async {
        let s = agent.status().await;
        s["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not valid for \"other-master.e2e.test\" (master.cn)"))
    })
    .await;
    assert!(world.pending("agent-h.e2e.test").await.is_empty());
    agent.stop().await;
    world.stop().await;
}

#[tokio::test]
async fn an_approval_revoked_in_the_ui_is_no_longer_acted_on() {
    let world = World::start().await;
    let agent = TestAgent::start(&world, "agent-r.e2e.test").await;
    world.approve_update("beta", "2.0").await;
    agent.cycles(2).await;
    assert_eq!(agent.status().await["approved_tasks"], 2);
    let approvals = world.store.approvals(Page::default()).await.unwrap();
    for a in approvals.rows {
        assert!(world.store.revoke(a.id, "e2e-admin").await.unwrap());
    }
    agent.cycles(2).await;
    assert_eq!(agent.status().await["approved_tasks"], 0);
    // Approving gamma now must not let the revoked beta through.
    world
        .approve(
            "gamma",
            &[
                (Action::Install, Some("1.0")),
                (Action::Configure, Some("1.0")),
            ],
            ApprovalScope::AllAgents,
        )
        .await;
    agent.cycles(3).await;
    assert_eq!(agent.version("beta").await.as_deref(), Some("1.0"));
    assert_eq!(agent.version("gamma").await, None);
    world.approve_update("beta", "2.0").await;
    agent.wait_version("beta", "2.0").await;
    agent.stop().await;
    world.stop().await;
}
