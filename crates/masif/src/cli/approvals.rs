//! `masif approve`, `masif approvals`, `masif revoke` and `masif audit`: the writes and what
//! records them.

use std::fmt::Write;

use masif_proto::Tag;
use serde_json::{json, Value};

use super::client::{ApiClient, ApiError};
use super::model::{describe, Approval, Approved, AuditEntry, Paged};
use super::text::{clean, page_line, plural, utc, Table};
use super::{get_page, pretty, typed, Outcome, Paging, TaskSpec, EXIT_API};

/// A task to approve, optionally only from one version.
pub(crate) struct Wanted {
    pub(crate) spec: TaskSpec,
    pub(crate) from_version: Option<String>,
}

impl From<TaskSpec> for Wanted {
    /// A `--task`: from any version.
    fn from(spec: TaskSpec) -> Self {
        Self {
            spec,
            from_version: None,
        }
    }
}

/// The body of `POST /api/v1/approvals`.
fn approval_body(tasks: &[Wanted], agents: &[String], tag: Option<&Tag>) -> Value {
    let tasks: Vec<Value> = tasks
        .iter()
        .map(|w| {
            let mut task = json!({
                "package": w.spec.package,
                "action": w.spec.action.as_str(),
                "to_version": w.spec.to_version,
            });
            if let Some(from) = &w.from_version {
                task["from_version"] = json!(from);
            }
            task
        })
        .collect();
    match (tag, agents.is_empty()) {
        (Some(tag), _) => json!({ "tasks": tasks, "tag": tag }),
        (None, true) => json!({ "tasks": tasks }),
        (None, false) => json!({ "tasks": tasks, "agents": agents }),
    }
}

pub(crate) async fn approve(
    client: &ApiClient,
    tasks: &[Wanted],
    agents: &[String],
    tag: Option<&Tag>,
    json: bool,
) -> Result<String, ApiError> {
    let body = approval_body(tasks, agents, tag);
    let value = client.post(&client.url(&["approvals"], &[]), &body).await?;
    if json {
        return Ok(pretty(&value));
    }
    let answer: Approved = typed(client, value)?;
    let mut out = String::new();
    for w in tasks {
        let what = describe(
            w.spec.action.as_str(),
            &w.spec.package,
            w.spec.to_version.as_deref(),
        );
        let from = w
            .from_version
            .as_ref()
            .map_or(String::new(), |v| format!(" from {v}"));
        let _ = writeln!(out, "approved {}{}", clean(&what), clean(&from));
    }
    let whom = match (tag, agents.is_empty()) {
        (Some(tag), _) => format!("the agents tagged {tag}"),
        (None, true) => "every agent".to_owned(),
        (None, false) => agents
            .iter()
            .map(|a| clean(a))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let _ = writeln!(
        out,
        "for {whom}: {} written, {} approved",
        plural(answer.approvals_written, "approval"),
        plural(answer.pending_rows_approved, "pending task")
    );
    Ok(out)
}

pub(crate) async fn list(
    client: &ApiClient,
    paging: &Paging,
    json: bool,
) -> Result<String, ApiError> {
    get_page(
        client,
        &["approvals"],
        Vec::new(),
        paging,
        json,
        render_approvals,
    )
    .await
}

fn render_approvals(page: &Paged<Approval>) -> String {
    let mut table = Table::new(&["ID", "AGENT", "PACKAGE", "ACTION", "FROM", "TO", "BY", "AT"]);
    let any = |v: &Option<String>| v.clone().unwrap_or_else(|| "*".into());
    for a in &page.items {
        table.row([
            a.id.to_string(),
            any(&a.agent),
            any(&a.package),
            any(&a.action),
            any(&a.from_version),
            any(&a.to_version),
            a.approved_by.clone().unwrap_or_else(|| "-".into()),
            a.approved_at.map_or("-".into(), utc),
        ]);
    }
    let mut out = match table.is_empty() {
        true => "no approvals\n".to_owned(),
        false => table.render(),
    };
    out.push_str(&page_line(page.total, page.page, page.per_page, "approval"));
    out
}

/// Revokes each id in turn; one that fails is reported and the others still revoked (exit 1).
pub(crate) async fn revoke(client: &ApiClient, ids: &[u64], json: bool) -> Outcome {
    let mut outcome = Outcome::ok(String::new());
    let mut answers = Vec::new();
    for id in ids {
        match client
            .delete(&client.url(&["approvals", &id.to_string()], &[]))
            .await
        {
            Ok(value) => {
                if !json {
                    let _ = writeln!(outcome.stdout, "revoked approval {id}");
                }
                answers.push(value);
            }
            Err(e) => {
                outcome.code = EXIT_API;
                let _ = writeln!(outcome.stderr, "masif: revoking approval {id}: {e}");
            }
        }
    }
    if json {
        outcome.stdout = pretty(&Value::Array(answers));
    }
    outcome
}

pub(crate) async fn audit(
    client: &ApiClient,
    paging: &Paging,
    json: bool,
) -> Result<String, ApiError> {
    get_page(client, &["audit"], Vec::new(), paging, json, render_audit).await
}

fn render_audit(page: &Paged<AuditEntry>) -> String {
    let mut table = Table::new(&["ID", "AT", "USER", "ACTION", "DETAIL"]);
    for e in &page.items {
        table.row([
            e.id.to_string(),
            utc(e.at),
            e.user.clone(),
            e.action.clone(),
            e.detail.clone(),
        ]);
    }
    let mut out = match table.is_empty() {
        true => "no audit entries\n".to_owned(),
        false => table.render(),
    };
    out.push_str(&page_line(page.total, page.page, page.per_page, "entry"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use masif_proto::Action;

    #[test]
    fn the_body_carries_versions_and_agents_only_when_given() {
        let tasks = [
            Wanted {
                spec: "update:zeta=2.0".parse().unwrap(),
                from_version: Some("1.0".into()),
            },
            Wanted {
                spec: TaskSpec {
                    action: Action::Remove,
                    package: "telnet".into(),
                    to_version: None,
                },
                from_version: None,
            },
        ];
        assert_eq!(
            approval_body(&tasks, &[], None),
            json!({"tasks": [
                {"package": "zeta", "action": "update", "to_version": "2.0", "from_version": "1.0"},
                {"package": "telnet", "action": "remove", "to_version": null}
            ]})
        );
        assert_eq!(
            approval_body(&tasks[1..], &["web-1".into()], None)["agents"],
            json!(["web-1"])
        );
        let web = Tag::new("web").unwrap();
        assert_eq!(
            approval_body(&tasks[1..], &[], Some(&web))["tag"],
            json!("web")
        );
    }
}
