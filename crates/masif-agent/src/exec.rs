//! The one wrapper through which the agent and its sandbox fixtures run external programs:
//! a fixed environment (`LC_ALL=C`, a fixed `PATH`) plus configured extra variables, its own
//! process group, a timeout that kills the whole group, bounded output capture, and logging.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout};

/// `PATH` of every child: dpkg needs it for its helpers and maintainer scripts.
pub const FIXED_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Most bytes kept of one output stream; the rest is read and dropped.
pub const MAX_OUTPUT_BYTES: usize = 8 << 20;

/// How long to wait for the output pipes to close after the child exited (a daemon started
/// by a maintainer script may keep them open).
const PIPE_GRACE: Duration = Duration::from_secs(3);

/// Why a program could not be run to completion.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("waiting for {program}: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} did not finish within {} s and was killed", .timeout.as_secs())]
    Timeout { program: String, timeout: Duration },
}

/// Runs programs with a fixed environment plus the configured extra variables.
#[derive(Debug, Clone, Default)]
pub struct Runner {
    env: Vec<(OsString, OsString)>,
}

impl Runner {
    /// A runner adding `env` to the fixed environment of every child (e.g. `APT_CONFIG`).
    pub fn new<K: Into<OsString>, V: Into<OsString>>(
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            env: env.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        }
    }

    /// The extra environment of this runner.
    pub fn env(&self) -> &[(OsString, OsString)] {
        &self.env
    }

    /// Starts describing one invocation of `program`.
    pub fn command(&self, program: impl AsRef<Path>) -> Invocation<'_> {
        Invocation {
            runner: self,
            program: program.as_ref().to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            timeout: Duration::from_secs(600),
            current_dir: None,
        }
    }
}

/// One command line to run: program, arguments, per-call environment, timeout.
#[derive(Debug)]
pub struct Invocation<'a> {
    runner: &'a Runner,
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    timeout: Duration,
    current_dir: Option<PathBuf>,
}

/// What a finished program left behind.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// Some output was dropped (over [`MAX_OUTPUT_BYTES`], or the pipes stayed open).
    pub truncated: bool,
}

impl Output {
    /// The exit code, `None` if the program was killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Exit code or signal, for messages.
    pub fn describe_status(&self) -> String {
        match self.status.code() {
            Some(code) => format!("exit code {code}"),
            None => format!("{}", self.status),
        }
    }
}

impl<'a> Invocation<'a> {
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// An extra variable for this call only (after the runner's, so it wins).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    fn display(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    fn spawn_child(&self) -> Result<Child, ExecError> {
        // The only place that spawns processes: everything goes through this wrapper.
        #[allow(clippy::disallowed_methods)]
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .env("LC_ALL", "C")
            .env("PATH", FIXED_PATH);
        for (k, v) in self.runner.env.iter().chain(&self.env) {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.current_dir {
            cmd.current_dir(dir);
        }
        // Own process group: a Ctrl-C meant for the agent does not hit apt/dpkg, and a
        // timeout can kill the whole group.
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        cmd.spawn().map_err(|source| ExecError::Spawn {
            program: self.program.display().to_string(),
            source,
        })
    }

    /// Runs the program to completion (or until the timeout kills its process group).
    pub async fn run(self) -> Result<Output, ExecError> {
        let line = self.display();
        tracing::debug!(command = %line, "running");
        let started = Instant::now();
        let mut child = self.spawn_child()?;
        let stdout = Capture::start(child.stdout.take());
        let stderr = Capture::start(child.stderr.take());
        let waited = tokio::time::timeout(self.timeout, child.wait()).await;
        let status = match waited {
            Ok(Ok(status)) => status,
            Ok(Err(source)) => {
                return Err(ExecError::Wait {
                    program: self.program.display().to_string(),
                    source,
                })
            }
            Err(_) => {
                tracing::error!(command = %line, timeout = ?self.timeout, "timed out; killing its process group");
                self.kill_group(&mut child).await;
                return Err(ExecError::Timeout {
                    program: self.program.display().to_string(),
                    timeout: self.timeout,
                });
            }
        };
        let grace = tokio::time::Instant::now() + PIPE_GRACE;
        let ((stdout, t1), (stderr, t2)) = tokio::join!(stdout.finish(grace), stderr.finish(grace));
        let output = Output {
            status,
            stdout,
            stderr,
            elapsed: started.elapsed(),
            truncated: t1 || t2,
        };
        tracing::debug!(
            command = %line,
            status = %output.describe_status(),
            elapsed_ms = output.elapsed.as_millis() as u64,
            "finished"
        );
        Ok(output)
    }

    /// Starts the program and returns it running, for fixtures that hold something (a lock)
    /// while the test goes on. It is killed when the handle is dropped.
    pub async fn spawn(self) -> Result<Running, ExecError> {
        tracing::debug!(command = %self.display(), "starting");
        let mut child = self.spawn_child()?;
        let stdout = child.stdout.take().map(BufReader::new);
        Ok(Running {
            child,
            stdout,
            program: self.program.display().to_string(),
        })
    }

