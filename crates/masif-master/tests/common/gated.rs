//! Helpers of the roll-out control tests: masters on either back end (and a second master on
//! the first one's database), reports carrying tags, answers with their deferral, waiting for
//! a condition with a deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use masif_proto::v2::{ReportAnswer, REPORT_PATH};
use masif_proto::{Action, PackageName, Tag, TaskSet, Version};
use masif_store::{ApprovalScope, Store, TagSettings, TaskKey};
use masif_testkit::db::TestDatabase;

use super::{Client, Master, Pki, Reply};

/// The alpha update and the gamma install an agent reports.
pub const TWO_TASKS: &str = r#"[{"package":"alpha","action":"update","from_version":"1.0","to_version":"2.0"},{"package":"gamma","action":"install","to_version":"1.0"}]"#;
pub const ALPHA_UPDATE: &str =
    r#"[{"package":"alpha","action":"update","from_version":"1.0","to_version":"2.0"}]"#;
/// A wait longer than any test: a held report that is answered was answered by an event.
pub const HELD: u64 = 3600;
/// How long a test waits for an answer or a condition before it fails.
pub const WITHIN: Duration = Duration::from_secs(60);
/// Where the manual clocks start (2027-01-15).
pub const T0: i64 = 1_800_000_000;

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Mysql,
    Sqlite,
}

/// A master on a fresh database of `backend` (an SQLite file in the PKI's directory).
pub async fn start(
    pki: &Pki,
    backend: Backend,
    tune: impl FnOnce(&mut masif_master::ServeSettings),
) -> Master {
    let db = TestDatabase::create("rollout").await;
    let url = match backend {
        Backend::Mysql => db.url().parse().unwrap(),
        Backend::Sqlite => {
            let n = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            masif_store::DbUrl::sqlite(pki.dir.path().join(format!("master-{n}.db")))
        }
    };
    let store = masif_store::open(&url).await.unwrap();
    Master::start_with_store(&pki.master, db, store, tune).await
}

/// A second master on `first`'s database (MariaDB), with a store of its own. Its own
/// `db` is an unused scratch database.
pub async fn start_beside(
    first: &Master,
    pki: &Pki,
    tune: impl FnOnce(&mut masif_master::ServeSettings),
) -> Master {
    let store = masif_store::open(&first.db.url().parse().unwrap())
        .await
        .unwrap();
    let unused = TestDatabase::create("beside").await;
    Master::start_with_store(&pki.master, unused, store, tune).await
}

/// A v2 report body of `tasks` from an agent carrying `tags`.
pub fn report(tasks: &str, approved: &str, wait: u64, tags: &[&str]) -> String {
    let tags = serde_json::to_string(tags).unwrap();
    format!(r#"{{"tasks":{tasks},"approved":{approved},"wait":{wait},"facts":{{"tags":{tags}}}}}"#)
}

/// The answer of a 200.
pub fn answer(reply: &Reply) -> ReportAnswer {
    assert_eq!(reply.status, 200, "{}", reply.body);
    ReportAnswer::parse(reply.body.as_bytes()).unwrap()
}

pub fn tasks(json: &str) -> TaskSet {
    masif_proto::parse_task_list(json.as_bytes()).unwrap()
}

pub fn tag(name: &str) -> Tag {
    Tag::new(name).unwrap()
}

pub fn alpha_update() -> TaskKey {
    TaskKey {
        package: PackageName::new("alpha").unwrap(),
        action: Action::Update,
        to_version: Some(Version::new("2.0").unwrap()),
    }
}

/// Approves the alpha update for every agent.
pub async fn approve_alpha(store: &dyn Store) {
    store
        .approve(&[alpha_update()], &ApprovalScope::AllAgents, "admin")
        .await
        .unwrap();
}

/// Sets `tag`'s max in flight (no windows).
pub async fn limit(store: &dyn Store, name: &str, k: u32) {
    let settings = TagSettings {
        max_in_flight: Some(k),
        windows: Vec::new(),
    };
    store.set_tag(&tag(name), &settings, "admin").await.unwrap();
}

/// Sends a report on its own task; the handle yields the reply.
pub fn send(mut client: Client, body: String) -> tokio::task::JoinHandle<(Client, Reply)> {
    tokio::spawn(async move {
        let reply = client
            .request_within("POST", REPORT_PATH, body, WITHIN)
            .await
            .unwrap();
        (client, reply)
    })
}

/// Waits until `check` holds, polling every 50 ms; fails after [`WITHIN`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WITHIN;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the master holds `n` reports.
pub async fn held(master: &Master, n: usize) {
    let metrics = master.metrics;
    eventually(&format!("{n} reports held"), || async move {
        let m = masif_testkit::scrape::scrape(metrics).await;
        m.value("masif_master_longpolls_waiting", &[]) == n as f64
    })
    .await;
}

/// Live leases of `name` (by the store's count at `now`).
pub async fn leases(store: &Arc<dyn Store>, name: &str, now: i64) -> u64 {
    store
        .tags(now)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.tag.as_str() == name)
        .map_or(0, |t| t.leases)
}
