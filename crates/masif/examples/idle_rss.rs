//! Size and idle memory of the release binaries in a directory: for `masif-agent`,
//! `masif-master` and `masif-ui`, the file size, and `VmRSS`/`VmHWM` (with the anonymous and
//! file-backed parts of the resident set) from `/proc/PID/status` once each has started, done
//! its first piece of work and gone idle. Sizes of `masif-pki` and `masif` are printed too
//! when the directory has them.
//!
//! One run, on loopback in a temporary directory: a throwaway PKI, an SQLite database, the
//! master serving over mutual TLS, an agent planning against a real APT sandbox with 11
//! tasks awaiting approval, the UI behind a trusted proxy header. The master's first work is
//! the agent's report (seen in the agent's status), the agent's its first cycle (its
//! monitoring socket says it sleeps after a report), the UI's one answered page (read to the
//! end, connection closed). Then all three are sampled, and the agent's status checked again
//! to show it stayed idle meanwhile. The binaries are spawned from `--bin-dir`, so old and new
//! builds are measured by the same harness.
//!
//! ```sh
//! cargo build --release --bins
//! cargo run --release -p masif --example idle-rss -- --bin-dir target/release [--runs 3]
//! ```

// The harness runs the binaries it measures, as the tests of binaries do.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::process::{Child, Command};

// Test fixtures: a real APT sandbox and a throwaway CA.
use masif_testkit::pki::{EphemeralCa, Usage};
use masif_testkit::sandbox::{standard_packages, Sandbox, Stage};

/// The daemons whose idle memory is measured, in the order printed.
const DAEMONS: [&str; 3] = ["masif-agent", "masif-master", "masif-ui"];
/// Binaries whose size is printed when present.
const BINARIES: [&str; 5] = [
    "masif-agent",
    "masif-master",
    "masif-ui",
    "masif-pki",
    "masif",
];
const MASTER_CN: &str = "master.idle-rss.invalid";
const AGENT_CN: &str = "agent.idle-rss.invalid";
/// The agent's report and retry interval: its first report comes up to this long after
/// start, and it sleeps at least 0.8 times this long after its first cycle.
const AGENT_INTERVAL_SECS: u64 = 20;
/// Longest wait for any one event (a start-up, the agent's first cycle, a page).
const DEADLINE: Duration = Duration::from_secs(120);

/// Size and idle memory of masif-agent, masif-master and masif-ui release binaries.
#[derive(Parser)]
struct Args {
    /// Directory holding the release binaries (e.g. target/release).
    #[arg(long, value_name = "DIR")]
    bin_dir: PathBuf,
    /// Measure this many times; the median is printed too.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=99))]
    runs: u32,
}

/// Memory figures of one process, in KiB, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy)]
struct Memory {
    rss: u64,
    hwm: u64,
    anon: u64,
    file: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = args
        .bin_dir
        .canonicalize()
        .with_context(|| format!("--bin-dir {}", args.bin_dir.display()))?;
    for name in DAEMONS {
        let path = dir.join(name);
        ensure!(path.is_file(), "{} does not exist", path.display());
    }
    println!("binaries in {}", dir.display());
    println!("{:<14} {:>12} {:>9}", "binary", "bytes", "MiB");
    for name in BINARIES {
        if let Ok(meta) = std::fs::metadata(dir.join(name)) {
            println!(
                "{name:<14} {:>12} {:>9.2}",
                meta.len(),
                meta.len() as f64 / 1048576.0
            );
        }
    }
    println!();
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        let figures = measure_once(&dir)
            .await
            .with_context(|| format!("run {run}"))?;
        print_table(&format!("idle memory, run {run}"), &figures);
        runs.push(figures);
    }
    if runs.len() > 1 {
        let median: Vec<Memory> = (0..DAEMONS.len())
            .map(|i| median_of(runs.iter().map(|r| r[i])))
            .collect();
        print_table(
            &format!("idle memory, median of {} runs", runs.len()),
            &median,
        );
    }
    Ok(())
}

