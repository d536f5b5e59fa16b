//! Agent failover between masters, end to end: real agents (`masif_agent::run` from a YAML
//! file with `master.hosts`) on sandbox apt roots, two real masters over mutual TLS sharing one
//! fresh MariaDB database, approvals written as the UI writes them. The master holding an
//! agent's report dies (its task dropped: listener and connections closed without an answer)
//! and the report is answered by the other one, approval included; a master down at start is
//! skipped; with none up the status names both, and the agent reports once one comes up.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::world::{eventually, World, MASTER_CN};
use masif_pki::TlsFiles;
use masif_testkit::pki::Usage;
use masif_testkit::sandbox::{standard_packages, Sandbox, Stage};
use tokio::sync::oneshot;

/// One master on the world's database, stopped or killed on its own.
struct Master {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Master {
    async fn start(world: &World, files: &TlsFiles) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(world, files, listener).await
    }

    async fn start_at(world: &World, files: &TlsFiles, addr: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        Self::serve(world, files, listener).await
    }

    async fn serve(world: &World, files: &TlsFiles, listener: tokio::net::TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let store = masif_store::open(&world.db_url.parse().unwrap())
            .await
            .unwrap();
        let settings = masif_master::ServeSettings {
            max_reports_per_minute: 600,
            ..masif_master::ServeSettings::new(files.clone())
        };
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(masif_master::serve_with_listener(
            settings,
            store,
            listener,
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// As a crash looks from the network: the serving task is dropped where it stands, its
    /// listener and every connection (a held report's too) closed without an answer.
    async fn kill(self) {
        self.task.abort();
        assert!(self.task.await.unwrap_err().is_cancelled());
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

/// The masters' certificate, for `MASTER_CN`, from the world's CA.
fn master_files(world: &World) -> TlsFiles {
    let issued = world.ca.issue(MASTER_CN, Usage::Server).unwrap();
    world
        .ca
        .write_files(&world.dir.path().join("masters"), &issued, None)
        .unwrap()
}

/// An agent listing `masters`, checking and reporting every `secs` seconds, retrying after
/// one.
struct Agent {
    socket: PathBuf,
    sandbox: Sandbox,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<masif_agent::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Agent {
    async fn start(world: &World, name: &str, masters: &[SocketAddr], secs: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::create(&dir.path().join("sandbox"), &standard_packages())
            .await
            .unwrap();
        sandbox.publish(Stage::V2).await.unwrap();
        let issued = world.ca.issue(name, Usage::Client).unwrap();
        let tls = world
            .ca
            .write_files(&world.dir.path().join(name), &issued, None)
            .unwrap();
        let socket = dir.path().join("agent.sock");
        let hosts: Vec<String> = masters.iter().map(|m| format!("\"{m}\"")).collect();
        let env: Vec<String> = sandbox
            .apt_env()
            .iter()
            .map(|(k, v)| format!("{k}: {v:?}"))
            .collect();
        let yaml = format!(
            "interval: {{ check: {secs}, report: {secs}, retry: 1 }}\n\
             master:\n  hosts: [{hosts}]\n  cn: \"{MASTER_CN}\"\n\
             tls: {{ cert: {cert}, key: {key}, ca: {ca} }}\n\
             apt: {{ env: {{ {env} }} }}\n\
             socket: {socket}\n\
             reboot_required_file: {reboot}\n\
             log: {{ level: debug }}\n",
            hosts = hosts.join(", "),
            cert = tls.cert.display(),
            key = tls.key.display(),
            ca = tls.ca.display(),
            env = env.join(", "),
            socket = socket.display(),
            reboot = sandbox.reboot_required_file().display(),
        );
        let file = dir.path().join("agent.yml");
        std::fs::write(&file, yaml).unwrap();
        let mut config = masif_agent::AgentConfig::load(&file).unwrap();
        // The first report at once, not within a random part of the report interval.
        config.jitter = false;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(masif_agent::run(config, async move {
            let _ = stopped.await;
        }));
        let agent = Self {
            socket,
            sandbox,
            stop,
            task,
            _dir: dir,
        };
        eventually("the monitoring socket", || async {
            masif_agent::api::query(&agent.socket, "/v1/status")
                .await
                .is_ok()
        })
        .await;
        agent
    }

    async fn status(&self) -> masif_agent::api::Json {
        masif_agent::api::query(&self.socket, "/v1/status")
            .await
            .unwrap()
    }

    async fn version(&self, package: &str) -> Option<String> {
        self.sandbox.installed_version(package).await.unwrap()
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_report_held_by_a_master_that_dies_is_answered_by_the_other_with_the_approval() {
    let world = World::without_master().await;
    let files = master_files(&world);
    let masters = [
        Master::start(&world, &files).await,
        Master::start(&world, &files).await,
    ];
    let addrs = [masters[0].addr, masters[1].addr];
    let name = "failover-held.e2e.test";
    // Checking and reporting once a minute: the report is held for most of a minute, so an
    // answer within seconds can only come from the held report.
    let agent = Agent::start(&world, name, &addrs, 60).await;
    eventually("a report held with alpha's update pending", || async {
        let status = agent.status().await;
        status["activity"] == "waiting_for_approval"
            && world
                .pending(name)
                .await
                .contains(&"update alpha 2.0".to_string())
    })
    .await;
    let status = agent.status().await;
    let holder: SocketAddr = status["master"].as_str().unwrap().parse().unwrap();
    let reports = status["reports"].as_u64().unwrap();
    let [first, second] = masters;
    let (dying, other) = if holder == first.addr {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(holder, dying.addr);
    let killed = Instant::now();
    dying.kill().await;
    world.approve_update("alpha", "2.0").await;
    eventually("alpha 2.0, approved through the other master", || async {
        agent.version("alpha").await.as_deref() == Some("2.0")
    })
    .await;
    assert!(
        killed.elapsed() < Duration::from_secs(40),
        "the report was re-sent at once, not after the report interval: {:?}",
        killed.elapsed()
    );
    let status = agent.status().await;
    assert_eq!(status["master"], other.addr.to_string(), "{status}");
    assert!(status["reports"].as_u64().unwrap() > reports, "{status}");
    assert!(
        status["last_error"].is_null(),
        "no request failed: {status}"
    );
    let pending = world.pending(name).await;
    assert!(
        !pending.iter().any(|t| t.contains(" alpha ")),
        "{pending:?}"
    );
    agent.stop().await;
    other.stop().await;
}

#[tokio::test]
async fn a_master_down_at_start_is_skipped_and_with_none_up_both_are_named() {
    let world = World::without_master().await;
    let files = master_files(&world);
    // Nobody listens at the world's address (nor at `later`, until a master starts there).
    let down = world.addr;
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let later = probe.local_addr().unwrap();
    drop(probe);
    let name = "failover-none.e2e.test";
    let agent = Agent::start(&world, name, &[down, later], 1).await;
    eventually("a failed report naming both masters", || async {
        let status = agent.status().await;
        status["last_error"]["message"].as_str().is_some_and(|m| {
            m.starts_with("report: no master answered: ")
                && m.contains(&down.to_string())
                && m.contains(&later.to_string())
        })
    })
    .await;
    assert_eq!(agent.status().await["reports"], 0);

    let master = Master::start_at(&world, &files, later).await;
    eventually("reports through the master that came up", || async {
        agent.status().await["reports"].as_u64().unwrap() >= 2
    })
    .await;
    let status = agent.status().await;
    assert_eq!(status["master"], later.to_string(), "{status}");
    assert!(world
        .pending(name)
        .await
        .contains(&"update alpha 2.0".to_string()));
    // And stays on it.
    let reports = status["reports"].as_u64().unwrap();
    eventually("two more reports", || async {
        agent.status().await["reports"].as_u64().unwrap() >= reports + 2
    })
    .await;
    assert_eq!(agent.status().await["master"], later.to_string());
    agent.stop().await;
    master.stop().await;
}
