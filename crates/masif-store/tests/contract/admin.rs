//! Contract tests of the `Admin` half (the UI's queries and audited writes), run against every
//! back end: the pending overview (grouping, order, counts, filters, pages), agents awaiting a
//! selection, agent listings and details, approving for every agent or for chosen agents,
//! approvals in force with who/when, revocation, reset and the audit log. Every refused write
//! is checked to change nothing. Pending rows are seeded through the real report transaction.

use masif_proto::{Action, AgentName, PackageName, Task, Version};
use masif_store::{
    ApprovalOutcome, ApprovalScope, Page, PendingFilter, StoreError, TableCounts, TaskKey,
};

use crate::contract_test;
use crate::report::{agent, approve_raw, dump, install, now, pending, q, set, task, update};
use crate::TestStore;

fn key(package: &str, action: Action, to: Option<&str>) -> TaskKey {
    TaskKey {
        package: PackageName::new(package).unwrap(),
        action,
        to_version: to.map(|v| Version::new(v).unwrap()),
    }
}

/// "update perl to 5.2", which the seeded agents a and c await.
fn perl_52() -> TaskKey {
    key("perl", Action::Update, Some("5.2"))
}

fn remove(package: &str, from: &str) -> Task {
    task(package, Action::Remove, Some(from), None)
}

fn all() -> Page {
    Page {
        offset: 0,
        limit: 1000,
    }
}

fn no_filter() -> PendingFilter {
    PendingFilter::default()
}

fn agents(names: &[&str]) -> ApprovalScope {
    ApprovalScope::Agents(names.iter().map(|n| agent(n)).collect())
}

/// Approves `keys` for `scope` as alice.
async fn approve(db: &TestStore, keys: &[TaskKey], scope: &ApprovalScope) -> ApprovalOutcome {
    db.store.approve(keys, scope, "alice").await.unwrap()
}

/// The overview as (package, agents, [(action, to, agents)]) for compact assertions.
type Shape = Vec<(String, u64, Vec<(String, Option<String>, u64)>)>;

