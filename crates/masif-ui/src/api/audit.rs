//! `GET /api/v1/audit`: the audit log, newest first.

use std::sync::Arc;

use masif_store::AuditEntry;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Rejection;

use super::auth::Caller;
use super::error::{json, store_failed};
use super::query::Params;
use super::Paged;
use crate::App;

pub(crate) const PARAMS: &[&str] = &["page", "per_page"];

pub(crate) async fn list(_: Caller, p: Params, app: Arc<App>) -> Result<Response, Rejection> {
    let paging = p.paging()?;
    let listing = app
        .store
        .audit_log(paging.window)
        .await
        .map_err(store_failed)?;
    Ok(json(
        StatusCode::OK,
        &Paged::<AuditEntry>::new(paging, listing.total, listing.rows),
    ))
}
