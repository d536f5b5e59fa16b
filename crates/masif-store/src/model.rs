//! Plain data exchanged with the store: filters, pages, overview rows, approvals, audit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use masif_proto::facts::TaskFacts;
use masif_proto::v2::{Outcome, RunId, RunOutput};
use masif_proto::{Action, AgentName, PackageName, Task, TaskSet, Version};
use serde::Serialize;

/// A window into a long listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub offset: u64,
    pub limit: u64,
}

impl Default for Page {
    fn default() -> Self {
        Self {
            offset: 0,
            limit: 100,
        }
    }
}

/// Rows of one page plus the number of rows in all pages.
#[derive(Debug, Clone, Serialize)]
pub struct Listing<T> {
    pub rows: Vec<T>,
    pub total: u64,
}

/// Substring filters of the pending page (case-insensitive, `None` = no filter).
#[derive(Debug, Clone, Default)]
pub struct PendingFilter {
    pub package: Option<String>,
    pub agent: Option<String>,
    /// Only rows of this action.
    pub action: Option<Action>,
    /// Only security updates (rows some agent reported with a security origin).
    pub security_only: bool,
    /// Only tasks of agents carrying this tag.
    pub tag: Option<masif_proto::Tag>,
}

/// What a checkbox of the pending page stands for: (package, action, target version).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct TaskKey {
    pub package: PackageName,
    pub action: Action,
    pub to_version: Option<Version>,
}

/// The checkbox a task belongs to: what approving it matches (its from-version plays no
/// part).
impl From<&Task> for TaskKey {
    fn from(task: &Task) -> Self {
        TaskKey {
            package: task.package().clone(),
            action: task.action(),
            to_version: task.to_version().cloned(),
        }
    }
}

/// What one approval is for: a task key, and optionally the version the package must be
/// upgraded from (`None`: any, like every approval the pages make).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ApprovalTask {
    pub key: TaskKey,
    pub from_version: Option<Version>,
}

impl From<TaskKey> for ApprovalTask {
    fn from(key: TaskKey) -> Self {
        Self {
            key,
            from_version: None,
        }
    }
}

impl ApprovalTask {
    /// `tasks` (distinct and sorted) plus, for every install or update to version V,
    /// configuring the package at V, from any version.
    ///
    /// APT plans an install or update as two steps (`Inst P … (V …)` then `Conf P (V …)`) and
    /// the agent runs a package only when every step is approved, so approving "update P to V"
    /// alone would never run. The configure step runs the maintainer scripts of the version the
    /// administrator approved: it is part of the same operation, not a separate decision.
    /// A configure on its own (a half-configured package) still needs its own approval.
    pub(crate) fn with_configure_steps(tasks: &[ApprovalTask]) -> Vec<ApprovalTask> {
        let steps = tasks
            .iter()
            .filter_map(|t| match (t.key.action, &t.key.to_version) {
                (Action::Install | Action::Update, Some(to)) => Some(ApprovalTask::from(TaskKey {
                    package: t.key.package.clone(),
                    action: Action::Configure,
                    to_version: Some(to.clone()),
                })),
                _ => None,
            });
        let all: std::collections::BTreeSet<ApprovalTask> =
            tasks.iter().cloned().chain(steps).collect();
        all.into_iter().collect()
    }

    /// What both back ends check of an approval before writing anything: the user's name and
    /// a scope naming at least one agent. Returns the rows to write ([`Self::with_configure_steps`]),
    /// none when `tasks` is empty.
    pub(crate) fn checked(
        tasks: &[ApprovalTask],
        scope: &ApprovalScope,
        user: &str,
    ) -> crate::Result<Vec<ApprovalTask>> {
        crate::audit::check_user(user)?;
        if matches!(scope, ApprovalScope::Agents(a) if a.is_empty()) {
            return Err(crate::StoreError::Invalid("approval for no agents".into()));
        }
        Ok(Self::with_configure_steps(tasks))
    }
}

/// One (action, target version) of a package on the pending page.
#[derive(Debug, Clone, Serialize)]
pub struct PendingRow {
    pub action: Action,
    pub to_version: Option<Version>,
    /// Agents awaiting approval of exactly this row.
    pub agents: u64,
    /// When the earliest of those agents first reported it (unix seconds); `None` when only
    /// rows without that time await it (written by the original master, or before
    /// migration 0011).
    pub since: Option<i64>,
    /// Some agent reported the target version from a security archive.
    pub security: bool,
    /// What the row's own plan pulls in on the agents awaiting it (the union over them): the
    /// tasks of other packages that must be approved too before it runs.
    pub needs: Vec<TaskKey>,
}

/// One package on the pending page.
#[derive(Debug, Clone, Serialize)]
pub struct PendingGroup {
    pub package: PackageName,
    /// Agents awaiting approval of any row of this package.
    pub agents: u64,
    /// Rows in order: security updates first, then by action and version.
    pub rows: Vec<PendingRow>,
    /// Agents holding this package (dpkg `hold`): it never runs there.
    pub held_on: u64,
}

