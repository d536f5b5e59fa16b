//! Parses what `apt-get -s` prints (`Inst alpha [1.0] (2.0 Debian-Security:12/stable [amd64])`,
//! `Conf …`, `Remv …`, `Purg …`) into tasks with the exact target version and its origin.
//! Any line of another shape is an error that quotes it; only apt's known "NOTE: This is
//! only a simulation!" block (printed to non-root users) is skipped.

use masif_proto::{quote, Action, PackageName, Task, Version};

use crate::pm::{Plan, PlannedTask};

/// Most lines accepted from one simulation (a real full upgrade has a few thousand).
pub const MAX_LINES: usize = 200_000;
/// Longest line accepted.
pub const MAX_LINE_BYTES: usize = 4096;
/// Longest piece of a line quoted in an error (escaped characters, see [`quote`]): room for
/// the longest reason within 300 characters.
const MAX_QUOTE_CHARS: usize = 100;

/// Why apt's output could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// `text`, here and below, is the line as [`quote`]d: short, in quotes, escaped.
    #[error("unexpected apt-get output on line {line}: {text}")]
    Unknown { line: usize, text: String },
    #[error("apt-get output line {line}: {reason}: {text}")]
    Invalid {
        line: usize,
        reason: String,
        text: String,
    },
    #[error("apt-get printed more than {MAX_LINES} lines")]
    TooManyLines,
}

/// The block apt prints on stdout for a simulation run by a non-root user.
fn is_simulation_note(line: &str) -> bool {
    let program_line = line
        .strip_prefix("      ")
        .and_then(|l| l.strip_suffix(" needs root privileges for real execution."))
        .is_some_and(|program| !program.is_empty() && !program.contains(' '));
    program_line
        || line == "NOTE: This is only a simulation!"
        || line == "      Keep also in mind that locking is deactivated,"
        || line == "      so don't depend on the relevance to the real current situation!"
}

/// Parses a whole simulation output.
pub fn parse_simulation(output: &str) -> Result<Plan, ParseError> {
    let mut steps = Vec::new();
    for (index, line) in output.lines().enumerate() {
        if index >= MAX_LINES {
            return Err(ParseError::TooManyLines);
        }
        let number = index + 1;
        if line.trim().is_empty() || is_simulation_note(line) {
            continue;
        }
        steps.push(parse_line(number, line)?);
    }
    Ok(Plan::new(steps))
}

