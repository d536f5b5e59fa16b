//! The per-agent page: last contact (offline or not), newest run and failing packages, its
//! tags and next maintenance window, the
//! host facts (OS, kernel, agent version, reboot, held packages), the pending tasks with their
//! origin, security badge and needs and approve-for-this-agent, and the run history, newest
//! first, with each run's output as escaped text.

use std::sync::Arc;

use masif_proto::facts::TaskFacts;
use masif_proto::AgentName;
use masif_store::{RunRecord, TaskKey};
use serde::{Deserialize, Serialize};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::agents::offline_after_phrase;
use super::facts::HostFactsView;
use super::pending::{needed_phrase, RowView};
use super::reject::{store_failed, BadRequest, NotFound};
use super::status::{AgentStatus, Now, OutcomeView, When};
use super::{window, with_app, Chrome, Pager};
use crate::auth::{user, User};
use crate::render::format_duration_ms;
use crate::App;

/// Runs per page of the history (each may carry 4 KiB of output).
pub(crate) const RUNS_PAGE_SIZE: u64 = 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentQuery {
    name: String,
    approved: Option<u64>,
    written: Option<u64>,
    /// How many tasks the approval added because the selected rows need them.
    needed: Option<u64>,
    /// Page of the run history.
    page: Option<u64>,
}

#[derive(Serialize)]
struct TaskView {
    row: RowView,
    from_version: Option<String>,
    origin: Option<String>,
}

/// One run of the history.
#[derive(Serialize)]
struct RunView {
    started: When,
    package: String,
    #[serde(flatten)]
    outcome: OutcomeView,
    /// `None`: apt-get did not run or was killed by a signal.
    exit_code: Option<i32>,
    duration: String,
    /// The tasks of the run's plan, e.g. `update perl 5.1 -> 5.2`.
    tasks: Vec<String>,
    /// apt/dpkg's last lines: untrusted text, rendered escaped in a `<pre>`.
    output: String,
}

impl RunView {
    fn new(r: RunRecord, now: Now) -> Self {
        Self {
            started: now.when(r.started_at),
            package: r.package.to_string(),
            outcome: r.outcome.into(),
            exit_code: r.exit_code,
            duration: format_duration_ms(r.duration_ms),
            tasks: r.tasks.iter().map(ToString::to_string).collect(),
            output: r.output.as_str().to_owned(),
        }
    }
}

#[derive(Serialize)]
struct AgentView<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    agent: AgentStatus,
    offline_after: String,
    /// `None`: the agent sent no facts (it speaks protocol v1).
    facts: Option<HostFactsView>,
    tasks: Vec<TaskView>,
    notice: Option<String>,
    runs: Vec<RunView>,
    pager: Pager,
}

pub(crate) fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("agent")
        .and(warp::get())
        .and(user(app.clone()))
        .and(warp::query::<AgentQuery>())
        .and(with_app(app))
        .and_then(agent_page)
}

