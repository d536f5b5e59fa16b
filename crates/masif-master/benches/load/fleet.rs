//! The load generator's fleet: real `masif-master` processes on a fresh database, one client
//! certificate and one kept-alive connection per agent (agents spread round-robin across the
//! masters), and a phase that sends one request per agent, so many at a time.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use masif_testkit::db::TestDatabase;
use tokio::sync::Mutex;

use crate::common::{client_config, Client, Pki};
use crate::measure::find_process;

/// Which master to run: a binary (by default the one cargo built) and its environment.
#[derive(Debug, Clone)]
pub struct Variant {
    pub label: String,
    pub binary: std::path::PathBuf,
    pub env: Vec<(String, String)>,
}

impl Variant {
    pub fn built() -> Self {
        Self {
            label: "this build".into(),
            binary: env!("CARGO_BIN_EXE_masif-master").into(),
            env: Vec::new(),
        }
    }

    /// `LABEL=PATH [KEY=VALUE …]`; PATH `built` is the binary cargo built.
    pub fn parse(spec: &str) -> Self {
        let mut words = spec.split_whitespace();
        let (label, path) = words
            .next()
            .and_then(|w| w.split_once('='))
            .expect("--variant 'LABEL=PATH [KEY=VALUE …]'");
        let binary = match path {
            "built" => Variant::built().binary,
            path => path.into(),
        };
        let env = words
            .map(|w| {
                let (k, v) = w.split_once('=').expect("--variant: KEY=VALUE");
                (k.to_owned(), v.to_owned())
            })
            .collect();
        Self {
            label: label.into(),
            binary,
            env,
        }
    }
}

/// Agents' certificates, made once and used against every master the run starts.
pub struct Agents {
    pub pki: Pki,
    pub configs: Vec<Arc<rustls::ClientConfig>>,
}

impl Agents {
    pub fn new(size: usize) -> Self {
        let t = Instant::now();
        let pki = Pki::new();
        let configs = (0..size)
            .map(|i| client_config(&pki.agent(&agent_name(i)).1))
            .collect();
        eprintln!(
            "{size} agent certificates in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        Self { pki, configs }
    }
}

pub fn agent_name(i: usize) -> String {
    format!("agent{i:05}.bench.test")
}

/// A master process with its own database.
pub struct Master {
    pub db: TestDatabase,
    pub addr: SocketAddr,
    pub pid: u32,
    pub db_pid: Option<u32>,
    pub process: Process,
}

impl Master {
    /// Starts `variant` on a fresh database on the test server and waits until it listens;
    /// it admits the generator's `concurrency` TLS handshakes at a time (see [`Process::start`]).
    pub async fn start(pki: &Pki, variant: &Variant, concurrency: usize) -> Self {
        let db = TestDatabase::create("bench").await;
        let process = Process::start(pki, variant, &db.url(), concurrency).await;
        let db_pid = server_pid(&db.url()).await;
        Self {
            addr: process.addr,
            pid: process.pid,
            db_pid,
            db,
            process,
        }
    }

