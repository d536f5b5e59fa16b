//! The API's errors: every rejection under `/api/` becomes `{"error": "..."}` with its status
//! (401 with `WWW-Authenticate: Bearer`, 429 and 503 with `Retry-After`), never a page or a
//! trace; store errors become 400 (input the store refused), 503 (try again) or a logged 500.

use std::convert::Infallible;

use serde::Serialize;
use warp::http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Rejection;

use crate::pages::reject::{BadRequest, NotFound};

/// `Retry-After` of a 503 when the database is unavailable or every password check is busy.
pub(crate) const RETRY_AFTER_SECS: u64 = 5;

/// An error answer of the API.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}
impl warp::reject::Reject for ApiError {}

impl ApiError {
    pub(crate) fn reject(status: StatusCode, message: impl Into<String>) -> Rejection {
        warp::reject::custom(Self {
            status,
            message: message.into(),
            retry_after: None,
        })
    }

    /// 400 naming what was wrong.
    pub(crate) fn bad(message: impl Into<String>) -> Rejection {
        Self::reject(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Rejection {
        Self::reject(StatusCode::UNAUTHORIZED, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Rejection {
        Self::reject(StatusCode::NOT_FOUND, message)
    }

    /// `status` (429 or 503) with `Retry-After: seconds`.
    pub(crate) fn retry_later(status: StatusCode, message: &str, seconds: u64) -> Rejection {
        warp::reject::custom(Self {
            status,
            message: message.to_owned(),
            retry_after: Some(seconds.max(1)),
        })
    }
}

/// A store error as an answer: refused input 400, a database to try again later 503, anything
/// else a logged 500 that says nothing more.
pub(crate) fn store_failed(e: masif_store::StoreError) -> Rejection {
    if let masif_store::StoreError::Invalid(msg) = e {
        return ApiError::bad(msg);
    }
    if e.is_transient() {
        tracing::warn!(error = %e, "database unavailable");
        return ApiError::retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "database unavailable, try again later",
            RETRY_AFTER_SECS,
        );
    }
    tracing::error!(error = %e, "database request failed");
    ApiError::reject(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// `value` as a JSON answer with `status`, never cached.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let mut r = match serde_json::to_vec(value) {
        Ok(body) => Response::new(body.into()),
        Err(e) => {
            tracing::error!(error = %e, "JSON answer did not serialize");
            let mut r = Response::new(br#"{"error":"internal error"}"#.to_vec().into());
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
    };
    if r.status() == StatusCode::OK {
        *r.status_mut() = status;
    }
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Maps every rejection under `/api/` to a JSON error.
pub(crate) async fn recover(r: Rejection) -> Result<Response, Infallible> {
    let (status, message, retry_after) = if let Some(e) = r.find::<ApiError>() {
        (e.status, e.message.clone(), e.retry_after)
    } else if let Some(BadRequest(msg)) = r.find() {
        (StatusCode::BAD_REQUEST, msg.clone(), None)
    } else if let Some(NotFound(msg)) = r.find() {
        (StatusCode::NOT_FOUND, msg.clone(), None)
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {} bytes", super::body::MAX_BODY_BYTES),
            None,
        )
    } else if r.find::<warp::reject::LengthRequired>().is_some() {
        (
            StatusCode::LENGTH_REQUIRED,
            "a body needs a Content-Length".into(),
            None,
        )
    } else if r.find::<warp::reject::InvalidQuery>().is_some() {
        (
            StatusCode::BAD_REQUEST,
            "malformed query string".into(),
            None,
        )
    } else if let Some(e) = r.find::<warp::reject::InvalidHeader>() {
        (
            StatusCode::BAD_REQUEST,
            format!("invalid header {}", e.name()),
            None,
        )
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed".into(),
            None,
        )
    } else if r.is_not_found() {
        (StatusCode::NOT_FOUND, "no such API path".into(), None)
    } else {
        tracing::warn!(rejection = ?r, "unhandled API rejection");
        (StatusCode::BAD_REQUEST, "bad request".into(), None)
    };
    let mut resp = json(status, &ErrorBody { error: &message });
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Some(seconds) = retry_after {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    Ok(resp)
}
