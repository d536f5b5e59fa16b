//! What the loop remembers between cycles, how one cycle ended, and how a new full plan
//! makes remembered approvals and extra tasks stale.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use masif_proto::facts::Facts;
use masif_proto::{PackageName, TaskSet};

use super::runs::RunQueue;
use crate::decide::{self, Failures};
use crate::facts::Known;
use crate::status::Deferral;

/// What the loop remembers between cycles.
pub(super) struct State {
    /// Tasks the master said are approved (pruned to what is still planned).
    pub(super) approved: TaskSet,
    /// Tasks the master approved but deferred (a closed maintenance window, no free slot of
    /// a tag's max in flight), and why: not run until an answer moves them to `approved`.
    pub(super) deferred: TaskSet,
    pub(super) deferral: Deferral,
    /// The lease that came with the last answer's approvals (max in flight), not yet
    /// released: renewed while the next upgrade step runs, released when it ends.
    pub(super) lease: Option<Duration>,
    /// Per candidate package, the tasks of its single-package plan missing from the full
    /// plan: reported too, or a package needing them could never be approved.
    pub(super) extra: BTreeMap<PackageName, TaskSet>,
    /// The tasks of the last successful report, and when it was.
    pub(super) last_reported: Option<TaskSet>,
    pub(super) last_report_at: Option<Instant>,
    pub(super) failures: Failures,
    /// Run results not yet delivered to the master.
    pub(super) runs: RunQueue,
    /// When the last cycle started early because a held report was answered with changed
    /// approvals (at most one such cycle a second, whatever the master does).
    pub(super) last_early_cycle: Option<Instant>,
    /// What the host's facts are built from (held packages among them).
    pub(super) known: Known,
    /// The facts of the last successful report.
    pub(super) last_facts: Option<Facts>,
    /// The text of the last `dpkg --audit` finding reported or caused by a run of ours.
    pub(super) known_audit: Option<String>,
    /// The audit failed last time (logged once).
    pub(super) audit_failing: bool,
    /// The master asked (429 or 503 with `Retry-After`) not to be contacted before then.
    pub(super) quiet_until: Option<Instant>,
}

/// How one cycle ended.
#[derive(Debug, Default)]
pub(super) struct Cycle {
    pub(super) stopped: bool,
    pub(super) remaining: bool,
    /// The package whose upgrade found the package manager's lock held.
    pub(super) busy: Option<PackageName>,
    pub(super) report_failed: Option<String>,
    pub(super) upgrade_failed: Option<String>,
    /// What the host needs after the cycle's runs: the tasks to report next.
    pub(super) needed: TaskSet,
}

impl State {
    /// Nothing known yet; a package is given up after `max_failures` failed runs in a row
    /// (0: never).
    pub(super) fn new(max_failures: u32) -> Self {
        Self {
            approved: TaskSet::new(),
            deferred: TaskSet::new(),
            deferral: Deferral::default(),
            lease: None,
            extra: BTreeMap::new(),
            last_reported: None,
            last_report_at: None,
            failures: Failures::new(max_failures),
            runs: RunQueue::default(),
            last_early_cycle: None,
            known: Known::default(),
            last_facts: None,
            known_audit: None,
            audit_failing: false,
            quiet_until: None,
        }
    }

    /// Forgets what the new full plan `full` made stale and returns the tasks this host
    /// needs: the full plan and the extra tasks of single-package plans. An empty plan
    /// forgets every approval, extra task and failure; otherwise extra tasks are kept only
    /// for packages still candidates and only while the full plan lacks them, and
    /// approvals only for tasks still needed.
    pub(super) fn forget_unplanned(&mut self, full: &TaskSet) -> TaskSet {
        if full.is_empty() {
            self.approved.clear();
            self.extra.clear();
            self.failures.clear_all();
        }
        let candidates = decide::candidates(full, &self.approved);
        self.extra.retain(|p, tasks| {
            tasks.retain(|t| !full.contains(t));
            candidates.contains(p) && !tasks.is_empty()
        });
        let needed: TaskSet = full
            .iter()
            .chain(self.extra.values().flatten())
            .cloned()
            .collect();
        self.approved.retain(|t| needed.contains(t));
        self.deferred.retain(|t| needed.contains(t));
        if self.deferred.is_empty() {
            self.deferral = Deferral::default();
        }
        needed
    }
}

impl State {
    /// How long the master still asked to be left alone, if it did.
    pub(super) fn quiet_rest(&self) -> Option<std::time::Duration> {
        self.quiet_until
            .map(|t| t.saturating_duration_since(Instant::now()))
            .filter(|rest| !rest.is_zero())
    }
}
