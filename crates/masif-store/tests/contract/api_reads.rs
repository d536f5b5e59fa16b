//! Contract tests of what the JSON API adds to the `Admin` half, run against every back end:
//! the pending overview filtered by action, the time a pending row was first reported
//! (`since`), and approvals that name the version a package is upgraded from.

use masif_proto::{Action, Version};
use masif_store::{ApprovalScope, ApprovalTask, PendingFilter, StoreError};

use crate::admin::{all, key, overview, perl_52, row, seed};
use crate::contract_test;
use crate::report::{agent, dump, now, pending, set, update};
use crate::TestStore;

async fn overview_filters_by_action(db: TestStore) {
    seed(&db).await;
    let by = |action| PendingFilter {
        action: Some(action),
        ..PendingFilter::default()
    };
    let (shape, total) = overview(&db, &by(Action::Install), all()).await;
    assert_eq!(total, 1);
    assert_eq!(
        shape,
        vec![("newpkg".into(), 1, vec![row("install", Some("1.0"), 1)])]
    );
    let (shape, total) = overview(&db, &by(Action::Update), all()).await;
    assert_eq!(total, 2, "{shape:?}");
    assert!(shape
        .iter()
        .all(|(_, _, rows)| rows.iter().all(|r| r.0 == "update")));
    // With an agent filter: b awaits no install.
    let both = PendingFilter {
        agent: Some("b".into()),
        ..by(Action::Install)
    };
    let (shape, total) = overview(&db, &both, all()).await;
    assert_eq!((shape.len(), total), (0, 0));
    let (_, total) = overview(&db, &by(Action::Purge), all()).await;
    assert_eq!(total, 0);
}
contract_test!(overview_filters_by_action);

async fn since_is_when_the_earliest_agent_first_reported_a_row(db: TestStore) {
    let before = now();
    db.store
        .report(&agent("a"), &set([update("perl", "5.1", "5.2")]))
        .await
        .unwrap();
    let after_a = now();
    // Backdate a's row, as if it had been reported long ago.
    db.exec("UPDATE task SET ctime = 1000 WHERE approved = 0")
        .await;
    db.store
        .report(&agent("b"), &set([update("perl", "5.0", "5.2")]))
        .await
        .unwrap();
    let o = db
        .store
        .pending_overview(&PendingFilter::default(), all())
        .await
        .unwrap();
    assert_eq!(o.groups[0].rows[0].since, Some(1000));
    // A report that keeps the row keeps its time; b's own row is from now.
    db.store
        .report(&agent("a"), &set([update("perl", "5.1", "5.2")]))
        .await
        .unwrap();
    db.store.flush().await;
    let times = db
        .rows("SELECT ctime FROM task WHERE approved = 0 ORDER BY ctime")
        .await;
    assert_eq!(times[0][0].as_deref(), Some("1000"));
    let b_time: i64 = times[1][0].as_deref().unwrap().parse().unwrap();
    assert!(b_time >= before && b_time <= now(), "{b_time}");
    assert!(after_a <= now());
    // Rows without a time (the original master's) do not make one up.
    db.exec("UPDATE task SET ctime = NULL").await;
    let o = db
        .store
        .pending_overview(&PendingFilter::default(), all())
        .await
        .unwrap();
    assert_eq!(o.groups[0].rows[0].since, None);
}
contract_test!(since_is_when_the_earliest_agent_first_reported_a_row);

fn from(task: masif_store::TaskKey, version: &str) -> ApprovalTask {
    ApprovalTask {
        key: task,
        from_version: Some(Version::new(version).unwrap()),
    }
}

async fn an_approval_from_a_version_covers_only_that_version(db: TestStore) {
    // a and c update perl from 5.1, d from 5.0, all to 5.2.
    seed(&db).await;
    db.store
        .report(&agent("d"), &set([update("perl", "5.0", "5.2")]))
        .await
        .unwrap();
    let outcome = db
        .store
        .approve_tasks(&[from(perl_52(), "5.1")], &ApprovalScope::AllAgents, "api")
        .await
        .unwrap();
    // The update from 5.1 and the configure step of 5.2 (from any version).
    assert_eq!(outcome.approvals_written, 2);
    assert_eq!(outcome.pending_rows_approved, 2, "a's and c's update rows");
    let approvals = db.store.approvals(all()).await.unwrap();
    let update_row = approvals
        .rows
        .iter()
        .find(|a| a.action == Some(Action::Update))
        .unwrap();
    assert_eq!(
        update_row.from_version.as_ref().map(Version::as_str),
        Some("5.1")
    );
    let log = db.store.audit_log(all()).await.unwrap();
    assert!(
        log.rows[0].detail.contains("update perl 5.2 from 5.1"),
        "{}",
        log.rows[0].detail
    );
    // d still awaits its update from 5.0, and its report gets nothing approved.
    assert_eq!(pending(&db, "d").await.len(), 1);
    let d = set([update("perl", "5.0", "5.2")]);
    assert!(db.store.report(&agent("d"), &d).await.unwrap().is_empty());
    // a's report gets its update from 5.1 approved.
    let a = set([update("perl", "5.1", "5.2")]);
    assert_eq!(db.store.report(&agent("a"), &a).await.unwrap(), a);
    // The same approval again writes nothing; one from 5.0 is a separate row.
    let again = db
        .store
        .approve_tasks(&[from(perl_52(), "5.1")], &ApprovalScope::AllAgents, "api")
        .await
        .unwrap();
    assert_eq!(again.approvals_written, 0);
    let other = db
        .store
        .approve_tasks(&[from(perl_52(), "5.0")], &ApprovalScope::AllAgents, "api")
        .await
        .unwrap();
    assert_eq!(other.approvals_written, 1, "the configure step is in force");
    assert_eq!(other.pending_rows_approved, 1);
    assert_eq!(db.store.report(&agent("d"), &d).await.unwrap(), d);
}
contract_test!(an_approval_from_a_version_covers_only_that_version);

async fn an_approval_for_an_unknown_agent_changes_nothing(db: TestStore) {
    seed(&db).await;
    let before = dump(&db).await;
    let scope = ApprovalScope::Agents(vec![agent("a"), agent("nobody")]);
    let err = db
        .store
        .approve_tasks(
            &[ApprovalTask::from(key(
                "libc6",
                Action::Update,
                Some("2.36-2"),
            ))],
            &scope,
            "api",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid(m) if m.contains("nobody")),
        "{err}"
    );
    assert_eq!(dump(&db).await, before);
}
contract_test!(an_approval_for_an_unknown_agent_changes_nothing);
