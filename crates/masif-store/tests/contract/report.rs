//! Contract tests of the report transaction, run against every back end: approval patterns,
//! pending-set replacement, agent isolation, steady state, last_seen, concurrency.

use std::collections::BTreeSet;

use masif_proto::{Action, Task, TaskSet};

use crate::{contract_test, TestStore};

pub use crate::fixtures::*;

async fn migrated_database_is_empty(db: TestStore) {
    for table in [
        "agent",
        "package",
        "task",
        "agent_report",
        "run",
        "run_latest",
    ] {
        assert_eq!(
            db.int(&format!("SELECT COUNT(*) FROM {table}")).await,
            0,
            "{table}"
        );
    }
}
contract_test!(migrated_database_is_empty);

async fn first_report_creates_agent_packages_and_pending_rows(db: TestStore) {
    let tasks = set([
        update("perl", "5.24.1-3+deb9u3", "5.24.1-3+deb9u4"),
        install("libnew", "1.0"),
        task("old", Action::Remove, Some("2"), None),
        task("half", Action::Configure, None, Some("3")),
    ]);
    let approved = db.store.report(&agent("web1"), &tasks).await.unwrap();
    assert!(approved.is_empty());
    let all: Vec<&Task> = tasks.iter().collect();
    assert_eq!(pending(&db, "web1").await, rows_of(&all));
    assert_eq!(db.int("SELECT COUNT(*) FROM package").await, 4);
    let t = now();
    let ctime = db.int("SELECT ctime FROM agent WHERE name = 'web1'").await;
    assert!((t - 5..=t + 1).contains(&ctime), "ctime {ctime}, now {t}");
    assert_eq!(
        db.int("SELECT mtime FROM agent WHERE name = 'web1'").await,
        ctime
    );
}
contract_test!(first_report_creates_agent_packages_and_pending_rows);

/// Every combination of NULL wildcards in an approval row, for every agent, this agent and
/// another agent.
async fn approval_patterns_with_null_wildcards(db: TestStore) {
    let reported = update("perl", "1.0", "1.1");
    let mut case = 0;
    for scope in ["all", "this", "other"] {
        for mask in 0..16u8 {
            case += 1;
            let me = format!("host{case}");
            let col = |bit: u8, value: &'static str| (mask & bit != 0).then_some(value);
            let agent_col = match scope {
                "all" => None,
                "this" => Some(me.as_str()),
                _ => Some("somebody-else"),
            };
            approve_raw(
                &db,
                agent_col,
                col(1, "perl"),
                col(2, "update"),
                col(4, "1.0"),
                col(8, "1.1"),
            )
            .await;
            let tasks = set([reported.clone(), install("unrelated", "1")]);
            let approved = db.store.report(&agent(&me), &tasks).await.unwrap();
            let expect_perl = scope != "other";
            // Only a pattern with package NULL may also approve the unrelated install, and only
            // when it leaves action and versions open too.
            let expect_unrelated = scope != "other" && mask == 0;
            assert_eq!(
                approved.contains(&reported),
                expect_perl,
                "scope {scope}, mask {mask:04b}"
            );
            assert_eq!(
                approved.contains(&install("unrelated", "1")),
                expect_unrelated,
                "scope {scope}, mask {mask:04b}"
            );
            let pending_now = pending(&db, &me).await;
            assert_eq!(
                pending_now.len(),
                2 - approved.len(),
                "approved tasks are not pending ({scope}, {mask:04b})"
            );
            db.exec("DELETE FROM task WHERE approved = 1").await;
        }
    }
}
contract_test!(approval_patterns_with_null_wildcards);

/// Patterns whose set columns differ from the task never match.
async fn mismatching_patterns_do_not_approve(db: TestStore) {
    let perl = update("perl", "1.0", "1.1");
    type Columns = (
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
    );
    let cases: [Columns; 5] = [
        (Some("Perl"), None, None, None),
        (Some("perl"), Some("install"), None, None),
        (Some("perl"), None, Some("0.9"), None),
        (Some("perl"), None, None, Some("1.2")),
        (Some("python"), Some("update"), Some("1.0"), Some("1.1")),
    ];
    for (p, a, f, t) in cases {
        approve_raw(&db, None, p, a, f, t).await;
    }
    let approved = db.store.report(&agent("h"), &set([perl])).await.unwrap();
    assert!(approved.is_empty(), "{approved:?}");
    assert_eq!(pending(&db, "h").await.len(), 1);
}
contract_test!(mismatching_patterns_do_not_approve);

