//! The whole system in one test process: a CA and the master's certificate, a database
//! (a fresh MariaDB database or an SQLite file), the real master over mutual TLS, the real UI
//! on plain HTTP with one user, and real agents (`masif_agent::run`, configured from a YAML
//! file) on sandbox apt roots with real apt-get and dpkg.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use masif_pki::TlsFiles;
use masif_proto::{Action, AgentName, PackageName, Version};
use masif_store::{ApprovalScope, Store, TaskKey};
use masif_testkit::db::TestDatabase;
use masif_testkit::pki::{EphemeralCa, Usage};
use masif_testkit::sandbox::{standard_packages, Sandbox, Stage};
use tokio::sync::oneshot;

pub const MASTER_CN: &str = "master.e2e.test";

/// The master side: a CA, the master's certificate, a fresh database, the master itself.
pub struct World {
    pub dir: tempfile::TempDir,
    pub ca: EphemeralCa,
    master_files: TlsFiles,
    _db: Option<TestDatabase>,
    pub db_url: String,
    pub store: Arc<dyn Store>,
    pub addr: SocketAddr,
    options: Options,
    master: Option<Served>,
    /// More masters on the same database ([`World::serve_another`]), with their addresses.
    others: Vec<(SocketAddr, Served)>,
    /// The masters' clock and roll-out settings (defaults: the system clock).
    controls: Option<(masif_master::Clock, masif_master::RolloutSettings)>,
}

/// A master serving: how to stop it, and its task.
type Served = (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
);

/// Where the shared database lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Mysql,
    Sqlite,
}

/// How the world is set up.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub backend: Backend,
    /// Whether the master serves protocol v2.
    pub v2: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            backend: Backend::Mysql,
            v2: true,
        }
    }
}

impl World {
    /// Everything, with the master listening.
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// Everything as `options` say, with the master listening.
    pub async fn start_with(options: Options) -> Self {
        let mut w = Self::without_master_with(options).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        w.addr = listener.local_addr().unwrap();
        w.serve(listener);
        w
    }

    /// Everything as `options` say, the master with `clock` and `rollout` settings.
    pub async fn start_controlled(
        options: Options,
        clock: masif_master::Clock,
        rollout: masif_master::RolloutSettings,
    ) -> Self {
        let mut w = Self::without_master_with(options).await;
        w.controls = Some((clock, rollout));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        w.addr = listener.local_addr().unwrap();
        w.serve(listener);
        w
    }

    /// Another master with the same settings on the same database (its own store), as a
    /// second machine would run it; returns its address.
    pub async fn serve_another(&mut self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let store = masif_store::open(&self.db_url.parse().unwrap())
            .await
            .unwrap();
        let served = self.spawn_master(store, listener);
        self.others.push((addr, served));
        addr
    }

    /// Ends the master at `addr` (the world's or another) as a crash looks from the network:
    /// its serving task dropped where it stands, listener and every connection (a held
    /// report's too) closed without an answer.
    pub async fn kill_master_at(&mut self, addr: SocketAddr) {
        let (_, task) = if addr == self.addr {
            self.master.take().expect("the world's master is running")
        } else {
            let i = self.others.iter().position(|(a, _)| *a == addr);
            self.others.remove(i.expect("a master at that address")).1
        };
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
    }

    /// Everything but the master: it is down, its address known.
    pub async fn without_master() -> Self {
        Self::without_master_with(Options::default()).await
    }

