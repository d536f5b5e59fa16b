//! MySQL/MariaDB-only tests: schema import and adoption of an original database, concurrent
//! migrations, strict mode, round trips per report, bounded retries on real lock timeouts and
//! what a dropped report leaves behind.

use std::sync::Arc;
use std::time::Duration;

use masif_proto::TaskSet;
use masif_store::mysql::{MysqlOptions, MysqlStore};
use masif_store::{Reports, StoreError};
use mysql_async::prelude::*;
use mysql_async::Conn;

use crate::report::{agent, install, set, update};
use crate::server::Throwaway;
use crate::{run_mysql_scratch, test_options, MysqlScratch};

const ORIGINAL_SCHEMA: &str = include_str!("../../../../schema/mysql/0001_original.sql");
const MIGRATIONS: i64 = 8;

async fn raw(scratch: &MysqlScratch) -> Conn {
    scratch.raw_pool().get_conn().await.unwrap()
}

async fn int(conn: &mut Conn, sql: &str) -> i64 {
    conn.query_first::<i64, _>(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

/// An installation whose package names are narrower than what the protocol allows.
async fn narrow_package_names(conn: &mut Conn) {
    conn.query_drop(
        "ALTER TABLE package MODIFY name VARCHAR(8) CHARACTER SET utf8mb4 \
         COLLATE utf8mb4_bin NOT NULL",
    )
    .await
    .unwrap();
}

/// Closes a store shared with report tasks that have all finished.
async fn close(store: Arc<MysqlStore>) {
    Arc::try_unwrap(store)
        .expect("no report task still holds the store")
        .disconnect()
        .await
        .unwrap();
}

/// The schema versions recorded.
async fn versions(conn: &mut Conn) -> Vec<u32> {
    conn.query("SELECT version FROM masif_schema_version ORDER BY version")
        .await
        .unwrap()
}

/// Reports installs of a and b as agent "host" in a task of its own, to run into a lock.
fn spawn_report_of_a_and_b(
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
async fn store_where_host_reported_a(scratch: &MysqlScratch, options: MysqlOptions) -> MysqlStore {
    let store = scratch.store(options).await;
    store
        .report(&agent("host"), &set([install("a", "1")]))
        .await
        .unwrap();
    store
}

/// A connection in a transaction holding agent "host"'s row lock.
async fn lock_agent_row(scratch: &MysqlScratch) -> Conn {
    let mut holder = raw(scratch).await;
    holder.query_drop("START TRANSACTION").await.unwrap();
    holder
        .query_drop("SELECT id FROM agent WHERE name = 'host' FOR UPDATE")
        .await
        .unwrap();
    holder
}

/// Waits until another connection to this database runs a statement containing `text`.
async fn wait_for_statement(watch: &mut Conn, text: &str) {
    let sql = format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
         WHERE DB = DATABASE() AND ID <> CONNECTION_ID() AND INFO LIKE '%{text}%'"
    );
    while int(watch, &sql).await == 0 {
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

/// Round trips per report, counted by the store: an unchanged report is one read-only query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_per_report() {
    run_mysql_scratch(|scratch| async move {
        let store = scratch.store(test_options()).await;
        let me = agent("host");
        let tasks: TaskSet = (0..20)
            .map(|i| update(&format!("pkg{i}"), "1", "2"))
            .collect();
        let trips = |before: masif_store::mysql::ReportStats, store: &MysqlStore| {
            let after = store.stats();
            (
                after.round_trips - before.round_trips,
                after.write_transactions - before.write_transactions,
            )
        };
        // First report: snapshot, then the 2 round trips of the transaction, which creates
        // the agent and package rows too.
        let s = store.stats();
        store.report(&me, &tasks).await.unwrap();
        assert_eq!(trips(s, &store), (3, 1));
        // Unchanged: one read-only round trip, no transaction.
        let s = store.stats();
        store.report(&me, &tasks).await.unwrap();
        assert_eq!(trips(s, &store), (1, 0));
        // Changed, all packages known: snapshot + 2.
        let fewer: TaskSet = tasks.iter().skip(1).cloned().collect();
        let s = store.stats();
        store.report(&me, &fewer).await.unwrap();
        assert_eq!(trips(s, &store), (3, 1));
        // Another agent with the same packages: the same.
        let s = store.stats();
        store.report(&agent("other"), &fewer).await.unwrap();
        assert_eq!(trips(s, &store), (3, 1));
        store.disconnect().await.unwrap();
    })
    .await;
}

/// Unchanged reports arriving together share snapshot queries: 200 agents' steady-state
/// reports cost far fewer than 200 round trips, and every answer is still right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unchanged_reports_share_round_trips() {
    run_mysql_scratch(|scratch| async move {
        let store = Arc::new(scratch.store(test_options()).await);
        let tasks: TaskSet = (0..20)
            .map(|i| update(&format!("pkg{i}"), "1", "2"))
            .collect();
        let names: Vec<_> = (0..200).map(|i| agent(&format!("host{i}"))).collect();
        for name in &names {
            store.report(name, &tasks).await.unwrap();
        }
        let mut conn = raw(&scratch).await;
        conn.query_drop(
            "INSERT INTO task (agent, package, to_version, action, approved) \
             SELECT a.id, p.id, '2', 'update', 1 FROM agent a, package p \
             WHERE a.name = 'host7' AND p.name = 'pkg3'",
        )
        .await
        .unwrap();
        let before = store.stats();
        let reports: Vec<_> = names.iter().map(|n| (n.clone(), tasks.clone())).collect();
        let answers = report_all_at_once(&store, &reports).await;
        let after = store.stats();
        for (name, answer) in names.iter().zip(answers) {
            let expected: TaskSet = if name.as_str() == "host7" {
                set([update("pkg3", "1", "2")])
            } else {
                TaskSet::new()
            };
            assert_eq!(answer.unwrap(), expected, "{name}");
        }
        // host7's report changed (pkg3 is no longer pending): one write.
        assert_eq!(after.write_transactions - before.write_transactions, 1);
        let trips = after.round_trips - before.round_trips;
        assert!(trips < 100, "{trips} round trips for 200 reports");
        close(store).await;
    })
    .await;
}

/// `last_seen` of unchanged reports is written behind them, every agent due in one UPDATE, and
/// what is still due when the master finishes is written then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_seen_is_written_behind_and_at_flush() {
    run_mysql_scratch(|scratch| async move {
        let options = MysqlOptions {
            last_seen_flush: Duration::from_secs(3600),
            ..test_options()
        };
        let store = scratch.store(options).await;
        let tasks = set([install("a", "1")]);
        let names: Vec<_> = (0..50).map(|i| agent(&format!("host{i}"))).collect();
        for name in &names {
            store.report(name, &tasks).await.unwrap();
        }
        let mut conn = raw(&scratch).await;
        conn.query_drop("UPDATE agent_report SET last_seen = 1")
            .await
            .unwrap();
        let before = store.stats();
        for name in &names {
            store.report(name, &tasks).await.unwrap();
        }
        // Nothing written yet: the next flush is an hour away.
        assert_eq!(
            int(
                &mut conn,
                "SELECT COUNT(*) FROM agent_report WHERE last_seen = 1"
            )
            .await,
            50
        );
        assert_eq!(store.stats().round_trips - before.round_trips, 50);
        // What the master calls at shutdown.
        store.flush().await;
        assert_eq!(
            int(
                &mut conn,
                "SELECT COUNT(*) FROM agent_report WHERE last_seen > 1"
            )
            .await,
            50
        );
        store.disconnect().await.unwrap();
    })
    .await;
}

/// Reports of `agents` sent all at once, each from its own task; the answers in order.
async fn report_all_at_once(
    store: &Arc<MysqlStore>,
    agents: &[(masif_proto::AgentName, TaskSet)],
) -> Vec<masif_store::Result<TaskSet>> {
    let handles: Vec<_> = agents
        .iter()
        .cloned()
        .map(|(name, tasks)| {
            let store = store.clone();
            tokio::spawn(async move { store.report(&name, &tasks).await })
        })
        .collect();
    let mut answers = Vec::new();
    for handle in handles {
        answers.push(handle.await.unwrap());
    }
    answers
}

/// First reports arriving together share write transactions: 200 new agents cost far fewer
/// than 200 × 3 round trips, and each ends up with exactly its own pending rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_reports_share_transactions() {
    run_mysql_scratch(|scratch| async move {
        let store = Arc::new(scratch.store(test_options()).await);
        let agents: Vec<_> = (0..200)
            .map(|i| {
                let tasks: TaskSet = (0..5)
                    .map(|t| update(&format!("pkg{}", (i + t) % 9), "1", &format!("2.{i}")))
                    .collect();
                (agent(&format!("host{i:03}")), tasks)
            })
            .collect();
        let before = store.stats();
        for answer in report_all_at_once(&store, &agents).await {
            assert_eq!(answer.unwrap(), TaskSet::new());
        }
        let after = store.stats();
        assert_eq!(after.write_transactions - before.write_transactions, 200);
        let trips = after.round_trips - before.round_trips;
        assert!(trips < 300, "{trips} round trips for 200 first reports");
        let mut conn = raw(&scratch).await;
        for (name, tasks) in &agents {
            let rows: Vec<(String, String)> = conn
                .exec(
                    "SELECT p.name, t.to_version FROM task t JOIN agent a ON a.id = t.agent \
                     JOIN package p ON p.id = t.package WHERE a.name = ? AND t.approved = 0 \
                     ORDER BY 1",
                    (name.as_str(),),
                )
                .await
                .unwrap();
            let expected: Vec<(String, String)> = tasks
                .iter()
                .map(|t| (t.package().to_string(), t.to_version().unwrap().to_string()))
                .collect();
            assert_eq!(rows, expected, "{name}");
        }
        assert_eq!(
            int(&mut conn, "SELECT COUNT(*) FROM agent_report").await,
            200
        );
        assert_eq!(int(&mut conn, "SELECT COUNT(*) FROM package").await, 9);
        drop(conn);
        close(store).await;
    })
    .await;
}