/// The original UI's "approve for every agent" rows: agent NULL, from_version NULL.
async fn original_ui_approvals_apply_to_every_agent(db: TestStore) {
    approve_raw(&db, None, Some("perl"), Some("update"), None, Some("1.1")).await;
    for (host, from) in [("a", "1.0"), ("b", "0.9")] {
        let t = update("perl", from, "1.1");
        let approved = db
            .store
            .report(&agent(host), &set([t.clone()]))
            .await
            .unwrap();
        assert_eq!(approved, set([t]));
        assert!(pending(&db, host).await.is_empty());
    }
    // Another target version is not covered.
    let other = update("perl", "1.0", "1.2");
    assert!(db
        .store
        .report(&agent("c"), &set([other]))
        .await
        .unwrap()
        .is_empty());
}
contract_test!(original_ui_approvals_apply_to_every_agent);

async fn pending_set_is_replaced(db: TestStore) {
    let (a, b, c) = (install("a", "1"), install("b", "1"), install("c", "1"));
    let me = agent("host");
    db.store
        .report(&me, &set([a.clone(), b.clone()]))
        .await
        .unwrap();
    db.store
        .report(&me, &set([b.clone(), c.clone()]))
        .await
        .unwrap();
    assert_eq!(pending(&db, "host").await, rows_of(&[&b, &c]));
    // Approve c for this agent: it is answered and no longer pending.
    approve_raw(&db, Some("host"), Some("c"), None, None, None).await;
    let approved = db
        .store
        .report(&me, &set([b.clone(), c.clone()]))
        .await
        .unwrap();
    assert_eq!(approved, set([c.clone()]));
    assert_eq!(pending(&db, "host").await, rows_of(&[&b]));
    // An approval row is never deleted by a report, even when its task is no longer reported.
    db.store.report(&me, &set([b.clone()])).await.unwrap();
    assert_eq!(
        db.int("SELECT COUNT(*) FROM task WHERE approved = 1").await,
        1
    );
}
contract_test!(pending_set_is_replaced);

async fn empty_report_deletes_pending_rows(db: TestStore) {
    let me = agent("host");
    db.store
        .report(&me, &set([install("a", "1"), install("b", "2")]))
        .await
        .unwrap();
    let approved = db.store.report(&me, &TaskSet::new()).await.unwrap();
    assert!(approved.is_empty());
    assert!(pending(&db, "host").await.is_empty());
    assert_eq!(db.int("SELECT COUNT(*) FROM agent").await, 1);
    // An agent that has never had anything to do is recorded too (last contact).
    db.store
        .report(&agent("idle"), &TaskSet::new())
        .await
        .unwrap();
    assert_eq!(
        db.int("SELECT COUNT(*) FROM agent WHERE name = 'idle'")
            .await,
        1
    );
    assert_eq!(db.int("SELECT COUNT(*) FROM task").await, 0);
}
contract_test!(empty_report_deletes_pending_rows);

async fn agents_are_isolated(db: TestStore) {
    let (x, y) = (install("x", "1"), install("y", "1"));
    db.store
        .report(&agent("A"), &set([x.clone()]))
        .await
        .unwrap();
    db.store
        .report(&agent("B"), &set([x.clone(), y.clone()]))
        .await
        .unwrap();
    // A's approval does not approve B's identical task.
    approve_raw(&db, Some("A"), Some("x"), None, None, None).await;
    let b_answer = db
        .store
        .report(&agent("B"), &set([x.clone(), y.clone()]))
        .await
        .unwrap();
    assert!(b_answer.is_empty());
    let a_answer = db
        .store
        .report(&agent("A"), &set([x.clone()]))
        .await
        .unwrap();
    assert_eq!(a_answer, set([x.clone()]));
    // A's empty report leaves B alone.
    db.store.report(&agent("A"), &TaskSet::new()).await.unwrap();
    assert_eq!(pending(&db, "B").await, rows_of(&[&x, &y]));
    assert!(pending(&db, "A").await.is_empty());
    // Agent names are exact: "a" is not "A".
    db.store
        .report(&agent("a"), &set([y.clone()]))
        .await
        .unwrap();
    assert_eq!(pending(&db, "a").await, rows_of(&[&y]));
    assert!(pending(&db, "A").await.is_empty());
}
contract_test!(agents_are_isolated);

