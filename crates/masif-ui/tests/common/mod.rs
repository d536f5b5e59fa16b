//! Test fixtures of the UI: a fresh MariaDB database seeded through the real report
//! transaction, an htpasswd user, and helpers to pull tokens out of pages.

#![allow(dead_code, unused_imports)] // each test binary uses its own subset

pub mod api;
pub mod browser;
pub mod facts;
pub mod in_process;
pub mod served;

use std::io::Write;
use std::sync::Arc;

use masif_proto::v2::{Run, RunOutput};
use masif_proto::{Action, AgentName, Task, TaskSet};
use masif_store::{Retention, Store};
use masif_testkit::db::TestDatabase;
pub use masif_testkit::tasks::{install, run, task, update};
use masif_ui::{UiSettings, Users};

pub const USER: &str = "admin";
pub const PASSWORD: &str = "correct horse battery staple";

/// A package name and an agent name that must render as text.
pub const HOSTILE_PACKAGE: &str = "<script>alert(1)</script>";
pub const HOSTILE_AGENT: &str = "o'brien \"the\" <b>host</b>";

/// A migrated test database and a store on it.
pub struct Fixture {
    pub db: TestDatabase,
    pub store: Arc<dyn Store>,
}

impl Fixture {
    pub async fn new(prefix: &str) -> Self {
        let db = TestDatabase::create(prefix).await;
        let store = masif_store::open(&db.url().parse().unwrap())
            .await
            .expect("open test store");
        Self { db, store }
    }

    /// Reports `tasks` as agent `name` through the real report transaction.
    pub async fn report(&self, name: &str, tasks: Vec<Task>) {
        let set: TaskSet = tasks.into_iter().collect();
        self.store
            .report(&AgentName::new(name).unwrap(), &set)
            .await
            .expect("report");
    }

    /// Stores `runs` as agent `name`'s through the store, as the master does.
    pub async fn record_runs(&self, name: &str, runs: &[Run]) {
        self.store
            .record_runs(&AgentName::new(name).unwrap(), runs, &Retention::default())
            .await
            .expect("record runs");
    }

    /// Sets when agent `name` (with a plain name) last reported: what the store holds back is
    /// written first (`flush`), so it cannot overwrite this.
    pub async fn set_last_seen(&self, name: &str, at: i64) {
        self.store.flush().await;
        self.db
            .execute(&format!(
                "UPDATE agent_report r JOIN agent a ON a.id = r.agent \
                 SET r.last_seen = {at} WHERE a.name = '{name}'"
            ))
            .await;
    }

    /// The approval rows written, as `[agent, package, action, from, to, approved_by]`, by
    /// package and action; compare with [`approval_by_user`].
    pub async fn approval_rows(&self) -> Vec<Vec<Option<String>>> {
        self.rows(
            "SELECT t.agent, p.name, t.action, t.from_version, t.to_version, ap.approved_by \
             FROM task t JOIN package p ON p.id = t.package JOIN approval ap ON ap.task = t.id \
             WHERE t.approved = 1 ORDER BY p.name, t.action",
        )
        .await
    }

    /// Rows of a query as text, for checks of what the UI wrote.
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        use mysql_async::prelude::Queryable;
        let mut conn = mysql_async::Conn::from_url(self.db.url()).await.unwrap();
        let rows: Vec<mysql_async::Row> = conn.query(sql).await.unwrap();
        conn.disconnect().await.ok();
        rows.into_iter()
            .map(|r| {
                r.unwrap()
                    .into_iter()
                    .map(|v| match v {
                        mysql_async::Value::NULL => None,
                        mysql_async::Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into()),
                        other => Some(other.as_sql(false)),
                    })
                    .collect()
            })
            .collect()
    }

    pub async fn count(&self, sql: &str) -> u64 {
        self.rows(sql).await[0][0]
            .as_deref()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// The standard scene: perl awaited by three agents (two target versions), libc6 by two,
    /// a new package and a removal on one, a hostile package name on the hostile agent.
    pub async fn seed(&self) {
        self.report(
            "web-1",
            vec![
                update("perl", "5.1", "5.2"),
                update("libc6", "2.36-1", "2.36-2"),
            ],
        )
        .await;
        self.report(
            "web-2",
            vec![
                update("perl", "5.1", "5.2"),
                update("libc6", "2.36-1", "2.36-2"),
            ],
        )
        .await;
        self.report(
            "db-1",
            vec![
                update("perl", "5.0", "5.3"),
                install("newpkg", "1.0"),
                task("oldpkg", Action::Remove, Some("0.9"), None),
            ],
        )
        .await;
        self.report(HOSTILE_AGENT, vec![update(HOSTILE_PACKAGE, "1", "2")])
            .await;
    }
}

/// Now in unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `run` with `output`.
pub fn with_output(mut run: Run, output: &str) -> Run {
    run.output = RunOutput::new(output).unwrap();
    run
}

/// An approval row of [`Fixture::approval_rows`]: for every agent, from any version, by [`USER`].
pub fn approval_by_user(package: &str, action: &str, to: &str) -> Vec<Option<String>> {
    vec![
        None,
        Some(package.into()),
        Some(action.into()),
        None,
        Some(to.into()),
        Some(USER.into()),
    ]
}

/// What approving perl 5.2 and libc6 2.36-2 for every agent writes: each update with its
/// configure step (`Admin::approve`).
pub fn perl_and_libc_approvals() -> Vec<Vec<Option<String>>> {
    vec![
        approval_by_user("libc6", "update", "2.36-2"),
        approval_by_user("libc6", "configure", "2.36-2"),
        approval_by_user("perl", "update", "5.2"),
        approval_by_user("perl", "configure", "5.2"),
    ]
}

/// An htpasswd file with [`USER`] / [`PASSWORD`] (bcrypt, `$2y$` like `htpasswd -B`).
pub fn htpasswd_file() -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    let hash = bcrypt::hash(PASSWORD, 4)
        .unwrap()
        .replacen("$2b$", "$2y$", 1);
    writeln!(f, "{USER}:{hash}").unwrap();
    f
}

/// Settings with the test user, plain HTTP.
pub fn settings() -> UiSettings {
    let f = htpasswd_file();
    UiSettings::with_users(Users::load(f.path()).unwrap())
}

/// The value of the first `name="csrf" value="…"` in a page.
pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("page has a CSRF field") + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

/// `name=value` of a `Set-Cookie` header value.
pub fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_owned()
}

/// Percent-encodes a form value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The checkbox value of a (package, action, target) row.
pub fn key_value(package: &str, action: &str, to: Option<&str>) -> String {
    serde_json::to_string(&(package, action, to)).unwrap()
}
