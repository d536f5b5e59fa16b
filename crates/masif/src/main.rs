//! `masif demo [--agents N] [--port P] [--keep DIR]`: the whole system on one machine;
//! `masif pending|approve|approvals|revoke|agents|agent|audit|check-fleet`: the command line on
//! the UI's JSON API (see `masif::cli`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "masif",
    about = "Masif Upgrader: demo and admin commands",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run master, UI and agents with sandboxed fake packages on loopback until Ctrl-C.
    Demo {
        /// How many agents (each with its own sandbox apt root).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=masif::demo::MAX_AGENTS as i64))]
        agents: u16,
        /// Port of the UI on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = masif::demo::DEFAULT_UI_PORT)]
        port: u16,
        /// Work in DIR (created if needed) and keep it afterwards, instead of a temporary
        /// directory that is removed at exit.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
    },
    #[command(flatten)]
    Api(Box<masif::cli::ApiCommand>),
}

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
    let command = match cli.command {
        Command::Api(command) => {
            let outcome = masif::cli::run(*command);
            let _ = std::io::stdout().write_all(outcome.stdout.as_bytes());
            let _ = std::io::stderr().write_all(outcome.stderr.as_bytes());
            return ExitCode::from(outcome.code);
        }
        Command::Demo { agents, port, keep } => (agents, port, keep),
    };
    masif_daemon::logging::init(
        "warn,masif::demo=info",
        masif_daemon::logging::Output::Stderr,
    );
    let (agents, port, keep) = command;
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
