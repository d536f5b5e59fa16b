//! The host-facts scene of the UI's tests: two agents speaking protocol v2 report openssl's
//! security update, which needs libssl4 installed, through the store's `report_with_facts` (the
//! path the master takes); one needs a reboot and has hostile OS and kernel texts, the other
//! holds perl. What was approved is read back through the store's `approvals`.

use std::collections::{BTreeMap, BTreeSet};

use masif_proto::facts::{FactText, Facts, Origin, TaskFacts};
use masif_proto::{Action, AgentName, PackageName, Task, TaskSet};
use masif_store::Page;

use super::{install, task, update, Fixture};

/// Texts of the rebooting agent's facts that must render as text.
pub const HOSTILE_OS: &str = "<script>alert(1)</script>";
pub const HOSTILE_KERNEL: &str = "6.1.0-13-amd64 \"quoted\" 'single' <b>";

pub const SECURITY_ORIGIN: &str = "Debian-Security:12/stable-security";
pub const STABLE_ORIGIN: &str = "Debian:12/stable";

/// The security update of the scene.
pub fn openssl() -> Task {
    update("openssl", "3.0.1", "3.0.2")
}

/// What openssl's plan pulls in: installing libssl4 1.0, and so configuring it.
pub fn libssl4() -> Task {
    install("libssl4", "1.0")
}

fn libssl4_configure() -> Task {
    task("libssl4", Action::Configure, None, Some("1.0"))
}

fn text(s: &str) -> Option<FactText> {
    Some(FactText::new(s).unwrap())
}

fn packages(names: &[&str]) -> BTreeSet<PackageName> {
    names
        .iter()
        .map(|n| PackageName::new(*n).unwrap())
        .collect()
}

/// The facts of openssl's update and of libssl4's install.
fn task_facts() -> BTreeMap<Task, TaskFacts> {
    BTreeMap::from([
        (
            openssl(),
            TaskFacts {
                origin: Some(Origin::new(SECURITY_ORIGIN).unwrap()),
                needs: [libssl4(), libssl4_configure()].into_iter().collect(),
            },
        ),
        (
            libssl4(),
            TaskFacts {
                origin: Some(Origin::new(STABLE_ORIGIN).unwrap()),
                needs: TaskSet::default(),
            },
        ),
    ])
}

impl Fixture {
    /// Reports `tasks` with `facts` as agent `name`, as the master does with a v2 report.
    pub async fn report_with_facts(&self, name: &str, tasks: Vec<Task>, facts: &Facts) {
        let set: TaskSet = tasks.into_iter().collect();
        self.store
            .report_with_facts(&AgentName::new(name).unwrap(), &set, Some(facts))
            .await
            .expect("report with facts");
    }

    /// `sec-1` (reboot required by linux-image-amd64, holds grub-pc, hostile OS and kernel)
    /// and `sec-2` (holds perl, awaits perl too) both await openssl's security update and
    /// libssl4's install.
    pub async fn seed_facts(&self) {
        let sec1 = Facts {
            os: text(HOSTILE_OS),
            kernel: text(HOSTILE_KERNEL),
            agent_version: text("2.0.0"),
            reboot_required: true,
            reboot_packages: packages(&["linux-image-amd64"]),
            held: packages(&["grub-pc"]),
            tasks: task_facts(),
            tags: Default::default(),
        };
        self.report_with_facts("sec-1", vec![openssl(), libssl4()], &sec1)
            .await;
        let sec2 = Facts {
            os: text("Debian GNU/Linux 12 (bookworm)"),
            kernel: text("6.1.0-13-amd64"),
            agent_version: text("2.0.0"),
            held: packages(&["perl"]),
            tasks: task_facts(),
            ..Facts::default()
        };
        self.report_with_facts(
            "sec-2",
            vec![openssl(), libssl4(), update("perl", "5.1", "5.2")],
            &sec2,
        )
        .await;
    }

    /// The standard scene's agents again, now speaking v2 with tags: web-1 `canary` and
    /// `web`, web-2 `web`, db-1 `db` (the hostile agent carries none).
    pub async fn seed_tags(&self) {
        let tagged = |tags: &[&str]| Facts {
            tags: tags
                .iter()
                .map(|t| masif_proto::Tag::new(*t).unwrap())
                .collect(),
            ..Facts::default()
        };
        let web = || {
            vec![
                update("perl", "5.1", "5.2"),
                update("libc6", "2.36-1", "2.36-2"),
            ]
        };
        self.report_with_facts("web-1", web(), &tagged(&["canary", "web"]))
            .await;
        self.report_with_facts("web-2", web(), &tagged(&["web"]))
            .await;
        let db = vec![
            update("perl", "5.0", "5.3"),
            install("newpkg", "1.0"),
            task("oldpkg", Action::Remove, Some("0.9"), None),
        ];
        self.report_with_facts("db-1", db, &tagged(&["db"])).await;
    }

    /// The approvals in force as `agent (or *) action package to_version`, sorted.
    pub async fn approved(&self) -> Vec<String> {
        let listing = self
            .store
            .approvals(Page {
                offset: 0,
                limit: 1000,
            })
            .await
            .expect("approvals");
        let mut all: Vec<String> = listing
            .rows
            .iter()
            .map(|a| {
                let opt = |v: Option<String>| v.unwrap_or_else(|| "*".into());
                format!(
                    "{} {} {} {}",
                    opt(a.agent.as_ref().map(ToString::to_string)),
                    opt(a.action.map(|x| x.as_str().to_owned())),
                    opt(a.package.as_ref().map(ToString::to_string)),
                    opt(a.to_version.as_ref().map(ToString::to_string)),
                )
            })
            .collect();
        all.sort();
        all
    }
}