/// Parses one line of the shape `KIND NAME [FROM] (TO ORIGIN…) [extra]…`.
pub fn parse_line(number: usize, line: &str) -> Result<PlannedTask, ParseError> {
    let unknown = || ParseError::Unknown {
        line: number,
        text: quote(line, MAX_QUOTE_CHARS),
    };
    let invalid = |reason: String| ParseError::Invalid {
        line: number,
        reason,
        text: quote(line, MAX_QUOTE_CHARS),
    };
    if line.len() > MAX_LINE_BYTES {
        return Err(invalid(format!("longer than {MAX_LINE_BYTES} bytes")));
    }
    let (kind, rest) = line.split_once(' ').ok_or_else(unknown)?;
    let kind = match kind {
        "Inst" => Kind::Inst,
        "Conf" => Kind::Conf,
        "Remv" => Kind::Remv,
        "Purg" => Kind::Purg,
        _ => return Err(unknown()),
    };
    let (name, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if name.is_empty() || name.contains(['[', ']', '(', ')']) {
        return Err(unknown());
    }
    let from = match take_group(rest, '[', ']') {
        Some((inside, after)) => {
            rest = after;
            Some(inside)
        }
        None => None,
    };
    let (to, origin) = match take_group(rest, '(', ')') {
        Some((inside, after)) => {
            rest = after;
            match inside.split_once(' ') {
                Some((to, origin)) => (Some(to), Some(origin.to_owned())),
                None => (Some(inside), None),
            }
        }
        None => (None, None),
    };
    // What may follow: apt's notes on broken dependencies, each in brackets.
    while !rest.is_empty() {
        let (_, after) = take_group(rest, '[', ']').ok_or_else(unknown)?;
        rest = after;
    }
    if from.is_some_and(|f| f.contains(' ')) || to.is_some_and(str::is_empty) {
        return Err(unknown());
    }
    let package = PackageName::new(name).map_err(|e| invalid(e.to_string()))?;
    let version = |v: Option<&str>| {
        v.map(Version::new)
            .transpose()
            .map_err(|e| invalid(e.to_string()))
    };
    let (from, to) = (version(from)?, version(to)?);
    let action = match (kind, &from) {
        (Kind::Inst, Some(_)) => Action::Update,
        (Kind::Inst, None) => Action::Install,
        (Kind::Conf, _) => Action::Configure,
        (Kind::Remv, _) => Action::Remove,
        (Kind::Purg, _) => Action::Purge,
    };
    let task = Task::new(package, action, from, to).map_err(|e| invalid(e.to_string()))?;
    Ok(PlannedTask { task, origin })
}

#[derive(Clone, Copy)]
enum Kind {
    Inst,
    Conf,
    Remv,
    Purg,
}

/// Takes `OPEN inside CLOSE` (after optional spaces) off the front of `text`: returns the
/// inside and the text after it, or `None` if `text` does not start with such a group.
fn take_group(text: &str, open: char, close: char) -> Option<(&str, &str)> {
    let text = text.trim_start_matches(' ');
    let body = text.strip_prefix(open)?;
    let end = body.find(close)?;
    let after = &body[end + close.len_utf8()..];
    if !(after.is_empty() || after.starts_with(' ')) {
        return None;
    }
    Some((&body[..end], after.trim_start_matches(' ')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn task(s: &str) -> Task {
        parse_line(1, s).unwrap().task
    }

    fn fields(t: &Task) -> (&str, Action, Option<&str>, Option<&str>) {
        (
            t.package().as_str(),
            t.action(),
            t.from_version().map(Version::as_str),
            t.to_version().map(Version::as_str),
        )
    }

    /// The walkthrough of notes/apt-sandbox.md: real apt 2.6 output on the fixture packages.
    const SANDBOX_FULL: &str = "\
Remv epsilon [1.0]
Inst alpha [1.0] (2.0 Sandbox:12/stable [amd64])
Inst gamma (1.0 Sandbox:12/stable [all])
Inst beta [1.0] (2.0 Sandbox:12/stable [all])
Inst delta [1.0] (2.0 Sandbox:12/stable [all])
Inst zeta [1.0] (2.0 Sandbox:12/stable [all])
Conf alpha (2.0 Sandbox:12/stable [amd64])
Conf gamma (1.0 Sandbox:12/stable [all])
Conf beta (2.0 Sandbox:12/stable [all])
Conf delta (2.0 Sandbox:12/stable [all])
Conf zeta (2.0 Sandbox:12/stable [all])
";

    #[test]
    fn every_line_kind_of_a_real_plan() {
        let plan = parse_simulation(SANDBOX_FULL).unwrap();
        assert_eq!(plan.steps().len(), 11);
        assert_eq!(plan.tasks().len(), 11);
        let steps: Vec<_> = plan.steps().iter().map(|s| fields(&s.task)).collect();
        use Action::*;
        assert_eq!(steps[0], ("epsilon", Remove, Some("1.0"), None));
        assert_eq!(steps[1], ("alpha", Update, Some("1.0"), Some("2.0")));
        assert_eq!(steps[2], ("gamma", Install, None, Some("1.0")));
        assert_eq!(steps[6], ("alpha", Configure, None, Some("2.0")));
        assert_eq!(
            plan.steps()[1].origin.as_deref(),
            Some("Sandbox:12/stable [amd64]")
        );
    }

    #[rstest]
    #[case::update("Inst alpha [1.0] (2.0 Debian-Security:12/stable [amd64])", ("alpha", Action::Update, Some("1.0"), Some("2.0")), Some("Debian-Security:12/stable [amd64]"))]
    #[case::install("Inst gamma (1.0 Sandbox:12/stable [all])", ("gamma", Action::Install, None, Some("1.0")), Some("Sandbox:12/stable [all]"))]
    #[case::configure("Conf zeta (2.0 Sandbox:12/stable [all])", ("zeta", Action::Configure, None, Some("2.0")), Some("Sandbox:12/stable [all]"))]
    #[case::remove("Remv epsilon [1.0]", ("epsilon", Action::Remove, Some("1.0"), None), None)]
    #[case::purge("Purg epsilon [1.0]", ("epsilon", Action::Purge, Some("1.0"), None), None)]
    #[case::epoch("Inst login [1:4.13+dfsg1-1+deb12u1] (1:4.13+dfsg1-1+deb12u2 Debian:12.15/oldstable [amd64])", ("login", Action::Update, Some("1:4.13+dfsg1-1+deb12u1"), Some("1:4.13+dfsg1-1+deb12u2")), Some("Debian:12.15/oldstable [amd64]"))]
    #[case::broken_notes("Inst libpam-modules-bin [1.5.2-6+deb12u1] (1.5.2-6+deb12u2 Debian:12.15/oldstable [amd64]) [libpam-modules:amd64 on libpam-modules-bin:amd64] [libpam-modules:amd64 ]", ("libpam-modules-bin", Action::Update, Some("1.5.2-6+deb12u1"), Some("1.5.2-6+deb12u2")), Some("Debian:12.15/oldstable [amd64]"))]
    #[case::conf_with_notes("Conf libpam-modules-bin (1.5.2-6+deb12u2 Debian:12.15/oldstable [amd64]) [libpam-modules:amd64 ]", ("libpam-modules-bin", Action::Configure, None, Some("1.5.2-6+deb12u2")), Some("Debian:12.15/oldstable [amd64]"))]
    #[case::multiarch("Inst libc6:i386 [2.36-9] (2.36-9+deb12u4 Debian:12.5/stable [i386])", ("libc6:i386", Action::Update, Some("2.36-9"), Some("2.36-9+deb12u4")), Some("Debian:12.5/stable [i386]"))]
    #[case::no_origin("Inst local (1.0)", ("local", Action::Install, None, Some("1.0")), None)]
    #[case::remove_with_notes("Remv epsilon [1.0] [delta:amd64 ]", ("epsilon", Action::Remove, Some("1.0"), None), None)]
    fn line_kinds(
        #[case] line: &str,
        #[case] expected: (&str, Action, Option<&str>, Option<&str>),
        #[case] origin: Option<&str>,
    ) {
        let planned = parse_line(1, line).unwrap();
        assert_eq!(fields(&planned.task), expected);
        assert_eq!(planned.origin.as_deref(), origin);
    }

    #[test]
    fn a_whole_real_debian_12_plan_with_the_simulation_note() {
        // `apt-get -sqq dist-upgrade` run as nobody on a Debian 12 host (November 2026).
        let out = include_str!("testdata/debian12-dist-upgrade-as-nobody.txt");
        assert!(out.starts_with("NOTE: This is only a simulation!"));
        let plan = parse_simulation(out).unwrap();
        assert_eq!(plan.steps().len(), 222);
        let tasks = plan.tasks();
        assert_eq!(
            tasks
                .iter()
                .filter(|t| t.action() == Action::Update)
                .count(),
            111
        );
        assert!(tasks.contains(&task(
            "Inst bash [5.2.15-2+b8] (5.2.15-2+b13 Debian:12.15/oldstable [amd64])"
        )));
    }

    #[test]
    fn the_simulation_note_block_alone_is_an_empty_plan() {
        let note = "NOTE: This is only a simulation!\n      apt-get needs root privileges for real execution.\n      Keep also in mind that locking is deactivated,\n      so don't depend on the relevance to the real current situation!\n";
        assert!(parse_simulation(note).unwrap().is_empty());
    }

    #[test]
    fn empty_output_is_an_empty_plan() {
        assert!(parse_simulation("").unwrap().is_empty());
        assert!(parse_simulation("\n").unwrap().is_empty());
    }

    #[rstest]
    #[case::garbage("\u{1}\u{2}garbage")]
    #[case::prose("Reading package lists...")]
    #[case::summary("0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.")]
    #[case::error("E: Could not get lock /var/lib/dpkg/lock-frontend")]
    #[case::lowercase_kind("inst alpha [1.0] (2.0 x)")]
    #[case::kind_only("Inst")]
    #[case::unclosed_from("Inst alpha [1.0 (2.0 x)")]
    #[case::unclosed_to("Inst alpha [1.0] (2.0 x")]
    #[case::trailing_words("Inst alpha [1.0] (2.0 x) and more")]
    #[case::name_with_bracket("Inst al[pha (2.0 x)")]
    #[case::empty_to("Inst alpha [1.0] ( x)")]
    #[case::from_with_space("Remv alpha [1 .0]")]
    #[case::almost_note("NOTE: This is only a simulation")]
    #[case::note_variant("      you need root privileges for real execution. really")]
    fn unknown_lines_are_errors_quoting_the_line(#[case] line: &str) {
        let out = format!("Inst alpha [1.0] (2.0 Sandbox:12/stable [amd64])\n{line}\n");
        let err = parse_simulation(&out).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 2"), "{msg}");
        assert!(msg.contains(&quote(line, MAX_QUOTE_CHARS)), "{msg}");
    }

    #[rstest]
    #[case::install_needs_version("Inst gamma", "needs to_version")]
    #[case::remove_needs_version("Remv epsilon", "needs from_version")]
    #[case::purge_of_config_files("Purg oldpkg", "needs from_version")]
    #[case::conf_both("Conf zeta [1.0] (2.0 x)", "exactly one")]
    #[case::long_version("Inst a [1] (VVV x)", "longer than 191")]
    #[case::control_char("Inst a\u{7f}b [1] (2 x)", "control character")]
    fn lines_of_the_right_shape_with_bad_fields(#[case] line: &str, #[case] reason: &str) {
        let line = line.replace("VVV", &"9".repeat(300));
        let err = parse_simulation(&line).unwrap_err().to_string();
        assert!(err.contains(reason), "{err}");
    }

    fn version() -> impl proptest::strategy::Strategy<Value = String> {
        "[0-9][0-9a-z.+~:-]{0,20}"
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_output_never_panics(text in "\\PC{0,300}") {
            let _ = parse_simulation(&text);
        }

        #[test]
        fn generated_lines_parse_back_exactly(
            name in "[a-z0-9][a-z0-9+.-]{1,30}",
            from in version(),
            to in version(),
            origin in "[A-Za-z0-9:./ -]{0,40}",
        ) {
            let origin = origin.trim();
            let suffix = if origin.is_empty() { String::new() } else { format!(" {origin}") };
            let line = format!("Inst {name} [{from}] ({to}{suffix})");
            let planned = parse_line(1, &line).unwrap();
            proptest::prop_assert_eq!(
                fields(&planned.task),
                (name.as_str(), Action::Update, Some(from.as_str()), Some(to.as_str()))
            );
            proptest::prop_assert_eq!(planned.origin.as_deref(), (!origin.is_empty()).then_some(origin));
            let conf = parse_line(1, &format!("Conf {name} ({to}{suffix})")).unwrap();
            proptest::prop_assert_eq!(conf.task.action(), Action::Configure);
        }
    }

    #[test]
    fn hostile_sizes_are_bounded() {
        let long = format!("Inst a [1] (2 {})", "o".repeat(MAX_LINE_BYTES));
        let err = parse_simulation(&long).unwrap_err().to_string();
        assert!(err.contains("longer than 4096 bytes"), "{err}");
        assert!(err.len() < 400, "error quotes at most a short prefix");
        let many = "Inst a [1] (2 x)\n".repeat(MAX_LINES + 1);
        assert_eq!(parse_simulation(&many), Err(ParseError::TooManyLines));
    }
}
