//! Several database addresses (`db.urls`) on throwaway MariaDB servers killed with SIGKILL:
//! the store uses the first address that works, moves to the next when its node dies (a
//! report in flight is retried there and counted, reads and approvals follow), bounds the
//! time a node that never answers may take, and names every address when none works. Two
//! plain servers stand in for cluster nodes: they share no data, so where a row lands shows
//! which node answered. Galera itself (1047, `wsrep_sync_wait`) is tested in `tests/galera*`.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use masif_store::mysql::{MysqlOptions, MysqlStore};
use masif_store::{AgentFilter, ApprovalScope, DbUrl, Page, Reports, StoreError, TaskKey};
use masif_testkit::mariadb::Throwaway;
use mysql_async::prelude::*;
use mysql_async::Conn;

use crate::mysql_only::{close, int, wait_for_statement};
use crate::report::{agent, install, set};
use crate::test_options;

/// A guard against hanging, not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(60);

/// A throwaway server with database `masif`, its schema migrated when `migrated`.
async fn server(migrated: bool) -> Throwaway {
    let server = Throwaway::start(&[]).await;
    let mut conn = Conn::from_url(server.url("")).await.unwrap();
    conn.query_drop("CREATE DATABASE masif").await.unwrap();
    drop(conn);
    if migrated {
        let store = MysqlStore::connect_with(&server.url("masif"), test_options())
            .await
            .unwrap();
        store.disconnect().await.unwrap();
    }
    server
}

/// The pending packages of agent "host" in `masif` on `server`, sorted.
async fn pending_on(server: &Throwaway) -> Vec<String> {
    let mut conn = Conn::from_url(server.url("masif")).await.unwrap();
    conn.query(
        "SELECT p.name FROM task t JOIN agent a ON a.id = t.agent \
         JOIN package p ON p.id = t.package \
         WHERE a.name = 'host' AND t.approved = 0 ORDER BY 1",
    )
    .await
    .unwrap()
}

/// A loopback URL nothing listens on (connections are refused), with a password to redact.
fn refused_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    format!("mysql://root:hunter2@127.0.0.1:{port}/masif")
}

/// Node 1 dies (SIGKILL) while a report waits there for a row lock: the report is retried on
/// node 2 and answered, with the retry counted and no error; later reports stay on node 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_in_flight_when_its_node_dies_is_answered_by_the_next() {
    let (mut one, two) = tokio::join!(server(true), server(true));
    let store = Arc::new(
        MysqlStore::connect_nodes(&[&one.url("masif"), &two.url("masif")], test_options())
            .await
            .unwrap(),
    );
    let host = agent("host");
    store
        .report(&host, &set([install("a", "1")]))
        .await
        .unwrap();
    assert_eq!(pending_on(&one).await, ["a"], "node 1 is used first");
    assert!(pending_on(&two).await.is_empty());

    // Hold the agent's row lock on node 1, so the next report waits there.
    let mut holder = Conn::from_url(one.url("masif")).await.unwrap();
    holder
        .query_drop("START TRANSACTION; SELECT id FROM agent WHERE name = 'host' FOR UPDATE")
        .await
        .unwrap();
    let before = store.retries();
    let report = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .report(&agent("host"), &set([install("a", "1"), install("b", "1")]))
                .await
        }
    });
    let mut watch = Conn::from_url(one.url("masif")).await.unwrap();
    wait_for_statement(&mut watch, "INSERT INTO agent").await;
    one.kill();
    drop((holder, watch));

    let approved = tokio::time::timeout(PATIENCE, report)
        .await
        .expect("the report hangs")
        .unwrap()
        .expect("the report is retried on node 2, not failed");
    assert!(approved.is_empty(), "{approved:?}");
    assert!(store.retries() > before, "the retry is counted");
    assert_eq!(pending_on(&two).await, ["a", "b"], "answered by node 2");
    store
        .report(&host, &set([install("b", "1")]))
        .await
        .unwrap();
    assert_eq!(pending_on(&two).await, ["b"], "the store stays on node 2");
    close(store).await;
}

