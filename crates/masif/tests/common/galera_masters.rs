//! Masters as real processes for the Galera tests, so that SIGKILL is real: the test binary
//! runs itself again as a master (its ignored `master_process` test, configured by a
//! `master.yml` it is given), as the `masif-master` binary does (`masif_master::run` until
//! SIGTERM), with its log lines collected.

#![allow(clippy::disallowed_methods)] // test fixture: runs masters as processes, signals them

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use masif_pki::TlsFiles;

/// The environment variable that makes the test binary's `master_process` run a master.
const CONFIG_VAR: &str = "MASIF_TEST_MASTER_CONFIG";

/// The certificate name of the masters (they share one certificate, as behind a balancer).
pub const MASTER_CN: &str = "master.galera.test";

/// The body of the test binary's ignored `master_process` test: a master as the
/// `masif-master` binary runs it, configured by the file in `MASIF_TEST_MASTER_CONFIG`.
pub fn master_process_main() {
    let Ok(path) = std::env::var(CONFIG_VAR) else {
        panic!("{CONFIG_VAR} is unset: this is a master process the Galera tests start");
    };
    let path = PathBuf::from(path);
    let config: masif_master::MasterConfig =
        masif_daemon::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    masif_daemon::logging::init(
        config.log_level.directive(),
        masif_daemon::logging::Output::Stdout,
    );
    let result = masif_daemon::shutdown::run_until_signal(
        tokio::runtime::Builder::new_multi_thread(),
        |shutdown| masif_master::run(config, shutdown),
    );
    if let Err(e) = result {
        tracing::error!("{e:#}");
        panic!("master: {e:#}");
    }
}

/// A master process: its addresses and what it logged.
pub struct MasterProcess {
    pub name: String,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
}

impl MasterProcess {
    /// Starts a master named `name` serving with `files` on the database `db_urls` (one:
    /// `db.url`, several: `db.urls`), and returns once it accepts connections.
    pub async fn start(dir: &Path, name: &str, files: &TlsFiles, db_urls: &[String]) -> Self {
        let addr = free_addr();
        let metrics = free_addr();
        let db = if let [url] = db_urls {
            format!("db:\n  url: {url:?}\n")
        } else {
            let list: Vec<String> = db_urls.iter().map(|u| format!("{u:?}")).collect();
            format!("db:\n  urls: [{}]\n", list.join(", "))
        };
        let config = dir.join(format!("{name}.yml"));
        std::fs::write(
            &config,
            format!(
                "api:\n  listen: \"{addr}\"\n  name: {MASTER_CN}\n  max_reports_per_minute: 6000\n  max_handshakes_per_source: 1000\n\
                 tls:\n  cert: {:?}\n  key: {:?}\n  ca: {:?}\n{db}\
                 metrics_listen: \"{metrics}\"\nlog:\n  level: info\n",
                files.cert, files.key, files.ca
            ),
        )
        .unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "master_process",
                "--include-ignored",
                "--nocapture",
            ])
            .env(CONFIG_VAR, &config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting a master process");
        let log = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            let name = name.to_owned();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    eprintln!("{name}> {line}");
                    log.lock().unwrap().push(line);
                }
            });
        }
        let mut master = Self {
            name: name.to_owned(),
            addr,
            metrics,
            child: Some(child),
            log,
        };
        master.wait_until_listening().await;
        master
    }

    async fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while tokio::net::TcpStream::connect(self.addr).await.is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{} exited ({status}): {:?}", self.name, self.log_lines());
            }
            assert!(Instant::now() < deadline, "{} never listened", self.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `host:port` as an agent's configuration names it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Kills the master with SIGKILL (no shutdown: connections cut, requests in flight lost)
    /// and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Stops the master with SIGTERM, as systemd would, and checks that it exits cleanly.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let status = child.wait().unwrap();
        assert!(status.success(), "{} exited with {status}", self.name);
    }

    /// Every line it has logged so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The value of the counter `name` on its metrics listener.
    pub async fn metric(&self, name: &str) -> f64 {
        let answer = masif_testkit::scrape::request(self.metrics, "GET", "/metrics").await;
        assert_eq!(answer.status, 200, "{answer:?}");
        let metrics = masif_testkit::scrape::Metrics::parse(&answer.body).unwrap();
        metrics.value(name, &[])
    }
}

impl Drop for MasterProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback address nobody listens on (bound and released).
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
