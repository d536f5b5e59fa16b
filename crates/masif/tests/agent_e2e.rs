//! End to end: the real agent (`masif_agent::run`, configured from a YAML file) against real
//! apt-get/dpkg in sandbox roots, the real master over mutual TLS with certificates made here,
//! and the real MariaDB, with approvals written the way the UI writes them
//! (`masif_store::Admin::approve`). Cases (a)–(g) of issue 3, plus a master certificate that
//! does not match `master.cn` and an approval revoked in the UI.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use masif_pki::TlsFiles;
use masif_proto::{Action, AgentName, PackageName, Version};
use masif_store::{ApprovalScope, Page, Store, TaskKey};
use masif_testkit::db::TestDatabase;
use masif_testkit::pki::{EphemeralCa, Usage};
use masif_testkit::sandbox::{standard_packages, Sandbox, SandboxLock, Stage};
use tokio::sync::oneshot;

const MASTER_CN: &str = "master.e2e.test";

/// The master side: a CA, the master's certificate, a fresh database, the master itself.
struct World {
    dir: tempfile::TempDir,
    ca: EphemeralCa,
    master_files: TlsFiles,
    _db: TestDatabase,
    store: Arc<dyn Store>,
    addr: SocketAddr,
    master: Option<(
        oneshot::Sender<()>,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    )>,
}

impl World {
    /// Everything, with the master listening.
    async fn start() -> Self {
        let mut w = Self::without_master().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        w.addr = listener.local_addr().unwrap();
        w.serve(listener);
        w
    }

