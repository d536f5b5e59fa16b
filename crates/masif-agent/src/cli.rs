//! The `masif-agent` command line, here so that the man page generator can read it.

use std::path::PathBuf;

use crate::check::CheckArgs;

/// The Masif Upgrader agent.
#[derive(Debug, clap::Parser)]
#[command(
    name = "masif-agent",
    version,
    about,
    after_long_help = masif_daemon::logging::ENV_HELP,
    args_conflicts_with_subcommands = true,
    propagate_version = true
)]
pub struct Args {
    /// The YAML configuration file.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/masif-upgrader/agent.yml"
    )]
    pub config: PathBuf,
    /// Validate the configuration (and the TLS files it names), print the problems, exit.
    #[arg(long)]
    pub check_config: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do instead of running the agent.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check the running agent as a Nagios/Icinga plugin (also installed as
    /// check_masifupgrader_agent).
    Check(CheckArgs),
}
