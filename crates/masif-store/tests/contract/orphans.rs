//! Contract tests of orphan packages (issue 14, item 3): packages no task references are
//! removed with their stale facts, referenced ones (pending or approved) are kept, and the
//! removal racing reports, approvals and revocations never leaves a task naming a package that
//! is gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use masif_proto::facts::{Facts, TaskFacts};
use masif_proto::{Task, TaskSet};
use masif_store::{ApprovalScope, TaskKey};

use crate::fixtures::*;
use crate::{contract_test, TestStore};

async fn package_names(db: &TestStore) -> Vec<String> {
    db.rows("SELECT name FROM package ORDER BY name")
        .await
        .into_iter()
        .map(|row| row[0].clone().unwrap())
        .collect()
}

/// Task rows whose package row is gone.
async fn dangling_tasks(db: &TestStore) -> i64 {
    db.int(
        "SELECT COUNT(*) FROM task t \
         WHERE t.package IS NOT NULL \
           AND NOT EXISTS (SELECT 1 FROM package p WHERE p.id = t.package)",
    )
    .await
}

/// Drops the foreign keys MariaDB 10.5 and later create for the original schema's inline
/// `REFERENCES` (older servers ignored them, so original databases adopted in place have none):
/// the store must not rely on them.
async fn without_foreign_keys(db: &TestStore) {
    if db.backend != crate::Backend::Mysql {
        return; // SQLite does not enforce them (foreign_keys is off)
    }
    let keys = db
        .rows(
            "SELECT CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = 'task'",
        )
        .await;
    for key in keys {
        let name = key[0].clone().unwrap();
        db.exec(&format!("ALTER TABLE task DROP FOREIGN KEY `{name}`"))
            .await;
    }
}

/// Facts naming one task of package `name`.
fn facts_of(task: &Task) -> Facts {
    Facts {
        tasks: [(task.clone(), TaskFacts::default())].into(),
        ..Facts::default()
    }
}

async fn orphans_go_and_referenced_packages_stay(db: &TestStore) {
    let (x, y, w, f) = (
        install("x", "1"),
        install("y", "1"),
        install("w", "1"),
        install("f", "1"),
    );
    db.store
        .report(&agent("a"), &set([x.clone(), y.clone()]))
        .await
        .unwrap();
    // y approved for every agent; z approved before any agent reported it.
    let z = install("z", "1");
    db.store
        .approve(
            &[TaskKey::from(&y), TaskKey::from(&z)],
            &ApprovalScope::AllAgents,
            "alice",
        )
        .await
        .unwrap();
    // a no longer needs x (nor y, which it would take from the approval anyway).
    db.store.report(&agent("a"), &TaskSet::new()).await.unwrap();
    db.store.report(&agent("b"), &set([w])).await.unwrap();
    // c's facts name f; a v1 report then drops f but keeps the stored facts.
    db.store
        .report_with_facts(&agent("c"), &set([f.clone()]), Some(&facts_of(&f)))
        .await
        .unwrap();
    db.store.report(&agent("c"), &TaskSet::new()).await.unwrap();
    db.exec("INSERT INTO package (name) VALUES ('lone')").await;
    assert_eq!(
        db.int("SELECT COUNT(*) FROM task_fact").await,
        1,
        "c's stale fact"
    );

    assert_eq!(db.store.remove_orphan_packages().await.unwrap(), 3);
    assert_eq!(package_names(db).await, ["w", "y", "z"]);
    assert_eq!(db.int("SELECT COUNT(*) FROM task_fact").await, 0);
    assert_eq!(db.store.remove_orphan_packages().await.unwrap(), 0);
    assert_eq!(dangling_tasks(db).await, 0);
    // A package removed comes back when reported again.
    db.store
        .report(&agent("a"), &set([x.clone()]))
        .await
        .unwrap();
    assert_eq!(pending(db, "a").await, rows_of(&[&x]));
    assert_eq!(package_names(db).await, ["w", "x", "y", "z"]);
}

async fn orphan_packages_are_removed(db: TestStore) {
    orphans_go_and_referenced_packages_stay(&db).await;
}
contract_test!(orphan_packages_are_removed);

