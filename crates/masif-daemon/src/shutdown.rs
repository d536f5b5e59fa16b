//! The shutdown signal every daemon stops on: SIGTERM (systemd) or SIGINT (Ctrl-C).

use std::future::Future;

use tokio::signal::unix::{signal, SignalKind};

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