/// A report the database refuses does not take the reports written with it down: the others
/// are stored, the bad one gets its error and leaves no row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_report_does_not_fail_the_others() {
    run_mysql_scratch(|scratch| async move {
        let store = Arc::new(scratch.store(test_options()).await);
        let mut conn = raw(&scratch).await;
        narrow_package_names(&mut conn).await;
        let agents: Vec<_> = (0..30)
            .map(|i| {
                let package = if i == 13 {
                    "a-long-package-name".to_owned()
                } else {
                    format!("ok{i}")
                };
                (agent(&format!("host{i}")), set([install(&package, "1")]))
            })
            .collect();
        let answers = report_all_at_once(&store, &agents).await;
        for (i, answer) in answers.into_iter().enumerate() {
            if i == 13 {
                let err = answer.unwrap_err();
                assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
            } else {
                assert_eq!(answer.unwrap(), TaskSet::new(), "host{i}");
            }
        }
        assert_eq!(int(&mut conn, "SELECT COUNT(*) FROM agent").await, 29);
        assert_eq!(int(&mut conn, "SELECT COUNT(*) FROM task").await, 29);
        assert_eq!(
            int(
                &mut conn,
                "SELECT COUNT(*) FROM agent WHERE name = 'host13'"
            )
            .await,
            0
        );
        drop(conn);
        close(store).await;
    })
    .await;
}

