//! The synthetic fleet of the report benchmarks (MySQL `benches/report.rs`, SQLite
//! `sqlite::bench`): agent names, their reports and the sizes read from the environment.

use masif_proto::{Action, AgentName, PackageName, Task, TaskSet, Version};

/// Distinct packages in the fleet.
pub const PACKAGES: usize = 400;

/// The number in environment variable `name`, else `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The name of agent `i`.
pub fn agent_name(i: usize) -> AgentName {
    AgentName::new(format!("host{i:05}.example.com")).unwrap()
}

/// The name of package `p`.
fn package_name(p: usize) -> PackageName {
    PackageName::new(format!("package-{p:03}")).unwrap()
}

/// The report of agent `i` in round `round` (`round` changes one task's target version).
pub fn report_of(i: usize, tasks: usize, round: usize) -> TaskSet {
    (0..tasks)
        .map(|k| {
            let p = (i * 7 + k * 13) % PACKAGES;
            let to = if k == 0 {
                format!("2.{round}")
            } else {
                "2.0".to_owned()
            };
            Task::new(
                package_name(p),
                Action::Update,
                Some(Version::new("1.0-1").unwrap()),
                Some(Version::new(to).unwrap()),
            )
            .unwrap()
        })
        .collect()
}

/// The packages whose "update to 2.0" a benchmark approves: every `step`th from `first` on
/// (the store's `TaskKey`s are built by the caller, so this crate needs no store).
pub fn updated_packages(first: usize, step: usize) -> Vec<(PackageName, Action, Version)> {
    (first..PACKAGES)
        .step_by(step)
        .map(|p| {
            (
                package_name(p),
                Action::Update,
                Version::new("2.0").unwrap(),
            )
        })
        .collect()
}
