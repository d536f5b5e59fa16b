//! The UI's rejections and the one recovery that turns every rejection into a page: a
//! redirect to the login page, 400, 403, 404, 405, 413 or 500.

use std::convert::Infallible;
use std::sync::Arc;

use serde::Serialize;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Rejection;

use crate::App;

/// No session and no trusted proxy header: go to the login page.
#[derive(Debug)]
pub(crate) struct Unauthenticated;
impl warp::reject::Reject for Unauthenticated {}

/// A form without the right CSRF token.
#[derive(Debug)]
pub(crate) struct Forbidden;
impl warp::reject::Reject for Forbidden {}

/// Bad input, with a reason safe to show.
#[derive(Debug)]
pub(crate) struct BadRequest(pub String);
impl warp::reject::Reject for BadRequest {}

impl BadRequest {
    pub(crate) fn reject(msg: impl Into<String>) -> Rejection {
        warp::reject::custom(BadRequest(msg.into()))
    }
}

/// A named thing that does not exist (an agent).
#[derive(Debug)]
pub(crate) struct NotFound(pub String);
impl warp::reject::Reject for NotFound {}

/// The database failed; the details are logged, not shown.
#[derive(Debug)]
pub(crate) struct StoreFailed;
impl warp::reject::Reject for StoreFailed {}

/// An approval written in chunks failed part-way; the details are logged, not shown.
#[derive(Debug)]
pub(crate) struct ApprovalStopped;
impl warp::reject::Reject for ApprovalStopped {}

/// Turns a store error into a rejection: input the store refused is a 400 with its reason,
/// anything else a logged 500.
pub(crate) fn store_failed(e: masif_store::StoreError) -> Rejection {
    if let masif_store::StoreError::Invalid(msg) = e {
        return BadRequest::reject(msg);
    }
    tracing::error!(error = %e, "database request failed");
    warp::reject::custom(StoreFailed)
}

#[derive(Serialize)]
struct ErrorPage<'a> {
    title: &'a str,
    user: Option<&'a str>,
    csrf: &'a str,
    active: &'a str,
    status: u16,
    message: &'a str,
}

/// Maps every rejection to a response.
pub(crate) async fn recover(app: Arc<App>, r: Rejection) -> Result<Response, Infallible> {
    if r.find::<Unauthenticated>().is_some() {
        return Ok(crate::auth::redirect("/login"));
    }
    let (status, message): (StatusCode, String) = if r.find::<Forbidden>().is_some() {
        (
            StatusCode::FORBIDDEN,
            "The form was refused: its security token (CSRF) is missing or does not belong to your session. Reload the page and try again.".into(),
        )
    } else if let Some(BadRequest(msg)) = r.find() {
        (StatusCode::BAD_REQUEST, msg.clone())
    } else if let Some(NotFound(msg)) = r.find() {
        (StatusCode::NOT_FOUND, msg.clone())
    } else if r.find::<StoreFailed>().is_some() {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "The database request failed; nothing was changed. The details are in the UI's log."
                .into(),
        )
    } else if r.find::<ApprovalStopped>().is_some() {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "The approval stopped part-way: a database request failed (the details are in the \
             UI's log). What was written before stays in force; approve the same selection \
             again to write the rest."
                .into(),
        )
    } else if r.is_not_found() {
        (StatusCode::NOT_FOUND, "No such page.".into())
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "The form is too large.".into(),
        )
    } else if r.find::<warp::reject::InvalidQuery>().is_some() {
        (StatusCode::BAD_REQUEST, "Invalid query parameters.".into())
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        (StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.".into())
    } else if r.find::<warp::reject::UnsupportedMediaType>().is_some() {
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Forms must be sent as application/x-www-form-urlencoded.".into(),
        )
    } else if r.find::<warp::reject::LengthRequired>().is_some() {
        (StatusCode::LENGTH_REQUIRED, "A form needs a length.".into())
    } else if let Some(e) = r.find::<warp::reject::InvalidHeader>() {
        (
            StatusCode::BAD_REQUEST,
            format!("Invalid header: {}", e.name()),
        )
    } else {
        tracing::warn!(rejection = ?r, "unhandled rejection");
        (StatusCode::BAD_REQUEST, "Bad request.".into())
    };
    let title = status.canonical_reason().unwrap_or("Error");
    let mut resp = app.templates.render(
        "error",
        &ErrorPage {
            title,
            user: None,
            csrf: "",
            active: "",
            status: status.as_u16(),
            message: &message,
        },
    );
    if resp.status() == StatusCode::OK {
        *resp.status_mut() = status;
    }
    Ok(resp)
}
