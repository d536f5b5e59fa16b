//! Noticing approval changes for long-polling agents, through the database alone so that
//! several masters can share it: a counter that every approval, revocation and reset made
//! through the store bumps (read every `poll`), and the count and id sum of all approval rows
//! (read every `deep_every` polls) for approvals written straight into the tables, as the
//! original UI does. On a change the approvals in force are loaded once and handed to the held
//! reports they may concern, each of which matches its own tasks against them in memory: every
//! held report when approvals for every agent changed or the roll-out gate's counter moved
//! (tag settings, leases, roll-out steps), otherwise only the reports of the agents whose own
//! approvals changed, so that an approval for one agent wakes one agent's reports.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use masif_proto::AgentName;
use masif_store::{ApprovalPatterns, ApprovalToken, Store};
use tokio::sync::{watch, Notify};

/// The approvals in force and when the query that read them started.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    pub(crate) patterns: Arc<ApprovalPatterns>,
    /// A held report only trusts patterns read after its own report was: older ones may
    /// predate a revocation its report already saw.
    pub(crate) read_at: Instant,
}

/// The watcher task and what it hands changes on. Dropping it stops the task.
pub(crate) struct ApprovalWatch {
    channels: Arc<Channels>,
    task: tokio::task::JoinHandle<()>,
}

/// The latest approvals, sent to every subscriber on a change that may concern anyone, and
/// each subscribed agent's subscriptions, nudged on a change of that agent's own approvals
/// (a report's [`Notify`] keeps a nudge that comes while the report is not waiting).
struct Channels {
    everyone: watch::Sender<Published>,
    agents: Mutex<HashMap<String, Vec<Arc<Notify>>>>,
}

impl Channels {
    fn new() -> Arc<Self> {
        let (everyone, _) = watch::channel(Published {
            patterns: Arc::default(),
            read_at: Instant::now(),
        });
        Arc::new(Self {
            everyone,
            agents: Mutex::default(),
        })
    }

    /// Subscribes `agent`'s report to every later change that may concern it.
    fn subscribe(self: &Arc<Self>, agent: &AgentName) -> Subscription {
        let nudge = Arc::new(Notify::new());
        self.agents
            .lock()
            .expect("agent channels")
            .entry(agent.as_str().to_owned())
            .or_default()
            .push(nudge.clone());
        let mut everyone = self.everyone.subscribe();
        everyone.mark_unchanged();
        Subscription {
            channels: Arc::downgrade(self),
            agent: agent.as_str().to_owned(),
            everyone,
            nudge,
        }
    }

    /// Hands `published` to the reports it may concern: everyone's (`None`) or `agents'`.
    fn hand_out(&self, published: Published, agents: Option<Vec<String>>) {
        let Some(agents) = agents else {
            self.everyone.send_replace(published);
            return;
        };
        // The latest approvals without waking anyone; the nudged read them.
        self.everyone.send_if_modified(|latest| {
            *latest = published;
            false
        });
        let channels = self.agents.lock().expect("agent channels");
        for agent in &agents {
            for nudge in channels.get(agent).into_iter().flatten() {
                nudge.notify_one();
            }
        }
    }
}

impl ApprovalWatch {
    /// Starts watching (on the current runtime). While no report is held, nothing is read.
    pub(crate) fn start(store: Arc<dyn Store>, poll: Duration, deep_every: u32) -> Self {
        let channels = Channels::new();
        let task = tokio::spawn(watch_loop(store, channels.clone(), poll, deep_every.max(1)));
        Self { channels, task }
    }

    /// Subscribes `agent`'s report to every later change that may concern it.
    pub(crate) fn subscribe(&self, agent: &AgentName) -> Subscription {
        self.channels.subscribe(agent)
    }
}

impl Drop for ApprovalWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One report's subscription to approval changes; it leaves its agent's entry when dropped.
pub(crate) struct Subscription {
    channels: Weak<Channels>,
    agent: String,
    everyone: watch::Receiver<Published>,
    nudge: Arc<Notify>,
}

impl Subscription {
    /// The approvals after the next change that may concern this agent; `None` once the
    /// watcher is gone (shutdown).
    pub(crate) async fn changed(&mut self) -> Option<Published> {
        tokio::select! {
            changed = self.everyone.changed() => changed.ok()?,
            () = self.nudge.notified() => {}
        }
        let published = self.everyone.borrow_and_update().clone();
        Some(published)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some(channels) = self.channels.upgrade() else {
            return;
        };
        let mut agents = channels.agents.lock().expect("agent channels");
        if let Some(nudges) = agents.get_mut(&self.agent) {
            nudges.retain(|nudge| !Arc::ptr_eq(nudge, &self.nudge));
            if nudges.is_empty() {
                agents.remove(&self.agent);
            }
        }
    }
}

