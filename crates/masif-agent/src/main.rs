//! `masif-agent --config FILE [--check-config]`: flags, configuration, logging, then the
//! library until SIGTERM or SIGINT (a running apt/dpkg call is finished first).

use std::process::ExitCode;

use anyhow::Context;
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
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
        .and_then(|runtime| {
            runtime.block_on(async {
                let shutdown = shutdown::signal_future().context("installing signal handlers")?;
                Ok(masif_agent::run(config, shutdown).await?)
            })
        });
    logging::exit_code("masif-agent", result)
}
