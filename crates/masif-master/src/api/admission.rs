//! What an agent may send and when: at most [`MAX_REQUESTS_PER_AGENT`] requests at once per
//! agent, a report rate per agent, a cap on tasks per report, and one budget of request body
//! bytes held in memory across all connections.

// The `Err` of these results is the HTTP answer itself, sent as soon as it is returned.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::StatusCode;
use masif_proto::AgentName;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use warp::reply::Response;

use super::reply::{retry_after, text};

/// Requests one agent may have in flight at once: a held report and a run upload.
pub(crate) const MAX_REQUESTS_PER_AGENT: usize = 2;

/// Every how many reports the rate table drops agents that are back to a full allowance.
const FORGET_EVERY: u64 = 4096;

/// The limits in force on one master (each master of a database keeps its own).
pub(crate) struct Admission {
    max_tasks: usize,
    in_flight: Mutex<HashMap<AgentName, usize>>,
    reports: DefaultKeyedRateLimiter<AgentName>,
    reports_seen: AtomicU64,
    body_bytes: Arc<Semaphore>,
}

/// One request of an agent in flight; counted down when dropped.
pub(crate) struct Admitted<'a> {
    admission: &'a Admission,
    agent: AgentName,
}

/// Room for `n` body bytes in the shared budget, given back when dropped.
pub(crate) struct BodyRoom(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl Admission {
    pub(crate) fn new(
        max_tasks: usize,
        max_reports_per_minute: u32,
        max_body_bytes_in_flight: usize,
    ) -> Self {
        let per_minute = NonZeroU32::new(max_reports_per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            max_tasks,
            in_flight: Mutex::default(),
            reports: RateLimiter::keyed(Quota::per_minute(per_minute)),
            reports_seen: AtomicU64::new(0),
            body_bytes: Arc::new(Semaphore::new(
                max_body_bytes_in_flight.min(Semaphore::MAX_PERMITS),
            )),
        }
    }

    /// Counts a request of `agent` in, or a 429 when it has [`MAX_REQUESTS_PER_AGENT`] in
    /// flight already.
    pub(crate) fn enter(&self, agent: &AgentName) -> Result<Admitted<'_>, Response> {
        let mut in_flight = self.in_flight.lock().expect("admission lock poisoned");
        let count = in_flight.entry(agent.clone()).or_insert(0);
        if *count >= MAX_REQUESTS_PER_AGENT {
            tracing::warn!(%agent, "more than {MAX_REQUESTS_PER_AGENT} requests at once");
            return Err(too_many(
                &format!("at most {MAX_REQUESTS_PER_AGENT} requests at once per agent"),
                Duration::from_secs(5),
            ));
        }
        *count += 1;
        Ok(Admitted {
            admission: self,
            agent: agent.clone(),
        })
    }

    /// Takes one report from `agent`'s allowance, or a 429 saying when the next one fits.
    pub(crate) fn report(&self, agent: &AgentName) -> Result<(), Response> {
        if self.reports_seen.fetch_add(1, Ordering::Relaxed) % FORGET_EVERY == FORGET_EVERY - 1 {
            self.reports.retain_recent();
            self.reports.shrink_to_fit();
        }
        match self.reports.check_key(agent) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                tracing::warn!(%agent, "reports too often");
                Err(too_many(
                    "too many reports from this agent; see Retry-After",
                    wait,
                ))
            }
        }
    }

    /// A 413 when `tasks` is over the cap per report.
    pub(crate) fn check_tasks(&self, tasks: usize) -> Result<(), Response> {
        if tasks <= self.max_tasks {
            return Ok(());
        }
        Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "the report holds {tasks} tasks, more than the {} allowed (api.max_tasks)",
                self.max_tasks
            ),
        ))
    }

    /// Room for `bytes` more body bytes, waiting while other requests hold the budget; the
    /// caller bounds the wait with its deadline.
    pub(crate) async fn body_room(&self, bytes: usize) -> BodyRoom {
        if bytes == 0 {
            return BodyRoom(None);
        }
        let n = u32::try_from(bytes).unwrap_or(u32::MAX);
        let permit = self
            .body_bytes
            .clone()
            .acquire_many_owned(n)
            .await
            .expect("body budget never closed");
        BodyRoom(Some(permit))
    }

    /// Body bytes not held by any request now.
    #[cfg(test)]
    fn body_bytes_free(&self) -> usize {
        self.body_bytes.available_permits()
    }
}

impl BodyRoom {
    /// Adds `other`'s bytes to this room.
    pub(crate) fn merge(&mut self, other: BodyRoom) {
        match (&mut self.0, other.0) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let mut in_flight = self
            .admission
            .in_flight
            .lock()
            .expect("admission lock poisoned");
        if let Some(count) = in_flight.get_mut(&self.agent) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.agent);
            }
        }
    }
}

/// A 429 with `Retry-After` (whole seconds, at least 1).
fn too_many(reason: &str, wait: Duration) -> Response {
    retry_after(text(StatusCode::TOO_MANY_REQUESTS, reason), wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str) -> AgentName {
        AgentName::new(name).unwrap()
    }

    #[test]
    fn an_agent_gets_two_requests_at_once_and_a_third_after_one_ended() {
        let admission = Admission::new(10, 60, 1 << 20);
        let a = agent("a");
        let first = admission.enter(&a).unwrap();
        let _second = admission.enter(&a).unwrap();
        let refused = admission.enter(&a).err().unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()["retry-after"], "5");
        assert!(admission.enter(&agent("b")).is_ok());
        drop(first);
        assert!(admission.enter(&a).is_ok());
    }

    #[test]
    fn the_in_flight_table_forgets_agents_with_nothing_in_flight() {
        let admission = Admission::new(10, 60, 1 << 20);
        for i in 0..50 {
            drop(admission.enter(&agent(&format!("a{i}"))).unwrap());
        }
        assert!(admission.in_flight.lock().unwrap().is_empty());
    }

    #[test]
    fn reports_over_the_rate_get_a_429_with_the_wait() {
        let admission = Admission::new(10, 3, 1 << 20);
        let a = agent("a");
        for _ in 0..3 {
            admission.report(&a).unwrap();
        }
        let refused = admission.report(&a).err().unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let wait: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=20).contains(&wait), "one report every 20 s: {wait}");
        admission.report(&agent("b")).unwrap();
    }

    #[test]
    fn tasks_over_the_cap_get_a_413_naming_the_key() {
        let admission = Admission::new(5, 60, 1 << 20);
        assert!(admission.check_tasks(5).is_ok());
        let refused = admission.check_tasks(6).err().unwrap();
        assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn body_room_is_taken_from_one_budget_and_given_back() {
        let admission = Admission::new(5, 60, 1000);
        let mut room = admission.body_room(600).await;
        room.merge(admission.body_room(300).await);
        assert_eq!(admission.body_bytes_free(), 100);
        let waiting = admission.body_room(200);
        tokio::pin!(waiting);
        assert!(futures_util::poll!(waiting.as_mut()).is_pending());
        drop(room);
        waiting.await;
        assert_eq!(admission.body_bytes_free(), 1000);
    }
}
