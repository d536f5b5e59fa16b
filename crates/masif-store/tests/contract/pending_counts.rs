//! Contract tests of the pending tasks counted by action (the UI's `masif_pending_tasks`
//! gauge): every action listed, approvals and approved tasks not counted, rows of a NULL
//! action (allowed by the original schema) skipped.

use masif_proto::Action;
use masif_store::ApprovalScope;

use crate::admin::{key, remove};
use crate::contract_test;
use crate::report::{agent, approve_raw, install, set, task, update};
use crate::TestStore;

fn counts(pairs: [u64; 5]) -> Vec<(Action, u64)> {
    Action::ALL.into_iter().zip(pairs).collect()
}

async fn pending_tasks_are_counted_by_action(db: TestStore) {
    assert_eq!(
        db.store.pending_by_action().await.unwrap(),
        counts([0, 0, 0, 0, 0]),
        "an empty database lists every action at zero"
    );
    let configure = task("perl", Action::Configure, None, Some("5.2"));
    db.store
        .report(
            &agent("a"),
            &set([
                install("nginx", "1.0"),
                update("perl", "5.1", "5.2"),
                configure.clone(),
                remove("telnet", "0.17"),
            ]),
        )
        .await
        .unwrap();
    db.store
        .report(
            &agent("b"),
            &set([
                update("perl", "5.1", "5.2"),
                configure,
                remove("telnet", "0.17"),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(
        db.store.pending_by_action().await.unwrap(),
        counts([1, 2, 2, 2, 0])
    );
    // Approving for agent a turns a's rows into one approval row: a's pending rows go, the
    // approval itself is not pending.
    db.store
        .approve(
            &[key("telnet", Action::Remove, None)],
            &ApprovalScope::Agents(vec![agent("a")]),
            "alice",
        )
        .await
        .unwrap();
    // An approval row written by the original UI for every agent, and a pending row with a
    // NULL action, count for nothing.
    approve_raw(&db, None, Some("nginx"), Some("install"), None, Some("1.0")).await;
    db.exec(
        "INSERT INTO task (agent, package, action, approved)
         SELECT a.id, p.id, NULL, 0 FROM agent a, package p
          WHERE a.name = 'b' AND p.name = 'nginx'",
    )
    .await;
    assert_eq!(
        db.store.pending_by_action().await.unwrap(),
        counts([1, 2, 2, 1, 0])
    );
}
contract_test!(pending_tasks_are_counted_by_action);
