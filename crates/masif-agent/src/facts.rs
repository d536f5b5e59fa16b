//! Host facts sent with every v2 report (`masif_proto::facts`): the host's files (`host`),
//! the packages dpkg holds (asked of the package manager), and per reported task the origin
//! of its target version and what its package's own plan needs besides. Facts never fail a
//! report: an odd one is left out or cut, lists are capped at the protocol's limits.

mod host;

pub(crate) use host::{fact_text, package_lines};
pub use host::{FactFiles, DEFAULT_REBOOT_REQUIRED_FILE};

use std::collections::{BTreeMap, BTreeSet};

use masif_proto::facts::{Facts, Origin, TaskFacts, MAX_LISTED_PACKAGES, MAX_NEEDS};
use masif_proto::{Action, PackageName, Tag, Task, TaskSet};

use crate::pm::Plan;
use host::HostFacts;

/// The agent's version, sent as `agent_version`.
const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the loop knows to build facts from, refreshed every cycle.
#[derive(Debug, Default)]
pub(crate) struct Known {
    host: HostFacts,
    held: BTreeSet<PackageName>,
    /// The origin of each task's target version in the latest full plan, and in the
    /// single-package plans (for tasks the full plan lacks).
    origins: BTreeMap<Task, Origin>,
    plan_origins: BTreeMap<Task, Origin>,
    /// The full plan the single-package plans below were made for, and those plans' tasks:
    /// planned again only when the full plan changes.
    plans_for: Option<TaskSet>,
    plans: BTreeMap<PackageName, TaskSet>,
    /// The tags the configuration gives the host.
    tags: BTreeSet<Tag>,
}

impl Known {
    /// Takes what the host's files say now.
    pub(crate) fn set_host(&mut self, host: HostFacts) {
        self.host = host;
    }

    /// Takes the host's tags (from the configuration).
    pub(crate) fn set_tags(&mut self, tags: BTreeSet<Tag>) {
        self.tags = tags;
    }

    /// Takes the packages dpkg holds now.
    pub(crate) fn set_held(&mut self, held: BTreeSet<PackageName>) {
        self.held = held;
    }

    pub(crate) fn held(&self) -> &BTreeSet<PackageName> {
        &self.held
    }

    pub(crate) fn reboot_required(&self) -> bool {
        self.host.reboot_required
    }

    /// Takes the origins a new full plan shows; origins of tasks it no longer holds are
    /// forgotten.
    pub(crate) fn set_full_plan(&mut self, full: &Plan) {
        self.origins = origins(full);
    }

    /// Whether the single-package plans were made for another full plan than `full`.
    pub(crate) fn plans_stale(&self, full: &TaskSet) -> bool {
        self.plans_for.as_ref() != Some(full)
    }

    /// Takes the single-package plans made for the full plan `full`.
    pub(crate) fn set_plans(&mut self, full: TaskSet, plans: BTreeMap<PackageName, Plan>) {
        self.plan_origins = plans.values().flat_map(origins).collect();
        self.plans = plans
            .into_iter()
            .map(|(p, plan)| (p, plan.tasks()))
            .collect();
        self.plans_for = Some(full);
    }

    /// The facts to send with a report of `tasks`: every task fact names one of them.
    pub(crate) fn facts_for(&self, tasks: &TaskSet) -> Facts {
        let mut facts = Facts {
            os: self.host.os.clone(),
            kernel: self.host.kernel.clone(),
            agent_version: fact_text("agent_version", AGENT_VERSION),
            reboot_required: self.host.reboot_required,
            reboot_packages: capped(&self.host.reboot_packages),
            held: capped(&self.held),
            tasks: BTreeMap::new(),
            tags: self.tags.clone(),
        };
        for task in tasks {
            let origin = self
                .origins
                .get(task)
                .or_else(|| self.plan_origins.get(task))
                .cloned();
            let needs = match task.action() {
                Action::Update | Action::Install => self
                    .plans
                    .get(task.package())
                    .map(|plan| needs(task.package(), plan))
                    .unwrap_or_default(),
                Action::Configure | Action::Remove | Action::Purge => TaskSet::new(),
            };
            if origin.is_some() || !needs.is_empty() {
                facts
                    .tasks
                    .insert(task.clone(), TaskFacts { origin, needs });
            }
        }
        facts
    }
}

fn capped(names: &BTreeSet<PackageName>) -> BTreeSet<PackageName> {
    names.iter().take(MAX_LISTED_PACKAGES).cloned().collect()
}

/// The origin of each task of `plan` that apt printed one for.
fn origins(plan: &Plan) -> BTreeMap<Task, Origin> {
    plan.steps()
        .iter()
        .filter_map(|step| {
            let origin = origin(step.origin.as_deref()?)?;
            Some((step.task.clone(), origin))
        })
        .collect()
}

/// The origin as apt prints it in a simulation line, without the trailing ` [ARCH]`:
/// `Debian-Security:12/stable-security [amd64]` gives `Debian-Security:12/stable-security`.
/// Cut to the protocol's length; `None` when nothing is left or it holds a control or format
/// character.
pub(crate) fn origin(raw: &str) -> Option<Origin> {
    let raw = raw.trim();
    let without_arch = match raw.rsplit_once(" [") {
        Some((origin, arch)) if arch.ends_with(']') && !arch.contains(' ') => origin,
        _ => raw,
    };
    let text = fact_text("origin", without_arch.trim())?;
    Origin::new(text.as_str()).ok()
}

