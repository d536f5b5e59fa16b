//! MySQL/MariaDB-only tests: schema import and adoption of an original database, concurrent
//! migrations, strict mode, throwaway servers (statement binlog, a vanishing server), a reset
//! racing a report, deadlock victims; and the helpers the report path's tests (`mysql_report`)
//! share.

use std::sync::Arc;
use std::time::Duration;

use masif_proto::TaskSet;
use masif_store::mysql::{MysqlOptions, MysqlStore};
use masif_store::{Reports, StoreError};
use mysql_async::prelude::*;
use mysql_async::Conn;

use crate::report::{agent, install, set, update};
use crate::{run_mysql_scratch, test_options, MysqlScratch};
use masif_testkit::mariadb::Throwaway;

const ORIGINAL_SCHEMA: &str = include_str!("../../../../schema/mysql/0001_original.sql");
const MIGRATIONS: i64 = 16;

pub(crate) async fn raw(scratch: &MysqlScratch) -> Conn {
    scratch.raw_pool().get_conn().await.unwrap()
}

pub(crate) async fn int(conn: &mut Conn, sql: &str) -> i64 {
    conn.query_first::<i64, _>(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

/// An installation whose package names are narrower than what the protocol allows.
pub(crate) async fn narrow_package_names(conn: &mut Conn) {
    conn.query_drop(
        "ALTER TABLE package MODIFY name VARCHAR(8) CHARACTER SET utf8mb4 \
         COLLATE utf8mb4_bin NOT NULL",
    )
    .await
    .unwrap();
}

/// Closes a store shared with report tasks that have all finished.
pub(crate) async fn close(store: Arc<MysqlStore>) {
    Arc::try_unwrap(store)
        .expect("no report task still holds the store")
        .disconnect()
        .await
        .unwrap();
}

/// The schema versions recorded.
pub(crate) async fn versions(conn: &mut Conn) -> Vec<u32> {
    conn.query("SELECT version FROM masif_schema_version ORDER BY version")
        .await
        .unwrap()
}

/// Reports installs of a and b as agent "host" in a task of its own, to run into a lock.
pub(crate) fn spawn_report_of_a_and_b(
    store: &Arc<MysqlStore>,
) -> tokio::task::JoinHandle<masif_store::Result<TaskSet>> {
    let store = store.clone();
    tokio::spawn(async move {
        store
            .report(&agent("host"), &set([install("a", "1"), install("b", "1")]))
            .await
    })
}

/// A store on `scratch` with `options`, after agent "host" reported "install a".
pub(crate) async fn store_where_host_reported_a(
    scratch: &MysqlScratch,
    options: MysqlOptions,
) -> MysqlStore {
    let store = scratch.store(options).await;
    store
        .report(&agent("host"), &set([install("a", "1")]))
        .await
        .unwrap();
    store
}

/// A connection in a transaction holding agent "host"'s row lock.
pub(crate) async fn lock_agent_row(scratch: &MysqlScratch) -> Conn {
    let mut holder = raw(scratch).await;
    holder.query_drop("START TRANSACTION").await.unwrap();
    holder
        .query_drop("SELECT id FROM agent WHERE name = 'host' FOR UPDATE")
        .await
        .unwrap();
    holder
}

/// Waits until another connection to this database runs a statement containing `text`.
pub(crate) async fn wait_for_statement(watch: &mut Conn, text: &str) {
    let sql = format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
         WHERE DB = DATABASE() AND ID <> CONNECTION_ID() AND INFO LIKE '%{text}%'"
    );
    // A guard against hanging, not a timing assertion.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while int(watch, &sql).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no statement containing {text:?} started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_database_is_adopted_in_place() {
    run_mysql_scratch(|scratch| async move {
        let mut conn = raw(&scratch).await;
        // The original master created its tables with the server's defaults, here latin1.
        conn.query_drop(format!(
            "ALTER DATABASE `{}` CHARACTER SET latin1 COLLATE latin1_swedish_ci",
            scratch.name
        ))
        .await
        .unwrap();
        conn.query_drop(ORIGINAL_SCHEMA).await.unwrap();
        conn.query_drop(
            "INSERT INTO agent (id, name, ctime, mtime) VALUES (1, 'web1', 100, 200), (2, 'db1', 100, 300);
             INSERT INTO package (id, name) VALUES (1, 'perl'), (2, 'bash'), (3, 'curl');
             INSERT INTO task (agent, package, from_version, to_version, action, approved) VALUES
               (1, 2, '5.0', '5.1', 'update', 0),
               (2, 2, '5.0', '5.1', 'update', 0),
               (2, 3, '7.0', '7.1', 'update', 0),
               (NULL, 1, NULL, '5.24.1-3+deb9u4', 'update', 1);",
        )
        .await
        .unwrap();

        let store = scratch.store(test_options()).await;
        assert_eq!(versions(&mut conn).await, (1..=MIGRATIONS as u32).collect::<Vec<_>>());
        assert_eq!(int(&mut conn, "SELECT COUNT(*) FROM task").await, 4);
        assert_eq!(
            int(&mut conn, "SELECT COUNT(DISTINCT id) FROM task").await,
            4,
            "task rows got primary keys"
        );
        let collation: String = conn
            .query_first(
                "SELECT COLLATION_NAME FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'package' AND COLUMN_NAME = 'name'",
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(collation, "utf8mb4_bin");
        let summary: Vec<(u64, String, String, u64)> = conn
            .query("SELECT package, action, to_version, agents FROM pending_summary ORDER BY package")
            .await
            .unwrap();
        assert_eq!(
            summary,
            vec![(2, "update".into(), "5.1".into(), 2), (3, "update".into(), "7.1".into(), 1)],
            "the migration counts the pending rows it finds"
        );

        // The original UI's approval (agent NULL, from_version NULL) applies to web1's report.
        let perl = update("perl", "5.24.1-3+deb9u3", "5.24.1-3+deb9u4");
        let bash = update("bash", "5.0", "5.1");
        let approved = store
            .report(&agent("web1"), &set([perl.clone(), bash.clone()]))
            .await
            .unwrap();
        assert_eq!(approved, set([perl]));
        let rows: Vec<(String, String)> = conn
            .query(
                "SELECT a.name, p.name FROM task t JOIN agent a ON a.id = t.agent \
                 JOIN package p ON p.id = t.package WHERE t.approved = 0 ORDER BY 1, 2",
            )
            .await
            .unwrap();
        let expected = [("db1", "bash"), ("db1", "curl"), ("web1", "bash")]
            .map(|(a, p)| (a.to_owned(), p.to_owned()));
        assert_eq!(rows, expected, "db1 untouched, web1's row kept (not re-inserted)");
        assert_eq!(int(&mut conn, "SELECT mtime FROM agent WHERE name = 'web1'").await, 200);
        // Non-Latin names fit after the conversion.
        store
            .report(&agent("web1"), &set([install("пакет-😀", "1")]))
            .await
            .unwrap();
        drop(conn);
        store.disconnect().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_masters_migrate_once() {
    run_mysql_scratch(|scratch| async move {
        let url = scratch.url("");
        let starts = (0..4).map(|_| {
            let url = url.clone();
            tokio::spawn(async move { MysqlStore::connect_with(&url, test_options()).await })
        });
        for start in starts.collect::<Vec<_>>() {
            start.await.unwrap().expect("a concurrent start failed");
        }
        let mut conn = raw(&scratch).await;
        assert_eq!(versions(&mut conn).await.len() as i64, MIGRATIONS);
    })
    .await;
}

/// Every migration is safe to re-run (a master may die between a DDL statement, which
/// commits on its own, and the version row): forget the versions, connect again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_safe_to_rerun() {
    run_mysql_scratch(|scratch| async move {
        let store = scratch.store(test_options()).await;
        store
            .report(&agent("a"), &set([install("p", "1")]))
            .await
            .unwrap();
        let mut conn = raw(&scratch).await;
        conn.query_drop("DELETE FROM masif_schema_version")
            .await
            .unwrap();
        let again = scratch.store(test_options()).await;
        assert_eq!(versions(&mut conn).await.len() as i64, MIGRATIONS);
        assert_eq!(int(&mut conn, "SELECT COUNT(*) FROM task").await, 1);
        // A newer master's version is tolerated (rolling upgrade), with a warning.
        conn.query_drop("INSERT INTO masif_schema_version VALUES (999, 'future', 0)")
            .await
            .unwrap();
        scratch
            .store(test_options())
            .await
            .disconnect()
            .await
            .unwrap();
        again.disconnect().await.unwrap();
        store.disconnect().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_database_or_server_is_a_clear_error() {
    let err = MysqlStore::connect(&format!(
        "{}/masif_test_does_not_exist_{}",
        crate::mysql_server_url(),
        std::process::id()
    ))
    .await
    .unwrap_err();
    // The driver's error is kept: the server's "unknown database".
    assert!(
        matches!(&err, StoreError::Mysql { source, .. }
            if matches!(&**source, mysql_async::Error::Server(e) if e.code == 1049)),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("masif_test_does_not_exist"),
        "{err}"
    );
    let err = MysqlStore::connect("mysql://masif:pw-secret@127.0.0.1:1/masif")
        .await
        .unwrap_err()
        .to_string();
    assert!(!err.contains("pw-secret"), "{err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");
}

/// Strict mode: a value a column cannot hold is an error naming it, never truncated, and the
/// report changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_never_truncated() {
    run_mysql_scratch(|scratch| async move {
        let store = scratch.store(test_options()).await;
        let mut conn = raw(&scratch).await;
        narrow_package_names(&mut conn).await;
        let err = store
            .report(&agent("a"), &set([install("a-long-package-name", "1")]))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
        assert!(err.to_string().contains("too long"), "{err}");
        for table in ["agent", "package", "task", "agent_report"] {
            assert_eq!(
                int(&mut conn, &format!("SELECT COUNT(*) FROM {table}")).await,
                0,
                "{table}"
            );
        }
        drop(conn);
        store.disconnect().await.unwrap();
    })
    .await;
}

/// A server writing a statement-based binary log refuses InnoDB writes under READ COMMITTED
/// (1665): the store notices at connect and reports still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_binlog_servers_still_take_reports() {
    let server = Throwaway::start(&[
        "--log-bin={dir}/binlog",
        "--binlog-format=STATEMENT",
        "--server-id=1",
    ])
    .await;
    let mut conn = Conn::from_url(server.url("")).await.unwrap();
    conn.query_drop("CREATE DATABASE masif; CREATE TABLE masif.probe (a INT) ENGINE=InnoDB")
        .await
        .unwrap();
    // The trap is real on this server.
    let err = conn
        .query_drop(
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; \
             INSERT INTO masif.probe VALUES (1)",
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1665"), "{err}");
    let store = MysqlStore::connect_with(&server.url("masif"), test_options())
        .await
        .unwrap();
    let me = agent("host");
    store.report(&me, &set([install("a", "1")])).await.unwrap();
    store
        .report(&me, &set([install("a", "1"), install("b", "2")]))
        .await
        .unwrap();
    assert_eq!(
        int(
            &mut conn,
            "SELECT COUNT(*) FROM masif.task WHERE approved = 0"
        )
        .await,
        2
    );
    drop(conn);
    store.disconnect().await.unwrap();
    assert!(server.dir().join("binlog.index").exists());
}

/// The server going away makes a report fail, after the bounded retries, with an error that
/// says "try again later" (the master answers 503 with `Retry-After`), not hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_server_is_an_error() {
    let mut server = Throwaway::start(&[]).await;
    let mut conn = Conn::from_url(server.url("")).await.unwrap();
    conn.query_drop("CREATE DATABASE masif").await.unwrap();
    drop(conn);
    let store = MysqlStore::connect_with(&server.url("masif"), test_options())
        .await
        .unwrap();
    let me = agent("host");
    store.report(&me, &set([install("a", "1")])).await.unwrap();
    server.stop();
    // A guard against hanging, not a timing assertion.
    let outcome = tokio::time::timeout(
        Duration::from_secs(120),
        store.report(&me, &set([install("b", "1")])),
    )
    .await
    .expect("a report against a vanished server hangs");
    let err = outcome.unwrap_err();
    assert!(
        matches!(&err, StoreError::RetriesExhausted { last, .. }
            if matches!(**last, StoreError::Mysql { .. })),
        "{err:?}"
    );
    assert!(err.is_transient(), "{err:?}");
}

/// A reset (tasks, packages and agents deleted) committing while a report waits for the
/// agent's lock: the report notices the vanished rows, creates them again and leaves no row
/// naming a package or agent that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_racing_a_report_leaves_no_dangling_rows() {
    run_mysql_scratch(|scratch| async move {
        let store = Arc::new(store_where_host_reported_a(&scratch, test_options()).await);
        let mut reset = raw(&scratch).await;
        reset
            .query_drop(
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION; \
                 DELETE FROM task; DELETE FROM package; DELETE FROM agent",
            )
            .await
            .unwrap();
        let before = store.stats();
        let report = spawn_report_of_a_and_b(&store);
        // Wait until the report waits for the agent's row lock, then commit the reset.
        let mut watch = raw(&scratch).await;
        wait_for_statement(&mut watch, "INSERT INTO agent").await;
        reset.query_drop("COMMIT").await.unwrap();
        report.await.unwrap().expect("the report recovers");
        assert!(store.stats().conflicts > before.conflicts);
        let rows: Vec<(String, String)> = watch
            .query(
                "SELECT a.name, p.name FROM task t JOIN agent a ON a.id = t.agent \
                 JOIN package p ON p.id = t.package WHERE t.approved = 0 ORDER BY 2",
            )
            .await
            .unwrap();
        assert_eq!(
            rows,
            [("host", "a"), ("host", "b")].map(|(a, p)| (a.to_owned(), p.to_owned()))
        );
        assert_eq!(int(&mut watch, "SELECT COUNT(*) FROM task").await, 2);
        drop((reset, watch));
    })
    .await;
}

/// A database whose tables are not the original's fails the migration that trips over them,
/// with an error naming it; the migrations before it stay recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_schema_fails_with_the_migration_named() {
    run_mysql_scratch(|scratch| async move {
        let mut conn = raw(&scratch).await;
        conn.query_drop("CREATE TABLE task (agent BIGINT, note TEXT)")
            .await
            .unwrap();
        let err = MysqlStore::connect_with(&scratch.url(""), test_options())
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Migration { version: 5, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("Unknown column"), "{err}");
        assert_eq!(versions(&mut conn).await, vec![1, 2, 3, 4]);
    })
    .await;
}

/// A real deadlock (1213): another transaction holds a package row the report needs and then
/// asks for the agent's row the report holds. InnoDB rolls back the lighter transaction, the
/// report; it retries and succeeds once the other one is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_chosen_as_deadlock_victim_retries() {
    run_mysql_scratch(|scratch| async move {
        let store = Arc::new(store_where_host_reported_a(&scratch, test_options()).await);
        let mut other = raw(&scratch).await;
        other
            .query_drop(
                "SET SESSION innodb_lock_wait_timeout = 30; START TRANSACTION; \
                 INSERT INTO package (name) SELECT CONCAT('filler', seq) FROM seq_1_to_500; \
                 SELECT id FROM package WHERE name = 'a' FOR UPDATE",
            )
            .await
            .unwrap();
        let before = store.stats();
        let report = spawn_report_of_a_and_b(&store);
        // Wait until the report holds the agent's row and waits for package a.
        let mut watch = raw(&scratch).await;
        wait_for_statement(&mut watch, "SHARE MODE").await;
        let other_outcome = other
            .query_drop("SELECT id FROM agent WHERE name = 'host' FOR UPDATE")
            .await;
        assert!(
            other_outcome.is_ok(),
            "InnoDB should roll back the lighter transaction, the report: {other_outcome:?}"
        );
        other.query_drop("ROLLBACK").await.unwrap();
        report
            .await
            .unwrap()
            .expect("the report retries after the deadlock");
        assert!(store.stats().conflicts > before.conflicts);
        assert_eq!(
            int(&mut watch, "SELECT COUNT(*) FROM task WHERE approved = 0").await,
            2
        );
        drop((other, watch));
    })
    .await;
}
