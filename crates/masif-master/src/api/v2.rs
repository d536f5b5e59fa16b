//! The v2 routes: `POST /v2/report`, a report whose answer may be held (long-poll) until its
//! approved tasks, passed through the roll-out gate, differ from what the agent holds (an
//! approval or revocation, a window opening, a free slot), and `POST /v2/runs`, the results
//! of the agent's package runs. Both are 404 when v2 is turned off, as on the original
//! master.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Buf;
use http::{HeaderMap, Method, StatusCode};
use masif_proto::v2::{parse_runs, Report};
use masif_proto::{AgentName, Tag, TaskSet};
use warp::reply::Response;

use super::admission::Admitted;
use super::reply::{agent_post, json, stored, text, AgentPost, Route};
use super::{Api, PeerIdentity, V2};
use crate::approvals::Subscription;
use crate::gate::{cautious, Gated, Moment, Wake};

/// `POST /v2/report`: counted and timed in the metrics up to the moment its answer is known;
/// a report then held is counted in `masif_master_longpolls_waiting` while it waits.
pub(super) async fn report<S, B>(
    method: Method,
    peer: Option<PeerIdentity>,
    headers: HeaderMap,
    body: S,
    api: Arc<Api>,
) -> Response
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let Some(v2) = &api.v2 else {
        return text(StatusCode::NOT_FOUND, "not found");
    };
    let started = Instant::now();
    let received = match receive(method, peer, headers, body, &api, v2).await {
        Ok(received) => received,
        Err(response) => {
            api.metrics.answered(started, response.status());
            return response;
        }
    };
    api.metrics.answered(started, StatusCode::OK);
    let Received {
        agent,
        report,
        tags,
        approved,
        gated,
        wait,
        read_at,
        approvals,
        _admitted,
    } = received;
    if gated.answer.approved != report.approved || wait.is_zero() {
        return json(gated.answer.render());
    }
    let _held = api.metrics.hold();
    let held = Held {
        agent: &agent,
        tags: &tags,
        tasks: &report.tasks,
        holds: &report.approved,
    };
    held.hold(approved, gated, wait, read_at, approvals, &api, v2)
        .await
}

/// What a stored v2 report leaves for its answer.
struct Received<'a> {
    agent: AgentName,
    report: Report,
    /// The agent's tags (from the report's facts).
    tags: BTreeSet<Tag>,
    /// Its approvals now, read at `read_at`, before the gate.
    approved: TaskSet,
    /// What the gate makes of them.
    gated: Gated,
    /// How long the answer may be held.
    wait: Duration,
    read_at: Instant,
    /// Changes of the approvals, subscribed to before the read.
    approvals: Subscription,
    /// The agent's place among its requests in flight, held while the answer is.
    _admitted: Admitted<'a>,
}

/// A v2 report read, checked and stored, or the answer refusing it.
async fn receive<'a, S, B>(
    method: Method,
    peer: Option<PeerIdentity>,
    headers: HeaderMap,
    body: S,
    api: &'a Api,
    v2: &V2,
) -> Result<Received<'a>, Response>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let deadline = tokio::time::Instant::now() + api.report_timeout;
    let request = (&method, peer.as_ref(), &headers);
    let post = agent_post(api, Route::Report, request, body, deadline).await?;
    let report =
        Report::parse(&post.body).map_err(|e| text(StatusCode::BAD_REQUEST, &e.to_string()))?;
    api.admission.check_tasks(report.tasks.len())?;
    // The body's memory goes back to the budget; the agent's place in flight stays taken
    // while the answer is held.
    let AgentPost {
        agent,
        body,
        admitted,
    } = post;
    drop(body);
    // Subscribe before reading: a change committed after the read is then seen below.
    let approvals = v2.approvals.subscribe(&agent);
    let read_at = Instant::now();
    let approved = store_report(api, &agent, &report, deadline).await?;
    let wait = Duration::from_secs(report.wait_secs).min(v2.max_wait);
    let tags = report
        .facts
        .as_ref()
        .map(|facts| facts.tags.clone())
        .unwrap_or_default();
    let moment = Moment::Arrived {
        may_hold: !wait.is_zero(),
    };
    let decision = api
        .gate
        .decide(&agent, &tags, approved.clone(), &report.approved, moment);
    let gated = stored(
        &agent,
        "gate",
        tokio::time::timeout_at(deadline, decision).await,
    )?;
    Ok(Received {
        agent,
        report,
        tags,
        approved,
        gated,
        wait,
        read_at,
        approvals,
        _admitted: admitted,
    })
}

/// A held report: whose, with which tags and tasks, holding which approved tasks.
struct Held<'a> {
    agent: &'a AgentName,
    tags: &'a BTreeSet<Tag>,
    tasks: &'a TaskSet,
    holds: &'a TaskSet,
}

