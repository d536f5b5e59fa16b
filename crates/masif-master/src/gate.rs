//! The roll-out gate: may an agent run its approved tasks now? Its tags (from the facts of
//! its current report; v1 and tagless agents are never gated) may have maintenance windows
//! (at least one of them open, by the master's clock) and a max in flight (a lease of every
//! such tag, taken all or nothing in the store). Window first, then leases, so a lease is
//! never taken outside a window. A report of an agent with limited tags whose approved tasks
//! get no lease (deferred, or held unchanged) gives its leases back: a report means the agent
//! is between runs. Reports with nothing approved read nothing more.

use std::collections::BTreeSet;
use std::sync::Arc;

use masif_proto::v2::{DeferReason, ReportAnswer};
use masif_proto::{AgentName, Tag, TaskSet};
use masif_store::{schedule, LeaseOutcome, Store};

use crate::clock::Clock;

/// What the gate needs: the store, the clock and the lease time.
pub(crate) struct Gate {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Clock,
    /// Seconds a lease lasts unless renewed (`rollout.lease_seconds`).
    pub(crate) lease_secs: u64,
}

/// How a report is being answered, which decides what may happen to leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Moment {
    /// The report just arrived: its answer is held (not sent) when the approved tasks equal
    /// `held` — then no lease is taken, and leases the agent holds are given back.
    Arrived { may_hold: bool },
    /// A held report re-evaluates: no lease is taken for an answer that would still be held,
    /// none is given back.
    Held,
    /// The answer is sent now whatever it is (the wait is over).
    Final,
}

/// The gate's verdict on one report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gated {
    pub(crate) answer: ReportAnswer,
    /// When to look again while the answer is held.
    pub(crate) wake: Wake,
}

/// What a held report waits for besides approval changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Nothing but approval changes (and the end of the wait).
    Never,
    /// The maintenance window opening at this time (the master's clock).
    At(i64),
    /// A free slot of a tag's max in flight: look again every `rollout.slot_poll_seconds`.
    Poll,
}

/// The controls on an agent's tags.
#[derive(Debug, Default)]
struct Controls {
    /// The windows of all its windowed tags (open when one of them is).
    windows: Vec<schedule::Window>,
    /// Its tags with a max in flight.
    limits: Vec<(Tag, u32)>,
}

impl Gate {
    /// Gates `approved` (the approvals in force for the agent's reported tasks): the answer
    /// to send, with leases taken and given back as `moment` allows. `held` is what the
    /// agent reported it holds.
    pub(crate) async fn decide(
        &self,
        agent: &AgentName,
        tags: &BTreeSet<Tag>,
        approved: TaskSet,
        held: &TaskSet,
        moment: Moment,
    ) -> masif_store::Result<Gated> {
        if tags.is_empty() {
            return Ok(open(approved, None));
        }
        // Nothing approved: nothing to gate, and no read of the tags' settings (the common
        // report costs nothing more). The agent gives its leases back itself after a run
        // (`POST /v2/lease`); one that cannot loses them when they expire.
        if approved.is_empty() {
            return Ok(open(approved, None));
        }
        let controls = self.controls(tags).await?;
        let limited = !controls.limits.is_empty();
        let give_back = limited && matches!(moment, Moment::Arrived { .. });
        let gated = self.gate(agent, &controls, approved, held, moment).await?;
        if give_back && gated.answer.lease_seconds.is_none() {
            let released = self.store.release_leases(agent).await?;
            if released > 0 {
                tracing::debug!(%agent, released, "leases given back with a report");
            }
        }
        Ok(gated)
    }

    async fn gate(
        &self,
        agent: &AgentName,
        controls: &Controls,
        approved: TaskSet,
        held: &TaskSet,
        moment: Moment,
    ) -> masif_store::Result<Gated> {
        if approved.is_empty() {
            return Ok(open(approved, None));
        }
        let now = self.clock.now();
        if !controls.windows.is_empty() && !schedule::open_at(&controls.windows, now) {
            let not_before = schedule::next_open(&controls.windows, now);
            let wake = not_before.map_or(Wake::Never, Wake::At);
            return Ok(deferred(approved, DeferReason::Window, not_before, wake));
        }
        if controls.limits.is_empty() {
            return Ok(open(approved, None));
        }
        let would_hold = match moment {
            Moment::Arrived { may_hold } => may_hold,
            Moment::Held => true,
            Moment::Final => false,
        };
        if would_hold && &approved == held {
            // Held on, not sent: the agent is told nothing new, so it needs no slot now.
            return Ok(Gated {
                answer: ReportAnswer::approving(approved),
                wake: Wake::Never,
            });
        }
        let outcome = self
            .store
            .acquire_leases(agent, &controls.limits, now, self.lease_secs)
            .await?;
        Ok(match outcome {
            LeaseOutcome::Granted { .. } => open(approved, Some(self.lease_secs)),
            LeaseOutcome::Busy { tag, free_at } => {
                tracing::debug!(%agent, %tag, free_at, "no free slot");
                deferred(approved, DeferReason::MaxInFlight, None, Wake::Poll)
            }
        })
    }

    async fn controls(&self, tags: &BTreeSet<Tag>) -> masif_store::Result<Controls> {
        let tags: Vec<Tag> = tags.iter().cloned().collect();
        let mut controls = Controls::default();
        for (tag, settings) in self.store.tag_settings(&tags).await? {
            controls.windows.extend(settings.windows);
            if let Some(k) = settings.max_in_flight {
                controls.limits.push((tag, k));
            }
        }
        // The store locks the tags in name order; hand them over in that order.
        controls.limits.sort();
        Ok(controls)
    }
}

/// `approved` may run now (`lease`: with a lease of this many seconds).
fn open(approved: TaskSet, lease: Option<u64>) -> Gated {
    Gated {
        answer: ReportAnswer {
            lease_seconds: lease.filter(|_| !approved.is_empty()),
            ..ReportAnswer::approving(approved)
        },
        wake: Wake::Never,
    }
}

fn deferred(approved: TaskSet, reason: DeferReason, not_before: Option<i64>, wake: Wake) -> Gated {
    Gated {
        answer: ReportAnswer {
            approved: TaskSet::new(),
            deferred: approved,
            reason: Some(reason),
            not_before,
            lease_seconds: None,
        },
        wake,
    }
}

/// The answer to send when the gate cannot be asked (the store failing at shutdown):
/// nothing a gated agent may run without asking again.
pub(crate) fn cautious(tags: &BTreeSet<Tag>, approved: TaskSet) -> ReportAnswer {
    if tags.is_empty() || approved.is_empty() {
        return ReportAnswer::approving(approved);
    }
    deferred(approved, DeferReason::MaxInFlight, None, Wake::Never).answer
}
