//! Contract tests of staged roll-outs: created (approving the first ring's agents, audited),
//! refused when the spec is bad (nothing written), their ring's progress from the agents'
//! latest runs, promoted after the soak time, halted when too many fail (forced on by hand),
//! promoted by hand, completed, rings without agents, listed, and advanced by two stores at
//! once (each change made once).

use masif_proto::v2::Outcome;
use masif_store::{
    ApprovalTask, Page, RingProgress, Rollout, RolloutChange, RolloutSpec, RolloutState,
    StoreError, TaskKey, MAX_RINGS, MAX_SOAK_SECS,
};

use crate::fixtures::*;
use crate::runs::{record, run};
use crate::tags::{counters, dump_all, report_tagged, tag};
use crate::{contract_test, TestStore};

const T0: i64 = 1_800_000_000;
const HOUR: u64 = 3600;

fn spec(rings: &[&str], soak: Option<u64>, percent: u8) -> RolloutSpec {
    RolloutSpec {
        tasks: vec![ApprovalTask::from(TaskKey::from(&install("x", "2")))],
        rings: rings.iter().map(|r| tag(r)).collect(),
        soak_secs: soak,
        max_failure_percent: percent,
    }
}

/// Agents (name, tags), each with "install x 2" pending.
async fn fleet(db: &TestStore, agents: &[(&str, &str)]) {
    for (name, tags) in agents {
        let tags: Vec<&str> = tags.split(',').filter(|t| !t.is_empty()).collect();
        report_tagged(db, name, &set([install("x", "2")]), &tags).await;
    }
}

async fn approved(db: &TestStore, name: &str) -> bool {
    pending(db, name).await.is_empty()
}

async fn outcome(db: &TestStore, name: &str, id: &str, at: i64, outcome: Outcome) {
    record(db, name, &[run(id, "x", at, outcome)]).await;
}

async fn get(db: &TestStore, id: u64) -> Rollout {
    db.store.rollout(id).await.unwrap().unwrap()
}

fn progress(agents: u64, succeeded: u64, failed: u64) -> RingProgress {
    RingProgress {
        agents,
        succeeded,
        failed,
    }
}

async fn a_rollout_soaks_then_promotes_and_completes(db: TestStore) {
    fleet(&db, &[("c1", "canary"), ("p1", "prod"), ("p2", "prod")]).await;
    let before = counters(&db).await;
    let r = db
        .store
        .create_rollout(&spec(&["canary", "prod"], Some(HOUR), 0), "alice", T0)
        .await
        .unwrap();
    assert_eq!(r.state, RolloutState::Running);
    assert_eq!((r.current_ring, r.ring_started_at), (0, T0));
    assert_eq!((r.created_by.as_str(), r.created_at), ("alice", T0));
    assert_eq!(r.ring, progress(1, 0, 0));
    assert_eq!(r.tasks, spec(&[], None, 0).tasks);
    assert!(approved(&db, "c1").await);
    assert!(!approved(&db, "p1").await);
    let after = counters(&db).await;
    assert!(
        after.0 > before.0 && after.1 > before.1,
        "a roll-out's step moves both counters: {before:?} -> {after:?}"
    );
    let audit = db.store.audit_log(Page::default()).await.unwrap();
    let actions: Vec<&str> = audit.rows.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["start rollout", "approve"]);
    assert!(audit.rows[1].detail.contains("tag canary (1 agent)"));
    assert!(
        audit.rows[0].detail.contains("rings canary, prod"),
        "{}",
        audit.rows[0].detail
    );

    // A run before the ring began does not count; one after does.
    outcome(&db, "c1", "old", T0 - 10, Outcome::Failed).await;
    assert_eq!(get(&db, r.id).await.ring, progress(1, 0, 0));
    outcome(&db, "c1", "new", T0 + 10, Outcome::Succeeded).await;
    assert_eq!(get(&db, r.id).await.ring, progress(1, 1, 0));
    // Not soaked yet.
    assert!(db
        .store
        .advance_rollouts(T0 + 100)
        .await
        .unwrap()
        .is_empty());
    let at = T0 + HOUR as i64;
    assert_eq!(
        db.store.advance_rollouts(at).await.unwrap(),
        [
            RolloutChange::Promoted {
                id: r.id,
                ring: tag("prod")
            },
            RolloutChange::Completed { id: r.id }
        ]
    );
    assert!(approved(&db, "p1").await && approved(&db, "p2").await);
    let r = get(&db, r.id).await;
    assert_eq!(r.state, RolloutState::Completed);
    assert_eq!((r.current_ring, r.ring_started_at), (1, at));
    assert_eq!(r.ring, progress(2, 0, 0));
    let audit = db.store.audit_log(Page::default()).await.unwrap();
    assert_eq!(audit.rows[0].user, "rollout");
    assert_eq!(audit.rows[0].action, "promote rollout");
    assert!(db.store.advance_rollouts(at + 10).await.unwrap().is_empty());
    let err = db
        .store
        .promote_rollout(r.id, "alice", at, true)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid(m) if m.contains("completed")),
        "{err}"
    );
}
contract_test!(a_rollout_soaks_then_promotes_and_completes);

