//! The back-end independent core of roll-out control: stored forms (tags as text, windows,
//! roll-out tasks and rings as JSON), checks of what is written (tag settings, roll-out specs),
//! the lease decision, ring progress and what `advance_rollouts` does with it, and the audit
//! texts. Both back ends use it, so both decide alike.

use std::collections::{BTreeMap, BTreeSet};

use masif_proto::{Action, AgentName, PackageName, Tag, Version};
use serde::{Deserialize, Serialize};

use crate::audit::{describe_list, describe_task};
use crate::rollouts::{
    AgentWindow, LeaseOutcome, RingProgress, Rollout, RolloutSpec, RolloutState, TagInfo,
    TagSettings, MAX_RINGS, MAX_ROLLOUT_TASKS, MAX_SOAK_SECS,
};
use crate::schedule::{self, Window, MAX_WINDOWS};
use crate::{ApprovalTask, Result, StoreError, TaskKey};

/// Largest max in flight of a tag.
pub const MAX_IN_FLIGHT: u32 = 100_000;

/// The user `advance_rollouts` audits its changes as.
pub(crate) const ROLLOUT_USER: &str = "rollout";

/// Failed agents a halt reason names.
const NAMED_FAILURES: usize = 5;

/// Tags stored separated by spaces (`GROUP_CONCAT`), sorted; an unusable one is skipped.
pub(crate) fn tags_from_text(text: Option<String>) -> Vec<Tag> {
    let tags: BTreeSet<Tag> = text
        .iter()
        .flat_map(|t| t.split(' '))
        .filter(|t| !t.is_empty())
        .filter_map(|t| match Tag::new(t) {
            Ok(tag) => Some(tag),
            Err(e) => {
                tracing::warn!(tag = t, error = %e, "skipping unusable stored tag");
                None
            }
        })
        .collect();
    tags.into_iter().collect()
}

/// A stored tag name; an unusable one is [`StoreError::Unreadable`].
pub(crate) fn stored_tag(text: &str) -> Result<Tag> {
    Tag::new(text).map_err(|e| StoreError::Unreadable(format!("tag {text:?}: {e}")))
}

/// Checks settings before they are written: the max in flight and the number of windows.
pub(crate) fn check_settings(settings: &TagSettings) -> Result<()> {
    if let Some(k) = settings.max_in_flight {
        if !(1..=MAX_IN_FLIGHT).contains(&k) {
            return Err(StoreError::Invalid(format!(
                "max_in_flight: must be 1 to {MAX_IN_FLIGHT}"
            )));
        }
    }
    if settings.windows.len() > MAX_WINDOWS {
        return Err(StoreError::Invalid(format!(
            "windows: more than {MAX_WINDOWS} windows"
        )));
    }
    Ok(())
}

/// Whether settings say nothing (then the tag's row is deleted).
pub(crate) fn settings_empty(settings: &TagSettings) -> bool {
    settings.max_in_flight.is_none() && settings.windows.is_empty()
}

/// The stored form of a window list: the JSON [`Window::parse_list`] reads.
pub(crate) fn windows_to_text(windows: &[Window]) -> String {
    serde_json::Value::Array(windows.iter().map(Window::to_json).collect()).to_string()
}

/// A stored window list; an unreadable one is no windows (with a warning).
pub(crate) fn windows_from_text(tag: &str, text: &str) -> Vec<Window> {
    let parsed = serde_json::from_str::<serde_json::Value>(text)
        .map_err(|e| e.to_string())
        .and_then(|v| Window::parse_list(&v, "windows").map_err(|e| e.to_string()));
    parsed.unwrap_or_else(|e| {
        tracing::warn!(tag, error = %e, "ignoring unreadable stored windows");
        Vec::new()
    })
}

/// A `tag_setting` row read back: max in flight (NULL: none) and windows.
pub(crate) fn settings_from_row(
    tag: &str,
    max_in_flight: Option<i64>,
    windows: &str,
) -> TagSettings {
    TagSettings {
        max_in_flight: max_in_flight.and_then(|k| u32::try_from(k).ok()),
        windows: windows_from_text(tag, windows),
    }
}

