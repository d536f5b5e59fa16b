//! Running the real `masif demo` binary in tests: start it and read its banner, signal it,
//! wait for conditions with a deadline, read a sandbox's dpkg database; a browser for its UI
//! ([`browser`]), /proc readers ([`procs`]), and the whole system in one process ([`world`],
//! with the UI of [`ui`]).

#![allow(dead_code)] // each test binary uses its own part

pub mod browser;
pub mod procs;
pub mod ui;
pub mod world;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Guards against hangs only (nothing asserts how fast anything is): a debug build on a busy
/// two-core machine makes sandboxes and runs apt slowly.
pub const PATIENCE: Duration = Duration::from_secs(300);

/// A running `masif demo` and what its banner said.
pub struct Demo {
    pub child: Child,
    pub ui: String,
    pub master: String,
    pub user: String,
    pub password: String,
    /// The banner's `masif` command line: `masif pending --url URL --token-file FILE`.
    pub cli: String,
    pub workdir: PathBuf,
    stdout: mpsc::Receiver<String>,
}

impl Demo {
    /// Starts `masif demo ARGS` and waits for the banner.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with(None, args)
    }

    /// Starts `masif demo ARGS`, without the archive tools if given, and waits for the banner.
    pub fn start_with(without: Option<&WithoutArchiveTools>, args: &[&str]) -> Self {
        let (mut child, _stderr) = spawn_demo_with(without, args, &[]);
        let (tx, stdout) = mpsc::channel();
        let out = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                println!("demo> {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + PATIENCE;
        let mut banner = BTreeMap::new();
        while !banner.contains_key("Press Ctrl-C to stop.") {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match stdout.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    panic!("no banner from masif demo; status {:?}", child.wait());
                }
            };
            let (key, value) = line.split_once(": ").unwrap_or((line.as_str(), ""));
            banner.insert(key.to_owned(), value.to_owned());
        }
        let ui = banner["UI"].clone();
        assert!(
            ui.starts_with("http://127.0.0.1:") && ui.ends_with('/'),
            "UI line: {ui}"
        );
        let (user, password) = banner["login"]
            .split_once(" / ")
            .expect("login: USER / PASSWORD");
        let master = banner["master"]
            .split_whitespace()
            .next()
            .unwrap()
            .trim_start_matches("https://")
            .to_owned();
        let workdir = banner["work directory"]
            .rsplit_once(" (")
            .expect("work directory: PATH (…)")
            .0
            .into();
        Self {
            ui: ui
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned(),
            master,
            user: user.to_owned(),
            password: password.to_owned(),
            cli: banner["CLI"].clone(),
            workdir,
            stdout,
            child,
        }
    }

    /// Presses Ctrl-C: SIGINT to the demo's whole process group, as a terminal sends it, and
    /// waits for the exit.
    pub fn interrupt(mut self) -> (ExitStatus, Vec<String>) {
        signal_group(self.child.id(), "-INT");
        let status = wait_with_patience(&mut self.child);
        let rest = self.stdout.try_iter().collect();
        (status, rest)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // A failed test must not leave a demo running.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts the demo binary; its stderr (logs) is relayed to the test output and returned, whole,
/// by the thread once the demo closes it.
pub fn spawn_demo(args: &[&str], env: &[(&str, &str)]) -> (Child, std::thread::JoinHandle<String>) {
    spawn_demo_with(None, args, env)
}

/// [`spawn_demo`], without the archive tools if given.
#[allow(clippy::disallowed_methods)] // test fixture: runs the demo binary under test
pub fn spawn_demo_with(
    without: Option<&WithoutArchiveTools>,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Child, std::thread::JoinHandle<String>) {
    use std::os::unix::process::CommandExt;
    let demo = Path::new(env!("CARGO_BIN_EXE_masif"));
    let mut command = match without {
        None => std::process::Command::new(demo),
        Some(without) => without.command(demo),
    };
    command
        // Its own process group, like a job started from a shell.
        .process_group(0)
        .arg("demo")
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(|mut child| {
            let err = child.stderr.take().expect("piped stderr");
            let relay = std::thread::spawn(move || {
                let mut all = String::new();
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    eprintln!("demo! {line}");
                    all.push_str(&line);
                    all.push('\n');
                }
                all
            });
            (child, relay)
        })
        .expect("starting masif demo")
}

/// Sends signal `which` (`-INT`) to the process group led by `pid`.
#[allow(clippy::disallowed_methods)] // test fixture: kill(1) delivers the signal
pub fn signal_group(pid: u32, which: &str) {
    let group = format!("-{pid}");
    let status = std::process::Command::new("kill")
        .args([which, "--", &group])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill {which} -- {group}");
}

