//! The approvals in force (who, when) with revocation, and the audit log.

use std::sync::Arc;

use masif_store::{Approval, AuditEntry};
use serde::{Deserialize, Serialize};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::reject::{store_failed, BadRequest};
use super::{window, with_app, Chrome, Pager};
use crate::auth::{redirect, user, User};
use crate::form::{self, field, Form};
use crate::App;

/// Rows per page of both listings.
pub(crate) const PAGE_SIZE: u64 = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Query {
    page: Option<u64>,
    revoked: Option<u64>,
}

#[derive(Serialize)]
struct ApprovalView {
    #[serde(flatten)]
    approval: Approval,
    risk: Option<&'static str>,
}

#[derive(Serialize)]
struct ApprovalsView<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    approvals: Vec<ApprovalView>,
    pager: Pager,
    notice: Option<&'static str>,
}

#[derive(Serialize)]
struct AuditView<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    entries: Vec<AuditEntry>,
    pager: Pager,
}

pub(crate) fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let list = warp::path!("approvals")
        .and(warp::get())
        .and(user(app.clone()))
        .and(warp::query::<Query>())
        .and(with_app(app.clone()))
        .and_then(approvals_page);
    let revoke = warp::path!("revoke")
        .and(warp::post())
        .and(user(app.clone()))
        .and(form::body())
        .and(with_app(app.clone()))
        .and_then(revoke);
    let audit = warp::path!("audit")
        .and(warp::get())
        .and(user(app.clone()))
        .and(warp::query::<Query>())
        .and(with_app(app))
        .and_then(audit_page);
    list.or(revoke).unify().or(audit).unify()
}

async fn approvals_page(user: User, q: Query, app: Arc<App>) -> Result<Response, Rejection> {
    let (number, page) = window(q.page, PAGE_SIZE)?;
    let listing = app.store.approvals(page).await.map_err(store_failed)?;
    let notice = q.revoked.map(|n| {
        if n > 0 {
            "Approval revoked."
        } else {
            "That approval no longer exists."
        }
    });
    Ok(app.templates.render(
        "approvals",
        &ApprovalsView {
            chrome: Chrome::new(&user, "approvals", "Approvals"),
            approvals: listing
                .rows
                .into_iter()
                .map(|a| ApprovalView {
                    risk: a.action.and_then(super::pending::risk),
                    approval: a,
                })
                .collect(),
            pager: Pager::new("/approvals", &[], number, PAGE_SIZE, listing.total),
            notice,
        },
    ))
}

async fn revoke(user: User, form: Form, app: Arc<App>) -> Result<Response, Rejection> {
    app.auth.check_csrf(&user, &form)?;
    let id: u64 = field(&form, "id")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| BadRequest::reject("revoke needs the number of an approval"))?;
    let done = app
        .store
        .revoke(id, &user.name)
        .await
        .map_err(store_failed)?;
    tracing::info!(user = %user.name, id, done, "revoke");
    Ok(redirect(&format!("/approvals?revoked={}", u8::from(done))))
}

async fn audit_page(user: User, q: Query, app: Arc<App>) -> Result<Response, Rejection> {
    let (number, page) = window(q.page, PAGE_SIZE)?;
    let listing = app.store.audit_log(page).await.map_err(store_failed)?;
    Ok(app.templates.render(
        "audit",
        &AuditView {
            chrome: Chrome::new(&user, "audit", "Audit log"),
            entries: listing.rows,
            pager: Pager::new("/audit", &[], number, PAGE_SIZE, listing.total),
        },
    ))
}