/// The audit detail of `set tag`.
pub(crate) fn describe_settings(tag: &Tag, settings: &TagSettings) -> String {
    if settings_empty(settings) {
        return format!("tag {tag}: no max in flight, no windows (settings removed)");
    }
    let limit = match settings.max_in_flight {
        Some(k) => format!("max in flight {k}"),
        None => "no max in flight".to_owned(),
    };
    let windows: Vec<String> = settings.windows.iter().map(Window::to_string).collect();
    let windows = match windows.len() {
        0 => "no windows".to_owned(),
        n => format!(
            "{n} window{}: {}",
            if n == 1 { "" } else { "s" },
            describe_list(&windows, "window")
        ),
    };
    format!("tag {tag}: {limit}, {windows}")
}

/// `GET /api/v1/tags`: every tag carried (with its agent count) or configured, with its
/// settings and live leases, by name.
pub(crate) fn tag_infos(
    carried: Vec<(String, u64)>,
    settings: Vec<(String, TagSettings)>,
    leases: Vec<(String, u64)>,
) -> Result<Vec<TagInfo>> {
    let mut tags: BTreeMap<String, TagInfo> = BTreeMap::new();
    fn entry(tags: &mut BTreeMap<String, TagInfo>, name: String) -> Result<&mut TagInfo> {
        if !tags.contains_key(&name) {
            let tag = stored_tag(&name)?;
            let info = TagInfo {
                tag,
                agents: 0,
                settings: TagSettings::default(),
                leases: 0,
            };
            tags.insert(name.clone(), info);
        }
        Ok(tags.get_mut(&name).expect("inserted above"))
    }
    for (name, agents) in carried {
        entry(&mut tags, name)?.agents = agents;
    }
    for (name, s) in settings {
        entry(&mut tags, name)?.settings = s;
    }
    for (name, count) in leases {
        // Leases of a tag that is neither carried nor configured any more are not listed.
        if let Some(info) = tags.get_mut(&name) {
            info.leases = count;
        }
    }
    Ok(tags.into_values().collect())
}

/// The tags of `limits` in name order, each once (the lowest limit if named twice).
pub(crate) fn lease_order(limits: &[(Tag, u32)]) -> Vec<(Tag, u32)> {
    let mut by_name: BTreeMap<&Tag, u32> = BTreeMap::new();
    for (tag, k) in limits {
        by_name
            .entry(tag)
            .and_modify(|v| *v = (*v).min(*k))
            .or_insert(*k);
    }
    by_name.into_iter().map(|(t, k)| (t.clone(), k)).collect()
}

/// What the live leases of one limited tag look like to an agent asking for one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeaseCount {
    /// The tag's max in flight as stored now.
    pub limit: u32,
    /// Live leases (the agent's own included).
    pub live: u64,
    /// The agent holds one of them.
    pub own: bool,
    /// The earliest expiry among the live leases.
    pub earliest: Option<i64>,
}

/// All or nothing: `None` when every tag grants (write the leases), else the first full tag's
/// [`LeaseOutcome::Busy`].
pub(crate) fn lease_refusal(counts: &[(Tag, LeaseCount)], now: i64) -> Option<LeaseOutcome> {
    counts.iter().find_map(|(tag, c)| {
        (!c.own && c.live >= u64::from(c.limit)).then(|| LeaseOutcome::Busy {
            tag: tag.clone(),
            free_at: c.earliest.unwrap_or(now),
        })
    })
}

/// `now + ttl_secs`, saturating.
pub(crate) fn expiry(now: i64, ttl_secs: u64) -> i64 {
    now.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX))
}

/// Each of `agents`' windows at `now`, given the windows of every windowed tag of theirs as
/// (agent, stored windows) rows (one per tag).
pub(crate) fn agent_windows(
    agents: &[AgentName],
    rows: Vec<(String, String, String)>,
    now: i64,
) -> Vec<(AgentName, AgentWindow)> {
    let mut windows: BTreeMap<String, Vec<Window>> = BTreeMap::new();
    for (agent, tag, text) in rows {
        windows
            .entry(agent)
            .or_default()
            .extend(windows_from_text(&tag, &text));
    }
    agents
        .iter()
        .map(|agent| {
            let window = match windows.get(agent.as_str()) {
                Some(w) if !w.is_empty() => AgentWindow {
                    windowed: true,
                    open: schedule::open_at(w, now),
                    next_open: schedule::next_open(w, now),
                },
                _ => AgentWindow::default(),
            };
            (agent.clone(), window)
        })
        .collect()
}