pub fn wait_with_patience(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for the demo") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("masif demo did not exit after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after [`PATIENCE`].
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The version of `package` in a dpkg status file, if installed.
pub fn installed_version(status_file: &Path, package: &str) -> Option<String> {
    let status = std::fs::read_to_string(status_file).ok()?;
    status.split("\n\n").find_map(|paragraph| {
        let field = |name: &str| {
            paragraph
                .lines()
                .find_map(|l| l.strip_prefix(name).map(str::trim))
        };
        (field("Package:") == Some(package)
            && field("Status:").is_some_and(|s| s.ends_with(" installed")))
        .then(|| field("Version:").map(str::to_owned))
        .flatten()
    })
}

pub fn sandbox_status(workdir: &Path, agent: &str) -> PathBuf {
    workdir.join(format!("agents/{agent}/sandbox/root/var/lib/dpkg/status"))
}

/// The programs of apt-utils and dpkg-dev that the demo's sandboxes once ran.
pub const ARCHIVE_TOOLS: [&str; 2] = ["apt-ftparchive", "dpkg-scanpackages"];

/// Where they may be installed (`/bin` and `/sbin` may be links into `/usr`).
const ARCHIVE_TOOL_DIRS: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// Makes [`ARCHIVE_TOOLS`] unavailable to a program, as on a fresh Debian with nothing but apt
/// and dpkg, and records every attempt to run them. Each is replaced by a stub that fails
/// loudly and appends its command line to a record: first in `PATH`, and bind-mounted over
/// every installed copy inside a private mount namespace of the program (unshare(1); as root,
/// or with a user namespace otherwise), so neither a `PATH` lookup nor an absolute path reaches
/// the real one. The host sees no change.
pub struct WithoutArchiveTools {
    dir: tempfile::TempDir,
}

impl WithoutArchiveTools {
    pub fn new() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let without = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir(without.stubs()).unwrap();
        for tool in ARCHIVE_TOOLS {
            let stub = without.stubs().join(tool);
            let script = format!(
                "#!/bin/sh\necho \"$0 $*\" >> '{}'\n\
                 echo \"$0: not available (a machine without apt-utils and dpkg-dev)\" >&2\n\
                 exit 127\n",
                without.record().display()
            );
            std::fs::write(&stub, script).unwrap();
            std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        without
    }

    fn stubs(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn record(&self) -> PathBuf {
        self.dir.path().join("calls")
    }

    /// Every call of a stub so far: `PROGRAM ARGS`.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.record())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// A command that runs `program` without the archive tools.
    #[allow(clippy::disallowed_methods)] // test fixture: unshare(1) wraps the program under test
    pub fn command(&self, program: &Path) -> std::process::Command {
        use std::os::unix::fs::MetadataExt;
        let mut script = String::from("set -e\n");
        for tool in ARCHIVE_TOOLS {
            for dir in ARCHIVE_TOOL_DIRS {
                let installed = Path::new(dir).join(tool);
                if installed.exists() {
                    script.push_str(&format!(
                        "mount --bind '{}' '{}'\n",
                        self.stubs().join(tool).display(),
                        installed.display()
                    ));
                }
            }
        }
        script.push_str("exec \"$@\"\n");
        let mut command = std::process::Command::new("unshare");
        command.args(["--mount", "--propagation", "private"]);
        if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
            command.arg("--map-root-user");
        }
        command
            .args(["--", "/bin/sh", "-c", &script, "sh"])
            .arg(program);
        let path = std::env::var("PATH").unwrap_or_default();
        command.env("PATH", format!("{}:{path}", self.stubs().display()));
        command
    }

    /// Proves the stubs stand in for every copy of the tools, by name and by absolute path,
    /// then forgets those calls.
    pub fn assert_unavailable(&self) {
        let mut probe = String::new();
        for tool in ARCHIVE_TOOLS {
            probe.push_str(&format!("{tool} by-name || true\n"));
            for dir in ARCHIVE_TOOL_DIRS {
                probe.push_str(&format!("'{dir}/{tool}' by-path || true\n"));
            }
        }
        let status = self
            .command(Path::new("/bin/sh"))
            .args(["-c", &probe])
            .status()
            .expect("running unshare (util-linux)");
        assert!(status.success(), "unshare failed: {status:?}");
        let calls = self.calls();
        for tool in ARCHIVE_TOOLS {
            assert!(
                calls
                    .iter()
                    .any(|c| c.ends_with(&format!("{tool} by-name"))),
                "{calls:?}"
            );
            for dir in ARCHIVE_TOOL_DIRS {
                let installed = format!("{dir}/{tool}");
                if Path::new(&installed).exists() {
                    assert!(calls.contains(&format!("{installed} by-path")), "{calls:?}");
                }
            }
        }
        std::fs::remove_file(self.record()).unwrap();
    }
}
