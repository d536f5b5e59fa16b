//! The API's answers as the command line reads them (the contract of `/api/v1`): only the
//! fields it shows, unknown fields ignored.

use serde::Deserialize;

/// A paged answer's frame.
#[derive(Debug, Deserialize)]
pub(crate) struct Paged<T> {
    pub(crate) total: u64,
    pub(crate) page: u64,
    pub(crate) per_page: u64,
    pub(crate) items: Vec<T>,
}

/// `(package, action, to_version)`: a task without its agent.
#[derive(Debug, Deserialize)]
pub(crate) struct TaskKey {
    pub(crate) package: String,
    pub(crate) action: String,
    pub(crate) to_version: Option<String>,
}

impl TaskKey {
    /// `ACTION PACKAGE[ VERSION]`.
    pub(crate) fn describe(&self) -> String {
        describe(&self.action, &self.package, self.to_version.as_deref())
    }
}

/// `ACTION PACKAGE[ VERSION]`.
pub(crate) fn describe(action: &str, package: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("{action} {package} {v}"),
        None => format!("{action} {package}"),
    }
}

/// `GET /api/v1/pending`.
#[derive(Debug, Deserialize)]
pub(crate) struct Pending {
    #[serde(flatten)]
    pub(crate) page: Paged<PendingPackage>,
    pub(crate) security: SecurityCount,
    #[serde(default)]
    pub(crate) failing: Vec<FailingPackage>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SecurityCount {
    pub(crate) updates: u64,
    pub(crate) agents: u64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct FailingPackage {
    pub(crate) package: String,
    pub(crate) agents: u64,
    pub(crate) last_failed_at: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PendingPackage {
    pub(crate) package: String,
    #[serde(default)]
    pub(crate) held_on: u64,
    pub(crate) tasks: Vec<PendingTask>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PendingTask {
    pub(crate) action: String,
    pub(crate) to_version: Option<String>,
    pub(crate) agents: u64,
    #[serde(default)]
    pub(crate) security: bool,
    #[serde(default)]
    pub(crate) since: Option<i64>,
    #[serde(default)]
    pub(crate) needs: Vec<TaskKey>,
}

/// An item of `GET /api/v1/approvals`.
#[derive(Debug, Deserialize)]
pub(crate) struct Approval {
    pub(crate) id: u64,
    pub(crate) agent: Option<String>,
    pub(crate) package: Option<String>,
    pub(crate) action: Option<String>,
    pub(crate) from_version: Option<String>,
    pub(crate) to_version: Option<String>,
    pub(crate) approved_by: Option<String>,
    pub(crate) approved_at: Option<i64>,
}

/// `POST /api/v1/approvals`.
#[derive(Debug, Deserialize)]
pub(crate) struct Approved {
    pub(crate) approvals_written: u64,
    pub(crate) pending_rows_approved: u64,
}

/// `GET /api/v1/agents`.
#[derive(Debug, Deserialize)]
pub(crate) struct Agents {
    #[serde(flatten)]
    pub(crate) page: Paged<AgentItem>,
    pub(crate) counts: AgentCounts,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AgentCounts {
    pub(crate) agents: u64,
    pub(crate) offline: u64,
    pub(crate) failing: u64,
    pub(crate) reboot_required: u64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AgentItem {
    pub(crate) name: String,
    pub(crate) first_seen: i64,
    pub(crate) last_seen: Option<i64>,
    pub(crate) offline: bool,
    pub(crate) pending_tasks: u64,
    pub(crate) pending_packages: u64,
    pub(crate) failing_packages: u64,
    pub(crate) reboot_required: bool,
    pub(crate) last_run: Option<LastRun>,
    #[serde(default)]
    pub(crate) tags: Vec<String>,
    #[serde(default = "yes")]
    pub(crate) window_open: bool,
    #[serde(default)]
    pub(crate) next_window: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
pub(crate) struct LastRun {
    pub(crate) outcome: String,
    pub(crate) started_at: i64,
}

/// `GET /api/v1/agents/{name}`.
#[derive(Debug, Deserialize)]
pub(crate) struct AgentDetail {
    pub(crate) agent: AgentItem,
    pub(crate) facts: Option<Facts>,
    #[serde(default)]
    pub(crate) tasks: Vec<AgentTask>,
    pub(crate) runs: Paged<Run>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Facts {
    pub(crate) os: Option<String>,
    pub(crate) kernel: Option<String>,
    pub(crate) agent_version: Option<String>,
    #[serde(default)]
    pub(crate) reboot_required: bool,
    #[serde(default)]
    pub(crate) reboot_packages: Vec<String>,
    #[serde(default)]
    pub(crate) held: Vec<String>,
    pub(crate) reported_at: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AgentTask {
    pub(crate) package: String,
    pub(crate) action: String,
    pub(crate) from_version: Option<String>,
    pub(crate) to_version: Option<String>,
    #[serde(default)]
    pub(crate) security: bool,
    #[serde(default)]
    pub(crate) needs: Vec<TaskKey>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Run {
    pub(crate) package: String,
    pub(crate) started_at: i64,
    pub(crate) duration_ms: Option<u64>,
    pub(crate) exit_code: Option<i64>,
    pub(crate) outcome: String,
    #[serde(default)]
    pub(crate) output: String,
}

/// An item of `GET /api/v1/audit`.
#[derive(Debug, Deserialize)]
pub(crate) struct AuditEntry {
    pub(crate) id: u64,
    pub(crate) at: i64,
    pub(crate) user: String,
    pub(crate) action: String,
    pub(crate) detail: String,
}

/// `GET /api/v1/tags`.
#[derive(Debug, Deserialize)]
pub(crate) struct Tags {
    pub(crate) tags: Vec<TagInfo>,
}

/// A tag of `GET /api/v1/tags` and the answer of `PUT /api/v1/tags/{tag}`.
#[derive(Debug, Deserialize)]
pub(crate) struct TagInfo {
    pub(crate) tag: String,
    pub(crate) agents: u64,
    pub(crate) max_in_flight: Option<u64>,
    /// As the API writes them (what `tag set` sends back for the parts it keeps).
    pub(crate) windows: Vec<serde_json::Value>,
    pub(crate) leases: u64,
}

/// A roll-out of `/api/v1/rollouts`.
#[derive(Debug, Deserialize)]
pub(crate) struct Rollout {
    pub(crate) id: u64,
    pub(crate) state: String,
    pub(crate) rings: Vec<String>,
    pub(crate) current_ring_index: usize,
    pub(crate) ring_started_at: i64,
    pub(crate) soak_seconds: Option<u64>,
    pub(crate) max_failure_percent: u64,
    pub(crate) halted_reason: Option<String>,
    pub(crate) tasks: Vec<RolloutTask>,
    pub(crate) ring_progress: RingProgress,
    pub(crate) created_by: String,
    pub(crate) created_at: i64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RolloutTask {
    pub(crate) package: String,
    pub(crate) action: String,
    pub(crate) to_version: Option<String>,
    pub(crate) from_version: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RingProgress {
    pub(crate) agents: u64,
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
}