/// Checks a roll-out spec; errors name the field.
pub(crate) fn check_spec(spec: &RolloutSpec) -> Result<()> {
    let bad = |field: &str, why: String| Err(StoreError::Invalid(format!("{field}: {why}")));
    if spec.tasks.is_empty() || spec.tasks.len() > MAX_ROLLOUT_TASKS {
        return bad("tasks", format!("must be 1 to {MAX_ROLLOUT_TASKS} tasks"));
    }
    if spec.rings.is_empty() || spec.rings.len() > MAX_RINGS {
        return bad("rings", format!("must be 1 to {MAX_RINGS} tags"));
    }
    let mut seen = BTreeSet::new();
    for (i, ring) in spec.rings.iter().enumerate() {
        if !seen.insert(ring) {
            return bad(&format!("rings[{i}]"), format!("{ring} is named twice"));
        }
    }
    if spec.soak_secs.is_some_and(|s| s > MAX_SOAK_SECS) {
        return bad(
            "soak_seconds",
            format!("must be at most {MAX_SOAK_SECS} (30 days)"),
        );
    }
    if spec.max_failure_percent > 100 {
        return bad("max_failure_percent", "must be 0 to 100".to_owned());
    }
    Ok(())
}

/// One roll-out task as stored.
#[derive(Debug, Serialize, Deserialize)]
struct StoredTask {
    package: String,
    action: String,
    from_version: Option<String>,
    to_version: Option<String>,
}

/// The stored form of a roll-out's tasks.
pub(crate) fn tasks_to_text(tasks: &[ApprovalTask]) -> String {
    let stored: Vec<StoredTask> = tasks
        .iter()
        .map(|t| StoredTask {
            package: t.key.package.as_str().to_owned(),
            action: t.key.action.as_str().to_owned(),
            from_version: t.from_version.as_ref().map(|v| v.as_str().to_owned()),
            to_version: t.key.to_version.as_ref().map(|v| v.as_str().to_owned()),
        })
        .collect();
    serde_json::to_string(&stored).expect("tasks serialise")
}

fn tasks_from_text(text: &str) -> std::result::Result<Vec<ApprovalTask>, String> {
    let stored: Vec<StoredTask> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    stored
        .into_iter()
        .map(|t| {
            let version = |v: Option<String>| v.map(Version::new).transpose();
            Ok(ApprovalTask {
                key: TaskKey {
                    package: PackageName::new(t.package).map_err(|e| e.to_string())?,
                    action: t.action.parse::<Action>().map_err(|e| e.to_string())?,
                    to_version: version(t.to_version).map_err(|e| e.to_string())?,
                },
                from_version: version(t.from_version).map_err(|e| e.to_string())?,
            })
        })
        .collect()
}

/// The stored form of a roll-out's rings.
pub(crate) fn rings_to_text(rings: &[Tag]) -> String {
    serde_json::to_string(rings).expect("tags serialise")
}

/// A `rollout` row as read, before its ring's progress is known.
#[derive(Debug, Clone)]
pub(crate) struct RolloutRow {
    pub id: u64,
    pub tasks: String,
    pub rings: String,
    pub soak_secs: Option<u64>,
    pub max_failure_percent: i64,
    pub state: String,
    pub current_ring: u64,
    pub ring_started_at: i64,
    pub halted_reason: Option<String>,
    pub created_by: String,
    pub created_at: i64,
}

/// Columns of `rollout` in [`RolloutRow`]'s order; append `WHERE …`.
pub(crate) const ROLLOUT_COLUMNS: &str =
    "SELECT id, tasks, rings, soak_secs, max_failure_percent, \
     state, current_ring, ring_started_at, halted_reason, created_by, created_at FROM rollout";

