//! Load generator for the master (a benchmark, not a test): many agents, each with its own
//! certificate and kept-alive connection, against a real `masif-master` process and MariaDB.
//! Prints reports/s, p50/p99 latency and the master's (and MariaDB's) CPU time and memory for
//! registration, steady state, the first reports after an approval, and churn; with
//! `--long-poll`, the master's memory and CPU while every agent waits in a v2 report, and how
//! soon held reports are answered after an approval (see `load/long_poll.rs`).
//!
//! `cargo bench -p masif-master --bench load -- [--fleets 1000,10000] [--tasks 20]
//!  [--concurrency 64] [--rounds 3] [--long-poll [--idle 30] [--wait 300] [--single 20]]
//!  [--variant 'LABEL=PATH|built [KEY=VALUE …]' …]`
//!
//! Each `--variant` runs its own master binary (`built`: the one cargo built) with those
//! environment variables, one after the other against the same agents, so that two builds or
//! settings compare side by side in one run.
//!
//! Every agent's connection is a file descriptor in the generator and in the master: both raise
//! their soft `RLIMIT_NOFILE` to the hard limit. 10,000 connections from one loopback address
//! to one port fit Linux's default ephemeral port range (32768–60999).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "load/fleet.rs"]
mod fleet;
#[path = "load/long_poll.rs"]
mod long_poll;
#[path = "load/measure.rs"]
mod measure;

use fleet::{report_body, run_phase, Agents, Fleet, Master, PhaseResult, Variant};
use measure::{mib, percentile, Cpu};

pub struct Options {
    pub fleets: Vec<usize>,
    pub tasks: usize,
    pub concurrency: usize,
    pub rounds: usize,
    pub long_poll: bool,
    /// Seconds of idle measurement while every agent is parked.
    pub idle: u64,
    /// The `wait` of parked reports.
    pub wait: u64,
    /// Approvals for one agent each.
    pub single: usize,
    pub variants: Vec<Variant>,
}

fn options() -> Options {
    let mut o = Options {
        fleets: vec![1_000, 10_000],
        tasks: 20,
        concurrency: 64,
        rounds: 3,
        long_poll: false,
        idle: 30,
        wait: 300,
        single: 20,
        variants: Vec::new(),
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
            "--idle" => o.idle = value().parse().expect("--idle SECONDS"),
            "--wait" => o.wait = value().parse().expect("--wait SECONDS"),
            "--single" => o.single = value().parse().expect("--single N"),
            "--variant" => o.variants.push(Variant::parse(&value())),
            "--long-poll" => {
                o.long_poll = true;
                i += 1;
                continue;
            }
            _ => {
                i += 1;
                continue; // cargo passes --bench
            }
        }
        i += 2;
    }
    if o.variants.is_empty() {
        o.variants.push(Variant::built());
    }
    o
}

fn print_row(fleet: usize, phase: &str, mut r: PhaseResult, master: u32, cpu: Cpu) {
    r.latencies.sort();
    let n = r.latencies.len();
    let per_report = |seconds: f64| seconds * 1000.0 / n.max(1) as f64;
    println!(
        "| {fleet:>6} | {phase:<22} | {n:>7} | {:>6} | {:>8.0} | {:>7.2} | {:>7.2} | {:>8.3} | {:>8.3} | {:>8.3} | {:>7.1} |",
        r.errors,
        n as f64 / r.elapsed.as_secs_f64(),
        percentile(&r.latencies, 0.50),
        percentile(&r.latencies, 0.99),
        per_report(cpu.master),
        per_report(cpu.db),
        per_report(cpu.generator),
        mib(master, "VmRSS:"),
    );
}

/// Registration, steady state, the first reports after an approval, churn.
async fn bench_fleet(size: usize, o: &Options, agents: &Agents, variant: &Variant) {
    let master = Master::start(&agents.pki, variant).await;
    let fleet = Fleet::new(agents, master.addr);
    let (pid, db_pid) = (master.pid, master.db_pid);
    let tasks = o.tasks;
    macro_rules! phase {
        ($name:expr, $body:expr) => {{
            let before = Cpu::now(pid, db_pid);
            let r = run_phase(
                &fleet,
                0..size,
                o.concurrency,
                "/v1/pending-tasks",
                false,
                $body,
            )
            .await;
            print_row(size, $name, r, pid, Cpu::now(pid, db_pid).since(before));
        }};
    }
    phase!("registration", move |a| report_body(a, tasks, 0));
    for _ in 0..o.rounds {
        phase!("steady state", move |a| report_body(a, tasks, 0));
    }
    // Approve 5 of the 20 tasks for every agent, the way "Approve selection" does.
    for t in [0, 1, 2, 4, 5] {
        master
            .db
            .execute(&format!(
                "INSERT INTO task(agent, package, from_version, to_version, action, approved) \
                 SELECT NULL, id, NULL, '2.0', 'update', 1 FROM package WHERE name = 'pkg{t}'"
            ))
            .await;
    }
    phase!("first after approval", move |a| report_body(a, tasks, 0));
    phase!("steady after approval", move |a| report_body(a, tasks, 0));
    for g in 1..=o.rounds {
        phase!("churn (1 task changes)", move |a| report_body(a, tasks, g));
    }
    let open = fleet.clients.len();
    println!(
        "| {size:>6} | master memory with {open} connections: RSS {:.1} MiB, peak {:.1} MiB |",
        mib(pid, "VmRSS:"),
        mib(pid, "VmHWM:"),
    );
    drop(fleet);
    master.stop();
}

fn main() {
    let o = options();
    // Every agent's connection is a file descriptor here too.
    let _ = masif_daemon::serve::raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        if o.long_poll {
            long_poll::print_header();
        } else {
            println!("| agents | phase                  | reports | errors | reports/s | p50 ms | p99 ms | master CPU ms/report | MariaDB CPU ms/report | generator CPU ms/report | master RSS MiB |");
            println!("|---|---|---|---|---|---|---|---|---|---|---|");
        }
        for &size in &o.fleets {
            let agents = Agents::new(size);
            for variant in &o.variants {
                if o.variants.len() > 1 && !o.long_poll {
                    println!("| {size:>6} | master: {} |", variant.label);
                }
                if o.long_poll {
                    long_poll::bench(size, &o, &agents, variant).await;
                } else {
                    bench_fleet(size, &o, &agents, variant).await;
                }
            }
        }
    });
}
