//! Tests of the v2 wire format: reports, answers with deferred tasks, lease requests and runs.

use super::*;
use crate::{Action, Task, Version};

fn update(package: &str) -> Task {
    Task::new(
        PackageName::new(package).unwrap(),
        Action::Update,
        Some(Version::new("1.0").unwrap()),
        Some(Version::new("2.0").unwrap()),
    )
    .unwrap()
}

fn run(id: &str, exit_code: Option<i32>, outcome: Outcome) -> Run {
    Run {
        id: RunId::new(id).unwrap(),
        package: PackageName::new("alpha").unwrap(),
        started_at: 1_764_092_100,
        duration_ms: 1234,
        exit_code,
        outcome,
        tasks: [update("alpha")].into(),
        output: RunOutput::tail_of("Setting up alpha (2.0) ...\n"),
    }
}

#[test]
fn reports_and_answers_round_trip() {
    let report = Report {
        tasks: [update("alpha"), update("beta")].into(),
        approved: [update("alpha")].into(),
        wait_secs: 300,
        facts: Some(crate::facts::Facts {
            reboot_required: true,
            ..Default::default()
        }),
    };
    assert_eq!(Report::parse(report.render().as_bytes()).unwrap(), report);
    let answer = ReportAnswer::approving([update("beta")].into());
    assert_eq!(
        ReportAnswer::parse(answer.render().as_bytes()).unwrap(),
        answer
    );
    // Nothing deferred: the answer an agent predating the controls knows.
    assert!(!answer.render().contains("deferred"), "{}", answer.render());
    let deferred = ReportAnswer {
        approved: TaskSet::new(),
        deferred: [update("alpha")].into(),
        reason: Some(DeferReason::Window),
        not_before: Some(1_767_225_600),
        lease_seconds: None,
    };
    assert_eq!(
        ReportAnswer::parse(deferred.render().as_bytes()).unwrap(),
        deferred
    );
    for (body, field) in [
        (r#"{"approved":[],"reason":"later"}"#, "reason"),
        (r#"{"approved":[],"not_before":-5}"#, "not_before"),
        (r#"{"approved":[],"lease_seconds":"60"}"#, "lease_seconds"),
    ] {
        let err = ReportAnswer::parse(body.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(field), "{err}");
    }
    // Omitted lists are empty and an omitted wait is 0; an answer needs `approved`.
    assert_eq!(Report::parse(b"{}").unwrap(), Report::default());
    assert!(ReportAnswer::parse(b"{}").is_err());
}

#[test]
fn bad_reports_name_the_field() {
    let cases: [(&[u8], &str); 5] = [
        (br#"{"wait": 3601}"#, "wait"),
        (br#"{"wait": -1}"#, "wait"),
        (
            br#"{"tasks": [], "approved": [{"package":"a","action":"install","to_version":"1"}]}"#,
            "approved",
        ),
        (br#"[]"#, "not a JSON object"),
        (br#"{"facts": {"os": 7}}"#, "facts.os: not a string"),
    ];
    for (body, needle) in cases {
        let err = Report::parse(body).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn lease_requests_are_one_flag() {
    for request in [LeaseRequest::Renew, LeaseRequest::Release] {
        assert_eq!(
            LeaseRequest::parse(request.render().as_bytes()).unwrap(),
            request
        );
    }
    for bad in [
        "{}",
        r#"{"renew":true,"release":true}"#,
        r#"{"renew":false}"#,
        r#"{"release":1}"#,
        "[]",
    ] {
        assert!(LeaseRequest::parse(bad.as_bytes()).is_err(), "{bad}");
    }
}

#[test]
fn runs_round_trip_with_and_without_an_exit_code() {
    let runs = vec![
        run("1764092100000-1", Some(100), Outcome::Failed),
        run("1764092100000-2", None, Outcome::PlanChanged),
        run("1764092100000-3", Some(0), Outcome::Succeeded),
    ];
    assert_eq!(parse_runs(render_runs(&runs).as_bytes()).unwrap(), runs);
}

#[test]
fn bad_runs_are_refused_naming_the_run_and_field() {
    let good = serde_json::to_value(run("r-1", Some(0), Outcome::Succeeded)).unwrap();
    let with = |key: &str, value: Value| {
        let mut r = good.clone();
        r[key] = value;
        serde_json::json!({ "runs": [good.clone(), r] }).to_string()
    };
    let cases = [
        (with("id", "r-1".into()), "runs[1].id"),
        (with("id", "a b".into()), "runs[1].id"),
        (with("outcome", "maybe".into()), "runs[1].outcome"),
        (with("exit_code", "0".into()), "runs[1].exit_code"),
        (with("tasks", serde_json::json!([])), "runs[1].tasks"),
        (with("output", "\u{1b}[31m".into()), "runs[1].output"),
        (with("duration_ms", (-1).into()), "runs[1].duration_ms"),
        (r#"{"runs": []}"#.to_owned(), "runs"),
    ];
    for (body, field) in cases {
        let err = parse_runs(body.as_bytes()).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{field}: ")), "{field}: {err}");
    }
}

#[test]
fn run_ids_are_short_plain_words() {
    assert!(RunId::new("1764092100123-7").is_ok());
    assert!(RunId::new("a.b_c:d-E9").is_ok());
    for bad in ["", "a/b", "é", &"x".repeat(MAX_RUN_ID_CHARS + 1)] {
        assert!(RunId::new(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn output_keeps_the_last_bytes_and_no_control_characters() {
    let long = format!("{}\nend\u{1b}[0m\u{202e}", "é".repeat(MAX_OUTPUT_BYTES));
    let tail = RunOutput::tail_of(&long);
    assert!(tail.as_str().len() <= MAX_OUTPUT_BYTES);
    assert!(
        tail.as_str().ends_with("\nend\u{fffd}[0m\u{fffd}"),
        "{:?}",
        &tail.as_str()[4000..]
    );
    assert!(RunOutput::new(tail.as_str()).is_ok());
    assert!(RunOutput::new("x".repeat(MAX_OUTPUT_BYTES + 1)).is_err());
    assert_eq!(RunOutput::tail_of("ok\n\tdone").as_str(), "ok\n\tdone");
}
