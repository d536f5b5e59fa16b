//! `masif-master --config FILE [--check-config]`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use masif_master::MasterConfig;

/// glibc's malloc spends much of a busy master's time consolidating the small blocks every
/// request frees (`malloc_consolidate` under `perf`); mimalloc's per-thread free lists do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Masif Upgrader master: receives agents' reports over mutual TLS.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// YAML configuration file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Validate the configuration (and the TLS files it names), print problems, exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match MasterConfig::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("masif-master: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MASIF_LOG")
                .unwrap_or_else(|_| config.log.level.as_filter().into()),
        )
        .init();
    if args.check_config {
        return match config
            .tls
            .resolve(masif_pki::Role::Master)
            .and_then(|f| masif_pki::server_config(&f).map(|_| ()))
        {
            Ok(()) => {
                println!("{}: OK", args.config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("masif-master: {}: tls: {e:#}", args.config.display());
                ExitCode::FAILURE
            }
        };
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(masif_master::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("masif-master: {e:#}");
            ExitCode::FAILURE
        }
    }
}
