//! Contract tests of the store: every test is written once and runs against every back end.
//!
//! # How to write one
//!
//! ```ignore
//! async fn pending_set_is_replaced(db: TestStore) {
//!     db.store.report(&agent("a"), &tasks).await.unwrap();
//!     assert_eq!(db.rows("SELECT COUNT(*) FROM task").await, vec![vec![Some("2".into())]]);
//! }
//! contract_test!(pending_set_is_replaced);
//! ```
//!
//! `contract_test!(name)` makes a module `name` with one `#[tokio::test]` per back end
//! (`name::mysql`, `name::sqlite`), each handing the function a [`TestStore`] on a fresh,
//! empty, migrated database of its own: `db.store` is the `Arc<dyn Store>` under test,
//! `db.rows(sql)` / `db.exec(sql)` run plain SQL (portable SELECT/INSERT/UPDATE/DELETE only)
//! to look at or prepare table contents, `db.backend` tells which back end runs.
//! `contract_test!(name, ignore_sqlite = "why")` marks the SQLite test ignored while that
//! back end falls short of the contract (none does at the moment).
//!
//! * **MySQL/MariaDB**: the server is `MASIF_TEST_MYSQL_URL` (default
//!   `mysql://root@127.0.0.1:3306`); each test creates a database `masif_test_<pid>_<n>_<t>`
//!   and drops it when the test ends, also when it panics (the body runs in a spawned task
//!   whose panic is caught, then re-raised after the drop). [`MysqlScratch`] gives MySQL-only
//!   tests (adoption, concurrent migration, lock timeouts) an empty database without a store.
//! * **SQLite**: each test opens a `SqliteStore` on `masif.db` in a fresh temporary directory,
//!   removed when the test ends; `rows`/`exec` use a rusqlite connection on the same file.
//!
//! Test modules: `report` (the report transaction), `admin` (the UI's queries), `approve`
//! (approving), `changes` (approvals listed, revoked, reset, audited), `facts` (host facts of
//! v2 reports and what the UI reads of them), `runs` (run results,
//! agents filtered by them), `long_poll` (approval tokens, approvals matched in memory),
//! `mysql_report` (the MySQL report path: round trips, batching, retries), `mysql_only`
//! (schema import and adoption, migrations, strict mode, round trips, retries, throwaway
//! servers from `masif_testkit::mariadb` for a statement-based binlog and a vanishing
//! server), `failover` (several addresses on throwaway servers: the next node used when one
//! dies or is down at start, none working), `orphans` (orphan packages removed, also racing writers), `pending_counts` (pending
//! tasks counted by action), `queue` (the bound on
//! waiting reports), `tags` (tags from facts, filters, approving by tag, tag settings,
//! maintenance windows), `leases` (max in flight, also two stores racing for it), `rollouts` (staged roll-outs: create,
//! progress, soak and promote, halt and force, bad specs, two stores advancing at once),
//! `summary` (the pending overview's maintained counts equal a recount after random changes).

mod admin;
mod api_reads;
mod approval_chunks;
mod approve;
mod changes;
mod facts;
mod failover;
mod fixtures;
mod leases;
mod long_poll;
mod mysql_only;
mod mysql_report;
mod orphans;
mod pending_counts;
mod queue;
mod report;
mod rollouts;
mod runs;
mod summary;
mod tags;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use masif_store::mysql::{MysqlOptions, MysqlStore};
use masif_store::Store;
use mysql_async::prelude::*;
use mysql_async::{Pool, Row, Value};

/// Which back end a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Mysql,
    Sqlite,
}

/// A fresh store plus raw SQL access to the same database.
#[derive(Clone)]
pub struct TestStore {
    pub store: Arc<dyn Store>,
    pub backend: Backend,
    raw: Raw,
}

#[derive(Clone)]
enum Raw {
    /// A pool on the database, and the database's URL.
    Mysql(Pool, String),
    /// The database file; its temporary directory lives as long as the test.
    Sqlite(Arc<(tempfile::TempDir, std::path::PathBuf)>),
}

