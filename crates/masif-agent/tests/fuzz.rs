//! Fuzz-style property tests of what the agent parses: `apt-get -s` output (raw bytes, a real
//! Debian 12 plan and generated plans, mutated) and its YAML configuration (the packaged
//! example, mutated byte-wise and value-wise). Whatever arrives, a parser never panics,
//! answers the same twice and refuses with short messages. A few dozen cases each in CI; for a
//! long run: `PROPTEST_CASES=100000 cargo nextest run -p masif-agent --test fuzz`.

use masif_agent::apt::parse_simulation;
use masif_agent::AgentConfig;
use masif_testkit::fuzz::{
    assert_short_message, config, hostile_yaml_leaves, mutated, parse_twice, raw_bytes, YAML_TOKENS,
};
use proptest::prelude::*;

/// `apt-get -sqq dist-upgrade` on a Debian 12 host, run as nobody (with apt's note).
const REAL_PLAN: &str = include_str!("../src/apt/testdata/debian12-dist-upgrade-as-nobody.txt");
const EXAMPLE_CONFIG: &str = include_str!("../../../packaging/config/agent.yml");

/// The syntax of apt's simulation lines, spliced in by mutations.
const APT: &[&[u8]] = &[
    b"Inst ",
    b"Conf ",
    b"Remv ",
    b"Purg ",
    b" [",
    b"] ",
    b" (",
    b") ",
    b"\n",
    b"NOTE: This is only a simulation!\n",
    b" [amd64])",
    b"Debian-Security:12/stable-security",
    b"1:2.0~rc1+dfsg-3",
];

/// What apt's output parser keeps on any input: the same answer twice, a short refusal.
fn check_plan(text: &str) -> Result<(), TestCaseError> {
    let first = parse_simulation(text);
    prop_assert_eq!(&first, &parse_simulation(text), "parsing is deterministic");
    if let Err(e) = first {
        assert_short_message(&e.to_string());
    }
    Ok(())
}

/// What the configuration parser keeps on any input: the same answer twice, every problem a
/// short line.
fn check_config(text: &str) {
    if let Err(e) = parse_twice(|| AgentConfig::parse(text, "agent.yml")) {
        assert!(!e.problems().is_empty());
        for problem in e.problems() {
            assert_short_message(&problem.to_string());
        }
    }
}

/// A plan as apt prints it: every line kind, with and without origins and broken-dependency
/// notes, blank lines and the simulation note.
fn generated_plan() -> impl Strategy<Value = String> {
    let name = "[a-z0-9][a-z0-9+.-]{0,30}(:i386)?";
    let version = "([0-9]:)?[0-9][0-9a-z.+~-]{0,20}";
    let origin = "( [A-Za-z-]{1,15}:[0-9.]{1,5}/[a-z-]{1,20} \\[(amd64|all|i386)\\])?";
    let line = prop_oneof![
        (name, version, version, origin)
            .prop_map(|(n, f, t, o)| format!("Inst {n} [{f}] ({t}{o})")),
        (name, version, origin).prop_map(|(n, t, o)| format!("Inst {n} ({t}{o})")),
        (name, version, origin).prop_map(|(n, t, o)| format!("Conf {n} ({t}{o})")),
        (name, version).prop_map(|(n, f)| format!("Remv {n} [{f}]")),
        (name, version, name).prop_map(|(n, f, d)| format!("Purg {n} [{f}] [{d} ]")),
        Just(String::new()),
    ];
    (any::<bool>(), proptest::collection::vec(line, 0..30)).prop_map(|(note, lines)| {
        let note = if note {
            "NOTE: This is only a simulation!\n      apt-get needs root privileges for real execution.\n"
        } else {
            ""
        };
        format!("{note}{}\n", lines.join("\n"))
    })
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn generated_plans_parse(text in generated_plan()) {
        let plan = parse_simulation(&text);
        prop_assert!(plan.is_ok(), "{plan:?}");
        check_plan(&text)?;
    }

    #[test]
    fn raw_bytes_as_apt_output(bytes in raw_bytes(300, APT)) {
        check_plan(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn mutated_real_plans(bytes in mutated(Just(REAL_PLAN.as_bytes().to_vec()), APT)) {
        check_plan(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn mutated_generated_plans(bytes in mutated(generated_plan().prop_map(String::into_bytes), APT)) {
        check_plan(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn raw_bytes_as_configuration(bytes in raw_bytes(300, YAML_TOKENS)) {
        check_config(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn mutated_example_configurations(
        bytes in mutated(Just(EXAMPLE_CONFIG.as_bytes().to_vec()), YAML_TOKENS),
    ) {
        check_config(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn example_configurations_with_hostile_values(text in hostile_yaml_leaves(EXAMPLE_CONFIG)) {
        check_config(&text);
    }
}

#[test]
fn the_example_configuration_and_the_real_plan_are_accepted() {
    AgentConfig::parse(EXAMPLE_CONFIG, "agent.yml").unwrap();
    assert!(!parse_simulation(REAL_PLAN).unwrap().is_empty());
}

/// Found by `mutated_generated_plans`: a line was cut to 160 characters and then escaped, so
/// control characters (`\u{f}` is six characters escaped) made a 691-character message.
#[test]
fn an_overlong_line_of_control_characters_is_quoted_briefly() {
    let line = format!("Ins{}", "\u{f}`\u{18}".repeat(1400));
    let err = parse_simulation(&line).unwrap_err().to_string();
    assert_short_message(&err);
    assert!(
        err.starts_with(r#"apt-get output line 1: longer than 4096 bytes: "Ins\u{f}`\u{18}"#),
        "{err}"
    );
}

/// The same for a line of no known shape.
#[test]
fn an_unknown_line_of_escaped_characters_is_quoted_briefly() {
    let err = parse_simulation(&"\u{7f}".repeat(200))
        .unwrap_err()
        .to_string();
    assert_short_message(&err);
    assert!(
        err.starts_with(r#"unexpected apt-get output on line 1: "\u{7f}"#),
        "{err}"
    );
}

/// Limits the mutations probe, kept as plain tests: deep nesting and an alias bomb ("billion
/// laughs") are refused by the YAML parser, briefly. The parser's time grows with the square
/// of the flow nesting depth (about a second at 4,000 levels of `{a: ` in a debug build, so
/// minutes at 100,000): see docs/security.md, "Fuzzing".
#[test]
fn deep_nesting_and_alias_bombs_in_the_configuration_are_refused_briefly() {
    let bomb = (1..10).fold(
        "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n".to_owned(),
        |doc, i| {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            format!("{doc}a{i}: &a{i} [{refs}]\n")
        },
    );
    for text in [
        "[".repeat(2_000),
        format!("master: {}", "{a: ".repeat(2_000)),
        "- ".repeat(50_000),
        bomb,
    ] {
        let err = AgentConfig::parse(&text, "agent.yml").unwrap_err();
        for problem in err.problems() {
            assert_short_message(&problem.to_string());
        }
    }
}
