//! Contract tests of the `Admin` half (the UI's queries and audited writes), run against every
//! back end: the pending overview (grouping, order, counts, filters, pages), agents awaiting a
//! selection, agent listings and details, and the helpers of `approve` (approving for every
//! agent or for chosen agents) and `changes` (approvals in force with who/when, revocation,
//! reset and the audit log). Pending rows are seeded through the real report transaction.

use masif_proto::{Action, PackageName, Task, Version};
use masif_store::{
    AgentFilter, ApprovalOutcome, ApprovalScope, Page, PendingFilter, TableCounts, TaskKey,
};

use crate::contract_test;
use crate::report::{agent, dump, install, now, set, task, update};
use crate::TestStore;

pub(crate) fn key(package: &str, action: Action, to: Option<&str>) -> TaskKey {
    TaskKey {
        package: PackageName::new(package).unwrap(),
        action,
        to_version: to.map(|v| Version::new(v).unwrap()),
    }
}

/// "update perl to 5.2", which the seeded agents a and c await.
pub(crate) fn perl_52() -> TaskKey {
    key("perl", Action::Update, Some("5.2"))
}

pub(crate) fn remove(package: &str, from: &str) -> Task {
    task(package, Action::Remove, Some(from), None)
}

pub(crate) fn all() -> Page {
    Page {
        offset: 0,
        limit: 1000,
    }
}

/// Agents whose name contains `name` (case-insensitive).
pub(crate) fn by_name(name: &str) -> AgentFilter {
    AgentFilter {
        name: Some(name.to_owned()),
        ..AgentFilter::default()
    }
}

pub(crate) fn no_filter() -> PendingFilter {
    PendingFilter::default()
}

pub(crate) fn agents(names: &[&str]) -> ApprovalScope {
    ApprovalScope::Agents(names.iter().map(|n| agent(n)).collect())
}

/// Approves `keys` for `scope` as alice.
pub(crate) async fn approve(
    db: &TestStore,
    keys: &[TaskKey],
    scope: &ApprovalScope,
) -> ApprovalOutcome {
    db.store.approve(keys, scope, "alice").await.unwrap()
}

/// The overview as (package, agents, [(action, to, agents)]) for compact assertions.
pub(crate) type Shape = Vec<(String, u64, Vec<(String, Option<String>, u64)>)>;

pub(crate) async fn overview(db: &TestStore, filter: &PendingFilter, page: Page) -> (Shape, u64) {
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

pub(crate) fn row(action: &str, to: Option<&str>, agents: u64) -> (String, Option<String>, u64) {
    (action.to_owned(), to.map(str::to_owned), agents)
}

/// Three agents: a and b await perl (two target versions between them) and libc; c awaits a
/// new package and a removal.
pub(crate) async fn seed(db: &TestStore) {
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

pub(crate) async fn audit_actions(db: &TestStore) -> Vec<String> {
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
    let agents = db
        .store
        .agents(&AgentFilter::default(), all())
        .await
        .unwrap();
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
        .agents_awaiting(&[key("perl", Action::Update, Some("1"))], all())
        .await
        .unwrap()
        .rows
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
        ..PendingFilter::default()
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
                ..PendingFilter::default()
            },
            all(),
        )
        .await;
        let names: Vec<_> = shape.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(names, expect, "filter {filter:?}");
        let listing = db.store.agents(&by_name(filter), all()).await.unwrap();
        assert!(listing.rows.is_empty(), "agent filter {filter:?}");
    }
    assert_eq!(dump(&db).await, before);
}
contract_test!(filters_are_plain_text_not_patterns);

async fn agents_awaiting_a_selection(db: TestStore) {
    seed(&db).await;
    let selection = [
        key("perl", Action::Update, Some("5.3")),
        key("newpkg", Action::Install, Some("1.0")),
        // Unknown package and unknown version: ignored.
        key("nonexistent", Action::Update, Some("1")),
        key("libc6", Action::Update, Some("9.9")),
    ];
    let found = db.store.agents_awaiting(&selection, all()).await.unwrap();
    assert_eq!(found.total, 2);
    let found = found.rows;
    let names: Vec<_> = found.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["b", "c"]);
    // A page of them, by name, with the total.
    let second = db
        .store
        .agents_awaiting(
            &selection,
            Page {
                offset: 1,
                limit: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(second.total, 2);
    assert_eq!(second.rows.len(), 1);
    assert_eq!(second.rows[0].name.as_str(), "c");
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
        .agents_awaiting(&[key("newpkg", Action::Install, Some("1.0"))], all())
        .await
        .unwrap();
    assert!(found.rows.is_empty() && found.total == 0);
    let none = db.store.agents_awaiting(&[], all()).await.unwrap();
    assert!(none.rows.is_empty() && none.total == 0);
}
contract_test!(agents_awaiting_a_selection);

async fn agents_are_listed_by_name_with_counts(db: TestStore) {
    let t0 = now();
    seed(&db).await;
    // An agent only the original master knew: no report record, no pending rows.
    db.exec("INSERT INTO agent (name, ctime, mtime) VALUES ('0-legacy', 5, 6)")
        .await;
    let listing = db
        .store
        .agents(&AgentFilter::default(), all())
        .await
        .unwrap();
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
    let f = db.store.agents(&by_name("LEG"), all()).await.unwrap();
    assert_eq!(f.total, 1);
    assert_eq!(f.rows[0].name.as_str(), "0-legacy");
    let p = db
        .store
        .agents(
            &AgentFilter::default(),
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
    let listing = db
        .store
        .agents(&by_name("'BRIEN \"q"), all())
        .await
        .unwrap();
    assert_eq!(listing.rows[0].name.as_str(), host);
    let awaiting = db
        .store
        .agents_awaiting(&[key(pkg, Action::Update, Some("2\""))], all())
        .await
        .unwrap()
        .rows;
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