/// More orphans than one transaction takes, around a referenced package, all go.
async fn orphans_are_removed_in_batches(db: TestStore) {
    let values = |from: usize, to: usize| {
        (from..to)
            .map(|i| format!("('o{i:05}')"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    db.exec(&format!(
        "INSERT INTO package (name) VALUES {}",
        values(0, 1500)
    ))
    .await;
    db.store
        .report(&agent("a"), &set([install("kept", "1")]))
        .await
        .unwrap();
    db.exec(&format!(
        "INSERT INTO package (name) VALUES {}",
        values(1500, 2700)
    ))
    .await;
    assert_eq!(db.store.remove_orphan_packages().await.unwrap(), 2700);
    assert_eq!(package_names(&db).await, ["kept"]);
}
contract_test!(orphans_are_removed_in_batches);

/// Packages the reports draw from: more than the agents report at once, so that packages keep
/// losing their last reference and gaining a new one.
const POOL: usize = 16;

/// The task set agent `agent` reports in round `round`: three packages of the pool, moving
/// with the round.
fn round_set(agent: usize, round: usize) -> TaskSet {
    (0..3)
        .map(|i| install(&format!("p{}", (agent * 5 + round * 3 + i) % POOL), "1"))
        .collect()
}

/// Reports of several agents adding and dropping the same packages, an approval created and
/// revoked over and over (its package orphaned each time), and the removal of orphans in a
/// loop, all at once: every report succeeds (conflicts are retried inside the store), every
/// agent ends with its last set, and no task names a package that is gone.
async fn removal_racing_reports_and_approvals_leaves_no_dangling_task(db: TestStore) {
    const AGENTS: usize = 8;
    const ROUNDS: usize = 40;
    without_foreign_keys(&db).await;
    let done = Arc::new(AtomicBool::new(false));
    let sweeper = tokio::spawn({
        let (store, done) = (db.store.clone(), done.clone());
        async move {
            let mut sweeps = 0u32;
            let mut removed = 0;
            while !done.load(Ordering::Relaxed) {
                removed += store
                    .remove_orphan_packages()
                    .await
                    .expect("removing orphans");
                sweeps += 1;
            }
            (sweeps, removed)
        }
    });
    let approver = tokio::spawn({
        let (store, done) = (db.store.clone(), done.clone());
        async move {
            let mut round = 0;
            while !done.load(Ordering::Relaxed) {
                // Every other round a package of the reports' pool, else one of its own.
                let name = match round % 2 {
                    0 => format!("p{}", round % POOL),
                    _ => format!("q{}", round % 3),
                };
                let key = TaskKey::from(&install(&name, "9"));
                store
                    .approve(&[key], &ApprovalScope::AllAgents, "alice")
                    .await
                    .expect("approving");
                let approvals = store.approvals(Default::default()).await.unwrap();
                for approval in approvals.rows {
                    store.revoke(approval.id, "alice").await.expect("revoking");
                }
                round += 1;
            }
        }
    });
    let reporters: Vec<_> = (0..AGENTS)
        .map(|a| {
            let store = db.store.clone();
            tokio::spawn(async move {
                for round in 0..ROUNDS {
                    let tasks = round_set(a, round);
                    store
                        .report(&agent(&format!("h{a}")), &tasks)
                        .await
                        .unwrap_or_else(|e| panic!("agent h{a}, round {round}: {e}"));
                }
            })
        })
        .collect();
    for reporter in reporters {
        reporter.await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    approver.await.unwrap();
    let (sweeps, removed) = sweeper.await.unwrap();
    eprintln!("{sweeps} sweeps removed {removed} orphan packages meanwhile");
    assert!(sweeps > 0);

    assert_eq!(dangling_tasks(&db).await, 0);
    for a in 0..AGENTS {
        let last = round_set(a, ROUNDS - 1);
        let last: Vec<&Task> = last.iter().collect();
        assert_eq!(pending(&db, &format!("h{a}")).await, rows_of(&last), "h{a}");
    }
    // What is left over is orphans only, and they go.
    db.store.remove_orphan_packages().await.unwrap();
    assert_eq!(dangling_tasks(&db).await, 0);
    let unreferenced = db
        .int(
            "SELECT COUNT(*) FROM package p \
             WHERE NOT EXISTS (SELECT 1 FROM task t WHERE t.package = p.id)",
        )
        .await;
    assert_eq!(unreferenced, 0);
}
contract_test!(removal_racing_reports_and_approvals_leaves_no_dangling_task);

/// MySQL: a writer that has share-locked an orphan package and inserted a task naming it, but
/// not committed yet (what a report or an approval does), makes the removal wait; once it
/// commits, the package is referenced and stays. Deterministic where the race above is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_waits_for_a_writer_holding_the_package() {
    use crate::mysql_only::{int, raw};
    use masif_store::Reports;
    use mysql_async::prelude::*;

    crate::run_mysql_scratch(|scratch| async move {
        let store = std::sync::Arc::new(scratch.store(crate::test_options()).await);
        store
            .report(&agent("host"), &set([install("keep", "1")]))
            .await
            .unwrap();
        let mut admin = raw(&scratch).await;
        admin
            .query_drop("INSERT INTO package (name) VALUES ('p')")
            .await
            .unwrap();
        // Without the foreign keys of MariaDB 10.5+ (see `without_foreign_keys`).
        let keys: Vec<String> = admin
            .query(
                "SELECT CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS \
                 WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = 'task'",
            )
            .await
            .unwrap();
        for key in keys {
            admin
                .query_drop(format!("ALTER TABLE task DROP FOREIGN KEY `{key}`"))
                .await
                .unwrap();
        }
        let mut writer = raw(&scratch).await;
        writer
            .query_drop(
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION; \
                 SELECT id FROM package WHERE name = 'p' LOCK IN SHARE MODE; \
                 INSERT INTO task (agent, package, action, to_version, approved) \
                 SELECT a.id, p.id, 'install', '1', 0 FROM agent a, package p \
                 WHERE a.name = 'host' AND p.name = 'p'",
            )
            .await
            .unwrap();
        let removal = tokio::spawn({
            let store = store.clone();
            async move { store.remove_orphan_packages().await }
        });
        // Wait until a statement of the removal has been blocked on the writer's lock for a
        // while (a guard against hanging, not a timing assertion), then commit the writer.
        let blocked = "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                       WHERE DB = DATABASE() AND ID <> CONNECTION_ID() \
                         AND INFO LIKE '%FROM package%' AND TIME_MS > 300";
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while int(&mut admin, blocked).await == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the removal never waited"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        writer.query_drop("COMMIT").await.unwrap();
        assert_eq!(removal.await.unwrap().unwrap(), 0);
        let dangling = int(
            &mut admin,
            "SELECT COUNT(*) FROM task t WHERE NOT EXISTS \
             (SELECT 1 FROM package p WHERE p.id = t.package)",
        )
        .await;
        assert_eq!(dangling, 0);
        assert_eq!(
            int(&mut admin, "SELECT COUNT(*) FROM package WHERE name = 'p'").await,
            1
        );
        drop((admin, writer));
    })
    .await;
}
