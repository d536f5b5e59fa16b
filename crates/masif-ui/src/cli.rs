//! The `masif-ui` command line, here so that the man page generator can read it.

use std::path::PathBuf;

/// Masif Upgrader browser approval UI.
#[derive(Debug, clap::Parser)]
#[command(name = "masif-ui", version, after_long_help = masif_daemon::logging::ENV_HELP)]
pub struct Args {
    /// YAML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Validate the configuration, print every problem and exit (non-zero on any).
    #[arg(long)]
    pub check_config: bool,
}
