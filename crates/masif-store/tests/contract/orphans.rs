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
    db.store.report(&agent("a"), &set([x.clone()])).await.unwrap();
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
    db.exec(&format!("INSERT INTO package (name) VALUES {}", values(0, 1500)))
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

/// The task set agent `agent` reports in round `round`: three of six shared packages, moving
/// with the round, so packages keep losing their last reference and gaining a new one.
fn round_set(agent: usize, round: usize) -> TaskSet {
    (0..3)
        .map(|i| install(&format!("p{}", (agent + round + i * 2) % 6), "1"))
        .collect()
}

/// Reports of several agents adding and dropping the same packages, an approval created and
/// revoked over and over (its package orphaned each time), and the removal of orphans in a
/// loop, all at once: every report succeeds (conflicts are retried inside the store), every
/// agent ends with its last set, and no task names a package that is gone.
async fn removal_racing_reports_and_approvals_leaves_no_dangling_task(db: TestStore) {
    const AGENTS: usize = 6;
    const ROUNDS: usize = 25;
    let done = Arc::new(AtomicBool::new(false));
    let sweeper = tokio::spawn({
        let (store, done) = (db.store.clone(), done.clone());
        async move {
            let mut sweeps = 0u32;
            let mut removed = 0;
            while !done.load(Ordering::Relaxed) {
                removed += store.remove_orphan_packages().await.expect("removing orphans");
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
                let key = TaskKey::from(&install(&format!("p{}", round % 6), "9"));
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
