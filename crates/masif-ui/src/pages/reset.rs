//! Reset: delete every task (and optionally every package and agent) after showing the
//! counts and asking for confirmation.

use std::sync::Arc;

use masif_store::TableCounts;
use serde::Serialize;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::reject::{store_failed, BadRequest};
use super::{with_app, Chrome};
use crate::auth::{user, User};
use crate::form::{self, field, Form};
use crate::App;

#[derive(Serialize)]
struct ResetView<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    counts: TableCounts,
    /// What a reset just deleted, if one was made.
    deleted: Option<TableCounts>,
}

pub(crate) fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let show = warp::path!("reset")
        .and(warp::get())
        .and(user(app.clone()))
        .and(with_app(app.clone()))
        .and_then(|user: User, app: Arc<App>| async move { page(&user, &app, None).await });
    let reset = warp::path!("reset")
        .and(warp::post())
        .and(user(app.clone()))
        .and(form::body())
        .and(with_app(app))
        .and_then(reset);
    show.or(reset).unify()
}

async fn page(user: &User, app: &App, deleted: Option<TableCounts>) -> Result<Response, Rejection> {
    let counts = app.store.counts().await.map_err(store_failed)?;
    Ok(app.templates.render(
        "reset",
        &ResetView {
            chrome: Chrome::new(user, "reset", "Reset"),
            counts,
            deleted,
        },
    ))
}

async fn reset(user: User, form: Form, app: Arc<App>) -> Result<Response, Rejection> {
    app.auth.check_csrf(&user, &form)?;
    if field(&form, "confirm") != Some("yes") {
        return Err(BadRequest::reject(
            "nothing was deleted: tick the confirmation box to reset",
        ));
    }
    let everything = field(&form, "packages_and_agents") == Some("yes");
    let deleted = app
        .store
        .reset(everything, &user.name)
        .await
        .map_err(store_failed)?;
    tracing::warn!(user = %user.name, ?deleted, everything, "reset");
    page(&user, &app, Some(deleted)).await
}
