//! The `masif-master` command line, here so that the man page generator can read it.

use std::path::PathBuf;

/// The Masif Upgrader master: receives agents' reports over mutual TLS.
#[derive(Debug, clap::Parser)]
#[command(name = "masif-master", version, after_long_help = masif_daemon::logging::ENV_HELP)]
pub struct Args {
    /// YAML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Validate the configuration (and the TLS files it names), print problems, exit.
    #[arg(long)]
    pub check_config: bool,
}