impl Held<'_> {
    /// Holds the answer until the gated approvals of the tasks differ from what the agent
    /// holds, `wait` passes, or the master shuts down. The gate is asked again when a change
    /// of the approvals may concern the agent (leases given back, tag settings and roll-out
    /// steps concern every agent), when the maintenance window opens by the master's clock,
    /// and every slot poll while waiting for a free slot of a tag's max in flight.
    #[allow(clippy::too_many_arguments)]
    async fn hold(
        &self,
        mut approved: TaskSet,
        mut gated: Gated,
        wait: Duration,
        read_at: Instant,
        mut approvals: Subscription,
        api: &Api,
        v2: &V2,
    ) -> Response {
        let mut closing = v2.closing.clone();
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            let clock = &api.gate.clock;
            let wake = async {
                match gated.wake {
                    Wake::Never => std::future::pending().await,
                    Wake::At(at) => clock.sleep_until(at).await,
                    Wake::Poll => tokio::time::sleep(v2.slot_poll).await,
                }
            };
            tokio::select! {
                _ = &mut deadline => return self.last_answer(approved, api).await,
                () = shutdown(&mut closing) => return self.last_answer(approved, api).await,
                _ = wake => {}
                changed = approvals.changed() => {
                    let Some(published) = changed else {
                        // The watcher is gone (shutdown): answer what is known.
                        return self.last_answer(approved, api).await;
                    };
                    api.metrics.woken();
                    if published.read_at < read_at {
                        continue;
                    }
                    approved = published.patterns.approved(self.agent, self.tasks);
                }
            }
            let decision = api.gate.decide(
                self.agent,
                self.tags,
                approved.clone(),
                self.holds,
                Moment::Held,
            );
            match tokio::time::timeout(api.report_timeout, decision).await {
                Ok(Ok(now)) if now.answer.approved != *self.holds => {
                    tracing::debug!(agent = %self.agent, "approvals changed while held");
                    return json(now.answer.render());
                }
                Ok(Ok(now)) => gated = now,
                Ok(Err(e)) => {
                    tracing::warn!(agent = %self.agent, error = %e, "gate not asked; retrying");
                    gated.wake = Wake::Poll;
                }
                Err(_) => gated.wake = Wake::Poll,
            }
        }
    }

    /// The answer at the end of the wait: the gate asked once more, taking a lease if the
    /// answer runs tasks (or, failing that, nothing a gated agent may run).
    async fn last_answer(&self, approved: TaskSet, api: &Api) -> Response {
        let decision = api.gate.decide(
            self.agent,
            self.tags,
            approved.clone(),
            self.holds,
            Moment::Final,
        );
        let answer = match tokio::time::timeout(LAST_ANSWER_WITHIN, decision).await {
            Ok(Ok(gated)) => gated.answer,
            Ok(Err(e)) => {
                tracing::warn!(agent = %self.agent, error = %e, "gate not asked at the end of a hold");
                cautious(self.tags, approved)
            }
            Err(_) => cautious(self.tags, approved),
        };
        json(answer.render())
    }
}

/// Returns once the master shuts down.
async fn shutdown(closing: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = closing.wait_for(|closing| *closing).await;
}

/// Longest the gate may take for a held report's last answer (at shutdown too).
const LAST_ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// `POST /v2/runs`.
pub(super) async fn runs<S, B>(
    method: Method,
    peer: Option<PeerIdentity>,
    headers: HeaderMap,
    body: S,
    api: Arc<Api>,
) -> Response
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let Some(v2) = &api.v2 else {
        return text(StatusCode::NOT_FOUND, "not found");
    };
    let deadline = tokio::time::Instant::now() + api.report_timeout;
    let request = (&method, peer.as_ref(), &headers);
    let post = match agent_post(&api, Route::Runs, request, body, deadline).await {
        Ok(post) => post,
        Err(response) => return response,
    };
    let runs = match parse_runs(&post.body) {
        Ok(runs) => runs,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let agent = &post.agent;
    let outcome =
        tokio::time::timeout_at(deadline, api.store.record_runs(agent, &runs, &v2.retention)).await;
    match stored(agent, "runs", outcome) {
        Ok(new) => {
            tracing::info!(%agent, runs = runs.len(), new, "runs recorded");
            json(format!("{{\"stored\":{new}}}"))
        }
        Err(response) => response,
    }
}

async fn store_report(
    api: &Api,
    agent: &AgentName,
    report: &Report,
    deadline: tokio::time::Instant,
) -> Result<TaskSet, Response> {
    let report_future = api
        .store
        .report_with_facts(agent, &report.tasks, report.facts.as_ref());
    let outcome = tokio::time::timeout_at(deadline, report_future).await;
    stored(agent, "report", outcome)
}
