//! The front page (the approved packages whose latest run failed somewhere, the security count,
//! then pending updates grouped by package → action → target version with their security badge,
//! held note and needs, filtered and paginated) and approving a selection, with what it needs
//! when the closure box is ticked: for every agent, for agents picked first or for the agents
//! carrying a tag; or starting a roll-out with the selection.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use masif_proto::{AgentName, Tag};
use masif_store::{
    AgentFilter, AgentSummary, ApprovalOutcome, ApprovalScope, Page, PendingFilter,
    PendingOverview, TaskKey,
};
use serde::{Deserialize, Serialize};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::agents::tag_filter;
use super::facts::{held_note, needs_text, security_line};
use super::reject::{store_failed, BadRequest};
use super::status::{Now, When};
use super::{approving, rollouts};
use super::{name_filter, window, with_app, Chrome, Pager};
use crate::auth::{user, User};
use crate::form::{self, encode_key, field, fields, Form};
use crate::render::query_string;
use crate::App;

/// Packages per page.
pub(crate) const PAGE_SIZE: u64 = 50;

/// Agents listed to pick from (by name) after "select specific agents first".
const SELECT_SHOWN: u64 = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Query {
    package: Option<String>,
    agent: Option<String>,
    /// `1`: security updates only.
    security: Option<u8>,
    tag: Option<String>,
    page: Option<u64>,
    approved: Option<u64>,
    written: Option<u64>,
    /// How many tasks the approval added because the selected rows need them.
    needed: Option<u64>,
    /// The tag whose agents the approval was for.
    approved_tag: Option<String>,
}

/// One checkbox row.
#[derive(Serialize)]
pub(crate) struct RowView {
    pub id: String,
    pub key: String,
    pub package: String,
    pub action: &'static str,
    pub to_version: Option<String>,
    pub agents: u64,
    /// `install` or `removal` for actions that add or take away packages.
    pub risk: Option<&'static str>,
    /// Some agent reported the target version from a security archive.
    pub security: bool,
    /// What the row's plan pulls in, as `install gamma 1.0`.
    pub needs: Vec<String>,
}

impl RowView {
    pub(crate) fn new(id: String, key: &TaskKey, agents: u64) -> Self {
        Self {
            id,
            key: encode_key(key),
            package: key.package.to_string(),
            action: key.action.as_str(),
            to_version: key.to_version.as_ref().map(|v| v.to_string()),
            agents,
            risk: risk(key.action),
            security: false,
            needs: Vec::new(),
        }
    }

    /// The row with its facts: the security badge and what it needs (see [`needs_text`]).
    pub(crate) fn with_facts(self, security: bool, needs: &[TaskKey]) -> Self {
        Self {
            security,
            needs: needs_text(needs),
            ..self
        }
    }
}

/// How an action is flagged: installs and removals are what admins fear most.
pub(crate) fn risk(action: masif_proto::Action) -> Option<&'static str> {
    use masif_proto::Action::*;
    match action {
        Install => Some("install"),
        Remove | Purge => Some("removal"),
        Update | Configure => None,
    }
}

#[derive(Serialize)]
struct GroupView {
    package: String,
    agents: u64,
    /// Agents on which the package's latest run failed, if any.
    failed_on: Option<u64>,
    /// "held on N agents — never runs there", if some agent holds the package.
    held: Option<String>,
    rows: Vec<RowView>,
}

/// A package whose latest run failed on some agents.
#[derive(Serialize)]
struct FailingView {
    package: String,
    agents: u64,
    last: When,
}

#[derive(Serialize)]
struct PendingView<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    package: String,
    agent: String,
    tag: String,
    security_only: bool,
    /// "12 security updates awaiting approval on 340 agents"; `None` when there is none.
    security_line: Option<String>,
    failing: Vec<FailingView>,
    groups: Vec<GroupView>,
    pager: Pager,
    notice: Option<String>,
}

#[derive(Serialize)]
struct SelectAgentsView<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    keys: Vec<RowView>,
    agents: &'a [AgentSummary],
    /// How many agents await the rows, and whether more than shown do.
    total: u64,
    shown: usize,
    more: bool,
    /// Whether the closure box is ticked (as it was on the page the rows were ticked on).
    closure: bool,
}

pub(crate) fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let page = warp::path::end()
        .and(warp::get())
        .and(user(app.clone()))
        .and(warp::query::<Query>())
        .and(with_app(app.clone()))
        .and_then(pending_page);
    let approve = warp::path!("approve")
        .and(warp::post())
        .and(user(app.clone()))
        .and(form::body())
        .and(with_app(app))
        .and_then(approve);
    page.or(approve).unify()
}

