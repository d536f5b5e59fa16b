//! The safety rule, as pure functions: which approved packages may be upgraded, which one
//! goes first, and what a run left unfinished. No I/O, so every case is a unit test.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use masif_proto::{Action, PackageName, TaskSet, Version};

/// Packages worth a single-package plan: those with an approved update in the full plan, and
/// those with nothing but an approved configure (left half-configured by a failed run).
/// Installs and removals only ever happen as part of another package's plan.
pub(crate) fn candidates(full: &TaskSet, approved: &TaskSet) -> BTreeSet<PackageName> {
    let changing: BTreeSet<&PackageName> = full
        .iter()
        .filter(|t| matches!(t.action(), Action::Install | Action::Update))
        .map(|t| t.package())
        .collect();
    full.iter()
        .filter(|t| approved.contains(t))
        .filter(|t| match t.action() {
            Action::Update => true,
            Action::Configure => !changing.contains(t.package()),
            Action::Install | Action::Remove | Action::Purge => false,
        })
        .map(|t| t.package().clone())
        .collect()
}

/// The first package of `plan` that dpkg holds: a plan changing one never runs, whatever is
/// approved (apt would refuse it; the agent does not even try).
pub(crate) fn held_in<'a>(
    plan: &'a TaskSet,
    held: &BTreeSet<PackageName>,
) -> Option<&'a PackageName> {
    plan.iter().map(|t| t.package()).find(|p| held.contains(*p))
}

/// Of the single-package plans, the one to run now: only plans whose EVERY task is approved
/// (a dependency may pull in an install or removal nobody approved), smallest first, then by
/// name so the choice is stable. Empty plans are never chosen.
pub(crate) fn pick<'a>(
    plans: &'a BTreeMap<PackageName, TaskSet>,
    approved: &TaskSet,
) -> Option<(&'a PackageName, &'a TaskSet)> {
    plans
        .iter()
        .filter(|(_, plan)| !plan.is_empty() && plan.is_subset(approved))
        .min_by_key(|(name, plan)| (plan.len(), *name))
}

/// The packages whose tasks of `executed` are still in the plan made afterwards: those did
/// not get done, whatever apt's exit code said.
pub(crate) fn unfinished(executed: &TaskSet, after: &TaskSet) -> BTreeSet<PackageName> {
    executed
        .intersection(after)
        .map(|t| t.package().clone())
        .collect()
}

/// What a plan installs: each package with the version it ends at (`None`: removed). Two
/// plans with the same targets are the same attempt, even if one of them is the retry of a
/// configure that failed half-way.
pub(crate) fn targets(plan: &TaskSet) -> BTreeSet<(&PackageName, Option<&Version>)> {
    plan.iter()
        .map(|t| match t.action() {
            Action::Remove | Action::Purge => (t.package(), None),
            Action::Install | Action::Update | Action::Configure => (t.package(), t.to_version()),
        })
        .collect()
}

/// One package's failed runs in a row.
#[derive(Debug, Clone)]
struct Failure {
    /// When the last one failed.
    at: Instant,
    /// How many runs in a row failed with the same targets.
    count: u32,
    /// The plan of the last one.
    plan: TaskSet,
}

/// Whether a run's output shows that a disk was full (ENOSPC as printed in the C locale
/// every run uses, or apt's own free-space check): not the package's fault, so such a failure
/// is retried after the retry interval without counting towards giving the package up.
pub(crate) fn out_of_space(output: &str) -> bool {
    output.contains("No space left on device")
        || output.contains("You don't have enough free space")
}

/// Packages whose last run failed, and when, so they are retried only after the retry
/// interval; after `max` failures in a row of the same plan (0: no limit) a package is given
/// up until its plan changes or its approval is withdrawn and given again.
#[derive(Debug, Clone, Default)]
pub(crate) struct Failures {
    at: BTreeMap<PackageName, Failure>,
    max: u32,
}

impl Failures {
    pub(crate) fn new(max: u32) -> Self {
        Self {
            at: BTreeMap::new(),
            max,
        }
    }

