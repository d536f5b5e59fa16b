//! Load generator for the master (a benchmark, not a test): many agents, each with its own
//! certificate and kept-alive connection, against a real `masif-master` process and MariaDB.
//! Prints reports/s, p50/p99 latency and the master's (and MariaDB's) CPU time and memory for
//! registration, steady state, the first reports after an approval, and churn; with
//! `--long-poll`, the master's memory and CPU while every agent waits in a v2 report, and how
//! soon held reports are answered after an approval (see `load/long_poll.rs`).
//!
//! `cargo bench -p masif-master --bench load -- [--fleets 1000,10000] [--tasks 20]
//!  [--concurrency 64] [--rounds 3] [--long-poll [--idle 30] [--wait 300] [--single 20]]
//!  [--source-addresses 1] [--approve-during 33334]
//!  [--galera [--masters 1,2,3] [--galera-port 30460]]
//!  [--variant 'LABEL=PATH|built [KEY=VALUE …]' …]`
//!
//! With `--approve-during N`, N more agents are seeded through the store after churn, and the
//! fleet reports (every 10th report a write) while one task is approved for them by name, then
//! while another is approved for every agent (see `load/approval.rs`).
//!
//! With `--galera`, the phases run on the local MariaDB with one master, then on a 3-node
//! Galera cluster (`scripts/galera.sh`, stopped at the end) with 1, 2 and 3 masters, master
//! `i` on node `i`, the agents spread round-robin across the masters (see `load/cluster.rs`).
//!
//! Each `--variant` runs its own master binary (`built`: the one cargo built) with those
//! environment variables, one after the other against the same agents, so that two builds or
//! settings compare side by side in one run.
//!
//! Every agent's connection is a file descriptor in the generator and in the master: both raise
//! their soft `RLIMIT_NOFILE` to the hard limit (the master inherits the generator's), and the
//! generator refuses a fleet that does not fit it. One source address has the kernel's
//! ephemeral ports towards a master port (28,232 by default, 32768–60999): with
//! `--source-addresses N` agent `i` connects from `127.0.0.(1 + i % N)`, so N × 28,232 agents
//! fit (all of `127.0.0.0/8` is loopback on Linux, no configuration needed).

#[path = "load/approval.rs"]
mod approval;
#[path = "load/cluster.rs"]
mod cluster;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "load/fleet.rs"]
mod fleet;
#[path = "load/long_poll.rs"]
mod long_poll;
#[path = "load/measure.rs"]
mod measure;

use std::sync::Arc;

use fleet::{
    execute, report_body, run_phase, write_sets, Agents, Fleet, Master, PhaseResult, Process,
    Variant,
};
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
    /// The one-MariaDB versus Galera comparison.
    pub galera: bool,
    /// Numbers of masters on the cluster, each 1 to 3.
    pub masters: Vec<usize>,
    /// The cluster's base port (`scripts/galera.sh start DIR BASE_PORT`).
    pub galera_port: u16,
    /// Loopback addresses the agents connect from, `127.0.0.1` onwards.
    pub source_addresses: usize,
    /// Agents (besides the fleet) an approval is written for while the fleet reports.
    pub approve_during: Option<usize>,
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
        galera: false,
        masters: vec![1, 2, 3],
        galera_port: 30460,
        source_addresses: 1,
        approve_during: None,
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
            "--masters" => {
                o.masters = value()
                    .split(',')
                    .map(|s| s.parse().expect("--masters N,M (1 to 3)"))
                    .collect();
                assert!(
                    o.masters.iter().all(|&k| (1..=3).contains(&k)),
                    "--masters: each 1 to 3 (one master per node of the 3-node cluster)"
                );
            }
            "--galera-port" => o.galera_port = value().parse().expect("--galera-port PORT"),
            "--source-addresses" => {
                o.source_addresses = value().parse().expect("--source-addresses N")
            }
            "--approve-during" => {
                o.approve_during = Some(value().parse().expect("--approve-during N"))
            }
            "--galera" => {
                o.galera = true;
                i += 1;
                continue;
            }
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

