//! Contract tests of host facts (v2 reports): stored and read back, written only when they
//! change (never moving `mtime`), kept by v1 reports, and what the UI reads of them (security
//! rows, needs, holders, reboots, `needs_of`); cleared by resets; hostile texts kept verbatim.

use std::collections::BTreeMap;

use masif_proto::facts::{FactText, Facts, Origin, TaskFacts};
use masif_proto::{PackageName, Task, TaskSet};
use masif_store::{
    AgentFilter, ApprovalScope, HostFacts, Page, PendingFilter, PendingOverview, Reports,
    SecuritySummary, TaskKey,
};

use crate::fixtures::*;
use crate::{contract_test, TestStore};

const SECURITY: &str = "Debian-Security:12/stable-security";
const PLAIN: &str = "Debian:12/stable";

fn text(s: &str) -> Option<FactText> {
    Some(FactText::new(s).unwrap())
}

fn names(list: &[&str]) -> std::collections::BTreeSet<PackageName> {
    list.iter().map(|n| PackageName::new(*n).unwrap()).collect()
}

fn task_facts(origin: Option<&str>, needs: &[&Task]) -> TaskFacts {
    TaskFacts {
        origin: origin.map(|o| Origin::new(o).unwrap()),
        needs: needs.iter().map(|t| (*t).clone()).collect(),
    }
}

/// Host facts with these task facts.
fn facts(tasks: &[(&Task, TaskFacts)]) -> Facts {
    Facts {
        os: text("Debian GNU/Linux 12 (bookworm)"),
        kernel: text("6.1.0-28-amd64"),
        agent_version: text("0.4.0"),
        reboot_required: false,
        reboot_packages: Default::default(),
        held: Default::default(),
        tasks: tasks
            .iter()
            .map(|(t, f)| ((*t).clone(), f.clone()))
            .collect(),
        tags: Default::default(),
    }
}

fn key(task: &Task) -> TaskKey {
    TaskKey {
        package: task.package().clone(),
        action: task.action(),
        to_version: task.to_version().cloned(),
    }
}

async fn report(db: &TestStore, name: &str, tasks: &TaskSet, facts: Option<&Facts>) {
    db.store
        .report_with_facts(&agent(name), tasks, facts)
        .await
        .unwrap();
}

async fn host_facts(db: &TestStore, name: &str) -> Option<HostFacts> {
    db.store
        .agent_detail(&agent(name))
        .await
        .unwrap()
        .unwrap()
        .facts
}

async fn overview(db: &TestStore, filter: &PendingFilter) -> PendingOverview {
    db.store
        .pending_overview(filter, Page::default())
        .await
        .unwrap()
}

/// Every row of the facts tables, for "nothing changed" checks.
async fn dump_facts(db: &TestStore) -> Vec<Vec<Vec<Option<String>>>> {
    let mut tables = dump(db).await;
    for sql in [
        "SELECT agent, os, kernel, agent_version, reboot_required, reboot_packages, reported_at \
         FROM agent_facts ORDER BY agent",
        "SELECT agent, package FROM agent_held ORDER BY agent, package",
        "SELECT id, agent, package, action, from_version, to_version, origin, security, needs \
         FROM task_fact ORDER BY id",
    ] {
        tables.push(db.rows(sql).await);
    }
    tables
}

