//! The original plugin's command line: called as `check_masifupgrader_agent` the binary is
//! `masif-agent check --original`, and the original's single-dash flags (`-restsock PATH`,
//! `-resptime-warn RANGE`, `-query-1m-crit @~:42`, also `--flag` and `-flag=VALUE`, as Go's
//! flag package reads them) become this command line's own before clap parses it.

use std::ffi::OsString;
use std::path::Path;

use super::args::parse_load_name;

/// The name the original plugin is installed as.
pub const ORIGINAL_NAME: &str = "check_masifupgrader_agent";

/// Whether `argv` (the program name first) is a `check` invocation: the multicall name or the
/// `check` subcommand.
pub fn is_check(argv: &[OsString]) -> bool {
    invoked_as_original(argv) || argv.get(1).is_some_and(|a| a == "check")
}

fn invoked_as_original(argv: &[OsString]) -> bool {
    argv.first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|name| name == ORIGINAL_NAME)
}

/// Rewrites `argv` for clap: the multicall name becomes `masif-agent check --original`, and
/// in a check invocation the original's flags become ours. Any other command line is
/// returned unchanged. Errs (with a message for UNKNOWN) on an original flag without value.
pub fn translate(argv: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let (mut out, rest): (Vec<OsString>, &[OsString]) = if invoked_as_original(&argv) {
        (
            vec!["masif-agent".into(), "check".into(), "--original".into()],
            argv.get(1..).unwrap_or_default(),
        )
    } else if is_check(&argv) {
        (argv[..2].to_vec(), &argv[2..])
    } else {
        return Ok(argv);
    };
    let mut args = rest.iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            out.push(arg.clone());
            out.extend(args.cloned());
            break;
        }
        let Some(text) = arg.to_str() else {
            out.push(arg.clone());
            continue;
        };
        let Some(flag) = text.strip_prefix("--").or_else(|| text.strip_prefix('-')) else {
            out.push(arg.clone());
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (flag, None),
        };
        let Some(ours) = our_flag(name) else {
            out.push(arg.clone());
            continue;
        };
        let value = match inline {
            Some(value) => value,
            None => match args.next().map(|v| v.to_str()) {
                Some(Some(value)) => value.to_owned(),
                Some(None) => return Err(format!("-{name}: the value is not UTF-8")),
                None => return Err(format!("-{name} needs a value")),
            },
        };
        match ours {
            Ours::Flag(flag) => {
                out.push(flag.into());
                out.push(value.into());
            }
            Ours::Load => {
                out.push("--load".into());
                out.push(format!("{name}={value}").into());
            }
        }
    }
    Ok(out)
}

enum Ours {
    Flag(&'static str),
    Load,
}

/// Our flag for one of the original's names; `None` for a name it did not have (left to
/// clap, which knows ours).
fn our_flag(name: &str) -> Option<Ours> {
    match name {
        "restsock" => Some(Ours::Flag("--socket")),
        "resptime-warn" => Some(Ours::Flag("--resptime-warn")),
        "resptime-crit" => Some(Ours::Flag("--resptime-crit")),
        _ => parse_load_name(name).map(|_| Ours::Load),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn translated(args: &[&str]) -> Vec<String> {
        translate(argv(args))
            .unwrap()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn the_multicall_name_is_check_original() {
        assert_eq!(
            translated(&[
                "/usr/lib/nagios/plugins/check_masifupgrader_agent",
                "-restsock",
                "/run/a.sock",
                "-query-1m-warn",
                "@~:42",
                "--error-15m-crit=0",
                "-resptime-crit=2",
            ]),
            [
                "masif-agent",
                "check",
                "--original",
                "--socket",
                "/run/a.sock",
                "--load",
                "query-1m-warn=@~:42",
                "--load",
                "error-15m-crit=0",
                "--resptime-crit",
                "2",
            ]
        );
    }

    #[test]
    fn check_takes_the_original_flags_and_its_own() {
        assert_eq!(
            translated(&[
                "masif-agent",
                "check",
                "-resptime-warn",
                "1",
                "--timeout",
                "3"
            ]),
            [
                "masif-agent",
                "check",
                "--resptime-warn",
                "1",
                "--timeout",
                "3"
            ]
        );
        // A value that looks like a flag is still the value: ranges may start with a dash.
        assert_eq!(
            translated(&[
                "masif-agent",
                "check",
                "-install-5m-warn",
                "-10:10",
                "--",
                "-x"
            ]),
            [
                "masif-agent",
                "check",
                "--load",
                "install-5m-warn=-10:10",
                "--",
                "-x"
            ]
        );
    }

    #[test]
    fn other_command_lines_are_left_alone() {
        for args in [
            &["masif-agent", "--config", "a.yml"][..],
            &["masif-agent", "-restsock", "x"][..],
            &["masif-agent"][..],
        ] {
            assert_eq!(translated(args), args);
        }
    }

    #[test]
    fn the_plugins_command_line_parses_with_clap() {
        use clap::Parser;
        let args = crate::cli::Args::try_parse_from(
            translate(argv(&[
                "check_masifupgrader_agent",
                "-restsock",
                "/run/a.sock",
                "-resptime-warn",
                "-1:5",
                "-purge-15m-crit=@~:42",
            ]))
            .unwrap(),
        )
        .unwrap();
        let Some(crate::cli::Command::Check(check)) = args.command else {
            panic!("not check: {args:?}");
        };
        assert!(check.original);
        assert_eq!(check.socket.unwrap().to_str(), Some("/run/a.sock"));
        assert_eq!(check.resptime_warn.unwrap().to_string(), "-1:5");
        assert_eq!(check.load.len(), 1);
        assert_eq!(check.load[0].label(), "purge_15m");
        let err = crate::cli::Args::try_parse_from(
            translate(argv(&["check_masifupgrader_agent", "--version"])).unwrap(),
        )
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
    }

    #[test]
    fn a_flag_without_value_is_an_error() {
        let err = translate(argv(&["check_masifupgrader_agent", "-restsock"])).unwrap_err();
        assert_eq!(err, "-restsock needs a value");
    }

    proptest! {
        #[test]
        fn any_argv_translates_or_errs_without_panicking(
            args in proptest::collection::vec("-{0,2}[a-z0-9=:@~-]{0,16}", 0..8)
        ) {
            let mut all = vec!["check_masifupgrader_agent".to_owned()];
            all.extend(args);
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            let _ = translate(argv(&all));
        }
    }
}
