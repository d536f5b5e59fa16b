//! Roll-out control end to end, with real agents on sandbox apt roots, the real master (one or
//! two on one MariaDB database) and its clock under the test's hand: a closed maintenance
//! window holds an approved upgrade until the clock reaches it; a staged roll-out promotes
//! after its soak time (across a restart of the master) and halts on a failure; with max in
//! flight 1 no two agents of the tag upgrade at once, even through two masters; a killed
//! agent's lease expires and the next agent proceeds.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::world::{eventually, Backend, Options, Setup, TestAgent, World, MASTER_CN};
use masif_proto::{Action, AgentName, PackageName, Tag, Version};
use masif_store::schedule::Window;
use masif_store::{
    ApprovalScope, ApprovalTask, Page, RolloutSpec, RolloutState, TagSettings, TaskKey,
};
use masif_testkit::sandbox::{standard_packages, FakePackage, Sandbox, Stage, BLOCKING_POSTINST};

const FAST: &str = "{ check: 1, report: 1, retry: 1 }";
/// Seconds a lease lasts on the test masters' clock.
const LEASE: u64 = 30;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn tag(name: &str) -> Tag {
    Tag::new(name).unwrap()
}

/// A world whose masters run on a manual clock set to now, polling for slots and advancing
/// roll-outs every second.
async fn controlled_world() -> (World, masif_master::ManualClock) {
    let (clock, hand) = masif_master::Clock::manual(now());
    let rollout = masif_master::RolloutSettings {
        lease_seconds: LEASE,
        slot_poll: Duration::from_secs(1),
        advance: Duration::from_secs(1),
    };
    let options = Options {
        backend: Backend::Mysql,
        ..Options::default()
    };
    (World::start_controlled(options, clock, rollout).await, hand)
}

/// An agent with `tags` reporting to `master`, on a sandbox of `packages`.
async fn agent(
    world: &World,
    name: &str,
    tags: &[&str],
    master: std::net::SocketAddr,
    packages: &[FakePackage],
) -> TestAgent {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::create(&dir.path().join("sandbox"), packages)
        .await
        .unwrap();
    sandbox.publish(Stage::V2).await.unwrap();
    let setup = Setup {
        masters: &[master],
        tags,
        apt_get: None,
    };
    TestAgent::start_set_up(world, name, MASTER_CN, FAST, dir, sandbox, setup).await
}

fn update(package: &str, version: &str) -> Vec<ApprovalTask> {
    [Action::Update, Action::Configure]
        .into_iter()
        .map(|action| {
            ApprovalTask::from(TaskKey {
                package: PackageName::new(package).unwrap(),
                action,
                to_version: Some(Version::new(version).unwrap()),
            })
        })
        .collect()
}

async fn approve(world: &World, tasks: &[ApprovalTask], scope: ApprovalScope) {
    world
        .store
        .approve_tasks(tasks, &scope, "e2e-admin")
        .await
        .unwrap();
}

async fn set_tag(world: &World, name: &str, max_in_flight: Option<u32>, windows: Vec<Window>) {
    let settings = TagSettings {
        max_in_flight,
        windows,
    };
    world
        .store
        .set_tag(&tag(name), &settings, "e2e-admin")
        .await
        .unwrap();
}