/// What `package`'s own single-package plan does to OTHER packages: what must be approved
/// too before it runs. At most [`MAX_NEEDS`] tasks.
pub(crate) fn needs(package: &PackageName, plan: &TaskSet) -> TaskSet {
    plan.iter()
        .filter(|t| t.package() != package)
        .take(MAX_NEEDS)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apt::parse_line;
    use crate::pm::PlannedTask;

    fn step(line: &str) -> PlannedTask {
        parse_line(1, line).unwrap()
    }

    fn name(s: &str) -> PackageName {
        PackageName::new(s).unwrap()
    }

    #[test]
    fn the_architecture_is_cut_off_the_origin() {
        let cases = [
            (
                "Debian-Security:12/stable-security [amd64]",
                Some("Debian-Security:12/stable-security"),
            ),
            (
                "Sandbox:12/stable, Debian-Security:12/stable-security [all]",
                Some("Sandbox:12/stable, Debian-Security:12/stable-security"),
            ),
            ("localhost [all]", Some("localhost")),
            ("Debian:12/stable", Some("Debian:12/stable")),
            ("S", Some("S")),
            ("[amd64]", Some("[amd64]")),
            (" [amd64]", Some("[amd64]")),
            (
                "Debian:12/stable [amd 64]",
                Some("Debian:12/stable [amd 64]"),
            ),
            ("", None),
            ("Debian\u{202e}:12/stable [amd64]", None),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                origin(raw).as_ref().map(Origin::as_str),
                expected,
                "{raw:?}"
            );
        }
        let long = format!("{} [amd64]", "x".repeat(300));
        assert_eq!(origin(&long).unwrap().as_str().len(), 191);
    }

    #[test]
    fn origins_come_from_the_plan_lines() {
        let plan = Plan::new(vec![
            step("Remv epsilon [1.0]"),
            step("Inst alpha [1.0] (2.0 Debian-Security:12/stable-security [amd64])"),
            step("Conf alpha (2.0 Debian-Security:12/stable-security [amd64])"),
        ]);
        let found = origins(&plan);
        assert_eq!(found.len(), 2);
        assert!(found.values().all(Origin::is_security));
    }

    #[test]
    fn needs_are_the_other_packages_tasks_of_its_own_plan() {
        let beta: TaskSet = [
            "Inst gamma (1.0 S [all])",
            "Inst beta [1.0] (2.0 S [all])",
            "Conf gamma (1.0 S [all])",
            "Conf beta (2.0 S [all])",
        ]
        .iter()
        .map(|l| step(l).task)
        .collect();
        let needs = needs(&name("beta"), &beta);
        assert_eq!(needs.len(), 2);
        assert!(needs.iter().all(|t| t.package().as_str() == "gamma"));
        let big: TaskSet = (0..MAX_NEEDS + 5)
            .map(|i| step(&format!("Remv p{i} [1.0]")).task)
            .collect();
        assert_eq!(super::needs(&name("beta"), &big).len(), MAX_NEEDS);
    }

    #[test]
    fn facts_name_only_reported_tasks() {
        let full = Plan::new(vec![
            step("Inst gamma (1.0 S:12/stable [all])"),
            step("Inst beta [1.0] (2.0 S:12/stable [all])"),
            step("Inst alpha [1.0] (2.0 Debian-Security:12/stable-security [amd64])"),
            step("Remv epsilon [1.0]"),
        ]);
        let mut known = Known::default();
        known.set_full_plan(&full);
        let beta_plan = Plan::new(full.steps()[..2].to_vec());
        known.set_plans(full.tasks(), [(name("beta"), beta_plan)].into());
        known.set_held([name("delta")].into());
        let reported: TaskSet = full
            .tasks()
            .into_iter()
            .filter(|t| t.package().as_str() != "gamma")
            .collect();
        let facts = known.facts_for(&reported);
        assert_eq!(facts.agent_version.unwrap().as_str(), AGENT_VERSION);
        assert_eq!(facts.held, [name("delta")].into());
        // alpha (origin), beta (origin, needs gamma); not gamma (not reported), not epsilon.
        let keys: Vec<&str> = facts.tasks.keys().map(|t| t.package().as_str()).collect();
        assert_eq!(keys, ["alpha", "beta"]);
        let beta = facts
            .tasks
            .iter()
            .find(|(t, _)| t.package().as_str() == "beta")
            .unwrap()
            .1;
        assert_eq!(
            beta.needs
                .iter()
                .map(|t| t.package().as_str())
                .collect::<Vec<_>>(),
            ["gamma"]
        );
        assert!(!known.plans_stale(&full.tasks()));
        assert!(known.plans_stale(&reported));
        // A task only a single-package plan shows keeps that plan's origin.
        known.set_full_plan(&Plan::new(full.steps()[2..].to_vec()));
        let gamma = full.steps()[0].task.clone();
        let facts = known.facts_for(&[gamma.clone()].into());
        assert_eq!(
            facts.tasks[&gamma].origin.as_ref().map(Origin::as_str),
            Some("S:12/stable")
        );
    }
}