impl RolloutRow {
    /// The roll-out, its ring's progress still empty; an unreadable row is an error naming it.
    pub(crate) fn parse(self) -> Result<Rollout> {
        let id = self.id;
        let bad =
            |what: &str, e: String| StoreError::Unreadable(format!("roll-out {id}: {what}: {e}"));
        let tasks = tasks_from_text(&self.tasks).map_err(|e| bad("tasks", e))?;
        let rings: Vec<Tag> =
            serde_json::from_str(&self.rings).map_err(|e| bad("rings", e.to_string()))?;
        let state = match self.state.as_str() {
            "running" => RolloutState::Running,
            "halted" => RolloutState::Halted,
            "completed" => RolloutState::Completed,
            other => return Err(bad("state", format!("{other:?}"))),
        };
        let current_ring = usize::try_from(self.current_ring)
            .ok()
            .filter(|r| *r < rings.len())
            .ok_or_else(|| bad("current ring", self.current_ring.to_string()))?;
        Ok(Rollout {
            id,
            tasks,
            rings,
            soak_secs: self.soak_secs,
            max_failure_percent: u8::try_from(self.max_failure_percent)
                .map_err(|e| bad("max failure percent", e.to_string()))?,
            state,
            current_ring,
            ring_started_at: self.ring_started_at,
            halted_reason: self.halted_reason,
            created_by: self.created_by,
            created_at: self.created_at,
            ring: RingProgress::default(),
        })
    }
}

/// The packages whose runs count for a roll-out's progress, each once.
pub(crate) fn rollout_packages(rollout: &Rollout) -> Vec<String> {
    let names: BTreeSet<&str> = rollout
        .tasks
        .iter()
        .map(|t| t.key.package.as_str())
        .collect();
    names.into_iter().map(str::to_owned).collect()
}

/// How many agents carry tag `?` (the ring's agents).
pub(crate) const RING_AGENTS: &str =
    "SELECT COUNT(*) FROM agent_tag g JOIN agent a ON a.id = g.agent WHERE g.tag = ?";

/// Per agent carrying tag `?` with a latest run of one of the packages in the `IN` list
/// (append `({placeholders}) GROUP BY a.name`) that started at or after `?`: its name, whether
/// one of them failed and whether one succeeded (a run the retention deleted since counts by
/// its latest outcome's failed flag).
pub(crate) const RING_RUNS: &str = "
    SELECT a.name, MAX(l.failed), MAX(COALESCE(ru.outcome = 'succeeded', l.failed = 0))
      FROM agent_tag g JOIN agent a ON a.id = g.agent
      JOIN run_latest l ON l.agent = g.agent
      LEFT JOIN run ru ON ru.id = l.run
     WHERE g.tag = ? AND l.started_at >= ? AND l.package IN ";

/// The current ring's agents and how their roll-out packages' latest runs since the ring was
/// approved ended.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    pub agents: u64,
    /// Agents with a latest run that failed, by name.
    pub failed: Vec<String>,
    pub succeeded: u64,
}

impl Tally {
    /// From the ring's agent count and per agent that ran a roll-out package since the ring
    /// began: (name, any latest run failed, any latest run succeeded). An agent with a failed
    /// package counts as failed, else with a succeeded one as succeeded.
    pub(crate) fn of(agents: u64, ran: Vec<(String, bool, bool)>) -> Self {
        let mut tally = Tally {
            agents,
            ..Tally::default()
        };
        for (name, failed, succeeded) in ran {
            if failed {
                tally.failed.push(name);
            } else if succeeded {
                tally.succeeded += 1;
            }
        }
        tally.failed.sort();
        tally
    }

    pub(crate) fn progress(&self) -> RingProgress {
        RingProgress {
            agents: self.agents,
            succeeded: self.succeeded,
            failed: self.failed.len() as u64,
        }
    }
}

/// What `advance_rollouts` does with a running roll-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Halt(String),
    Promote,
    Complete,
    Wait,
}

