//! Contract tests of tags: taken from v2 facts (replaced with them, kept by v1 reports), shown
//! and filtered by on the agents and pending pages, approved by (the agents carrying the tag at
//! that moment), their settings (audited, listed with agent and lease counts) and the agents'
//! maintenance windows. Leases are in `leases`.

use masif_proto::facts::Facts;
use masif_proto::{Tag, TaskSet};
use masif_store::schedule::Window;
use masif_store::{
    AgentFilter, AgentWindow, ApprovalScope, Page, PendingFilter, StoreError, TagSettings, TaskKey,
};

use crate::fixtures::*;
use crate::{contract_test, TestStore};

pub(crate) fn tag(name: &str) -> Tag {
    Tag::new(name).unwrap()
}

/// Facts carrying `tags` and nothing else.
fn tagged(tags: &[&str]) -> Facts {
    Facts {
        tags: tags.iter().map(|t| tag(t)).collect(),
        ..Facts::default()
    }
}

/// A v2 report of `tasks` by `name` carrying `tags`.
pub(crate) async fn report_tagged(db: &TestStore, name: &str, tasks: &TaskSet, tags: &[&str]) {
    db.store
        .report_with_facts(&agent(name), tasks, Some(&tagged(tags)))
        .await
        .unwrap();
}

/// [`dump`] plus every table of roll-out control, the audit log and the generation.
pub(crate) async fn dump_all(db: &TestStore) -> Vec<Vec<Vec<Option<String>>>> {
    let mut tables = dump(db).await;
    for sql in [
        "SELECT agent, tag FROM agent_tag ORDER BY agent, tag",
        "SELECT tag, max_in_flight, windows FROM tag_setting ORDER BY tag",
        "SELECT tag, agent, expires_at FROM tag_lease ORDER BY tag, agent",
        "SELECT id, tasks, rings, soak_secs, max_failure_percent, state, current_ring, \
         ring_started_at, halted_reason, created_by, created_at FROM rollout ORDER BY id",
        "SELECT id, user, action, detail FROM audit ORDER BY id",
        "SELECT generation, gate FROM approval_generation",
    ] {
        tables.push(db.rows(sql).await);
    }
    tables
}

async fn names(db: &TestStore, filter: AgentFilter) -> Vec<String> {
    let listing = db.store.agents(&filter, Page::default()).await.unwrap();
    assert_eq!(listing.total as usize, listing.rows.len());
    listing.rows.iter().map(|a| a.name.to_string()).collect()
}

fn by_tag(name: &str) -> AgentFilter {
    AgentFilter {
        tag: Some(tag(name)),
        ..AgentFilter::default()
    }
}

async fn pending_packages(db: &TestStore, filter: PendingFilter) -> Vec<String> {
    let overview = db
        .store
        .pending_overview(&filter, Page::default())
        .await
        .unwrap();
    let mut names: Vec<String> = overview
        .groups
        .iter()
        .map(|g| g.package.to_string())
        .collect();
    names.sort();
    assert_eq!(overview.total_packages as usize, names.len());
    names
}

/// The approval generation and the gate's counter.
pub(crate) async fn counters(db: &TestStore) -> (u64, u64) {
    let token = db.store.approval_token(false).await.unwrap();
    (token.generation, token.gate)
}

async fn tags_of(db: &TestStore, name: &str) -> Vec<String> {
    let detail = db.store.agent_detail(&agent(name)).await.unwrap().unwrap();
    detail.agent.tags.iter().map(|t| t.to_string()).collect()
}

