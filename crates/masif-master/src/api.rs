//! The agent-facing routes: `POST /v1/pending-tasks` exactly as the original, the v2 routes
//! (`POST /v2/report` with long-poll, `POST /v2/runs`, `POST /v2/lease`) unless turned off,
//! 404 elsewhere. Every v2 report's approved tasks pass the roll-out gate (v1 reports carry
//! no tags, so it never holds them back).

mod admission;
mod lease;
mod reply;
mod v2;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use http::{HeaderMap, Method, StatusCode};
use masif_proto::{parse_task_list, render_task_list};
use masif_store::{Retention, Store};
use warp::reply::Response;
use warp::Filter;

use crate::approvals::ApprovalWatch;
use crate::gate::Gate;
use crate::metrics::ReportMetrics;
pub(crate) use admission::Admission;
use reply::{agent_post, json, stored, text, Route};

/// Who is on the other end of a connection, put into every request's extensions by the accept
/// loop after the TLS handshake verified the client certificate.
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    /// CN of the verified client certificate (`None` if the certificate has none).
    pub common_name: Option<String>,
    pub remote: std::net::SocketAddr,
    /// The certificate was revoked by a CRL that took effect after the connection's
    /// handshake.
    pub revoked: bool,
}

/// What the routes work with.
pub(crate) struct Api {
    pub(crate) store: Arc<dyn Store>,
    /// Longest time one request may take to arrive and be stored, database retries
    /// included (not counting the time a v2 report is held).
    pub(crate) report_timeout: Duration,
    /// What agents may send and when.
    pub(crate) admission: Admission,
    /// The v2 routes' parts; `None` serves v1 only (v2 paths are 404, as on the original).
    pub(crate) v2: Option<V2>,
    /// Reports counted by outcome and timed, held reports counted.
    pub(crate) metrics: Arc<ReportMetrics>,
    /// Maintenance windows and max in flight, applied to every report's approved tasks.
    pub(crate) gate: Gate,
}

/// What the v2 routes need beyond the store.
pub(crate) struct V2 {
    pub(crate) approvals: ApprovalWatch,
    /// Longest a report is held waiting for approvals, whatever the agent asks for.
    pub(crate) max_wait: Duration,
    pub(crate) retention: Retention,
    /// Set once the master shuts down: held reports are answered at once.
    pub(crate) closing: tokio::sync::watch::Receiver<bool>,
    /// How often a held report waiting for a free slot of a tag's max in flight asks again.
    pub(crate) slot_poll: Duration,
}

/// The whole API. Every request yields a response; nothing is left to warp's default rejections.
pub(crate) fn routes(
    api: Arc<Api>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let with_api = warp::any().map(move || api.clone());
    let request = warp::method()
        .and(warp::ext::optional::<PeerIdentity>())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .and(with_api);
    let pending_tasks = warp::path!("v1" / "pending-tasks")
        .and(request.clone())
        .then(pending_tasks);
    let report = warp::path!("v2" / "report")
        .and(request.clone())
        .then(v2::report);
    let runs = warp::path!("v2" / "runs")
        .and(request.clone())
        .then(v2::runs);
    let lease = warp::path!("v2" / "lease").and(request).then(lease::lease);
    let not_found = warp::any().map(|| text(StatusCode::NOT_FOUND, "not found"));
    pending_tasks
        .or(report)
        .unify()
        .or(runs)
        .unify()
        .or(lease)
        .unify()
        .or(not_found)
        .unify()
}

/// `POST /v1/pending-tasks`, counted and timed in the metrics.
async fn pending_tasks<S, B>(
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
    let started = std::time::Instant::now();
    let response = pending_tasks_answer(method, peer, headers, body, &api).await;
    api.metrics.answered(started, response.status());
    response
}

async fn pending_tasks_answer<S, B>(
    method: Method,
    peer: Option<PeerIdentity>,
    headers: HeaderMap,
    body: S,
    api: &Api,
) -> Response
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let deadline = tokio::time::Instant::now() + api.report_timeout;
    let request = (&method, peer.as_ref(), &headers);
    let post = match agent_post(api, Route::Report, request, body, deadline).await {
        Ok(post) => post,
        Err(response) => return response,
    };
    let tasks = match parse_task_list(&post.body) {
        Ok(tasks) => tasks,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if let Err(response) = api.admission.check_tasks(tasks.len()) {
        return response;
    }
    let agent = &post.agent;
    let outcome = tokio::time::timeout_at(deadline, api.store.report(agent, &tasks)).await;
    // A v1 report carries no facts, so no tags: the roll-out gate never holds it back.
    match stored(agent, "report", outcome) {
        Ok(approved) => json(render_task_list(&approved)),
        Err(response) => response,
    }
}
