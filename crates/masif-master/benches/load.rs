//! Load generator for the master (a benchmark, not a test): many agents, each with its own
//! certificate and kept-alive connection, against a real `masif-master` process and MariaDB.
//! Prints reports/s, p50/p99 latency and the master's (and MariaDB's) CPU time and memory for
//! registration, steady state, the first reports after an approval, and churn.
//!
//! `cargo bench -p masif-master --bench load -- [--fleets 1000,10000] [--tasks 20]
//!  [--concurrency 64] [--rounds 3]`

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client_config, Client, Pki};
use masif_testkit::db::TestDatabase;
use tokio::sync::Mutex;

struct Options {
    fleets: Vec<usize>,
    tasks: usize,
    concurrency: usize,
    rounds: usize,
}

fn options() -> Options {
    let mut o = Options {
        fleets: vec![1_000, 10_000],
        tasks: 20,
        concurrency: 64,
        rounds: 3,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = || args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--fleets" => {
                o.fleets = value()
                    .split(',')
                    .map(|s| s.parse().expect("--fleets N,M"))
                    .collect()
            }
            "--tasks" => o.tasks = value().parse().expect("--tasks N"),
            "--concurrency" => o.concurrency = value().parse().expect("--concurrency N"),
            "--rounds" => o.rounds = value().parse().expect("--rounds N"),
            _ => {
                i += 1;
                continue; // cargo passes --bench
            }
        }
        i += 2;
    }
    o
}

/// CPU seconds (user + system) and resident memory of a process, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0 // USER_HZ is 100 on Linux
}

fn memory_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

fn find_process(name: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == name).then_some(pid)
    })
}

