//! The Galera comparison (`--galera`): the phases on the local MariaDB with one master, then
//! on a 3-node Galera cluster started with `scripts/galera.sh` (in a temporary directory, at
//! `--galera-port`) with 1, 2 and 3 masters, master `i` on node `i` (its `db.url`), the agents
//! spread round-robin across the masters, each setup on a fresh database; one table with the
//! agents' errors, the masters' database retries (from their metrics) and, on the cluster, the
//! write sets (transactions that wrote) the nodes replicated.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::fleet::{execute, Agents, Master, Process, Variant};
use crate::measure::{load_average, memory_kib, percentile};
use crate::{run_phases, Options, Phase, Target};

pub fn print_header() {
    println!("| setup | agents | phase | reports | errors | retries | write sets | reports/s | p50 ms | p99 ms | masters CPU ms/report | MariaDB CPU ms/report | other processes, cores busy | load avg (1 min) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
}

fn print_row(setup: &str, size: usize, phase: Phase) {
    let Phase {
        name,
        result: mut r,
        cpu,
        retries,
        write_sets,
    } = phase;
    let write_sets = write_sets.map(|n| n.to_string()).unwrap_or_default();
    r.latencies.sort();
    let n = r.latencies.len();
    let per_report = |seconds: f64| seconds * 1000.0 / n.max(1) as f64;
    // What the rest of the machine used meanwhile (the other helpers' builds and tests; on the
    // shared local MariaDB, their queries count as MariaDB's).
    let others = cpu.machine - cpu.master - cpu.db - cpu.generator;
    println!(
        "| {setup} | {size} | {name} | {n} | {} | {retries} | {write_sets} | {:.0} | {:.2} | {:.2} | {:.3} | {:.3} | {:.2} | {:.2} |",
        r.errors,
        n as f64 / r.elapsed.as_secs_f64(),
        percentile(&r.latencies, 0.50),
        percentile(&r.latencies, 0.99),
        per_report(cpu.master),
        per_report(cpu.db),
        others / r.elapsed.as_secs_f64(),
        load_average(),
    );
}

/// A 3-node cluster in a temporary directory, stopped (and its data removed) when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    /// `mysql://root@127.0.0.1:PORT` of node 1, 2 and 3.
    urls: Vec<String>,
    pids: Vec<u32>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/galera.sh")
}

#[allow(clippy::disallowed_methods)] // the benchmark runs the cluster's script
fn galera(args: &[&str]) -> std::process::Output {
    std::process::Command::new(script())
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script().display()))
}

impl Cluster {
    /// Starts the cluster. Before the agents connect: its ports lie in the kernel's ephemeral
    /// range, where the agents' connections (and their `TIME_WAIT`s) could hold them.
    pub fn start(base_port: u16) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("masif-bench-galera")
            .tempdir()
            .expect("a temporary directory for the cluster");
        let path = dir
            .path()
            .to_str()
            .expect("a UTF-8 temporary path")
            .to_owned();
        wait_for_ports(base_port);
        let started = galera(&["start", &path, &base_port.to_string()]);
        if !started.status.success() {
            galera(&["stop", &path]);
            panic!(
                "scripts/galera.sh start {path} {base_port}: {}",
                started.status
            );
        }
        let urls: Vec<String> = String::from_utf8_lossy(&started.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(urls.len(), 3, "scripts/galera.sh printed {urls:?}");
        let pids = (1..=3)
            .filter_map(|n| {
                let file = dir.path().join(format!("node{n}/mysqld.pid"));
                std::fs::read_to_string(file).ok()?.trim().parse().ok()
            })
            .collect();
        Self { dir, urls, pids }
    }
}

