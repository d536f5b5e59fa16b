//! A throwaway MariaDB server of a test's own (`mariadb-install-db` + `mariadbd` in a temporary
//! directory, on a free loopback port), for tests that need server settings the shared server
//! lacks (a statement-based binary log) or that kill and restart the server under a running
//! store (fault injection).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

/// A running (or killed) server; killed when dropped, its directory removed.
pub struct Throwaway {
    dir: TempDir,
    child: Option<Child>,
    /// `mariadbd`'s arguments, to start it again on the same data directory and port.
    args: Vec<String>,
    pub port: u16,
}

/// Where a MariaDB program is: on `PATH`, or in `/usr/sbin` (not on a normal user's `PATH`).
fn find(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{program} not found: install the Debian package mariadb-server"))
}

/// Whether this process runs as root (`mariadbd` then needs `--user=root`).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// Spawns one of the MariaDB tools. Test fixture: the server must be a process of its own.
#[allow(clippy::disallowed_methods)]
fn tool(program: &str, args: &[String], log: &Path) -> Command {
    // Appended to: a restarted server's log follows the killed one's.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("server log file");
    let mut cmd = Command::new(find(program));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log);
    cmd
}

impl Throwaway {
    /// Installs and starts a server with `extra` `mariadbd` arguments; `{dir}` in them is
    /// replaced by the server's directory. Returns once it accepts connections.
    pub async fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let d = dir.path().display().to_string();
        let install_log = dir.path().join("install.log");
        let status = tool(
            "mariadb-install-db",
            &[
                "--no-defaults".into(),
                format!("--datadir={d}/data"),
                "--auth-root-authentication-method=normal".into(),
                "--skip-test-db".into(),
                // Its own temporary files: servers installed at once in a shared /tmp have
                // clashed on the names of the bootstrap's temporary tables.
                format!("--tmpdir={d}"),
            ],
            &install_log,
        )
        .status()
        .expect("running mariadb-install-db");
        assert!(
            status.success(),
            "mariadb-install-db failed: {}",
            std::fs::read_to_string(&install_log).unwrap_or_default()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut args: Vec<String> = vec![
            "--no-defaults".into(),
            format!("--datadir={d}/data"),
            format!("--socket={d}/server.sock"),
            format!("--port={port}"),
            "--bind-address=127.0.0.1".into(),
            "--skip-name-resolve".into(),
            "--innodb-buffer-pool-size=16M".into(),
            format!("--tmpdir={d}"),
        ];
        if running_as_root() {
            args.push("--user=root".into());
        }
        args.extend(extra.iter().map(|a| a.replace("{dir}", &d)));
        let mut server = Self {
            dir,
            child: None,
            args,
            port,
        };
        server.restart().await;
        server
    }

    /// Starts the server (again, after [`Throwaway::kill`]) on the same data directory and
    /// port, and returns once it accepts connections (InnoDB's crash recovery done).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        let server_log = self.dir.path().join("server.log");
        self.child = Some(
            tool("mariadbd", &self.args, &server_log)
                .spawn()
                .expect("starting mariadbd"),
        );
        for _ in 0..600 {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "mariadbd exited ({status}): {}",
                    std::fs::read_to_string(&server_log).unwrap_or_default()
                );
            }
            if let Ok(conn) = mysql_async::Conn::from_url(self.url("")).await {
                let _ = conn.disconnect().await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "mariadbd did not accept connections: {}",
            std::fs::read_to_string(&server_log).unwrap_or_default()
        );
    }

    /// Kills the server with SIGKILL (`kill -9`: no shutdown, InnoDB recovers at the next
    /// start) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// URL of database `db` on this server (`""`: no database).
    pub fn url(&self, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.port)
    }

    /// Stops the server for good (see [`Throwaway::kill`]).
    pub fn stop(&mut self) {
        self.kill();
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        self.stop();
    }
}
