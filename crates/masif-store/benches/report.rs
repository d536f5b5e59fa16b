//! Benchmark of the MySQL report path: a fleet of agents reporting concurrently against a real
//! MariaDB, printing reports/s, latency percentiles, round trips per report and server-side
//! statement counts per phase (first reports, steady state, changed reports, after a fleet-wide
//! approval, a few agents hammered concurrently), then the same phases for a model of the
//! original master's report (`original` below) on a smaller fleet, for comparison. Phases
//! named "with facts" send v2 reports with host facts (see `facts_of`), so the unchanged
//! report's cost with and without facts shows side by side.
//!
//! `cargo bench -p masif-store --bench report` (server from `MASIF_TEST_MYSQL_URL`, default
//! `mysql://root@127.0.0.1:3306`; sizes from `MASIF_BENCH_AGENTS` (10000), `MASIF_BENCH_TASKS`
//! (20), `MASIF_BENCH_CONCURRENCY` (64), `MASIF_BENCH_POOL` (32),
//! `MASIF_BENCH_ORIGINAL_AGENTS` (200, 0 = skip the original)). It creates and drops
//! databases of its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use masif_proto::facts::{FactText, Facts, Origin, TaskFacts};
use masif_proto::{AgentName, PackageName, TaskSet};
use masif_store::mysql::{MysqlOptions, MysqlStore, ReportStats};
use masif_store::Reports;
use masif_testkit::db::mysql_server_url;
use masif_testkit::fleet::{agent_name, env_usize, report_of};
use mysql_async::{prelude::*, Pool};

struct Phase {
    name: &'static str,
    reports: usize,
    failed: usize,
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
             {:.2} round trips/report  {} write tx  {} conflicts  {} failed",
            self.name,
            self.reports,
            self.reports as f64 / self.elapsed.as_secs_f64(),
            pct(0.5),
            pct(0.99),
            pct(1.0),
            self.stats.round_trips as f64 / n,
            self.stats.write_transactions,
            self.stats.conflicts,
            self.failed,
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

/// What is measured: the store, or the model of the original, with its counters.
#[derive(Clone)]
struct Subject {
    reports: Arc<dyn Reports>,
    stats: Arc<dyn Fn() -> ReportStats + Send + Sync>,
}

impl Subject {
    fn new<R: Reports + 'static>(reports: Arc<R>, stats: fn(&R) -> ReportStats) -> Self {
        let counters = reports.clone();
        Self {
            reports,
            stats: Arc::new(move || stats(&counters)),
        }
    }
}

/// One report of a phase: agent, tasks and (a v2 report) host facts.
type Job = (AgentName, TaskSet, Option<Facts>);

/// A v1 report, without facts.
fn v1(agent: AgentName, tasks: TaskSet) -> Job {
    (agent, tasks, None)
}

/// A v2 report of `tasks` with host facts of a typical size: OS, kernel, version, a few held
/// packages, and an origin and one needed task for every task.
fn with_facts(agent: AgentName, tasks: TaskSet) -> Job {
    let text = |s: &str| Some(FactText::new(s).unwrap());
    let needs: TaskSet = tasks.iter().take(1).cloned().collect();
    let facts = Facts {
        os: text("Debian GNU/Linux 12 (bookworm)"),
        kernel: text("6.1.0-28-amd64"),
        agent_version: text("0.4.0"),
        held: ["openssh-server", "postgresql-15", "linux-image-amd64"]
            .into_iter()
            .map(|n| PackageName::new(n).unwrap())
            .collect(),
        tasks: tasks
            .iter()
            .map(|t| {
                let f = TaskFacts {
                    origin: Some(Origin::new("Debian-Security:12/stable-security").unwrap()),
                    needs: needs.iter().filter(|n| *n != t).cloned().collect(),
                };
                (t.clone(), f)
            })
            .collect(),
        ..Facts::default()
    };
    (agent, tasks, Some(facts))
}

