//! `masif-master --config FILE [--check-config]`: flags, configuration, logging, then the
//! library until SIGTERM or SIGINT.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use masif_daemon::{config, logging, shutdown};
use masif_master::{cli::Args, MasterConfig};

/// glibc's malloc spends much of a busy master's time consolidating the small blocks every
/// request frees (`malloc_consolidate` under `perf`); mimalloc's per-thread free lists do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    let config: MasterConfig = match config::load_or_report(&args.config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if args.check_config {
        return config::report_check(&args.config, &config.check());
    }
    logging::init(config.log_level.directive(), logging::Output::Stdout);
    let result = tokio::runtime::Runtime::new()
        .context("starting the runtime")
        .and_then(|runtime| {
            runtime.block_on(async {
                let shutdown = shutdown::signal_future().context("installing signal handlers")?;
                masif_master::run(config, shutdown).await
            })
        });
    logging::exit_code("masif-master", result)
}
