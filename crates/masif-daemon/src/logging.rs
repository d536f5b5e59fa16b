//! Logging set-up: one `tracing` subscriber per process, filtered by the configured level or `MASIF_LOG`.

use std::io::IsTerminal;
use std::process::ExitCode;

use serde::Deserialize;

/// The environment variable that overrides the configured level with any `tracing` filter
/// (`MASIF_LOG=debug`, `MASIF_LOG=warn,masif_master=debug`).
pub const ENV: &str = "MASIF_LOG";

/// What every daemon's `--help` (and man page, as its ENVIRONMENT section) says about [`ENV`].
pub const ENV_HELP: &str =
    "MASIF_LOG: a tracing filter (e.g. debug, or warn,masif_master=debug) that \
overrides log.level of the configuration file.";

/// `log.level` of every daemon's configuration file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    /// `warn` is accepted too.
    #[serde(alias = "warn")]
    Warning,
    #[default]
    Info,
    Debug,
}

impl LogLevel {
    /// The matching `tracing` filter directive (`warning` is `warn` there).
    pub fn directive(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warning => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Daemons: under systemd, stdout goes to the journal.
    Stdout,
    /// Commands whose stdout is their result.
    Stderr,
}

/// Installs the process's subscriber: the filter in `MASIF_LOG` if it is set and valid,
/// `default` (a `tracing` filter, e.g. [`LogLevel::directive`]) otherwise; ANSI colours only
/// when `output` is a terminal, so the journal gets plain text.
pub fn init(default: &str, output: Output) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(ENV)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match output {
        Output::Stdout => builder
            .with_ansi(std::io::stdout().is_terminal())
            .with_writer(std::io::stdout)
            .init(),
        Output::Stderr => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
    }
}

/// For a daemon's `main`: success, or the error logged and printed on stderr (`PROGRAM:
/// ERROR: CAUSE…`, for when logging goes elsewhere) and a failure.
pub fn exit_code(program: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("{program}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_as_the_yaml_spells_them() {
        for (text, level, directive) in [
            ("error", LogLevel::Error, "error"),
            ("warning", LogLevel::Warning, "warn"),
            ("warn", LogLevel::Warning, "warn"),
            ("info", LogLevel::Info, "info"),
            ("debug", LogLevel::Debug, "debug"),
        ] {
            let parsed: LogLevel = serde_yaml::from_str(text).unwrap();
            assert_eq!(parsed, level);
            assert_eq!(level.directive(), directive);
        }
        assert_eq!(LogLevel::default(), LogLevel::Info);
    }

    #[test]
    fn other_levels_are_refused_naming_the_choices() {
        for bad in ["loud", "INFO", "\"\"", "trace", "3", "[info]"] {
            let e = serde_yaml::from_str::<LogLevel>(bad)
                .unwrap_err()
                .to_string();
            assert!(bad == "[info]" || e.contains("warning"), "{bad}: {e}");
        }
    }
}
