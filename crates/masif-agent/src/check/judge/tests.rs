//! The verdicts of `judge` for each condition, on prepared answers.

use clap::Parser;

use super::*;
use crate::status::Monitor;

const NOW: i64 = 1_800_000_000;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: CheckArgs,
}

fn limits(flags: &[&str]) -> Limits {
    let argv = std::iter::once("check").chain(flags.iter().copied());
    Limits::from_args(&Cli::try_parse_from(argv).unwrap().args)
}

/// A healthy agent that reported `age` seconds before [`NOW`].
fn status(age: i64) -> StatusReport {
    let monitor = Monitor::new();
    monitor.set_identity(Some("web01".into()), "master:8150");
    let mut s = monitor.status();
    s.last_report = Some(NOW - age);
    s
}

fn load() -> LoadFigures {
    kinds()
        .iter()
        .map(|k| (k.to_string(), [1.0, 5.0, 15.0]))
        .collect()
}

fn verdict(s: &StatusReport, flags: &[&str]) -> Judgement {
    judge(s, &load(), 0.002, NOW, &limits(flags)).unwrap()
}

#[test]
fn a_fresh_report_is_ok_with_perfdata_for_every_figure() {
    let j = verdict(&status(42), &[]);
    assert_eq!(j.status, Status::Ok, "{}", j.summary);
    assert!(
        j.summary.starts_with("web01: last report 42 s ago"),
        "{}",
        j.summary
    );
    let labels: Vec<&str> = j.perf.iter().map(|p| p.label.as_str()).collect();
    assert!(labels.contains(&"report_age") && labels.contains(&"error_15m"));
    assert_eq!(j.perf.len(), 9 + 21);
    assert_eq!(j.perf[0].to_string(), "report_age=42s;1800;7200;0");
}

#[test]
fn report_age_warns_then_goes_critical() {
    assert_eq!(verdict(&status(1801), &[]).status, Status::Warning);
    assert_eq!(verdict(&status(7201), &[]).status, Status::Critical);
    let j = verdict(
        &status(100),
        &["--report-warn", "60", "--report-crit", "90"],
    );
    assert_eq!(j.status, Status::Critical);
    // Never reported: counted from the start.
    let mut s = status(0);
    s.last_report = None;
    s.started_at = Some(NOW - 8000);
    let j = verdict(&s, &[]);
    assert_eq!(j.status, Status::Critical);
    assert!(
        j.summary.contains("no report for 2 h since the start"),
        "{}",
        j.summary
    );
}

#[test]
fn failed_runs_reboots_and_dpkg_audit_warn() {
    let mut s = status(10);
    s.failed_packages = ["alpha".to_owned(), "beta".to_owned()].into();
    s.given_up_packages = ["beta".to_owned()].into();
    let j = verdict(&s, &[]);
    assert_eq!(j.status, Status::Warning);
    assert!(
        j.summary
            .contains("2 packages failed (alpha, beta; 1 given up)"),
        "{}",
        j.summary
    );
    assert_eq!(
        verdict(&s, &["--failed-crit", "1"]).status,
        Status::Critical
    );

    let mut s = status(10);
    s.reboot_required = true;
    assert_eq!(verdict(&s, &[]).status, Status::Warning);
    assert_eq!(verdict(&s, &["--reboot-required", "ok"]).status, Status::Ok);
    assert_eq!(
        verdict(&s, &["--reboot-required", "critical"]).status,
        Status::Critical
    );

    let mut s = status(10);
    s.dpkg_audit = Some("The following packages are only half configured:\n zeta".into());
    let j = verdict(&s, &[]);
    assert_eq!(j.status, Status::Warning);
    assert_eq!(j.details.len(), 2);
}

#[test]
fn approved_tasks_left_undone_warn_after_an_hour() {
    let mut s = status(10);
    s.approved_tasks = 3;
    s.approved_since = Some(NOW - 600);
    assert_eq!(verdict(&s, &[]).status, Status::Ok);
    assert_eq!(
        verdict(&s, &["--approved-warn", "2"]).status,
        Status::Warning
    );
    s.approved_since = Some(NOW - 4000);
    let j = verdict(&s, &[]);
    assert_eq!(j.status, Status::Warning);
    assert!(
        j.summary
            .contains("3 tasks approved, not yet done, for 66 min"),
        "{}",
        j.summary
    );
}

#[test]
fn deferred_tasks_are_no_problem_of_the_agent() {
    let mut s = status(10);
    s.deferred_tasks = 2;
    s.deferred_reason = Some("window".into());
    s.not_before = Some(NOW + 7200);
    let j = verdict(&s, &["--approved-warn", "1"]);
    assert_eq!(j.status, Status::Ok, "{}", j.summary);
    assert!(j.summary.contains("0 approved"), "{}", j.summary);
    assert_eq!(
        j.details,
        ["2 tasks approved, deferred: waiting for the maintenance window, opening in 2 h"]
    );
    assert!(j
        .perf
        .iter()
        .any(|p| p.to_string() == "deferred_tasks=2;;;0"));
}

#[test]
fn original_mode_judges_only_the_load_and_the_response_time() {
    let mut s = status(100_000);
    s.reboot_required = true;
    s.failed_packages = ["alpha".to_owned()].into();
    assert_eq!(verdict(&s, &["--original"]).status, Status::Ok);
    // query: 1, 5, 15 in the three windows.
    let j = verdict(&s, &["--original", "--load", "query-5m-warn=@~:42"]);
    assert_eq!(j.status, Status::Warning);
    assert!(j.summary.contains("query 5m: 5"), "{}", j.summary);
    let j = verdict(
        &s,
        &[
            "--original",
            "--load",
            "query-15m-crit=10",
            "--load",
            "query-1m-warn=0",
        ],
    );
    assert_eq!(j.status, Status::Critical);
    assert!(j.summary.find("query 15m").unwrap() < j.summary.find("query 1m").unwrap());
    let q15 = j.perf.iter().find(|p| p.label == "query_15m").unwrap();
    assert_eq!(q15.to_string(), "query_15m=15;;10;0");
    assert_eq!(
        verdict(&s, &["--original", "--resptime-warn", "0.001"]).status,
        Status::Warning
    );
    assert_eq!(
        verdict(&s, &["--original", "--resptime-crit", "1"]).status,
        Status::Ok
    );
}

#[test]
fn a_load_answer_without_a_kind_is_unknown() {
    let mut figures = load();
    figures.remove("purge");
    let err = judge(&status(1), &figures, 0.0, NOW, &limits(&[])).unwrap_err();
    assert!(err.contains("purge"), "{err}");
}