impl TestStore {
    /// Rows of a SELECT, every value as text (`None` for NULL, numbers in decimal).
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        match &self.raw {
            Raw::Mysql(pool, _) => {
                let mut conn = pool.get_conn().await.expect("test connection");
                let rows: Vec<Row> = conn
                    .query(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                rows.into_iter()
                    .map(|row| row.unwrap().into_iter().map(text).collect())
                    .collect()
            }
            Raw::Sqlite(file) => {
                let conn = sqlite_connection(&file.1);
                let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                let columns = stmt.column_count();
                stmt.query_map([], |row| {
                    (0..columns)
                        .map(|i| row.get_ref(i).map(sqlite_text))
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .and_then(|rows| rows.collect())
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
        }
    }

    /// The single value of a one-row, one-column SELECT.
    pub async fn value(&self, sql: &str) -> Option<String> {
        let rows = self.rows(sql).await;
        assert_eq!(rows.len(), 1, "{sql} returned {rows:?}");
        rows[0][0].clone()
    }

    /// A count or other integer from a one-value SELECT.
    pub async fn int(&self, sql: &str) -> i64 {
        self.value(sql)
            .await
            .unwrap_or_else(|| panic!("{sql} returned NULL"))
            .parse()
            .unwrap()
    }

    /// Runs one statement that returns no rows.
    pub async fn exec(&self, sql: &str) {
        match &self.raw {
            Raw::Mysql(pool, _) => {
                let mut conn = pool.get_conn().await.expect("test connection");
                conn.query_drop(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            Raw::Sqlite(file) => {
                sqlite_connection(&file.1)
                    .execute_batch(sql)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }
    }

    /// Another store on the same database, opened the way the daemons open theirs.
    pub async fn open_another(&self, settings: &masif_store::StoreSettings) -> Arc<dyn Store> {
        let url = match &self.raw {
            Raw::Mysql(_, url) => url.parse().unwrap(),
            Raw::Sqlite(file) => masif_store::DbUrl::sqlite(&file.1),
        };
        masif_store::open_with(&url, settings)
            .await
            .expect("opening another store")
    }

    /// Holds off every write that touches agent `name` (which must exist) until the returned
    /// holder is released: MySQL locks the agent's row, SQLite takes the file's write lock.
    pub async fn hold_writes_of(&self, name: &str) -> WriteHolder {
        match &self.raw {
            Raw::Mysql(pool, _) => {
                let mut conn = pool.get_conn().await.expect("test connection");
                conn.query_drop("START TRANSACTION").await.unwrap();
                let locked: Vec<u64> = conn
                    .exec("SELECT id FROM agent WHERE name = ? FOR UPDATE", (name,))
                    .await
                    .unwrap();
                assert_eq!(locked.len(), 1, "agent {name} exists");
                WriteHolder::Mysql(conn)
            }
            Raw::Sqlite(file) => {
                let conn = sqlite_connection(&file.1);
                conn.execute_batch("BEGIN IMMEDIATE").unwrap();
                WriteHolder::Sqlite(conn)
            }
        }
    }
}

/// What [`TestStore::hold_writes_of`] holds; [`WriteHolder::release`] lets the writes go on.
pub enum WriteHolder {
    Mysql(mysql_async::Conn),
    Sqlite(rusqlite::Connection),
}

impl WriteHolder {
    pub async fn release(self) {
        match self {
            WriteHolder::Mysql(mut conn) => conn.query_drop("ROLLBACK").await.unwrap(),
            WriteHolder::Sqlite(conn) => conn.execute_batch("ROLLBACK").unwrap(),
        }
    }
}

fn text(value: Value) -> Option<String> {
    match value {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        other => Some(other.as_sql(false)),
    }
}

fn sqlite_connection(path: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("test sqlite connection");
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    conn
}

/// A SQLite value as text, the way [`text`] renders MySQL's.
fn sqlite_text(value: rusqlite::types::ValueRef<'_>) -> Option<String> {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(b) | ValueRef::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
    }
}

/// The MySQL server tests use.
pub fn mysql_server_url() -> String {
    std::env::var("MASIF_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned())
        .trim_end_matches('/')
        .to_owned()
}

/// An empty, uniquely named MySQL database, dropped by [`MysqlScratch::drop_database`].
pub struct MysqlScratch {
    pub name: String,
    server: Pool,
}

impl MysqlScratch {
    pub async fn create() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "masif_test_{}_{}_{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let server = Pool::new(format!("{}/?pool_min=1&pool_max=2", mysql_server_url()).as_str());
        let mut conn = server.get_conn().await.unwrap_or_else(|e| {
            panic!(
                "MariaDB at {} (MASIF_TEST_MYSQL_URL): {e}",
                mysql_server_url()
            )
        });
        conn.query_drop(format!("CREATE DATABASE `{name}`"))
            .await
            .unwrap();
        Self { name, server }
    }

    /// URL of the scratch database, with extra URL parameters (`""` or `"?pool_max=4"`).
    pub fn url(&self, params: &str) -> String {
        format!("{}/{}{params}", mysql_server_url(), self.name)
    }

    /// A raw connection pool on the scratch database.
    pub fn raw_pool(&self) -> Pool {
        Pool::new(self.url("?pool_min=1&pool_max=8").as_str())
    }

    /// A store on the scratch database with test-friendly options.
    pub async fn store(&self, options: MysqlOptions) -> MysqlStore {
        MysqlStore::connect_with(&self.url(""), options)
            .await
            .expect("connecting the store")
    }

    pub async fn drop_database(self) {
        if let Ok(mut conn) = self.server.get_conn().await {
            if let Err(e) = conn
                .query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name))
                .await
            {
                eprintln!("dropping test database {}: {e}", self.name);
            }
        }
        let _ = self.server.disconnect().await;
    }
}

/// Runs `body` with `scratch`, always calling `cleanup` afterwards, and
/// re-raises a panic of `body` after the cleanup.
pub async fn with_cleanup<S, F, Fut, C, CFut>(scratch: S, body: F, cleanup: C)
where
    S: Clone + Send + 'static,
    F: FnOnce(S) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
    C: FnOnce(S) -> CFut,
    CFut: Future<Output = ()>,
{
    let outcome = tokio::spawn(body(scratch.clone())).await;
    cleanup(scratch).await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task failed: {e}"),
        }
    }
}

/// Runs a MySQL-only test with an empty scratch database (no store, no schema).
pub async fn run_mysql_scratch<F, Fut>(body: F)
where
    F: FnOnce(Arc<MysqlScratch>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let scratch = Arc::new(MysqlScratch::create().await);
    with_cleanup(scratch, body, |s: Arc<MysqlScratch>| async move {
        match Arc::try_unwrap(s) {
            Ok(s) => s.drop_database().await,
            Err(s) => eprintln!("test database {} still in use: not dropped", s.name),
        }
    })
    .await;
}

/// Options for stores under test: the defaults, with a small pool. What a back end holds
/// behind reports is written when a test calls `Reports::flush` (the timer would take an hour),
/// so tests wait for that call, never for time.
pub fn test_options() -> MysqlOptions {
    MysqlOptions {
        pool_max: 8,
        last_seen_flush: std::time::Duration::from_secs(3600),
        ..MysqlOptions::default()
    }
}

/// Runs a contract test against `backend` on a fresh database.
pub async fn run<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(TestStore) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    match backend {
        Backend::Mysql => {
            run_mysql_scratch(|scratch| async move {
                let store = scratch.store(test_options()).await;
                let raw = scratch.raw_pool();
                let db = TestStore {
                    store: Arc::new(store),
                    backend,
                    raw: Raw::Mysql(raw.clone(), scratch.url("")),
                };
                // The body runs inside this task: a panic still reaches the cleanup above.
                body(db).await;
                let _ = raw.disconnect().await;
            })
            .await
        }
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temporary directory");
            let path = dir.path().join("masif.db");
            let store = masif_store::sqlite::SqliteStore::open(&path)
                .await
                .expect("opening the sqlite store");
            let db = TestStore {
                store: Arc::new(store),
                backend,
                raw: Raw::Sqlite(Arc::new((dir, path))),
            };
            // In a task like the MySQL arm, so both back ends run the body alike.
            if let Err(e) = tokio::spawn(body(db)).await {
                match e.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    Err(e) => panic!("test task failed: {e}"),
                }
            }
        }
    }
}

/// One test per back end for an `async fn name(db: TestStore)`.
#[macro_export]
macro_rules! contract_test {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mysql() {
                $crate::run($crate::Backend::Mysql, super::$name).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::run($crate::Backend::Sqlite, super::$name).await
            }
        }
    };
    // A back end that does not meet the contract yet: its test is marked ignored with the
    // reason (run it with `cargo nextest run --run-ignored all`) until that back end is fixed.
    ($name:ident, ignore_sqlite = $why:literal) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mysql() {
                $crate::run($crate::Backend::Mysql, super::$name).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = $why]
            async fn sqlite() {
                $crate::run($crate::Backend::Sqlite, super::$name).await
            }
        }
    };
}
