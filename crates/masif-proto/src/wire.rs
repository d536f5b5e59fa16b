//! The v1 wire format: a JSON array of task objects, parsed with the original's rules and
//! error messages short enough to send back (they never echo the request).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::task::{quote, Action, PackageName, Task, TaskError, TaskSet, Version, MAX_QUOTE_CHARS};

/// Why a request body is not a valid task list. `Display` is the reason sent with a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("body is not valid JSON: {0}")]
    Json(String),
    #[error("body is not a JSON array of tasks")]
    NotArray,
    #[error("body is not a JSON object")]
    NotObjectBody,
    #[error("{field}: {reason}")]
    Field { field: String, reason: String },
    #[error("task {index}: not a JSON object")]
    NotObject { index: usize },
    #[error("task {index}: {key:?} is missing")]
    Missing { index: usize, key: &'static str },
    #[error("task {index}: {key:?} is not a string")]
    NotString { index: usize, key: &'static str },
    #[error("task {index}: {source}")]
    Invalid { index: usize, source: TaskError },
}

/// Parses a report body. Any violation rejects the whole body.
pub fn parse_task_list(body: &[u8]) -> Result<TaskSet, ProtocolError> {
    let root: Value = serde_json::from_slice(body).map_err(|e| {
        // serde_json's messages name a line and column, never the input itself.
        ProtocolError::Json(e.to_string())
    })?;
    parse_tasks(&root)
}

/// Parses a JSON array of task objects (v1's body, and the task lists inside v2's bodies).
pub(crate) fn parse_tasks(value: &Value) -> Result<TaskSet, ProtocolError> {
    let Value::Array(items) = value else {
        return Err(ProtocolError::NotArray);
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| parse_task(index, item))
        .collect()
}

fn parse_task(index: usize, item: &Value) -> Result<Task, ProtocolError> {
    let Value::Object(fields) = item else {
        return Err(ProtocolError::NotObject { index });
    };
    let invalid = |source| ProtocolError::Invalid { index, source };
    let package = required(index, fields, "package")?;
    let action = required(index, fields, "action")?;
    let action: Action = if action.is_empty() {
        return Err(invalid(TaskError::Empty { field: "action" }));
    } else {
        action
            .parse()
            .map_err(|_| invalid(TaskError::UnknownAction(quote(action, MAX_QUOTE_CHARS))))?
    };
    let package = PackageName::new(package).map_err(invalid)?;
    let from_version = optional(index, fields, "from_version")?
        .map(Version::new)
        .transpose()
        .map_err(invalid)?;
    let to_version = optional(index, fields, "to_version")?
        .map(Version::new)
        .transpose()
        .map_err(invalid)?;
    Task::new(package, action, from_version, to_version).map_err(invalid)
}

fn required<'a>(
    index: usize,
    fields: &'a Map<String, Value>,
    key: &'static str,
) -> Result<&'a str, ProtocolError> {
    optional(index, fields, key)?.ok_or(ProtocolError::Missing { index, key })
}

fn optional<'a>(
    index: usize,
    fields: &'a Map<String, Value>,
    key: &'static str,
) -> Result<Option<&'a str>, ProtocolError> {
    match fields.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ProtocolError::NotString { index, key }),
    }
}

/// A task as it is written on the wire.
#[derive(Serialize)]
pub(crate) struct WireTask<'a> {
    package: &'a str,
    action: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to_version: Option<&'a str>,
}

/// Renders tasks as the v1 JSON array (absent versions are omitted keys).
pub fn render_task_list<'a>(tasks: impl IntoIterator<Item = &'a Task>) -> String {
    serde_json::to_string(&wire_tasks(tasks)).expect("serialising plain strings cannot fail")
}

