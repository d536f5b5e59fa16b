//! `masif-master --config FILE [--check-config]`: flags, configuration, logging, then the
//! library until SIGTERM or SIGINT.

use std::process::ExitCode;

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
    let result =
        shutdown::run_until_signal(tokio::runtime::Builder::new_multi_thread(), |shutdown| {
            masif_master::run(config, shutdown)
        });
    logging::exit_code("masif-master", result)
}