async fn agent_page(user: User, q: AgentQuery, app: Arc<App>) -> Result<Response, Rejection> {
    let name = AgentName::new(q.name).map_err(|e| BadRequest::reject(e.to_string()))?;
    let (number, page) = window(q.page, RUNS_PAGE_SIZE)?;
    let now = Now::with_offline_after(app.offline_after);
    let names = [name.clone()];
    let (detail, runs, windows) = tokio::try_join!(
        app.store.agent_detail(&name),
        app.store.agent_runs(&name, page),
        app.store.agent_windows(&names, now.now),
    )
    .map_err(store_failed)?;
    let Some(detail) = detail else {
        return Err(warp::reject::custom(NotFound(format!(
            "There is no agent named {name}."
        ))));
    };
    let tasks = detail
        .pending
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let facts = detail.task_facts.get(t);
            let needs: Vec<TaskKey> = facts
                .map(|f| f.needs.iter().map(TaskKey::from).collect())
                .unwrap_or_default();
            TaskView {
                row: RowView::new(format!("t{i}"), &TaskKey::from(t), 1)
                    .with_facts(facts.is_some_and(TaskFacts::is_security), &needs),
                from_version: t.from_version().map(|v| v.to_string()),
                origin: facts
                    .and_then(|f| f.origin.as_ref())
                    .map(|o| o.as_str().to_owned()),
            }
        })
        .collect();
    let notice = q.approved.map(|n| {
        format!(
            "Approved {n} pending task(s) for this agent{}; {} approval row(s) written.",
            needed_phrase(q.needed),
            q.written.unwrap_or(0)
        )
    });
    let mut pager = Pager::new(
        "/agent",
        &[("name", Some(name.as_str()))],
        number,
        RUNS_PAGE_SIZE,
        runs.total,
    );
    // Paging the history lands on the history.
    for link in [&mut pager.prev, &mut pager.next].into_iter().flatten() {
        link.push_str("#runs");
    }
    Ok(app.templates.render(
        "agent",
        &AgentView {
            chrome: Chrome::new(&user, "agents", format!("Agent {name}")),
            agent: AgentStatus::new(detail.agent, now).with_window(windows.first().map(|(_, w)| w)),
            offline_after: offline_after_phrase(app.offline_after),
            facts: detail.facts.map(|f| HostFactsView::new(f, now)),
            tasks,
            notice,
            pager,
            runs: runs
                .rows
                .into_iter()
                .map(|r| RunView::new(r, now))
                .collect(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use masif_proto::v2::{Outcome, RunId, RunOutput};
    use masif_proto::{Action, PackageName, Task, Version};
    use masif_store::AgentSummary;

    fn render(view: &AgentView<'_>) -> String {
        crate::render::Templates::new()
            .unwrap()
            .render_text("agent", view)
    }

    #[test]
    fn runs_render_with_escaped_output() {
        let now = Now {
            now: 1_000_000,
            offline_before: 1_000_000 - 900,
        };
        let task = Task::new(
            PackageName::new("zeta").unwrap(),
            Action::Update,
            Some(Version::new("1").unwrap()),
            Some(Version::new("2").unwrap()),
        )
        .unwrap();
        let run = RunRecord {
            run_id: RunId::new("r1").unwrap(),
            package: PackageName::new("zeta").unwrap(),
            started_at: 1_000_000 - 120,
            duration_ms: 1500,
            exit_code: Some(0),
            outcome: Outcome::Failed,
            tasks: [task].into_iter().collect(),
            output: RunOutput::new("<script>alert(1)</script> & \"q\" 'a'").unwrap(),
        };
        let agent = AgentSummary {
            reboot_required: false,
            name: AgentName::new("web-1").unwrap(),
            ctime: 0,
            mtime: 0,
            last_seen: Some(1_000_000 - 3600),
            pending_tasks: 0,
            pending_packages: 0,
            last_run: Some((Outcome::Failed, 1_000_000 - 120)),
            failing_packages: 1,
            tags: Vec::new(),
        };
        let html = render(&AgentView {
            chrome: Chrome {
                title: "Agent web-1".into(),
                user: Some("admin"),
                csrf: "t",
                active: "agents",
            },
            agent: AgentStatus::new(agent, now),
            offline_after: "15 min".into(),
            facts: None,
            tasks: vec![],
            notice: None,
            runs: vec![RunView::new(run, now)],
            pager: Pager::new("/agent", &[("name", Some("web-1"))], 1, 20, 1),
        });
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains(
                "<pre class=\"output\">&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;q&quot; &#x27;a&#x27;</pre>"
            ),
            "{html}"
        );
        assert!(html.contains("badge-offline"), "{html}");
        assert!(html.contains("1 h ago"), "{html}");
        assert!(html.contains("update zeta 1 -&gt; 2"), "{html}");
        assert!(
            html.contains("<td class=\"count\">0</td>"),
            "exit code 0 shown: {html}"
        );
        assert!(html.contains("1.5 s"), "{html}");
        assert!(
            html.contains("<details open>"),
            "a failed run's output is open: {html}"
        );
    }
}
