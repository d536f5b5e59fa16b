//! The UI's fleet metrics served on a listener of their own and scraped over HTTP, on MariaDB
//! and on SQLite: a fleet with an offline agent (one only the original master saw), a failing
//! agent, one needing a reboot and pending tasks of several actions gives exact gauges; the
//! listener's 404 and 405; and the Grafana dashboard uses only metrics that master and UI export.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::{run, unix_now};
use masif_proto::facts::Facts;
use masif_proto::v2::Outcome;
use masif_proto::{Action, AgentName, PackageName, Task, TaskSet, Version};
use masif_store::{ApprovalScope, Retention, Store, TaskKey};
use masif_testkit::db::TestDatabase;
use masif_testkit::scrape::{self, Metrics};
use masif_testkit::tasks::{install, task, update};
use tokio::sync::oneshot;

/// A store and a way to write a row the way the original master did.
enum Backend {
    Mysql(TestDatabase),
    Sqlite(tempfile::TempDir),
}

impl Backend {
    async fn mysql() -> (Self, Arc<dyn Store>) {
        let db = TestDatabase::create("uimetrics").await;
        let store = masif_store::open(&db.url().parse().unwrap()).await.unwrap();
        (Backend::Mysql(db), store)
    }

    async fn sqlite() -> (Self, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("masif.db").display());
        let store = masif_store::open(&url.parse().unwrap()).await.unwrap();
        (Backend::Sqlite(dir), store)
    }

    async fn exec(&self, sql: &str) {
        match self {
            Backend::Mysql(db) => db.execute(sql).await,
            Backend::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(dir.path().join("masif.db")).unwrap();
                conn.execute_batch(sql).unwrap();
            }
        }
    }
}

fn name(agent: &str) -> AgentName {
    AgentName::new(agent).unwrap()
}

fn remove(package: &str, from: &str) -> Task {
    task(package, Action::Remove, Some(from), None)
}

async fn report(store: &Arc<dyn Store>, agent: &str, tasks: Vec<Task>, facts: Option<&Facts>) {
    let set: TaskSet = tasks.into_iter().collect();
    store
        .report_with_facts(&name(agent), &set, facts)
        .await
        .unwrap();
}

/// `web-1` needs a reboot and awaits nginx and perl; `web-2` awaits perl and telnet's removal
/// and its perl run failed; `legacy` was last seen by the original master long ago. Perl is
/// approved for web-1.
async fn seed(backend: &Backend, store: &Arc<dyn Store>) {
    let rebooting = Facts {
        reboot_required: true,
        ..Facts::default()
    };
    let perl = update("perl", "5.1", "5.2");
    report(
        store,
        "web-1",
        vec![install("nginx", "1.0"), perl.clone()],
        Some(&rebooting),
    )
    .await;
    report(
        store,
        "web-2",
        vec![perl.clone(), remove("telnet", "0.17")],
        None,
    )
    .await;
    store
        .record_runs(
            &name("web-2"),
            &[run("r1", perl, Outcome::Failed, unix_now())],
            &Retention::default(),
        )
        .await
        .unwrap();
    let key = TaskKey {
        package: PackageName::new("perl").unwrap(),
        action: Action::Update,
        to_version: Some(Version::new("5.2").unwrap()),
    };
    store
        .approve(&[key], &ApprovalScope::Agents(vec![name("web-1")]), "admin")
        .await
        .unwrap();
    backend
        .exec("INSERT INTO agent (name, ctime, mtime) VALUES ('legacy', 1, 1)")
        .await;
}

struct Served {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn serve(store: Arc<dyn Store>) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(masif_ui::serve_metrics(store, 900, listener, async {
        let _ = stopped.await;
    }));
    Served { addr, stop, task }
}

fn pending(m: &Metrics, action: &str) -> f64 {
    m.value("masif_pending_tasks", &[("action", action)])
}

async fn the_fleet_gauges_are_exact(backend: Backend, store: Arc<dyn Store>) {
    seed(&backend, &store).await;
    let served = serve(store).await;
    let m = scrape::scrape(served.addr).await;
    for family in [
        "masif_agents",
        "masif_agents_offline",
        "masif_agents_failing",
        "masif_agents_reboot_required",
        "masif_pending_tasks",
    ] {
        assert_eq!(m.kind(family), "gauge", "{family}");
    }
    assert_eq!(m.value("masif_agents", &[]), 3.0);
    assert_eq!(m.value("masif_agents_offline", &[]), 1.0);
    assert_eq!(m.value("masif_agents_failing", &[]), 1.0);
    assert_eq!(m.value("masif_agents_reboot_required", &[]), 1.0);
    assert_eq!(pending(&m, "install"), 1.0);
    assert_eq!(pending(&m, "update"), 1.0);
    assert_eq!(pending(&m, "configure"), 0.0);
    assert_eq!(pending(&m, "remove"), 1.0);
    assert_eq!(pending(&m, "purge"), 0.0);

    assert_eq!(scrape::request(served.addr, "GET", "/").await.status, 404);
    assert_eq!(
        scrape::request(served.addr, "GET", "/agents").await.status,
        404
    );
    assert_eq!(
        scrape::request(served.addr, "DELETE", "/metrics")
            .await
            .status,
        405
    );
    served.stop.send(()).unwrap();
    served.task.await.unwrap();
}

#[tokio::test]
async fn the_fleet_gauges_are_exact_on_mariadb() {
    let (backend, store) = Backend::mysql().await;
    the_fleet_gauges_are_exact(backend, store).await;
}

#[tokio::test]
async fn the_fleet_gauges_are_exact_on_sqlite() {
    let (backend, store) = Backend::sqlite().await;
    the_fleet_gauges_are_exact(backend, store).await;
}

/// The Grafana dashboard's fleet panels query only what the UI exports, show every metric it
/// exports, and name no metric of neither (the master's test checks `masif_master_…`).
#[tokio::test]
async fn the_dashboard_shows_every_ui_metric_and_only_exported_ones() {
    let (_backend, store) = Backend::sqlite().await;
    let served = serve(store).await;
    let m = scrape::scrape(served.addr).await;
    let exported = m.sample_names();
    let used = scrape::dashboard_metrics(&scrape::dashboard());
    for name in used.iter().filter(|n| !n.starts_with("masif_master_")) {
        assert!(
            exported.contains(name),
            "the dashboard uses {name}, not exported"
        );
    }
    for family in m.families.keys() {
        assert!(
            used.iter().any(|u| u.starts_with(family.as_str())),
            "no panel shows {family}"
        );
    }
    served.stop.send(()).unwrap();
    served.task.await.unwrap();
}
