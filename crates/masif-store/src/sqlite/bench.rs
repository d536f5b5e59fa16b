//! A benchmark of the SQLite report path that prints figures (ignored by default; it asserts
//! nothing about speed): a fleet reporting concurrently, in phases — first reports, the steady
//! state, changed reports, reports after a fleet-wide approval — plus the UI's overview query.
//!
//! `cargo test -p masif-store --release --lib sqlite::bench -- --ignored --nocapture`
//! (sizes from `MASIF_BENCH_AGENTS` (2000), `MASIF_BENCH_TASKS` (20),
//! `MASIF_BENCH_CONCURRENCY` (16)).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::SqliteStore;
use crate::{Admin, ApprovalScope, Page, PendingFilter, Reports, TaskKey};
use masif_testkit::fleet::{agent_name, env_usize, report_of, updated_packages};

/// The keys "update to 2.0" of every `step`th package of the fleet from `first` on.
fn update_keys(first: usize, step: usize) -> Vec<TaskKey> {
    updated_packages(first, step)
        .into_iter()
        .map(|(package, action, to)| TaskKey {
            package,
            action,
            to_version: Some(to),
        })
        .collect()
}

/// Runs one report per agent, `concurrency` at a time, and prints throughput and latencies.
async fn phase(
    name: &str,
    store: &SqliteStore,
    agents: usize,
    tasks: usize,
    round: usize,
    concurrency: usize,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let started = Instant::now();
    let mut jobs = Vec::with_capacity(agents);
    for i in 0..agents {
        let store = store.clone();
        let permit = slots.clone().acquire_owned().await.unwrap();
        jobs.push(tokio::spawn(async move {
            let t = Instant::now();
            store
                .report(&agent_name(i), &report_of(i, tasks, round))
                .await
                .unwrap();
            drop(permit);
            t.elapsed()
        }));
    }
    let mut latencies: Vec<Duration> = Vec::with_capacity(agents);
    for job in jobs {
        latencies.push(job.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    println!(
        "{name:<28} {agents:>6} reports {:>8.0}/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
        agents as f64 / elapsed.as_secs_f64(),
        pct(50).as_secs_f64() * 1e3,
        pct(99).as_secs_f64() * 1e3,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints figures, run with --ignored --nocapture"]
async fn report_throughput() {
    let agents = env_usize("MASIF_BENCH_AGENTS", 2000);
    let tasks = env_usize("MASIF_BENCH_TASKS", 20);
    let concurrency = env_usize("MASIF_BENCH_CONCURRENCY", 16);
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("bench.db"))
        .await
        .unwrap();
    println!("sqlite: {agents} agents x {tasks} tasks, {concurrency} concurrent reports");
    let phases = [
        ("first reports", 0),
        ("steady state (unchanged)", 0),
        ("changed reports", 1),
    ];
    for (name, round) in phases {
        phase(name, &store, agents, tasks, round, concurrency).await;
    }
    let keys = update_keys(0, 10);
    let t = Instant::now();
    let outcome = store
        .approve(&keys, &ApprovalScope::AllAgents, "bench")
        .await
        .unwrap();
    println!(
        "approve {} keys for all agents: {} pending rows in {:.1} ms",
        keys.len(),
        outcome.pending_rows_approved,
        t.elapsed().as_secs_f64() * 1e3
    );
    for name in ["after fleet-wide approval", "steady state again"] {
        phase(name, &store, agents, tasks, 1, concurrency).await;
    }
    let t = Instant::now();
    let overview = store
        .pending_overview(&PendingFilter::default(), Page::default())
        .await
        .unwrap();
    println!(
        "pending overview (first page of {} packages): {:.1} ms",
        overview.total_packages,
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let listing = store
        .agents(&crate::AgentFilter::default(), Page::default())
        .await
        .unwrap();
    println!(
        "agents page (100 of {}): {:.1} ms",
        listing.total,
        t.elapsed().as_secs_f64() * 1e3
    );
    let awaited = update_keys(1, 40);
    let t = Instant::now();
    let agents_awaiting = store
        .agents_awaiting(
            &awaited,
            Page {
                offset: 0,
                limit: u64::MAX,
            },
        )
        .await
        .unwrap()
        .rows;
    println!(
        "agents awaiting {} keys ({} agents): {:.1} ms",
        awaited.len(),
        agents_awaiting.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let size = std::fs::metadata(dir.path().join("bench.db"))
        .unwrap()
        .len();
    println!("database file: {:.1} MiB", size as f64 / (1024.0 * 1024.0));
}
