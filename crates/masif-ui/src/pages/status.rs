//! How an agent is doing, as the Agents pages show it: its last contact (relative and
//! absolute, offline after the configured `offline_after`), its newest run and its failing
//! packages. Computed from one [`AgentSummary`] each: no query per agent.

use masif_proto::v2::Outcome;
use masif_store::{AgentSummary, AgentWindow};
use serde::Serialize;

use super::windows::agent_window_text;
use crate::render::{format_age, format_time, unix_now};

/// The moment a page is rendered and the offline rule.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    pub now: i64,
    /// Agents last seen before this (or never seen) are offline.
    pub offline_before: i64,
}

impl Now {
    /// Now, with agents offline after `offline_after` seconds without a report.
    pub(crate) fn with_offline_after(offline_after: i64) -> Self {
        let now = unix_now();
        Self {
            now,
            offline_before: now.saturating_sub(offline_after),
        }
    }

    /// A time as pages show it: how long ago and when.
    pub(crate) fn when(self, t: i64) -> When {
        When {
            ago: format_age(self.now, t),
            at: format_time(t),
        }
    }
}

/// A past moment: `5 min ago` and `2026-12-05 03:30 UTC`.
#[derive(Debug, Serialize)]
pub(crate) struct When {
    pub ago: String,
    pub at: String,
}

/// An agent's last contact: its last report to this master or, for an agent only the original
/// master has seen, the last change of its pending set (the store's rule too).
#[derive(Debug, Serialize)]
pub(crate) struct Seen {
    pub when: When,
    /// Whether `when` is a report to this master.
    pub reported: bool,
    pub offline: bool,
}

/// How a run ended, for a badge: a CSS-safe name and a label.
#[derive(Debug, Serialize)]
pub(crate) struct OutcomeView {
    /// `succeeded`, `failed` or `plan-changed`.
    pub outcome: &'static str,
    /// `succeeded`, `failed` or `plan changed`.
    pub label: &'static str,
    pub failed: bool,
}

impl From<Outcome> for OutcomeView {
    fn from(o: Outcome) -> Self {
        Self {
            outcome: o.as_str(),
            label: match o {
                Outcome::Succeeded => "succeeded",
                Outcome::Failed => "failed",
                Outcome::PlanChanged => "plan changed",
            },
            failed: o == Outcome::Failed,
        }
    }
}

/// The newest run of an agent.
#[derive(Debug, Serialize)]
pub(crate) struct LastRun {
    #[serde(flatten)]
    pub outcome: OutcomeView,
    pub started: When,
}

/// One agent as the Agents pages show it.
#[derive(Debug, Serialize)]
pub(crate) struct AgentStatus {
    pub name: String,
    pub ctime: i64,
    /// Last change of the pending set.
    pub mtime: i64,
    pub seen: Seen,
    pub pending_tasks: u64,
    pub pending_packages: u64,
    pub last_run: Option<LastRun>,
    pub failing_packages: u64,
    /// The agent's latest facts say its host needs a reboot.
    pub reboot_required: bool,
    /// The tags of its latest facts.
    pub tags: Vec<String>,
    /// Its next maintenance window (`open now`, `next: …`), `None` when not windowed or not
    /// looked up.
    pub window: Option<String>,
}

impl AgentStatus {
    pub(crate) fn new(a: AgentSummary, now: Now) -> Self {
        Self {
            name: a.name.to_string(),
            ctime: a.ctime,
            mtime: a.mtime,
            seen: Seen {
                when: now.when(last_contact(&a)),
                reported: a.last_seen.is_some(),
                offline: last_contact(&a) < now.offline_before,
            },
            pending_tasks: a.pending_tasks,
            pending_packages: a.pending_packages,
            last_run: a.last_run.map(|(outcome, started)| LastRun {
                outcome: outcome.into(),
                started: now.when(started),
            }),
            failing_packages: a.failing_packages,
            reboot_required: a.reboot_required,
            tags: a.tags.iter().map(ToString::to_string).collect(),
            window: None,
        }
    }

    /// With its window as [`agent_window_text`] says it.
    pub(crate) fn with_window(self, w: Option<&AgentWindow>) -> Self {
        Self {
            window: w.and_then(agent_window_text),
            ..self
        }
    }
}

/// An agent's last contact, as the store's `not_seen_since` filter and offline count take it:
/// its last report or, if it never reported to this master, the last change of its pending set.
/// It is offline when that is before `offline_before`.
pub(crate) fn last_contact(a: &AgentSummary) -> i64 {
    a.last_seen.unwrap_or(a.mtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(last_seen: Option<i64>, mtime: i64) -> AgentSummary {
        AgentSummary {
            reboot_required: false,
            name: masif_proto::AgentName::new("a").unwrap(),
            ctime: 0,
            mtime,
            last_seen,
            pending_tasks: 0,
            pending_packages: 0,
            last_run: None,
            failing_packages: 0,
            tags: Vec::new(),
        }
    }

    #[test]
    fn offline_means_no_contact_since() {
        let now = Now {
            now: 1000,
            offline_before: 100,
        };
        let offline = |last_seen, mtime| AgentStatus::new(summary(last_seen, mtime), now).seen;
        assert!(offline(Some(99), 500).offline);
        assert!(!offline(Some(100), 0).offline);
        assert!(!offline(Some(5000), 0).offline, "ahead of this clock");
        // Never reported here: the pending set's last change counts.
        let s = offline(None, 99);
        assert!(s.offline && !s.reported);
        assert!(!offline(None, 100).offline);
    }

    #[test]
    fn outcomes_have_labels() {
        let v = OutcomeView::from(Outcome::PlanChanged);
        assert_eq!(
            (v.outcome, v.label, v.failed),
            ("plan-changed", "plan changed", false)
        );
        assert!(OutcomeView::from(Outcome::Failed).failed);
    }
}
