//! The pages of the UI and how they are put together: one module per area, each returning its
//! routes; shared page chrome, filters and pagination.

pub(crate) mod agent;
pub(crate) mod agents;
pub(crate) mod approvals;
pub(crate) mod approving;
pub(crate) mod facts;
pub(crate) mod pending;
pub(crate) mod reject;
pub(crate) mod reset;
pub(crate) mod rollouts;
pub(crate) mod status;
pub(crate) mod tags;
pub(crate) mod windows;

use std::sync::Arc;

use masif_store::Page;
use serde::Serialize;
use warp::{Filter, Rejection};

use crate::auth::User;
use crate::render::query_string;
use crate::App;
use reject::BadRequest;

/// What every page's layout needs.
#[derive(Serialize)]
pub(crate) struct Chrome<'a> {
    pub title: String,
    pub user: Option<&'a str>,
    pub csrf: &'a str,
    /// Which navigation entry is current.
    pub active: &'static str,
}

impl<'a> Chrome<'a> {
    pub(crate) fn new(user: &'a User, active: &'static str, title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            user: Some(&user.name),
            csrf: &user.csrf,
            active,
        }
    }
}

/// The state every handler gets.
pub(crate) fn with_app(
    app: Arc<App>,
) -> impl Filter<Extract = (Arc<App>,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || app.clone())
}

/// A substring filter from a query: trimmed, empty = none, refused when longer than a name
/// can be or when it holds control characters.
pub(crate) fn name_filter(value: Option<String>, what: &str) -> Result<Option<String>, Rejection> {
    let Some(v) = value else { return Ok(None) };
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if v.chars().count() > masif_proto::MAX_FIELD_CHARS || v.chars().any(char::is_control) {
        return Err(BadRequest::reject(format!(
            "the {what} filter is too long or holds control characters"
        )));
    }
    Ok(Some(v.to_owned()))
}

/// Links to the previous and next page of a listing.
#[derive(Serialize)]
pub(crate) struct Pager {
    /// 1-based number of this page.
    pub number: u64,
    pub pages: u64,
    pub total: u64,
    pub prev: Option<String>,
    pub next: Option<String>,
}

/// Largest page number accepted (keeps offsets sane).
const MAX_PAGE: u64 = 1_000_000;

/// The window of 1-based page `number` (default 1) with `size` rows.
pub(crate) fn window(number: Option<u64>, size: u64) -> Result<(u64, Page), Rejection> {
    let n = number.unwrap_or(1);
    if n == 0 || n > MAX_PAGE {
        return Err(BadRequest::reject(format!("page must be 1 to {MAX_PAGE}")));
    }
    Ok((
        n,
        Page {
            offset: (n - 1) * size,
            limit: size,
        },
    ))
}

impl Pager {
    /// `base` is the page's path, `params` its other query parameters.
    pub(crate) fn new(
        base: &str,
        params: &[(&str, Option<&str>)],
        number: u64,
        size: u64,
        total: u64,
    ) -> Self {
        let pages = total.div_ceil(size).max(1);
        let link = |n: u64| {
            let n = n.to_string();
            let mut all = params.to_vec();
            all.push(("page", Some(n.as_str())));
            format!("{base}{}", query_string(&all))
        };
        Self {
            number,
            pages,
            total,
            prev: (number > 1).then(|| link((number - 1).min(pages))),
            next: (number < pages).then(|| link(number + 1)),
        }
    }
}

/// Every page route, login included. Boxed: the filter's type would otherwise nest too deep
/// for the compiler beside the API's.
pub(crate) fn routes(app: Arc<App>) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    crate::auth::routes(app.clone())
        .or(pending::routes(app.clone()))
        .unify()
        .or(agents::routes(app.clone()))
        .unify()
        .or(approvals::routes(app.clone()))
        .unify()
        .or(approving::routes(app.clone()))
        .unify()
        .or(tags::routes(app.clone()))
        .unify()
        .or(rollouts::routes(app.clone()))
        .unify()
        .or(reset::routes(app))
        .unify()
        .boxed()
}