/// Tasks in their wire shape, for serialising inside a larger body.
pub(crate) fn wire_tasks<'a>(tasks: impl IntoIterator<Item = &'a Task>) -> Vec<WireTask<'a>> {
    tasks
        .into_iter()
        .map(|t| WireTask {
            package: t.package().as_str(),
            action: t.action().as_str(),
            from_version: t.from_version().map(Version::as_str),
            to_version: t.to_version().map(Version::as_str),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn parses_the_original_example() {
        let body = br#"[{"package": "perl", "action": "update", "from_version": "5.24.1-3+deb9u3", "to_version": "5.24.1-3+deb9u4"}]"#;
        let tasks = parse_task_list(body).unwrap();
        assert_eq!(tasks.len(), 1);
        let t = tasks.iter().next().unwrap();
        assert_eq!(t.package().as_str(), "perl");
        assert_eq!(t.action(), Action::Update);
        assert_eq!(t.from_version().unwrap().as_str(), "5.24.1-3+deb9u3");
        assert_eq!(t.to_version().unwrap().as_str(), "5.24.1-3+deb9u4");
    }

    #[test]
    fn duplicates_collapse_and_empty_array_is_fine() {
        let body = br#"[{"package":"a","action":"install","to_version":"1"},{"package":"a","action":"install","to_version":"1"}]"#;
        assert_eq!(parse_task_list(body).unwrap().len(), 1);
        assert!(parse_task_list(b"[]").unwrap().is_empty());
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let body = br#"[{"package":"a","action":"install","to_version":"1","origin":"Debian"}]"#;
        assert_eq!(parse_task_list(body).unwrap().len(), 1);
    }

    #[rstest]
    #[case::empty_body(b"", "not valid JSON")]
    #[case::garbage(b"\xff\xfe", "not valid JSON")]
    #[case::truncated(br#"[{"package":"a""#, "not valid JSON")]
    #[case::object_root(br#"{"package":"a"}"#, "not a JSON array")]
    #[case::null_root(b"null", "not a JSON array")]
    #[case::string_root(br#""x""#, "not a JSON array")]
    #[case::number_element(b"[1]", "task 0: not a JSON object")]
    #[case::array_element(b"[[]]", "task 0: not a JSON object")]
    #[case::null_element(b"[null]", "task 0: not a JSON object")]
    #[case::missing_package(
        br#"[{"action":"install","to_version":"1"}]"#,
        r#""package" is missing"#
    )]
    #[case::missing_action(br#"[{"package":"a","to_version":"1"}]"#, r#""action" is missing"#)]
    #[case::empty_package(
        br#"[{"package":"","action":"install","to_version":"1"}]"#,
        "package is empty"
    )]
    #[case::empty_action(
        br#"[{"package":"a","action":"","to_version":"1"}]"#,
        "action is empty"
    )]
    #[case::numeric_package(
        br#"[{"package":1,"action":"install","to_version":"1"}]"#,
        r#""package" is not a string"#
    )]
    #[case::null_action(
        br#"[{"package":"a","action":null,"to_version":"1"}]"#,
        r#""action" is not a string"#
    )]
    #[case::unknown_action(
        br#"[{"package":"a","action":"upgrade","to_version":"1"}]"#,
        "unknown action \"upgrade\""
    )]
    #[case::capital_action(
        br#"[{"package":"a","action":"Install","to_version":"1"}]"#,
        "unknown action"
    )]
    #[case::null_version(
        br#"[{"package":"a","action":"install","to_version":null}]"#,
        r#""to_version" is not a string"#
    )]
    #[case::empty_version(
        br#"[{"package":"a","action":"install","to_version":""}]"#,
        "version is empty"
    )]
    #[case::install_with_from(
        br#"[{"package":"a","action":"install","from_version":"1","to_version":"2"}]"#,
        "action install needs"
    )]
    #[case::install_without_to(br#"[{"package":"a","action":"install"}]"#, "action install needs")]
    #[case::update_without_from(
        br#"[{"package":"a","action":"update","to_version":"2"}]"#,
        "action update needs"
    )]
    #[case::configure_both(
        br#"[{"package":"a","action":"configure","from_version":"1","to_version":"2"}]"#,
        "exactly one"
    )]
    #[case::configure_neither(br#"[{"package":"a","action":"configure"}]"#, "exactly one")]
    #[case::remove_without_from(br#"[{"package":"a","action":"remove"}]"#, "action remove needs")]
    #[case::purge_without_from(
        br#"[{"package":"a","action":"purge","to_version":"1"}]"#,
        "action purge needs"
    )]
    #[case::control_char(
        br#"[{"package":"a\u0000b","action":"install","to_version":"1"}]"#,
        "control character"
    )]
    #[case::second_element_bad(
        br#"[{"package":"a","action":"install","to_version":"1"},{"package":"b"}]"#,
        "task 1:"
    )]
    fn malformed_bodies_are_rejected(#[case] body: &[u8], #[case] expected: &str) {
        let err = parse_task_list(body).unwrap_err().to_string();
        assert!(
            err.contains(expected),
            "{err:?} should contain {expected:?}"
        );
    }

    #[test]
    fn too_long_fields_are_rejected_with_a_reason() {
        let body = format!(
            r#"[{{"package":"{}","action":"install","to_version":"1"}}]"#,
            "p".repeat(192)
        );
        let err = parse_task_list(body.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("longer than 191"), "{err}");
        let body = format!(
            r#"[{{"package":"p","action":"install","to_version":"{}"}}]"#,
            "1".repeat(500)
        );
        assert!(parse_task_list(body.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("longer than 191"));
    }

    #[test]
    fn errors_never_echo_large_input() {
        let huge = "x".repeat(100_000);
        let body = format!(r#"[{{"package":"a","action":"{huge}","to_version":"1"}}]"#);
        let err = parse_task_list(body.as_bytes()).unwrap_err().to_string();
        assert!(err.len() < 200, "{} bytes", err.len());
        let body = format!(r#"[{{"package":"{huge}"#);
        assert!(
            parse_task_list(body.as_bytes())
                .unwrap_err()
                .to_string()
                .len()
                < 200
        );
    }

    #[test]
    fn deeply_nested_json_is_an_error_not_a_crash() {
        let body = "[".repeat(100_000);
        assert!(matches!(
            parse_task_list(body.as_bytes()),
            Err(ProtocolError::Json(_))
        ));
    }
}