/// One measurement of the three daemons, in the order of [`DAEMONS`].
async fn measure_once(bin: &Path) -> Result<Vec<Memory>> {
    let tmp = tempfile::tempdir().context("temporary directory")?;
    let dir = tmp.path();
    let ca = EphemeralCa::new("Idle RSS CA")?;
    let master_tls = ca.write_files(
        &dir.join("master"),
        &ca.issue(MASTER_CN, Usage::Server)?,
        None,
    )?;
    let agent_tls = ca.write_files(
        &dir.join("agent"),
        &ca.issue(AGENT_CN, Usage::Client)?,
        None,
    )?;
    let sandbox = Sandbox::create(&dir.join("sandbox"), &standard_packages()).await?;
    sandbox.publish(Stage::V2).await?;
    let db_url = format!("sqlite://{}", dir.join("masif.db").display());

    let master_addr = free_port()?;
    let master_yml = format!(
        "api: {{ listen: \"{master_addr}\", name: {MASTER_CN} }}\n\
         tls: {{ cert: {:?}, key: {:?}, ca: {:?} }}\n\
         db: {{ url: {db_url:?} }}\n\
         log: {{ level: warning }}\n",
        master_tls.cert, master_tls.key, master_tls.ca
    );
    let mut master = Daemon::start(bin, "masif-master", dir, &master_yml)?;
    master.wait_listening(master_addr).await?;

    let socket = dir.join("agent.sock");
    let env: Vec<String> = sandbox
        .apt_env()
        .iter()
        .map(|(k, v)| format!("{k}: {v:?}"))
        .collect();
    let agent_yml = format!(
        "interval: {{ check: 3600, report: {AGENT_INTERVAL_SECS}, retry: {AGENT_INTERVAL_SECS} }}\n\
         master: {{ host: \"{master_addr}\", cn: {MASTER_CN} }}\n\
         tls: {{ cert: {:?}, key: {:?}, ca: {:?} }}\n\
         apt: {{ env: {{ {} }} }}\n\
         socket: {:?}\n\
         log: {{ level: warning }}\n",
        agent_tls.cert,
        agent_tls.key,
        agent_tls.ca,
        env.join(", "),
        socket
    );
    let mut agent = Daemon::start(bin, "masif-agent", dir, &agent_yml)?;
    let idle = agent.wait_first_cycle(&socket).await?;

    let ui_addr = free_port()?;
    let ui_yml = format!(
        "listen: \"{ui_addr}\"\n\
         db: {{ url: {db_url:?} }}\n\
         auth: {{ trusted_header: {{ name: X-Remote-User, from: [\"127.0.0.1\"] }} }}\n\
         log: {{ level: warning }}\n"
    );
    let mut ui = Daemon::start(bin, "masif-ui", dir, &ui_yml)?;
    ui.wait_listening(ui_addr).await?;
    let page = get_page(ui_addr, "/").await?;
    ensure!(
        page.contains("alpha"),
        "the UI's pending page does not list the agent's tasks"
    );

    let figures = vec![agent.memory()?, master.memory()?, ui.memory()?];
    let still = agent_status(&socket).await?;
    ensure!(
        still["activity"] == "sleeping"
            && still["since"] == idle["since"]
            && still["reports"] == idle["reports"],
        "the agent did not stay idle while it was measured: {still}"
    );
    for daemon in [&mut ui, &mut agent, &mut master] {
        daemon.stop().await;
    }
    Ok(figures)
}

/// A spawned daemon with its configuration file and log.
struct Daemon {
    name: &'static str,
    child: Child,
    pid: u32,
    log: PathBuf,
}