/// Duplicate rows stored by someone else (the original master could leave them) collapse.
async fn stored_duplicates_collapse(db: TestStore) {
    let (a, b) = (install("a", "1"), install("b", "1"));
    let me = agent("host");
    db.store
        .report(&me, &set([a.clone(), b.clone()]))
        .await
        .unwrap();
    db.exec(
        "INSERT INTO task (agent, package, from_version, to_version, action, approved) \
         SELECT agent, package, from_version, to_version, action, approved FROM task",
    )
    .await;
    assert_eq!(pending(&db, "host").await.len(), 4);
    db.store
        .report(&me, &set([a.clone(), b.clone()]))
        .await
        .unwrap();
    assert_eq!(pending(&db, "host").await, rows_of(&[&a, &b]));
}
contract_test!(stored_duplicates_collapse);

async fn unchanged_report_writes_nothing(db: TestStore) {
    let me = agent("host");
    let tasks = set([install("a", "1"), update("b", "1", "2")]);
    approve_raw(&db, None, Some("b"), None, None, None).await;
    let first = db.store.report(&me, &tasks).await.unwrap();
    db.exec("UPDATE agent SET mtime = 7").await;
    let before = dump(&db).await;
    for _ in 0..3 {
        assert_eq!(db.store.report(&me, &tasks).await.unwrap(), first);
    }
    assert_eq!(
        dump(&db).await,
        before,
        "an unchanged report changed a table"
    );
}
contract_test!(unchanged_report_writes_nothing);

async fn mtime_changes_only_with_the_pending_set(db: TestStore) {
    let me = agent("host");
    let tasks = set([install("a", "1")]);
    db.store.report(&me, &tasks).await.unwrap();
    db.exec("UPDATE agent SET mtime = 7").await;
    // last_seen old: the unchanged report refreshes it, but mtime stays.
    db.exec("UPDATE agent_report SET last_seen = 7").await;
    db.store.report(&me, &tasks).await.unwrap();
    assert_eq!(db.int("SELECT mtime FROM agent").await, 7);
    // A changed report moves mtime.
    db.store
        .report(&me, &set([install("a", "1"), install("b", "1")]))
        .await
        .unwrap();
    let t = now();
    let mtime = db.int("SELECT mtime FROM agent").await;
    assert!((t - 5..=t + 1).contains(&mtime), "mtime {mtime}, now {t}");
    // An approval that takes a task out of the pending set counts as a change.
    db.exec("UPDATE agent SET mtime = 7").await;
    approve_raw(&db, None, Some("b"), None, None, None).await;
    db.store
        .report(&me, &set([install("a", "1"), install("b", "1")]))
        .await
        .unwrap();
    assert!(db.int("SELECT mtime FROM agent WHERE name = 'host'").await > 7);
}
contract_test!(mtime_changes_only_with_the_pending_set);

async fn last_seen_is_recorded_and_throttled(db: TestStore) {
    let me = agent("host");
    let tasks = set([install("a", "1")]);
    db.store.report(&me, &tasks).await.unwrap();
    let t = now();
    let seen = db.int("SELECT last_seen FROM agent_report").await;
    assert!((t - 5..=t + 1).contains(&seen), "last_seen {seen}, now {t}");
    // Seen 10 s ago: an unchanged report does not write.
    db.exec(&format!("UPDATE agent_report SET last_seen = {}", t - 10))
        .await;
    db.store.report(&me, &tasks).await.unwrap();
    db.store.flush().await;
    assert_eq!(db.int("SELECT last_seen FROM agent_report").await, t - 10);
    // Seen an hour ago: it does (MySQL: behind the report, by the flush at the latest).
    db.exec(&format!("UPDATE agent_report SET last_seen = {}", t - 3600))
        .await;
    db.store.report(&me, &tasks).await.unwrap();
    db.store.flush().await;
    assert!(db.int("SELECT last_seen FROM agent_report").await >= t);
    // Both back ends use one interval, 60 s: seen 55 s ago is fresh, 60 s ago is due.
    let t = now();
    db.exec(&format!("UPDATE agent_report SET last_seen = {}", t - 55))
        .await;
    db.store.report(&me, &tasks).await.unwrap();
    db.store.flush().await;
    assert_eq!(db.int("SELECT last_seen FROM agent_report").await, t - 55);
    db.exec(&format!("UPDATE agent_report SET last_seen = {}", t - 60))
        .await;
    db.store.report(&me, &tasks).await.unwrap();
    db.store.flush().await;
    assert!(db.int("SELECT last_seen FROM agent_report").await >= t);
}
contract_test!(last_seen_is_recorded_and_throttled);