async fn tags_come_from_facts_and_filter_agents_and_pending(db: TestStore) {
    report_tagged(&db, "a", &set([install("x", "1")]), &["web", "prod"]).await;
    report_tagged(&db, "b", &set([install("y", "1")]), &["web"]).await;
    report_tagged(&db, "d", &set([install("w", "1")]), &[]).await;
    db.store
        .report(&agent("c"), &set([install("z", "1")]))
        .await
        .unwrap();
    assert_eq!(tags_of(&db, "a").await, ["prod", "web"]);
    assert!(tags_of(&db, "c").await.is_empty());
    let all = db
        .store
        .agents(&AgentFilter::default(), Page::default())
        .await
        .unwrap();
    let tags: Vec<usize> = all.rows.iter().map(|a| a.tags.len()).collect();
    assert_eq!(tags, [2, 1, 0, 0]);
    assert_eq!(names(&db, by_tag("web")).await, ["a", "b"]);
    assert_eq!(names(&db, by_tag("prod")).await, ["a"]);
    assert!(names(&db, by_tag("nobody")).await.is_empty());
    let with_name = AgentFilter {
        name: Some("B".into()),
        ..by_tag("web")
    };
    assert_eq!(names(&db, with_name).await, ["b"]);

    let web = || PendingFilter {
        tag: Some(tag("web")),
        ..PendingFilter::default()
    };
    assert_eq!(pending_packages(&db, web()).await, ["x", "y"]);
    let package = PendingFilter {
        package: Some("x".into()),
        ..web()
    };
    assert_eq!(pending_packages(&db, package).await, ["x"]);
    let agent_b = PendingFilter {
        agent: Some("b".into()),
        ..web()
    };
    assert_eq!(pending_packages(&db, agent_b).await, ["y"]);
    let prod = PendingFilter {
        tag: Some(tag("prod")),
        ..PendingFilter::default()
    };
    assert_eq!(pending_packages(&db, prod).await, ["x"]);

    // New facts replace the tags; a v1 report keeps them; unchanged facts write nothing.
    report_tagged(&db, "a", &set([install("x", "1")]), &["db"]).await;
    assert_eq!(tags_of(&db, "a").await, ["db"]);
    db.store
        .report(&agent("a"), &set([install("x", "1")]))
        .await
        .unwrap();
    assert_eq!(tags_of(&db, "a").await, ["db"]);
    assert_eq!(names(&db, by_tag("web")).await, ["b"]);
    let before = dump_all(&db).await;
    report_tagged(&db, "a", &set([install("x", "1")]), &["db"]).await;
    db.store.flush().await;
    assert_eq!(
        db.int("SELECT COUNT(*) FROM agent_tag").await,
        2,
        "a: db, b: web"
    );
    assert_eq!(before[4..], dump_all(&db).await[4..]);
}
contract_test!(tags_come_from_facts_and_filter_agents_and_pending);

async fn approving_for_a_tag_approves_its_agents(db: TestStore) {
    for (name, tags) in [("a", &["web"][..]), ("b", &["web", "db"]), ("c", &["db"])] {
        report_tagged(&db, name, &set([install("x", "2")]), tags).await;
    }
    let key = TaskKey::from(&install("x", "2"));
    let needs = db
        .store
        .needs_of(std::slice::from_ref(&key), &ApprovalScope::Tag(tag("web")))
        .await
        .unwrap();
    assert!(needs.is_empty());
    let before = dump_all(&db).await;
    let err = db
        .store
        .approve(
            std::slice::from_ref(&key),
            &ApprovalScope::Tag(tag("nobody")),
            "alice",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid(m) if m.contains("nobody")),
        "{err}"
    );
    assert_eq!(before, dump_all(&db).await, "nothing written");

    let outcome = db
        .store
        .approve(&[key], &ApprovalScope::Tag(tag("web")), "alice")
        .await
        .unwrap();
    assert_eq!(outcome.pending_rows_approved, 2);
    // install x 2 and its configure step, for a and b.
    assert_eq!(outcome.approvals_written, 4);
    assert!(pending(&db, "a").await.is_empty());
    assert!(pending(&db, "b").await.is_empty());
    assert_eq!(pending(&db, "c").await, rows_of(&[&install("x", "2")]));
    let audit = db.store.audit_log(Page::default()).await.unwrap();
    assert!(
        audit.rows[0].detail.contains("for tag web (2 agents)"),
        "{}",
        audit.rows[0].detail
    );
    // The approval rows name the agents, so an agent tagged later is not covered.
    report_tagged(&db, "e", &set([install("x", "2")]), &["web"]).await;
    assert_eq!(pending(&db, "e").await, rows_of(&[&install("x", "2")]));
}
contract_test!(approving_for_a_tag_approves_its_agents);

fn weekly() -> Window {
    let json = serde_json::json!([{
        "days": ["mon", "tue"], "start": "02:00", "end": "04:00", "time_zone": "Europe/Berlin"
    }]);
    Window::parse_list(&json, "windows").unwrap().remove(0)
}

