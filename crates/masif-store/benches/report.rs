//! Benchmark of the MySQL report path: a fleet of agents reporting concurrently against a real
//! MariaDB, printing reports/s, latency percentiles, round trips per report and server-side
//! statement counts per phase (first reports, steady state, changed reports, after a fleet-wide
//! approval, one agent hammered concurrently).
//!
//! `cargo bench -p masif-store --bench report` (server from `MASIF_TEST_MYSQL_URL`, default
//! `mysql://root@127.0.0.1:3306`; sizes from `MASIF_BENCH_AGENTS` (10000), `MASIF_BENCH_TASKS`
//! (20), `MASIF_BENCH_CONCURRENCY` (64), `MASIF_BENCH_POOL` (32)). It creates and drops a
//! database of its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use masif_proto::{Action, AgentName, PackageName, Task, TaskSet, Version};
use masif_store::mysql::{MysqlOptions, MysqlStore, ReportStats};
use masif_store::Reports;
use mysql_async::prelude::*;
use mysql_async::Pool;

/// Distinct packages in the fleet.
const PACKAGES: usize = 400;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn agent_name(i: usize) -> AgentName {
    AgentName::new(format!("host{i:05}.example.com")).unwrap()
}

/// The report of agent `i` in round `round` (`round` changes one task's target version).
fn report_of(i: usize, tasks: usize, round: usize) -> TaskSet {
    (0..tasks)
        .map(|k| {
            let p = (i * 7 + k * 13) % PACKAGES;
            let to = if k == 0 {
                format!("2.{round}")
            } else {
                "2.0".to_owned()
            };
            Task::new(
                PackageName::new(format!("package-{p:03}")).unwrap(),
                Action::Update,
                Some(Version::new("1.0-1").unwrap()),
                Some(Version::new(to).unwrap()),
            )
            .unwrap()
        })
        .collect()
}

struct Phase {
    name: &'static str,
    reports: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    stats: ReportStats,
    server: Vec<(String, i64)>,
}

