//! How the agents' host facts read on the pages: what a task needs (without the configure
//! steps approval adds by itself), the security count line, the held note, and one agent's
//! host facts. Every text here comes from agents and is escaped by the templates.

use masif_proto::Action;
use masif_store::{HostFacts, SecuritySummary, TaskKey};
use serde::Serialize;

use super::status::{Now, When};

/// `1 agent`, `2 agents`.
fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("{n} {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// What a row needs, each as `install gamma 1.0` (`remove gamma` without a version). A
/// `configure P V` is left out when `install P V` or `update P V` is listed: approving those
/// approves their configure step too.
pub(crate) fn needs_text(needs: &[TaskKey]) -> Vec<String> {
    let implied = |k: &TaskKey| {
        k.action == Action::Configure
            && needs.iter().any(|other| {
                matches!(other.action, Action::Install | Action::Update)
                    && other.package == k.package
                    && other.to_version == k.to_version
            })
    };
    needs
        .iter()
        .filter(|k| !implied(k))
        .map(|k| match &k.to_version {
            Some(v) => format!("{} {} {v}", k.action.as_str(), k.package),
            None => format!("{} {}", k.action.as_str(), k.package),
        })
        .collect()
}

/// "12 security updates awaiting approval on 340 agents", or `None` when there is none.
pub(crate) fn security_line(s: SecuritySummary) -> Option<String> {
    (s.updates > 0).then(|| {
        format!(
            "{} awaiting approval on {}",
            count(s.updates, "security update"),
            count(s.agents, "agent")
        )
    })
}

/// "held on 3 agents — never runs there", or `None` when no agent holds the package.
pub(crate) fn held_note(held_on: u64) -> Option<String> {
    (held_on > 0).then(|| format!("held on {} — never runs there", count(held_on, "agent")))
}

/// An agent's host facts on the agent page.
#[derive(Debug, Serialize)]
pub(crate) struct HostFactsView {
    pub os: Option<String>,
    pub kernel: Option<String>,
    pub agent_version: Option<String>,
    pub reported: When,
    pub reboot_required: bool,
    pub reboot_packages: Vec<String>,
    pub held: Vec<String>,
}

impl HostFactsView {
    pub(crate) fn new(f: HostFacts, now: Now) -> Self {
        let names = |v: Vec<masif_proto::PackageName>| v.iter().map(ToString::to_string).collect();
        Self {
            os: f.os,
            kernel: f.kernel,
            agent_version: f.agent_version,
            reported: now.when(f.reported_at),
            reboot_required: f.reboot_required,
            reboot_packages: names(f.reboot_packages),
            held: names(f.held),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use masif_proto::{PackageName, Version};

    fn key(package: &str, action: Action, to: Option<&str>) -> TaskKey {
        TaskKey {
            package: PackageName::new(package).unwrap(),
            action,
            to_version: to.map(|v| Version::new(v).unwrap()),
        }
    }

    #[test]
    fn needs_leave_out_the_configure_steps_approval_adds() {
        let needs = [
            key("gamma", Action::Install, Some("1.0")),
            key("gamma", Action::Configure, Some("1.0")),
            key("delta", Action::Configure, Some("2.0")),
            key("delta", Action::Update, Some("3.0")),
            key("eps", Action::Remove, None),
        ];
        assert_eq!(
            needs_text(&needs),
            [
                "install gamma 1.0",
                "configure delta 2.0",
                "update delta 3.0",
                "remove eps"
            ]
        );
        assert!(needs_text(&[]).is_empty());
    }

    #[test]
    fn counts_read_as_sentences() {
        assert_eq!(security_line(SecuritySummary::default()), None);
        assert_eq!(
            security_line(SecuritySummary {
                updates: 12,
                agents: 340
            })
            .unwrap(),
            "12 security updates awaiting approval on 340 agents"
        );
        assert_eq!(
            security_line(SecuritySummary {
                updates: 1,
                agents: 1
            })
            .unwrap(),
            "1 security update awaiting approval on 1 agent"
        );
        assert_eq!(held_note(0), None);
        assert_eq!(held_note(1).unwrap(), "held on 1 agent — never runs there");
        assert_eq!(held_note(3).unwrap(), "held on 3 agents — never runs there");
    }
}
