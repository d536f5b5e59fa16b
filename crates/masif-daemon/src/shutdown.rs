//! The shutdown signal every daemon stops on: SIGTERM (systemd) or SIGINT (Ctrl-C).

use std::future::Future;
use std::pin::Pin;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};

/// The shutdown signal as a daemon's library takes it.
pub type Signal = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What every daemon's `main` does once its configuration is loaded: builds `runtime`,
/// installs the signal handlers inside it, and runs `daemon` until it returns.
pub fn run_until_signal<F, Fut>(
    mut runtime: tokio::runtime::Builder,
    daemon: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Signal) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let shutdown = signal_future().context("installing signal handlers")?;
        daemon(Box::pin(shutdown)).await
    })
}

/// Installs the SIGTERM and SIGINT handlers now (call it inside the runtime, before serving,
/// so an early signal is not lost) and returns a future that completes on the first of them.
pub fn signal_future() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
    })
}
