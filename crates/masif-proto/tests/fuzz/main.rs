//! Fuzz-style property tests of the v1 and v2 body parsers (host facts included): arbitrary
//! bytes, and mutations of valid rendered bodies. Whatever arrives, a parser never panics,
//! answers the same twice, refuses with a short message, and what it accepts renders back to
//! a body that parses to the same value. A few dozen cases each in CI; for a long run:
//! `PROPTEST_CASES=100000 cargo nextest run -p masif-proto --test fuzz`.

mod json;
mod regressions;
mod strategies;

use std::fmt::Debug;

use masif_proto::v2::{parse_runs, render_runs, Report, ReportAnswer};
use masif_proto::{parse_task_list, render_task_list, ProtocolError};
use masif_testkit::fuzz::{assert_short_message, config, mutated, raw_bytes};
use proptest::prelude::*;

use json::hostile_leaves;
use strategies::{answer, report, runs, tasks};

/// JSON's own syntax and the protocol's keys and words, spliced in by mutations.
const JSON: &[&[u8]] = &[
    b"\"package\":",
    b"\"action\":",
    b"\"from_version\":",
    b"\"to_version\":",
    b"\"install\"",
    b"\"update\"",
    b"\"configure\"",
    b"\"remove\"",
    b"\"purge\"",
    b"\"tasks\":",
    b"\"approved\":",
    b"\"wait\":",
    b"\"facts\":",
    b"\"needs\":",
    b"\"origin\":",
    b"\"held\":",
    b"\"runs\":",
    b"\"id\":",
    b"\"output\":",
    b"\"exit_code\":",
    b"{}",
    b"[]",
    b"\"\"",
    b"\"\\u202e\"",
    b"\"\\u0000\"",
    b"[{\"package\":\"a\",\"action\":\"install\",\"to_version\":\"1\"}]",
    b"1.5",
    b"-1",
    b"4294967296",
];

/// The properties every parser keeps, on any input: no panic (the test would fail), the same
/// answer twice, a short refusal, and an accepted value that survives render → parse.
fn check<T: PartialEq + Debug>(
    body: &[u8],
    parse: impl Fn(&[u8]) -> Result<T, ProtocolError>,
    render: impl Fn(&T) -> String,
) -> Result<(), TestCaseError> {
    let first = parse(body);
    prop_assert_eq!(&first, &parse(body), "parsing is deterministic");
    match first {
        Err(e) => assert_short_message(&e.to_string()),
        Ok(value) => {
            let again = parse(render(&value).as_bytes());
            prop_assert_eq!(again.as_ref(), Ok(&value), "accepted input round-trips");
        }
    }
    Ok(())
}

fn task_list(body: &[u8]) -> Result<(), TestCaseError> {
    check(body, parse_task_list, |t| render_task_list(t))
}

fn report_body(body: &[u8]) -> Result<(), TestCaseError> {
    check(body, Report::parse, Report::render)
}

fn answer_body(body: &[u8]) -> Result<(), TestCaseError> {
    check(body, ReportAnswer::parse, ReportAnswer::render)
}

fn runs_body(body: &[u8]) -> Result<(), TestCaseError> {
    check(body, parse_runs, |r| render_runs(r))
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn v1_round_trips(tasks in tasks(20)) {
        let body = render_task_list(&tasks);
        prop_assert_eq!(parse_task_list(body.as_bytes()), Ok(tasks));
    }

    #[test]
    fn v2_reports_round_trip(report in report()) {
        prop_assert_eq!(Report::parse(report.render().as_bytes()), Ok(report));
    }

    #[test]
    fn v2_answers_round_trip(answer in answer()) {
        prop_assert_eq!(ReportAnswer::parse(answer.render().as_bytes()), Ok(answer));
    }

    #[test]
    fn v2_runs_round_trip(runs in runs()) {
        prop_assert_eq!(parse_runs(render_runs(&runs).as_bytes()), Ok(runs));
    }

    #[test]
    fn raw_bytes_are_refused_or_understood(bytes in raw_bytes(200, JSON)) {
        task_list(&bytes)?;
        report_body(&bytes)?;
        answer_body(&bytes)?;
        runs_body(&bytes)?;
    }

    #[test]
    fn mutated_v1_bodies(body in mutated(tasks(6).prop_map(|t| render_task_list(&t).into_bytes()), JSON)) {
        task_list(&body)?;
    }

    #[test]
    fn mutated_v2_reports(body in mutated(report().prop_map(|r| r.render().into_bytes()), JSON)) {
        report_body(&body)?;
    }

    #[test]
    fn mutated_v2_answers(body in mutated(
        answer().prop_map(|a| a.render().into_bytes()),
        JSON,
    )) {
        answer_body(&body)?;
    }

    #[test]
    fn mutated_v2_runs(body in mutated(runs().prop_map(|r| render_runs(&r).into_bytes()), JSON)) {
        runs_body(&body)?;
    }

    #[test]
    fn v1_bodies_with_hostile_values(body in hostile_leaves(
        tasks(6).prop_map(|t| render_task_list(&t).into_bytes()),
    )) {
        task_list(&body)?;
    }

    #[test]
    fn v2_reports_with_hostile_values(body in hostile_leaves(
        report().prop_map(|r| r.render().into_bytes()),
    )) {
        report_body(&body)?;
    }

    #[test]
    fn v2_runs_with_hostile_values(body in hostile_leaves(
        runs().prop_map(|r| render_runs(&r).into_bytes()),
    )) {
        runs_body(&body)?;
    }
}
