//! `masif-agent --config FILE [--check-config]`: flags, configuration, logging, then the
//! library until SIGTERM or SIGINT (a running apt/dpkg call is finished first).

use std::process::ExitCode;

use clap::Parser;
use masif_agent::{cli::Args, AgentConfig};
use masif_daemon::{config, logging, shutdown};

fn main() -> ExitCode {
    let args = Args::parse();
    let config: AgentConfig = match config::load_or_report(&args.config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if args.check_config {
        return config::report_check(&args.config, &masif_agent::check(&config));
    }
    logging::init(config.log_level.directive(), logging::Output::Stdout);
    // One worker thread is plenty: the agent mostly waits for apt and the network.
    let result = shutdown::run_until_signal(
        tokio::runtime::Builder::new_current_thread(),
        |shutdown| async { Ok(masif_agent::run(config, shutdown).await?) },
    );
    logging::exit_code("masif-agent", result)
}