/// Pending rows deleted behind the store's back (the original UI's reset) come back with the
/// next report even though the report itself did not change.
async fn rows_deleted_elsewhere_are_restored(db: TestStore) {
    let me = agent("host");
    let tasks = set([install("a", "1"), install("b", "1")]);
    db.store.report(&me, &tasks).await.unwrap();
    db.exec("DELETE FROM task").await;
    db.store.report(&me, &tasks).await.unwrap();
    let all: Vec<&Task> = tasks.iter().collect();
    assert_eq!(pending(&db, "host").await, rows_of(&all));
    // Even agents and packages deleted (reset with "packages and agents").
    db.exec("DELETE FROM task").await;
    db.exec("DELETE FROM package").await;
    db.exec("DELETE FROM agent").await;
    db.store.report(&me, &tasks).await.unwrap();
    assert_eq!(pending(&db, "host").await, rows_of(&all));
}
contract_test!(rows_deleted_elsewhere_are_restored);

/// Names and versions are stored exactly, whatever characters they hold.
async fn hostile_names_are_stored_exactly(db: TestStore) {
    let names = [
        "pkg'; DROP TABLE task; --",
        r"back\slash\'",
        "quote\"double",
        "ünïcödé-パッケージ-😀",
        "Foo",
        "foo",
        &"x".repeat(191),
    ];
    let tasks: TaskSet = names
        .iter()
        .map(|n| task(n, Action::Update, Some(n), Some("1.0~RC1")))
        .collect();
    let me = agent("host'--");
    db.store.report(&me, &tasks).await.unwrap();
    let all: Vec<&Task> = tasks.iter().collect();
    assert_eq!(pending(&db, "host'--").await, rows_of(&all));
    assert_eq!(
        db.int("SELECT COUNT(*) FROM package").await,
        names.len() as i64
    );
    // Unchanged, it is recognised as such.
    let before = dump(&db).await;
    db.store.report(&me, &tasks).await.unwrap();
    assert_eq!(dump(&db).await, before);
    // A version differing only in case is another version.
    let lower: TaskSet = names
        .iter()
        .map(|n| task(n, Action::Update, Some(n), Some("1.0~rc1")))
        .collect();
    db.store.report(&me, &lower).await.unwrap();
    let all: Vec<&Task> = lower.iter().collect();
    assert_eq!(pending(&db, "host'--").await, rows_of(&all));
}
contract_test!(hostile_names_are_stored_exactly);

/// Many agents reporting at once, several reports per agent in flight: no errors, and every
/// agent's pending set is exactly one of its reports.
async fn concurrent_reports_stay_consistent(db: TestStore) {
    const AGENTS: usize = 12;
    const VARIANTS: usize = 4;
    approve_raw(&db, None, Some("shared0"), None, None, None).await;
    let variants = |host: usize| -> Vec<TaskSet> {
        (0..VARIANTS)
            .map(|v| {
                (0..5)
                    .map(|i| install(&format!("shared{}", (i + v) % 7), &format!("{host}.{v}")))
                    .chain([install(&format!("own{host}"), &v.to_string())])
                    .collect()
            })
            .collect()
    };
    let mut handles = Vec::new();
    for host in 0..AGENTS {
        for (v, tasks) in variants(host).into_iter().enumerate() {
            let store = db.store.clone();
            handles.push(tokio::spawn(async move {
                let name = agent(&format!("host{host}"));
                for _ in 0..3 {
                    store.report(&name, &tasks).await.unwrap_or_else(|e| {
                        panic!("host{host} variant {v}: {e}");
                    });
                }
            }));
        }
    }
    for h in handles {
        h.await.unwrap();
    }
    for host in 0..AGENTS {
        let name = format!("host{host}");
        let stored = pending(&db, &name).await;
        let candidates: Vec<_> = variants(host)
            .iter()
            .map(|tasks| {
                let not_approved: Vec<&Task> = tasks
                    .iter()
                    .filter(|t| t.package().as_str() != "shared0")
                    .collect();
                rows_of(&not_approved)
            })
            .collect();
        assert!(
            candidates.contains(&stored),
            "{name}: pending rows {stored:?} are no single report's"
        );
        // And the stored digest agrees with the rows: an identical report writes nothing.
        let which = candidates.iter().position(|c| *c == stored).unwrap();
        let before = dump(&db).await;
        db.store
            .report(&agent(&name), &variants(host)[which])
            .await
            .unwrap();
        assert_eq!(dump(&db).await, before, "{name}");
    }
    let names: BTreeSet<String> = db
        .rows("SELECT name FROM package")
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(names.len(), 7 + AGENTS, "one row per package: {names:?}");
}
contract_test!(concurrent_reports_stay_consistent);

