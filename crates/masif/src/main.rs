//! `masif demo [--agents N] [--port P] [--keep DIR]`: the whole system on one machine;
//! `masif pending|approve|approvals|revoke|agents|agent|audit|check-fleet`: the command line on
//! the UI's JSON API (see `masif::cli`).

use std::io::Write;
#[cfg(feature = "demo")]
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use masif::command::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let _ = e.print();
            // A monitoring plugin's usage problem is UNKNOWN (3), not CRITICAL (clap's 2).
            let plugin = std::env::args().nth(1).as_deref() == Some("check-fleet");
            return ExitCode::from(if plugin { 3 } else { masif::cli::EXIT_USAGE });
        }
    };
    match cli.command {
        Command::Api(command) => {
            let outcome = masif::cli::run(*command);
            let _ = std::io::stdout().write_all(outcome.stdout.as_bytes());
            let _ = std::io::stderr().write_all(outcome.stderr.as_bytes());
            ExitCode::from(outcome.code)
        }
        #[cfg(feature = "demo")]
        Command::Demo { agents, port, keep } => demo(agents, port, keep),
    }
}

/// `masif demo`: until Ctrl-C.
#[cfg(feature = "demo")]
fn demo(agents: u16, port: u16, keep: Option<PathBuf>) -> ExitCode {
    masif_daemon::logging::init(
        "warn,masif::demo=info",
        masif_daemon::logging::Output::Stderr,
    );
    match masif::demo::run_until_signal(masif::demo::DemoOptions {
        agents: usize::from(agents),
        port,
        keep,
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("masif: {e:#}");
            ExitCode::FAILURE
        }
    }
}
