//! The JSON API under `/api/v1/` (see `docs/api.md`, generated from `openapi.json`): routes,
//! the paged answer shape, and the one recovery that keeps every error under `/api/` JSON.

mod agents;
mod approvals;
mod audit;
mod auth;
mod body;
mod error;
mod openapi;
mod pending;
mod query;
mod rollouts;
mod tags;
pub(crate) mod tokens;

pub use openapi::OPENAPI_DOCUMENT;

use std::sync::Arc;

use serde::Serialize;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::pages::with_app;
use crate::App;
use auth::{caller, Access};
use query::{params, Paging};

/// Every route of the API as `(method, path template)`: what the OpenAPI document must list
/// (a test checks both ways).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/pending"),
    ("get", "/api/v1/approvals"),
    ("post", "/api/v1/approvals"),
    ("delete", "/api/v1/approvals/{id}"),
    ("get", "/api/v1/agents"),
    ("get", "/api/v1/agents/{name}"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/tags"),
    ("put", "/api/v1/tags/{tag}"),
    ("get", "/api/v1/rollouts"),
    ("post", "/api/v1/rollouts"),
    ("get", "/api/v1/rollouts/{id}"),
    ("post", "/api/v1/rollouts/{id}/promote"),
];

/// The UI's clock for the store's "now" (windows, leases, roll-outs): system time, the same
/// clock the pages' ages and offline states read.
pub(crate) fn now() -> i64 {
    crate::render::unix_now()
}

/// A page of a listing: `{"total", "page", "per_page", "items"}`.
#[derive(Serialize)]
pub(crate) struct Paged<T> {
    total: u64,
    page: u64,
    per_page: u64,
    items: Vec<T>,
}

impl<T> Paged<T> {
    pub(crate) fn new(paging: Paging, total: u64, items: Vec<T>) -> Self {
        Self {
            total,
            page: paging.page,
            per_page: paging.per_page,
            items,
        }
    }
}

/// A path segment, percent-decoded (`o%27brien` is `o'brien`); undecodable is no route.
fn segment() -> impl Filter<Extract = (String,), Error = Rejection> + Clone {
    warp::path::param::<String>().and_then(|raw: String| async move {
        percent_encoding::percent_decode_str(&raw)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| warp::reject::not_found())
    })
}