/// Holds the agent's row lock from another connection: the report gets real lock wait
/// timeouts (1205), retries a bounded number of times, gives up, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded_on_real_lock_timeouts() {
    run_mysql_scratch(|scratch| async move {
        let store = store_where_host_reported_a(
            &scratch,
            MysqlOptions {
                lock_wait_timeout: Some(1),
                max_attempts: 3,
                ..test_options()
            },
        )
        .await;
        let me = agent("host");
        let mut holder = lock_agent_row(&scratch).await;
        let before = store.stats();
        let err = store
            .report(&me, &set([install("a", "1"), install("b", "1")]))
            .await
            .unwrap_err();
        // The last conflict is kept: the server's lock wait timeout.
        assert!(
            matches!(&err, StoreError::RetriesExhausted { attempts: 3, last }
                if matches!(&**last, StoreError::Mysql { source, .. }
                    if matches!(&**source, mysql_async::Error::Server(e) if e.code == 1205))),
            "{err:?}"
        );
        assert_eq!(store.stats().conflicts - before.conflicts, 3);
        // Unchanged reports do not need the lock.
        store.report(&me, &set([install("a", "1")])).await.unwrap();
        holder.query_drop("ROLLBACK").await.unwrap();
        let mut conn = raw(&scratch).await;
        assert_eq!(
            int(&mut conn, "SELECT COUNT(*) FROM task WHERE approved = 0").await,
            1
        );
        store
            .report(&me, &set([install("a", "1"), install("b", "1")]))
            .await
            .unwrap();
        assert_eq!(
            int(&mut conn, "SELECT COUNT(*) FROM task WHERE approved = 0").await,
            2
        );
        drop((conn, holder));
        store.disconnect().await.unwrap();
    })
    .await;
}