    /// Stops the master (before its database is dropped).
    pub fn stop(self) {
        self.process.stop();
    }
}

/// A running `masif-master` binary.
pub struct Process {
    pub addr: SocketAddr,
    /// Its metrics listener (`GET /metrics`).
    pub metrics: SocketAddr,
    pub pid: u32,
    child: std::process::Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Process {
    /// Starts `variant` on the database at `db_url` and waits until it listens (it has
    /// migrated the database by then). The agents connect from one address (or a few, with
    /// `--source-addresses`), which `api.max_handshakes_per_source` limits as it should a
    /// flooding host: the master admits
    /// twice `concurrency` (the generator starts its next handshake while the master may still
    /// count the last one; at exactly 64, the default, 1 to 20 of 100 connects were refused).
    pub async fn start(pki: &Pki, variant: &Variant, db_url: &str, concurrency: usize) -> Self {
        let (port, metrics_port) = (free_port(), free_port());
        let admitted =
            (2 * concurrency).max(masif_daemon::serve::DEFAULT_MAX_HANDSHAKES_PER_SOURCE);
        // Admits as many connections as it has open files (inherited from the generator): the
        // default cap (20,000) would make agents beyond it wait in the backlog. Queues as many
        // reports: `--long-poll` parks every agent at once, and beyond the default of 4,096
        // reports waiting for the database the master answers 503 at once.
        let open_files = masif_daemon::serve::raise_fd_limit().expect("RLIMIT_NOFILE");
        let handshakes =
            format!(", max_handshakes_per_source: {admitted}, max_connections: {open_files}");
        let config = pki.dir.path().join(format!("master-{port}.yml"));
        let m = &pki.master;
        std::fs::write(
            &config,
            format!(
                "api: {{ listen: \"127.0.0.1:{port}\", idle_timeout: 3600{handshakes} }}\nmetrics_listen: \"127.0.0.1:{metrics_port}\"\ntls: {{ cert: {:?}, key: {:?}, ca: {:?} }}\ndb: {{ url: {:?}, max_queued_reports: {open_files} }}\nlog: {{ level: warning }}\n",
                m.cert,
                m.key,
                m.ca,
                // Agents report every few minutes, longer than `last_seen_interval`, so in
                // production every unchanged report records its contact: so here (each round
                // takes longer than the 1 s interval).
                format!("{db_url}?last_seen_interval=1")
            ),
        )
        .unwrap();
        let mut child = spawn(variant, &config);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("master on {db_url} exited: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "master on {db_url} did not listen within 120 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            addr,
            metrics: format!("127.0.0.1:{metrics_port}").parse().unwrap(),
            pid: child.id(),
            child,
        }
    }

    /// Database transactions the master has retried (or given up) since it started.
    pub async fn retries(&self) -> f64 {
        masif_testkit::scrape::scrape(self.metrics)
            .await
            .value("masif_master_db_retries_total", &[])
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `sql` on the database at `url`.
pub async fn execute(url: &str, sql: &str) {
    use mysql_async::prelude::Queryable;
    let mut conn = mysql_async::Conn::from_url(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    conn.query_drop(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn.disconnect().await.ok();
}

/// The write sets the Galera nodes at `nodes` have replicated since they started, summed: each
/// node counts the transactions that wrote through it.
pub async fn write_sets(nodes: &[String]) -> u64 {
    use mysql_async::prelude::Queryable;
    let mut sum = 0;
    for url in nodes {
        let mut conn = mysql_async::Conn::from_url(url.as_str())
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let row: Option<(String, u64)> = conn
            .query_first("SHOW GLOBAL STATUS LIKE 'wsrep_replicated'")
            .await
            .unwrap_or_else(|e| panic!("{url}: wsrep_replicated: {e}"));
        conn.disconnect().await.ok();
        sum += row.map_or(0, |(_, n)| n);
    }
    sum
}

/// The process id of the MariaDB server at `url` (from its pid file), if it can be read.
pub async fn server_pid(url: &str) -> Option<u32> {
    use mysql_async::prelude::Queryable;
    let mut conn = mysql_async::Conn::from_url(url).await.ok()?;
    let file: Option<String> = conn.query_first("SELECT @@pid_file").await.ok()?;
    conn.disconnect().await.ok();
    std::fs::read_to_string(file?)
        .ok()
        .and_then(|pid| pid.trim().parse().ok())
        .or_else(|| find_process("mariadbd"))
}

#[allow(clippy::disallowed_methods)] // the benchmark runs the real master binary
fn spawn(variant: &Variant, config: &std::path::Path) -> std::process::Child {
    std::process::Command::new(&variant.binary)
        .arg("--config")
        .arg(config)
        .env("MASIF_LOG", "warn")
        .envs(variant.env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", variant.binary.display()))
}

/// The agents' connections to their masters: agent `i` talks to master `i % masters`, from
/// loopback address `i % sources` (`127.0.0.1`, `127.0.0.2`, …).
pub struct Fleet {
    pub clients: Vec<Mutex<Option<Client>>>,
    pub configs: Vec<Arc<rustls::ClientConfig>>,
    pub addrs: Vec<SocketAddr>,
    sources: Vec<IpAddr>,
}

impl Fleet {
    pub fn new(agents: &Agents, addr: SocketAddr, sources: usize) -> Arc<Self> {
        Self::spread(agents, &[addr], sources)
    }

    /// The agents spread round-robin across `addrs`, and across `sources` loopback addresses
    /// to connect from.
    pub fn spread(agents: &Agents, addrs: &[SocketAddr], sources: usize) -> Arc<Self> {
        assert!(!addrs.is_empty(), "a fleet needs a master");
        Arc::new(Self {
            clients: agents.configs.iter().map(|_| Mutex::new(None)).collect(),
            configs: agents.configs.clone(),
            addrs: addrs.to_vec(),
            sources: loopback_sources(sources),
        })
    }

    /// The master agent `agent` reports to.
    pub fn addr_of(&self, agent: usize) -> SocketAddr {
        self.addrs[agent % self.addrs.len()]
    }

    /// Opens agent `agent`'s connection: TCP from its source address, then the TLS handshake.
    pub async fn connect(&self, agent: usize) -> anyhow::Result<Client> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        // Port 0: the kernel picks a free ephemeral port of this source address.
        socket.bind(SocketAddr::new(self.sources[agent % self.sources.len()], 0))?;
        let tcp = socket.connect(self.addr_of(agent)).await?;
        Client::over(tcp, self.configs[agent].clone()).await
    }

    /// One POST of `payload` to `path` on agent `agent`'s kept-alive connection (opened first
    /// if need be): the reply's body if it was a 200, else `None` (and the connection dropped).
    pub async fn post(&self, agent: usize, path: &str, payload: String) -> Option<String> {
        let mut slot = self.clients[agent].lock().await;
        if slot.as_ref().is_none_or(|c| c.is_closed()) {
            *slot = self.connect(agent).await.ok();
        }
        let reply = match slot.as_mut() {
            Some(client) => client.request("POST", path, payload).await.ok(),
            None => None,
        };
        match reply {
            Some(r) if r.status == 200 => Some(r.body),
            _ => {
                *slot = None;
                None
            }
        }
    }
}

/// How many ephemeral ports the kernel hands out (`net.ipv4.ip_local_port_range`): the
/// most connections one source address can open to one master port.
pub fn ephemeral_ports() -> u64 {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .expect("/proc/sys/net/ipv4/ip_local_port_range");
    let bounds: Vec<u64> = range
        .split_whitespace()
        .map(|b| b.parse().expect("ip_local_port_range: two numbers"))
        .collect();
    bounds[1] - bounds[0] + 1
}

/// `127.0.0.1` to `127.0.0.N`: all of `127.0.0.0/8` is loopback on Linux, so each can be
/// bound without configuration, and each has its own ephemeral ports towards a master port.
pub fn loopback_sources(n: usize) -> Vec<IpAddr> {
    assert!(
        (1..=254).contains(&n),
        "--source-addresses: 1 to 254 (127.0.0.1 to 127.0.0.254)"
    );
    (1..=n as u8)
        .map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .collect()
}

/// The tasks of agent `agent` in report `generation` (churn bumps one task per generation),
/// as a JSON array.
pub fn report_body(agent: usize, tasks: usize, generation: usize) -> String {
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

#[derive(Default)]
pub struct PhaseResult {
    pub latencies: Vec<Duration>,
    pub errors: usize,
    pub elapsed: Duration,
    /// Each agent's reply body (empty after an error), when kept.
    pub replies: Vec<(usize, String)>,
}

/// Sends one POST to `path` per agent in `agents`, `concurrency` at a time, each on the
/// agent's kept-alive connection (opened first if need be); a reply other than 200 is an error.
pub async fn run_phase(
    fleet: &Arc<Fleet>,
    agents: std::ops::Range<usize>,
    concurrency: usize,
    path: &'static str,
    keep_replies: bool,
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
                match fleet.post(agent, path, payload).await {
                    Some(body) => {
                        result.latencies.push(t0.elapsed());
                        if keep_replies {
                            result.replies.push((agent, body));
                        }
                    }
                    None => result.errors += 1,
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
        total.replies.extend(r.replies);
    }
    total.elapsed = started.elapsed();
    total
}

/// Opens every agent's connection (TCP and the TLS handshake, no request), `concurrency` at
/// a time; returns the connect times and the failures.
pub async fn connect_all(fleet: &Arc<Fleet>, concurrency: usize) -> PhaseResult {
    let next = Arc::new(AtomicUsize::new(0));
    let first_error = Arc::new(std::sync::Once::new());
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (fleet, next, first_error) = (fleet.clone(), next.clone(), first_error.clone());
        workers.push(tokio::spawn(async move {
            let mut result = PhaseResult::default();
            loop {
                let agent = next.fetch_add(1, Ordering::Relaxed);
                if agent >= fleet.clients.len() {
                    break;
                }
                let t0 = Instant::now();
                match fleet.connect(agent).await {
                    Ok(client) => {
                        result.latencies.push(t0.elapsed());
                        *fleet.clients[agent].lock().await = Some(client);
                    }
                    Err(e) => {
                        first_error.call_once(|| eprintln!("agent {agent} did not connect: {e:#}"));
                        result.errors += 1;
                    }
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
