//! `POST /v2/lease`: an agent running tasks under a tag's max in flight renews its leases
//! (`{"renew": true}`, every third of the lease time) and gives them back when its run is
//! over (`{"release": true}`). Same admission and limits as `/v2/runs`; 404 when v2 is off.

use std::sync::Arc;

use bytes::Buf;
use http::{HeaderMap, Method, StatusCode};
use masif_proto::v2::LeaseRequest;
use warp::reply::Response;

use super::reply::{agent_post, json, stored, text, Route};
use super::{Api, PeerIdentity};

/// `POST /v2/lease`: `{"held": N, "lease_seconds": S}` after a renewal (0 held: the leases
/// expired and may be taken), `{"released": N}` after a release; 400 naming the field of a
/// body that is neither, changing nothing.
pub(super) async fn lease<S, B>(
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
    if api.v2.is_none() {
        return text(StatusCode::NOT_FOUND, "not found");
    }
    let deadline = tokio::time::Instant::now() + api.report_timeout;
    let request = (&method, peer.as_ref(), &headers);
    let post = match agent_post(&api, Route::Lease, request, body, deadline).await {
        Ok(post) => post,
        Err(response) => return response,
    };
    let request = match LeaseRequest::parse(&post.body) {
        Ok(request) => request,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let agent = &post.agent;
    let gate = &api.gate;
    match request {
        LeaseRequest::Renew => {
            let renewal = gate
                .store
                .renew_leases(agent, gate.clock.now(), gate.lease_secs);
            let outcome = tokio::time::timeout_at(deadline, renewal).await;
            match stored(agent, "lease renewal", outcome) {
                Ok(held) => {
                    if held == 0 {
                        tracing::info!(%agent, "lease renewal found no live lease");
                    }
                    json(format!(
                        "{{\"held\":{held},\"lease_seconds\":{}}}",
                        gate.lease_secs
                    ))
                }
                Err(response) => response,
            }
        }
        LeaseRequest::Release => {
            let outcome = tokio::time::timeout_at(deadline, gate.store.release_leases(agent)).await;
            match stored(agent, "lease release", outcome) {
                Ok(released) => {
                    tracing::debug!(%agent, released, "leases released");
                    json(format!("{{\"released\":{released}}}"))
                }
                Err(response) => response,
            }
        }
    }
}