async fn pending_page(user: User, q: Query, app: Arc<App>) -> Result<Response, Rejection> {
    let filter = PendingFilter {
        package: name_filter(q.package, "package")?,
        agent: name_filter(q.agent, "agent")?,
        action: None,
        security_only: match q.security {
            None | Some(0) => false,
            Some(1) => true,
            Some(_) => return Err(BadRequest::reject("the security filter must be 0 or 1")),
        },
        tag: tag_filter(q.tag)?,
    };
    let (number, page) = window(q.page, PAGE_SIZE)?;
    let (overview, failing): (PendingOverview, _) = tokio::try_join!(
        app.store.pending_overview(&filter, page),
        app.store.failing_packages(),
    )
    .map_err(store_failed)?;
    let failed_on: HashMap<&str, u64> = failing
        .iter()
        .map(|f| (f.package.as_str(), f.agents))
        .collect();
    let groups = overview
        .groups
        .into_iter()
        .enumerate()
        .map(|(g, group)| GroupView {
            rows: group
                .rows
                .iter()
                .enumerate()
                .map(|(r, row)| {
                    let key = TaskKey {
                        package: group.package.clone(),
                        action: row.action,
                        to_version: row.to_version.clone(),
                    };
                    RowView::new(format!("k{g}-{r}"), &key, row.agents)
                        .with_facts(row.security, &row.needs)
                })
                .collect(),
            failed_on: failed_on.get(group.package.as_str()).copied(),
            held: held_note(group.held_on),
            package: group.package.to_string(),
            agents: group.agents,
        })
        .collect();
    let now = Now::with_offline_after(app.offline_after);
    let failing = failing
        .iter()
        .map(|f| FailingView {
            package: f.package.to_string(),
            agents: f.agents,
            last: now.when(f.last_failed_at),
        })
        .collect();
    let params = [
        ("package", filter.package.as_deref()),
        ("agent", filter.agent.as_deref()),
        ("security", filter.security_only.then_some("1")),
        ("tag", filter.tag.as_ref().map(Tag::as_str)),
    ];
    let for_tag = match q.approved_tag {
        Some(t) => {
            let tag = Tag::new(t).map_err(|e| BadRequest::reject(format!("approved_tag: {e}")))?;
            format!(" for the agents tagged {tag}")
        }
        None => String::new(),
    };
    let notice = q.approved.map(|n| {
        format!(
            "Approved {n} pending task(s){for_tag}{}; {} approval row(s) written.",
            needed_phrase(q.needed),
            q.written.unwrap_or(0)
        )
    });
    Ok(app.templates.render(
        "pending",
        &PendingView {
            chrome: Chrome::new(&user, "pending", "Pending updates"),
            package: filter.package.clone().unwrap_or_default(),
            agent: filter.agent.clone().unwrap_or_default(),
            tag: filter
                .tag
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            security_only: filter.security_only,
            security_line: security_line(overview.security),
            failing,
            groups,
            pager: Pager::new("/", &params, number, PAGE_SIZE, overview.total_packages),
            notice,
        },
    ))
}

/// ` (with 2 task(s) the selected rows need)` when the closure added tasks, else nothing.
pub(crate) fn needed_phrase(needed: Option<u64>) -> String {
    match needed {
        Some(n) if n > 0 => format!(" (with {n} task(s) the selected rows need)"),
        _ => String::new(),
    }
}

