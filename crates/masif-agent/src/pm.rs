//! The package-manager interface the agent loop talks to (APT today, dnf later): plans,
//! runs of exactly an approved single-package plan, and what came of them.

use std::collections::BTreeSet;

use async_trait::async_trait;
use masif_proto::{PackageName, Task, TaskSet};

use crate::audit::Audit;
use crate::exec::Output;
use crate::Result;

/// One step of a plan, in the package manager's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTask {
    pub task: Task,
    /// Where the target version comes from, e.g. `Debian-Security:12/stable [amd64]`: tells a
    /// security update apart from a point release.
    pub origin: Option<String>,
}

/// What the package manager would do, step by step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    steps: Vec<PlannedTask>,
}

impl Plan {
    pub fn new(steps: Vec<PlannedTask>) -> Self {
        Self { steps }
    }

    pub fn steps(&self) -> &[PlannedTask] {
        &self.steps
    }

    /// The distinct tasks of the plan.
    pub fn tasks(&self) -> TaskSet {
        self.steps.iter().map(|s| s.task.clone()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The packages the plan touches.
    pub fn packages(&self) -> BTreeSet<PackageName> {
        self.steps
            .iter()
            .map(|s| s.task.package().clone())
            .collect()
    }

    /// The origin text of the step carrying `task`, if any.
    pub fn origin_of(&self, task: &Task) -> Option<&str> {
        self.steps
            .iter()
            .find(|s| &s.task == task)
            .and_then(|s| s.origin.as_deref())
    }
}

/// One run as it was approved: the single-package plan of `package`, to be carried out
/// exactly (the same versions, nothing removed that the plan does not remove).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub package: PackageName,
    pub plan: TaskSet,
}

/// How a real run of the package manager ended. The exit status alone does not say whether
/// the package was upgraded: the caller plans again and looks.
#[derive(Debug, Clone)]
pub enum RunOutcome {
    /// The package manager ran (successfully or not); its output is attached.
    Ran(Output),
    /// Another process holds the package manager's lock: nothing was done, try later.
    Busy(String),
}

/// A package manager the agent can drive.
#[async_trait]
pub trait PackageManager: Send + Sync {
    /// What a full upgrade of the system would do.
    async fn plan_full(&self) -> Result<Plan>;
    /// What upgrading only `package` (and what it needs) would do.
    async fn plan_package(&self, package: &PackageName) -> Result<Plan>;
    /// What the command [`PackageManager::run_job`] would run for `job` does now: a
    /// simulation of exactly that command. An error may mean that it can no longer be done
    /// (a version gone, a removal needed).
    async fn simulate_job(&self, job: &Job) -> Result<Plan>;
    /// Runs `job` for real, non-interactively, keeping existing configuration files.
    async fn run_job(&self, job: &Job) -> Result<RunOutcome>;
    /// The packages held back from any change (dpkg's `hold` selections): never candidates
    /// for a run, whatever is approved. None unless the package manager knows holds.
    async fn held(&self) -> Result<BTreeSet<PackageName>> {
        Ok(BTreeSet::new())
    }
    /// What the package manager's own consistency check says (`dpkg --audit`): packages
    /// left unfinished, e.g. by an interrupted run. Clean unless the package manager has
    /// such a check.
    async fn audit(&self) -> Result<Audit> {
        Ok(Audit::Clean)
    }
}