/// Runs `jobs` reports with `concurrency` workers; job `j` is agent, report and facts `job(j)`.
async fn phase(
    name: &'static str,
    subject: &Subject,
    server: &Pool,
    jobs: usize,
    concurrency: usize,
    job: impl Fn(usize) -> Job + Send + Sync + 'static,
) -> Phase {
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let stats_before = (subject.stats)();
    let server_before = server_counters(server).await;
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (store, next, job) = (subject.reports.clone(), next.clone(), job.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failed = 0;
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    if j >= jobs {
                        break (latencies, failed);
                    }
                    let (agent, tasks, facts) = job(j);
                    let t = Instant::now();
                    let report = store.report_with_facts(&agent, &tasks, facts.as_ref());
                    if let Err(e) = report.await {
                        eprintln!("{name}: report of {agent}: {e}");
                        failed += 1;
                    }
                    latencies.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(jobs);
    let mut failed = 0;
    for w in workers {
        let (l, f) = w.await.unwrap();
        latencies.extend(l);
        failed += f;
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let server_after = server_counters(server).await;
    Phase {
        name,
        reports: jobs,
        failed,
        elapsed,
        latencies,
        stats: diff_stats(stats_before, (subject.stats)()),
        server: server_after
            .into_iter()
            .zip(server_before)
            .map(|((k, a), (_, b))| (k, a - b))
            .collect(),
    }
}

/// The phases, in order, against `subject` on database `db`.
async fn suite(
    subject: &Subject,
    server: &Pool,
    db: &str,
    agents: usize,
    tasks: usize,
    concurrency: usize,
) {
    let same = |round| move |j| v1(agent_name(j), report_of(j, tasks, round));
    // Without contention first, on agents of their own: the cost of one report.
    let alone = move |j: usize| v1(agent_name(900_000 + j), report_of(j, tasks, 0));
    for name in ["first reports, one at a time", "unchanged, one at a time"] {
        phase(name, subject, server, 100, 1, alone).await.print();
    }
    let alone = move |j: usize| with_facts(agent_name(950_000 + j), report_of(j, tasks, 0));
    for name in [
        "first, with facts, 1 at a time",
        "unchanged, with facts, 1 at a time",
    ] {
        phase(name, subject, server, 100, 1, alone).await.print();
    }
    let phases = [
        ("first reports", 0),
        ("unchanged (steady state)", 0),
        ("one task changed", 1),
    ];
    for (name, round) in phases {
        phase(name, subject, server, agents, concurrency, same(round))
            .await
            .print();
    }
    // The admin approves 20 packages' updates for every agent, the original UI's way.
    execute(
        server,
        format!(
            "INSERT INTO `{db}`.task (agent, package, from_version, to_version, action, approved) \
             SELECT NULL, id, NULL, '2.0', 'update', 1 FROM `{db}`.package \
             WHERE name < 'package-020'"
        ),
    )
    .await;
    for name in ["after a fleet-wide approval", "unchanged again"] {
        phase(name, subject, server, agents, concurrency, same(1))
            .await
            .print();
    }
    // A fleet of the same size sending facts (agents of their own, so the v1 phases' agents
    // keep their digests): written once, then unchanged, for the steady state side by side.
    let facts = move |j| with_facts(agent_name(500_000 + j), report_of(j, tasks, 1));
    for name in ["first reports, with facts", "unchanged, with facts"] {
        phase(name, subject, server, agents, concurrency, facts)
            .await
            .print();
    }
    // Eight agents, each with reports of alternating content in flight.
    let hammer = (agents / 8).max(64);
    phase(
        "same agents, contended",
        subject,
        server,
        hammer,
        concurrency,
        move |j| v1(agent_name(j % 8), report_of(j % 8, tasks, 10 + (j / 8) % 2)),
    )
    .await
    .print();
}

/// Runs `sql` on the server connection.
async fn execute(server: &Pool, sql: String) {
    server
        .get_conn()
        .await
        .expect("MariaDB (MASIF_TEST_MYSQL_URL)")
        .query_drop(sql)
        .await
        .unwrap();
}

#[tokio::main]
async fn main() {
    let agents = env_usize("MASIF_BENCH_AGENTS", 10_000);
    let tasks = env_usize("MASIF_BENCH_TASKS", 20);
    let concurrency = env_usize("MASIF_BENCH_CONCURRENCY", 64);
    let pool_max = env_usize("MASIF_BENCH_POOL", 32);
    let original_agents = env_usize("MASIF_BENCH_ORIGINAL_AGENTS", 200);
    let server_url = mysql_server_url().trim_end_matches('/').to_owned();
    let server = Pool::new(format!("{server_url}/?pool_min=1&pool_max=2").as_str());
    let options = MysqlOptions {
        pool_max,
        ..MysqlOptions::default()
    };

    let db = format!("masif_bench_{}", std::process::id());
    execute(&server, format!("CREATE DATABASE `{db}`")).await;
    println!(
        "masif-store: {agents} agents x {tasks} tasks, {concurrency} concurrent reports, \
         pool {pool_max}"
    );
    let store = Arc::new(
        MysqlStore::connect_with(&format!("{server_url}/{db}"), options.clone())
            .await
            .expect("connecting"),
    );
    let subject = Subject::new(store, MysqlStore::stats);
    suite(&subject, &server, &db, agents, tasks, concurrency).await;
    drop(subject);
    // Agents report every few minutes, so in production an unchanged report usually finds
    // last_seen due: the read plus one single-row UPDATE.
    let due = Arc::new(
        MysqlStore::connect_with(
            &format!("{server_url}/{db}"),
            MysqlOptions {
                last_seen_interval: Duration::ZERO,
                ..options.clone()
            },
        )
        .await
        .expect("connecting"),
    );
    let subject = Subject::new(due, MysqlStore::stats);
    phase(
        "unchanged, last_seen due",
        &subject,
        &server,
        agents,
        concurrency,
        move |j| v1(agent_name(j), report_of(j, tasks, 1)),
    )
    .await
    .print();
    drop(subject);
    execute(&server, format!("DROP DATABASE `{db}`")).await;

    if original_agents > 0 {
        let db = format!("masif_bench_original_{}", std::process::id());
        execute(&server, format!("CREATE DATABASE `{db}`")).await;
        println!(
            "\nmodel of the original: {original_agents} agents x {tasks} tasks, \
             {concurrency} concurrent reports, pool {pool_max}"
        );
        // The schema (with our primary key and indexes, which only help the model).
        MysqlStore::connect_with(&format!("{server_url}/{db}"), options)
            .await
            .expect("connecting")
            .disconnect()
            .await
            .unwrap();
        let model = Arc::new(original::Original::new(&format!(
            "{server_url}/{db}?pool_min=1&pool_max={pool_max}"
        )));
        let subject = Subject::new(model, original::Original::stats);
        suite(&subject, &server, &db, original_agents, tasks, concurrency).await;
        drop(subject);
        execute(&server, format!("DROP DATABASE `{db}`")).await;
    }
    server.disconnect().await.unwrap();
}

/// A model of the original master's report, from `reference/original-behaviour.md`: one
/// SERIALIZABLE transaction issuing queries per task (package lookup and insert, task lookup
/// and insert, per-row delete), retried at once on 1213/1205 (here at most `ATTEMPTS` times,
/// the original retries forever). Only for comparison: it is never used by the product.
mod original {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicU64, Ordering};

    use async_trait::async_trait;
    use masif_proto::{AgentName, Task, TaskSet};
    use masif_store::mysql::ReportStats;
    use masif_store::{Reports, Result, StoreError};
    use mysql_async::prelude::*;
    use mysql_async::{IsolationLevel, Pool, Transaction, TxOpts};

    /// Attempts before a report counts as failed (the original never gives up).
    const ATTEMPTS: u32 = 100;

    pub struct Original {
        pool: Pool,
        round_trips: AtomicU64,
        reports: AtomicU64,
        commits: AtomicU64,
        conflicts: AtomicU64,
    }

    type Key = (String, Option<String>, Option<String>, String);
    type Pattern = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );

    fn key(t: &Task) -> Key {
        (
            t.package().to_string(),
            t.from_version().map(|v| v.to_string()),
            t.to_version().map(|v| v.to_string()),
            t.action().to_string(),
        )
    }

    impl Original {
        pub fn new(url: &str) -> Self {
            Self {
                pool: Pool::new(url),
                round_trips: AtomicU64::new(0),
                reports: AtomicU64::new(0),
                commits: AtomicU64::new(0),
                conflicts: AtomicU64::new(0),
            }
        }

        pub fn stats(&self) -> ReportStats {
            ReportStats {
                reports: self.reports.load(Ordering::Relaxed),
                round_trips: self.round_trips.load(Ordering::Relaxed),
                write_transactions: self.commits.load(Ordering::Relaxed),
                conflicts: self.conflicts.load(Ordering::Relaxed),
            }
        }

        fn trip(&self) {
            self.round_trips.fetch_add(1, Ordering::Relaxed);
        }

        async fn attempt(
            &self,
            tx: &mut Transaction<'_>,
            agent: &str,
            tasks: &TaskSet,
        ) -> mysql_async::Result<TaskSet> {
            let now = 1_700_000_000i64;
            self.trip();
            let id: Option<u64> = tx
                .exec_first("SELECT id FROM agent WHERE name = ?", (agent,))
                .await?;
            let agent_id = match id {
                Some(id) => id,
                None => {
                    self.trip();
                    tx.exec_drop(
                        "INSERT INTO agent (name, ctime, mtime) VALUES (?, ?, ?)",
                        (agent, now, now),
                    )
                    .await?;
                    tx.last_insert_id().unwrap_or(0)
                }
            };
            self.trip();
            let approvals: Vec<Pattern> = tx
                .exec(
                    "SELECT p.name, t.from_version, t.to_version, t.action FROM task t \
                     LEFT JOIN package p ON p.id = t.package \
                     WHERE t.approved = 1 AND (t.agent IS NULL OR t.agent = ?)",
                    (agent_id,),
                )
                .await?;
            let fits = |p: &Option<String>, v: Option<String>| p.is_none() || *p == v;
            let (approved, pending): (Vec<&Task>, Vec<&Task>) = tasks.iter().partition(|t| {
                let (p, f, to, a) = key(t);
                approvals.iter().any(|(ap, af, at, aa)| {
                    fits(ap, Some(p.clone()))
                        && fits(af, f.clone())
                        && fits(at, to.clone())
                        && fits(aa, Some(a.clone()))
                })
            });
            self.trip();
            let stored: Vec<(String, Option<String>, Option<String>, String)> = tx
                .exec(
                    "SELECT p.name, t.from_version, t.to_version, t.action FROM task t \
                     JOIN package p ON p.id = t.package WHERE t.agent = ? AND t.approved = 0",
                    (agent_id,),
                )
                .await?;
            let stored: BTreeSet<Key> = stored.into_iter().collect();
            let wanted: BTreeSet<Key> = pending.iter().map(|t| key(t)).collect();
            let mut changed = false;
            for (p, f, to, a) in &wanted {
                self.trip();
                let package: Option<u64> = tx
                    .exec_first("SELECT id FROM package WHERE name = ?", (p,))
                    .await?;
                let package = match package {
                    Some(id) => id,
                    None => {
                        self.trip();
                        tx.exec_drop("INSERT INTO package (name) VALUES (?)", (p,))
                            .await?;
                        tx.last_insert_id().unwrap_or(0)
                    }
                };
                if !stored.contains(&(p.clone(), f.clone(), to.clone(), a.clone())) {
                    self.trip();
                    tx.exec_drop(
                        "INSERT INTO task (agent, package, from_version, to_version, action, \
                         approved) VALUES (?, ?, ?, ?, ?, 0)",
                        (agent_id, package, f, to, a),
                    )
                    .await?;
                    changed = true;
                }
            }
            for (p, f, to, a) in stored.difference(&wanted) {
                self.trip();
                tx.exec_drop(
                    "DELETE t FROM task t JOIN package p ON p.id = t.package \
                     WHERE t.agent = ? AND t.approved = 0 AND p.name = ? \
                     AND t.from_version <=> ? AND t.to_version <=> ? AND t.action = ?",
                    (agent_id, p, f, to, a),
                )
                .await?;
                changed = true;
            }
            if changed {
                self.trip();
                tx.exec_drop("UPDATE agent SET mtime = ? WHERE id = ?", (now, agent_id))
                    .await?;
            }
            Ok(approved.into_iter().cloned().collect())
        }
    }

    #[async_trait]
    impl Reports for Original {
        /// The original knows no facts.
        async fn report_with_facts(
            &self,
            agent: &AgentName,
            tasks: &TaskSet,
            _facts: Option<&masif_proto::facts::Facts>,
        ) -> Result<TaskSet> {
            self.reports.fetch_add(1, Ordering::Relaxed);
            let failed = |e: mysql_async::Error| StoreError::Mysql {
                doing: "the original's report".into(),
                source: std::sync::Arc::new(e),
            };
            let mut last = None;
            for _ in 0..ATTEMPTS {
                let mut opts = TxOpts::default();
                opts.with_isolation_level(IsolationLevel::Serializable);
                self.round_trips.fetch_add(2, Ordering::Relaxed); // isolation + START
                let mut tx = self.pool.start_transaction(opts).await.map_err(failed)?;
                let outcome = self.attempt(&mut tx, agent.as_str(), tasks).await;
                let outcome = match outcome {
                    Ok(answer) => {
                        self.trip();
                        tx.commit().await.map(|()| answer)
                    }
                    Err(e) => {
                        let _ = tx.rollback().await;
                        Err(e)
                    }
                };
                match outcome {
                    Ok(answer) => {
                        self.commits.fetch_add(1, Ordering::Relaxed);
                        return Ok(answer);
                    }
                    Err(mysql_async::Error::Server(e)) if e.code == 1213 || e.code == 1205 => {
                        self.conflicts.fetch_add(1, Ordering::Relaxed);
                        last = Some(failed(mysql_async::Error::Server(e)));
                    }
                    Err(e) => return Err(failed(e)),
                }
            }
            Err(StoreError::RetriesExhausted {
                attempts: ATTEMPTS,
                last: Box::new(last.unwrap_or(StoreError::Closed)),
            })
        }
        async fn remove_orphan_packages(&self) -> Result<u64> {
            Ok(0) // the original never removes packages
        }
    }
}
