//! The agent-facing routes: `POST /v1/pending-tasks` exactly as the original, 404 elsewhere.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_util::StreamExt;
use http::{HeaderMap, Method, StatusCode};
use masif_proto::{parse_task_list, render_task_list, AgentName, MAX_BODY_BYTES};
use masif_store::{Store, StoreError};
use warp::reply::{Reply, Response};
use warp::Filter;

/// Who is on the other end of a connection, put into every request's extensions by the accept
/// loop after the TLS handshake verified the client certificate.
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    /// CN of the verified client certificate (`None` if the certificate has none).
    pub common_name: Option<String>,
    pub remote: std::net::SocketAddr,
}

/// The whole API. Every request yields a response; nothing is left to warp's default rejections.
pub fn routes(
    store: Arc<dyn Store>,
    report_timeout: Duration,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let pending_tasks = warp::path!("v1" / "pending-tasks")
        .and(warp::method())
        .and(warp::ext::optional::<PeerIdentity>())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .and(warp::any().map(move || store.clone()))
        .then(move |method, peer, headers, body, store| {
            pending_tasks(method, peer, headers, body, store, report_timeout)
        });
    let not_found = warp::any().map(|| text(StatusCode::NOT_FOUND, "not found"));
    pending_tasks.or(not_found).unify()
}

async fn pending_tasks<S, B>(
    method: Method,
    peer: Option<PeerIdentity>,
    headers: HeaderMap,
    body: S,
    store: Arc<dyn Store>,
    report_timeout: Duration,
) -> Response
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    if method != Method::POST {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only POST is allowed here");
        response
            .headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
        return response;
    }
    let agent = match peer.as_ref().and_then(|p| p.common_name.as_deref()) {
        None | Some("") => {
            return text(
                StatusCode::BAD_REQUEST,
                "client certificate has no common name",
            )
        }
        Some(cn) => match AgentName::new(cn) {
            Ok(agent) => agent,
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("client certificate common name: {e}"),
                )
            }
        },
    };
    let body = match read_limited(&headers, body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let tasks = match parse_task_list(&body) {
        Ok(tasks) => tasks,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match tokio::time::timeout(report_timeout, store.report(&agent, &tasks)).await {
        Ok(Ok(approved)) => {
            let mut response = Response::new(render_task_list(&approved).into());
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            response
        }
        Ok(Err(StoreError::Invalid(reason))) => text(StatusCode::BAD_REQUEST, &reason),
        Ok(Err(e @ StoreError::RetriesExhausted { .. })) => {
            tracing::warn!(%agent, error = %e, "report not stored");
            busy()
        }
        Ok(Err(e)) => {
            tracing::error!(%agent, error = %e, "report not stored");
            text(StatusCode::INTERNAL_SERVER_ERROR, "database error")
        }
        Err(_) => {
            tracing::warn!(%agent, timeout = ?report_timeout, "report timed out");
            busy()
        }
    }
}

fn busy() -> Response {
    let mut response = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "database busy, try again later",
    );
    response.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("5"),
    );
    response
}

/// Reads the body, refusing (413) anything over `limit` bytes: at once when Content-Length says
/// so, otherwise as soon as the stream exceeds it.
async fn read_limited<S, B>(
    headers: &HeaderMap,
    mut body: S,
    limit: u64,
) -> Result<Vec<u8>, Response>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(4096).min(limit) as usize);
    while let Some(chunk) = body.next().await {
        let mut chunk =
            chunk.map_err(|_| text(StatusCode::BAD_REQUEST, "could not read the request body"))?;
        if buf.len() as u64 + chunk.remaining() as u64 > limit {
            return Err(too_large());
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            buf.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(buf.to_vec())
}

/// A short plain-text response; reasons never echo the request.
fn text(status: StatusCode, reason: &str) -> Response {
    let mut response = warp::reply::with_status(format!("{reason}\n"), status).into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
