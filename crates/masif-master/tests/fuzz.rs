//! Fuzz-style property tests of the master's YAML configuration: the packaged example mutated
//! byte-wise and value-wise, and arbitrary bytes. Whatever the file holds, parsing never
//! panics, answers the same twice and reports short problems. A few dozen cases each in CI;
//! for a long run: `PROPTEST_CASES=100000 cargo nextest run -p masif-master --test fuzz`.

use std::path::Path;

use masif_master::MasterConfig;
use masif_testkit::fuzz::{
    assert_short_message, config, hostile_yaml_leaves, mutated, parse_twice, raw_bytes, YAML_TOKENS,
};
use proptest::prelude::*;

const EXAMPLE: &str = include_str!("../../../packaging/config/master.yml");

fn check(text: &str) {
    let parse = || masif_daemon::config::parse::<MasterConfig>(Path::new("master.yml"), text);
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
        bytes in mutated(Just(EXAMPLE.as_bytes().to_vec()), YAML_TOKENS),
    ) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn example_configurations_with_hostile_values(text in hostile_yaml_leaves(EXAMPLE)) {
        check(&text);
    }
}

#[test]
fn the_example_configuration_is_accepted() {
    masif_daemon::config::parse::<MasterConfig>(Path::new("master.yml"), EXAMPLE).unwrap();
}
