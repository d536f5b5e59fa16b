//! Task, agent and run builders for tests: the protocol constructors with valid input unwrapped.

use masif_proto::v2::{Outcome, Run, RunId, RunOutput};
use masif_proto::{Action, AgentName, PackageName, Task, Version};

/// The agent called `name`.
pub fn agent(name: &str) -> AgentName {
    AgentName::new(name).unwrap()
}

/// The task `action package from -> to`.
pub fn task(package: &str, action: Action, from: Option<&str>, to: Option<&str>) -> Task {
    Task::new(
        PackageName::new(package).unwrap(),
        action,
        from.map(|v| Version::new(v).unwrap()),
        to.map(|v| Version::new(v).unwrap()),
    )
    .unwrap()
}

/// `update package from -> to`.
pub fn update(package: &str, from: &str, to: &str) -> Task {
    task(package, Action::Update, Some(from), Some(to))
}

/// `install package -> to`.
pub fn install(package: &str, to: &str) -> Task {
    task(package, Action::Install, None, Some(to))
}

/// A run of `task` with id `id` that started at `started_at` and took 65 s: exit code 0 if it
/// succeeded, 100 if it failed, none if the plan changed; no output.
pub fn run(id: &str, task: Task, outcome: Outcome, started_at: i64) -> Run {
    Run {
        id: RunId::new(id).unwrap(),
        package: task.package().clone(),
        started_at,
        duration_ms: 65_000,
        exit_code: match outcome {
            Outcome::Succeeded => Some(0),
            Outcome::Failed => Some(100),
            Outcome::PlanChanged => None,
        },
        outcome,
        tasks: [task].into_iter().collect(),
        output: RunOutput::default(),
    }
}
