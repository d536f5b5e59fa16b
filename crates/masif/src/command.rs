//! The `masif` command line: `masif demo` (with the `demo` feature) and the subcommands on the
//! UI's JSON API; here, not in `main.rs`, so that the man page generator can read it.

#[cfg(feature = "demo")]
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The `masif` command.
#[derive(Parser)]
#[command(
    name = "masif",
    about = "Masif Upgrader: demo and admin commands",
    version
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    #[cfg(feature = "demo")]
    /// Run master, UI and agents with sandboxed fake packages on loopback until Ctrl-C.
    Demo {
        /// How many agents (each with its own sandbox apt root).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=crate::demo::MAX_AGENTS as i64))]
        agents: u16,
        /// Port of the UI on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = crate::demo::DEFAULT_UI_PORT)]
        port: u16,
        /// Work in DIR (created if needed) and keep it afterwards, instead of a temporary
        /// directory that is removed at exit.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
    },
    #[command(flatten)]
    Api(Box<crate::cli::ApiCommand>),
}
