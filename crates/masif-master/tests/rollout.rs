//! The roll-out controls end to end over real mutual TLS, on MariaDB and SQLite, with the
//! master's clock in the test's hand: a closed maintenance window defers approved tasks and
//! a held report runs them once the clock reaches the window; a tag's max in flight holds
//! agents back until a lease is given back or expires (also with two masters on one
//! database, where no two agents ever run at once with K = 1); a window opened in the same
//! approval poll as an approval for another agent still wakes the gated report; the roll-out
//! loop promotes a soaked ring and halts on failures; `POST /v2/lease` refuses malformed
//! bodies and changes nothing; v1 reports carry no tags and pass the gate.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::gated::*;
use common::{Master, Pki};
use masif_master::Clock;
use masif_proto::v2::{DeferReason, LEASE_PATH, REPORT_PATH, RUNS_PATH};
use masif_proto::{Action, AgentName, PackageName, Version};
use masif_store::schedule::Window;
use masif_store::{ApprovalScope, RolloutSpec, RolloutState, TagSettings, TaskKey};
use rstest::rstest;

/// Lease time of these tests' masters.
const LEASE: u64 = 30;

/// A master on `backend` with a manual clock at [`T0`], leases of [`LEASE`] seconds and fast
/// slot polls and roll-out loop.
async fn master_at_t0(pki: &Pki, backend: Backend) -> (Master, masif_master::ManualClock) {
    let (clock, hand) = Clock::manual(T0);
    let master = start(pki, backend, |s| tuned(s, clock)).await;
    (master, hand)
}

fn tuned(settings: &mut masif_master::ServeSettings, clock: Clock) {
    settings.clock = clock;
    settings.rollout.lease_seconds = LEASE;
    settings.rollout.slot_poll = Duration::from_millis(200);
    settings.rollout.advance = Duration::from_millis(100);
}

/// Gives the tag `web` one maintenance window, from an hour after [`T0`] for an hour.
async fn close_web_for_an_hour(store: &dyn masif_store::Store) {
    let settings = TagSettings {
        max_in_flight: None,
        windows: vec![Window::Once {
            from: T0 + 3600,
            to: T0 + 7200,
        }],
    };
    store
        .set_tag(&tag("web"), &settings, "admin")
        .await
        .unwrap();
}

/// A report of `name` with `tags`, answered at once; its connection stays open for more.
async fn report_now(
    master: &Master,
    pki: &Pki,
    name: &str,
    tags: &[&str],
) -> (common::Client, masif_proto::v2::ReportAnswer) {
    let mut client = master.agent_client(pki, name).await;
    let reply = client
        .request("POST", REPORT_PATH, report(TWO_TASKS, "[]", 0, tags))
        .await
        .unwrap();
    (client, answer(&reply))
}

#[rstest]
#[case::mysql(Backend::Mysql)]
#[case::sqlite(Backend::Sqlite)]
#[tokio::test]
async fn a_closed_window_defers_and_a_held_report_runs_once_it_opens(#[case] backend: Backend) {
    let pki = Pki::new();
    let (master, hand) = master_at_t0(&pki, backend).await;
    let store = master.store.clone();
    close_web_for_an_hour(store.as_ref()).await;
    approve_alpha(store.as_ref()).await;
    let (client, first) = report_now(&master, &pki, "web-1", &["web"]).await;
    assert!(first.approved.is_empty(), "{first:?}");
    assert_eq!(first.deferred, tasks(ALPHA_UPDATE));
    assert_eq!(first.reason, Some(DeferReason::Window));
    assert_eq!(first.not_before, Some(T0 + 3600));
    assert_eq!(first.lease_seconds, None);
    // An agent without the tag is not held back.
    let (_, ungated) = report_now(&master, &pki, "db-1", &["db"]).await;
    assert_eq!(ungated.approved, tasks(ALPHA_UPDATE));

    let waiting = send(client, report(TWO_TASKS, "[]", HELD, &["web"]));
    held(&master, 1).await;
    hand.set(T0 + 3599);
    hand.set(T0 + 3600);
    let (_, reply) = tokio::time::timeout(WITHIN, waiting)
        .await
        .unwrap()
        .unwrap();
    let opened = answer(&reply);
    assert_eq!(opened.approved, tasks(ALPHA_UPDATE));
    assert!(
        opened.deferred.is_empty() && opened.reason.is_none(),
        "{opened:?}"
    );
    master.stop().await.unwrap();
}

