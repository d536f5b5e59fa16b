//! The `masif-agent` command line, here so that the man page generator can read it.

use std::path::PathBuf;

/// The Masif Upgrader agent.
#[derive(Debug, clap::Parser)]
#[command(name = "masif-agent", version, about, after_long_help = masif_daemon::logging::ENV_HELP)]
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
}
