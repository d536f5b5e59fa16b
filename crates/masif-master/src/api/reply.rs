//! Pieces every agent route shares: who the agent is, reading a bounded body, and the short
//! plain-text and JSON answers.

// The `Err` of these results is the HTTP answer itself, sent as soon as it is returned.
#![allow(clippy::result_large_err)]

use bytes::{Buf, BytesMut};
use futures_util::StreamExt;
use http::{HeaderMap, Method, StatusCode};
use masif_proto::AgentName;
use warp::reply::{Reply, Response};

use super::PeerIdentity;

/// The agent a request comes from (the verified client certificate's CN), a 405 for any
/// method but POST, or a 400 for a certificate without a usable CN.
fn post_from_agent(method: &Method, peer: Option<&PeerIdentity>) -> Result<AgentName, Response> {
    if method != Method::POST {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only POST is allowed here");
        response
            .headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
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

/// The agent and the body of a POST, or the answer refusing it.
pub(crate) async fn agent_post<S, B>(
    method: &Method,
    peer: Option<&PeerIdentity>,
    headers: &HeaderMap,
    body: S,
) -> Result<(AgentName, Vec<u8>), Response>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let agent = post_from_agent(method, peer)?;
    let body = read_limited(headers, body, masif_proto::MAX_BODY_BYTES).await?;
    Ok((agent, body))
}

/// A 503 asking the agent to come back in 5 s.
pub(crate) fn busy() -> Response {
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
