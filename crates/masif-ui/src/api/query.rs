//! Query parameters of the API: only the listed names, each at most once, values checked
//! with errors naming the parameter; `page` and `per_page` for every listing.

use masif_store::Page;
use warp::{Filter, Rejection};

use super::error::ApiError;
use crate::pages::window;

/// Rows per page unless `per_page` says otherwise.
pub(crate) const DEFAULT_PER_PAGE: u64 = 50;

/// Most rows per page.
pub(crate) const MAX_PER_PAGE: u64 = 500;

/// The query parameters of a request, checked against a route's names.
#[derive(Debug)]
pub(crate) struct Params(Vec<(String, String)>);

/// The query of a route that takes the parameters `allowed`.
pub(crate) fn params(
    allowed: &'static [&'static str],
) -> impl Filter<Extract = (Params,), Error = Rejection> + Clone {
    warp::query::<Vec<(String, String)>>().and_then(
        move |pairs: Vec<(String, String)>| async move {
            for (i, (name, _)) in pairs.iter().enumerate() {
                if !allowed.contains(&name.as_str()) {
                    let shown: String = name.chars().take(40).collect();
                    return Err(ApiError::bad(format!("unknown query parameter {shown:?}")));
                }
                if pairs[..i].iter().any(|(n, _)| n == name) {
                    return Err(ApiError::bad(format!(
                        "query parameter {name} given more than once"
                    )));
                }
            }
            Ok::<_, Rejection>(Params(pairs))
        },
    )
}

impl Params {
    pub(crate) fn text(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    /// `true` or `false`.
    pub(crate) fn flag(&self, name: &str) -> Result<bool, Rejection> {
        match self.text(name).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(ApiError::bad(format!("{name} must be true or false"))),
        }
    }

    /// A substring filter of names: [`name_filter`](crate::pages::name_filter) (trimmed, none
    /// when blank), and no control character anywhere, blanks included (the pages' filter
    /// trims a leading form feed or NEL away; the API's schema refuses them).
    pub(crate) fn name_filter(&self, name: &str) -> Result<Option<String>, Rejection> {
        let value = self.text(name);
        if value
            .as_deref()
            .is_some_and(|v| v.chars().any(char::is_control))
        {
            return Err(ApiError::bad(format!(
                "the {name} filter is too long or holds control characters"
            )));
        }
        crate::pages::name_filter(value, name)
    }

    /// A tag (`tag=web`), checked as agents send them.
    pub(crate) fn tag(&self, name: &str) -> Result<Option<masif_proto::Tag>, Rejection> {
        self.text(name)
            .map(|v| masif_proto::Tag::new(v).map_err(|e| ApiError::bad(format!("{name}: {e}"))))
            .transpose()
    }

    fn number(&self, name: &str) -> Result<Option<u64>, Rejection> {
        self.text(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| ApiError::bad(format!("{name} must be a whole number")))
            })
            .transpose()
    }

    /// `page` (1-based) and `per_page` (1 to [`MAX_PER_PAGE`]).
    pub(crate) fn paging(&self) -> Result<Paging, Rejection> {
        let per_page = self.number("per_page")?.unwrap_or(DEFAULT_PER_PAGE);
        if !(1..=MAX_PER_PAGE).contains(&per_page) {
            return Err(ApiError::bad(format!(
                "per_page must be 1 to {MAX_PER_PAGE}"
            )));
        }
        let (page, window) = window(self.number("page")?, per_page)?;
        Ok(Paging {
            page,
            per_page,
            window,
        })
    }
}

/// A listing's page as asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Paging {
    pub page: u64,
    pub per_page: u64,
    pub window: Page,
}
