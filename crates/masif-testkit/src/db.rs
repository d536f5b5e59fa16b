//! Scratch MariaDB databases for tests and benchmarks: a fresh, uniquely named database per
//! test, dropped afterwards, and a canonical dump of every table to prove that a refused
//! request changed nothing.

use std::sync::atomic::{AtomicU32, Ordering};

use mysql_async::prelude::Queryable;

/// Server to create test databases on: `MASIF_TEST_MYSQL_URL`, else the local MariaDB.
pub fn mysql_server_url() -> String {
    std::env::var("MASIF_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// `<kind>_<prefix>_<pid>_<n>_<time>`: a database name no other test (of this process or
/// another) uses, with up to 20 characters of `prefix` (letters, digits, `_`) to tell whose.
pub(crate) fn unique_name(kind: &str, prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    let prefix: String = prefix
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(20)
        .collect();
    format!(
        "{kind}_{prefix}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A database that exists for the lifetime of this value.
#[derive(Debug)]
pub struct TestDatabase {
    server: String,
    name: String,
}

impl TestDatabase {
    /// Creates `masif_test_<prefix>_<pid>_<n>_<time>` on the test server.
    pub async fn create(prefix: &str) -> Self {
        let name = unique_name("masif_test", prefix);
        let server = mysql_server_url().trim_end_matches('/').to_owned();
        let mut conn = mysql_async::Conn::from_url(&server)
            .await
            .unwrap_or_else(|e| panic!("test MariaDB (MASIF_TEST_MYSQL_URL): {e}"));
        conn.query_drop(format!("CREATE DATABASE `{name}`"))
            .await
            .expect("create test database");
        conn.disconnect().await.ok();
        Self { server, name }
    }

    /// URL of this database, for `masif_store::open`.
    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs raw SQL statements against the database (fixtures that must look like the
    /// original implementation wrote them).
    pub async fn execute(&self, sql: &str) {
        let mut conn = mysql_async::Conn::from_url(self.url())
            .await
            .expect("connect");
        conn.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        conn.disconnect().await.ok();
    }

    /// The first column of the first row of `sql` as a number (a `COUNT(*)`), 0 for no row.
    pub async fn query_u64(&self, sql: &str) -> u64 {
        let mut conn = mysql_async::Conn::from_url(self.url())
            .await
            .expect("connect");
        let value: Option<u64> = conn
            .query_first(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        conn.disconnect().await.ok();
        value.unwrap_or(0)
    }

    /// Every row of every table, sorted, one line per row: equal snapshots mean equal contents.
    pub async fn snapshot(&self) -> String {
        let mut conn = mysql_async::Conn::from_url(self.url())
            .await
            .expect("connect");
        let tables: Vec<String> = conn.query("SHOW TABLES").await.expect("show tables");
        let mut out = String::new();
        for table in tables {
            let rows: Vec<mysql_async::Row> = conn
                .query(format!("SELECT * FROM `{table}`"))
                .await
                .expect("select");
            let mut lines: Vec<String> = rows
                .into_iter()
                .map(|row| format!("{table}: {:?}", row.unwrap()))
                .collect();
            lines.sort();
            out.push_str(&format!("{table} ({} rows)\n", lines.len()));
            for line in lines {
                out.push_str(&line);
                out.push('\n');
            }
        }
        conn.disconnect().await.ok();
        out
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if !drop_database(std::slice::from_ref(&self.server), &self.name) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// Drops database `name` through the first of `servers` that answers within 5 s (a test may
/// have killed some); whether that worked. Drop may run inside or outside a runtime, so this
/// runs on a thread with its own.
pub(crate) fn drop_database(servers: &[String], name: &str) -> bool {
    let (servers, name) = (servers.to_vec(), name.to_owned());
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            for server in &servers {
                let connect = mysql_async::Conn::from_url(server.as_str());
                let Ok(Ok(mut conn)) =
                    tokio::time::timeout(std::time::Duration::from_secs(5), connect).await
                else {
                    continue;
                };
                let dropped = conn
                    .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                    .await;
                conn.disconnect().await.ok();
                if dropped.is_ok() {
                    return true;
                }
            }
            false
        })
    })
    .join();
    matches!(dropped, Ok(true))
}
