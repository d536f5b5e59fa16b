//! Measures the resident memory of the real `masif-agent` binary while it idles between
//! checks, talking to a stand-in master over mutual TLS and planning against an APT sandbox:
//! once with nothing to do, once with 11 tasks awaiting approval. Prints the figures.
//!
//! ```sh
//! cargo build --release -p masif-agent --bins --examples && target/release/examples/idle_rss
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::StandInMaster;
use masif_agent::exec::Runner;
use masif_testkit::sandbox::{standard_packages, Sandbox, Stage};

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// File-backed (binary, libraries) and anonymous (heap, stacks) parts of the resident set.
fn breakdown(pid: u32) -> String {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    format!(
        "anonymous {} KiB, file-backed {} KiB",
        field("Anonymous:"),
        field("Rss:").saturating_sub(field("Anonymous:"))
    )
}

async fn status(socket: &Path) -> Option<masif_agent::api::Json> {
    masif_agent::api::query(socket, "/v1/status").await.ok()
}

async fn measure(binary: &Path, stage: Stage) {
    let dir = tempfile::tempdir().unwrap();
    let master = StandInMaster::start().await;
    let tls = master.agent_files("agent.rss.invalid");
    let sandbox = Sandbox::create(&dir.path().join("sb"), &standard_packages())
        .await
        .unwrap();
    sandbox.publish(stage).await.unwrap();
    let socket = dir.path().join("agent.sock");
    let config = dir.path().join("agent.yml");
    std::fs::write(
        &config,
        common::agent_yaml(&master, &tls, &sandbox, &socket, 2),
    )
    .unwrap();
    let agent = Runner::default()
        .command(binary)
        .arg("--config")
        .arg(&config)
        .spawn()
        .await
        .unwrap();
    let pid = agent.id().unwrap();
    let started = std::time::Instant::now();
    // Let it plan and report a few times, then sample while it sleeps.
    let mut samples = Vec::new();
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(s) = status(&socket).await else {
            continue;
        };
        let settled = started.elapsed() > Duration::from_secs(6) && !s["last_report"].is_null();
        if settled && s["activity"] == "sleeping" {
            samples.push(memory(pid));
            if samples.len() >= 20 {
                break;
            }
        }
    }
    let parts = breakdown(pid);
    let pending = status(&socket).await.unwrap()["pending_tasks"]
        .as_u64()
        .unwrap();
    agent.stop().await;
    let rss: Vec<u64> = samples.iter().map(|s| s.0).collect();
    let hwm = samples.iter().map(|s| s.1).max().unwrap_or(0);
    println!(
        "{:<38} pending={pending:>2}  idle RSS min/median/max = {}/{}/{} KiB  peak (VmHWM) = {hwm} KiB  (n={})",
        match stage {
            Stage::V1 => "nothing to do",
            Stage::V2 => "tasks awaiting approval",
        },
        rss.iter().min().unwrap_or(&0),
        {
            let mut r = rss.clone();
            r.sort();
            r.get(r.len() / 2).copied().unwrap_or(0)
        },
        rss.iter().max().unwrap_or(&0),
        rss.len()
    );
    println!("{:<38} {parts}", "");
}

#[tokio::main]
async fn main() {
    let exe = std::env::current_exe().unwrap();
    let binary: PathBuf = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("masif-agent"))
        .unwrap();
    if !binary.is_file() {
        eprintln!(
            "{} not found: cargo build --release -p masif-agent --bins --examples",
            binary.display()
        );
        std::process::exit(2);
    }
    println!("binary: {}", binary.display());
    measure(&binary, Stage::V1).await;
    measure(&binary, Stage::V2).await;
}
