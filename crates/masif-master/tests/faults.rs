//! The master when its database cannot keep up or goes away (issue 14, items 1 and 8), over
//! real mutual TLS: a full report queue is answered 503 with `Retry-After`; MariaDB killed with
//! `kill -9` and restarted under load loses no answered report and leaves no half-written one.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{client_config, Client, Pki};
use masif_store::{Store, StoreSettings};
use masif_testkit::db::TestDatabase;
use masif_testkit::mariadb::Throwaway;
use mysql_async::prelude::*;
use tokio::sync::{oneshot, watch};

/// A master serving `store` on a loopback port until the sender is used or dropped.
async fn serve(pki: &Pki, store: Arc<dyn Store>) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = masif_master::ServeSettings::new(pki.master.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(masif_master::serve_with_listener(
        settings,
        store,
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    (addr, stop)
}

/// A v1 report body: one install of each package at `version`.
fn body(packages: &[String], version: u64) -> String {
    let tasks: Vec<String> = packages
        .iter()
        .map(|p| format!(r#"{{"package":"{p}","action":"install","to_version":"{version}"}}"#))
        .collect();
    format!("[{}]", tasks.join(","))
}

/// A guard against hanging, not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_report_queue_is_answered_503_with_retry_after() {
    let pki = Pki::new();
    let db = TestDatabase::create("overload").await;
    let settings = StoreSettings {
        max_queued_reports: 1,
    };
    let store = masif_store::open_with(&db.url().parse().unwrap(), &settings)
        .await
        .unwrap();
    let (addr, _stop) = serve(&pki, store).await;
    let connect = |cn: &str| {
        let files = pki.agent(cn).1;
        async move { Client::connect(addr, client_config(&files)).await.unwrap() }
    };
    let mut held = connect("held").await;
    let mut other = connect("other").await;
    let a = ["a".to_owned()];
    assert_eq!(held.report(&body(&a, 1)).await.unwrap().status, 200);

    // Hold off held's next write with its agent row locked: its report keeps the only place.
    let mut lock = mysql_async::Conn::from_url(db.url()).await.unwrap();
    lock.query_drop("START TRANSACTION").await.unwrap();
    lock.query_drop("SELECT id FROM agent WHERE name = 'held' FOR UPDATE")
        .await
        .unwrap();
    let waiting = tokio::spawn(async move { held.report(&body(&a, 2)).await.unwrap() });
    // Once held's report waits for the lock, it holds the only place: other's is refused.
    let blocked = "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                   WHERE DB = DATABASE() AND INFO LIKE '%INSERT INTO agent%'";
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while db.query_u64(blocked).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "held's report never waited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = other.report(&body(&["b".to_owned()], 1)).await.unwrap();
    assert_eq!(refused.status, 503, "{refused:?}");
    let retry_after = refused.headers.get(http::header::RETRY_AFTER);
    assert_eq!(
        retry_after.and_then(|v| v.to_str().ok()),
        Some("5"),
        "{refused:?}"
    );
    lock.query_drop("ROLLBACK").await.unwrap();
    assert_eq!(waiting.await.unwrap().status, 200);
    // The queue is free again.
    assert_eq!(
        other
            .report(&body(&["b".to_owned()], 2))
            .await
            .unwrap()
            .status,
        200
    );
}

/// What the agents of the MariaDB test share with the test's body.
struct Load {
    /// While true, agents stop before their next request (and count themselves `parked`).
    pause: watch::Receiver<bool>,
    parked: AtomicUsize,
    /// Answers with 200, and requests that failed cleanly (503, or a refused connection while
    /// the master itself was fine) and were sent again.
    answered: AtomicU64,
    retried: AtomicU64,
    /// Per agent, how many of its rounds were answered 200.
    rounds: Vec<AtomicU64>,
    stop: AtomicBool,
}

/// The packages agent `agent` reports in round `round`: four of twelve, moving each round.
fn packages(agent: usize, round: u64) -> Vec<String> {
    (0..4)
        .map(|i| format!("pkg{}", (agent as u64 * 3 + round + i) % 12))
        .collect()
}

/// One agent: reports round after round, each report sent again until it is answered 200 (a
/// 503 is retried; any other answer, or a dropped request, fails the test).
async fn agent_loop(addr: SocketAddr, files: masif_pki::TlsFiles, agent: usize, load: Arc<Load>) {
    let mut client = None;
    let mut round = 0;
    loop {
        if *load.pause.borrow() {
            load.parked.fetch_add(1, Ordering::SeqCst);
            let mut pause = load.pause.clone();
            pause.wait_for(|paused| !paused).await.unwrap();
            load.parked.fetch_sub(1, Ordering::SeqCst);
        }
        if load.stop.load(Ordering::SeqCst) {
            return;
        }
        let connection = match client.as_mut() {
            Some(c) => c,
            None => client.insert(Client::connect(addr, client_config(&files)).await.unwrap()),
        };
        match connection
            .report(&body(&packages(agent, round), round))
            .await
        {
            Ok(reply) if reply.status == 200 => {
                load.answered.fetch_add(1, Ordering::SeqCst);
                round += 1;
                load.rounds[agent].store(round, Ordering::SeqCst);
            }
            Ok(reply) if reply.status == 503 => {
                assert!(reply.headers.contains_key(http::header::RETRY_AFTER));
                load.retried.fetch_add(1, Ordering::SeqCst);
                // Agents wait `Retry-After`; the test keeps it short.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(reply) => panic!("agent {agent}: {reply:?}"),
            Err(e) => panic!("agent {agent}: the master dropped the request: {e}"),
        }
    }
}

const AGENTS: usize = 16;

/// The pending (package, target version) pairs stored for `agent`.
async fn stored(conn: &mut mysql_async::Conn, agent: usize) -> BTreeSet<(String, String)> {
    conn.exec(
        "SELECT p.name, t.to_version FROM task t JOIN agent a ON a.id = t.agent \
         JOIN package p ON p.id = t.package WHERE a.name = ? AND t.approved = 0",
        (format!("agent{agent}"),),
    )
    .await
    .unwrap()
    .into_iter()
    .collect()
}

fn sent(agent: usize, round: u64) -> BTreeSet<(String, String)> {
    packages(agent, round)
        .into_iter()
        .map(|p| (p, round.to_string()))
        .collect()
}

/// Waits until every agent has had `rounds` answered.
async fn every_agent_answered(load: &Load, rounds: u64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while load
        .rounds
        .iter()
        .any(|r| r.load(Ordering::SeqCst) < rounds)
    {
        assert!(tokio::time::Instant::now() < deadline, "agents stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// MariaDB killed with `kill -9` while agents report through a real master, then restarted on
/// the same data directory and port: failed reports got 503 and went through when sent again;
/// after the restart each agent's stored set is the last one answered or the one it was still
/// sending, never a mix; at the end it is exactly the last one answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_killed_and_restarted_under_load() {
    let mut server = Throwaway::start(&[]).await;
    let mut admin = mysql_async::Conn::from_url(server.url("")).await.unwrap();
    admin.query_drop("CREATE DATABASE masif").await.unwrap();
    drop(admin);
    let url = server.url("masif");
    let store = masif_store::open(&url.parse().unwrap()).await.unwrap();
    let pki = Pki::new();
    let (addr, stop) = serve(&pki, store.clone()).await;
    let (pause, paused) = watch::channel(false);
    let load = Arc::new(Load {
        pause: paused,
        parked: AtomicUsize::new(0),
        answered: AtomicU64::new(0),
        retried: AtomicU64::new(0),
        rounds: (0..AGENTS).map(|_| AtomicU64::new(0)).collect(),
        stop: AtomicBool::new(false),
    });
    let agents: Vec<_> = (0..AGENTS)
        .map(|a| {
            let files = pki.agent(&format!("agent{a}")).1;
            tokio::spawn(agent_loop(addr, files, a, load.clone()))
        })
        .collect();

    every_agent_answered(&load, 3).await;
    server.kill();
    // Reports fail cleanly while the server is down.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while load.retried.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no report failed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Park the agents, restart the server, and look at what it kept.
    pause.send(true).unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while load.parked.load(Ordering::SeqCst) < AGENTS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "agents never parked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.restart().await;
    let mut conn = mysql_async::Conn::from_url(&url).await.unwrap();
    let before: Vec<u64> = load
        .rounds
        .iter()
        .map(|r| r.load(Ordering::SeqCst))
        .collect();
    for (agent, &rounds) in before.iter().enumerate() {
        let kept = stored(&mut conn, agent).await;
        let answered = sent(agent, rounds - 1);
        let in_flight = sent(agent, rounds);
        assert!(
            kept == answered || kept == in_flight,
            "agent{agent} after the restart: {kept:?}, answered {answered:?}"
        );
    }
    pause.send(false).unwrap();

    // Every agent gets its retried report and more through after the restart.
    let after = before.iter().max().unwrap() + 3;
    every_agent_answered(&load, after).await;
    load.stop.store(true, Ordering::SeqCst);
    for agent in agents {
        agent.await.unwrap();
    }
    for agent in 0..AGENTS {
        let last = load.rounds[agent].load(Ordering::SeqCst) - 1;
        assert_eq!(
            stored(&mut conn, agent).await,
            sent(agent, last),
            "agent{agent}"
        );
    }
    eprintln!(
        "{} reports answered, {} failed cleanly and were sent again",
        load.answered.load(Ordering::SeqCst),
        load.retried.load(Ordering::SeqCst)
    );
    drop(conn);
    let _ = stop.send(());
    store.flush().await;
}
