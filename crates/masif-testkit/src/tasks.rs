//! Task and agent builders for tests: the protocol constructors with valid input unwrapped.

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