    async fn without_master_with(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = EphemeralCa::new("Masif E2E CA").unwrap();
        let cert = ca.issue(MASTER_CN, Usage::Server).unwrap();
        let master_files = ca
            .write_files(&dir.path().join("master"), &cert, None)
            .unwrap();
        // Unchanged reports write `last_seen` when it is a second old (not 60 s), so that the
        // UI's offline mark can be tested in seconds.
        let (db, db_url, store): (_, _, Arc<dyn Store>) = match options.backend {
            Backend::Mysql => {
                let db = TestDatabase::create("agent_e2e").await;
                let url = format!("{}?last_seen_interval=1", db.url());
                let store = masif_store::open(&url.parse().unwrap()).await.unwrap();
                (Some(db), url, store)
            }
            Backend::Sqlite => {
                let path = dir.path().join("masif.db");
                let store = masif_store::sqlite::SqliteStore::open(&path).await.unwrap();
                store.set_last_seen_interval(Duration::from_secs(1));
                (
                    None,
                    format!("sqlite://{}", path.display()),
                    Arc::new(store),
                )
            }
        };
        // A free port, released again: nobody answers there until `serve`.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        Self {
            dir,
            ca,
            master_files,
            _db: db,
            db_url,
            store,
            addr,
            options,
            master: None,
            others: Vec::new(),
            controls: None,
        }
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let served = self.spawn_master(self.store.clone(), listener);
        self.master = Some(served);
    }

    fn spawn_master(&self, store: Arc<dyn Store>, listener: tokio::net::TcpListener) -> Served {
        let mut settings = masif_master::ServeSettings {
            v2: self.options.v2,
            // Test agents report every second, sixty times as often as real ones.
            max_reports_per_minute: 600,
            ..masif_master::ServeSettings::new(self.master_files.clone())
        };
        if let Some((clock, rollout)) = &self.controls {
            settings.clock = clock.clone();
            settings.rollout = *rollout;
        }
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(masif_master::serve_with_listener(
            settings,
            store,
            listener,
            async move {
                let _ = rx.await;
            },
        ));
        (tx, task)
    }

    /// Brings the master up on the address agents were given.
    pub async fn bring_master_up(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    /// Stops the master and starts it again on the same address and database, as a restart
    /// of its service would (agents reconnect by themselves).
    pub async fn restart_master(&mut self) {
        let (tx, task) = self.master.take().expect("a master is running");
        let _ = tx.send(());
        task.await.unwrap().unwrap();
        self.bring_master_up().await;
    }

    pub async fn stop(mut self) {
        let others = self.others.drain(..).map(|(_, served)| served);
        for (tx, task) in self.master.take().into_iter().chain(others) {
            let _ = tx.send(());
            task.await.unwrap().unwrap();
        }
    }

    /// Approves (action, target version) pairs of `package`, as the UI's "approve selection".
    pub async fn approve(
        &self,
        package: &str,
        rows: &[(Action, Option<&str>)],
        scope: ApprovalScope,
    ) {
        let keys: Vec<TaskKey> = rows
            .iter()
            .map(|(action, to)| TaskKey {
                package: PackageName::new(package).unwrap(),
                action: *action,
                to_version: to.map(|v| Version::new(v).unwrap()),
            })
            .collect();
        self.store
            .approve(&keys, &scope, "e2e-admin")
            .await
            .unwrap();
    }

    /// Approves the update of `package` to `version` (and its configure step) for everyone.
    pub async fn approve_update(&self, package: &str, version: &str) {
        self.approve(
            package,
            &[
                (Action::Update, Some(version)),
                (Action::Configure, Some(version)),
            ],
            ApprovalScope::AllAgents,
        )
        .await;
    }

    /// What the master holds as `agent`'s pending tasks, as "action package to_version".
    pub async fn pending(&self, agent: &str) -> Vec<String> {
        let name = AgentName::new(agent).unwrap();
        let Some(detail) = self.store.agent_detail(&name).await.unwrap() else {
            return Vec::new();
        };
        let mut rows: Vec<String> = detail
            .pending
            .iter()
            .map(|t| {
                format!(
                    "{} {} {}",
                    t.action(),
                    t.package(),
                    t.to_version().map(|v| v.as_str()).unwrap_or("-")
                )
            })
            .collect();
        rows.sort();
        rows
    }
}

/// Where an agent reports and the tags its configuration gives it.
#[derive(Debug, Clone, Copy)]
pub struct Setup<'a> {
    /// `master.hosts`: the agent uses one and moves to the next when it fails.
    pub masters: &'a [SocketAddr],
    pub tags: &'a [&'a str],
    /// `apt.path`, if not the host's `/usr/bin/apt-get` (e.g. an [`apt_get_wrapper`]).
    pub apt_get: Option<&'a Path>,
}