    async fn kill_group(&self, child: &mut Child) {
        if let Some(pid) = child.id() {
            // No unsafe here: kill(1) reaches the whole group (apt, dpkg, scripts).
            let kill = self
                .runner
                .command("/bin/kill")
                .args(["-s", "KILL", "--", &format!("-{pid}")])
                .timeout(Duration::from_secs(10));
            if let Ok(mut k) = kill.spawn_child() {
                let _ = k.wait().await;
            }
        }
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

/// A program started with [`Invocation::spawn`].
#[derive(Debug)]
pub struct Running {
    child: Child,
    stdout: Option<BufReader<ChildStdout>>,
    program: String,
}

impl Running {
    /// The next line the program writes to stdout, `None` at end of output.
    pub async fn next_line(&mut self) -> Option<String> {
        let reader = self.stdout.as_mut()?;
        let mut line = String::new();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches('\n').to_owned()),
        }
    }

    /// The process id (also its process group id), while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills the program and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Waits for the program to end on its own.
    pub async fn wait(mut self) -> Result<ExitStatus, ExecError> {
        self.child.wait().await.map_err(|source| ExecError::Wait {
            program: self.program.clone(),
            source,
        })
    }
}

/// Reads one output stream in the background into a bounded buffer.
struct Capture {
    buf: Arc<Mutex<(Vec<u8>, bool)>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Capture {
    fn start(stream: Option<impl AsyncRead + Unpin + Send + 'static>) -> Self {
        let buf = Arc::new(Mutex::new((Vec::new(), false)));
        let task = stream.map(|mut stream| {
            let buf = Arc::clone(&buf);
            tokio::spawn(async move {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = stream.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    let mut b = buf.lock().expect("capture lock");
                    let room = MAX_OUTPUT_BYTES.saturating_sub(b.0.len());
                    b.0.extend_from_slice(&chunk[..n.min(room)]);
                    if n > room {
                        b.1 = true;
                    }
                }
            })
        });
        Self { buf, task }
    }

    /// The captured text and whether any was dropped.
    async fn finish(mut self, deadline: tokio::time::Instant) -> (String, bool) {
        let mut incomplete = false;
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
                incomplete = true;
            }
        }
        let b = self.buf.lock().expect("capture lock");
        (
            String::from_utf8_lossy(&b.0).into_owned(),
            b.1 || incomplete,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn environment_is_fixed_plus_configured() {
        let runner = Runner::new([("APT_CONFIG", "/x/apt.conf")]);
        let out = runner
            .command("/usr/bin/env")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .run()
            .await
            .unwrap();
        assert!(out.success());
        let mut lines: Vec<&str> = out.stdout.lines().collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "APT_CONFIG=/x/apt.conf",
                "DEBIAN_FRONTEND=noninteractive",
                "LC_ALL=C",
                &format!("PATH={FIXED_PATH}"),
            ]
        );
    }

    #[tokio::test]
    async fn exit_code_and_both_streams_are_captured() {
        let out = Runner::default()
            .command("/bin/sh")
            .args(["-c", "echo out; echo err >&2; exit 100"])
            .run()
            .await
            .unwrap();
        assert_eq!(out.code(), Some(100));
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert!(!out.truncated);
    }

    #[tokio::test]
    async fn a_missing_program_is_a_clear_error() {
        let err = Runner::default()
            .command("/nonexistent/apt-get")
            .run()
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("cannot run /nonexistent/apt-get"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("grandchild-survived");
        // The grandchild would create the marker after 2 s unless the group is killed.
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let err = Runner::default()
            .command("/bin/sh")
            .args(["-c", &script])
            .timeout(Duration::from_millis(300))
            .run()
            .await
            .unwrap_err();
        assert!(matches!(err, ExecError::Timeout { .. }), "{err}");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "the grandchild outlived the timeout");
    }

    #[tokio::test]
    async fn huge_output_is_bounded() {
        let out = Runner::default()
            .command("/bin/sh")
            .args([
                "-c",
                &format!("head -c {} /dev/zero", MAX_OUTPUT_BYTES + 100_000),
            ])
            .run()
            .await
            .unwrap();
        assert!(out.success());
        assert!(out.truncated);
        assert_eq!(out.stdout.len(), MAX_OUTPUT_BYTES);
    }

    #[tokio::test]
    async fn a_pipe_held_open_by_a_daemon_does_not_hang_the_call() {
        let out = Runner::default()
            .command("/bin/sh")
            .args(["-c", "echo started; sleep 6 & exit 0"])
            .run()
            .await
            .unwrap();
        assert!(out.success());
        assert_eq!(out.stdout, "started\n");
        assert!(out.truncated, "output marked incomplete");
    }
}
