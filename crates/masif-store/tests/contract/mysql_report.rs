//! MySQL-only tests of the report path: round trips per report, requests arriving together
//! sharing queries and transactions, `last_seen` written behind, bounded retries on real lock
//! timeouts, dropped reports, piled-up approvals.

use std::sync::Arc;
use std::time::Duration;

use masif_proto::TaskSet;
use masif_store::mysql::{MysqlOptions, MysqlStore};
use masif_store::{Reports, StoreError};
use mysql_async::prelude::*;

use crate::mysql_only::{
    close, int, lock_agent_row, narrow_package_names, raw, store_where_host_reported_a,
};
use crate::report::{agent, install, set, update};
use crate::{run_mysql_scratch, test_options};

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
        let retries_before = masif_store::Reports::retries(&store);
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
        // What the master exports as masif_master_db_retries_total.
        assert_eq!(masif_store::Reports::retries(&store) - retries_before, 3);
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
