//! Faults end to end: a host whose dpkg was killed mid-run (before the agent started) shows
//! dpkg's audit as a failed run on the agent's page in the UI, through the real master and
//! database; the approved configure apt refuses is not forced.

mod common;

use std::time::Duration;

use common::world::{eventually, TestAgent, World, MASTER_CN};
use masif_testkit::sandbox::{standard_packages, FakePackage, Sandbox, Stage, BLOCKING_POSTINST};

#[tokio::test]
async fn an_interrupted_dpkg_shows_on_the_agent_page() {
    let world = World::start().await;
    let ui = world.start_ui(Duration::from_secs(900)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut packages = standard_packages();
    packages.push(FakePackage::new("sloth", "1.0"));
    packages.push(
        FakePackage::new("sloth", "2.0")
            .postinst(BLOCKING_POSTINST)
            .v2(),
    );
    let sandbox = Sandbox::create(&dir.path().join("sandbox"), &packages)
        .await
        .unwrap();
    sandbox.publish(Stage::V2).await.unwrap();
    sandbox.interrupt_upgrade("sloth", "2.0").await.unwrap();
    sandbox.release_postinst().unwrap();
    let name = "interrupted.e2e.test";
    let agent = TestAgent::start_on(
        &world,
        name,
        MASTER_CN,
        "{ check: 1, report: 1, retry: 1 }",
        dir,
        sandbox,
    )
    .await;
    eventually("the agent known to the master", || async {
        !world.pending(name).await.is_empty()
    })
    .await;
    let page_path = format!("/agent?name={name}");
    let mut page = String::new();
    for _ in 0..1800 {
        page = ui.page(&page_path).await;
        if page.contains("was dpkg interrupted?") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(page.contains("was dpkg interrupted?"), "{page}");
    assert!(page.contains("only half configured"), "{page}");
    assert!(page.contains("sloth"), "{page}");
    eventually("dpkg_audit in /v1/status", || async {
        agent.status().await["dpkg_audit"]
            .as_str()
            .is_some_and(|a| a.contains("sloth"))
    })
    .await;
    let state = agent.sandbox.package_state("sloth").await.unwrap().unwrap();
    assert_ne!(state.status, "ii", "nobody configured sloth: {state:?}");
    agent.stop().await;
    ui.stop().await;
    world.stop().await;
}