/// Right after node 1 died, the UI's reads and writes go to node 2 without an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_approvals_move_to_the_next_node() {
    let (mut one, two) = tokio::join!(server(true), server(true));
    let urls: Vec<DbUrl> = [one.url("masif"), two.url("masif")]
        .iter()
        .map(|u| u.parse().unwrap())
        .collect();
    let store = masif_store::open_any(&urls, &masif_store::StoreSettings::default())
        .await
        .unwrap();
    store
        .report(&agent("other"), &set([install("x", "1")]))
        .await
        .unwrap();
    // Seed node 2 behind the store's back, as replication would have.
    let mut two_conn = Conn::from_url(two.url("masif")).await.unwrap();
    two_conn
        .query_drop("INSERT INTO agent (name, ctime, mtime) VALUES ('host', 0, 0)")
        .await
        .unwrap();
    one.kill();

    let agents = store
        .agents(&AgentFilter::default(), Page::default())
        .await
        .expect("a read right after the node died is answered by node 2");
    let names: Vec<String> = agents.rows.iter().map(|a| a.name.to_string()).collect();
    assert_eq!(names, ["host"], "node 2's agents");
    store
        .report(&agent("host"), &set([install("a", "1")]))
        .await
        .unwrap();
    let outcome = store
        .approve(
            &[TaskKey::from(&install("a", "1"))],
            &ApprovalScope::AllAgents,
            "admin",
        )
        .await
        .expect("an approval right after the move is written to node 2");
    assert_eq!(outcome.pending_rows_approved, 1, "{outcome:?}");
    assert!(pending_on(&two).await.is_empty());
    // The install and the configure step APT plans with it.
    assert_eq!(
        int(
            &mut two_conn,
            "SELECT COUNT(*) FROM task WHERE approved = 1"
        )
        .await,
        2
    );
}

/// A first address that refuses connections at start-up is passed over; the schema is
/// migrated on the node used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_first_address_at_connect_is_passed_over() {
    let two = server(false).await;
    let store = MysqlStore::connect_nodes(&[&refused_url(), &two.url("masif")], test_options())
        .await
        .expect("the second address is used");
    store
        .report(&agent("host"), &set([install("a", "1")]))
        .await
        .unwrap();
    assert_eq!(pending_on(&two).await, ["a"]);
    store.disconnect().await.unwrap();
}

/// An address that accepts TCP connections but never answers does not hold the store up
/// longer than `connect_timeout`, neither at connect nor later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_address_is_given_up_after_the_connect_timeout() {
    let two = server(true).await;
    // The kernel completes the handshakes into the backlog; nobody ever answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let first = format!("mysql://root@127.0.0.1:{port}/masif?connect_timeout=1");
    let started = std::time::Instant::now();
    let store = tokio::time::timeout(
        PATIENCE,
        MysqlStore::connect_nodes(&[&first, &two.url("masif")], test_options()),
    )
    .await
    .expect("connecting hangs on the silent address")
    .unwrap();
    // Not a timing assertion on the machine's speed: far below the guard, above the bound.
    assert!(started.elapsed() >= Duration::from_secs(1));
    store
        .report(&agent("host"), &set([install("a", "1")]))
        .await
        .unwrap();
    assert_eq!(pending_on(&two).await, ["a"]);
    store.disconnect().await.unwrap();
    drop(silent);
}

/// No address works: the error names each (password redacted) with why, and says "try
/// again later".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_working_address_is_an_error_naming_each() {
    let (first, second) = (refused_url(), refused_url());
    let err = MysqlStore::connect_nodes(&[&first, &second], test_options())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NoNodeWorks(_)), "{err:?}");
    assert!(err.is_transient(), "{err:?}");
    let text = err.to_string();
    for url in [&first, &second] {
        let shown = url.replace("hunter2", "***");
        assert!(text.contains(&shown), "{shown} in {text}");
    }
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("refused"), "{text}");
    // A SQLite file among several addresses is refused before anything connects.
    let urls: Vec<DbUrl> = [first.as_str(), "sqlite:///tmp/x.db"]
        .iter()
        .map(|u| u.parse().unwrap())
        .collect();
    let err = masif_store::open_any(&urls, &masif_store::StoreSettings::default())
        .await
        .err()
        .expect("a sqlite address in a list is refused");
    assert!(err.to_string().contains("one file"), "{err}");
}

/// With a single address, a dead server is a "try again later" error after the bounded
/// retries, each counted, as without failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_dead_address_fails_after_the_bounded_retries() {
    let mut one = server(true).await;
    let options = MysqlOptions {
        max_attempts: 3,
        ..test_options()
    };
    let store = MysqlStore::connect_nodes(&[&one.url("masif")], options)
        .await
        .unwrap();
    let host = agent("host");
    store
        .report(&host, &set([install("a", "1")]))
        .await
        .unwrap();
    one.kill();
    let before = store.retries();
    let err = tokio::time::timeout(PATIENCE, store.report(&host, &set([install("b", "1")])))
        .await
        .expect("a report against a dead server hangs")
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::RetriesExhausted { attempts: 3, last }
            if matches!(**last, StoreError::Mysql { .. })),
        "{err:?}"
    );
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(store.retries() - before, 3);
}
