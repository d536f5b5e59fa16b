//! Contract tests of what the UI lists and undoes, run against every back end: approvals in
//! force newest first with who/when, revocation, reset (and the report state it keeps) and the
//! audit log.

use masif_proto::Action;
use masif_store::{ApprovalScope, Page, TableCounts};

use crate::admin::{agents, all, approve, audit_actions, key, perl_52, seed};
use crate::contract_test;
use crate::report::{agent, approve_raw, dump, install, now, pending, set, update};
use crate::TestStore;

async fn approvals_are_listed_newest_first(db: TestStore) {
    seed(&db).await;
    // One made by the original UI: no record of who or when.
    approve_raw(&db, None, Some("vim"), Some("update"), None, Some("9.0")).await;
    approve(&db, &[perl_52()], &ApprovalScope::AllAgents).await;
    db.store
        .approve(
            &[key("libc6", Action::Update, Some("2.36-2"))],
            &agents(&["a", "b"]),
            "bob",
        )
        .await
        .unwrap();
    // Each update brings its configure step: 1 + 2 + 2 × 2 rows.
    let listing = db.store.approvals(all()).await.unwrap();
    assert_eq!(listing.total, 7);
    let shape: Vec<_> = listing
        .rows
        .iter()
        .map(|a| {
            (
                a.package.as_ref().unwrap().to_string(),
                a.agent.as_ref().map(|n| n.to_string()),
                a.approved_by.clone(),
            )
        })
        .collect();
    assert_eq!(shape[4], ("perl".into(), None, Some("alice".into())));
    assert_eq!(shape[5], ("perl".into(), None, Some("alice".into())));
    assert_eq!(shape[6], ("vim".into(), None, None));
    let mut libc: Vec<_> = shape[..4].to_vec();
    libc.sort();
    let by = |agent: &str| ("libc6".into(), Some(agent.into()), Some("bob".into()));
    assert_eq!(libc, [by("a"), by("a"), by("b"), by("b")]);
    assert!(listing.rows.windows(2).all(|w| w[0].id > w[1].id));
    assert_eq!(listing.rows[6].approved_at, None);
    let page = db
        .store
        .approvals(Page {
            offset: 6,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(page.total, 7);
    assert_eq!(page.rows.len(), 1);
}
contract_test!(approvals_are_listed_newest_first);

async fn revoking_deletes_one_approval_and_audits_it(db: TestStore) {
    seed(&db).await;
    approve(&db, &[perl_52()], &ApprovalScope::AllAgents).await;
    let approvals = db.store.approvals(all()).await.unwrap().rows;
    let is_update = |a: &&masif_store::Approval| a.action == Some(Action::Update);
    let id = approvals.iter().find(is_update).unwrap().id;
    // A pending row's id is not an approval.
    let pending_id: u64 = db
        .int("SELECT MIN(id) FROM task WHERE approved = 0")
        .await
        .try_into()
        .unwrap();
    let before = dump(&db).await;
    assert!(!db.store.revoke(pending_id, "bob").await.unwrap());
    assert!(!db.store.revoke(u64::MAX, "bob").await.unwrap());
    assert_eq!(dump(&db).await, before);

    assert!(db.store.revoke(id, "bob").await.unwrap());
    // Only the update's approval is gone; its configure step's stays.
    let left = db.store.approvals(all()).await.unwrap().rows;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].action, Some(Action::Configure));
    assert_eq!(db.int("SELECT COUNT(*) FROM approval").await, 1);
    assert!(!db.store.revoke(id, "bob").await.unwrap());
    let log = db.store.audit_log(all()).await.unwrap();
    assert_eq!(log.rows[0].action, "revoke");
    assert_eq!(log.rows[0].user, "bob");
    assert!(
        log.rows[0].detail.contains("perl"),
        "{}",
        log.rows[0].detail
    );
    assert_eq!(audit_actions(&db).await, ["revoke", "approve"]);
    // The agents' next report has it pending again.
    let tasks = set([update("perl", "5.1", "5.2")]);
    assert!(db
        .store
        .report(&agent("a"), &tasks)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(pending(&db, "a").await.len(), 1);
}
contract_test!(revoking_deletes_one_approval_and_audits_it);

async fn reset_deletes_tasks_and_optionally_everything(db: TestStore) {
    seed(&db).await;
    approve(&db, &[perl_52()], &ApprovalScope::AllAgents).await;
    let counts = db.store.counts().await.unwrap();
    // 7 reported, 2 approved away, 2 approval rows (the update and its configure step).
    assert_eq!(
        counts,
        TableCounts {
            tasks: 7,
            packages: 4,
            agents: 3
        }
    );
    let deleted = db.store.reset(false, "carol").await.unwrap();
    assert_eq!(
        deleted,
        TableCounts {
            tasks: 7,
            packages: 0,
            agents: 0
        }
    );
    assert_eq!(
        db.store.counts().await.unwrap(),
        TableCounts {
            tasks: 0,
            packages: 4,
            agents: 3
        }
    );
    assert!(db.store.approvals(all()).await.unwrap().rows.is_empty());
    assert_eq!(db.int("SELECT COUNT(*) FROM approval").await, 0);
    // An unchanged report after a reset stores its pending set again.
    let a = set([
        update("perl", "5.1", "5.2"),
        update("libc6", "2.36-1", "2.36-2"),
    ]);
    db.store.report(&agent("a"), &a).await.unwrap();
    assert_eq!(pending(&db, "a").await.len(), 2);

    let deleted = db.store.reset(true, "carol").await.unwrap();
    assert_eq!(
        deleted,
        TableCounts {
            tasks: 2,
            packages: 4,
            agents: 3
        }
    );
    assert_eq!(db.store.counts().await.unwrap(), TableCounts::default());
    assert!(db
        .store
        .agents(&Default::default(), all())
        .await
        .unwrap()
        .rows
        .is_empty());
    let log = db.store.audit_log(all()).await.unwrap();
    assert_eq!(audit_actions(&db).await, ["reset", "reset", "approve"]);
    assert!(
        log.rows[0].detail.contains("3 agents"),
        "{}",
        log.rows[0].detail
    );
    assert_eq!(log.rows[0].user, "carol");
    // Agents come back with their next report.
    db.store.report(&agent("a"), &a).await.unwrap();
    assert_eq!(pending(&db, "a").await.len(), 2);
}
contract_test!(reset_deletes_tasks_and_optionally_everything);

/// Both back ends treat the agents' report state alike across a reset of the tasks: it stays
/// (last contact and digest), a report with nothing pending writes nothing, and a report whose
/// pending rows the reset deleted writes them again.
async fn a_reset_of_tasks_keeps_the_report_state(db: TestStore) {
    let idle = agent("idle");
    let busy = agent("busy");
    let tasks = set([install("a", "1")]);
    db.store.report(&idle, &set([])).await.unwrap();
    db.store.report(&busy, &tasks).await.unwrap();
    let state = "SELECT agent, pending_hash, last_seen FROM agent_report ORDER BY agent";
    let before = db.rows(state).await;
    db.store.reset(false, "carol").await.unwrap();
    assert_eq!(
        db.rows(state).await,
        before,
        "a reset changed the report state"
    );
    db.store.report(&idle, &set([])).await.unwrap();
    db.store.flush().await;
    assert_eq!(db.rows(state).await, before, "an unchanged report wrote");
    db.store.report(&busy, &tasks).await.unwrap();
    assert_eq!(pending(&db, "busy").await.len(), 1);
}
contract_test!(a_reset_of_tasks_keeps_the_report_state);

async fn audit_log_pages_newest_first(db: TestStore) {
    seed(&db).await;
    for user in ["u1", "u2", "u3"] {
        db.store.reset(false, user).await.unwrap();
    }
    let log = db
        .store
        .audit_log(Page {
            offset: 0,
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(log.total, 3);
    let users: Vec<_> = log.rows.iter().map(|e| e.user.as_str()).collect();
    assert_eq!(users, ["u3", "u2"]);
    assert!(log.rows[0].at >= now() - 60);
    let rest = db
        .store
        .audit_log(Page {
            offset: 2,
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(rest.rows.len(), 1);
    assert_eq!(rest.rows[0].user, "u1");
}
contract_test!(audit_log_pages_newest_first);
