//! Pieces every agent route shares: who the agent is, admitting and reading a bounded body
//! by a deadline, and the short plain-text and JSON answers.

// The `Err` of these results is the HTTP answer itself, sent as soon as it is returned.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_util::StreamExt;
use http::{HeaderMap, Method, StatusCode};
use masif_proto::AgentName;
use tokio::time::Instant;
use warp::reply::{Reply, Response};

use super::admission::{Admission, Admitted, BodyRoom};
use super::{Api, PeerIdentity};

/// The agent a request comes from (the verified client certificate's CN), a 405 for any
/// method but POST, a 403 (closing the connection) for a certificate revoked since the
/// handshake, or a 400 for a certificate without a usable CN.
fn post_from_agent(method: &Method, peer: Option<&PeerIdentity>) -> Result<AgentName, Response> {
    if method != Method::POST {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only POST is allowed here");
        response
            .headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
        return Err(response);
    }
    if peer.is_some_and(|p| p.revoked) {
        let mut response = text(StatusCode::FORBIDDEN, "client certificate revoked");
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        return Err(response);
    }
    match peer.and_then(|p| p.common_name.as_deref()) {
        None | Some("") => Err(text(
            StatusCode::BAD_REQUEST,
            "client certificate has no common name",
        )),
        Some(cn) => AgentName::new(cn).map_err(|e| {
            text(
                StatusCode::BAD_REQUEST,
                &format!("client certificate common name: {e}"),
            )
        }),
    }
}

/// A POST an agent may send: who sent it, its body, and its place among the agent's
/// requests in flight (held while the request is served).
pub(crate) struct AgentPost<'a> {
    pub(crate) agent: AgentName,
    pub(crate) body: Body,
    pub(crate) admitted: Admitted<'a>,
}

/// A request body read into memory, holding its room in the shared body budget.
pub(crate) struct Body {
    bytes: Vec<u8>,
    _room: BodyRoom,
}

impl std::ops::Deref for Body {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Which agent route a POST is for: reports count against the agent's report rate.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Report,
    Runs,
    Lease,
}

/// The agent and the body of a POST, or the answer refusing it: 405 for another method, 400
/// for a certificate without a usable CN, 429 over the agent's requests at once or report
/// rate, 413 for a body over the limit, 503 when the shared body budget has no room for it
/// by `deadline`, 408 for a body not complete by then.
pub(crate) async fn agent_post<'a, S, B>(
    api: &'a Api,
    route: Route,
    request: (&Method, Option<&PeerIdentity>, &HeaderMap),
    body: S,
    deadline: Instant,
) -> Result<AgentPost<'a>, Response>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let (method, peer, headers) = request;
    let agent = post_from_agent(method, peer)?;
    let admitted = api.admission.enter(&agent)?;
    if route == Route::Report {
        api.admission.report(&agent)?;
    }
    let limit = masif_proto::MAX_BODY_BYTES;
    let declared = declared_length(headers, limit)?;
    let room = api.admission.body_room(declared.unwrap_or(0));
    let Ok(room) = tokio::time::timeout_at(deadline, room).await else {
        tracing::warn!(%agent, "no room for the request body in time");
        return Err(busy());
    };
    let read = read_limited(&api.admission, room, declared, body, limit);
    let body = match tokio::time::timeout_at(deadline, read).await {
        Ok(body) => body?,
        Err(_) => return Err(too_slow()),
    };
    Ok(AgentPost {
        agent,
        body,
        admitted,
    })
}

/// Sets `Retry-After` to `wait` in whole seconds, at least 1.
pub(crate) fn retry_after(mut response: Response, wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, secs.max(1).into());
    response
}

/// A 503 asking the agent to come back in 5 s.
pub(crate) fn busy() -> Response {
    retry_after(
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "database busy, try again later",
        ),
        Duration::from_secs(5),
    )
}

/// A 408 for a body that did not arrive in time.
fn too_slow() -> Response {
    text(
        StatusCode::REQUEST_TIMEOUT,
        "request body not complete in time",
    )
}

/// The Content-Length, or a 413 when it is over `limit`.
fn declared_length(headers: &HeaderMap, limit: u64) -> Result<Option<usize>, Response> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit => Err(too_large(limit)),
        declared => Ok(declared.map(|n| n as usize)),
    }
}

fn too_large(limit: u64) -> Response {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body larger than {limit} bytes"),
    )
}

/// Reads the body into `room` (taken for the `declared` length), refusing (413) a stream
/// that exceeds `limit` bytes. Without a declared length, room is taken chunk by chunk
/// before each is buffered.
async fn read_limited<S, B>(
    admission: &Admission,
    mut room: BodyRoom,
    declared: Option<usize>,
    mut body: S,
    limit: u64,
) -> Result<Body, Response>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = body.next().await {
        let mut chunk =
            chunk.map_err(|_| text(StatusCode::BAD_REQUEST, "could not read the request body"))?;
        if buf.len() as u64 + chunk.remaining() as u64 > limit {
            return Err(too_large(limit));
        }
        if declared.is_none() {
            room.merge(admission.body_room(chunk.remaining()).await);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            buf.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(Body {
        bytes: buf.to_vec(),
        _room: room,
    })
}

/// A 200 with a JSON body.
pub(crate) fn json(body: String) -> Response {
    let mut response = Response::new(body.into());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// A short plain-text response; reasons never echo the request.
pub(crate) fn text(status: StatusCode, reason: &str) -> Response {
    let mut response = warp::reply::with_status(format!("{reason}\n"), status).into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The value of a store call bounded by a deadline, or the answer that says why there is none:
/// 400 for a report the store finds invalid, 503 when the database stayed busy, is out of reach,
/// has too many reports waiting, or the deadline passed, 500 for any other database failure
/// (logged with `what`).
pub(crate) fn stored<T>(
    agent: &AgentName,
    what: &str,
    outcome: Result<masif_store::Result<T>, tokio::time::error::Elapsed>,
) -> Result<T, Response> {
    use masif_store::StoreError;
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(StoreError::Invalid(reason))) => Err(text(StatusCode::BAD_REQUEST, &reason)),
        Ok(Err(e)) if e.is_transient() => {
            tracing::warn!(%agent, error = %e, "{what} not stored");
            Err(busy())
        }
        Ok(Err(e)) => {
            tracing::error!(%agent, error = %e, "{what} not stored");
            Err(text(StatusCode::INTERNAL_SERVER_ERROR, "database error"))
        }
        Err(_) => {
            tracing::warn!(%agent, "{what} timed out");
            Err(busy())
        }
    }
}