async fn too_many_failures_halt_until_forced(db: TestStore) {
    fleet(
        &db,
        &[
            ("c1", "canary"),
            ("c2", "canary"),
            ("w1", "web"),
            ("p1", "prod"),
        ],
    )
    .await;
    let r = db
        .store
        .create_rollout(&spec(&["canary", "web", "prod"], Some(60), 20), "alice", T0)
        .await
        .unwrap();
    outcome(&db, "c1", "r1", T0 + 1, Outcome::Failed).await;
    outcome(&db, "c2", "r2", T0 + 2, Outcome::Succeeded).await;
    assert_eq!(get(&db, r.id).await.ring, progress(2, 1, 1));
    let reason = r#"1 of 2 agents of ring "canary" failed (50% > 20%): c1"#;
    assert_eq!(
        db.store.advance_rollouts(T0 + 5).await.unwrap(),
        [RolloutChange::Halted {
            id: r.id,
            reason: reason.to_owned()
        }]
    );
    let halted = get(&db, r.id).await;
    assert_eq!(halted.state, RolloutState::Halted);
    assert_eq!(halted.halted_reason.as_deref(), Some(reason));
    // Halted: no automatic promotion, even long after the soak time.
    assert!(db
        .store
        .advance_rollouts(T0 + 999)
        .await
        .unwrap()
        .is_empty());
    assert!(!approved(&db, "w1").await);
    let before = dump_all(&db).await;
    let err = db
        .store
        .promote_rollout(r.id, "alice", T0 + 1000, false)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("halted: {reason}; promote with force")
    );
    assert_eq!(before, dump_all(&db).await);
    let forced = db
        .store
        .promote_rollout(r.id, "bob", T0 + 1000, true)
        .await
        .unwrap();
    assert_eq!(forced.state, RolloutState::Running);
    assert_eq!(
        (forced.current_ring, forced.ring_started_at),
        (1, T0 + 1000)
    );
    assert_eq!(forced.halted_reason, None);
    assert!(approved(&db, "w1").await);
    let audit = db.store.audit_log(Page::default()).await.unwrap();
    assert_eq!(audit.rows[0].user, "bob");
    assert!(
        audit.rows[0].detail.contains("forced past the halt"),
        "{}",
        audit.rows[0].detail
    );
    // A failure share at the limit does not halt: 0 of 1 failed in ring web.
    outcome(&db, "w1", "r3", T0 + 1001, Outcome::Succeeded).await;
    assert_eq!(
        db.store.advance_rollouts(T0 + 1060).await.unwrap(),
        [
            RolloutChange::Promoted {
                id: r.id,
                ring: tag("prod")
            },
            RolloutChange::Completed { id: r.id }
        ]
    );
}
contract_test!(too_many_failures_halt_until_forced);

