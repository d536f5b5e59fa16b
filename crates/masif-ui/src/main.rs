//! `masif-ui --config FILE [--check-config]`: flags, configuration, logging, then the
//! library until SIGTERM or SIGINT.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use masif_daemon::{config, logging, shutdown};
use masif_ui::{cli::Args, config::Config};

fn main() -> ExitCode {
    let args = Args::parse();
    let config: Config = match config::load_or_report(&args.config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if args.check_config {
        // Everything the UI needs (htpasswd, TLS files) was loaded with the file.
        return config::report_check(&args.config, &[]);
    }
    logging::init(config.log_level.directive(), logging::Output::Stdout);
    let result = tokio::runtime::Runtime::new()
        .context("starting the runtime")
        .and_then(|runtime| {
            runtime.block_on(async {
                let shutdown = shutdown::signal_future().context("installing signal handlers")?;
                masif_ui::run(config, shutdown).await
            })
        });
    logging::exit_code("masif-ui", result)
}
