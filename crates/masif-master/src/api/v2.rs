//! The v2 routes: `POST /v2/report`, a report whose answer may be held (long-poll) until an
//! approval or a revocation touches one of its tasks, and `POST /v2/runs`, the results of the
//! agent's package runs. Both are 404 when v2 is turned off, as on the original master.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Buf;
use http::{HeaderMap, Method, StatusCode};
use masif_proto::v2::{parse_runs, Report, ReportAnswer};
use masif_proto::{AgentName, TaskSet};
use warp::reply::Response;

use super::admission::Admitted;
use super::reply::{agent_post, json, stored, text, AgentPost, Route};
use super::{Api, PeerIdentity, V2};

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
        approved,
        read_at,
        approvals,
        _admitted,
    } = received;
    let wait = Duration::from_secs(report.wait_secs).min(v2.max_wait);
    if approved != report.approved || wait.is_zero() {
        return answer(approved);
    }
    let _held = api.metrics.hold();
    hold(
        &agent,
        &report.tasks,
        approved,
        wait,
        read_at,
        approvals,
        v2,
    )
    .await
}

/// What a stored v2 report leaves for its answer.
struct Received<'a> {
    agent: AgentName,
    report: Report,
    /// Its approvals now, read at `read_at`.
    approved: TaskSet,
    read_at: Instant,
    /// Changes of the approvals, subscribed to before the read.
    approvals: tokio::sync::watch::Receiver<crate::approvals::Published>,
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
    let mut approvals = v2.approvals.subscribe();
    approvals.borrow_and_update();
    let read_at = Instant::now();
    let approved = store_report(api, &agent, &report, deadline).await?;
    Ok(Received {
        agent,
        report,
        approved,
        read_at,
        approvals,
        _admitted: admitted,
    })
}

/// Holds the answer until the approvals of `tasks` differ from `approved`, `wait` passes, or
/// the master shuts down; then answers with the approvals in force.
async fn hold(
    agent: &AgentName,
    tasks: &TaskSet,
    approved: TaskSet,
    wait: Duration,
    read_at: Instant,
    mut approvals: tokio::sync::watch::Receiver<crate::approvals::Published>,
    v2: &V2,
) -> Response {
    let mut closing = v2.closing.clone();
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return answer(approved),
            _ = closing.wait_for(|closing| *closing) => return answer(approved),
            changed = approvals.changed() => {
                if changed.is_err() {
                    // The watcher is gone (shutdown): answer what is known.
                    return answer(approved);
                }
                let published = approvals.borrow_and_update().clone();
                if published.read_at < read_at {
                    continue;
                }
                let now = published.patterns.approved(agent, tasks);
                if now != approved {
                    tracing::debug!(%agent, "approvals changed while held");
                    return answer(now);
                }
            }
        }
    }
}

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

fn answer(approved: TaskSet) -> Response {
    json(ReportAnswer::approving(approved).render())
}
