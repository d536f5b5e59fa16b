//! `masif pending`: the pending tasks grouped by package, as the pending page shows them.

use std::fmt::Write;

use masif_proto::{Action, Tag};

use super::client::{ApiClient, ApiError};
use super::model::{Pending, TaskKey};
use super::text::{age, clean, or_dash, page_line, plural, unix_now, utc, Table};
use super::{get_page, Paging};

/// The filters of `GET /api/v1/pending`.
pub(crate) struct Filter {
    pub(crate) package: Option<String>,
    pub(crate) agent: Option<String>,
    pub(crate) action: Option<Action>,
    pub(crate) security: bool,
    pub(crate) tag: Option<Tag>,
}

impl Filter {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(p) = &self.package {
            pairs.push(("package", p.clone()));
        }
        if let Some(a) = &self.agent {
            pairs.push(("agent", a.clone()));
        }
        if let Some(a) = self.action {
            pairs.push(("action", a.as_str().to_owned()));
        }
        if self.security {
            pairs.push(("security", "true".to_owned()));
        }
        if let Some(t) = &self.tag {
            pairs.push(("tag", t.to_string()));
        }
        pairs
    }
}

pub(crate) async fn list(
    client: &ApiClient,
    filter: &Filter,
    paging: &Paging,
    json: bool,
) -> Result<String, ApiError> {
    get_page(
        client,
        &["pending"],
        filter.pairs(),
        paging,
        json,
        |answer| render(answer, unix_now()),
    )
    .await
}

/// The table of `answer` seen at `now`, then paging, the security count and the failing
/// packages.
fn render(answer: &Pending, now: i64) -> String {
    let mut table = Table::new(&[
        "PACKAGE", "ACTION", "VERSION", "AGENTS", "SECURITY", "PENDING", "NEEDS",
    ]);
    for package in &answer.page.items {
        let mut name = match package.held_on {
            0 => package.package.clone(),
            n => format!("{} (held on {n})", package.package),
        };
        for task in &package.tasks {
            let needs: Vec<String> = task.needs.iter().map(TaskKey::describe).collect();
            table.row([
                std::mem::take(&mut name),
                task.action.clone(),
                task.to_version.clone().unwrap_or_else(|| "-".into()),
                task.agents.to_string(),
                if task.security { "yes" } else { "" }.to_owned(),
                task.since
                    .map_or("-".into(), |t| format!("{} ({})", utc(t), age(now, t))),
                needs.join(", "),
            ]);
        }
    }
    let mut out = match table.is_empty() {
        true => "no pending tasks\n".to_owned(),
        false => table.render(),
    };
    out.push_str(&page_line(
        answer.page.total,
        answer.page.page,
        answer.page.per_page,
        "package",
    ));
    let _ = writeln!(
        out,
        "{} on {}",
        plural(answer.security.updates, "security update"),
        plural(answer.security.agents, "agent")
    );
    for failing in &answer.failing {
        let _ = writeln!(
            out,
            "approved but failing: {} on {}, last {}",
            clean(&failing.package),
            plural(failing.agents, "agent"),
            or_dash(failing.last_failed_at.map(utc).as_deref())
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_group_their_tasks_and_hostile_names_are_escaped() {
        let answer: Pending = serde_json::from_value(serde_json::json!({
            "total": 2, "page": 1, "per_page": 50,
            "security": {"updates": 1, "agents": 3},
            "failing": [{"package": "perl", "agents": 2, "last_failed_at": 86_400}],
            "items": [
                {"package": "zeta", "agents": 3, "held_on": 1, "tasks": [
                    {"action": "update", "to_version": "2.0", "agents": 3, "security": true,
                     "since": 0, "needs": [{"package": "libz", "action": "install", "to_version": "1"}]},
                    {"action": "configure", "to_version": "2.0", "agents": 3, "security": false,
                     "since": null, "needs": []}]},
                {"package": "evil\u{1b}]0;pwned\u{7}", "agents": 1, "held_on": 0, "tasks": [
                    {"action": "remove", "to_version": null, "agents": 1, "security": false,
                     "since": 3600, "needs": []}]}
            ]
        }))
        .unwrap();
        let out = render(&answer, 2 * 86_400);
        assert!(!out.contains('\x1b') && !out.contains('\x07'), "{out}");
        assert_eq!(
            out,
            "\
PACKAGE                  ACTION     VERSION  AGENTS  SECURITY  PENDING                    NEEDS
zeta (held on 1)         update     2.0      3       yes       1970-01-01 00:00 (2d 0h)   install libz 1
                         configure  2.0      3                 -
evil\\u{1b}]0;pwned\\u{7}  remove     -        1                 1970-01-01 01:00 (1d 23h)
page 1 of 1 (2 packages)
1 security update on 3 agents
approved but failing: perl on 2 agents, last 1970-01-02 00:00
"
        );
    }
}