/// A report abandoned mid-transaction (the client went away; the master's deadline dropped
/// the future) leaves no transaction or lock behind, and the connection is usable again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_report_leaves_no_transaction_behind() {
    run_mysql_scratch(|scratch| async move {
        let options = MysqlOptions {
            pool_max: 1,
            lock_wait_timeout: Some(3),
            ..test_options()
        };
        let store = Arc::new(store_where_host_reported_a(&scratch, options).await);
        let me = agent("host");
        let mut holder = lock_agent_row(&scratch).await;
        let changed = set([install("a", "1"), install("b", "1")]);
        let abandoned =
            tokio::time::timeout(Duration::from_millis(300), store.report(&me, &changed)).await;
        assert!(abandoned.is_err(), "the report should still be waiting");
        // The server now grants the abandoned statement the lock; the pool must roll back.
        holder.query_drop("ROLLBACK").await.unwrap();
        holder
            .query_drop("SET SESSION innodb_lock_wait_timeout = 10")
            .await
            .unwrap();
        holder.query_drop("START TRANSACTION").await.unwrap();
        holder
            .query_drop("SELECT id FROM agent WHERE name = 'host' FOR UPDATE")
            .await
            .expect("the abandoned transaction still holds the agent's lock");
        holder.query_drop("ROLLBACK").await.unwrap();
        let mut conn = raw(&scratch).await;
        assert_eq!(
            int(&mut conn, "SELECT COUNT(*) FROM task WHERE approved = 0").await,
            1,
            "the abandoned report wrote nothing"
        );
        // The single pooled connection works, outside any transaction.
        store.report(&me, &changed).await.unwrap();
        assert_eq!(
            int(&mut conn, "SELECT COUNT(*) FROM task WHERE approved = 0").await,
            2
        );
        drop((conn, holder));
    })
    .await;
}

/// Approvals for other agents pile up without making a report read them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piled_up_approvals_of_other_agents_are_not_read() {
    run_mysql_scratch(|scratch| async move {
        let store = scratch.store(test_options()).await;
        let mut conn = raw(&scratch).await;
        conn.query_drop(
            "INSERT INTO package (name) VALUES ('perl');
             INSERT INTO agent (name, ctime, mtime)
               SELECT CONCAT('other', seq), 1, 1 FROM seq_1_to_3000;
             INSERT INTO task (agent, package, from_version, to_version, action, approved)
               SELECT a.id, p.id, NULL, '2', 'update', 1 FROM agent a, package p;",
        )
        .await
        .unwrap();
        let perl = update("perl", "1", "2");
        let answer = store
            .report(&agent("me"), &set([perl.clone()]))
            .await
            .unwrap();
        assert!(answer.is_empty(), "other agents' approvals do not apply");
        // The plans read approvals by index range: per package, for NULL and for this agent.
        for branch in [
            "t.agent IS NULL",
            "t.agent = (SELECT id FROM agent WHERE name = 'me')",
        ] {
            let plan: Vec<mysql_async::Row> = conn
                .query(format!(
                    "EXPLAIN SELECT t.id FROM package p JOIN task t ON t.package = p.id \
                     WHERE p.name IN ('perl') AND t.approved = 1 AND {branch}"
                ))
                .await
                .unwrap();
            let task_row = plan
                .into_iter()
                .find(|r| r.get::<String, _>("table").as_deref() == Some("t"))
                .unwrap();
            let key: Option<String> = task_row.get("key").unwrap();
            let rows: u64 = task_row.get("rows").unwrap();
            assert!(
                matches!(
                    key.as_deref(),
                    Some("task_approval" | "task_agent_approved")
                ),
                "{branch}: {key:?}"
            );
            assert!(rows < 100, "{branch}: {rows} rows examined");
        }
        // One approval for everybody does apply.
        conn.query_drop(
            "INSERT INTO task (agent, package, from_version, to_version, action, approved) \
             SELECT NULL, id, NULL, '2', 'update', 1 FROM package WHERE name = 'perl'",
        )
        .await
        .unwrap();
        let answer = store
            .report(&agent("me"), &set([perl.clone()]))
            .await
            .unwrap();
        assert_eq!(answer, set([perl]));
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

/// The server going away makes a report fail with a database error (the master answers
/// 500), not hang.
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
    assert!(matches!(err, StoreError::Mysql { .. }), "{err:?}");
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
