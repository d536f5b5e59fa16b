//! Contract tests of large approvals: written whole, counted in the summary and audited once
//! on both back ends; on MySQL in chunks that commit one by one, so that reports go on while a
//! later chunk waits.

use std::time::Duration;

use masif_proto::{Action, AgentName, PackageName, TaskSet, Version};
use masif_store::{ApprovalProgress, ApprovalScope, ApprovalTask, Page, TaskKey, APPROVAL_CHUNK};

use crate::report::{agent, task};
use crate::summary::assert_recount;
use crate::{contract_test, Backend, TestStore};

/// More agents than two chunks hold.
const AGENTS: usize = 2 * APPROVAL_CHUNK + 500;

fn name(i: usize) -> AgentName {
    agent(&format!("agent-{i:04}"))
}

fn key(package: &str, to: &str) -> ApprovalTask {
    ApprovalTask::from(TaskKey {
        package: PackageName::new(package).unwrap(),
        action: Action::Update,
        to_version: Some(Version::new(to).unwrap()),
    })
}

/// Every agent awaits `base` 1 → 2 and `lib` 1 → 3.
async fn seed(db: &TestStore) {
    let mut reports = Vec::new();
    for i in 0..AGENTS {
        let store = db.store.clone();
        reports.push(tokio::spawn(async move {
            let tasks: TaskSet = [
                task("base", Action::Update, Some("1"), Some("2")),
                task("lib", Action::Update, Some("1"), Some("3")),
            ]
            .into_iter()
            .collect();
            store.report(&name(i), &tasks).await.unwrap();
        }));
    }
    for report in reports {
        report.await.unwrap();
    }
    db.store.flush().await;
}

async fn audit_details(db: &TestStore) -> Vec<String> {
    let entries = db.store.audit_log(Page::default()).await.unwrap().rows;
    entries.into_iter().map(|e| e.detail).collect()
}

async fn a_large_approval_is_written_whole_and_counted(db: TestStore) {
    seed(&db).await;
    let progress = ApprovalProgress::default();
    let all = db
        .store
        .approve_tasks_tracked(
            &[key("base", "2")],
            &ApprovalScope::AllAgents,
            "ann",
            &progress,
        )
        .await
        .unwrap();
    assert_eq!(all.pending_rows_approved, AGENTS as u64);
    assert_eq!(
        all.approvals_written, 2,
        "update and its configure step, for all"
    );
    assert!(progress.finished());
    assert_eq!(progress.written(), all);
    assert_recount(&db, "an approval for every agent").await;

    let names: Vec<AgentName> = (0..AGENTS).map(name).collect();
    let progress = ApprovalProgress::default();
    let some = db
        .store
        .approve_tasks_tracked(
            &[key("lib", "3")],
            &ApprovalScope::Agents(names),
            "ann",
            &progress,
        )
        .await
        .unwrap();
    assert_eq!(some.pending_rows_approved, AGENTS as u64);
    assert_eq!(some.approvals_written, 2 * AGENTS as u64);
    assert!(progress.finished());
    assert_eq!(progress.written(), some);
    if db.backend == Backend::Mysql {
        assert_eq!(progress.agents(), (AGENTS as u64, AGENTS as u64));
    }
    assert_recount(&db, "an approval for every agent by name").await;
    assert_eq!(
        db.int("SELECT COUNT(*) FROM task WHERE approved = 0").await,
        0
    );

    let details = audit_details(&db).await;
    assert_eq!(details.len(), 2, "{details:?}");
    assert!(
        details[0].ends_with(&format!(
            "{} approval rows written, {AGENTS} pending rows approved",
            2 * AGENTS
        )) && details[1].ends_with(&format!(
            "for all agents: 2 approval rows written, {AGENTS} pending rows approved"
        )),
        "{details:?}"
    );
}
contract_test!(a_large_approval_is_written_whole_and_counted);

/// MySQL: the first chunk is in force (its rows approved, the audit entry saying how far it
/// got) and reports are answered while the second waits on a lock; then the rest follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_commit_one_by_one_and_reports_go_on_between_them() {
    crate::run(Backend::Mysql, |db| async move {
        seed(&db).await;
        // The second chunk (in name order, as the targets go) takes this agent's row.
        let in_second_chunk = APPROVAL_CHUNK + APPROVAL_CHUNK / 2;
        let held = db.hold_writes_of(name(in_second_chunk).as_str()).await;
        let progress = std::sync::Arc::new(ApprovalProgress::default());
        let approval = {
            let (store, progress) = (db.store.clone(), progress.clone());
            let names: Vec<AgentName> = (0..AGENTS).map(name).collect();
            tokio::spawn(async move {
                store
                    .approve_tasks_tracked(
                        &[key("lib", "3")],
                        &ApprovalScope::Agents(names),
                        "ann",
                        &progress,
                    )
                    .await
            })
        };
        while progress.agents().0 < APPROVAL_CHUNK as u64 {
            assert!(!approval.is_finished(), "{:?}", approval.await);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(progress.agents(), (APPROVAL_CHUNK as u64, AGENTS as u64));
        assert!(!progress.finished());
        let lib_pending = "SELECT COUNT(*) FROM task t JOIN package p ON p.id = t.package
                            WHERE p.name = 'lib' AND t.approved = 0";
        assert_eq!(
            db.int(lib_pending).await,
            (AGENTS - APPROVAL_CHUNK) as i64,
            "the first chunk is committed"
        );
        let details = audit_details(&db).await;
        assert!(
            details[0].ends_with(&format!(
                "(in progress: {APPROVAL_CHUNK} of {AGENTS} agents)"
            )),
            "{details:?}"
        );
        // A report of an agent of the first chunk, and one of a later chunk, are answered.
        let last = AGENTS - 1;
        for i in [1, last] {
            let tasks: TaskSet = [task("base", Action::Update, Some("1"), Some("2"))]
                .into_iter()
                .collect();
            tokio::time::timeout(Duration::from_secs(20), db.store.report(&name(i), &tasks))
                .await
                .expect("a report waited for the approval")
                .unwrap();
        }
        assert!(!approval.is_finished());
        held.release().await;
        let outcome = approval.await.unwrap().unwrap();
        // The last agent reported lib away meanwhile: its row was not there to approve.
        assert_eq!(outcome.pending_rows_approved, (AGENTS - 1) as u64);
        assert!(progress.finished());
        db.store.flush().await;
        assert_recount(&db, "a chunked approval and reports between its chunks").await;
        let details = audit_details(&db).await;
        assert_eq!(details.len(), 1, "{details:?}");
        assert!(!details[0].contains("in progress"), "{details:?}");
    })
    .await
}