async fn overview(db: &TestStore, filter: &PendingFilter, page: Page) -> (Shape, u64) {
    let o = db.store.pending_overview(filter, page).await.unwrap();
    let shape = o
        .groups
        .into_iter()
        .map(|g| {
            (
                g.package.to_string(),
                g.agents,
                g.rows
                    .into_iter()
                    .map(|r| {
                        (
                            r.action.to_string(),
                            r.to_version.map(|v| v.to_string()),
                            r.agents,
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    (shape, o.total_packages)
}

fn row(action: &str, to: Option<&str>, agents: u64) -> (String, Option<String>, u64) {
    (action.to_owned(), to.map(str::to_owned), agents)
}

/// Three agents: a and b await perl (two target versions between them) and libc; c awaits a
/// new package and a removal.
async fn seed(db: &TestStore) {
    let r = |a: &str, tasks| {
        let store = db.store.clone();
        let a = agent(a);
        async move { store.report(&a, &tasks).await.unwrap() }
    };
    r(
        "a",
        set([
            update("perl", "5.1", "5.2"),
            update("libc6", "2.36-1", "2.36-2"),
        ]),
    )
    .await;
    r(
        "b",
        set([
            update("perl", "5.0", "5.3"),
            update("libc6", "2.36-1", "2.36-2"),
        ]),
    )
    .await;
    r(
        "c",
        set([
            update("perl", "5.1", "5.2"),
            install("newpkg", "1.0"),
            remove("oldpkg", "0.9"),
        ]),
    )
    .await;
}

async fn audit_actions(db: &TestStore) -> Vec<String> {
    db.store
        .audit_log(all())
        .await
        .unwrap()
        .rows
        .into_iter()
        .map(|e| e.action)
        .collect()
}

async fn empty_database_has_empty_overviews(db: TestStore) {
    let (shape, total) = overview(&db, &no_filter(), all()).await;
    assert!(shape.is_empty());
    assert_eq!(total, 0);
    let agents = db.store.agents(None, all()).await.unwrap();
    assert!(agents.rows.is_empty());
    assert_eq!(agents.total, 0);
    assert!(db.store.approvals(all()).await.unwrap().rows.is_empty());
    assert!(db.store.audit_log(all()).await.unwrap().rows.is_empty());
    assert_eq!(db.store.counts().await.unwrap(), TableCounts::default());
    assert!(db
        .store
        .agent_detail(&agent("nobody"))
        .await
        .unwrap()
        .is_none());
    assert!(db
        .store
        .agents_awaiting(&[key("perl", Action::Update, Some("1"))])
        .await
        .unwrap()
        .is_empty());
}
contract_test!(empty_database_has_empty_overviews);

async fn overview_groups_by_package_action_and_target(db: TestStore) {
    seed(&db).await;
    let (shape, total) = overview(&db, &no_filter(), all()).await;
    assert_eq!(total, 4);
    assert_eq!(
        shape,
        vec![
            (
                "perl".into(),
                3,
                vec![row("update", Some("5.2"), 2), row("update", Some("5.3"), 1)]
            ),
            ("libc6".into(), 2, vec![row("update", Some("2.36-2"), 2)]),
            // Equal counts: by name.
            ("newpkg".into(), 1, vec![row("install", Some("1.0"), 1)]),
            ("oldpkg".into(), 1, vec![row("remove", None, 1)]),
        ]
    );
}
contract_test!(overview_groups_by_package_action_and_target);

async fn overview_rows_are_ordered_by_action_then_version(db: TestStore) {
    // One package, several actions across agents.
    db.store
        .report(&agent("a"), &set([update("x", "1", "3")]))
        .await
        .unwrap();
    db.store
        .report(&agent("b"), &set([update("x", "1", "2")]))
        .await
        .unwrap();
    db.store
        .report(&agent("c"), &set([install("x", "2")]))
        .await
        .unwrap();
    db.store
        .report(
            &agent("d"),
            &set([task("x", Action::Purge, Some("1"), None)]),
        )
        .await
        .unwrap();
    let (shape, _) = overview(&db, &no_filter(), all()).await;
    assert_eq!(
        shape,
        vec![(
            "x".into(),
            4,
            vec![
                row("install", Some("2"), 1),
                row("update", Some("2"), 1),
                row("update", Some("3"), 1),
                row("purge", None, 1),
            ]
        )]
    );
}
contract_test!(overview_rows_are_ordered_by_action_then_version);

async fn overview_pages_through_packages(db: TestStore) {
    seed(&db).await;
    let page = |offset, limit| Page { offset, limit };
    let (first, total) = overview(&db, &no_filter(), page(0, 2)).await;
    assert_eq!(total, 4);
    let names: Vec<_> = first.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(names, ["perl", "libc6"]);
    let (second, total) = overview(&db, &no_filter(), page(2, 2)).await;
    assert_eq!(total, 4);
    let names: Vec<_> = second.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(names, ["newpkg", "oldpkg"]);
    // Past the end: no groups, the total still known.
    let (beyond, total) = overview(&db, &no_filter(), page(10, 2)).await;
    assert!(beyond.is_empty());
    assert_eq!(total, 4);
}
contract_test!(overview_pages_through_packages);

async fn overview_filters_by_package_and_agent(db: TestStore) {
    seed(&db).await;
    let f = |package: Option<&str>, agent: Option<&str>| PendingFilter {
        package: package.map(str::to_owned),
        agent: agent.map(str::to_owned),
    };
    // Case-insensitive substring of the package name.
    let (shape, total) = overview(&db, &f(Some("PKG"), None), all()).await;
    assert_eq!(total, 2);
    let names: Vec<_> = shape.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(names, ["newpkg", "oldpkg"]);
    // By agent: counts are those of the matching agents only.
    let (shape, total) = overview(&db, &f(None, Some("b")), all()).await;
    assert_eq!(total, 2);
    assert_eq!(
        shape,
        vec![
            ("libc6".into(), 1, vec![row("update", Some("2.36-2"), 1)]),
            ("perl".into(), 1, vec![row("update", Some("5.3"), 1)]),
        ]
    );
    // Both.
    let (shape, _) = overview(&db, &f(Some("perl"), Some("a")), all()).await;
    assert_eq!(
        shape,
        vec![("perl".into(), 1, vec![row("update", Some("5.2"), 1)])]
    );
    // No match.
    let (shape, total) = overview(&db, &f(Some("nothing-like-it"), None), all()).await;
    assert!(shape.is_empty());
    assert_eq!(total, 0);
}
contract_test!(overview_filters_by_package_and_agent);

async fn filters_are_plain_text_not_patterns(db: TestStore) {
    seed(&db).await;
    db.store
        .report(&agent("d"), &set([update("lib_x%y", "1", "2")]))
        .await
        .unwrap();
    let before = dump(&db).await;
    for (filter, expect) in [
        ("%", vec!["lib_x%y"]),
        ("_", vec!["lib_x%y"]),
        ("x%y", vec!["lib_x%y"]),
        ("'; DROP TABLE task; --", vec![]),
        ("\\", vec![]),
    ] {
        let (shape, _) = overview(
            &db,
            &PendingFilter {
                package: Some(filter.to_owned()),
                agent: None,
            },
            all(),
        )
        .await;
        let names: Vec<_> = shape.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(names, expect, "filter {filter:?}");
        let listing = db.store.agents(Some(filter), all()).await.unwrap();
        assert!(listing.rows.is_empty(), "agent filter {filter:?}");
    }
    assert_eq!(dump(&db).await, before);
}
contract_test!(filters_are_plain_text_not_patterns);

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

async fn agents_awaiting_a_selection(db: TestStore) {
    seed(&db).await;
    let found = db
        .store
        .agents_awaiting(&[
            key("perl", Action::Update, Some("5.3")),
            key("newpkg", Action::Install, Some("1.0")),
            // Unknown package and unknown version: ignored.
            key("nonexistent", Action::Update, Some("1")),
            key("libc6", Action::Update, Some("9.9")),
        ])
        .await
        .unwrap();
    let names: Vec<_> = found.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["b", "c"]);
    assert_eq!(found[0].pending_packages, 2);
    assert_eq!(found[1].pending_packages, 3);
    assert_eq!(found[1].pending_tasks, 3);
    // Approved rows are not "awaiting".
    approve(
        &db,
        &[key("newpkg", Action::Install, Some("1.0"))],
        &ApprovalScope::AllAgents,
    )
    .await;
    let found = db
        .store
        .agents_awaiting(&[key("newpkg", Action::Install, Some("1.0"))])
        .await
        .unwrap();
    assert!(found.is_empty());
    assert!(db.store.agents_awaiting(&[]).await.unwrap().is_empty());
}
contract_test!(agents_awaiting_a_selection);

async fn agents_are_listed_by_name_with_counts(db: TestStore) {
    let t0 = now();
    seed(&db).await;
    // An agent only the original master knew: no report record, no pending rows.
    db.exec("INSERT INTO agent (name, ctime, mtime) VALUES ('0-legacy', 5, 6)")
        .await;
    let listing = db.store.agents(None, all()).await.unwrap();
    assert_eq!(listing.total, 4);
    let names: Vec<_> = listing.rows.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["0-legacy", "a", "b", "c"]);
    let legacy = &listing.rows[0];
    assert_eq!((legacy.ctime, legacy.mtime, legacy.last_seen), (5, 6, None));
    assert_eq!((legacy.pending_tasks, legacy.pending_packages), (0, 0));
    let c = &listing.rows[3];
    assert_eq!((c.pending_tasks, c.pending_packages), (3, 3));
    assert!(c.last_seen.unwrap() >= t0 - 1);
    assert!(c.ctime >= t0 - 1);
    // Filter (case-insensitive substring) and pages.
    let f = db.store.agents(Some("LEG"), all()).await.unwrap();
    assert_eq!(f.total, 1);
    assert_eq!(f.rows[0].name.as_str(), "0-legacy");
    let p = db
        .store
        .agents(
            None,
            Page {
                offset: 1,
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(p.total, 4);
    let names: Vec<_> = p.rows.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    // Approved rows do not count as pending.
    approve(
        &db,
        &[key("newpkg", Action::Install, Some("1.0"))],
        &agents(&["c"]),
    )
    .await;
    let c = db.store.agent_detail(&agent("c")).await.unwrap().unwrap();
    assert_eq!((c.agent.pending_tasks, c.agent.pending_packages), (2, 2));
}
contract_test!(agents_are_listed_by_name_with_counts);

async fn agent_detail_lists_pending_tasks(db: TestStore) {
    seed(&db).await;
    let d = db.store.agent_detail(&agent("c")).await.unwrap().unwrap();
    assert_eq!(d.agent.name.as_str(), "c");
    assert_eq!(
        d.pending,
        vec![
            install("newpkg", "1.0"),
            remove("oldpkg", "0.9"),
            update("perl", "5.1", "5.2"),
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    assert!(db.store.agent_detail(&agent("C")).await.unwrap().is_none());
}
contract_test!(agent_detail_lists_pending_tasks);

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
    assert!(db.store.agents(None, all()).await.unwrap().rows.is_empty());
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
        .agents_awaiting(&[key("perl", Action::Update, Some("2"))])
        .await
        .unwrap();
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

async fn hostile_names_come_back_exactly(db: TestStore) {
    let pkg = "<script>alert(1)</script>";
    let host = "o'brien \"quoted\" \\ host";
    db.store
        .report(&agent(host), &set([update(pkg, "1'", "2\"")]))
        .await
        .unwrap();
    let (shape, _) = overview(&db, &no_filter(), all()).await;
    assert_eq!(
        shape,
        vec![(pkg.into(), 1, vec![row("update", Some("2\""), 1)])]
    );
    let listing = db.store.agents(Some("'BRIEN \"q"), all()).await.unwrap();
    assert_eq!(listing.rows[0].name.as_str(), host);
    let awaiting = db
        .store
        .agents_awaiting(&[key(pkg, Action::Update, Some("2\""))])
        .await
        .unwrap();
    assert_eq!(awaiting[0].name.as_str(), host);
    db.store
        .approve(
            &[key(pkg, Action::Update, Some("2\""))],
            &agents(&[host]),
            "o'admin",
        )
        .await
        .unwrap();
    let a = &db.store.approvals(all()).await.unwrap().rows[0];
    assert_eq!(a.package.as_ref().unwrap().as_str(), pkg);
    assert_eq!(a.agent.as_ref().unwrap().as_str(), host);
    assert_eq!(a.approved_by.as_deref(), Some("o'admin"));
    let tasks = set([update(pkg, "1'", "2\"")]);
    assert_eq!(db.store.report(&agent(host), &tasks).await.unwrap(), tasks);
}
contract_test!(hostile_names_come_back_exactly);
