//! What `dpkg --audit` says of dpkg's database, and the pure rules of what the loop does with
//! it. A finding (a package half-installed or half-configured, typically because dpkg was
//! killed) is handed to the master as a failed run once per distinct finding; the agent never
//! repairs it on its own (`dpkg --configure -a` would configure whatever is pending, approved
//! or not). Findings while another process holds dpkg's lock may be that process's work in
//! progress and are not reported.

use masif_proto::{PackageName, TaskSet};

/// The warning dpkg prints first when another process holds its lock.
const LOCKED_WARNING: &str = "Another process has locked the database";

/// What one `dpkg --audit` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audit {
    /// Nothing unfinished.
    Clean,
    /// Another process holds dpkg's lock: what dpkg reports may be its work in progress.
    Busy,
    /// Packages left in an unfinished state.
    Findings(Findings),
}

/// dpkg's report of unfinished packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Findings {
    /// dpkg's text, trailing blank lines removed.
    pub text: String,
    /// The packages it names, in its order.
    pub packages: Vec<PackageName>,
}

impl Audit {
    /// Reads the standard output of `dpkg --audit`: empty means clean; each package dpkg
    /// names is on a line of its own starting with a blank, the name first.
    pub fn parse(stdout: &str) -> Self {
        if stdout.contains(LOCKED_WARNING) {
            return Audit::Busy;
        }
        let text = stdout.trim_end();
        if text.trim().is_empty() {
            return Audit::Clean;
        }
        let packages = text
            .lines()
            .filter(|line| line.starts_with(' '))
            .filter_map(|line| line.split_whitespace().next())
            .filter_map(|name| PackageName::new(name).ok())
            .collect();
        Audit::Findings(Findings {
            text: text.to_owned(),
            packages,
        })
    }
}

/// What an audit means to the loop, given the finding it knows already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum News {
    /// A finding not reported before: report it.
    Report(Findings),
    /// The known finding is gone: forget it (a recurrence is reported again).
    Cleared,
    /// Nothing new.
    Nothing,
}

/// Compares `audit` with the finding `known` (the text of the last one seen).
pub(crate) fn news(known: Option<&str>, audit: &Audit) -> News {
    match audit {
        Audit::Busy => News::Nothing,
        Audit::Clean if known.is_some() => News::Cleared,
        Audit::Clean => News::Nothing,
        Audit::Findings(f) if known == Some(f.text.as_str()) => News::Nothing,
        Audit::Findings(f) => News::Report(f.clone()),
    }
}

/// The package and tasks a run reporting `findings` names: the tasks of `plan` (apt's full
/// plan) that touch a package dpkg names, under the first such package. `None` if apt plans
/// nothing for them (a run needs at least one task).
pub(crate) fn run_of(findings: &Findings, plan: &TaskSet) -> Option<(PackageName, TaskSet)> {
    let tasks: TaskSet = plan
        .iter()
        .filter(|t| findings.packages.contains(t.package()))
        .cloned()
        .collect();
    let package = findings
        .packages
        .iter()
        .find(|p| tasks.iter().any(|t| t.package() == *p))?;
    Some((package.clone(), tasks))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As dpkg 1.21 prints it after being killed in sloth's postinst.
    const HALF_CONFIGURED: &str =
        "\nThe following packages are only half configured, probably due to problems\n\
        configuring them the first time.  The configuration should be retried using\n\
        dpkg --configure <package> or the configure menu option in dselect:\n \
        sloth                fake package sloth 2.0 for apt sandboxes\n\n";

    fn set(lines: &[&str]) -> TaskSet {
        lines
            .iter()
            .map(|l| crate::apt::parse_line(1, l).unwrap().task)
            .collect()
    }

    fn findings(text: &str) -> Findings {
        match Audit::parse(text) {
            Audit::Findings(f) => f,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dpkgs_report_is_read() {
        assert_eq!(Audit::parse(""), Audit::Clean);
        assert_eq!(Audit::parse("\n \n"), Audit::Clean);
        let f = findings(HALF_CONFIGURED);
        assert_eq!(f.packages, [PackageName::new("sloth").unwrap()]);
        assert!(f.text.ends_with("for apt sandboxes"), "{:?}", f.text);
        let locked = format!(
            "Another process has locked the database for writing, and might currently be\n\
             modifying it, some of the following problems might just be due to that.\n{HALF_CONFIGURED}"
        );
        assert_eq!(Audit::parse(&locked), Audit::Busy);
    }

    #[test]
    fn a_finding_is_reported_once_and_again_after_it_cleared() {
        let audit = Audit::parse(HALF_CONFIGURED);
        let News::Report(f) = news(None, &audit) else {
            panic!("a new finding is reported");
        };
        assert_eq!(news(Some(&f.text), &audit), News::Nothing);
        // Another process's dpkg at work: neither reported nor forgotten.
        assert_eq!(news(Some(&f.text), &Audit::Busy), News::Nothing);
        assert_eq!(news(None, &Audit::Busy), News::Nothing);
        // A different finding is news.
        let other = Audit::parse(&HALF_CONFIGURED.replace("sloth ", "snail "));
        assert!(matches!(news(Some(&f.text), &other), News::Report(_)));
        assert_eq!(news(Some(&f.text), &Audit::Clean), News::Cleared);
        assert_eq!(news(None, &Audit::Clean), News::Nothing);
    }

    #[test]
    fn the_run_names_the_planned_tasks_of_the_packages_dpkg_names() {
        let plan = set(&[
            "Inst alpha [1.0] (2.0 S)",
            "Conf alpha (2.0 S)",
            "Conf sloth (2.0 S)",
        ]);
        let (package, tasks) = run_of(&findings(HALF_CONFIGURED), &plan).unwrap();
        assert_eq!(package.as_str(), "sloth");
        assert_eq!(tasks, set(&["Conf sloth (2.0 S)"]));
        let unplanned = set(&["Inst alpha [1.0] (2.0 S)"]);
        assert_eq!(run_of(&findings(HALF_CONFIGURED), &unplanned), None);
    }
}
