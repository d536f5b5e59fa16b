//! The agents list: counts of agents, offline ones, failing ones and those needing a reboot at
//! the top; per agent its last contact (marked offline after `offline_after`), reboot mark,
//! newest run, failing packages and pending counts; filters by name and by state (offline,
//! failing, reboot).

use std::collections::HashMap;
use std::sync::Arc;

use masif_proto::{AgentName, Tag};
use masif_store::{AgentCounts, AgentFilter, AgentWindow};
use serde::{Deserialize, Serialize};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::reject::{store_failed, BadRequest};
use super::status::{AgentStatus, Now};
use super::{agent, name_filter, window, with_app, Chrome, Pager};
use crate::auth::{user, User};
use crate::App;

/// Agents per page.
pub(crate) const PAGE_SIZE: u64 = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    name: Option<String>,
    state: Option<String>,
    tag: Option<String>,
    page: Option<u64>,
}

/// Which agents the `state` filter keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Not seen for `offline_after` seconds.
    Offline,
    /// With a package whose latest run failed.
    Failing,
    /// Whose host needs a reboot (its latest facts say so).
    Reboot,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Offline => "offline",
            State::Failing => "failing",
            State::Reboot => "reboot",
        }
    }

    /// The `state` query parameter: empty or `all` is no filter.
    fn parse(value: Option<&str>) -> Result<Option<Self>, Rejection> {
        match value.map(str::trim) {
            None | Some("" | "all") => Ok(None),
            Some("offline") => Ok(Some(State::Offline)),
            Some("failing") => Ok(Some(State::Failing)),
            Some("reboot") => Ok(Some(State::Reboot)),
            Some(_) => Err(BadRequest::reject(
                "the state filter must be offline, failing or reboot",
            )),
        }
    }
}

#[derive(Serialize)]
struct AgentsView<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    name: String,
    /// `""`, `offline`, `failing` or `reboot`.
    state: &'static str,
    tag: String,
    counts: AgentCounts,
    /// `offline_after` as a phrase: `15 min`.
    offline_after: String,
    agents: Vec<AgentStatus>,
    pager: Pager,
}

pub(crate) fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let list = warp::path!("agents")
        .and(warp::get())
        .and(user(app.clone()))
        .and(warp::query::<ListQuery>())
        .and(with_app(app.clone()))
        .and_then(agents_page);
    list.or(agent::routes(app)).unify()
}

async fn agents_page(user: User, q: ListQuery, app: Arc<App>) -> Result<Response, Rejection> {
    let name = name_filter(q.name, "agent")?;
    let state = State::parse(q.state.as_deref())?;
    let tag = tag_filter(q.tag)?;
    let (number, page) = window(q.page, PAGE_SIZE)?;
    let now = Now::with_offline_after(app.offline_after);
    let filter = AgentFilter {
        name: name.clone(),
        not_seen_since: (state == Some(State::Offline)).then_some(now.offline_before),
        failing: state == Some(State::Failing),
        reboot_required: state == Some(State::Reboot),
        tag: tag.clone(),
    };
    let (listing, counts) = tokio::try_join!(
        app.store.agents(&filter, page),
        app.store.agent_counts(now.offline_before),
    )
    .map_err(store_failed)?;
    let names: Vec<AgentName> = listing.rows.iter().map(|a| a.name.clone()).collect();
    let windows: HashMap<AgentName, AgentWindow> = app
        .store
        .agent_windows(&names, now.now)
        .await
        .map_err(store_failed)?
        .into_iter()
        .collect();
    let state = state.map_or("", State::as_str);
    let tag = tag.as_ref().map(Tag::as_str);
    Ok(app.templates.render(
        "agents",
        &AgentsView {
            chrome: Chrome::new(&user, "agents", "Agents"),
            name: name.clone().unwrap_or_default(),
            state,
            tag: tag.unwrap_or_default().to_owned(),
            counts,
            offline_after: offline_after_phrase(app.offline_after),
            agents: listing
                .rows
                .into_iter()
                .map(|a| {
                    let w = windows.get(&a.name);
                    AgentStatus::new(a, now).with_window(w)
                })
                .collect(),
            pager: Pager::new(
                "/agents",
                &[
                    ("name", name.as_deref()),
                    ("state", Some(state)),
                    ("tag", tag),
                ],
                number,
                PAGE_SIZE,
                listing.total,
            ),
        },
    ))
}

/// The `tag` query parameter: empty is no filter, anything else must be a tag.
pub(crate) fn tag_filter(value: Option<String>) -> Result<Option<Tag>, Rejection> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => Tag::new(t)
            .map(Some)
            .map_err(|e| BadRequest::reject(format!("the tag filter {e}"))),
    }
}

/// `offline_after` seconds as the help text says it, exactly: `15 min`, `1 h`, `90 s`.
pub(crate) fn offline_after_phrase(secs: i64) -> String {
    match secs {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_filter_is_offline_failing_reboot_or_nothing() {
        assert_eq!(State::parse(None).unwrap(), None);
        assert_eq!(State::parse(Some(" ")).unwrap(), None);
        assert_eq!(State::parse(Some("all")).unwrap(), None);
        assert_eq!(State::parse(Some("offline")).unwrap(), Some(State::Offline));
        assert_eq!(State::parse(Some("failing")).unwrap(), Some(State::Failing));
        assert_eq!(State::parse(Some("reboot")).unwrap(), Some(State::Reboot));
        assert!(State::parse(Some("Offline")).is_err());
        assert!(State::parse(Some("offline,failing")).is_err());
    }

    #[test]
    fn offline_after_reads_as_a_duration() {
        assert_eq!(offline_after_phrase(900), "15 min");
        assert_eq!(offline_after_phrase(3600), "1 h");
        assert_eq!(offline_after_phrase(90), "90 s");
        assert_eq!(offline_after_phrase(5400), "90 min");
    }
}
