//! `masif-agent --config FILE [--check-config]`: parses flags and the configuration, sets up
//! logging and signals, and runs the agent library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use masif_agent::AgentConfig;
use tokio::signal::unix::{signal, SignalKind};

/// The Masif Upgrader agent.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The YAML configuration file.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/masif-upgrader/agent.yml"
    )]
    config: PathBuf,
    /// Validate the configuration (and the TLS files it names), print the problems, exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match AgentConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("masif-agent: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.check_config {
        let problems = masif_agent::check(&config);
        for p in &problems {
            eprintln!("masif-agent: {}: {p}", args.config.display());
        }
        if problems.is_empty() {
            println!("{}: OK", args.config.display());
            return ExitCode::SUCCESS;
        }
        return ExitCode::FAILURE;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("MASIF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(config.log_level.directive()));
    // Colours only on a terminal: under systemd the journal gets plain text.
    let ansi = std::io::stdout().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .init();
    // One worker thread is plenty: the agent mostly waits for apt and the network.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("masif-agent: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                return Err(anyhow::anyhow!("installing signal handlers: {e}"))
            }
        };
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping (after a running apt/dpkg call)"),
                _ = int.recv() => tracing::info!("SIGINT: stopping (after a running apt/dpkg call)"),
            }
        };
        masif_agent::run(config, shutdown).await.map_err(anyhow::Error::from)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("masif-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