/// Local TCP ports of every socket on the machine, in any state (`/proc/net/tcp`, `tcp6`).
fn ports_in_use() -> std::collections::HashSet<u16> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .flat_map(|file| {
            std::fs::read_to_string(file)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let local = line.split_whitespace().nth(1)?;
                    u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Waits (up to 2 minutes) until no socket holds one of the cluster's ports: they lie in the
/// kernel's ephemeral range, so a previous run's agent connections in `TIME_WAIT` (60 s) can
/// hold one, and a node then fails to bind it ("Address already in use").
fn wait_for_ports(base: u16) {
    let ports: Vec<u16> = [1, 2, 3, 11, 12, 13, 21, 22, 23, 31, 32, 33]
        .iter()
        .map(|n| base + n)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let in_use = ports_in_use();
        let held: Vec<u16> = ports
            .iter()
            .copied()
            .filter(|p| in_use.contains(p))
            .collect();
        if held.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ports {held:?} of the cluster (--galera-port {base}) stay in use"
        );
        eprintln!(
            "waiting for ports {held:?} (held by earlier connections) before starting the cluster"
        );
        std::thread::sleep(Duration::from_secs(5));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let path = self.dir.path().to_str().unwrap_or_default().to_owned();
        if !galera(&["stop", &path]).status.success() {
            eprintln!("scripts/galera.sh stop {path} failed");
        }
    }
}

/// A fresh database on the cluster, created through node 1 (and so on every node).
struct Database {
    admin: String,
    name: String,
}

impl Database {
    async fn create(admin: &str, masters: usize) -> Self {
        let name = format!("masif_bench_{}_{masters}", std::process::id());
        execute(admin, &format!("DROP DATABASE IF EXISTS `{name}`")).await;
        execute(admin, &format!("CREATE DATABASE `{name}`")).await;
        Self {
            admin: admin.to_owned(),
            name,
        }
    }

    /// Its URL through the node at `node`.
    fn on(&self, node: &str) -> String {
        format!("{node}/{}", self.name)
    }

    async fn drop_now(self) {
        execute(&self.admin, &format!("DROP DATABASE `{}`", self.name)).await;
    }
}

/// Runs the phases against `target`, prints them and the masters' memory.
async fn run(size: usize, o: &Options, agents: &Agents, target: &Target<'_>, setup: &str) {
    let fleet = run_phases(size, o, agents, target, |p| print_row(setup, size, p)).await;
    let mib = |key| {
        let each: Vec<String> = target
            .masters
            .iter()
            .map(|m| format!("{:.1}", memory_kib(m.pid, key) as f64 / 1024.0))
            .collect();
        each.join(" + ")
    };
    println!(
        "| {setup} | {size} | masters' memory with {} connections: RSS {} MiB, peak {} MiB |",
        fleet.clients.len(),
        mib("VmRSS:"),
        mib("VmHWM:"),
    );
}

/// One MariaDB and one master, then `cluster` with each number of masters in `--masters`.
pub async fn bench(
    size: usize,
    o: &Options,
    agents: &Agents,
    variant: &Variant,
    cluster: &Cluster,
) {
    let label = |setup: String| match o.variants.len() {
        1 => setup,
        _ => format!("{setup}, {}", variant.label),
    };
    let master = Master::start(&agents.pki, variant, o.concurrency).await;
    let target = Target {
        masters: std::slice::from_ref(&master.process),
        db_url: master.db.url(),
        db_pids: master.db_pid.into_iter().collect(),
        nodes: Vec::new(),
    };
    run(size, o, agents, &target, &label("MariaDB, 1 master".into())).await;
    master.stop();

    for &k in &o.masters {
        let db = Database::create(&cluster.urls[0], k).await;
        // One after the other: the first migrates the fresh database.
        let mut masters = Vec::new();
        for node in &cluster.urls[..k] {
            masters.push(Process::start(&agents.pki, variant, &db.on(node), o.concurrency).await);
        }
        let target = Target {
            masters: &masters,
            db_url: db.on(&cluster.urls[0]),
            db_pids: cluster.pids.clone(),
            nodes: cluster.urls.clone(),
        };
        let setup = label(format!(
            "Galera 3 nodes, {k} master{}",
            if k == 1 { "" } else { "s" }
        ));
        run(size, o, agents, &target, &setup).await;
        for m in masters {
            m.stop();
        }
        db.drop_now().await;
    }
}
