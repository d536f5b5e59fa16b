//! Contract tests of what long-polling agents are answered from, run against every back end:
//! the approval token changes with every approval change (shallow: through the store; deep:
//! also rows written straight into `task`), and the approvals in force, matched in memory,
//! answer exactly as the report transaction does.

use masif_proto::v2::Outcome;
use masif_proto::{Action, TaskSet};
use masif_store::{ApprovalScope, ApprovalToken};

use crate::admin::{agents, approve, key, perl_52, seed};
use crate::contract_test;
use crate::report::{agent, approve_raw, install, set, task, update};
use crate::runs::{record, run};
use crate::{Backend, TestStore};

async fn shallow(db: &TestStore) -> ApprovalToken {
    let token = db.store.approval_token(false).await.unwrap();
    assert_eq!(token.rows, None, "a shallow token reads no approval rows");
    token
}

async fn deep(db: &TestStore) -> ApprovalToken {
    db.store.approval_token(true).await.unwrap()
}

async fn the_token_changes_with_every_change_made_through_the_store(db: TestStore) {
    seed(&db).await;
    let mut last = shallow(&db).await;
    // Approvals and revocations move the generation alone; resets the gate's counter too
    // (tags and leases may go).
    let mut changed = |now: ApprovalToken, gate_moves: bool, what: &str| {
        assert!(
            now.generation > last.generation,
            "{what}: {now:?} after {last:?}"
        );
        assert_eq!(
            now.gate > last.gate,
            gate_moves,
            "{what}: {now:?} after {last:?}"
        );
        last = now;
    };
    approve(&db, &[perl_52()], &ApprovalScope::AllAgents).await;
    changed(shallow(&db).await, false, "approve for all");
    approve(
        &db,
        &[key("newpkg", Action::Install, Some("1.0"))],
        &agents(&["c"]),
    )
    .await;
    changed(shallow(&db).await, false, "approve for one");
    // Approving what is approved already changes nothing, yet the token moves: whoever waits
    // looks again and finds the same answer.
    approve(&db, &[perl_52()], &ApprovalScope::AllAgents).await;
    changed(shallow(&db).await, false, "approve again");
    let id = db.store.approvals(crate::admin::all()).await.unwrap().rows[0].id;
    assert!(db.store.revoke(id, "bob").await.unwrap());
    changed(shallow(&db).await, false, "revoke");
    db.store.reset(false, "carol").await.unwrap();
    changed(shallow(&db).await, true, "reset of tasks");
    db.store.reset(true, "carol").await.unwrap();
    changed(shallow(&db).await, true, "reset of everything");
    // Reports and run results are no approval change.
    db.store
        .report(&agent("a"), &set([install("x", "1")]))
        .await
        .unwrap();
    let failed = run("r1", "x", 1, Outcome::Failed);
    record(&db, "a", &[failed]).await;
    assert_eq!(shallow(&db).await, last);
}
contract_test!(the_token_changes_with_every_change_made_through_the_store);

async fn only_a_deep_token_notices_approvals_written_into_the_tables(db: TestStore) {
    let (shallow_before, deep_before) = (shallow(&db).await, deep(&db).await);
    assert_eq!(deep_before.rows, Some((0, 0)));
    // What the original UI does: an approval row written straight into task.
    approve_raw(&db, None, Some("perl"), Some("update"), None, Some("2")).await;
    assert_eq!(shallow(&db).await, shallow_before);
    let after_insert = deep(&db).await;
    assert_ne!(after_insert, deep_before);
    let first_id = db.int("SELECT id FROM task WHERE approved = 1").await as u64;
    assert_eq!(after_insert.rows, Some((1, first_id)));
    // One row deleted and another written: the same count, another id sum.
    db.exec("DELETE FROM task WHERE approved = 1").await;
    approve_raw(&db, Some("a"), None, None, None, None).await;
    let after_swap = deep(&db).await;
    assert_eq!(after_swap.rows.unwrap().0, 1);
    assert_ne!(after_swap, after_insert);
    // Pending rows are not approvals.
    db.store
        .report(&agent("b"), &set([install("x", "1")]))
        .await
        .unwrap();
    assert_eq!(deep(&db).await, after_swap);
    assert_eq!(shallow(&db).await, shallow_before);
}
contract_test!(only_a_deep_token_notices_approvals_written_into_the_tables);