/// The pending page: one page of package groups, and how many packages match in all.
#[derive(Debug, Clone, Serialize)]
pub struct PendingOverview {
    pub groups: Vec<PendingGroup>,
    pub total_packages: u64,
    /// Security updates awaiting approval, whatever the filter.
    pub security: SecuritySummary,
}

/// "12 security updates awaiting approval on 340 agents".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SecuritySummary {
    /// Distinct pending (package, action, target version) rows with a security origin, but
    /// configure steps: those come with their install or update, which is counted.
    pub updates: u64,
    /// Agents awaiting at least one of them.
    pub agents: u64,
}

/// An agent as listed by the UI. Times are unix seconds.
#[derive(Debug, Clone, Serialize)]
pub struct AgentSummary {
    pub name: AgentName,
    pub ctime: i64,
    /// Last change of the pending set (the original's meaning of `agent.mtime`).
    pub mtime: i64,
    /// Last report received, `None` for agents only the original master has seen.
    pub last_seen: Option<i64>,
    pub pending_tasks: u64,
    pub pending_packages: u64,
    /// The outcome and start (unix seconds) of the agent's newest run, if any is stored.
    pub last_run: Option<(Outcome, i64)>,
    /// Packages whose latest run on this agent failed.
    pub failing_packages: u64,
    /// The tags of its latest facts, by name.
    pub tags: Vec<masif_proto::Tag>,
    /// The agent's latest facts say the host needs a reboot.
    pub reboot_required: bool,
}

/// Which agents the Agents page lists (every `None`/`false` filter selects all).
#[derive(Debug, Clone, Default)]
pub struct AgentFilter {
    /// Case-insensitive substring of the name.
    pub name: Option<String>,
    /// Only agents not seen since this time (unix seconds): the offline ones.
    pub not_seen_since: Option<i64>,
    /// Only agents with a package whose latest run failed.
    pub failing: bool,
    /// Only agents whose host needs a reboot.
    pub reboot_required: bool,
    /// Only agents carrying this tag.
    pub tag: Option<masif_proto::Tag>,
}

/// The counts at the top of the Agents page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AgentCounts {
    pub agents: u64,
    pub offline: u64,
    pub failing: u64,
    pub reboot_required: u64,
}

/// How many runs are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Newest runs kept per agent.
    pub keep_per_agent: u32,
    /// Runs that started longer ago than this (seconds) are deleted.
    pub max_age_secs: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep_per_agent: 50,
            max_age_secs: 90 * 24 * 3600,
        }
    }
}

/// A stored run, as the agent page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub run_id: RunId,
    pub package: PackageName,
    pub started_at: i64,
    pub duration_ms: u64,
    pub exit_code: Option<i32>,
    pub outcome: Outcome,
    #[serde(skip)]
    pub tasks: TaskSet,
    /// The last lines of apt/dpkg's output: plain text, to be escaped wherever it is shown.
    pub output: RunOutput,
}

/// A package whose latest run failed on some agents.
#[derive(Debug, Clone, Serialize)]
pub struct FailingPackage {
    pub package: PackageName,
    pub agents: u64,
    /// Start of the newest of those failed runs (unix seconds).
    pub last_failed_at: i64,
}

/// A token that changes when the approvals in force change (see
/// [`AgentLoop::approval_token`](crate::AgentLoop::approval_token)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApprovalToken {
    /// The counter bumped by every approval, revocation and reset made through the store.
    pub generation: u64,
    /// The counter bumped (with `generation`) by the changes that may alter the roll-out
    /// gate's answer without changing approvals: tag settings, leases given back, roll-out
    /// steps and resets.
    pub gate: u64,
    /// With a deep read: the number of approval rows and the sum of their ids.
    pub rows: Option<(u64, u64)>,
}

/// One agent with its pending tasks.
#[derive(Debug, Clone)]
pub struct AgentDetail {
    pub agent: AgentSummary,
    pub pending: Vec<Task>,
    /// The host facts of its latest v2 report, if any.
    pub facts: Option<HostFacts>,
    /// Facts of pending tasks (origin, what each pulls in), where the agent sent them.
    pub task_facts: BTreeMap<Task, TaskFacts>,
}

/// An agent's latest host facts as stored (texts as the agent sent them: escape when shown).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostFacts {
    pub os: Option<String>,
    pub kernel: Option<String>,
    pub agent_version: Option<String>,
    pub reboot_required: bool,
    /// Packages that asked for the reboot.
    pub reboot_packages: Vec<PackageName>,
    /// Packages held by dpkg.
    pub held: Vec<PackageName>,
    /// When these facts were stored (unix seconds).
    pub reported_at: i64,
}