/// The tasks of agent `agent` in report `generation` (churn bumps one task per generation).
fn report_body(agent: usize, tasks: usize, generation: usize) -> String {
    let items: Vec<String> = (0..tasks)
        .map(|t| {
            let to = if t == agent % tasks { 2 + generation } else { 2 };
            match t % 4 {
                3 => format!(r#"{{"package":"newpkg{t}","action":"install","to_version":"1.{to}"}}"#),
                _ => format!(r#"{{"package":"pkg{t}","action":"update","from_version":"1.0","to_version":"{to}.0"}}"#),
            }
        })
        .collect();
    format!("[{}]", items.join(","))
}

struct Fleet {
    clients: Vec<Mutex<Option<Client>>>,
    configs: Vec<Arc<rustls::ClientConfig>>,
    addr: std::net::SocketAddr,
}

#[derive(Default)]
struct PhaseResult {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

async fn run_phase(
    fleet: &Arc<Fleet>,
    agents: std::ops::Range<usize>,
    concurrency: usize,
    body: impl Fn(usize) -> String + Send + Sync + 'static,
) -> PhaseResult {
    let body = Arc::new(body);
    let next = Arc::new(AtomicUsize::new(agents.start));
    let end = agents.end;
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (fleet, next, body) = (fleet.clone(), next.clone(), body.clone());
        workers.push(tokio::spawn(async move {
            let mut result = PhaseResult::default();
            loop {
                let agent = next.fetch_add(1, Ordering::Relaxed);
                if agent >= end {
                    break;
                }
                let payload = body(agent);
                let t0 = Instant::now();
                let mut slot = fleet.clients[agent].lock().await;
                if slot.as_ref().is_none_or(|c| c.is_closed()) {
                    *slot = Client::connect(fleet.addr, fleet.configs[agent].clone())
                        .await
                        .ok();
                }
                let ok = match slot.as_mut() {
                    Some(client) => {
                        matches!(client.report(&payload).await, Ok(r) if r.status == 200)
                    }
                    None => false,
                };
                if ok {
                    result.latencies.push(t0.elapsed());
                } else {
                    result.errors += 1;
                    *slot = None;
                }
            }
            result
        }));
    }
    let mut total = PhaseResult::default();
    for w in workers {
        let r = w.await.unwrap();
        total.latencies.extend(r.latencies);
        total.errors += r.errors;
    }
    total.elapsed = started.elapsed();
    total
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn print_row(
    fleet: usize,
    phase: &str,
    mut r: PhaseResult,
    master: u32,
    cpu: (f64, f64),
    db_cpu: f64,
    generator_cpu: f64,
) {
    r.latencies.sort();
    let n = r.latencies.len();
    let rss = memory_kib(master, "VmRSS:") as f64 / 1024.0;
    println!(
        "| {fleet:>6} | {phase:<22} | {n:>7} | {:>6} | {:>8.0} | {:>7.2} | {:>7.2} | {:>8.3} | {:>8.3} | {:>8.3} | {:>7.1} |",
        r.errors,
        n as f64 / r.elapsed.as_secs_f64(),
        percentile(&r.latencies, 0.50),
        percentile(&r.latencies, 0.99),
        (cpu.1 - cpu.0) * 1000.0 / n.max(1) as f64,
        db_cpu * 1000.0 / n.max(1) as f64,
        generator_cpu * 1000.0 / n.max(1) as f64,
        rss,
    );
}

#[allow(clippy::disallowed_methods)] // the benchmark runs the real master binary
fn spawn_master(config: &std::path::Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_masif-master"))
        .arg("--config")
        .arg(config)
        .env("MASIF_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start masif-master")
}

async fn bench_fleet(size: usize, o: &Options) {
    let pki = Pki::new();
    let db = TestDatabase::create("bench").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = pki.dir.path().join("master.yml");
    let m = &pki.master;
    std::fs::write(
        &config,
        format!(
            "api: {{ listen: \"127.0.0.1:{port}\", idle_timeout: 3600 }}\ntls: {{ cert: {:?}, key: {:?}, ca: {:?} }}\ndb: {{ url: {:?} }}\nlog: {{ level: warning }}\n",
            m.cert,
            m.key,
            m.ca,
            // Agents report every few minutes, longer than `last_seen_interval`, so in
            // production every unchanged report records its contact: so here (each round takes
            // longer than the 1 s interval).
            format!("{}?last_seen_interval=1", db.url())
        ),
    )
    .unwrap();
    let mut child = spawn_master(&config);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = child.id();
    let db_pid = find_process("mariadbd");
    let db_cpu = || db_pid.map(cpu_seconds).unwrap_or(f64::NAN);

    let t = Instant::now();
    let configs: Vec<_> = (0..size)
        .map(|i| client_config(&pki.agent(&format!("agent{i:05}.bench.test")).1))
        .collect();
    eprintln!(
        "fleet {size}: {size} agent certificates in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let fleet = Arc::new(Fleet {
        clients: (0..size).map(|_| Mutex::new(None)).collect(),
        configs,
        addr,
    });
    let tasks = o.tasks;
    macro_rules! phase {
        ($name:expr, $range:expr, $concurrency:expr, $body:expr) => {{
            let (c0, d0, g0) = (cpu_seconds(pid), db_cpu(), cpu_seconds(std::process::id()));
            let r = run_phase(&fleet, $range, $concurrency, $body).await;
            print_row(
                size,
                $name,
                r,
                pid,
                (c0, cpu_seconds(pid)),
                db_cpu() - d0,
                cpu_seconds(std::process::id()) - g0,
            );
        }};
    }
    phase!(
        "registration",
        0..size,
        o.concurrency,
        move |a| report_body(a, tasks, 0)
    );
    for _ in 0..o.rounds {
        phase!(
            "steady state",
            0..size,
            o.concurrency,
            move |a| report_body(a, tasks, 0)
        );
    }
    // Approve 5 of the 20 tasks for every agent, the way "Approve selection" does.
    for t in [0, 1, 2, 4, 5] {
        db.execute(&format!(
            "INSERT INTO task(agent, package, from_version, to_version, action, approved) \
             SELECT NULL, id, NULL, '2.0', 'update', 1 FROM package WHERE name = 'pkg{t}'"
        ))
        .await;
    }
    phase!("first after approval", 0..size, o.concurrency, move |a| {
        report_body(a, tasks, 0)
    });
    phase!("steady after approval", 0..size, o.concurrency, move |a| {
        report_body(a, tasks, 0)
    });
    for g in 1..=o.rounds {
        phase!("churn (1 task changes)", 0..size, o.concurrency, move |a| {
            report_body(a, tasks, g)
        });
    }
    let open = fleet.clients.len();
    println!(
        "| {size:>6} | master memory with {open} connections: RSS {:.1} MiB, peak {:.1} MiB |",
        memory_kib(pid, "VmRSS:") as f64 / 1024.0,
        memory_kib(pid, "VmHWM:") as f64 / 1024.0
    );
    // Stop the master before the database is dropped.
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    let o = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("| agents | phase                  | reports | errors | reports/s | p50 ms | p99 ms | master CPU ms/report | MariaDB CPU ms/report | generator CPU ms/report | master RSS MiB |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        for &size in &o.fleets {
            bench_fleet(size, &o).await;
        }
    });
}