async fn watch_loop(
    store: Arc<dyn Store>,
    channels: Arc<Channels>,
    poll: Duration,
    deep_every: u32,
) {
    let mut ticks = tokio::time::interval(poll);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Seen::default();
    let mut polls: u32 = 0;
    let mut failing = false;
    loop {
        ticks.tick().await;
        if channels.everyone.receiver_count() == 0 {
            continue;
        }
        let deep = polls % deep_every == 0;
        polls = polls.wrapping_add(1);
        let read = async {
            let token = store.approval_token(deep).await?;
            if !last.changed(&token) {
                return Ok(None);
            }
            let read_at = Instant::now();
            let patterns = store.approval_patterns().await?;
            Ok::<_, masif_store::StoreError>(Some((token, read_at, patterns)))
        };
        match read.await {
            Ok(Some((token, read_at, patterns))) => {
                let agents = match (last.gate == Some(token.gate), &last.patterns) {
                    (true, Some(before)) => before.agents_changed(&patterns),
                    _ => None,
                };
                tracing::debug!(
                    generation = token.generation,
                    agents = agents.as_ref().map(Vec::len),
                    "approvals changed"
                );
                let patterns = Arc::new(patterns);
                last.update(&token, patterns.clone());
                channels.hand_out(Published { patterns, read_at }, agents);
                failing = false;
            }
            Ok(None) => failing = false,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "watching approvals failed; retrying");
                }
                failing = true;
            }
        }
    }
}

/// The last token seen and the approvals read then; the generation and the row figures are
/// compared separately, since only deep reads carry the latter. Nothing seen yet counts as a
/// change.
#[derive(Debug, Default)]
struct Seen {
    generation: Option<u64>,
    gate: Option<u64>,
    rows: Option<(u64, u64)>,
    patterns: Option<Arc<ApprovalPatterns>>,
}

impl Seen {
    fn changed(&self, token: &ApprovalToken) -> bool {
        self.generation != Some(token.generation)
            || self.gate != Some(token.gate)
            || token.rows.is_some_and(|rows| self.rows != Some(rows))
    }

    fn update(&mut self, token: &ApprovalToken, patterns: Arc<ApprovalPatterns>) {
        self.generation = Some(token.generation);
        self.gate = Some(token.gate);
        if token.rows.is_some() {
            self.rows = token.rows;
        }
        self.patterns = Some(patterns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(generation: u64, gate: u64, rows: Option<(u64, u64)>) -> ApprovalToken {
        ApprovalToken {
            generation,
            gate,
            rows,
        }
    }

    fn published() -> Published {
        Published {
            patterns: Arc::default(),
            read_at: Instant::now(),
        }
    }

    /// Whether a change is waiting for `subscription` now.
    fn ready(subscription: &mut Subscription) -> bool {
        use futures_util::FutureExt;
        subscription.changed().now_or_never().is_some()
    }

    #[tokio::test]
    async fn a_nudge_reaches_the_named_agents_reports_alone_and_leaving_forgets_them() {
        let channels = Channels::new();
        let name = |n: &str| AgentName::new(n).unwrap();
        let (mut a1, mut a2, mut b) = (
            channels.subscribe(&name("a")),
            channels.subscribe(&name("a")),
            channels.subscribe(&name("b")),
        );
        assert!(!ready(&mut a1) && !ready(&mut b), "nothing changed yet");
        // Both of a's reports get the change, even one not waiting when it came; b's none.
        channels.hand_out(published(), Some(vec!["a".to_owned()]));
        assert!(ready(&mut a1) && ready(&mut a2));
        assert!(!ready(&mut b));
        assert!(!ready(&mut a1), "one change, one wake-up");
        // A change for everyone reaches b too.
        channels.hand_out(published(), None);
        assert!(ready(&mut a1) && ready(&mut b));
        drop((a1, a2));
        let agents: Vec<String> = channels.agents.lock().unwrap().keys().cloned().collect();
        assert_eq!(agents, ["b"]);
        drop(b);
        assert!(channels.agents.lock().unwrap().is_empty());
    }

    #[test]
    fn generation_gate_and_rows_are_compared_apart() {
        let mut seen = Seen::default();
        let patterns = Arc::new(ApprovalPatterns::default());
        let shallow = token(1, 0, None);
        assert!(seen.changed(&shallow), "nothing seen yet");
        seen.update(&shallow, patterns.clone());
        assert!(!seen.changed(&shallow));
        let deep = token(1, 0, Some((3, 10)));
        assert!(seen.changed(&deep), "first row figures");
        seen.update(&deep, patterns.clone());
        assert!(
            !seen.changed(&shallow),
            "a shallow read keeps the row figures"
        );
        assert!(!seen.changed(&deep));
        assert!(seen.changed(&token(1, 0, Some((4, 17)))));
        assert!(seen.changed(&token(2, 0, None)));
        assert!(seen.changed(&token(1, 1, None)), "the gate's counter alone");
    }
}
