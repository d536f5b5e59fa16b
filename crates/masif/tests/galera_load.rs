//! Issue 17, show test: a fleet under load through two masters (real processes) on a 3-node
//! Galera cluster of the test's own, each master listing the nodes in another order; one
//! database node and one master are killed with SIGKILL. Every agent keeps being answered, the
//! only failures are ones an agent retries elsewhere, and afterwards every agent's pending set
//! in the database is exactly its last answered report.

#[path = "common/galera_fleet.rs"]
mod galera_fleet;
#[path = "common/galera_masters.rs"]
mod galera_masters;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use galera_fleet::Fleet;
use galera_masters::{MasterProcess, MASTER_CN};
use masif_testkit::galera::{Cluster, GaleraDatabase};
use masif_testkit::pki::{EphemeralCa, Usage};

/// Agents in the fleet; each reports every 0.5 to 1 s.
const AGENTS: usize = 200;
const PAUSE: Duration = Duration::from_millis(500);
/// A guard against hangs on a busy two-core machine, not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(300);

#[test]
#[ignore = "a master process of the other tests, which start it"]
fn master_process() {
    galera_masters::master_process_main();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_under_load_survives_a_dead_node_and_a_dead_master_and_loses_nothing() {
    let cluster = Cluster::start_own().await;
    let db = GaleraDatabase::create(&cluster, "load").await;
    // The schema, once, before the masters (which would both migrate at start).
    let store = masif_store::open(&db.url(1).parse().unwrap())
        .await
        .unwrap();
    store.flush().await;
    drop(store);

    let dir = tempfile::tempdir().unwrap();
    let ca = EphemeralCa::new("Masif Galera CA").unwrap();
    let cert = ca.issue(MASTER_CN, Usage::Server).unwrap();
    let files = ca
        .write_files(&dir.path().join("master"), &cert, None)
        .unwrap();
    // Master A uses node 1 first, master B node 3; node 1 and master B die.
    let mut a = MasterProcess::start(dir.path(), "master-a", &files, &db.urls(&[1, 2, 3])).await;
    let mut b = MasterProcess::start(dir.path(), "master-b", &files, &db.urls(&[3, 1, 2])).await;
    let hosts = [a.host(), b.host()];
    let mut fleet = Fleet::start(&ca, dir.path(), AGENTS, &hosts, MASTER_CN, PAUSE);

    let start = vec![0; AGENTS];
    fleet.wait_for_more(&start, 3, PATIENCE).await;
    let before = fleet.answered();
    let switches_before = fleet.failures.switches.load(Ordering::Relaxed);
    eprintln!(
        "load: {} reports answered before the kill",
        before.iter().sum::<u64>()
    );

    let killed = Instant::now();
    cluster.kill_node(1);
    b.kill();
    // Every agent is answered again, then three times, by master A on node 2 or 3.
    fleet.wait_for_more(&before, 1, PATIENCE).await;
    let answered_again = killed.elapsed();
    fleet.wait_for_more(&before, 3, PATIENCE).await;
    let recovered = killed.elapsed();
    cluster.wait_for_size(2).await;
    fleet.stop().await;

    let answered: u64 = fleet.answered().iter().sum();
    let switches = fleet.failures.switches.load(Ordering::Relaxed);
    let unanswered = fleet.failures.unanswered.load(Ordering::Relaxed);
    let retries = a.metric("masif_master_db_retries_total").await;
    let moved = switches - switches_before;
    eprintln!(
        "load: {AGENTS} agents, {answered} reports answered; after the kill every agent was \
         answered again within {:.1} s and 3 times within {:.1} s; {moved} agents moved to the \
         other master ({switches_before} before the kill), {unanswered} reports found no master; \
         master A retried {retries} database transactions",
        answered_again.as_secs_f64(),
        recovered.as_secs_f64(),
    );
    // The clients drew their first master at random: master B's share moved to master A.
    assert!(moved > 0, "no agent was on master B");
    let fatal = fleet.failures.fatal.lock().unwrap().clone();
    assert!(fatal.is_empty(), "failures no agent retries: {fatal:?}");

    // Read through each surviving node: both hold exactly what the agents were answered.
    for node in [2, 3] {
        let problems = fleet.inconsistencies(&db, node).await;
        assert!(
            problems.is_empty(),
            "through node {node}, {} of {AGENTS} agents' pending sets differ from their last \
             answered report:\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
    // The survivor logged no error (switching nodes is a warning).
    let errors: Vec<String> = a
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("ERROR"))
        .collect();
    assert!(errors.is_empty(), "master A logged errors: {errors:#?}");
    a.stop();
}
