//! Host facts end to end on both back ends, with real apt sandboxes: host A's theta 2.0 comes
//! from a repository labelled `Debian-Security` (suite `stable-security`), A needs a reboot
//! and holds delta; host B has none of that. The UI shows the SECURITY badge, the count and the
//! "security only" filter, the reboot mark, filter and packages, the hold; beta's row says it
//! needs gamma's install, and one approval with that closure upgrades both on both hosts;
//! delta, approved for every agent, runs on B and never on A.

mod common;

use std::time::Duration;

use common::ui::Ui;
use common::world::{eventually, Backend, Options, TestAgent, World, MASTER_CN};
use masif_testkit::sandbox::{standard_packages, FakePackage, Sandbox, Stage};

const FAST: &str = "{ check: 1, report: 1, retry: 1 }";
const REBOOT_PACKAGE: &str = "linux-image-6.1.0-99-amd64";

/// The standard packages plus theta, whose 2.0 is published only in the security repository.
fn packages() -> Vec<FakePackage> {
    let mut packages = standard_packages();
    packages.push(FakePackage::new("theta", "1.0"));
    packages.push(FakePackage::new("theta", "2.0").v3());
    packages
}

/// Host A: the security repository, a reboot required, delta held.
async fn start_host_a(world: &World, name: &str) -> TestAgent {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::create(&dir.path().join("sandbox"), &packages())
        .await
        .unwrap();
    sandbox.publish(Stage::V2).await.unwrap();
    sandbox.publish_security(Stage::V3).await.unwrap();
    sandbox.hold("delta").await.unwrap();
    sandbox.require_reboot(&[REBOOT_PACKAGE]).unwrap();
    TestAgent::start_on(world, name, MASTER_CN, FAST, dir, sandbox).await
}

/// GETs `path` until it contains `needle`, and returns it.
async fn page_with(ui: &Ui, path: &str, needle: &str) -> String {
    let mut last = String::new();
    for _ in 0..600 {
        last = ui.page(path).await;
        if last.contains(needle) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never happened: {needle:?} on {path}: {last}");
}

fn row(package: &str, action: &str, version: &str) -> String {
    format!(r#"["{package}","{action}","{version}"]"#)
}

async fn facts_are_shown_and_closures_approved(backend: Backend) {
    let world = World::start_with(Options {
        backend,
        ..Options::default()
    })
    .await;
    let ui = world.start_ui(Duration::from_secs(900)).await;
    let tag = format!("{backend:?}").to_lowercase();
    let (name_a, name_b) = (format!("a-{tag}.facts.test"), format!("b-{tag}.facts.test"));
    let a = start_host_a(&world, &name_a).await;
    let b = TestAgent::start_configured(&world, &name_b, MASTER_CN, FAST).await;
    eventually("both hosts' plans stored", || async {
        let (pa, pb) = (world.pending(&name_a).await, world.pending(&name_b).await);
        pa.contains(&"update theta 2.0".to_string()) && pb.contains(&"update delta 2.0".to_string())
    })
    .await;
    // The hold keeps delta out of A's plan altogether.
    assert!(
        !world
            .pending(&name_a)
            .await
            .iter()
            .any(|t| t.contains("delta")),
        "{:?}",
        world.pending(&name_a).await
    );

    // Security: badge, count, filter.
    let pending = page_with(&ui, "/", "awaiting approval on 1 agent").await;
    assert!(pending.contains("badge-security"), "{pending}");
    let security_only = ui.page("/?security=1").await;
    assert!(security_only.contains("theta"), "{security_only}");
    assert!(!security_only.contains("alpha"), "{security_only}");
    // Holds: delta's row says that an agent holds it.
    assert!(pending.contains("held on 1 agent"), "{pending}");
    // The closure: beta's update needs gamma's install.
    assert!(pending.contains("needs: install gamma 1.0"), "{pending}");

    // Reboots: mark, count, filter, and the packages that asked, on the agent page.
    let agents = page_with(&ui, "/agents", "1 reboot required").await;
    assert!(agents.contains("badge-reboot"), "{agents}");
    let rebooting = ui.page("/agents?state=reboot").await;
    assert!(
        rebooting.contains(&name_a) && !rebooting.contains(&name_b),
        "{rebooting}"
    );
    let agent_page = ui.page(&format!("/agent?name={name_a}")).await;
    assert!(agent_page.contains(REBOOT_PACKAGE), "{agent_page}");
    assert!(
        agent_page.contains(r#"<span class="name">delta</span>"#),
        "{agent_page}"
    );
    assert!(
        agent_page.contains("Debian-Security:12/stable-security"),
        "{agent_page}"
    );

    // One approval of beta with its closure upgrades beta and installs gamma on both hosts.
    ui.approve_with_needs(&[&row("beta", "update", "2.0")])
        .await;
    for agent in [&a, &b] {
        agent.wait_version("beta", "2.0").await;
        assert_eq!(agent.version("gamma").await.as_deref(), Some("1.0"));
    }

    // delta, approved for every agent with what it needs (epsilon's removal), runs on B only.
    ui.approve_with_needs(&[&row("delta", "update", "2.0")])
        .await;
    b.wait_version("delta", "2.0").await;
    a.cycles(3).await;
    assert_eq!(a.version("delta").await.as_deref(), Some("1.0"), "held");

    a.stop().await;
    b.stop().await;
    ui.stop().await;
    world.stop().await;
}

#[tokio::test]
async fn facts_are_shown_and_closures_approved_mysql() {
    facts_are_shown_and_closures_approved(Backend::Mysql).await;
}

#[tokio::test]
async fn facts_are_shown_and_closures_approved_sqlite() {
    facts_are_shown_and_closures_approved(Backend::Sqlite).await;
}