/// Writes an `apt-get` for an agent's `apt.path` into `dir`: a shell script that runs
/// `before` (the agent's arguments in `"$@"`, its environment, e.g. the sandbox's
/// `APT_CONFIG`) and then the host's apt-get with the same arguments. The agent runs apt-mark
/// and apt-config from beside its apt-get: they link to the host's. Returns the script.
pub fn apt_get_wrapper(dir: &Path, before: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    for program in ["apt-mark", "apt-config"] {
        std::os::unix::fs::symlink(Path::new("/usr/bin").join(program), dir.join(program)).unwrap();
    }
    let script = dir.join("apt-get");
    std::fs::write(
        &script,
        format!("#!/bin/sh\n{before}\nexec /usr/bin/apt-get \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// One agent: its certificate, sandbox, configuration file and monitoring socket.
pub struct TestAgent {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub sandbox: Sandbox,
    pub socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<masif_agent::Result<()>>>,
}

impl TestAgent {
    pub async fn start(world: &World, name: &str) -> Self {
        Self::start_expecting(world, name, MASTER_CN).await
    }

    pub async fn start_expecting(world: &World, name: &str, master_cn: &str) -> Self {
        Self::start_configured(world, name, master_cn, "{ check: 1, report: 1, retry: 1 }").await
    }

    /// An agent with `intervals` (the YAML of `interval:`), expecting `master_cn`.
    pub async fn start_configured(
        world: &World,
        name: &str,
        master_cn: &str,
        intervals: &str,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::create(&dir.path().join("sandbox"), &standard_packages())
            .await
            .unwrap();
        sandbox.publish(Stage::V2).await.unwrap();
        Self::start_on(world, name, master_cn, intervals, dir, sandbox).await
    }

    /// An agent on `sandbox` (prepared by the caller, inside `dir`), reading the sandbox's
    /// reboot-required file.
    pub async fn start_on(
        world: &World,
        name: &str,
        master_cn: &str,
        intervals: &str,
        dir: tempfile::TempDir,
        sandbox: Sandbox,
    ) -> Self {
        let setup = Setup {
            masters: &[world.addr],
            tags: &[],
            apt_get: None,
        };
        Self::start_set_up(world, name, master_cn, intervals, dir, sandbox, setup).await
    }

    /// [`TestAgent::start_on`] with the masters at `setup.masters` and `setup.tags`; the first
    /// check at once (no jitter).
    pub async fn start_set_up(
        world: &World,
        name: &str,
        master_cn: &str,
        intervals: &str,
        dir: tempfile::TempDir,
        sandbox: Sandbox,
        setup: Setup<'_>,
    ) -> Self {
        let issued = world.ca.issue(name, Usage::Client).unwrap();
        let tls = world
            .ca
            .write_files(&world.dir.path().join(name), &issued, None)
            .unwrap();
        let socket = dir.path().join("run/agent.sock");
        let env: Vec<String> = sandbox
            .apt_env()
            .iter()
            .map(|(k, v)| format!("{k}: {v:?}"))
            .collect();
        let yaml = format!(
            r#"# written by agent_e2e.rs
interval: {intervals}
master:
  hosts: [{masters}]
  cn: "{master_cn}"
tls:
  cert: {cert}
  key: {key}
  ca: {ca}
apt:
  path: {apt_get}
  options: []
  env: {{ {env} }}
socket: {socket}
reboot_required_file: {reboot}
tags: [{tags}]
log: {{ level: debug }}
"#,
            masters = setup
                .masters
                .iter()
                .map(|m| format!("\"{m}\""))
                .collect::<Vec<_>>()
                .join(", "),
            tags = setup.tags.join(", "),
            apt_get = setup
                .apt_get
                .unwrap_or(Path::new("/usr/bin/apt-get"))
                .display(),
            cert = tls.cert.display(),
            key = tls.key.display(),
            ca = tls.ca.display(),
            env = env.join(", "),
            socket = socket.display(),
            reboot = sandbox.reboot_required_file().display(),
        );
        let config_file = dir.path().join("agent.yml");
        std::fs::write(&config_file, yaml).unwrap();
        let mut config = masif_agent::AgentConfig::load(&config_file).unwrap();
        config.jitter = false;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(masif_agent::run(config, async move {
            let _ = rx.await;
        }));
        let agent = Self {
            name: name.into(),
            dir,
            sandbox,
            socket,
            stop: Some(tx),
            task: Some(task),
        };
        let socket = agent.socket.clone();
        eventually("the monitoring socket", || {
            let socket = socket.clone();
            async move { masif_agent::api::query(&socket, "/v1/status").await.is_ok() }
        })
        .await;
        agent
    }

    pub async fn status(&self) -> masif_agent::api::Json {
        masif_agent::api::query(&self.socket, "/v1/status")
            .await
            .unwrap()
    }

    pub async fn version(&self, package: &str) -> Option<String> {
        self.sandbox.installed_version(package).await.unwrap()
    }

    pub async fn reports(&self) -> u64 {
        self.status().await["reports"].as_u64().unwrap()
    }

    /// Waits for `n` more successful reports (each one a full cycle of the loop).
    pub async fn cycles(&self, n: u64) {
        let start = self.reports().await;
        eventually("more reports", || async {
            self.reports().await >= start + n
        })
        .await;
    }

    pub async fn wait_version(&self, package: &str, version: &str) {
        eventually(&format!("{} {package} {version}", self.name), || async {
            self.version(package).await.as_deref() == Some(version)
        })
        .await;
    }

    /// Ends the agent as a crash would: its loop is dropped where it stands (no release, no
    /// renewal, its connection closed); apt and dpkg started by it are left running, in the
    /// sandbox returned with its directory.
    pub fn kill(mut self) -> (tempfile::TempDir, Sandbox) {
        self.task.take().unwrap().abort();
        (self.dir, self.sandbox)
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
        assert!(!self.socket.exists(), "socket removed");
        drop(self.dir);
    }
}

/// Polls `check` until it holds (a generous deadline against hangs under load, not a
/// timing assertion).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..1800 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never happened: {what}");
}
