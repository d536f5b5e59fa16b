//! The facts step of a cycle: read the host's files, ask the package manager which packages
//! are held, take the origins of the new full plan, and, when the full plan changed, plan
//! each updated package on its own (what approving it pulls in: its `needs`). Done at the
//! start of a cycle and again right after its runs if they changed the full plan, so that
//! the held report carries facts for the plan the next cycle will find. Nothing here fails
//! the cycle: a fact that cannot be had is left out.

use std::collections::{BTreeMap, BTreeSet};

use masif_proto::{Action, PackageName};

use super::state::State;
use super::stop::Stop;
use super::Agent;
use crate::pm::Plan;

/// Most packages planned on their own for their `needs` after a change of the full plan (one
/// `apt-get -s` each, about 20 ms); the others are reported without `needs`.
const MAX_NEEDS_PLANS: usize = 300;

impl Agent {
    /// Refreshes what the host's facts are built from, `full` being the new full plan.
    pub(super) async fn refresh_facts(&self, st: &mut State, full: &Plan, stop: &mut Stop) {
        st.known.set_host(self.fact_files.read());
        match self.pm.held().await {
            Ok(held) => st.known.set_held(held),
            Err(e) => {
                // Keep what was known: apt refuses to change a held package anyway.
                tracing::warn!(error = %e, "cannot list held packages; keeping the last list");
            }
        }
        st.known.set_full_plan(full);
        let tasks = full.tasks();
        if st.known.plans_stale(&tasks) {
            let updated: BTreeSet<PackageName> = tasks
                .iter()
                .filter(|t| t.action() == Action::Update)
                .map(|t| t.package().clone())
                .filter(|p| !st.known.held().contains(p))
                .collect();
            if updated.len() > MAX_NEEDS_PLANS {
                tracing::debug!(
                    packages = updated.len(),
                    "planning only the first {MAX_NEEDS_PLANS} packages for their needs"
                );
            }
            let mut plans = BTreeMap::new();
            for package in updated.into_iter().take(MAX_NEEDS_PLANS) {
                if stop.is_set() {
                    return;
                }
                match self.plan_package(&package).await {
                    Ok(plan) => {
                        plans.insert(package, plan);
                    }
                    Err(e) => {
                        tracing::debug!(%package, error = %e, "its own plan failed; reported without needs");
                    }
                }
            }
            st.known.set_plans(tasks, plans);
        }
        self.monitor.set_facts(
            st.known.reboot_required(),
            st.known.held().iter().map(|p| p.to_string()),
        );
    }
}