/// Everything under `/api/`: answered here, errors included, never by the pages.
pub(crate) fn routes(app: Arc<App>) -> warp::filters::BoxedFilter<(Response,)> {
    let read = || caller(app.clone(), Access::Read);
    let write = || caller(app.clone(), Access::Write);
    let v1 = warp::path("v1");
    let openapi = v1
        .and(warp::path!("openapi.json"))
        .and(warp::get())
        .map(openapi::document);
    let pending = v1
        .and(warp::path!("pending"))
        .and(warp::get())
        .and(read())
        .and(params(pending::PARAMS))
        .and(with_app(app.clone()))
        .and_then(pending::list);
    let approvals = v1
        .and(warp::path!("approvals"))
        .and(warp::get())
        .and(read())
        .and(params(approvals::LIST_PARAMS))
        .and(with_app(app.clone()))
        .and_then(approvals::list);
    let approve = v1
        .and(warp::path!("approvals"))
        .and(warp::post())
        .and(write())
        .and(params(&[]))
        .and(body::json_body())
        .and(with_app(app.clone()))
        .and_then(|caller, _, body, app| approvals::approve(caller, body, app));
    let revoke = v1
        .and(warp::path("approvals"))
        .and(segment())
        .and(warp::path::end())
        .and(warp::delete())
        .and(write())
        .and(params(&[]))
        .and(with_app(app.clone()))
        .and_then(|id, caller, _, app| approvals::revoke(id, caller, app));
    let agents = v1
        .and(warp::path!("agents"))
        .and(warp::get())
        .and(read())
        .and(params(agents::LIST_PARAMS))
        .and(with_app(app.clone()))
        .and_then(agents::list);
    let agent = v1
        .and(warp::path("agents"))
        .and(segment())
        .and(warp::path::end())
        .and(warp::get())
        .and(read())
        .and(params(agents::DETAIL_PARAMS))
        .and(with_app(app.clone()))
        .and_then(agents::detail);
    let audit = v1
        .and(warp::path!("audit"))
        .and(warp::get())
        .and(read())
        .and(params(audit::PARAMS))
        .and(with_app(app.clone()))
        .and_then(audit::list);
    let tags = v1
        .and(warp::path!("tags"))
        .and(warp::get())
        .and(read())
        .and(params(tags::LIST_PARAMS))
        .and(with_app(app.clone()))
        .and_then(tags::list);
    let set_tag = v1
        .and(warp::path("tags"))
        .and(segment())
        .and(warp::path::end())
        .and(warp::put())
        .and(write())
        .and(params(&[]))
        .and(body::json_body())
        .and(with_app(app.clone()))
        .and_then(|tag, caller, _, body, app| tags::set(tag, caller, body, app));
    let rollouts = v1
        .and(warp::path!("rollouts"))
        .and(warp::get())
        .and(read())
        .and(params(rollouts::LIST_PARAMS))
        .and(with_app(app.clone()))
        .and_then(rollouts::list);
    let create_rollout = v1
        .and(warp::path!("rollouts"))
        .and(warp::post())
        .and(write())
        .and(params(&[]))
        .and(body::json_body())
        .and(with_app(app.clone()))
        .and_then(|caller, _, body, app| rollouts::create(caller, body, app));
    let rollout = v1
        .and(warp::path("rollouts"))
        .and(segment())
        .and(warp::path::end())
        .and(warp::get())
        .and(read())
        .and(params(&[]))
        .and(with_app(app.clone()))
        .and_then(|id, caller, _, app| rollouts::show(id, caller, app));
    let promote = v1
        .and(warp::path("rollouts"))
        .and(segment())
        .and(warp::path("promote"))
        .and(warp::path::end())
        .and(warp::post())
        .and(write())
        .and(params(&[]))
        .and(body::json_body())
        .and(with_app(app))
        .and_then(|id, caller, _, body, app| rollouts::promote(id, caller, body, app));
    // Two boxed halves: one chain of every route nests the filter's type too deep for the
    // compiler.
    let fleet = openapi
        .or(pending)
        .unify()
        .or(approvals)
        .unify()
        .or(approve)
        .unify()
        .or(revoke)
        .unify()
        .or(agents)
        .unify()
        .or(agent)
        .unify()
        .or(audit)
        .unify()
        .boxed();
    let rollout_control = tags
        .or(set_tag)
        .unify()
        .or(rollouts)
        .unify()
        .or(create_rollout)
        .unify()
        .or(rollout)
        .unify()
        .or(promote)
        .unify()
        .boxed();
    let api = fleet
        .or(rollout_control)
        .unify()
        .recover(error::recover)
        .unify();
    warp::path::full()
        .and(warp::path("api"))
        .and(api)
        .map(|path: warp::path::FullPath, mut r: Response| {
            if r.status() == warp::http::StatusCode::METHOD_NOT_ALLOWED {
                if let Ok(allow) =
                    warp::http::HeaderValue::from_str(&allowed_methods(path.as_str()))
                {
                    r.headers_mut().insert(warp::http::header::ALLOW, allow);
                }
            }
            r
        })
        .boxed()
}

/// The methods [`ROUTES`] serve at `path` (for a 405's `Allow`), e.g. `GET, POST`.
fn allowed_methods(path: &str) -> String {
    let matches = |template: &str| {
        let (mut t, mut p) = (template.split('/'), path.split('/'));
        loop {
            match (t.next(), p.next()) {
                (None, None) => return true,
                (Some(ts), Some(ps)) if ts == ps || (ts.starts_with('{') && !ps.is_empty()) => {}
                _ => return false,
            }
        }
    };
    let methods: Vec<String> = ROUTES
        .iter()
        .filter(|(_, template)| matches(template))
        .map(|(method, _)| method.to_ascii_uppercase())
        .collect();
    methods.join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn allowed_methods_follow_the_route_table() {
        use super::allowed_methods;
        assert_eq!(allowed_methods("/api/v1/approvals"), "GET, POST");
        assert_eq!(allowed_methods("/api/v1/approvals/7"), "DELETE");
        assert_eq!(allowed_methods("/api/v1/agents/web-1"), "GET");
        assert_eq!(allowed_methods("/api/v1/agents/"), "");
        assert_eq!(allowed_methods("/api/v1/tags/web"), "PUT");
        assert_eq!(allowed_methods("/api/v1/rollouts"), "GET, POST");
        assert_eq!(allowed_methods("/api/v1/rollouts/3/promote"), "POST");
    }
}
