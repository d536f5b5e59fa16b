//! Unit tests of the roll-out rules: stored forms read back, lease refusals, the step a
//! running roll-out takes and the texts of halts.

use super::*;
use crate::RingProgress;

fn rollout(rings: &[&str], soak: Option<u64>, percent: u8) -> Rollout {
    Rollout {
        id: 7,
        tasks: Vec::new(),
        rings: rings.iter().map(|r| Tag::new(*r).unwrap()).collect(),
        soak_secs: soak,
        max_failure_percent: percent,
        state: RolloutState::Running,
        current_ring: 0,
        ring_started_at: 1000,
        halted_reason: None,
        created_by: "alice".into(),
        created_at: 1000,
        ring: RingProgress::default(),
    }
}

fn tally(agents: u64, failed: &[&str], succeeded: u64) -> Tally {
    Tally {
        agents,
        failed: failed.iter().map(|f| f.to_string()).collect(),
        succeeded,
    }
}

#[test]
fn stored_tags_read_back_sorted_without_unusable_ones() {
    let tags = tags_from_text(Some("web -bad db".into()));
    assert_eq!(tags, [Tag::new("db").unwrap(), Tag::new("web").unwrap()]);
    assert!(tags_from_text(None).is_empty());
}

#[test]
fn failures_above_the_share_halt_and_name_up_to_five_agents() {
    let r = rollout(&["canary", "prod"], Some(60), 20);
    assert_eq!(
        next_step(&r, &tally(5, &["web-4", "web-1"], 3), 1000),
        Step::Halt(r#"2 of 5 agents of ring "canary" failed (40% > 20%): web-1, web-4"#.into())
    );
    // Exactly at the share: no halt.
    assert_eq!(next_step(&r, &tally(5, &["a"], 0), 1000), Step::Wait);
    let many = ["a", "b", "c", "d", "e", "f", "g"];
    let Step::Halt(reason) = next_step(&r, &tally(7, &many, 0), 1000) else {
        panic!("not halted");
    };
    assert!(reason.ends_with(": a, b, c, d, e and 2 more"), "{reason}");
    // No agents: nothing to judge.
    assert_eq!(next_step(&r, &tally(0, &[], 0), 1000), Step::Wait);
}

#[test]
fn promotion_needs_the_soak_time_and_a_success() {
    let r = rollout(&["canary", "prod"], Some(60), 0);
    assert_eq!(next_step(&r, &tally(2, &[], 1), 1059), Step::Wait);
    assert_eq!(next_step(&r, &tally(2, &[], 0), 1060), Step::Wait);
    assert_eq!(next_step(&r, &tally(2, &[], 1), 1060), Step::Promote);
    let by_hand = rollout(&["canary", "prod"], None, 0);
    assert_eq!(next_step(&by_hand, &tally(2, &[], 2), i64::MAX), Step::Wait);
    let last = Rollout {
        current_ring: 1,
        ..r.clone()
    };
    assert_eq!(next_step(&last, &tally(2, &[], 0), 0), Step::Complete);
    let halted = Rollout {
        state: RolloutState::Halted,
        ..r
    };
    assert_eq!(next_step(&halted, &tally(2, &[], 2), 5000), Step::Wait);
}

#[test]
fn a_full_tag_refuses_the_whole_request() {
    let count = |limit, live, own, earliest| LeaseCount {
        limit,
        live,
        own,
        earliest,
    };
    let (web, db) = (Tag::new("web").unwrap(), Tag::new("db").unwrap());
    let counts = [
        (db.clone(), count(2, 1, false, Some(50))),
        (web.clone(), count(1, 1, false, Some(70))),
    ];
    assert_eq!(
        lease_refusal(&counts, 10),
        Some(LeaseOutcome::Busy {
            tag: web.clone(),
            free_at: 70
        })
    );
    // The agent's own live lease is renewed, not counted against it.
    assert_eq!(
        lease_refusal(&[(web.clone(), count(1, 1, true, Some(70)))], 10),
        None
    );
    assert_eq!(
        lease_order(&[(web.clone(), 3), (db.clone(), 2), (web.clone(), 1)]),
        [(db, 2), (web, 1)]
    );
    assert_eq!(expiry(i64::MAX - 1, 10), i64::MAX);
}

#[test]
fn roll_out_tasks_read_back_as_written() {
    let task = ApprovalTask {
        key: TaskKey {
            package: PackageName::new("x").unwrap(),
            action: Action::Update,
            to_version: Some(Version::new("2").unwrap()),
        },
        from_version: Some(Version::new("1").unwrap()),
    };
    let text = tasks_to_text(std::slice::from_ref(&task));
    assert_eq!(tasks_from_text(&text).unwrap(), [task]);
    assert!(tasks_from_text(r#"[{"package":"x","action":"fly"}]"#).is_err());
}
