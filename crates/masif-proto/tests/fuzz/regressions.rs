//! Inputs the fuzz tests found, each kept with its exact bytes as a plain test.

use masif_proto::{parse_task_list, Action};
use masif_testkit::fuzz::assert_short_message;

/// Found by `v1_bodies_with_hostile_values`: an unknown action was quoted after escaping, so
/// 40 characters of U+0085 (each `\u{85}` when escaped) made a 321-character message.
#[test]
fn an_unknown_action_of_escaped_characters_is_quoted_briefly() {
    let action = "\\u0085".repeat(50);
    let body = format!(r#"[{{"package":"a","action":"{action}","to_version":"1"}}]"#);
    let err = parse_task_list(body.as_bytes()).unwrap_err().to_string();
    assert_short_message(&err);
    assert!(
        err.starts_with(r#"task 0: unknown action "\u{85}"#),
        "{err}"
    );
}

/// The same through `Action`'s `FromStr`, which quoted the whole text.
#[test]
fn an_unknown_action_string_is_quoted_briefly() {
    let err = "\u{10ffff}".repeat(10_000).parse::<Action>().unwrap_err();
    assert_short_message(&err.to_string());
}