/// The step a running roll-out takes at `now` given its ring's tally.
pub(crate) fn next_step(rollout: &Rollout, tally: &Tally, now: i64) -> Step {
    if rollout.state != RolloutState::Running {
        return Step::Wait;
    }
    let failed = tally.failed.len() as u64;
    if tally.agents > 0 && failed * 100 > u64::from(rollout.max_failure_percent) * tally.agents {
        return Step::Halt(halt_reason(rollout, tally));
    }
    if rollout.current_ring + 1 >= rollout.rings.len() {
        return Step::Complete;
    }
    let soaked = rollout.soak_secs.is_some_and(|soak| {
        now >= rollout
            .ring_started_at
            .saturating_add(i64::try_from(soak).unwrap_or(i64::MAX))
    });
    if soaked && tally.succeeded > 0 {
        Step::Promote
    } else {
        Step::Wait
    }
}

/// `2 of 5 agents of ring "canary" failed (40% > 20%): web-1, web-4`.
fn halt_reason(rollout: &Rollout, tally: &Tally) -> String {
    let failed = tally.failed.len();
    let percent = failed as u64 * 100 / tally.agents.max(1);
    let mut sorted: Vec<&str> = tally.failed.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let mut names = sorted[..failed.min(NAMED_FAILURES)].join(", ");
    if failed > NAMED_FAILURES {
        names.push_str(&format!(" and {} more", failed - NAMED_FAILURES));
    }
    format!(
        "{failed} of {} agents of ring \"{}\" failed ({percent}% > {}%): {names}",
        tally.agents, rollout.rings[rollout.current_ring], rollout.max_failure_percent
    )
}

/// Why a ring cannot be approved automatically: no agent carries its tag.
pub(crate) fn empty_ring_reason(rollout: &Rollout, ring: usize) -> String {
    format!(
        "ring {} of {} \"{}\" has no agents to approve",
        ring + 1,
        rollout.rings.len(),
        rollout.rings[ring]
    )
}

/// The audit detail of a roll-out's start.
pub(crate) fn describe_start(id: u64, spec: &RolloutSpec) -> String {
    let rings: Vec<&str> = spec.rings.iter().map(Tag::as_str).collect();
    let soak = match spec.soak_secs {
        Some(s) => format!("promoted {s} s after each ring"),
        None => "promoted by hand".to_owned(),
    };
    let tasks: Vec<String> = spec.tasks.iter().map(describe_task).collect();
    format!(
        "roll-out {id} over rings {}: {soak}, halts above {}% failed; {}",
        rings.join(", "),
        spec.max_failure_percent,
        describe_list(&tasks, "task")
    )
}

/// The audit detail of a promotion to ring `ring` (`forced`: past this halt reason).
pub(crate) fn describe_promote(rollout: &Rollout, ring: usize, forced: Option<&str>) -> String {
    let mut detail = format!(
        "roll-out {}: ring {} of {} \"{}\" approved",
        rollout.id,
        ring + 1,
        rollout.rings.len(),
        rollout.rings[ring]
    );
    if ring + 1 == rollout.rings.len() {
        detail.push_str(", roll-out completed");
    }
    if let Some(reason) = forced {
        detail.push_str(&format!(" (forced past the halt: {reason})"));
    }
    detail
}

/// Whether a promotion by hand may go ahead: errors for completed and, without `force`,
/// halted roll-outs. Returns the halt reason a forced promotion goes past.
pub(crate) fn check_promotion(rollout: &Rollout, force: bool) -> Result<Option<String>> {
    match rollout.state {
        RolloutState::Completed => Err(StoreError::Invalid(format!(
            "roll-out {} is completed: every ring is approved",
            rollout.id
        ))),
        RolloutState::Halted if !force => Err(StoreError::Invalid(format!(
            "halted: {}; promote with force",
            rollout
                .halted_reason
                .as_deref()
                .unwrap_or("no reason stored")
        ))),
        RolloutState::Halted => Ok(Some(rollout.halted_reason.clone().unwrap_or_default())),
        RolloutState::Running => Ok(None),
    }
}

/// The state after approving ring `ring`.
pub(crate) fn state_after(rollout: &Rollout, ring: usize) -> RolloutState {
    if ring + 1 >= rollout.rings.len() {
        RolloutState::Completed
    } else {
        RolloutState::Running
    }
}

#[cfg(test)]
mod tests;