async fn tag_settings_are_set_listed_and_audited(db: TestStore) {
    report_tagged(&db, "a", &TaskSet::new(), &["web"]).await;
    report_tagged(&db, "b", &TaskSet::new(), &["web", "db"]).await;
    let settings = TagSettings {
        max_in_flight: Some(2),
        windows: vec![weekly()],
    };
    let before = counters(&db).await;
    db.store
        .set_tag(&tag("web"), &settings, "alice")
        .await
        .unwrap();
    db.store
        .set_tag(
            &tag("spare"),
            &TagSettings {
                max_in_flight: Some(1),
                windows: Vec::new(),
            },
            "alice",
        )
        .await
        .unwrap();
    let after = counters(&db).await;
    assert!(
        after.0 >= before.0 + 2 && after.1 >= before.1 + 2,
        "tag settings move both counters: {before:?} -> {after:?}"
    );
    let audit = db.store.audit_log(Page::default()).await.unwrap();
    let entry = &audit.rows[1];
    assert_eq!(
        (entry.user.as_str(), entry.action.as_str()),
        ("alice", "set tag")
    );
    assert_eq!(
        entry.detail,
        "tag web: max in flight 2, 1 window: mon,tue 02:00-04:00 Europe/Berlin"
    );
    let got = db
        .store
        .tag_settings(&[tag("web"), tag("db"), tag("web")])
        .await
        .unwrap();
    assert_eq!(got, vec![(tag("web"), settings.clone())]);

    db.store
        .acquire_leases(&agent("a"), &[(tag("web"), 2)], 1000, 60)
        .await
        .unwrap();
    let tags = db.store.tags(1000).await.unwrap();
    let shown: Vec<(String, u64, Option<u32>, usize, u64)> = tags
        .iter()
        .map(|t| {
            let s = &t.settings;
            (
                t.tag.to_string(),
                t.agents,
                s.max_in_flight,
                s.windows.len(),
                t.leases,
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("db".to_owned(), 1, None, 0, 0),
            ("spare".to_owned(), 0, Some(1), 0, 0),
            ("web".to_owned(), 2, Some(2), 1, 1),
        ]
    );
    // At a later time the lease has expired.
    let later = db.store.tags(1060).await.unwrap();
    assert_eq!(later[2].leases, 0);

    // Bad settings change nothing.
    let snapshot = dump_all(&db).await;
    for (k, windows) in [(Some(0), 0), (Some(100_001), 0), (None, 51)] {
        let bad = TagSettings {
            max_in_flight: k,
            windows: vec![weekly(); windows],
        };
        let err = db
            .store
            .set_tag(&tag("web"), &bad, "alice")
            .await
            .unwrap_err();
        let field = if windows > 0 {
            "windows"
        } else {
            "max_in_flight"
        };
        assert!(
            matches!(&err, StoreError::Invalid(m) if m.starts_with(field)),
            "{err}"
        );
    }
    assert!(db.store.set_tag(&tag("web"), &settings, "").await.is_err());
    assert_eq!(snapshot, dump_all(&db).await);

    // Empty settings remove the row; the tag is still listed while agents carry it.
    db.store
        .set_tag(&tag("web"), &TagSettings::default(), "alice")
        .await
        .unwrap();
    assert!(db
        .store
        .tag_settings(&[tag("web")])
        .await
        .unwrap()
        .is_empty());
    db.store
        .set_tag(&tag("spare"), &TagSettings::default(), "alice")
        .await
        .unwrap();
    let names: Vec<String> = db
        .store
        .tags(1000)
        .await
        .unwrap()
        .iter()
        .map(|t| t.tag.to_string())
        .collect();
    assert_eq!(names, ["db", "web"]);
    let detail = &db.store.audit_log(Page::default()).await.unwrap().rows[0].detail;
    assert_eq!(
        detail,
        "tag spare: no max in flight, no windows (settings removed)"
    );
}
contract_test!(tag_settings_are_set_listed_and_audited);

async fn agent_windows_follow_their_tags(db: TestStore) {
    let t0 = 1_800_000_000;
    report_tagged(&db, "a", &TaskSet::new(), &["web", "db"]).await;
    report_tagged(&db, "b", &TaskSet::new(), &["db"]).await;
    report_tagged(&db, "c", &TaskSet::new(), &["late"]).await;
    let once = |from: i64, to: i64| TagSettings {
        max_in_flight: None,
        windows: vec![Window::Once { from, to }],
    };
    db.store
        .set_tag(&tag("web"), &once(t0, t0 + 3600), "alice")
        .await
        .unwrap();
    db.store
        .set_tag(&tag("late"), &once(t0 + 7200, t0 + 9000), "alice")
        .await
        .unwrap();
    db.store
        .set_tag(
            &tag("db"),
            &TagSettings {
                max_in_flight: Some(3),
                windows: Vec::new(),
            },
            "alice",
        )
        .await
        .unwrap();
    let asked = [agent("a"), agent("b"), agent("c"), agent("nobody")];
    let windows = |now: i64| {
        let store = db.store.clone();
        let asked = asked.clone();
        async move {
            let got = store.agent_windows(&asked, now).await.unwrap();
            assert_eq!(
                got.iter().map(|(a, _)| a.clone()).collect::<Vec<_>>(),
                asked.to_vec()
            );
            got.into_iter().map(|(_, w)| w).collect::<Vec<_>>()
        }
    };
    let closed = |next: Option<i64>| AgentWindow {
        windowed: true,
        open: false,
        next_open: next,
    };
    let none = AgentWindow::default();
    assert_eq!(
        windows(t0 - 100).await,
        [closed(Some(t0)), none, closed(Some(t0 + 7200)), none]
    );
    let open = AgentWindow {
        windowed: true,
        open: true,
        next_open: Some(t0 + 10),
    };
    assert_eq!(
        windows(t0 + 10).await,
        [open, none, closed(Some(t0 + 7200)), none]
    );
    assert_eq!(
        windows(t0 + 9000).await,
        [closed(None), none, closed(None), none]
    );
    assert!(db.store.agent_windows(&[], t0).await.unwrap().is_empty());
}
contract_test!(agent_windows_follow_their_tags);
