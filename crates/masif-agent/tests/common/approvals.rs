//! The approval logic both test masters share: (package, action) patterns, like approval rows
//! with from_version and to_version NULL, and what the real master's roll-out gate does with
//! what they approve (defer it, or give a lease with it).

use std::sync::Mutex;

use masif_proto::v2::{DeferReason, ReportAnswer};
use masif_proto::{Action, TaskSet};

#[derive(Default)]
pub struct Approvals {
    patterns: Mutex<Vec<(String, Action)>>,
    /// Approved tasks are deferred for this reason (until `not_before`) instead of approved.
    defer: Mutex<Option<(DeferReason, Option<i64>)>>,
    /// Approvals come with a lease of this many seconds.
    pub lease_seconds: Mutex<Option<u64>>,
}

impl Approvals {
    pub fn approve(&self, package: &str, actions: &[Action]) {
        let mut patterns = self.patterns.lock().unwrap();
        for action in actions {
            patterns.push((package.into(), *action));
        }
    }

    pub fn revoke(&self, package: &str) {
        self.patterns.lock().unwrap().retain(|(p, _)| p != package);
    }

    /// From now on approved tasks are deferred (`None`: approved again), as the master's
    /// maintenance windows and max in flight do.
    pub fn defer(&self, deferral: Option<(DeferReason, Option<i64>)>) {
        *self.defer.lock().unwrap() = deferral;
    }

    /// The reported `tasks` a pattern approves.
    pub fn answer(&self, tasks: &TaskSet) -> TaskSet {
        let patterns = self.patterns.lock().unwrap();
        tasks
            .iter()
            .filter(|t| {
                patterns
                    .iter()
                    .any(|(p, a)| t.package().as_str() == p && t.action() == *a)
            })
            .cloned()
            .collect()
    }

    /// The v2 answer to a report of `tasks`: the approved ones, deferred or with a lease.
    pub fn gated(&self, tasks: &TaskSet) -> ReportAnswer {
        let approved = self.answer(tasks);
        match *self.defer.lock().unwrap() {
            Some((reason, not_before)) if !approved.is_empty() => ReportAnswer {
                approved: TaskSet::new(),
                deferred: approved,
                reason: Some(reason),
                not_before,
                lease_seconds: None,
            },
            _ => ReportAnswer {
                lease_seconds: (*self.lease_seconds.lock().unwrap())
                    .filter(|_| !approved.is_empty()),
                ..ReportAnswer::approving(approved)
            },
        }
    }
}