/// A tag setting changed in the same approval poll as an approval for another agent by name:
/// that approval alone would wake only the other agent's reports, the tag's change every held
/// report (its `gate` counter), so the gated agent's held report runs once its window opens.
#[rstest]
#[case::mysql(Backend::Mysql)]
#[case::sqlite(Backend::Sqlite)]
#[tokio::test]
async fn a_window_opened_beside_an_approval_for_another_agent_wakes_the_gated_report(
    #[case] backend: Backend,
) {
    let pki = Pki::new();
    let (clock, _hand) = Clock::manual(T0);
    // A slow approval poll, so that both changes below land in one.
    let master = start(&pki, backend, |s| {
        tuned(s, clock);
        s.approval_poll = Duration::from_secs(1);
    })
    .await;
    let store = master.store.clone();
    close_web_for_an_hour(store.as_ref()).await;
    approve_alpha(store.as_ref()).await;
    let (_, ungated) = report_now(&master, &pki, "db-1", &["db"]).await;
    assert_eq!(ungated.approved, tasks(ALPHA_UPDATE));
    let waiting = send(
        master.agent_client(&pki, "web-1").await,
        report(TWO_TASKS, "[]", HELD, &["web"]),
    );
    held(&master, 1).await;
    // The master's first read of the approvals goes to every held report; after it, changes
    // are compared with what it read.
    let metrics = master.metrics;
    eventually("the first read of the approvals", || async move {
        let m = masif_testkit::scrape::scrape(metrics).await;
        m.value("masif_master_longpoll_wakeups_total", &[]) >= 1.0
    })
    .await;
    let gamma = TaskKey {
        package: PackageName::new("gamma").unwrap(),
        action: Action::Install,
        to_version: Some(Version::new("1.0").unwrap()),
    };
    let db_1 = ApprovalScope::Agents(vec![AgentName::new("db-1").unwrap()]);
    store.approve(&[gamma], &db_1, "admin").await.unwrap();
    store
        .set_tag(&tag("web"), &TagSettings::default(), "admin")
        .await
        .unwrap();
    let (_, reply) = tokio::time::timeout(WITHIN, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer(&reply).approved, tasks(ALPHA_UPDATE));
    master.stop().await.unwrap();
}

