//! `masif demo [--agents N] [--port P] [--keep DIR]`: the whole system on one machine.

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    masif_daemon::logging::init(
        "warn,masif::demo=info",
        masif_daemon::logging::Output::Stderr,
    );
    let result = match cli.command {
        Command::Demo { agents, port, keep } => {
            masif::demo::run_until_signal(masif::demo::DemoOptions {
                agents: usize::from(agents),
                port,
                keep,
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("masif: {e:#}");
            ExitCode::FAILURE
        }
    }
}
