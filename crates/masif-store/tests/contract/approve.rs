//! Contract tests of approving, run against every back end: for every agent or chosen agents,
//! twice, with configure steps, for packages nobody reported yet, refused approvals changing
//! nothing, and big selections described briefly in the audit log.

use masif_proto::{Action, AgentName};
use masif_store::{ApprovalScope, StoreError};

use crate::admin::{
    agents, all, approve, audit_actions, key, no_filter, overview, perl_52, remove, seed,
};
use crate::contract_test;
use crate::report::{agent, dump, install, now, pending, q, set, task, update};
use crate::TestStore;

async fn approving_for_every_agent_writes_one_wildcard_row(db: TestStore) {
    seed(&db).await;
    let before = now();
    let outcome = approve(&db, &[perl_52()], &ApprovalScope::AllAgents).await;
    // The update and its configure step.
    assert_eq!(outcome.approvals_written, 2);
    assert_eq!(outcome.pending_rows_approved, 2);
    // Like the original: agent NULL, from_version NULL.
    let wildcard = |action: &str| {
        vec![
            None,
            Some("perl".into()),
            None,
            Some("5.2".into()),
            Some(action.to_owned()),
        ]
    };
    let mut rows = db
        .rows(
            "SELECT t.agent, p.name, t.from_version, t.to_version, t.action FROM task t \
             JOIN package p ON p.id = t.package WHERE t.approved = 1",
        )
        .await;
    rows.sort();
    assert_eq!(rows, vec![wildcard("configure"), wildcard("update")]);
    // The covered pending rows are gone; the others stay.
    assert!(!pending(&db, "a")
        .await
        .iter()
        .any(|r| r[0].as_deref() == Some("perl")));
    assert_eq!(pending(&db, "b").await.len(), 2);
    // Who and when.
    let approvals = db.store.approvals(all()).await.unwrap();
    assert_eq!(approvals.total, 2);
    let a = approvals
        .rows
        .iter()
        .find(|a| a.action == Some(Action::Update))
        .unwrap();
    assert_eq!(a.agent, None);
    assert_eq!(a.package.as_ref().map(|p| p.as_str()), Some("perl"));
    assert_eq!(a.action, Some(Action::Update));
    assert_eq!(a.from_version, None);
    assert_eq!(a.approved_by.as_deref(), Some("alice"));
    assert!(a.approved_at.unwrap() >= before - 1);
    // Audited.
    let log = db.store.audit_log(all()).await.unwrap();
    assert_eq!(log.total, 1);
    assert_eq!(log.rows[0].user, "alice");
    assert_eq!(log.rows[0].action, "approve");
    assert!(
        log.rows[0].detail.contains("perl"),
        "{}",
        log.rows[0].detail
    );
    // The agents' next reports get the task back as approved.
    let approved = db
        .store
        .report(
            &agent("a"),
            &set([
                update("perl", "5.1", "5.2"),
                update("libc6", "2.36-1", "2.36-2"),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(approved, set([update("perl", "5.1", "5.2")]));
    // A host reporting the same action later is covered too.
    let approved = db
        .store
        .report(&agent("late"), &set([update("perl", "4.0", "5.2")]))
        .await
        .unwrap();
    assert_eq!(approved.len(), 1);
}
contract_test!(approving_for_every_agent_writes_one_wildcard_row);

async fn approving_for_chosen_agents_leaves_the_others_pending(db: TestStore) {
    seed(&db).await;
    let outcome = db
        .store
        .approve(
            &[perl_52(), key("libc6", Action::Update, Some("2.36-2"))],
            &agents(&["a"]),
            "bob",
        )
        .await
        .unwrap();
    // Two updates and their configure steps.
    assert_eq!(outcome.approvals_written, 4);
    assert_eq!(outcome.pending_rows_approved, 2);
    assert!(pending(&db, "a").await.is_empty());
    // c awaits perl 5.2 too, but was not chosen.
    assert_eq!(pending(&db, "c").await.len(), 3);
    assert_eq!(pending(&db, "b").await.len(), 2);
    let rows = db
        .rows(&format!(
            "SELECT COUNT(*) FROM task t JOIN agent a ON a.id = t.agent \
             WHERE t.approved = 1 AND a.name = {} AND t.from_version IS NULL",
            q("a")
        ))
        .await;
    assert_eq!(rows, vec![vec![Some("4".into())]]);
    let approvals = db.store.approvals(all()).await.unwrap();
    assert!(approvals
        .rows
        .iter()
        .all(|a| a.agent == Some(agent("a")) && a.approved_by.as_deref() == Some("bob")));
    // Only a gets them back as approved.
    let tasks = set([update("perl", "5.1", "5.2")]);
    assert_eq!(db.store.report(&agent("a"), &tasks).await.unwrap(), tasks);
    let c = set([
        update("perl", "5.1", "5.2"),
        install("newpkg", "1.0"),
        remove("oldpkg", "0.9"),
    ]);
    assert!(db.store.report(&agent("c"), &c).await.unwrap().is_empty());
}
contract_test!(approving_for_chosen_agents_leaves_the_others_pending);

async fn approving_twice_writes_no_duplicate(db: TestStore) {
    seed(&db).await;
    let k = [perl_52()];
    approve(&db, &k, &ApprovalScope::AllAgents).await;
    let again = approve(&db, &k, &ApprovalScope::AllAgents).await;
    assert_eq!(again.approvals_written, 0);
    assert_eq!(again.pending_rows_approved, 0);
    // The same key twice in one call counts once.
    let twice = approve(
        &db,
        &[
            key("libc6", Action::Update, Some("2.36-2")),
            key("libc6", Action::Update, Some("2.36-2")),
        ],
        &agents(&["a", "a"]),
    )
    .await;
    // The update and its configure step, once each.
    assert_eq!(twice.approvals_written, 2);
    assert_eq!(
        db.int("SELECT COUNT(*) FROM task WHERE approved = 1").await,
        4
    );
    // Nothing changed, nothing audited.
    assert_eq!(audit_actions(&db).await, ["approve", "approve"]);
}
contract_test!(approving_twice_writes_no_duplicate);

/// APT plans an install or update as two steps (`Inst P … (V …)`, then `Conf P (V …)`) and the
/// agent runs a package only when every step is approved: approving the install or update
/// approves its configure step too. A configure on its own still needs its own approval.
async fn approving_an_install_or_update_approves_its_configure_step(db: TestStore) {
    let configure = |p: &str, to: &str| task(p, Action::Configure, None, Some(to));
    let plan = set([
        update("perl", "5.1", "5.2"),
        configure("perl", "5.2"),
        install("newpkg", "1.0"),
        configure("newpkg", "1.0"),
        configure("half", "3"),
    ]);
    db.store.report(&agent("a"), &plan).await.unwrap();
    let outcome = approve(
        &db,
        &[perl_52(), key("newpkg", Action::Install, Some("1.0"))],
        &ApprovalScope::AllAgents,
    )
    .await;
    assert_eq!(outcome.pending_rows_approved, 4);
    assert_eq!(outcome.approvals_written, 4);
    let mut approved = db
        .rows(
            "SELECT p.name, t.action, t.to_version FROM task t \
             JOIN package p ON p.id = t.package WHERE t.approved = 1",
        )
        .await;
    approved.sort();
    let row = |p: &str, a: &str, to: &str| vec![Some(p.into()), Some(a.into()), Some(to.into())];
    assert_eq!(
        approved,
        [
            row("newpkg", "configure", "1.0"),
            row("newpkg", "install", "1.0"),
            row("perl", "configure", "5.2"),
            row("perl", "update", "5.2"),
        ]
    );
    // The audit names the configure steps it approved.
    let log = db.store.audit_log(all()).await.unwrap();
    assert!(
        log.rows[0].detail.contains("configure perl 5.2"),
        "{}",
        log.rows[0].detail
    );
    // The whole plan of perl and newpkg comes back approved; half still waits.
    let answer = db.store.report(&agent("a"), &plan).await.unwrap();
    let expected: Vec<_> = plan
        .iter()
        .filter(|t| t.package().as_str() != "half")
        .cloned()
        .collect();
    assert_eq!(answer.into_iter().collect::<Vec<_>>(), expected);
    assert_eq!(pending(&db, "a").await.len(), 1);
    // A removal brings no configure step.
    let removal = approve(
        &db,
        &[key("oldpkg", Action::Remove, None)],
        &ApprovalScope::AllAgents,
    )
    .await;
    assert_eq!(removal.approvals_written, 1);
}
contract_test!(approving_an_install_or_update_approves_its_configure_step);

async fn removals_without_target_version_are_approved(db: TestStore) {
    seed(&db).await;
    let outcome = approve(
        &db,
        &[key("oldpkg", Action::Remove, None)],
        &ApprovalScope::AllAgents,
    )
    .await;
    assert_eq!(outcome.pending_rows_approved, 1);
    assert_eq!(outcome.approvals_written, 1);
    let approved = db
        .store
        .report(&agent("c"), &set([remove("oldpkg", "0.9")]))
        .await
        .unwrap();
    assert_eq!(approved.len(), 1);
    // A remove key does not cover the install of the same package.
    let (shape, _) = overview(&db, &no_filter(), all()).await;
    assert!(shape.iter().all(|g| g.0 != "oldpkg"));
}
contract_test!(removals_without_target_version_are_approved);

async fn approving_a_package_nobody_reported_yet(db: TestStore) {
    let outcome = approve(
        &db,
        &[key("future", Action::Install, Some("1.0"))],
        &ApprovalScope::AllAgents,
    )
    .await;
    // The install and its configure step.
    assert_eq!(outcome.approvals_written, 2);
    assert_eq!(outcome.pending_rows_approved, 0);
    let tasks = set([install("future", "1.0")]);
    assert_eq!(db.store.report(&agent("a"), &tasks).await.unwrap(), tasks);
}
contract_test!(approving_a_package_nobody_reported_yet);

async fn refused_approvals_change_nothing(db: TestStore) {
    seed(&db).await;
    let before = dump(&db).await;
    let k = [perl_52()];
    // An unknown agent among the chosen ones refuses the whole approval.
    let e = db
        .store
        .approve(&k, &agents(&["a", "nobody"]), "alice")
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Invalid(ref m) if m.contains("nobody")),
        "{e}"
    );
    // No agents at all.
    let e = db
        .store
        .approve(&k, &ApprovalScope::Agents(vec![]), "alice")
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    // Bad user names.
    for user in ["", "a\u{7}b", &"u".repeat(192)] {
        let e = db
            .store
            .approve(&k, &ApprovalScope::AllAgents, user)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{user:?}: {e}");
        assert!(matches!(
            db.store.revoke(1, user).await,
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            db.store.reset(true, user).await,
            Err(StoreError::Invalid(_))
        ));
    }
    // Nothing selected: nothing to do, nothing audited.
    let none = approve(&db, &[], &ApprovalScope::AllAgents).await;
    assert_eq!(none.approvals_written + none.pending_rows_approved, 0);
    assert_eq!(dump(&db).await, before);
    assert!(audit_actions(&db).await.is_empty());
    assert!(db.store.approvals(all()).await.unwrap().rows.is_empty());
}
contract_test!(refused_approvals_change_nothing);

async fn big_selections_are_described_briefly(db: TestStore) {
    // Many agents awaiting one task, approved for all of them at once.
    let names: Vec<String> = (0..1200).map(|i| format!("host-{i:04}")).collect();
    for n in &names {
        db.store
            .report(&agent(n), &set([update("perl", "1", "2")]))
            .await
            .unwrap();
    }
    let chosen: Vec<AgentName> = names.iter().map(|n| agent(n)).collect();
    let awaiting = db
        .store
        .agents_awaiting(
            &[key("perl", Action::Update, Some("2"))],
            masif_store::Page {
                offset: 0,
                limit: u64::MAX,
            },
        )
        .await
        .unwrap()
        .rows;
    assert_eq!(awaiting.len(), 1200);
    let outcome = db
        .store
        .approve(
            &[key("perl", Action::Update, Some("2"))],
            &ApprovalScope::Agents(chosen),
            "alice",
        )
        .await
        .unwrap();
    // Per agent the update and its configure step.
    assert_eq!(outcome.approvals_written, 2400);
    assert_eq!(outcome.pending_rows_approved, 1200);
    assert_eq!(db.int("SELECT COUNT(*) FROM approval").await, 2400);
    let log = db.store.audit_log(all()).await.unwrap();
    // The detail must fit the audit column (MySQL TEXT: 65,535 bytes) however many agents.
    assert!(log.rows[0].detail.len() <= 65_535);
    assert!(
        log.rows[0].detail.contains("perl"),
        "{}",
        log.rows[0].detail
    );
}
contract_test!(big_selections_are_described_briefly);