impl Daemon {
    /// Writes `config` to DIR/NAME.yml and runs `BIN/NAME --config` on it, its log going to
    /// DIR/NAME.log.
    fn start(bin: &Path, name: &'static str, dir: &Path, config: &str) -> Result<Self> {
        let config_file = dir.join(format!("{name}.yml"));
        std::fs::write(&config_file, config)
            .with_context(|| format!("writing {}", config_file.display()))?;
        let log = dir.join(format!("{name}.log"));
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(bin.join(name))
            .arg("--config")
            .arg(&config_file)
            .env_remove("MASIF_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.join(name).display()))?;
        let pid = child.id().context("no process id")?;
        Ok(Self {
            name,
            child,
            pid,
            log,
        })
    }

    /// An error unless the daemon still runs (with its log when it ended).
    fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            bail!("{} exited ({status}): {}", self.name, log.trim());
        }
        Ok(())
    }

    /// Waits until `addr` accepts a TCP connection.
    async fn wait_listening(&mut self, addr: SocketAddr) -> Result<()> {
        let started = Instant::now();
        loop {
            self.check_running()?;
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            ensure!(
                started.elapsed() < DEADLINE,
                "{} is not listening on {addr}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the agent's monitoring socket says it sleeps after a successful report
    /// with tasks pending: its first cycle is over. Returns that status.
    async fn wait_first_cycle(&mut self, socket: &Path) -> Result<masif_agent::api::Json> {
        let started = Instant::now();
        loop {
            self.check_running()?;
            if let Ok(status) = agent_status(socket).await {
                if !status["last_error"].is_null() {
                    bail!("the agent failed: {}", status["last_error"]);
                }
                let reported = status["reports"].as_u64().unwrap_or(0) >= 1;
                if reported && status["activity"] == "sleeping" {
                    ensure!(
                        status["pending_tasks"].as_u64().unwrap_or(0) > 0,
                        "the agent reported no pending tasks: {status}"
                    );
                    return Ok(status);
                }
            }
            ensure!(
                started.elapsed() < DEADLINE,
                "the agent did not finish its first cycle"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn memory(&self) -> Result<Memory> {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let field = |name: &str| -> Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .with_context(|| format!("{path}: no {name}"))
        };
        Ok(Memory {
            rss: field("VmRSS")?,
            hwm: field("VmHWM")?,
            anon: field("RssAnon")?,
            file: field("RssFile")?,
        })
    }

    async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

async fn agent_status(socket: &Path) -> Result<masif_agent::api::Json> {
    Ok(masif_agent::api::query(socket, "/v1/status").await?)
}

/// `GET path` from the UI as the user a trusted proxy names; the page, read to its end, once
/// the UI has closed the connection.
async fn get_page(addr: SocketAddr, path: &str) -> Result<String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to the UI at {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .header("X-Remote-User", "idle-rss")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())?;
    let response = tokio::time::timeout(DEADLINE, sender.send_request(request))
        .await
        .context("the UI did not answer")??;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    drop(sender);
    tokio::time::timeout(DEADLINE, conn)
        .await
        .context("the UI did not close the connection")???;
    ensure!(status.is_success(), "GET {path}: {status}");
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// A loopback address with a port nobody listens on now.
fn free_port() -> Result<SocketAddr> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(probe.local_addr()?)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Per field, the median of the figures (the upper one of an even count).
fn median_of(figures: impl Iterator<Item = Memory>) -> Memory {
    let figures: Vec<Memory> = figures.collect();
    let median = |get: fn(&Memory) -> u64| {
        let mut values: Vec<u64> = figures.iter().map(get).collect();
        values.sort_unstable();
        values[values.len() / 2]
    };
    Memory {
        rss: median(|m| m.rss),
        hwm: median(|m| m.hwm),
        anon: median(|m| m.anon),
        file: median(|m| m.file),
    }
}

fn print_table(title: &str, figures: &[Memory]) {
    println!("{title} (KiB; MiB in parentheses)");
    println!(
        "{:<14} {:>16} {:>16} {:>9} {:>9}",
        "process", "VmRSS", "VmHWM", "RssAnon", "RssFile"
    );
    for (name, m) in DAEMONS.iter().zip(figures) {
        println!(
            "{name:<14} {:>8} ({:>5.2}) {:>8} ({:>5.2}) {:>9} {:>9}",
            m.rss,
            mib(m.rss),
            m.hwm,
            mib(m.hwm),
            m.anon,
            m.file
        );
    }
    println!();
}
