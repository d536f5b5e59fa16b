//! Agent failover between masters, end to end: real agents (`masif_agent::run` from a YAML
//! file with `master.hosts`) on sandbox apt roots, two real masters over mutual TLS sharing one
//! fresh MariaDB database, approvals written as the UI writes them. The master holding an
//! agent's report dies (its task dropped: listener and connections closed without an answer)
//! and the report is answered by the other one, approval included; a master down at start is
//! skipped; with none up the status names both, and the agent reports once one comes up.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::world::{eventually, Setup, TestAgent, World, MASTER_CN};
use masif_testkit::sandbox::{standard_packages, Sandbox, Stage};

/// An agent listing `masters`, checking and reporting every `secs` seconds, retrying after
/// one.
async fn agent(world: &World, name: &str, masters: &[SocketAddr], secs: u64) -> TestAgent {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::create(&dir.path().join("sandbox"), &standard_packages())
        .await
        .unwrap();
    sandbox.publish(Stage::V2).await.unwrap();
    let intervals = format!("{{ check: {secs}, report: {secs}, retry: 1 }}");
    let setup = Setup {
        masters,
        tags: &[],
        apt_get: None,
    };
    TestAgent::start_set_up(world, name, MASTER_CN, &intervals, dir, sandbox, setup).await
}

#[tokio::test]
async fn a_report_held_by_a_master_that_dies_is_answered_by_the_other_with_the_approval() {
    let mut world = World::start().await;
    let addrs = [world.addr, world.serve_another().await];
    let name = "failover-held.e2e.test";
    // Checking and reporting once a minute: the report is held for most of a minute, so an
    // answer within seconds can only come from the held report.
    let agent = agent(&world, name, &addrs, 60).await;
    eventually("a report held with alpha's update pending", || async {
        let status = agent.status().await;
        status["activity"] == "waiting_for_approval"
            && world
                .pending(name)
                .await
                .contains(&"update alpha 2.0".to_string())
    })
    .await;
    let status = agent.status().await;
    let holder: SocketAddr = status["master"].as_str().unwrap().parse().unwrap();
    let reports = status["reports"].as_u64().unwrap();
    let other = if holder == addrs[0] {
        addrs[1]
    } else {
        addrs[0]
    };
    assert!(addrs.contains(&holder), "{holder}");
    let killed = Instant::now();
    world.kill_master_at(holder).await;
    world.approve_update("alpha", "2.0").await;
    eventually("alpha 2.0, approved through the other master", || async {
        agent.version("alpha").await.as_deref() == Some("2.0")
    })
    .await;
    assert!(
        killed.elapsed() < Duration::from_secs(40),
        "the report was re-sent at once, not after the report interval: {:?}",
        killed.elapsed()
    );
    let status = agent.status().await;
    assert_eq!(status["master"], other.to_string(), "{status}");
    assert!(status["reports"].as_u64().unwrap() > reports, "{status}");
    assert!(
        status["last_error"].is_null(),
        "no request failed: {status}"
    );
    let pending = world.pending(name).await;
    assert!(
        !pending.iter().any(|t| t.contains(" alpha ")),
        "{pending:?}"
    );
    agent.stop().await;
    world.stop().await;
}

#[tokio::test]
async fn a_master_down_at_start_is_skipped_and_with_none_up_both_are_named() {
    let mut world = World::without_master().await;
    // Nobody listens at `down`, nor at the world's address until its master comes up.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = probe.local_addr().unwrap();
    drop(probe);
    let later = world.addr;
    let name = "failover-none.e2e.test";
    let agent = agent(&world, name, &[down, later], 1).await;
    eventually("a failed report naming both masters", || async {
        let status = agent.status().await;
        status["last_error"]["message"].as_str().is_some_and(|m| {
            m.starts_with("report: no master answered: ")
                && m.contains(&down.to_string())
                && m.contains(&later.to_string())
        })
    })
    .await;
    assert_eq!(agent.status().await["reports"], 0);

    world.bring_master_up().await;
    eventually("reports through the master that came up", || async {
        agent.status().await["reports"].as_u64().unwrap() >= 2
    })
    .await;
    let status = agent.status().await;
    assert_eq!(status["master"], later.to_string(), "{status}");
    assert!(world
        .pending(name)
        .await
        .contains(&"update alpha 2.0".to_string()));
    // And stays on it.
    let reports = status["reports"].as_u64().unwrap();
    eventually("two more reports", || async {
        agent.status().await["reports"].as_u64().unwrap() >= reports + 2
    })
    .await;
    assert_eq!(agent.status().await["master"], later.to_string());
    agent.stop().await;
    world.stop().await;
}