async fn facts_round_trip(db: TestStore) {
    let (a, b, c) = (update("a", "1", "2"), install("b", "1"), install("c", "1"));
    approve_raw(&db, None, Some("c"), None, None, None).await;
    let mut sent = facts(&[
        (&a, task_facts(Some(SECURITY), &[&b, &c])),
        (&b, task_facts(Some(PLAIN), &[])),
        (&c, task_facts(Some(PLAIN), &[])),
    ]);
    sent.reboot_required = true;
    sent.reboot_packages = names(&["linux-image-amd64", "libc6"]);
    sent.held = names(&["zsh", "apache2"]);
    report(
        &db,
        "host",
        &set([a.clone(), b.clone(), c.clone()]),
        Some(&sent),
    )
    .await;

    let detail = db
        .store
        .agent_detail(&agent("host"))
        .await
        .unwrap()
        .unwrap();
    let host = detail.facts.expect("stored facts");
    let reported_at = host.reported_at;
    assert!((now() - 5..=now() + 1).contains(&reported_at));
    assert_eq!(
        host,
        HostFacts {
            os: Some("Debian GNU/Linux 12 (bookworm)".into()),
            kernel: Some("6.1.0-28-amd64".into()),
            agent_version: Some("0.4.0".into()),
            reboot_required: true,
            reboot_packages: names(&["libc6", "linux-image-amd64"]).into_iter().collect(),
            held: names(&["apache2", "zsh"]).into_iter().collect(),
            reported_at,
        }
    );
    assert!(detail.agent.reboot_required);
    // Only the pending tasks' facts: c is approved.
    let expected: BTreeMap<Task, TaskFacts> = [
        (a.clone(), task_facts(Some(SECURITY), &[&b, &c])),
        (b.clone(), task_facts(Some(PLAIN), &[])),
    ]
    .into();
    assert_eq!(detail.task_facts, expected);
    assert_eq!(db.int("SELECT COUNT(*) FROM task_fact").await, 2);
    // An agent that never sent facts has none.
    report(&db, "v1", &set([a.clone()]), None).await;
    assert_eq!(host_facts(&db, "v1").await, None);
}
contract_test!(facts_round_trip);

async fn unchanged_facts_write_nothing_and_changed_facts_keep_mtime(db: TestStore) {
    let a = update("a", "1", "2");
    let tasks = set([a.clone(), install("b", "1")]);
    let mut sent = facts(&[(&a, task_facts(Some(SECURITY), &[]))]);
    sent.held = names(&["b"]);
    report(&db, "host", &tasks, Some(&sent)).await;
    db.exec("UPDATE agent SET mtime = 7").await;
    db.exec("UPDATE agent_facts SET reported_at = 7").await;
    let before = dump_facts(&db).await;
    for _ in 0..3 {
        report(&db, "host", &tasks, Some(&sent)).await;
    }
    assert_eq!(
        dump_facts(&db).await,
        before,
        "unchanged facts were written"
    );

    // Facts alone change: written, but the pending set (and mtime) stays.
    sent.kernel = text("6.1.0-29-amd64");
    sent.held = names(&["c"]);
    sent.tasks.clear();
    report(&db, "host", &tasks, Some(&sent)).await;
    let host = host_facts(&db, "host").await.unwrap();
    assert_eq!(host.kernel.as_deref(), Some("6.1.0-29-amd64"));
    assert_eq!(host.held, vec![PackageName::new("c").unwrap()]);
    assert!(host.reported_at > 7);
    assert_eq!(db.int("SELECT COUNT(*) FROM task_fact").await, 0);
    assert_eq!(db.int("SELECT mtime FROM agent").await, 7);
    assert_eq!(pending(&db, "host").await.len(), 2);
}
contract_test!(unchanged_facts_write_nothing_and_changed_facts_keep_mtime);