/// For whom an approval is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalScope {
    AllAgents,
    Agents(Vec<AgentName>),
    /// The agents carrying the tag when the approval is made (one approval row each); a tag
    /// no agent carries is [`StoreError::Invalid`](crate::StoreError::Invalid).
    Tag(masif_proto::Tag),
}

/// What an approval changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ApprovalOutcome {
    pub approvals_written: u64,
    pub pending_rows_approved: u64,
}

/// How far an approval has got, updated after each of its chunks (see
/// [`crate::Admin::approve_tasks_tracked`]): what the UI shows while a large one is written.
#[derive(Debug, Default)]
pub struct ApprovalProgress {
    agents: AtomicU64,
    agents_done: AtomicU64,
    approvals_written: AtomicU64,
    pending_rows_approved: AtomicU64,
    finished: AtomicBool,
}

impl ApprovalProgress {
    /// Agents done and in all; (0, 0) for an approval for every agent.
    pub fn agents(&self) -> (u64, u64) {
        (
            self.agents_done.load(Ordering::Relaxed),
            self.agents.load(Ordering::Relaxed),
        )
    }

    /// What is written so far.
    pub fn written(&self) -> ApprovalOutcome {
        ApprovalOutcome {
            approvals_written: self.approvals_written.load(Ordering::Relaxed),
            pending_rows_approved: self.pending_rows_approved.load(Ordering::Relaxed),
        }
    }

    /// Whether the approval has ended, written in full or not.
    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    pub(crate) fn start(&self, agents: u64) {
        self.agents.store(agents, Ordering::Relaxed);
    }

    pub(crate) fn add(&self, agents_done: u64, written: &ApprovalOutcome) {
        self.agents_done.fetch_add(agents_done, Ordering::Relaxed);
        self.approvals_written
            .fetch_add(written.approvals_written, Ordering::Relaxed);
        self.pending_rows_approved
            .fetch_add(written.pending_rows_approved, Ordering::Relaxed);
    }

    pub(crate) fn finish(&self) {
        self.finished.store(true, Ordering::Release);
    }
}

/// An approval row in force. NULL columns are wildcards; `agent: None` means every agent.
#[derive(Debug, Clone, Serialize)]
pub struct Approval {
    pub id: u64,
    pub agent: Option<AgentName>,
    pub package: Option<PackageName>,
    pub action: Option<Action>,
    pub from_version: Option<Version>,
    pub to_version: Option<Version>,
    /// Who approved, when known (approvals made by the original UI have no record).
    pub approved_by: Option<String>,
    pub approved_at: Option<i64>,
}

/// What one step of [`crate::Admin::check_pending_summary`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SummaryCheck {
    /// The last package checked, to continue from; `None` once past the last package.
    pub next: Option<u64>,
    /// How many counts were wrong and corrected.
    pub corrected: u64,
}

/// Row counts of the original tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TableCounts {
    pub tasks: u64,
    pub packages: u64,
    pub agents: u64,
}

/// One audited change made through the UI.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: u64,
    pub at: i64,
    pub user: String,
    /// `approve`, `revoke` or `reset`.
    pub action: String,
    /// Human-readable description of what changed.
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(package: &str, action: Action, to: Option<&str>) -> ApprovalTask {
        ApprovalTask::from(TaskKey {
            package: PackageName::new(package).unwrap(),
            action,
            to_version: to.map(|v| Version::new(v).unwrap()),
        })
    }

    #[test]
    fn installs_and_updates_bring_their_configure_step() {
        let keys = [
            key("alpha", Action::Update, Some("2.0")),
            key("gamma", Action::Install, Some("1.0")),
            key("epsilon", Action::Remove, None),
            key("zeta", Action::Configure, Some("2.0")),
        ];
        let expanded = ApprovalTask::with_configure_steps(&keys);
        assert_eq!(
            expanded,
            vec![
                key("alpha", Action::Update, Some("2.0")),
                key("alpha", Action::Configure, Some("2.0")),
                key("epsilon", Action::Remove, None),
                key("gamma", Action::Install, Some("1.0")),
                key("gamma", Action::Configure, Some("1.0")),
                key("zeta", Action::Configure, Some("2.0")),
            ]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
        // Already ticked configure rows are not doubled.
        let twice = ApprovalTask::with_configure_steps(&expanded);
        assert_eq!(twice, expanded);
    }

    #[test]
    fn the_configure_step_of_an_update_from_a_version_is_from_any_version() {
        let mut update = key("alpha", Action::Update, Some("2.0"));
        update.from_version = Some(Version::new("1.0").unwrap());
        let expanded = ApprovalTask::with_configure_steps(std::slice::from_ref(&update));
        assert_eq!(
            expanded,
            vec![update.clone(), key("alpha", Action::Configure, Some("2.0"))]
        );
    }
}