async fn promotion_by_hand_and_rings_without_agents(db: TestStore) {
    fleet(&db, &[("c1", "canary"), ("p1", "prod")]).await;
    let by_hand = db
        .store
        .create_rollout(&spec(&["canary", "prod", "ghost"], None, 0), "alice", T0)
        .await
        .unwrap();
    outcome(&db, "c1", "r1", T0 + 1, Outcome::Succeeded).await;
    // No soak time: never promoted by itself.
    assert!(db
        .store
        .advance_rollouts(T0 + MAX_SOAK_SECS as i64)
        .await
        .unwrap()
        .is_empty());
    let r = db
        .store
        .promote_rollout(by_hand.id, "alice", T0 + 5, false)
        .await
        .unwrap();
    assert_eq!((r.current_ring, r.state), (1, RolloutState::Running));
    assert!(approved(&db, "p1").await);
    // The next ring's tag has no agents: refused by hand, nothing written.
    let before = dump_all(&db).await;
    let err = db
        .store
        .promote_rollout(by_hand.id, "alice", T0 + 6, false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid(m) if m.contains("ghost")),
        "{err}"
    );
    assert_eq!(before, dump_all(&db).await);
    let err = db
        .store
        .promote_rollout(999, "alice", T0, false)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert!(db.store.rollout(999).await.unwrap().is_none());

    // Automatically: halted with the reason.
    fleet(&db, &[("c2", "canary2")]).await;
    let auto = db
        .store
        .create_rollout(&spec(&["canary2", "ghost"], Some(60), 0), "alice", T0)
        .await
        .unwrap();
    outcome(&db, "c2", "r2", T0 + 1, Outcome::Succeeded).await;
    let reason = r#"ring 2 of 2 "ghost" has no agents to approve"#;
    assert_eq!(
        db.store.advance_rollouts(T0 + 60).await.unwrap(),
        [RolloutChange::Halted {
            id: auto.id,
            reason: reason.to_owned()
        }]
    );

    // One ring: its approval completes the roll-out.
    let single = db
        .store
        .create_rollout(&spec(&["prod"], None, 0), "alice", T0)
        .await
        .unwrap();
    assert_eq!(single.state, RolloutState::Completed);

    let listed = db.store.rollouts(Page::default()).await.unwrap();
    assert_eq!(listed.total, 3);
    let ids: Vec<u64> = listed.rows.iter().map(|r| r.id).collect();
    assert_eq!(ids, [single.id, auto.id, by_hand.id]);
    assert_eq!(listed.rows[1].state, RolloutState::Halted);
    let page = db
        .store
        .rollouts(Page {
            offset: 1,
            limit: 1,
        })
        .await
        .unwrap();
    assert_eq!((page.total, page.rows[0].id), (3, auto.id));
}
contract_test!(promotion_by_hand_and_rings_without_agents);

async fn bad_specs_are_refused_and_change_nothing(db: TestStore) {
    fleet(&db, &[("c1", "canary")]).await;
    let before = dump_all(&db).await;
    let many_rings: Vec<String> = (0..=MAX_RINGS).map(|i| format!("r{i}")).collect();
    let many: Vec<&str> = many_rings.iter().map(String::as_str).collect();
    let cases: Vec<(RolloutSpec, &str)> = vec![
        (
            RolloutSpec {
                tasks: Vec::new(),
                ..spec(&["canary"], None, 0)
            },
            "tasks: ",
        ),
        (
            RolloutSpec {
                tasks: vec![spec(&[], None, 0).tasks[0].clone(); 1001],
                ..spec(&["canary"], None, 0)
            },
            "tasks: ",
        ),
        (spec(&[], None, 0), "rings: "),
        (spec(&many, None, 0), "rings: "),
        (spec(&["canary", "prod", "canary"], None, 0), "rings[2]: "),
        (
            spec(&["canary"], Some(MAX_SOAK_SECS + 1), 0),
            "soak_seconds: ",
        ),
        (spec(&["canary"], None, 101), "max_failure_percent: "),
        (
            spec(&["nobody", "canary"], None, 0),
            "no agent carries tag nobody",
        ),
    ];
    for (bad, field) in cases {
        let err = db
            .store
            .create_rollout(&bad, "alice", T0)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Invalid(m) if m.starts_with(field)),
            "{field}: {err}"
        );
    }
    assert!(db
        .store
        .create_rollout(&spec(&["canary"], None, 0), "", T0)
        .await
        .is_err());
    assert_eq!(before, dump_all(&db).await);
    assert!(db
        .store
        .rollouts(Page::default())
        .await
        .unwrap()
        .rows
        .is_empty());
}
contract_test!(bad_specs_are_refused_and_change_nothing);

/// Two stores (two masters) advancing the same roll-outs at once: each change happens once.
async fn racing_stores_advance_each_rollout_once(db: TestStore) {
    let other = db.open_another(&Default::default()).await;
    fleet(&db, &[("c1", "canary"), ("p1", "prod"), ("e1", "edge")]).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let r = db
            .store
            .create_rollout(&spec(&["canary", "prod", "edge"], Some(60), 0), "alice", T0)
            .await
            .unwrap();
        ids.push(r.id);
    }
    outcome(&db, "c1", "r1", T0 + 1, Outcome::Succeeded).await;
    let (a, b) = tokio::join!(
        db.store.advance_rollouts(T0 + 60),
        other.advance_rollouts(T0 + 60)
    );
    let mut changes: Vec<RolloutChange> = a.unwrap();
    changes.extend(b.unwrap());
    assert_eq!(changes.len(), 4, "{changes:?}");
    for id in ids {
        let r = get(&db, id).await;
        assert_eq!((r.current_ring, r.state), (1, RolloutState::Running));
    }
    let promotions = db
        .int("SELECT COUNT(*) FROM audit WHERE action = 'promote rollout'")
        .await;
    assert_eq!(promotions, 4);
}
contract_test!(racing_stores_advance_each_rollout_once);