#[rstest]
#[case::mysql(Backend::Mysql)]
#[case::sqlite(Backend::Sqlite)]
#[tokio::test]
async fn a_lease_not_renewed_expires_and_another_agent_gets_the_slot(#[case] backend: Backend) {
    let pki = Pki::new();
    let (master, hand) = master_at_t0(&pki, backend).await;
    let store = master.store.clone();
    limit(store.as_ref(), "db", 1).await;
    approve_alpha(store.as_ref()).await;
    let mut first = master.agent_client(&pki, "db-1").await;
    let granted = first
        .request("POST", REPORT_PATH, report(TWO_TASKS, "[]", 0, &["db"]))
        .await
        .unwrap();
    let granted = answer(&granted);
    assert_eq!(granted.approved, tasks(ALPHA_UPDATE));
    assert_eq!(granted.lease_seconds, Some(LEASE));
    // Renewed within its time, the lease lives on past its first expiry.
    hand.advance(20);
    let renewed = first
        .request("POST", LEASE_PATH, r#"{"renew":true}"#)
        .await
        .unwrap();
    assert_eq!(
        (renewed.status, renewed.body.as_str()),
        (200, r#"{"held":1,"lease_seconds":30}"#)
    );
    let second = master.agent_client(&pki, "db-2").await;
    let busy = {
        let mut second = master.agent_client(&pki, "db-3").await;
        let reply = second
            .request("POST", REPORT_PATH, report(TWO_TASKS, "[]", 0, &["db"]))
            .await
            .unwrap();
        answer(&reply)
    };
    assert!(busy.approved.is_empty());
    assert_eq!(busy.deferred, tasks(ALPHA_UPDATE));
    assert_eq!(busy.reason, Some(DeferReason::MaxInFlight));
    let waiting = send(second, report(TWO_TASKS, "[]", HELD, &["db"]));
    held(&master, 1).await;
    hand.advance(20);
    assert_eq!(
        leases(&store, "db", T0 + 40).await,
        1,
        "renewed until T0+50"
    );
    // The first agent "dies": nothing renews its lease, which expires at T0+50.
    hand.set(T0 + 50);
    let (_, reply) = tokio::time::timeout(WITHIN, waiting)
        .await
        .unwrap()
        .unwrap();
    let taken_over = answer(&reply);
    assert_eq!(taken_over.approved, tasks(ALPHA_UPDATE));
    assert_eq!(taken_over.lease_seconds, Some(LEASE));
    let lost = first
        .request("POST", LEASE_PATH, r#"{"renew":true}"#)
        .await
        .unwrap();
    assert_eq!(lost.body, r#"{"held":0,"lease_seconds":30}"#);
    master.stop().await.unwrap();
}

/// When one agent was told to run and when it said it was done.
type Grants = Arc<Mutex<Vec<(String, Instant, Instant)>>>;

#[tokio::test]
async fn with_two_masters_no_two_agents_of_a_tag_with_k1_run_at_once() {
    const AGENTS: usize = 12;
    const ROUNDS: usize = 2;
    let pki = Pki::new();
    let (clock, _hand) = Clock::manual(T0);
    let first = start(&pki, Backend::Mysql, |s| tuned(s, clock.clone())).await;
    let second = start_beside(&first, &pki, |s| tuned(s, clock.clone())).await;
    limit(first.store.as_ref(), "one", 1).await;
    approve_alpha(first.store.as_ref()).await;
    let grants: Grants = Arc::default();
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let master = if i % 2 == 0 { &first } else { &second };
        let name = format!("one-{i}");
        let mut client = master.agent_client(&pki, &name).await;
        let grants = grants.clone();
        agents.push(tokio::spawn(async move {
            for _ in 0..ROUNDS {
                let body = report(TWO_TASKS, "[]", HELD, &["one"]);
                let reply = client
                    .request_within("POST", REPORT_PATH, body, WITHIN)
                    .await
                    .unwrap();
                let granted_at = Instant::now();
                let answer = answer(&reply);
                assert_eq!(answer.approved, tasks(ALPHA_UPDATE), "{name}");
                assert_eq!(answer.lease_seconds, Some(LEASE));
                // The "run".
                tokio::time::sleep(Duration::from_millis(rand::random_range(5..40))).await;
                let done_at = Instant::now();
                let released = client
                    .request("POST", LEASE_PATH, r#"{"release":true}"#)
                    .await
                    .unwrap();
                assert_eq!(released.body, r#"{"released":1}"#, "{name}");
                grants
                    .lock()
                    .unwrap()
                    .push((name.clone(), granted_at, done_at));
            }
        }));
    }
    for agent in agents {
        tokio::time::timeout(Duration::from_secs(120), agent)
            .await
            .expect("every agent gets its turn")
            .unwrap();
    }
    let mut grants = grants.lock().unwrap().clone();
    assert_eq!(grants.len(), AGENTS * ROUNDS);
    grants.sort_by_key(|(_, granted, _)| *granted);
    for pair in grants.windows(2) {
        let ((a, _, a_done), (b, b_granted, _)) = (&pair[0], &pair[1]);
        assert!(b_granted >= a_done, "{b} ran while {a} did: {grants:?}");
    }
    second.stop().await.unwrap();
    first.stop().await.unwrap();
}

/// A `POST /v2/runs` body: one run of the alpha update.
fn alpha_run(id: &str, outcome: &str, started_at: i64) -> String {
    format!(
        r#"{{"runs":[{{"id":"{id}","package":"alpha","started_at":{started_at},"duration_ms":900,"exit_code":0,"outcome":"{outcome}","tasks":{ALPHA_UPDATE},"output":""}}]}}"#
    )
}

#[rstest]
#[case::mysql(Backend::Mysql)]
#[case::sqlite(Backend::Sqlite)]
#[tokio::test]
async fn the_rollout_loop_promotes_a_soaked_ring_and_halts_on_failures(#[case] backend: Backend) {
    let pki = Pki::new();
    let (master, hand) = master_at_t0(&pki, backend).await;
    let store = master.store.clone();
    let mut clients = Vec::new();
    for (name, ring) in [
        ("canary-1", "canary"),
        ("canary-2", "canary"),
        ("prod-1", "prod"),
        ("edge-1", "edge"),
        ("late-1", "late"),
    ] {
        let mut client = master.agent_client(&pki, name).await;
        let reply = client
            .request("POST", REPORT_PATH, report(TWO_TASKS, "[]", 0, &[ring]))
            .await
            .unwrap();
        assert!(answer(&reply).approved.is_empty());
        clients.push(client);
    }
    let spec = |rings: &[&str], max_failure_percent| RolloutSpec {
        tasks: vec![alpha_update().into()],
        rings: rings.iter().map(|r| tag(r)).collect(),
        soak_secs: Some(600),
        max_failure_percent,
    };
    let promoted = store
        .create_rollout(&spec(&["canary", "prod"], 50), "admin", T0)
        .await
        .unwrap();
    let halting = store
        .create_rollout(&spec(&["edge", "late"], 0), "admin", T0)
        .await
        .unwrap();
    // canary-1 succeeds (canary-2 has not run yet); edge-1 fails.
    let [canary, _, prod, edge, _] = &mut clients[..] else {
        unreachable!()
    };
    for (client, outcome) in [(canary, "succeeded"), (edge, "failed")] {
        let reply = client
            .request("POST", RUNS_PATH, alpha_run("r-1", outcome, T0 + 10))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    eventually("the failing ring halts its roll-out", || {
        let store = store.clone();
        async move {
            let rollout = store.rollout(halting.id).await.unwrap().unwrap();
            rollout.state == RolloutState::Halted
                && rollout
                    .halted_reason
                    .is_some_and(|reason| reason.contains("edge-1"))
        }
    })
    .await;
    let soaking = store.rollout(promoted.id).await.unwrap().unwrap();
    assert_eq!(
        (soaking.current_ring, soaking.state),
        (0, RolloutState::Running)
    );
    hand.set(T0 + 600);
    eventually("the soaked ring is promoted", || {
        let store = store.clone();
        async move {
            store
                .rollout(promoted.id)
                .await
                .unwrap()
                .unwrap()
                .current_ring
                == 1
        }
    })
    .await;
    let reply = prod
        .request("POST", REPORT_PATH, report(TWO_TASKS, "[]", 0, &["prod"]))
        .await
        .unwrap();
    assert_eq!(answer(&reply).approved, tasks(ALPHA_UPDATE));
    let halted = store.rollout(halting.id).await.unwrap().unwrap();
    assert_eq!(
        (halted.state, halted.current_ring),
        (RolloutState::Halted, 0),
        "past the soak time a halted roll-out stays put"
    );
    master.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_lease_requests_are_refused_and_change_nothing() {
    let pki = Pki::new();
    let (master, _hand) = master_at_t0(&pki, Backend::Mysql).await;
    let store = master.store.clone();
    limit(store.as_ref(), "db", 1).await;
    approve_alpha(store.as_ref()).await;
    let mut client = master.agent_client(&pki, "db-1").await;
    let granted = client
        .request("POST", REPORT_PATH, report(TWO_TASKS, "[]", 0, &["db"]))
        .await
        .unwrap();
    assert_eq!(answer(&granted).lease_seconds, Some(LEASE));
    let before = master.db.snapshot().await;
    for (body, field) in [
        ("{}", "renew"),
        (r#"{"renew":true,"release":true}"#, "renew"),
        (r#"{"renew":false}"#, "renew"),
        (r#"{"release":1}"#, "release"),
        (r#"{"release":"yes"}"#, "release"),
        ("[]", ""),
        ("{not json", ""),
        ("", ""),
    ] {
        let reply = client.request("POST", LEASE_PATH, body).await.unwrap();
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        assert!(reply.body.starts_with(field), "{body}: {}", reply.body);
    }
    let oversized = format!(
        r#"{{"renew":true,"pad":"{}"}}"#,
        "x".repeat(masif_proto::MAX_BODY_BYTES as usize)
    );
    let reply = client.request("POST", LEASE_PATH, oversized).await.unwrap();
    assert_eq!(reply.status, 413, "{}", reply.body);
    let mut client = master.agent_client(&pki, "db-1").await;
    let wrong_method = client.request("GET", LEASE_PATH, "").await.unwrap();
    assert_eq!(wrong_method.status, 405);
    assert_eq!(master.db.snapshot().await, before, "nothing changed");
    assert_eq!(leases(&store, "db", T0).await, 1);

    // A v1 report carries no facts, so no tags: its agent is not held back by the tag whose
    // only slot db-1 holds.
    let mut v1 = master.agent_client(&pki, "db-2").await;
    let reply = v1.report(TWO_TASKS).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(tasks(&reply.body), tasks(ALPHA_UPDATE));
    // Its next v2 report (with the tag) is: nothing runnable, and no lease taken.
    let reply = v1
        .request("POST", REPORT_PATH, report(TWO_TASKS, "[]", 0, &["db"]))
        .await
        .unwrap();
    assert_eq!(answer(&reply).reason, Some(DeferReason::MaxInFlight));
    // db-1 reports after its run with nothing approved left: that alone reads no settings
    // and keeps its lease; giving it back frees the slot.
    let reply = client
        .request("POST", REPORT_PATH, report("[]", "[]", 0, &["db"]))
        .await
        .unwrap();
    assert!(answer(&reply).approved.is_empty());
    assert_eq!(leases(&store, "db", T0).await, 1);
    let reply = client
        .request("POST", LEASE_PATH, r#"{"release":true}"#)
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(leases(&store, "db", T0).await, 0);
    master.stop().await.unwrap();
}

#[tokio::test]
async fn with_v2_off_the_lease_path_is_not_found() {
    let pki = Pki::new();
    let master = common::Master::start(&pki, |s| s.v2 = false).await;
    let mut client = master.agent_client(&pki, "h.example.com").await;
    let reply = client
        .request("POST", LEASE_PATH, r#"{"renew":true}"#)
        .await
        .unwrap();
    assert_eq!(reply.status, 404);
    master.stop().await.unwrap();
}
