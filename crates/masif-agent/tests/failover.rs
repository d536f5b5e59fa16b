//! `MasterClient` with several masters, over real mutual TLS against stand-in masters that
//! share one CA: a report held by a master that dies goes to the next one and is answered
//! there; a master that is down, or answers 503, is skipped; a 429 is not a reason to move;
//! each master is tried once per request and the error then names them all; the fall-back
//! to v1 is decided per master.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{eventually, StandInMaster, MASTER_CN};
use masif_agent::{MasterClient, MasterError};
use masif_pki::TlsFiles;
use masif_proto::{Action, PackageName, Task, TaskSet, Version};

/// Short pauses before a switch, so that the tests do not wait seconds.
const PAUSE: Duration = Duration::from_millis(200);

fn update(package: &str) -> Task {
    Task::new(
        PackageName::new(package).unwrap(),
        Action::Update,
        Some(Version::new("1.0").unwrap()),
        Some(Version::new("2.0").unwrap()),
    )
    .unwrap()
}

/// An address nobody listens on.
fn dead_address() -> String {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().to_string()
}

/// A client of `hosts` whose first master is `first`: the first one is drawn at random, so
/// clients are made until one draws it (each draw has a chance of 1 in `hosts.len()`).
fn client_starting_on(files: &TlsFiles, hosts: &[String], first: &str) -> MasterClient {
    for _ in 0..200 {
        let client = MasterClient::new(files, hosts, MASTER_CN)
            .unwrap()
            .with_switch_pause(PAUSE);
        if client.host() == first {
            return client;
        }
    }
    panic!("{first} never drawn first from {hosts:?}");
}

async fn v2_master() -> StandInMaster {
    let m = StandInMaster::start().await;
    m.v2.store(true, Ordering::SeqCst);
    m
}

async fn v2_master_beside(other: &StandInMaster) -> StandInMaster {
    let m = StandInMaster::start_beside(other).await;
    m.v2.store(true, Ordering::SeqCst);
    m
}

#[tokio::test]
async fn a_report_held_by_a_master_that_dies_is_answered_by_the_next_one() {
    let mut a = v2_master().await;
    let b = v2_master_beside(&a).await;
    let files = a.agent_files("held.agent-tests.invalid");
    let hosts = [a.addr.to_string(), b.addr.to_string()];
    let client = client_starting_on(&files, &hosts, &hosts[0]);
    let tasks: TaskSet = [update("alpha")].into();
    let none = TaskSet::new();
    let started = Instant::now();
    let report = client.report(&tasks, &none, Duration::from_secs(600), None);
    let watch = async {
        eventually("the report held by A", || async {
            a.held.load(Ordering::SeqCst) == 1
        })
        .await;
        a.kill();
        eventually("the report held by B", || async {
            b.held.load(Ordering::SeqCst) == 1
        })
        .await;
        // The approval is made at B only: the answer can come from nowhere else.
        b.approve("alpha", &[Action::Update]);
    };
    let (answer, ()) = tokio::join!(report, watch);
    assert_eq!(answer.unwrap().approved, tasks);
    assert!(started.elapsed() < Duration::from_secs(60), "not the wait");
    assert_eq!(client.host(), hosts[1]);
    assert_eq!(b.v2_requests.load(Ordering::SeqCst), 1);
    // The next report goes straight to B, on the connection kept alive.
    client
        .report(&tasks, &tasks, Duration::ZERO, None)
        .await
        .unwrap();
    assert_eq!(
        (
            b.v2_requests.load(Ordering::SeqCst),
            b.connections.load(Ordering::SeqCst)
        ),
        (2, 1)
    );
}

#[tokio::test]
async fn a_master_down_at_start_is_skipped_and_the_next_one_kept() {
    let b = v2_master().await;
    b.approve("alpha", &[Action::Update]);
    let files = b.agent_files("skip.agent-tests.invalid");
    let hosts = [dead_address(), b.addr.to_string()];
    let client = client_starting_on(&files, &hosts, &hosts[0]);
    let tasks: TaskSet = [update("alpha"), update("beta")].into();
    for _ in 0..3 {
        let answer = client
            .report(&tasks, &TaskSet::new(), Duration::ZERO, None)
            .await
            .unwrap();
        assert_eq!(answer.approved, [update("alpha")].into());
        assert_eq!(client.host(), hosts[1]);
    }
    assert_eq!(b.v2_requests.load(Ordering::SeqCst), 3);
    assert_eq!(b.connections.load(Ordering::SeqCst), 1, "sticks to B");
}

