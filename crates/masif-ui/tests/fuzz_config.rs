//! Fuzz-style property tests of the UI's YAML configuration: the packaged example (with a real
//! htpasswd file) mutated byte-wise and value-wise, and arbitrary bytes. Whatever the file
//! holds, parsing never panics, answers the same twice and reports short problems. A few dozen
//! cases each in CI; for a long run:
//! `PROPTEST_CASES=100000 cargo nextest run -p masif-ui --test fuzz_config`.

mod common;

use std::path::Path;
use std::sync::LazyLock;

use masif_testkit::fuzz::{
    assert_short_message, config, hostile_yaml_leaves, mutated, parse_twice, raw_bytes, YAML_TOKENS,
};
use proptest::prelude::*;

const EXAMPLE: &str = include_str!("../../../packaging/config/ui.yml");
const PACKAGED_HTPASSWD: &str = "/etc/masif-upgrader/ui.htpasswd";

/// The htpasswd file the example names, made real so that the rest of the file is checked.
static HTPASSWD: LazyLock<tempfile::NamedTempFile> = LazyLock::new(common::htpasswd_file);

fn example() -> String {
    assert!(EXAMPLE.contains(PACKAGED_HTPASSWD));
    EXAMPLE.replace(PACKAGED_HTPASSWD, HTPASSWD.path().to_str().unwrap())
}

fn check(text: &str) {
    let parse = || masif_ui::config::parse(Path::new("ui.yml"), text);
    if let Err(e) = parse_twice(parse) {
        assert!(!e.problems().is_empty());
        for problem in e.problems() {
            assert_short_message(&problem.to_string());
        }
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn raw_bytes_as_configuration(bytes in raw_bytes(300, YAML_TOKENS)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn mutated_example_configurations(
        bytes in mutated(Just(example().into_bytes()), YAML_TOKENS),
    ) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn example_configurations_with_hostile_values(text in hostile_yaml_leaves(&example())) {
        check(&text);
    }
}

#[test]
fn the_example_configuration_is_accepted() {
    masif_ui::config::parse(Path::new("ui.yml"), &example()).unwrap();
}