impl Phase {
    fn print(&self) {
        let pct = |p: f64| {
            let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
            self.latencies
                .get(i)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        let n = self.reports.max(1) as f64;
        println!(
            "{:<28} {:>7} reports {:>8.0}/s  p50 {:>6.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  \
             {:.2} round trips/report  {} write tx  {} conflicts",
            self.name,
            self.reports,
            self.reports as f64 / self.elapsed.as_secs_f64(),
            pct(0.5),
            pct(0.99),
            pct(1.0),
            self.stats.round_trips as f64 / n,
            self.stats.write_transactions,
            self.stats.conflicts,
        );
        let server: Vec<String> = self
            .server
            .iter()
            .filter(|(_, v)| *v != 0)
            .map(|(k, v)| format!("{k} {:.2}", *v as f64 / n))
            .collect();
        println!("{:<28} server per report: {}", "", server.join(", "));
    }
}

const SERVER_COUNTERS: &[&str] = &[
    "Com_select",
    "Com_insert",
    "Com_update",
    "Com_delete",
    "Com_commit",
    "Com_rollback",
    "Innodb_rows_read",
    "Innodb_row_lock_waits",
    "Innodb_deadlocks",
];

async fn server_counters(pool: &Pool) -> Vec<(String, i64)> {
    let mut conn = pool.get_conn().await.unwrap();
    let rows: Vec<(String, String)> = conn.query("SHOW GLOBAL STATUS").await.unwrap();
    SERVER_COUNTERS
        .iter()
        .map(|name| {
            let value = rows
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            ((*name).to_owned(), value)
        })
        .collect()
}

fn diff_stats(a: ReportStats, b: ReportStats) -> ReportStats {
    ReportStats {
        reports: b.reports - a.reports,
        round_trips: b.round_trips - a.round_trips,
        write_transactions: b.write_transactions - a.write_transactions,
        conflicts: b.conflicts - a.conflicts,
    }
}

/// Runs `jobs` reports with `concurrency` workers; job `j` reports `make(j)` for agent `who(j)`.
async fn phase(
    name: &'static str,
    store: &Arc<MysqlStore>,
    server: &Pool,
    jobs: usize,
    concurrency: usize,
    job: impl Fn(usize) -> (AgentName, TaskSet) + Send + Sync + 'static,
) -> Phase {
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let stats_before = store.stats();
    let server_before = server_counters(server).await;
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (store, next, job) = (store.clone(), next.clone(), job.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    if j >= jobs {
                        break latencies;
                    }
                    let (agent, tasks) = job(j);
                    let t = Instant::now();
                    store
                        .report(&agent, &tasks)
                        .await
                        .unwrap_or_else(|e| panic!("{name}: report of {agent}: {e}"));
                    latencies.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(jobs);
    for w in workers {
        latencies.extend(w.await.unwrap());
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let server_after = server_counters(server).await;
    Phase {
        name,
        reports: jobs,
        elapsed,
        latencies,
        stats: diff_stats(stats_before, store.stats()),
        server: server_after
            .into_iter()
            .zip(server_before)
            .map(|((k, a), (_, b))| (k, a - b))
            .collect(),
    }
}

#[tokio::main]
async fn main() {
    let agents = env_usize("MASIF_BENCH_AGENTS", 10_000);
    let tasks = env_usize("MASIF_BENCH_TASKS", 20);
    let concurrency = env_usize("MASIF_BENCH_CONCURRENCY", 64);
    let pool_max = env_usize("MASIF_BENCH_POOL", 32);
    let server_url = std::env::var("MASIF_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned())
        .trim_end_matches('/')
        .to_owned();
    let db = format!("masif_bench_{}", std::process::id());
    let server = Pool::new(format!("{server_url}/?pool_min=1&pool_max=2").as_str());
    server
        .get_conn()
        .await
        .expect("MariaDB (MASIF_TEST_MYSQL_URL)")
        .query_drop(format!("CREATE DATABASE `{db}`"))
        .await
        .unwrap();
    println!(
        "{agents} agents x {tasks} tasks, {concurrency} concurrent reports, pool {pool_max}, \
         database {db}"
    );
    let store = Arc::new(
        MysqlStore::connect_with(
            &format!("{server_url}/{db}"),
            MysqlOptions {
                pool_max,
                ..MysqlOptions::default()
            },
        )
        .await
        .expect("connecting"),
    );

    let mut phases = Vec::new();
    phases.push(
        phase(
            "first reports",
            &store,
            &server,
            agents,
            concurrency,
            move |j| (agent_name(j), report_of(j, tasks, 0)),
        )
        .await,
    );
    phases.last().unwrap().print();
    phases.push(
        phase(
            "unchanged (steady state)",
            &store,
            &server,
            agents,
            concurrency,
            move |j| (agent_name(j), report_of(j, tasks, 0)),
        )
        .await,
    );
    phases.last().unwrap().print();
    phases.push(
        phase(
            "one task changed",
            &store,
            &server,
            agents,
            concurrency,
            move |j| (agent_name(j), report_of(j, tasks, 1)),
        )
        .await,
    );
    phases.last().unwrap().print();
    // The admin approves 20 packages' updates for every agent, the original UI's way.
    {
        let mut conn = server.get_conn().await.unwrap();
        conn.query_drop(format!(
            "INSERT INTO `{db}`.task (agent, package, from_version, to_version, action, approved) \
             SELECT NULL, id, NULL, '2.0', 'update', 1 FROM `{db}`.package \
             WHERE name < 'package-020'"
        ))
        .await
        .unwrap();
    }
    phases.push(
        phase(
            "after a fleet-wide approval",
            &store,
            &server,
            agents,
            concurrency,
            move |j| (agent_name(j), report_of(j, tasks, 1)),
        )
        .await,
    );
    phases.last().unwrap().print();
    phases.push(
        phase(
            "unchanged again",
            &store,
            &server,
            agents,
            concurrency,
            move |j| (agent_name(j), report_of(j, tasks, 1)),
        )
        .await,
    );
    phases.last().unwrap().print();
    // Eight agents, each with 8 reports of alternating content in flight.
    let hammer = (agents / 8).max(64);
    phases.push(
        phase(
            "same agents, contended",
            &store,
            &server,
            hammer,
            concurrency,
            move |j| (agent_name(j % 8), report_of(j % 8, tasks, 10 + (j / 8) % 2)),
        )
        .await,
    );
    phases.last().unwrap().print();

    match Arc::try_unwrap(store) {
        Ok(store) => store.disconnect().await.unwrap(),
        Err(_) => unreachable!("workers are done"),
    }
    server
        .get_conn()
        .await
        .unwrap()
        .query_drop(format!("DROP DATABASE `{db}`"))
        .await
        .unwrap();
    server.disconnect().await.unwrap();
}