fn print_row(fleet: usize, phase: Phase, master: u32) {
    let Phase {
        name,
        result: mut r,
        cpu,
        ..
    } = phase;
    r.latencies.sort();
    let n = r.latencies.len();
    let per_report = |seconds: f64| seconds * 1000.0 / n.max(1) as f64;
    println!(
        "| {fleet:>6} | {name:<22} | {n:>7} | {:>6} | {:>8.0} | {:>7.2} | {:>7.2} | {:>8.3} | {:>8.3} | {:>8.3} | {:>7.1} |",
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

/// What the phases run against: the masters (agents spread round-robin across them), a URL
/// of the database they share (approvals are written there) and the database servers' pids.
pub struct Target<'a> {
    pub masters: &'a [Process],
    pub db_url: String,
    pub db_pids: Vec<u32>,
    /// Galera nodes (server URLs) whose replicated write sets are counted; none for a plain
    /// server.
    pub nodes: Vec<String>,
}

/// One phase's outcome: the agents' side, the CPU the masters, servers and generator used,
/// and the database retries the masters counted.
pub struct Phase {
    pub name: &'static str,
    pub result: PhaseResult,
    pub cpu: Cpu,
    pub retries: f64,
    /// Write sets the Galera nodes replicated (transactions that wrote), if counted.
    pub write_sets: Option<u64>,
}

async fn retries(masters: &[Process]) -> f64 {
    let mut sum = 0.0;
    for m in masters {
        sum += m.retries().await;
    }
    sum
}

/// Registration, steady state, the first reports after an approval, churn; `report` gets
/// each phase. Returns the fleet, its connections still open.
pub async fn run_phases(
    size: usize,
    o: &Options,
    agents: &Agents,
    target: &Target<'_>,
    mut report: impl FnMut(Phase),
) -> Arc<Fleet> {
    let addrs: Vec<_> = target.masters.iter().map(|m| m.addr).collect();
    let pids: Vec<_> = target.masters.iter().map(|m| m.pid).collect();
    let fleet = Fleet::spread(agents, &addrs, o.source_addresses);
    let tasks = o.tasks;
    macro_rules! phase {
        ($name:expr, $body:expr) => {{
            let (before, retried) = (
                Cpu::now(&pids, &target.db_pids),
                retries(target.masters).await,
            );
            let replicated = write_sets(&target.nodes).await;
            let result = run_phase(
                &fleet,
                0..size,
                o.concurrency,
                "/v1/pending-tasks",
                false,
                $body,
            )
            .await;
            report(Phase {
                name: $name,
                result,
                cpu: Cpu::now(&pids, &target.db_pids).since(before),
                retries: retries(target.masters).await - retried,
                write_sets: match target.nodes.is_empty() {
                    true => None,
                    false => Some(write_sets(&target.nodes).await - replicated),
                },
            });
        }};
    }
    phase!("registration", move |a| report_body(a, tasks, 0));
    for _ in 0..o.rounds {
        phase!("steady state", move |a| report_body(a, tasks, 0));
    }
    // Approve 5 of the 20 tasks for every agent, the way "Approve selection" does.
    for t in [0, 1, 2, 4, 5] {
        execute(
            &target.db_url,
            &format!(
                "INSERT INTO task(agent, package, from_version, to_version, action, approved) \
                 SELECT NULL, id, NULL, '2.0', 'update', 1 FROM package WHERE name = 'pkg{t}'"
            ),
        )
        .await;
    }
    phase!("first after approval", move |a| report_body(a, tasks, 0));
    phase!("steady after approval", move |a| report_body(a, tasks, 0));
    for g in 1..=o.rounds {
        phase!("churn (1 task changes)", move |a| report_body(a, tasks, g));
    }
    fleet
}

/// Every this many reports during an approval changes the agent's pending set (a write).
const CHANGED_EVERY: usize = 10;

/// Seeds `count` agents awaiting approval, then has the fleet report while one task is
/// approved for them by name, and while another is approved for every agent; `report` gets a
/// phase for each kind of report started while it was written, and its times are printed.
async fn approvals_under_load(
    fleet: &Arc<Fleet>,
    count: usize,
    o: &Options,
    target: &Target<'_>,
    mut report: impl FnMut(Phase),
) {
    let url = target.db_url.parse().expect("database url");
    let store = masif_store::open(&url).await.expect("open store");
    approval::seed(&store, count, o.tasks).await;
    let pids: Vec<_> = target.masters.iter().map(|m| m.pid).collect();
    // Where churn left the fleet (see `run_phases`).
    let generations = Arc::new(approval::Generations::new(fleet.clients.len(), o.rounds));
    let whiches = [
        (
            approval::Which::ByName(count),
            ["approval by name: unchanged", "approval by name: writes"],
        ),
        (
            approval::Which::ForEveryAgent,
            ["approval for all: unchanged", "approval for all: writes"],
        ),
    ];
    for (which, names) in whiches {
        let retried = retries(target.masters).await;
        let (during, cpu, approval) = approval::reports_during(
            fleet,
            &generations,
            &store,
            which,
            (o.concurrency, o.tasks, CHANGED_EVERY),
            || Cpu::now(&pids, &target.db_pids),
        )
        .await;
        // The window's CPU (MariaDB's includes the approval's own work) per report of either
        // kind: each row gets its reports' share.
        let reports = (during.unchanged.latencies.len() + during.changed.latencies.len()).max(1);
        let share = |r: &PhaseResult| {
            let part = r.latencies.len() as f64 / reports as f64;
            Cpu {
                master: cpu.master * part,
                db: cpu.db * part,
                generator: cpu.generator * part,
                machine: cpu.machine * part,
            }
        };
        for (name, result) in names.into_iter().zip([during.unchanged, during.changed]) {
            report(Phase {
                name,
                cpu: share(&result),
                result,
                retries: retries(target.masters).await - retried,
                write_sets: None,
            });
        }
        println!(
            "|        | approval of {}: in force after {:.1} ms, written after {:.0} ms |",
            approval.label,
            approval.in_force.as_secs_f64() * 1000.0,
            approval.written.as_secs_f64() * 1000.0,
        );
    }
}

/// The phases against one master on a fresh database on the test server.
async fn bench_fleet(size: usize, o: &Options, agents: &Agents, variant: &Variant) {
    let master = Master::start(&agents.pki, variant, o.concurrency).await;
    let target = Target {
        masters: std::slice::from_ref(&master.process),
        db_url: master.db.url(),
        db_pids: master.db_pid.into_iter().collect(),
        nodes: Vec::new(),
    };
    let pid = master.pid;
    let fleet = run_phases(size, o, agents, &target, |p| print_row(size, p, pid)).await;
    if let Some(count) = o.approve_during {
        approvals_under_load(&fleet, count, o, &target, |p| print_row(size, p, pid)).await;
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

/// Open files, and ports per source address, beyond the agents' connections: the master's
/// listeners and database pool, the generator's database connections.
const SPARE_FILES: u64 = 100;

/// Raises the open-file limit (the master inherits it) and refuses a fleet that would not fit
/// it, or the ephemeral ports of `--source-addresses`.
fn check_room(o: &Options) {
    let largest = o.fleets.iter().copied().max().unwrap_or(0) as u64;
    let open_files = masif_daemon::serve::raise_fd_limit().expect("raise RLIMIT_NOFILE");
    assert!(
        largest + SPARE_FILES <= open_files,
        "{largest} agents need {} open files in the generator and in the master; the hard \
         limit (RLIMIT_NOFILE) is {open_files}: raise it (`ulimit -Hn` as root, LimitNOFILE)",
        largest + SPARE_FILES
    );
    let ports = fleet::ephemeral_ports();
    let sources = fleet::loopback_sources(o.source_addresses).len() as u64;
    assert!(
        largest + SPARE_FILES <= sources * ports,
        "{largest} agents need more than the {ports} ephemeral ports of {sources} source \
         address(es): --source-addresses {}",
        (largest + SPARE_FILES).div_ceil(ports)
    );
}

fn main() {
    let o = options();
    check_room(&o);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Started first (see `Cluster::start`), stopped at the end.
    let galera = o.galera.then(|| cluster::Cluster::start(o.galera_port));
    runtime.block_on(async {
        if o.long_poll {
            long_poll::print_header();
        } else if o.galera {
            cluster::print_header();
        } else {
            println!("| agents | phase                  | reports | errors | reports/s | p50 ms | p99 ms | master CPU ms/report | MariaDB CPU ms/report | generator CPU ms/report | master RSS MiB |");
            println!("|---|---|---|---|---|---|---|---|---|---|---|");
        }
        for &size in &o.fleets {
            let agents = Agents::new(size);
            for variant in &o.variants {
                if o.variants.len() > 1 && !o.long_poll && !o.galera {
                    println!("| {size:>6} | master: {} |", variant.label);
                }
                if let Some(cluster) = &galera {
                    cluster::bench(size, &o, &agents, variant, cluster).await;
                } else if o.long_poll {
                    long_poll::bench(size, &o, &agents, variant).await;
                } else {
                    bench_fleet(size, &o, &agents, variant).await;
                }
            }
        }
    });
}
