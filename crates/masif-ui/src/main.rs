//! `masif-ui --config FILE [--check-config]`: the browser approval UI.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "masif-ui",
    about = "Masif Upgrader browser approval UI",
    version
)]
struct Cli {
    /// YAML configuration file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Validate the configuration, print every problem and exit (non-zero on any).
    #[arg(long)]
    check_config: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match masif_ui::config::load(&cli.config) {
        Ok(c) => c,
        Err(problems) => {
            for p in problems {
                eprintln!("{p}");
            }
            return std::process::ExitCode::FAILURE;
        }
    };
    if cli.check_config {
        println!("{}: OK", cli.config.display());
        return std::process::ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MASIF_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(config.log_level)),
        )
        .init();
    match run(config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("masif-ui: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(config: masif_ui::config::Config) -> anyhow::Result<()> {
    let store = masif_store::open(&config.db_url)
        .await
        .with_context(|| format!("db.url {}", masif_store::redact_url(&config.db_url)))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen {}", config.listen))?;
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
    };
    masif_ui::serve_with_listener(config.settings, store, listener, shutdown).await?;
    Ok(())
}