/// `POST /approve`: `do=approve` (every agent), `do=select` (show the agents awaiting the
/// ticked rows), `do=approve-agents` (the ticked `agent`s only), `do=approve-tag` (the agents
/// carrying `approve_tag`) or `do=rollout` (the form starting a roll-out with the rows). With a `closure` field (the
/// box, ticked by default), what the ticked rows need on the agents in scope is approved too.
async fn approve(user: User, form: Form, app: Arc<App>) -> Result<Response, Rejection> {
    app.auth.check_csrf(&user, &form)?;
    let mut keys = form::keys(&form)?;
    let closure = field(&form, "closure").is_some();
    let scope = match field(&form, "do") {
        Some("approve") => ApprovalScope::AllAgents,
        Some("select") => return select_agents(&user, &keys, closure, &app).await,
        Some("approve-agents") => {
            let agents = fields(&form, "agent")?
                .into_iter()
                .map(|a| AgentName::new(a).map_err(|e| BadRequest::reject(e.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            if agents.is_empty() {
                return Err(BadRequest::reject(
                    "no agent selected: tick at least one agent",
                ));
            }
            ApprovalScope::Agents(agents)
        }
        Some("approve-tag") => ApprovalScope::Tag(approval_tag(&form, &app).await?),
        Some("rollout") => return Ok(rollouts::start_form(&user, &app, &keys)),
        _ => return Err(BadRequest::reject("unknown form action")),
    };
    // The closure: what the ticked rows need on the agents in scope. The notice counts them
    // as the rows list them (without the configure steps approval adds anyway).
    let needed = if closure {
        let ticked: BTreeSet<TaskKey> = keys.iter().cloned().collect();
        let added: Vec<TaskKey> = app
            .store
            .needs_of(&keys, &scope)
            .await
            .map_err(store_failed)?
            .into_iter()
            .filter(|k| !ticked.contains(k))
            .collect();
        keys.extend(added.iter().cloned());
        needs_text(&added).len()
    } else {
        0
    };
    // Approving an install or update also approves its configure step (`Admin::approve`).
    let return_to_agent = match (&scope, field(&form, "return")) {
        (ApprovalScope::Agents(a), Some("agent")) if a.len() == 1 => Some(a[0].clone()),
        _ => None,
    };
    let tag = match &scope {
        ApprovalScope::Tag(t) => Some(t.clone()),
        _ => None,
    };
    approving::approve(&app, &user, keys, scope, move |outcome| {
        shown_at(outcome, needed, return_to_agent, tag)
    })
    .await
}

/// Where an approval's result is shown: the agent's page for an approval from it, else the
/// pending page, with the counts.
fn shown_at(
    outcome: &ApprovalOutcome,
    needed: usize,
    agent: Option<AgentName>,
    tag: Option<Tag>,
) -> String {
    let approved = outcome.pending_rows_approved.to_string();
    let written = outcome.approvals_written.to_string();
    let needed = needed.to_string();
    let counts = [
        ("approved", Some(approved.as_str())),
        ("written", Some(written.as_str())),
        ("needed", (needed != "0").then_some(needed.as_str())),
    ];
    match agent {
        Some(agent) => {
            let mut params = vec![("name", Some(agent.as_str()))];
            params.extend(counts);
            format!("/agent{}", query_string(&params))
        }
        None => {
            let mut params = counts.to_vec();
            params.push(("approved_tag", tag.as_ref().map(Tag::as_str)));
            format!("/{}", query_string(&params))
        }
    }
}

/// The `approve_tag` field: a tag some agent carries (the store checks again as it approves).
async fn approval_tag(form: &Form, app: &App) -> Result<Tag, Rejection> {
    let value = field(form, "approve_tag").unwrap_or("").trim();
    if value.is_empty() {
        return Err(BadRequest::reject(
            "no tag entered: enter the tag whose agents to approve for",
        ));
    }
    let tag = Tag::new(value).map_err(|e| BadRequest::reject(format!("tag: {e}")))?;
    let carrying = app
        .store
        .agents(
            &AgentFilter {
                tag: Some(tag.clone()),
                ..AgentFilter::default()
            },
            Page {
                offset: 0,
                limit: 1,
            },
        )
        .await
        .map_err(store_failed)?;
    if carrying.total == 0 {
        return Err(BadRequest::reject(format!(
            "No agent carries the tag {tag}: nothing was approved. Agents get their tags \
             from their configuration (tags in agent.yml)."
        )));
    }
    Ok(tag)
}

async fn select_agents(
    user: &User,
    keys: &[TaskKey],
    closure: bool,
    app: &App,
) -> Result<Response, Rejection> {
    let agents = app
        .store
        .agents_awaiting(
            keys,
            Page {
                offset: 0,
                limit: SELECT_SHOWN,
            },
        )
        .await
        .map_err(store_failed)?;
    let keys = keys
        .iter()
        .enumerate()
        .map(|(i, k)| RowView::new(format!("s{i}"), k, 0))
        .collect();
    Ok(app.templates.render(
        "select_agents",
        &SelectAgentsView {
            chrome: Chrome::new(user, "pending", "Select agents"),
            keys,
            agents: &agents.rows,
            total: agents.total,
            shown: agents.rows.len(),
            more: agents.total > agents.rows.len() as u64,
            closure,
        },
    ))
}
