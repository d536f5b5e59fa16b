//! The plan step of the upgrade loop: which approved packages may be tried now, and each
//! one's own plan (`apt-get -s install --only-upgrade PKG`), whose tasks missing from the
//! full plan are remembered so that the next report asks for them too.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use masif_proto::{PackageName, TaskSet};

use super::state::State;
use super::Agent;
use crate::decide;
use crate::status::Activity;

/// What the plan step found.
pub(super) struct Planned {
    /// Each planned package's own plan.
    pub(super) plans: BTreeMap<PackageName, TaskSet>,
    /// Packages whose planning failed, with the message (already shown and recorded as a
    /// failure).
    pub(super) failed: Vec<(PackageName, String)>,
    /// Packages given up after failed runs, their plan unchanged, and packages whose plan
    /// changes a held package.
    pub(super) given_up: Vec<PackageName>,
}

impl Agent {
    /// The packages with an approved task in `full` that were not attempted in this cycle,
    /// are not waiting out their retry interval and are not held.
    pub(super) fn candidates_now(
        &self,
        st: &State,
        full: &TaskSet,
        attempted: &BTreeSet<PackageName>,
        now: Instant,
    ) -> BTreeSet<PackageName> {
        decide::candidates(full, &st.approved)
            .into_iter()
            .filter(|p| !attempted.contains(p))
            .filter(|p| !st.known.held().contains(p))
            .filter(|p| st.failures.allowed(p, now, self.intervals.retry))
            .collect()
    }

    /// Plans the upgrade of each of `candidates` on its own. Tasks a package's plan needs
    /// that `full` lacks go to `st.extra` (they are reported too, or a package needing them
    /// could never be approved); a package whose planning fails is recorded as failed at
    /// `now`; a package given up after failed runs is left out unless its plan changed.
    pub(super) async fn plan_candidates(
        &self,
        st: &mut State,
        candidates: BTreeSet<PackageName>,
        full: &TaskSet,
        now: Instant,
    ) -> Planned {
        self.monitor.set_activity(Activity::Planning);
        let mut planned = Planned {
            plans: BTreeMap::new(),
            failed: Vec::new(),
            given_up: Vec::new(),
        };
        for package in candidates {
            match self.plan_package(&package).await {
                Ok(plan) => {
                    let tasks = plan.tasks();
                    let extra: TaskSet = tasks
                        .iter()
                        .filter(|t| !full.contains(t))
                        .cloned()
                        .collect();
                    if extra.is_empty() {
                        st.extra.remove(&package);
                    } else {
                        tracing::info!(%package, extra = extra.len(), "its plan needs tasks the full plan lacks; reporting them too");
                        st.extra.insert(package.clone(), extra);
                    }
                    if let Some(held) = decide::held_in(&tasks, st.known.held()) {
                        tracing::info!(%package, %held, "not upgrading: its plan changes a held package");
                        planned.given_up.push(package);
                        continue;
                    }
                    if st.failures.given_up(&package, &tasks) {
                        tracing::debug!(%package, "given up after failed runs; not trying the same plan again");
                        planned.given_up.push(package);
                        continue;
                    }
                    planned.plans.insert(package, tasks);
                }
                Err(e) => {
                    let message = format!("planning the upgrade of {package}: {e}");
                    tracing::error!(error = %message);
                    self.monitor.error(message.clone());
                    st.failures.record_planning(package.clone(), now);
                    planned.failed.push((package, message));
                }
            }
        }
        planned
    }
}
