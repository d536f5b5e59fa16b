//! Retrying a transaction that another one got in the way of, alike for both back ends: how an
//! attempt failed ([`Failure`]), and when to try again or give up ([`Backoff`]).

use std::time::Duration;

use rand::Rng;

use crate::StoreError;

/// Why one attempt of a transaction failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Another transaction was in the way (a deadlock, a lock wait timeout, a busy SQLite file,
    /// rows a reset deleted meanwhile), or the MySQL node failed (the store moves to another
    /// address): worth another attempt after a pause.
    Conflict(StoreError),
    /// Anything else: given up at once.
    Fatal(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Fatal(e)
    }
}

impl Failure {
    /// The error inside.
    pub(crate) fn error(&self) -> &StoreError {
        match self {
            Failure::Conflict(e) | Failure::Fatal(e) => e,
        }
    }

    /// The error inside, saying it happened while doing `doing` if it does not say what yet.
    pub(crate) fn while_doing(self, doing: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        match self {
            Failure::Conflict(e) => Failure::Conflict(e.while_doing(doing)),
            Failure::Fatal(e) => Failure::Fatal(e.while_doing(doing)),
        }
    }
}

/// How often and how patiently a transaction is tried.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// Attempts in all (at least one).
    pub max_attempts: u32,
    /// The first pause; each further one doubles, up to 64 times this.
    pub base: Duration,
}

/// The attempts of one transaction so far.
#[derive(Debug)]
pub(crate) struct Backoff {
    policy: Policy,
    failed: u32,
}

impl Backoff {
    pub(crate) fn new(policy: Policy) -> Self {
        Self { policy, failed: 0 }
    }

    /// After a failed attempt: the pause before the next one, or the error to give up with (a
    /// fatal failure, or the last conflict once no attempt is left). `what` names the
    /// transaction in the log.
    pub(crate) fn after(&mut self, failure: Failure, what: &str) -> Result<Duration, StoreError> {
        let conflict = match failure {
            Failure::Fatal(e) => return Err(e),
            Failure::Conflict(e) => e,
        };
        self.failed += 1;
        if self.failed >= self.policy.max_attempts.max(1) {
            tracing::warn!("{what} gave up after {} conflicts: {conflict}", self.failed);
            return Err(StoreError::RetriesExhausted {
                attempts: self.failed,
                last: Box::new(conflict),
            });
        }
        tracing::debug!("{what} conflict {}, retrying: {conflict}", self.failed);
        Ok(self.pause())
    }

    /// `base`, 2 × `base`, 4 × `base` … capped at 64 × `base`, jittered to 50–100 % so that
    /// transactions that collided do not collide again in step.
    fn pause(&self) -> Duration {
        let cap = self.policy.base * (1u32 << (self.failed - 1).min(6));
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(nanos / 2..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflict() -> Failure {
        Failure::Conflict(StoreError::Vanished("rows".into()))
    }

    #[test]
    fn pauses_grow_and_attempts_are_bounded() {
        let base = Duration::from_millis(5);
        let mut backoff = Backoff::new(Policy {
            max_attempts: 4,
            base,
        });
        let mut caps = Vec::new();
        for _ in 0..3 {
            let pause = backoff.after(conflict(), "test").unwrap();
            caps.push(pause);
        }
        for (pause, cap) in caps.iter().zip([base, base * 2, base * 4]) {
            assert!(
                *pause >= cap / 2 && *pause <= cap,
                "{pause:?} for cap {cap:?}"
            );
        }
        match backoff.after(conflict(), "test") {
            Err(StoreError::RetriesExhausted { attempts: 4, last }) => {
                assert!(matches!(*last, StoreError::Vanished(_)))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fatal_failures_are_not_retried() {
        let mut backoff = Backoff::new(Policy {
            max_attempts: 8,
            base: Duration::from_millis(5),
        });
        let failure = Failure::Fatal(StoreError::Invalid("no".into()));
        assert!(matches!(
            backoff.after(failure, "test"),
            Err(StoreError::Invalid(_))
        ));
    }
}