/// The largest reports a 1 MiB body can carry: thousands of tasks with names and versions at
/// the column limit.
async fn huge_reports_are_stored(db: TestStore) {
    let long = |prefix: &str, i: usize| format!("{prefix}{i:05}{}", "x".repeat(180));
    let tasks: TaskSet = (0..2500)
        .map(|i| {
            let (p, from, to) = (long("p", i), long("f", i), long("t", i));
            task(&p, Action::Update, Some(&from), Some(&to))
        })
        .collect();
    let me = agent("host");
    approve_raw(&db, None, Some(&long("p", 7)), None, None, None).await;
    let approved = db.store.report(&me, &tasks).await.unwrap();
    assert_eq!(approved.len(), 1);
    assert_eq!(
        db.int("SELECT COUNT(*) FROM task WHERE approved = 0").await,
        2499
    );
    let before = dump(&db).await;
    db.store.report(&me, &tasks).await.unwrap();
    assert_eq!(dump(&db).await, before);
    let fewer: TaskSet = tasks.iter().skip(1000).cloned().collect();
    db.store.report(&me, &fewer).await.unwrap();
    assert_eq!(
        db.int("SELECT COUNT(*) FROM task WHERE approved = 0").await,
        1500
    );
}
contract_test!(huge_reports_are_stored);

/// Approvals of every version ever approved pile up (the original never deletes them): only
/// the ones for the reported target versions, or for any version, apply.
async fn approvals_of_other_versions_do_not_apply(db: TestStore) {
    for v in 0..50 {
        approve_raw(
            &db,
            None,
            Some("perl"),
            Some("update"),
            None,
            Some(&format!("5.{v}")),
        )
        .await;
    }
    approve_raw(&db, Some("host"), Some("bash"), None, None, Some("4.0")).await;
    let me = agent("host");
    let newer = update("perl", "5.49", "5.50");
    let bash = update("bash", "5.0", "5.1");
    let purge = task("bash-old", Action::Purge, Some("1"), None);
    let approved = db
        .store
        .report(&me, &set([newer.clone(), bash.clone(), purge.clone()]))
        .await
        .unwrap();
    assert!(approved.is_empty(), "{approved:?}");
    let older = update("perl", "5.48", "5.49");
    let approved = db
        .store
        .report(&me, &set([older.clone(), purge.clone()]))
        .await
        .unwrap();
    assert_eq!(approved, set([older]));
    // A pattern without target version still covers tasks without one.
    approve_raw(&db, None, Some("bash-old"), None, None, None).await;
    let approved = db.store.report(&me, &set([purge.clone()])).await.unwrap();
    assert_eq!(approved, set([purge]));
    // And one with a target version never covers a task without one.
    let remove = task("gone", Action::Remove, Some("1"), None);
    approve_raw(&db, None, Some("gone"), None, None, Some("1")).await;
    assert!(db
        .store
        .report(&me, &set([remove]))
        .await
        .unwrap()
        .is_empty());
}
contract_test!(approvals_of_other_versions_do_not_apply);

/// Many agents reporting the same packages at once (the MySQL back end answers them from shared
/// snapshot queries): each gets exactly its own approvals and the shared ones, never another
/// agent's, also between names that differ only in case or carry quotes.
async fn concurrent_answers_carry_only_own_approvals(db: TestStore) {
    let names: Vec<String> = (0..40)
        .map(|i| match i % 3 {
            0 => format!("host{i}"),
            1 => format!("HOST{}", i - 1),
            _ => format!("it's-{i}"),
        })
        .collect();
    let tasks: TaskSet = (0..names.len())
        .map(|i| install(&format!("p{i}"), "1"))
        .chain([install("shared", "1")])
        .collect();
    approve_raw(&db, None, Some("shared"), None, None, None).await;
    for (i, name) in names.iter().enumerate() {
        approve_raw(&db, Some(name), Some(&format!("p{i}")), None, None, None).await;
    }
    for round in 0..2 {
        let mut handles = Vec::new();
        for name in names.clone() {
            let (store, tasks) = (db.store.clone(), tasks.clone());
            handles.push(tokio::spawn(async move {
                store.report(&agent(&name), &tasks).await.unwrap()
            }));
        }
        for (i, handle) in handles.into_iter().enumerate() {
            let answer = handle.await.unwrap();
            let expected = set([install(&format!("p{i}"), "1"), install("shared", "1")]);
            assert_eq!(answer, expected, "round {round}, agent {}", names[i]);
        }
    }
}
contract_test!(concurrent_answers_carry_only_own_approvals);