async fn status_field(agent: &TestAgent, field: &str) -> serde_json::Value {
    agent.status().await[field].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_closed_window_holds_an_approved_upgrade_until_it_opens() {
    let (world, clock) = controlled_world().await;
    let opens = clock.now() + 3600;
    let window = serde_json::json!([{
        "from": masif_store::schedule::rfc3339(opens),
        "to": masif_store::schedule::rfc3339(opens + 3600),
    }]);
    set_tag(
        &world,
        "night",
        None,
        Window::parse_list(&window, "windows").unwrap(),
    )
    .await;
    let night = agent(
        &world,
        "night-1.e2e.test",
        &["night"],
        world.addr,
        &standard_packages(),
    )
    .await;
    // An untagged agent is not held back by anyone's window.
    let free = agent(
        &world,
        "free-1.e2e.test",
        &[],
        world.addr,
        &standard_packages(),
    )
    .await;
    eventually("both report alpha", || async {
        world.pending("night-1.e2e.test").await.len() > 1
            && world.pending("free-1.e2e.test").await.len() > 1
    })
    .await;
    approve(&world, &update("alpha", "2.0"), ApprovalScope::AllAgents).await;
    free.wait_version("alpha", "2.0").await;

    eventually("night-1 told to wait for the window", || async {
        status_field(&night, "deferred_reason").await == "window"
    })
    .await;
    assert_eq!(status_field(&night, "not_before").await, opens);
    // Reports come and go, the window stays closed: nothing runs.
    night.cycles(3).await;
    assert_eq!(night.version("alpha").await.as_deref(), Some("1.0"));
    assert_eq!(status_field(&night, "deferred_reason").await, "window");

    clock.set(opens);
    night.wait_version("alpha", "2.0").await;
    night.stop().await;
    free.stop().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ring_promotes_after_its_soak_time_and_halts_on_a_failure() {
    let (mut world, clock) = controlled_world().await;
    let canary = agent(
        &world,
        "c-1.e2e.test",
        &["canary"],
        world.addr,
        &standard_packages(),
    )
    .await;
    let prod = agent(
        &world,
        "p-1.e2e.test",
        &["prod"],
        world.addr,
        &standard_packages(),
    )
    .await;
    eventually("both report alpha and zeta, with their tags", || async {
        let tagged = world
            .store
            .tags(clock.now())
            .await
            .unwrap()
            .iter()
            .filter(|t| t.agents == 1)
            .count();
        tagged == 2
            && world.pending("c-1.e2e.test").await.len() > 3
            && world.pending("p-1.e2e.test").await.len() > 3
    })
    .await;
    let spec = |package: &str| RolloutSpec {
        tasks: update(package, "2.0"),
        rings: vec![tag("canary"), tag("prod")],
        soak_secs: Some(600),
        max_failure_percent: 0,
    };

    // alpha: the canary upgrades, prod waits for the soak time to pass.
    let alpha = world
        .store
        .create_rollout(&spec("alpha"), "e2e-admin", clock.now())
        .await
        .unwrap();
    canary.wait_version("alpha", "2.0").await;
    prod.cycles(3).await;
    assert_eq!(prod.version("alpha").await.as_deref(), Some("1.0"));
    let soaking = world.store.rollout(alpha.id).await.unwrap().unwrap();
    assert_eq!(
        (soaking.state, soaking.current_ring, soaking.ring.succeeded),
        (RolloutState::Running, 0, 1)
    );
    // The roll-out lives in the database: a restarted master carries it on.
    world.restart_master().await;
    clock.advance(600);
    prod.wait_version("alpha", "2.0").await;
    let done = world.store.rollout(alpha.id).await.unwrap().unwrap();
    assert_eq!(
        (done.state, done.current_ring),
        (RolloutState::Completed, 1)
    );

    // zeta's postinst fails on the canary: the roll-out halts and says why; prod never gets it.
    // (Runs are timed by the agents' clocks: the masters' clock goes back to theirs, so that
    // the canary's run counts as one of the new ring's.)
    clock.set(now());
    let zeta = world
        .store
        .create_rollout(&spec("zeta"), "e2e-admin", clock.now())
        .await
        .unwrap();
    eventually("the zeta roll-out halted", || async {
        world.store.rollout(zeta.id).await.unwrap().unwrap().state == RolloutState::Halted
    })
    .await;
    clock.advance(600);
    prod.cycles(3).await;
    let halted = world.store.rollout(zeta.id).await.unwrap().unwrap();
    assert_eq!(halted.current_ring, 0);
    let reason = halted.halted_reason.unwrap();
    assert!(
        reason.contains("1 of 1") && reason.contains("c-1.e2e.test"),
        "{reason}"
    );
    let approvals = world.store.approvals(Page::default()).await.unwrap().rows;
    let prod_name = AgentName::new("p-1.e2e.test").unwrap();
    assert!(
        !approvals
            .iter()
            .any(|a| a.agent.as_ref() == Some(&prod_name)
                && a.package.as_ref().is_some_and(|p| p.as_str() == "zeta")),
        "{approvals:?}"
    );
    assert_eq!(prod.version("zeta").await.as_deref(), Some("1.0"));
    canary.stop().await;
    prod.stop().await;
    world.stop().await;
}

/// omega 1.0, and omega 2.0 whose postinst writes `start NAME` and `end NAME` around a
/// second's work into `log`.
fn logged_omega(name: &str, log: &Path) -> Vec<FakePackage> {
    let log = log.display();
    vec![
        FakePackage::new("omega", "1.0"),
        FakePackage::new("omega", "2.0")
            .postinst(&format!(
                "echo 'start {name}' >> '{log}'; sleep 1; echo 'end {name}' >> '{log}'"
            ))
            .v2(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_max_in_flight_1_no_two_agents_upgrade_at_once_even_through_two_masters() {
    let (mut world, _clock) = controlled_world().await;
    let other_master = world.serve_another().await;
    set_tag(&world, "web", Some(1), Vec::new()).await;
    let log = world.dir.path().join("omega.log");
    let names = [
        "w-1.e2e.test",
        "w-2.e2e.test",
        "w-3.e2e.test",
        "w-4.e2e.test",
    ];
    let mut agents = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let master = if i % 2 == 0 { world.addr } else { other_master };
        agents.push(agent(&world, name, &["web"], master, &logged_omega(name, &log)).await);
    }
    eventually("every agent reports omega", || async {
        for name in names {
            if world.pending(name).await.is_empty() {
                return false;
            }
        }
        true
    })
    .await;
    approve(
        &world,
        &update("omega", "2.0"),
        ApprovalScope::Tag(tag("web")),
    )
    .await;
    for agent in &agents {
        agent.wait_version("omega", "2.0").await;
    }
    // Every run ended before the next began.
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 2 * names.len(), "{lines:?}");
    for pair in lines.chunks(2) {
        let started = pair[0].strip_prefix("start ");
        let ended = pair[1].strip_prefix("end ");
        assert!(started.is_some() && started == ended, "{lines:?}");
    }
    for agent in agents {
        agent.stop().await;
    }
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_agents_lease_expires_and_the_next_agent_proceeds() {
    let (world, clock) = controlled_world().await;
    set_tag(&world, "db", Some(1), Vec::new()).await;
    let blocking = vec![
        FakePackage::new("omega", "1.0"),
        FakePackage::new("omega", "2.0")
            .postinst(BLOCKING_POSTINST)
            .v2(),
    ];
    let plain = vec![
        FakePackage::new("omega", "1.0"),
        FakePackage::new("omega", "2.0").v2(),
    ];
    let first = agent(&world, "d-1.e2e.test", &["db"], world.addr, &blocking).await;
    eventually("d-1 reports omega", || async {
        !world.pending("d-1.e2e.test").await.is_empty()
    })
    .await;
    let only = |name: &str| ApprovalScope::Agents(vec![AgentName::new(name).unwrap()]);
    approve(&world, &update("omega", "2.0"), only("d-1.e2e.test")).await;
    eventually("d-1's postinst runs under the lease", || async {
        first.sandbox.postinst_started()
    })
    .await;

    let second = agent(&world, "d-2.e2e.test", &["db"], world.addr, &plain).await;
    eventually("d-2 reports omega", || async {
        !world.pending("d-2.e2e.test").await.is_empty()
    })
    .await;
    approve(&world, &update("omega", "2.0"), only("d-2.e2e.test")).await;
    eventually("d-2 waits for the slot", || async {
        status_field(&second, "deferred_reason").await == "max-in-flight"
    })
    .await;

    // d-1 dies mid-run: nobody renews or gives back its lease, which the clock has not yet
    // let expire.
    let (_dir, sandbox) = first.kill();
    second.cycles(3).await;
    assert_eq!(second.version("omega").await.as_deref(), Some("1.0"));
    let leases = |at: i64| {
        let store = world.store.clone();
        async move {
            let tags = store.tags(at).await.unwrap();
            tags.iter().find(|t| t.tag.as_str() == "db").unwrap().leases
        }
    };
    assert_eq!(leases(clock.now()).await, 1);

    clock.advance(LEASE as i64 + 1);
    second.wait_version("omega", "2.0").await;
    // What is left of d-1's run (its apt-get died with the agent) may end now.
    sandbox.release_postinst().unwrap();
    second.stop().await;
    world.stop().await;
}