#[tokio::test]
async fn when_no_master_answers_each_is_tried_once_and_named() {
    let mut a = StandInMaster::start().await;
    let files = a.agent_files("alone.agent-tests.invalid");
    a.kill();
    let hosts = [dead_address(), dead_address(), dead_address()];
    let client = MasterClient::new(&files, &hosts, MASTER_CN)
        .unwrap()
        .with_switch_pause(PAUSE);
    let first = client.host().to_owned();
    let started = Instant::now();
    let err = client
        .report(&TaskSet::new(), &TaskSet::new(), Duration::ZERO, None)
        .await
        .unwrap_err();
    // Two switches, each after a pause of at most PAUSE.
    assert!(started.elapsed() < 2 * PAUSE + Duration::from_secs(5));
    let MasterError::NoneAnswered(errors) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors
        .iter()
        .all(|e| matches!(e, MasterError::Connect { .. })));
    let msg = err.to_string();
    assert!(msg.starts_with("no master answered: "), "{msg}");
    for host in &hosts {
        assert_eq!(
            msg.matches(host.as_str()).count(),
            1,
            "{host} once in {msg}"
        );
    }
    assert!(errors[0].to_string().contains(&first), "{msg}");
    assert_eq!(err.retry_after(), None);
    assert!(!err.is_unavailable(), "the loop's retry interval applies");
}

#[tokio::test]
async fn a_503_moves_to_the_next_master_a_429_does_not() {
    let a = v2_master().await;
    let b = v2_master_beside(&a).await;
    let files = a.agent_files("busy.agent-tests.invalid");
    let hosts = [a.addr.to_string(), b.addr.to_string()];
    let client = client_starting_on(&files, &hosts, &hosts[0]);
    let tasks: TaskSet = [update("alpha")].into();
    // 429: this agent reports too often for A; B would say the same. Not a reason to move.
    *a.overloaded.lock().unwrap() = Some((429, 30));
    let err = client
        .report(&tasks, &TaskSet::new(), Duration::ZERO, None)
        .await
        .unwrap_err();
    assert!(matches!(err, MasterError::Status { .. }), "{err:?}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(
        (client.host(), b.requests.load(Ordering::SeqCst)),
        (&*hosts[0], 0)
    );
    // 503: A cannot serve (its database is gone, or a proxy says it is down).
    *a.overloaded.lock().unwrap() = Some((503, 30));
    client
        .report(&tasks, &TaskSet::new(), Duration::ZERO, None)
        .await
        .unwrap();
    assert_eq!(client.host(), hosts[1]);
    assert_eq!(b.v2_requests.load(Ordering::SeqCst), 1);
    // Both 503: the error names both, and the shortest Retry-After asked is honoured.
    *b.overloaded.lock().unwrap() = Some((503, 5));
    let err = client
        .report(&tasks, &TaskSet::new(), Duration::ZERO, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MasterError::NoneAnswered(e) if e.len() == 2),
        "{err:?}"
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
    assert_eq!(client.host(), hosts[0], "the last one tried");
}

#[tokio::test]
async fn the_fall_back_to_v1_is_per_master() {
    // A speaks v1 only (the original master); B speaks v2.
    let mut a = StandInMaster::start().await;
    let b = v2_master_beside(&a).await;
    a.approve("alpha", &[Action::Update]);
    b.approve("alpha", &[Action::Update]);
    let files = a.agent_files("mixed.agent-tests.invalid");
    let hosts = [a.addr.to_string(), b.addr.to_string()];
    let client = client_starting_on(&files, &hosts, &hosts[0]);
    let tasks: TaskSet = [update("alpha")].into();
    let answer = client
        .report(&tasks, &TaskSet::new(), Duration::ZERO, None)
        .await
        .unwrap();
    assert_eq!(answer.approved, tasks);
    assert!(!client.speaks_v2(), "A answered 404 on v2");
    let err = client.send_runs(&[]).await.unwrap_err();
    assert!(matches!(err, MasterError::V1Only { .. }), "{err:?}");
    a.kill();
    eventually("A refusing connections", || async {
        tokio::net::TcpStream::connect(a.addr).await.is_err()
    })
    .await;
    client
        .report(&tasks, &tasks, Duration::ZERO, None)
        .await
        .unwrap();
    assert_eq!(client.host(), hosts[1]);
    assert!(client.speaks_v2(), "B was never taken for v1");
    assert_eq!(b.v2_requests.load(Ordering::SeqCst), 1);
}