async fn v1_reports_keep_stored_facts(db: TestStore) {
    let (a, b) = (update("a", "1", "2"), install("b", "1"));
    let mut sent = facts(&[(&a, task_facts(Some(SECURITY), &[&b]))]);
    sent.held = names(&["a"]);
    report(&db, "host", &set([a.clone(), b.clone()]), Some(&sent)).await;
    let stored = host_facts(&db, "host").await;
    // A v1 report with a changed pending set, then an unchanged v1 one.
    report(&db, "host", &set([a.clone()]), None).await;
    report(&db, "host", &set([a.clone()]), None).await;
    assert_eq!(host_facts(&db, "host").await, stored);
    let detail = db
        .store
        .agent_detail(&agent("host"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.pending, vec![a.clone()]);
    assert_eq!(
        detail.task_facts.get(&a),
        Some(&task_facts(Some(SECURITY), &[&b]))
    );
    // The same facts again after v1 reports are written again (the digest differs).
    db.exec("UPDATE agent_facts SET reported_at = 7").await;
    report(&db, "host", &set([a.clone()]), Some(&sent)).await;
    assert!(host_facts(&db, "host").await.unwrap().reported_at > 7);
}
contract_test!(v1_reports_keep_stored_facts);

async fn security_rows_come_first_filter_and_summary(db: TestStore) {
    let (a2, a3) = (update("a", "1", "2"), update("a", "1", "3"));
    let (b, c) = (update("b", "1", "2"), install("c", "1"));
    // one: a→3 from the security archive; two: a→3 without facts (v1), a→2 and b plain;
    // three: c from the security archive; four: a→2 plain.
    let one = facts(&[(&a3, task_facts(Some(SECURITY), &[]))]);
    report(&db, "one", &set([a3.clone()]), Some(&one)).await;
    report(&db, "two", &set([a3.clone(), b.clone()]), None).await;
    // c's configure step is a security row too, but not counted apart from c's install.
    let c_conf = masif_testkit::tasks::task("c", masif_proto::Action::Configure, None, Some("1"));
    let three = facts(&[
        (&c, task_facts(Some(SECURITY), &[])),
        (&c_conf, task_facts(Some(SECURITY), &[])),
    ]);
    report(
        &db,
        "three",
        &set([c.clone(), c_conf.clone()]),
        Some(&three),
    )
    .await;
    let four = facts(&[
        (&a2, task_facts(Some(PLAIN), &[])),
        (&b, task_facts(Some(PLAIN), &[])),
    ]);
    report(&db, "four", &set([a2.clone(), b.clone()]), Some(&four)).await;

    let all = overview(&db, &PendingFilter::default()).await;
    let expected = SecuritySummary {
        updates: 2,
        agents: 3,
    };
    assert_eq!(all.security, expected);
    assert_eq!(all.total_packages, 3);
    let a = all
        .groups
        .iter()
        .find(|g| g.package.as_str() == "a")
        .unwrap();
    let rows: Vec<(String, bool, u64)> = a
        .rows
        .iter()
        .map(|r| {
            (
                r.to_version.as_ref().unwrap().to_string(),
                r.security,
                r.agents,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![("3".to_owned(), true, 2), ("2".to_owned(), false, 1)]
    );
    let b_group = all
        .groups
        .iter()
        .find(|g| g.package.as_str() == "b")
        .unwrap();
    assert!(!b_group.rows[0].security);

    let security = PendingFilter {
        security_only: true,
        ..PendingFilter::default()
    };
    let only = overview(&db, &security).await;
    assert_eq!(only.security, expected, "the summary ignores the filter");
    assert_eq!(only.total_packages, 2);
    let shown: Vec<(&str, usize, u64)> = only
        .groups
        .iter()
        .map(|g| (g.package.as_str(), g.rows.len(), g.agents))
        .collect();
    assert_eq!(shown, vec![("a", 1, 2), ("c", 2, 1)]);
    assert!(only
        .groups
        .iter()
        .all(|g| g.rows.iter().all(|r| r.security)));
    // Paging stays consistent with the filter.
    let second = db
        .store
        .pending_overview(
            &security,
            Page {
                offset: 1,
                limit: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(second.total_packages, 2);
    assert_eq!(second.groups.len(), 1);
    assert_eq!(second.groups[0].package.as_str(), "c");
    // Combined with an agent filter.
    let filtered = overview(
        &db,
        &PendingFilter {
            agent: Some("thr".into()),
            security_only: true,
            ..PendingFilter::default()
        },
    )
    .await;
    assert_eq!(filtered.total_packages, 1);
    assert_eq!(filtered.groups[0].package.as_str(), "c");
    // The flag follows every agent's facts, as the filter does: "two" sent none, yet the row
    // it awaits is a security update.
    let two = overview(
        &db,
        &PendingFilter {
            agent: Some("two".into()),
            security_only: true,
            ..PendingFilter::default()
        },
    )
    .await;
    assert_eq!(two.total_packages, 1);
    assert!(two.groups[0].rows[0].security);

    // Approving the security row for everyone leaves no security update pending.
    db.store
        .approve(&[key(&a3), key(&c)], &ApprovalScope::AllAgents, "admin")
        .await
        .unwrap();
    let after = overview(&db, &security).await;
    assert_eq!(after.security, SecuritySummary::default());
    assert_eq!(after.total_packages, 0);
}
contract_test!(security_rows_come_first_filter_and_summary);

async fn holders_and_reboots_are_counted(db: TestStore) {
    let a = update("a", "1", "2");
    let mut held = facts(&[]);
    held.held = names(&["a", "b"]);
    held.reboot_required = true;
    report(&db, "one", &set([a.clone()]), Some(&held)).await;
    let mut other = facts(&[]);
    other.held = names(&["a"]);
    report(&db, "two", &set([]), Some(&other)).await;
    report(&db, "three", &set([a.clone()]), None).await;

    let o = overview(&db, &PendingFilter::default()).await;
    assert_eq!(o.groups.len(), 1);
    assert_eq!((o.groups[0].agents, o.groups[0].held_on), (2, 2));

    let counts = db.store.agent_counts(0).await.unwrap();
    assert_eq!((counts.agents, counts.reboot_required), (3, 1));
    let filter = AgentFilter {
        reboot_required: true,
        ..AgentFilter::default()
    };
    let listed = db.store.agents(&filter, Page::default()).await.unwrap();
    assert_eq!(listed.total, 1);
    assert_eq!(listed.rows[0].name.as_str(), "one");
    assert!(listed.rows[0].reboot_required);
    let everyone = db
        .store
        .agents(&AgentFilter::default(), Page::default())
        .await
        .unwrap();
    let flags: Vec<bool> = everyone.rows.iter().map(|a| a.reboot_required).collect();
    assert_eq!(flags, vec![true, false, false]);
    // The reboot is done: the next facts say so.
    held.reboot_required = false;
    report(&db, "one", &set([a.clone()]), Some(&held)).await;
    assert_eq!(db.store.agent_counts(0).await.unwrap().reboot_required, 0);
}
contract_test!(holders_and_reboots_are_counted);

async fn needs_are_united_over_agents_and_scopes(db: TestStore) {
    let a = update("a", "1", "2");
    let (x, y, z) = (install("x", "1"), install("y", "1"), update("z", "1", "2"));
    let one = facts(&[(&a, task_facts(Some(PLAIN), &[&y, &x]))]);
    report(&db, "one", &set([a.clone(), z.clone()]), Some(&one)).await;
    let two = facts(&[(&a, task_facts(Some(PLAIN), &[&y, &z]))]);
    report(&db, "two", &set([a.clone(), z.clone()]), Some(&two)).await;

    let o = overview(&db, &PendingFilter::default()).await;
    let group = o.groups.iter().find(|g| g.package.as_str() == "a").unwrap();
    assert_eq!(group.rows[0].needs, vec![key(&x), key(&y), key(&z)]);

    let all = db
        .store
        .needs_of(&[key(&a)], &ApprovalScope::AllAgents)
        .await
        .unwrap();
    assert_eq!(all, vec![key(&x), key(&y), key(&z)]);
    let only_one = db
        .store
        .needs_of(&[key(&a)], &ApprovalScope::Agents(vec![agent("one")]))
        .await
        .unwrap();
    assert_eq!(only_one, vec![key(&x), key(&y)]);
    // Keys already selected are not offered again.
    let with_z = db
        .store
        .needs_of(&[key(&a), key(&z)], &ApprovalScope::AllAgents)
        .await
        .unwrap();
    assert_eq!(with_z, vec![key(&x), key(&y)]);
    let unknown = db
        .store
        .needs_of(&[key(&a)], &ApprovalScope::Agents(vec![agent("nobody")]))
        .await
        .unwrap();
    assert!(unknown.is_empty());
}
contract_test!(needs_are_united_over_agents_and_scopes);

async fn resets_clear_facts(db: TestStore) {
    let a = update("a", "1", "2");
    let mut sent = facts(&[(&a, task_facts(Some(SECURITY), &[]))]);
    sent.held = names(&["a"]);
    report(&db, "host", &set([a.clone()]), Some(&sent)).await;
    db.store.reset(false, "admin").await.unwrap();
    assert_eq!(db.int("SELECT COUNT(*) FROM task_fact").await, 0);
    assert_eq!(db.int("SELECT COUNT(*) FROM agent_facts").await, 1);
    assert_eq!(db.int("SELECT COUNT(*) FROM agent_held").await, 1);
    report(&db, "host", &set([a.clone()]), Some(&sent)).await;
    assert_eq!(db.int("SELECT COUNT(*) FROM task_fact").await, 1);
    db.store.reset(true, "admin").await.unwrap();
    for table in ["task_fact", "agent_facts", "agent_held"] {
        assert_eq!(
            db.int(&format!("SELECT COUNT(*) FROM {table}")).await,
            0,
            "{table}"
        );
    }
}
contract_test!(resets_clear_facts);

async fn hostile_fact_texts_are_stored_verbatim(db: TestStore) {
    let hostile = [
        "it's \"quoted\"",
        r"back\slash\' \\",
        "'); DROP TABLE task; --",
        "Ünïcödé ✓ 日本語 🦀",
    ];
    let a = update("a", "1", "2");
    for (i, s) in hostile.iter().enumerate() {
        let mut sent = facts(&[(&a, task_facts(Some(s), &[]))]);
        sent.os = text(s);
        sent.kernel = text(s);
        sent.agent_version = text(s);
        sent.held = names(&["a'b", r"c\d"]);
        sent.reboot_packages = names(&[r#"e"f"#]);
        let name = format!("host{i}");
        report(&db, &name, &set([a.clone()]), Some(&sent)).await;
        let detail = db.store.agent_detail(&agent(&name)).await.unwrap().unwrap();
        let host = detail.facts.unwrap();
        assert_eq!(host.os.as_deref(), Some(*s));
        assert_eq!(host.kernel.as_deref(), Some(*s));
        assert_eq!(host.agent_version.as_deref(), Some(*s));
        assert_eq!(
            host.held,
            names(&["a'b", r"c\d"]).into_iter().collect::<Vec<_>>()
        );
        assert_eq!(
            host.reboot_packages,
            names(&[r#"e"f"#]).into_iter().collect::<Vec<_>>()
        );
        assert_eq!(
            detail.task_facts[&a].origin.as_ref().map(|o| o.as_str()),
            Some(*s)
        );
    }
    assert!(db.int("SELECT COUNT(*) FROM task").await > 0);
}
contract_test!(hostile_fact_texts_are_stored_verbatim);

/// On MySQL, counted by the store: an unchanged report with unchanged facts is the one
/// read-only round trip of any unchanged report; a facts-only change is a write (snapshot + 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_round_trips_with_facts() {
    crate::run_mysql_scratch(|scratch| async move {
        let store = scratch.store(crate::test_options()).await;
        let a = update("a", "1", "2");
        let tasks = set([a.clone(), install("b", "1")]);
        let mut sent = facts(&[(&a, task_facts(Some(SECURITY), &[]))]);
        let me = agent("host");
        let trips = |before: masif_store::mysql::ReportStats| {
            let after = store.stats();
            (
                after.round_trips - before.round_trips,
                after.write_transactions - before.write_transactions,
            )
        };
        let s = store.stats();
        store
            .report_with_facts(&me, &tasks, Some(&sent))
            .await
            .unwrap();
        assert_eq!(trips(s), (3, 1));
        let s = store.stats();
        store
            .report_with_facts(&me, &tasks, Some(&sent))
            .await
            .unwrap();
        assert_eq!(trips(s), (1, 0));
        sent.reboot_required = true;
        let s = store.stats();
        store
            .report_with_facts(&me, &tasks, Some(&sent))
            .await
            .unwrap();
        assert_eq!(trips(s), (3, 1));
        let s = store.stats();
        store
            .report_with_facts(&me, &tasks, Some(&sent))
            .await
            .unwrap();
        assert_eq!(trips(s), (1, 0));
        store.disconnect().await.unwrap();
    })
    .await;
}