    /// Everything but the master: it is down, its address known.
    async fn without_master() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = EphemeralCa::new("Masif E2E CA").unwrap();
        let cert = ca.issue(MASTER_CN, Usage::Server).unwrap();
        let master_files = ca
            .write_files(&dir.path().join("master"), &cert, None)
            .unwrap();
        let db = TestDatabase::create("agent_e2e").await;
        let store = masif_store::open(&db.url().parse().unwrap()).await.unwrap();
        // A free port, released again: nobody answers there until `serve`.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        Self {
            dir,
            ca,
            master_files,
            _db: db,
            store,
            addr,
            master: None,
        }
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let settings = masif_master::ServeSettings::new(self.master_files.clone());
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(masif_master::serve_with_listener(
            settings,
            self.store.clone(),
            listener,
            async move {
                let _ = rx.await;
            },
        ));
        self.master = Some((tx, task));
    }

    /// Brings the master up on the address agents were given.
    async fn bring_master_up(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    async fn stop(mut self) {
        if let Some((tx, task)) = self.master.take() {
            let _ = tx.send(());
            task.await.unwrap().unwrap();
        }
    }

    /// Approves (action, target version) pairs of `package`, as the UI's "approve selection".
    async fn approve(&self, package: &str, rows: &[(Action, Option<&str>)], scope: ApprovalScope) {
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
    async fn approve_update(&self, package: &str, version: &str) {
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
    async fn pending(&self, agent: &str) -> Vec<String> {
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

/// One agent: its certificate, sandbox, configuration file and monitoring socket.
struct TestAgent {
    name: String,
    dir: tempfile::TempDir,
    sandbox: Sandbox,
    socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<masif_agent::Result<()>>>,
}

impl TestAgent {
    async fn start(world: &World, name: &str) -> Self {
        Self::start_expecting(world, name, MASTER_CN).await
    }

    async fn start_expecting(world: &World, name: &str, master_cn: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let issued = world.ca.issue(name, Usage::Client).unwrap();
        let tls = world
            .ca
            .write_files(&world.dir.path().join(name), &issued, None)
            .unwrap();
        let sandbox = Sandbox::create(&dir.path().join("sandbox"), &standard_packages())
            .await
            .unwrap();
        sandbox.publish(Stage::V2).await.unwrap();
        let socket = dir.path().join("run/agent.sock");
        let env: Vec<String> = sandbox
            .apt_env()
            .iter()
            .map(|(k, v)| format!("{k}: {v:?}"))
            .collect();
        let yaml = format!(
            r#"# written by agent_e2e.rs
interval: {{ check: 1, report: 1, retry: 1 }}
master:
  host: "{addr}"
  cn: "{master_cn}"
tls:
  cert: {cert}
  key: {key}
  ca: {ca}
apt:
  path: /usr/bin/apt-get
  options: []
  env: {{ {env} }}
socket: {socket}
log: {{ level: debug }}
"#,
            addr = world.addr,
            cert = tls.cert.display(),
            key = tls.key.display(),
            ca = tls.ca.display(),
            env = env.join(", "),
            socket = socket.display(),
        );
        let config_file = dir.path().join("agent.yml");
        std::fs::write(&config_file, yaml).unwrap();
        let config = masif_agent::AgentConfig::load(&config_file).unwrap();
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

    async fn status(&self) -> masif_agent::api::Json {
        masif_agent::api::query(&self.socket, "/v1/status")
            .await
            .unwrap()
    }

    async fn version(&self, package: &str) -> Option<String> {
        self.sandbox.installed_version(package).await.unwrap()
    }

    async fn reports(&self) -> u64 {
        self.status().await["reports"].as_u64().unwrap()
    }

    /// Waits for `n` more successful reports (each one a full cycle of the loop).
    async fn cycles(&self, n: u64) {
        let start = self.reports().await;
        eventually("more reports", || async {
            self.reports().await >= start + n
        })
        .await;
    }

    async fn wait_version(&self, package: &str, version: &str) {
        eventually(&format!("{} {package} {version}", self.name), || async {
            self.version(package).await.as_deref() == Some(version)
        })
        .await;
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
        assert!(!self.socket.exists(), "socket removed");
        drop(self.dir);
    }
}

/// Polls `check` until it holds (a generous deadline against hangs under load, not a
/// timing assertion).
async fn eventually<F, Fut>(what: &str, mut check: F)
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

fn host_dpkg_knows_no_fixture() {
    let status = std::fs::read_to_string("/var/lib/dpkg/status").unwrap();
    for name in ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "slow"] {
        assert!(
            !status.contains(&format!("\nPackage: {name}\n")),
            "the host's dpkg database has {name}"
        );
    }
}

#[tokio::test]
async fn a_reported_update_is_installed_only_after_approval() {
    let world = World::start().await;
    let agent = TestAgent::start(&world, "agent-a.e2e.test").await;
    eventually("alpha pending at the master", || async {
        world
            .pending("agent-a.e2e.test")
            .await
            .contains(&"update alpha 2.0".to_string())
    })
    .await;
    assert_eq!(world.pending("agent-a.e2e.test").await.len(), 11);
    let status = agent.status().await;
    assert_eq!(status["agent"], "agent-a.e2e.test");
    assert_eq!(status["master"], world.addr.to_string());
    agent.cycles(2).await;
    assert_eq!(agent.version("alpha").await.as_deref(), Some("1.0"));

    world.approve_update("alpha", "2.0").await;
    agent.wait_version("alpha", "2.0").await;
    agent.cycles(1).await;
    for (package, version) in [
        ("beta", "1.0"),
        ("delta", "1.0"),
        ("epsilon", "1.0"),
        ("zeta", "1.0"),
    ] {
        assert_eq!(
            agent.version(package).await.as_deref(),
            Some(version),
            "{package}"
        );
    }
    let pending = world.pending("agent-a.e2e.test").await;
    assert!(
        !pending.iter().any(|t| t.contains(" alpha ")),
        "{pending:?}"
    );
    assert_eq!(pending.len(), 9, "{pending:?}");
    let load = masif_agent::api::query(&agent.socket, "/v1/load")
        .await
        .unwrap();
    assert!(load["update"][2].as_f64().unwrap() >= 1.0, "{load}");
    host_dpkg_knows_no_fixture();
    agent.stop().await;
    world.stop().await;
}

#[tokio::test]
async fn an_update_needing_a_new_package_waits_for_its_install_approval() {
    let world = World::start().await;
    let agent = TestAgent::start(&world, "agent-b.e2e.test").await;
    world.approve_update("beta", "2.0").await;
    agent.cycles(3).await;
    assert_eq!(agent.version("beta").await.as_deref(), Some("1.0"));
    assert_eq!(agent.version("gamma").await, None);
    let pending = world.pending("agent-b.e2e.test").await;
    assert!(
        pending.contains(&"install gamma 1.0".to_string()),
        "{pending:?}"
    );

    world
        .approve(
            "gamma",
            &[
                (Action::Install, Some("1.0")),
                (Action::Configure, Some("1.0")),
            ],
            ApprovalScope::AllAgents,
        )
        .await;
    agent.wait_version("beta", "2.0").await;
    assert_eq!(agent.version("gamma").await.as_deref(), Some("1.0"));
    assert_eq!(agent.version("alpha").await.as_deref(), Some("1.0"));
    agent.stop().await;
    world.stop().await;
}

#[tokio::test]
async fn an_update_removing_a_package_waits_for_the_removal_approval() {
    let world = World::start().await;
    let agent = TestAgent::start(&world, "agent-c.e2e.test").await;
    world.approve_update("delta", "2.0").await;
    agent.cycles(3).await;
    assert_eq!(agent.version("delta").await.as_deref(), Some("1.0"));
    assert_eq!(agent.version("epsilon").await.as_deref(), Some("1.0"));

    world
        .approve(
            "epsilon",
            &[(Action::Remove, None)],
            ApprovalScope::AllAgents,
        )
        .await;
    agent.wait_version("delta", "2.0").await;
    assert_eq!(agent.version("epsilon").await, None);
    agent.stop().await;
    world.stop().await;
}

#[tokio::test]
async fn a_failing_postinst_is_reported_and_other_packages_are_still_served() {
    let world = World::start().await;
    let agent = TestAgent::start(&world, "agent-d.e2e.test").await;
    world.approve_update("zeta", "2.0").await;
    eventually("zeta reported as failed", || async {
        let s = agent.status().await;
        s["failed_packages"]
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p == "zeta"))
    })
    .await;
    let status = agent.status().await;
    let error = status["last_error"]["message"].as_str().unwrap().to_owned();
    assert!(
        error.contains("zeta") && error.contains("post-installation script"),
        "{error}"
    );
    assert_eq!(
        agent
            .sandbox
            .package_state("zeta")
            .await
            .unwrap()
            .unwrap()
            .status,
        "iF"
    );

    world.approve_update("alpha", "2.0").await;
    agent.wait_version("alpha", "2.0").await;
    let load = masif_agent::api::query(&agent.socket, "/v1/load")
        .await
        .unwrap();
    assert!(load["error"][2].as_f64().unwrap() >= 1.0, "{load}");
    agent.stop().await;
    world.stop().await;
}

#[tokio::test]
async fn a_held_dpkg_lock_delays_the_upgrade_without_failing_it() {
    let world = World::start().await;
    let agent = TestAgent::start(&world, "agent-e.e2e.test").await;
    let lock = agent
        .sandbox
        .hold_lock(SandboxLock::DpkgFrontend)
        .await
        .unwrap();
    world.approve_update("alpha", "2.0").await;
    eventually("waiting for the lock", || async {
        agent.status().await["activity"] == "waiting_for_lock"
    })
    .await;
    assert_eq!(agent.version("alpha").await.as_deref(), Some("1.0"));
    lock.release().await;
    agent.wait_version("alpha", "2.0").await;
    let status = agent.status().await;
    assert!(status["last_error"].is_null(), "{status}");
    assert_eq!(status["failed_packages"].as_array().unwrap().len(), 0);
    agent.stop().await;
    world.stop().await;
}

#[tokio::test]
async fn an_approval_for_one_agent_upgrades_only_that_agent() {
    let world = World::start().await;
    let one = TestAgent::start(&world, "agent-f1.e2e.test").await;
    let two = TestAgent::start(&world, "agent-f2.e2e.test").await;
    for name in [&one.name, &two.name] {
        eventually("both agents known", || async {
            !world.pending(name).await.is_empty()
        })
        .await;
    }
    world
        .approve(
            "alpha",
            &[
                (Action::Update, Some("2.0")),
                (Action::Configure, Some("2.0")),
            ],
            ApprovalScope::Agents(vec![AgentName::new(&one.name).unwrap()]),
        )
        .await;
    one.wait_version("alpha", "2.0").await;
    two.cycles(3).await;
    assert_eq!(two.version("alpha").await.as_deref(), Some("1.0"));
    assert!(world
        .pending(&two.name)
        .await
        .contains(&"update alpha 2.0".to_string()));
    one.stop().await;
    two.stop().await;
    world.stop().await;
}

#[tokio::test]
async fn an_agent_started_while_the_master_is_down_catches_up() {
    let mut world = World::without_master().await;
    world.approve_update("alpha", "2.0").await;
    let agent = TestAgent::start(&world, "agent-g.e2e.test").await;
    eventually("a failed report", || async {
        let s = agent.status().await;
        s["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("connecting to the master"))
    })
    .await;
    assert!(agent.status().await["last_report"].is_null());
    assert_eq!(agent.version("alpha").await.as_deref(), Some("1.0"));

    world.bring_master_up().await;
    agent.wait_version("alpha", "2.0").await;
    assert!(!agent.status().await["last_report"].is_null());
    agent.stop().await;
    world.stop().await;
}

#[tokio::test]
async fn a_master_certificate_not_matching_master_cn_is_refused_clearly() {
    let world = World::start().await;
    let agent =
        TestAgent::start_expecting(&world, "agent-h.e2e.test", "other-master.e2e.test").await;
    eventually("a name mismatch error", || async {
        let s = agent.status().await;
        s["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not valid for \"other-master.e2e.test\" (master.cn)"))
    })
    .await;
    assert!(world.pending("agent-h.e2e.test").await.is_empty());
    agent.stop().await;
    world.stop().await;
}

#[tokio::test]
async fn an_approval_revoked_in_the_ui_is_no_longer_acted_on() {
    let world = World::start().await;
    let agent = TestAgent::start(&world, "agent-r.e2e.test").await;
    world.approve_update("beta", "2.0").await;
    agent.cycles(2).await;
    assert_eq!(agent.status().await["approved_tasks"], 2);
    let approvals = world.store.approvals(Page::default()).await.unwrap();
    for a in approvals.rows {
        assert!(world.store.revoke(a.id, "e2e-admin").await.unwrap());
    }
    agent.cycles(2).await;
    assert_eq!(agent.status().await["approved_tasks"], 0);
    // Approving gamma now must not let the revoked beta through.
    world
        .approve(
            "gamma",
            &[
                (Action::Install, Some("1.0")),
                (Action::Configure, Some("1.0")),
            ],
            ApprovalScope::AllAgents,
        )
        .await;
    agent.cycles(3).await;
    assert_eq!(agent.version("beta").await.as_deref(), Some("1.0"));
    assert_eq!(agent.version("gamma").await, None);
    world.approve_update("beta", "2.0").await;
    agent.wait_version("beta", "2.0").await;
    agent.stop().await;
    world.stop().await;
}
