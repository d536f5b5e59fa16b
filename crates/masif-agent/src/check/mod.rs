//! `masif-agent check`: the Nagios/Icinga plugin reading the local agent's monitoring socket
//! (`/v1/status`, `/v1/load`). Also the original's `check_masifupgrader_agent` (`legacy`).
//! Every failure to get a sound answer (no socket, no permission, a timeout, garbage) is
//! UNKNOWN.

mod args;
mod judge;
mod legacy;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use args::{CheckArgs, LoadThreshold, Verdict};
pub use legacy::{is_check, translate, ORIGINAL_NAME};

use crate::config::{AgentConfig, DEFAULT_SOCKET};
use crate::plugin::{render, Status};
use crate::status::{unix_now, StatusReport};
use judge::{judge, Limits, LoadFigures};

/// The name in the plugin's output line.
const NAME: &str = "MASIF-AGENT";

/// Runs the check: the exit code (0 to 3) and what to print on standard output.
pub fn run(args: &CheckArgs) -> (u8, String) {
    let limits = Limits::from_args(args);
    let outcome = socket(args).and_then(|socket| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?;
        let timeout = Duration::from_secs_f64(args.timeout);
        let (status, load, resptime) = runtime.block_on(ask(&socket, timeout))?;
        judge(&status, &load, resptime, unix_now(), &limits)
    });
    match outcome {
        Ok(j) => (
            j.status.exit_code(),
            render(NAME, j.status, &j.summary, &j.perf, &j.details),
        ),
        Err(message) => unknown(&message),
    }
}

/// An UNKNOWN result saying `message`.
pub fn unknown(message: &str) -> (u8, String) {
    let status = Status::Unknown;
    (status.exit_code(), render(NAME, status, message, &[], &[]))
}

/// `--socket`, else the `socket` of `--config`, else (no such file) the default.
fn socket(args: &CheckArgs) -> Result<PathBuf, String> {
    if let Some(socket) = &args.socket {
        return Ok(socket.clone());
    }
    if !args.config.exists() {
        return Ok(PathBuf::from(DEFAULT_SOCKET));
    }
    AgentConfig::load(&args.config)
        .map(|c| c.socket)
        .map_err(|e| {
            format!(
                "{} (or give --socket)",
                e.lines().collect::<Vec<_>>().join("; ")
            )
        })
}

/// Both answers and the seconds they took together, all within `timeout`.
async fn ask(
    socket: &std::path::Path,
    timeout: Duration,
) -> Result<(StatusReport, LoadFigures, f64), String> {
    let start = Instant::now();
    let query = |path| crate::api::query_within(socket, path, timeout);
    let both =
        async { Ok::<_, crate::Error>((query("/v1/status").await?, query("/v1/load").await?)) };
    let (status, load) = tokio::time::timeout(timeout, both)
        .await
        .map_err(|_| {
            format!(
                "monitoring socket {}: no answer within {} s",
                socket.display(),
                timeout.as_secs_f64()
            )
        })?
        .map_err(|e| hint(e.to_string()))?;
    let resptime = start.elapsed().as_secs_f64();
    let status: StatusReport = serde_json::from_value(status)
        .map_err(|e| format!("/v1/status on {}: unexpected answer: {e}", socket.display()))?;
    let load: LoadFigures = serde_json::from_value(load)
        .map_err(|e| format!("/v1/load on {}: unexpected answer: {e}", socket.display()))?;
    Ok((status, load, resptime))
}

/// Adds what to do about the usual failures.
fn hint(message: String) -> String {
    if message.contains("No such file") || message.contains("Connection refused") {
        format!("{message} (is masif-upgrader-agent running?)")
    } else if message.contains("Permission denied") {
        format!("{message} (the socket is for root: run the check as root, e.g. with sudo)")
    } else {
        message
    }
}