    /// Records that a run of `plan` left `package` unfinished at `now`; `true` if that made
    /// `max` failures in a row (the package is given up from now on).
    pub(crate) fn record(&mut self, package: PackageName, plan: &TaskSet, now: Instant) -> bool {
        let count = match self.at.get(&package) {
            Some(f) if targets(&f.plan) == targets(plan) => f.count.saturating_add(1),
            _ => 1,
        };
        self.at.insert(
            package,
            Failure {
                at: now,
                count,
                plan: plan.clone(),
            },
        );
        self.max > 0 && count == self.max
    }

    /// Records that planning the upgrade of `package` failed at `now`: it waits out the retry
    /// interval, but this is no run and does not count towards `max`.
    pub(crate) fn record_planning(&mut self, package: PackageName, now: Instant) {
        self.at
            .entry(package)
            .and_modify(|f| f.at = now)
            .or_insert_with(|| Failure {
                at: now,
                count: 0,
                plan: TaskSet::new(),
            });
    }

    pub(crate) fn clear(&mut self, package: &PackageName) {
        self.at.remove(package);
    }

    pub(crate) fn clear_all(&mut self) {
        self.at.clear();
    }

    /// May `package` be tried at `now` (its retry interval is over, or it never failed)?
    pub(crate) fn allowed(&self, package: &PackageName, now: Instant, retry: Duration) -> bool {
        self.at
            .get(package)
            .is_none_or(|f| now.saturating_duration_since(f.at) >= retry)
    }

    /// Has `package` failed `max` times in a row with a plan of the same targets as `plan`?
    pub(crate) fn given_up(&self, package: &PackageName, plan: &TaskSet) -> bool {
        self.at
            .get(package)
            .is_some_and(|f| self.is_given_up(f) && targets(&f.plan) == targets(plan))
    }

    fn is_given_up(&self, f: &Failure) -> bool {
        self.max > 0 && f.count >= self.max
    }

    /// Forgets the failures of packages whose last plan has a task still `needed` that is
    /// no longer `approved`: an approval withdrawn (and perhaps given again) starts afresh.
    pub(crate) fn forget_unapproved(&mut self, needed: &TaskSet, approved: &TaskSet) {
        self.at.retain(|_, f| {
            f.plan
                .iter()
                .all(|t| !needed.contains(t) || approved.contains(t))
        });
    }

    /// When the next failed package (not given up) becomes eligible again, if any.
    pub(crate) fn next_retry(&self, retry: Duration) -> Option<Instant> {
        self.at
            .values()
            .filter(|f| !self.is_given_up(f))
            .map(|f| f.at + retry)
            .min()
    }

    /// Packages whose last run failed, given up or not.
    pub(crate) fn packages(&self) -> impl Iterator<Item = &PackageName> {
        self.at.keys()
    }

