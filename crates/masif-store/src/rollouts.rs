//! Roll-out control in the database: tags with their maintenance windows and max in flight,
//! the leases that bound how many agents of a tag upgrade at once, and staged roll-outs that
//! approve ring after ring. Every "now" is the caller's clock (unix seconds), so the master's
//! clock is the one that counts and tests can move it.

use async_trait::async_trait;
use masif_proto::{AgentName, Tag};
use serde::Serialize;

use crate::model::{ApprovalTask, Listing, Page};
use crate::schedule::Window;
use crate::Result;

/// What an administrator sets on a tag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TagSettings {
    /// At most this many agents of the tag execute at once (`None`: no limit).
    pub max_in_flight: Option<u32>,
    /// When agents of the tag may run approved tasks (none: any time). Checked already.
    pub windows: Vec<Window>,
}

/// A tag as the tags page and `GET /api/v1/tags` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagInfo {
    pub tag: Tag,
    /// Agents whose latest facts carry the tag.
    pub agents: u64,
    #[serde(flatten)]
    pub settings: TagSettings,
    /// Live leases (agents upgrading now under the tag's max in flight).
    pub leases: u64,
}

/// The answer to [`Rollouts::acquire_leases`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// Every tag granted (or renewed) the agent's lease until `expires_at`.
    Granted { expires_at: i64 },
    /// `tag` has its max in flight of live leases; nothing was taken. The earliest of them
    /// expires at `free_at` (unless renewed).
    Busy { tag: Tag, free_at: i64 },
}

/// What [`Rollouts::create_rollout`] is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutSpec {
    /// 1 to [`MAX_ROLLOUT_TASKS`] tasks, approved ring by ring.
    pub tasks: Vec<ApprovalTask>,
    /// 1 to [`MAX_RINGS`] distinct tags, in order.
    pub rings: Vec<Tag>,
    /// Promote by itself this long after a ring was approved, when no more than
    /// `max_failure_percent` of the ring's agents failed and at least one succeeded
    /// (`None`: promotion by hand only). At most [`MAX_SOAK_SECS`].
    pub soak_secs: Option<u64>,
    /// Halt when more than this percentage of the current ring's agents failed (0..=100).
    pub max_failure_percent: u8,
}

/// Most tasks of one roll-out.
pub const MAX_ROLLOUT_TASKS: usize = 1000;
/// Most rings of one roll-out.
pub const MAX_RINGS: usize = 10;
/// Longest soak time: 30 days.
pub const MAX_SOAK_SECS: u64 = 30 * 24 * 3600;

/// Where a roll-out stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutState {
    /// The current ring is approved and soaking.
    Running,
    /// Too many agents of the current ring failed: no promotion but by hand, with force.
    Halted,
    /// The last ring is approved.
    Completed,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Running => "running",
            RolloutState::Halted => "halted",
            RolloutState::Completed => "completed",
        }
    }
}

/// How the current ring is doing: its agents and how their latest run of a roll-out package
/// since the ring was approved ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RingProgress {
    pub agents: u64,
    pub succeeded: u64,
    pub failed: u64,
}

/// A stored roll-out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rollout {
    pub id: u64,
    pub tasks: Vec<ApprovalTask>,
    pub rings: Vec<Tag>,
    pub soak_secs: Option<u64>,
    pub max_failure_percent: u8,
    pub state: RolloutState,
    /// Index into `rings` of the ring approved last.
    pub current_ring: usize,
    /// When the current ring was approved.
    pub ring_started_at: i64,
    /// Why it halted (plain text: escape where shown).
    pub halted_reason: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub ring: RingProgress,
}

/// A change [`Rollouts::advance_rollouts`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutChange {
    Promoted { id: u64, ring: Tag },
    Halted { id: u64, reason: String },
    Completed { id: u64 },
}

/// An agent's windows, for the agents pages: whether one is open and when the next opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct AgentWindow {
    /// The agent has a tag with windows.
    pub windowed: bool,
    /// A window is open at the time asked about.
    pub open: bool,
    /// When the next window opens (the time asked about when one is open; `None` when none
    /// opens again or the agent is not windowed).
    pub next_open: Option<i64>,
}

/// Tags, windows, leases and roll-outs.
#[async_trait]
pub trait Rollouts: Send + Sync {
    /// Every tag an agent carries or that has settings, by name.
    async fn tags(&self, now: i64) -> Result<Vec<TagInfo>>;
    /// Replaces a tag's settings (no max in flight and no windows removes them). Audited;
    /// bumps the approval generation.
    async fn set_tag(&self, tag: &Tag, settings: &TagSettings, user: &str) -> Result<()>;
    /// The settings of those of `tags` that have any (the master's gate reads this).
    async fn tag_settings(&self, tags: &[Tag]) -> Result<Vec<(Tag, TagSettings)>>;
    /// Takes or renews a lease of every tag in `limits` (tag, max in flight) for `agent`
    /// until `now + ttl_secs`, all or nothing, in one transaction safe beside other masters.
    async fn acquire_leases(
        &self,
        agent: &AgentName,
        limits: &[(Tag, u32)],
        now: i64,
        ttl_secs: u64,
    ) -> Result<LeaseOutcome>;
    /// Extends the agent's live leases to `now + ttl_secs`; returns how many.
    async fn renew_leases(&self, agent: &AgentName, now: i64, ttl_secs: u64) -> Result<u64>;
    /// Gives back all of the agent's leases; returns how many. Bumps the approval generation
    /// when there were any.
    async fn release_leases(&self, agent: &AgentName) -> Result<u64>;
    /// Each of `agents`' windows at `now` (agents without windowed tags: the default).
    async fn agent_windows(
        &self,
        agents: &[AgentName],
        now: i64,
    ) -> Result<Vec<(AgentName, AgentWindow)>>;
    /// Creates a roll-out and approves its first ring. Audited.
    async fn create_rollout(&self, spec: &RolloutSpec, user: &str, now: i64) -> Result<Rollout>;
    /// Approves the next ring by hand; a halted roll-out needs `force`. Audited.
    async fn promote_rollout(&self, id: u64, user: &str, now: i64, force: bool) -> Result<Rollout>;
    /// One roll-out with its current ring's progress; `None` if unknown.
    async fn rollout(&self, id: u64) -> Result<Option<Rollout>>;
    /// Roll-outs, newest first.
    async fn rollouts(&self, page: Page) -> Result<Listing<Rollout>>;
    /// Halts, promotes after the soak time and completes running roll-outs as their rings'
    /// results say; safe when several masters call it at once (each change is made once).
    async fn advance_rollouts(&self, now: i64) -> Result<Vec<RolloutChange>>;
}