/// The reports every agent of [`approvals_in_force_answer_as_reports_do`] sends.
fn reports() -> Vec<TaskSet> {
    vec![
        set([
            update("perl", "5.1", "5.2"),
            update("bash", "5.0", "5.1"),
            install("curl", "7.0"),
            task("old", Action::Remove, Some("1"), None),
            task("half", Action::Configure, None, Some("3")),
        ]),
        set([
            update("perl", "5.0", "5.2"),
            update("libc6", "2.36-1", "2.36-2"),
        ]),
        set([update("perl", "5.1", "5.3"), install("curl", "7.1")]),
        TaskSet::new(),
    ]
}

async fn approvals_in_force_answer_as_reports_do(db: TestStore) {
    for name in ["a", "b", "c"] {
        db.store.report(&agent(name), &set([])).await.unwrap();
    }
    // For every agent, with wildcard columns.
    approve_raw(&db, None, Some("perl"), Some("update"), None, Some("5.2")).await;
    approve_raw(&db, None, None, Some("remove"), None, None).await;
    approve_raw(&db, None, Some("curl"), None, None, None).await;
    // For one agent: by package only, by everything, a wildcard for all its tasks.
    approve_raw(&db, Some("a"), Some("bash"), None, None, None).await;
    approve_raw(
        &db,
        Some("b"),
        Some("libc6"),
        Some("update"),
        Some("2.36-1"),
        Some("2.36-2"),
    )
    .await;
    approve_raw(&db, Some("c"), None, None, None, None).await;
    // Through the store, for one agent and for all.
    approve(
        &db,
        &[key("half", Action::Configure, Some("3"))],
        &agents(&["a"]),
    )
    .await;
    approve(
        &db,
        &[key("perl", Action::Update, Some("5.3"))],
        &ApprovalScope::AllAgents,
    )
    .await;
    // Rows naming an agent or a package that is gone match nothing, as in a report: they are no
    // wildcards. (Written with foreign key checks off, as tools that delete agents leave them.)
    let (off, on) = match db.backend {
        Backend::Mysql => ("SET FOREIGN_KEY_CHECKS = 0", "SET FOREIGN_KEY_CHECKS = 1"),
        Backend::Sqlite => ("PRAGMA foreign_keys = OFF", "PRAGMA foreign_keys = ON"),
    };
    db.exec(&format!(
        "{off}; INSERT INTO task (agent, package, from_version, to_version, action, approved) \
         VALUES (999999, NULL, NULL, NULL, NULL, 1), (NULL, 999999, NULL, NULL, NULL, 1); {on}"
    ))
    .await;

    let patterns = db.store.approval_patterns().await.unwrap();
    // Agent "new" has no row yet; "a'b" shows names are not patterns.
    for name in ["a", "b", "c", "new", "a'b"] {
        for tasks in reports() {
            let me = agent(name);
            let in_memory = patterns.approved(&me, &tasks);
            let reported = db.store.report(&me, &tasks).await.unwrap();
            assert_eq!(in_memory, reported, "agent {name}, tasks {tasks:?}");
        }
    }
    // The answers are not trivially alike: some tasks are approved, others are not.
    let first = &reports()[0];
    let for_a = patterns.approved(&agent("a"), first);
    assert_eq!(
        for_a,
        set([
            update("perl", "5.1", "5.2"),
            update("bash", "5.0", "5.1"),
            install("curl", "7.0"),
            task("old", Action::Remove, Some("1"), None),
            task("half", Action::Configure, None, Some("3")),
        ])
    );
    let for_b = patterns.approved(&agent("b"), first);
    assert_eq!(
        for_b,
        set([
            update("perl", "5.1", "5.2"),
            install("curl", "7.0"),
            task("old", Action::Remove, Some("1"), None),
        ])
    );
    assert_eq!(patterns.approved(&agent("c"), first), *first);
    // Once revoked, the in-memory answer follows a fresh read, like the report.
    db.exec("DELETE FROM task WHERE approved = 1 AND package IS NULL AND agent IS NOT NULL")
        .await;
    let patterns = db.store.approval_patterns().await.unwrap();
    let reported = db.store.report(&agent("c"), first).await.unwrap();
    assert_eq!(patterns.approved(&agent("c"), first), reported);
    assert_ne!(reported, *first);
}
contract_test!(approvals_in_force_answer_as_reports_do);