    /// Packages given up after `max` failures in a row.
    pub(crate) fn given_up_packages(&self) -> impl Iterator<Item = &PackageName> {
        self.at
            .iter()
            .filter(|(_, f)| self.is_given_up(f))
            .map(|(p, _)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use masif_proto::Task;

    fn t(line: &str) -> Task {
        crate::apt::parse_line(1, line).unwrap().task
    }

    fn set(lines: &[&str]) -> TaskSet {
        lines.iter().map(|l| t(l)).collect()
    }

    fn p(name: &str) -> PackageName {
        PackageName::new(name).unwrap()
    }

    const ALPHA: [&str; 2] = ["Inst alpha [1.0] (2.0 S)", "Conf alpha (2.0 S)"];
    const BETA: [&str; 4] = [
        "Inst gamma (1.0 S)",
        "Inst beta [1.0] (2.0 S)",
        "Conf gamma (1.0 S)",
        "Conf beta (2.0 S)",
    ];
    const DELTA: [&str; 3] = [
        "Remv epsilon [1.0]",
        "Inst delta [1.0] (2.0 S)",
        "Conf delta (2.0 S)",
    ];

    fn plans(list: &[(&str, &[&str])]) -> BTreeMap<PackageName, TaskSet> {
        list.iter().map(|(n, l)| (p(n), set(l))).collect()
    }

    #[test]
    fn only_approved_updates_and_configures_are_candidates() {
        let full = set(&[ALPHA[0], ALPHA[1], BETA[0], BETA[1], DELTA[0]]);
        let approved = set(&[ALPHA[0], BETA[0], DELTA[0]]);
        // gamma's install and epsilon's removal are never upgraded on their own.
        assert_eq!(candidates(&full, &approved), [p("alpha")].into());
        // An approval of something no longer planned does not make a candidate.
        assert!(candidates(&set(&[BETA[1]]), &set(&[ALPHA[0]])).is_empty());
        // A half-configured package left by a failed run.
        let conf = set(&["Conf zeta (2.0 S)"]);
        assert_eq!(candidates(&conf, &conf), [p("zeta")].into());
        // An approved configure of a package being installed or updated is no candidate:
        // it comes with the install or update.
        let full = set(&BETA);
        let approved = set(&[BETA[0], BETA[2], BETA[3]]);
        assert!(candidates(&full, &approved).is_empty());
    }

    #[test]
    fn a_package_waits_for_the_install_its_plan_pulls_in() {
        let plans = plans(&[("beta", &BETA)]);
        let beta_only = set(&[BETA[1], BETA[3]]);
        assert_eq!(pick(&plans, &beta_only), None);
        let with_gamma = set(&BETA);
        assert_eq!(pick(&plans, &with_gamma).map(|(n, _)| n), Some(&p("beta")));
    }

    #[test]
    fn a_package_waits_for_the_removal_its_plan_pulls_in() {
        let plans = plans(&[("delta", &DELTA)]);
        assert_eq!(pick(&plans, &set(&DELTA[1..])), None);
        assert!(pick(&plans, &set(&DELTA)).is_some());
    }

    #[test]
    fn the_smallest_fully_approved_plan_goes_first() {
        let plans = plans(&[("beta", &BETA), ("delta", &DELTA), ("alpha", &ALPHA)]);
        let all: TaskSet = set(&BETA)
            .into_iter()
            .chain(set(&DELTA))
            .chain(set(&ALPHA))
            .collect();
        assert_eq!(pick(&plans, &all).map(|(n, _)| n), Some(&p("alpha")));
        let no_alpha: TaskSet = set(&BETA).into_iter().chain(set(&DELTA)).collect();
        assert_eq!(pick(&plans, &no_alpha).map(|(n, _)| n), Some(&p("delta")));
    }

    #[test]
    fn ties_are_broken_by_name_and_empty_plans_never_run() {
        let plans = plans(&[
            ("zeta", &["Inst zeta [1.0] (2.0 S)"]),
            ("alpha", &["Inst alpha [1.0] (2.0 S)"]),
            ("empty", &[]),
        ]);
        let approved = set(&["Inst zeta [1.0] (2.0 S)", "Inst alpha [1.0] (2.0 S)"]);
        assert_eq!(pick(&plans, &approved).map(|(n, _)| n), Some(&p("alpha")));
        let only_empty = super::tests::plans(&[("empty", &[])]);
        assert_eq!(pick(&only_empty, &approved), None);
    }

    #[test]
    fn an_approval_for_another_version_does_not_count() {
        let plans = plans(&[("alpha", &ALPHA)]);
        let other = Task::new(
            p("alpha"),
            Action::Update,
            Some(Version::new("1.0").unwrap()),
            Some(Version::new("3.0").unwrap()),
        )
        .unwrap();
        let approved: TaskSet = [other, t(ALPHA[1])].into();
        assert_eq!(pick(&plans, &approved), None);
    }

    #[test]
    fn what_is_still_planned_afterwards_is_unfinished() {
        // alpha's run also tried to configure the half-configured zeta, which failed again.
        let executed = set(&[ALPHA[0], ALPHA[1], "Conf zeta (2.0 S)"]);
        let after = set(&["Conf zeta (2.0 S)", BETA[1]]);
        assert_eq!(unfinished(&executed, &after), [p("zeta")].into());
        assert!(unfinished(&executed, &TaskSet::new()).is_empty());
    }

    #[test]
    fn a_full_disk_is_told_from_other_failures() {
        // As dpkg 1.21 and apt 2.6 print them.
        assert!(out_of_space(
            "dpkg: unrecoverable fatal error, aborting:\n unable to fill \
             /var/lib/dpkg/updates/tmp.i with padding: No space left on device\n"
        ));
        assert!(out_of_space(
            "E: You don't have enough free space in /var/cache/apt/archives/.\n"
        ));
        assert!(!out_of_space(
            "E: Sub-process /usr/bin/dpkg returned an error code (1)\n"
        ));
    }

    #[test]
    fn failed_packages_wait_for_the_retry_interval() {
        let mut f = Failures::new(0);
        let now = Instant::now();
        let retry = Duration::from_secs(60);
        assert!(f.allowed(&p("zeta"), now, retry));
        f.record(p("zeta"), &set(&ZETA), now);
        assert!(!f.allowed(&p("zeta"), now + Duration::from_secs(59), retry));
        assert!(f.allowed(&p("zeta"), now + retry, retry));
        assert!(f.allowed(&p("alpha"), now, retry));
        assert_eq!(f.next_retry(retry), Some(now + retry));
        f.clear(&p("zeta"));
        assert_eq!(f.packages().count(), 0);
        assert_eq!(f.next_retry(retry), None);
    }

    const ZETA: [&str; 2] = ["Inst zeta [1.0] (2.0 S)", "Conf zeta (2.0 S)"];

    #[test]
    fn a_package_is_given_up_after_max_failures_of_the_same_plan() {
        let mut f = Failures::new(3);
        let now = Instant::now();
        let retry = Duration::from_secs(60);
        let first = set(&ZETA);
        // After the failed postinst only the configure is left: the same attempt.
        let again = set(&[ZETA[1]]);
        assert!(!f.record(p("zeta"), &first, now));
        assert!(!f.record(p("zeta"), &again, now));
        assert!(!f.given_up(&p("zeta"), &again));
        assert!(
            f.record(p("zeta"), &again, now),
            "the third failure gives up"
        );
        assert!(f.given_up(&p("zeta"), &again));
        assert!(f.given_up(&p("zeta"), &first));
        assert!(!f.record(p("zeta"), &again, now), "said once");
        assert_eq!(f.given_up_packages().collect::<Vec<_>>(), [&p("zeta")]);
        assert_eq!(
            f.next_retry(retry),
            None,
            "no retry is due for a given-up package"
        );
        // A new version is a new plan: tried again, counting from one.
        let newer = set(&["Inst zeta [1.0] (3.0 S)", "Conf zeta (3.0 S)"]);
        assert!(!f.given_up(&p("zeta"), &newer));
        assert!(!f.record(p("zeta"), &newer, now));
        assert_eq!(f.next_retry(retry), Some(now + retry));
    }

    #[test]
    fn a_withdrawn_approval_forgets_the_failures() {
        let mut f = Failures::new(1);
        let now = Instant::now();
        let needed = set(&[ZETA[1], ALPHA[0], ALPHA[1]]);
        f.record(p("zeta"), &set(&ZETA), now);
        f.record(p("alpha"), &set(&ALPHA), now);
        // Tasks no longer needed (zeta's update, done half-way) do not count.
        f.forget_unapproved(&needed, &set(&[ZETA[1], ALPHA[0], ALPHA[1]]));
        assert_eq!(f.packages().count(), 2);
        f.forget_unapproved(&needed, &set(&[ALPHA[0], ALPHA[1]]));
        assert_eq!(f.packages().collect::<Vec<_>>(), [&p("alpha")]);
    }

    #[test]
    fn no_limit_with_max_zero() {
        let mut f = Failures::new(0);
        let now = Instant::now();
        for _ in 0..100 {
            assert!(!f.record(p("zeta"), &set(&ZETA), now));
        }
        assert!(!f.given_up(&p("zeta"), &set(&ZETA)));
    }
}
