//! Back-end neutral audit text: the checked user name and the descriptions written into the
//! audit log by both back ends.

use masif_proto::{Action, AgentName, PackageName, Version};

use crate::{Approval, ApprovalOutcome, ApprovalTask, Result, StoreError, TaskKey};

/// Longest audit detail stored (characters); longer descriptions are cut and marked.
pub(crate) const MAX_DETAIL_CHARS: usize = 4000;

/// `action package [to-version]`.
fn describe_key(key: &TaskKey) -> String {
    match &key.to_version {
        Some(to) => format!("{} {} {to}", key.action, key.package),
        None => format!("{} {}", key.action, key.package),
    }
}

/// [`describe_key`], with ` from VERSION` when the approval names one.
pub(crate) fn describe_task(task: &ApprovalTask) -> String {
    match &task.from_version {
        Some(from) => format!("{} from {from}", describe_key(&task.key)),
        None => describe_key(&task.key),
    }
}

/// `action package from -> to for agent`, `*` for a wildcard column.
pub(crate) fn describe_approval(a: &Approval) -> String {
    let any = |v: Option<&str>| v.unwrap_or("*").to_owned();
    format!(
        "{} {} {} -> {} for {}",
        any(a.action.map(Action::as_str)),
        any(a.package.as_ref().map(PackageName::as_str)),
        any(a.from_version.as_ref().map(Version::as_str)),
        any(a.to_version.as_ref().map(Version::as_str)),
        a.agent.as_ref().map_or("all agents", AgentName::as_str),
    )
}

/// The audit detail of an approval of the keys `described` for `target`, or `None` when it
/// changed nothing (and is not audited).
pub(crate) fn describe_approve(
    described: &[String],
    target: &str,
    outcome: &ApprovalOutcome,
) -> Option<String> {
    (outcome.approvals_written > 0 || outcome.pending_rows_approved > 0).then(|| {
        format!(
            "{} for {target}: {} approval rows written, {} pending rows approved",
            describe_list(described, "task"),
            outcome.approvals_written,
            outcome.pending_rows_approved
        )
    })
}

/// How an approval for a tag names its agents: `tag web (3 agents)`.
pub(crate) fn tag_label(tag: &masif_proto::Tag, agents: usize) -> String {
    let s = if agents == 1 { "" } else { "s" };
    format!("tag {tag} ({agents} agent{s})")
}

/// `a, b, c` — or the first 20 and "and N more NOUNs".
pub(crate) fn describe_list(items: &[impl AsRef<str>], noun: &str) -> String {
    const SHOWN: usize = 20;
    let mut out: Vec<&str> = items.iter().take(SHOWN).map(AsRef::as_ref).collect();
    let more;
    if items.len() > SHOWN {
        more = format!("and {} more {noun}s", items.len() - SHOWN);
        out.push(&more);
    }
    out.join(", ")
}

/// At most `max` characters of `s`, marked when cut.
pub(crate) fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{} …(cut)", &s[..i]),
        None => s.to_owned(),
    }
}

/// Audited changes need a user name that fits the column and reads back as written.
pub(crate) fn check_user(user: &str) -> Result<()> {
    if user.is_empty() || user.chars().count() > masif_proto::MAX_FIELD_CHARS {
        return Err(StoreError::Invalid(format!(
            "user name must be 1 to {} characters",
            masif_proto::MAX_FIELD_CHARS
        )));
    }
    if user.chars().any(char::is_control) {
        return Err(StoreError::Invalid(
            "user name contains a control character".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_descriptions_are_cut() {
        let items: Vec<String> = (0..25).map(|i| format!("a{i}")).collect();
        let d = describe_list(&items, "agent");
        assert!(d.starts_with("a0, a1,"), "{d}");
        assert!(d.ends_with("a19, and 5 more agents"), "{d}");
        assert_eq!(describe_list(&["x"], "agent"), "x");
        assert_eq!(cut("äöü", 2), "äö …(cut)");
        assert_eq!(cut("äöü", 3), "äöü");
    }

    #[test]
    fn user_names_are_checked() {
        assert!(check_user("alice").is_ok());
        assert!(check_user("").is_err());
        assert!(check_user("a\nb").is_err());
        assert!(check_user(&"x".repeat(192)).is_err());
    }
}
