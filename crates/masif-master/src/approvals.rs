//! Noticing approval changes for long-polling agents, through the database alone so that
//! several masters can share it: a counter that every approval, revocation and reset made
//! through the store bumps (read every `poll`), and the count and id sum of all approval rows
//! (read every `deep_every` polls) for approvals written straight into the tables, as the
//! original UI does. On a change the approvals in force are loaded once and published to
//! every held report, which matches its own tasks against them in memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use masif_store::{ApprovalPatterns, ApprovalToken, Store};
use tokio::sync::watch;

/// The approvals in force and when the query that read them started.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    pub(crate) patterns: Arc<ApprovalPatterns>,
    /// A held report only trusts patterns read after its own report was: older ones may
    /// predate a revocation its report already saw.
    pub(crate) read_at: Instant,
}

/// The watcher task and the channel it publishes on. Dropping it stops the task.
pub(crate) struct ApprovalWatch {
    sender: Arc<watch::Sender<Published>>,
    task: tokio::task::JoinHandle<()>,
}

impl ApprovalWatch {
    /// Starts watching (on the current runtime). While no report is held, nothing is read.
    pub(crate) fn start(store: Arc<dyn Store>, poll: Duration, deep_every: u32) -> Self {
        let (sender, _) = watch::channel(Published {
            patterns: Arc::default(),
            read_at: Instant::now(),
        });
        let sender = Arc::new(sender);
        let task = tokio::spawn(watch_loop(store, sender.clone(), poll, deep_every.max(1)));
        Self { sender, task }
    }

    /// A receiver that sees every later change.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Published> {
        self.sender.subscribe()
    }
}

impl Drop for ApprovalWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn watch_loop(
    store: Arc<dyn Store>,
    sender: Arc<watch::Sender<Published>>,
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
        if sender.receiver_count() == 0 {
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
                last.update(&token);
                tracing::debug!(generation = token.generation, "approvals changed");
                sender.send_replace(Published {
                    patterns: Arc::new(patterns),
                    read_at,
                });
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

/// The last token seen; the generation and the row figures are compared separately, since
/// only deep reads carry the latter. Nothing seen yet counts as a change.
#[derive(Debug, Default)]
struct Seen {
    generation: Option<u64>,
    rows: Option<(u64, u64)>,
}

impl Seen {
    fn changed(&self, token: &ApprovalToken) -> bool {
        self.generation != Some(token.generation)
            || token.rows.is_some_and(|rows| self.rows != Some(rows))
    }

    fn update(&mut self, token: &ApprovalToken) {
        self.generation = Some(token.generation);
        if token.rows.is_some() {
            self.rows = token.rows;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_and_rows_are_compared_apart() {
        let mut seen = Seen::default();
        let shallow = ApprovalToken {
            generation: 1,
            rows: None,
        };
        assert!(seen.changed(&shallow), "nothing seen yet");
        seen.update(&shallow);
        assert!(!seen.changed(&shallow));
        let deep = ApprovalToken {
            generation: 1,
            rows: Some((3, 10)),
        };
        assert!(seen.changed(&deep), "first row figures");
        seen.update(&deep);
        assert!(
            !seen.changed(&shallow),
            "a shallow read keeps the row figures"
        );
        assert!(!seen.changed(&deep));
        assert!(seen.changed(&ApprovalToken {
            generation: 1,
            rows: Some((4, 17)),
        }));
        assert!(seen.changed(&ApprovalToken {
            generation: 2,
            rows: None,
        }));
    }
}
