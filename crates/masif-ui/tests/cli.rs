//! The `masif-ui` binary's command line: `--check-config` reports every problem with file and
//! key and exits non-zero; a good file passes; a missing file is a clear error.

mod common;

use std::process::Output;

// Test fixture: runs the binary under test.
#[allow(clippy::disallowed_methods)]
fn masif_ui(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_masif-ui"))
        .args(args)
        .output()
        .expect("run masif-ui")
}

#[test]
fn check_config_accepts_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = common::htpasswd_file();
    let path = dir.path().join("ui.yml");
    std::fs::write(
        &path,
        format!(
            "listen: \"127.0.0.1:8151\"\ndb: {{ url: \"mysql://masif_ui:secret@127.0.0.1:3306/masif\" }}\n\
             auth:\n  htpasswd: {}\nlog: {{ level: info }}\n",
            htpasswd.path().display()
        ),
    )
    .unwrap();
    let out = masif_ui(&["--config", path.to_str().unwrap(), "--check-config"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

#[test]
fn check_config_names_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ui.yml");
    std::fs::write(
        &path,
        "listen: \"nowhere\"\ndb: { url: \"mysql://u:hunter2@h/db\" }\n\
         auth: { htpasswd: /nonexistent/ui.htpasswd }\nlog: { level: chatty }\noffline_after: 10\n",
    )
    .unwrap();
    let out = masif_ui(&["--config", path.to_str().unwrap(), "--check-config"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    for key in ["listen", "auth.htpasswd", "log.level", "offline_after"] {
        assert!(err.contains(&format!("{file}: {key}: ")), "{key} in {err}");
    }
    assert!(!err.contains("hunter2"), "{err}");

    std::fs::write(&path, "listen: \"127.0.0.1:1\"\nlisten_port: 3\n").unwrap();
    let out = masif_ui(&["--config", path.to_str().unwrap(), "--check-config"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&file) && err.contains("listen_port"), "{err}");

    let out = masif_ui(&["--config", "/nonexistent/ui.yml", "--check-config"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ui.yml: cannot read"));
}

/// Start-up warns once per user whose bcrypt cost is below 10, naming the fix.
#[tokio::test]
async fn start_up_warns_about_weak_bcrypt_costs() {
    use std::io::Write;
    let fx = common::Fixture::new("ui_weak_bcrypt").await;
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("ui.htpasswd");
    let mut f = std::fs::File::create(&htpasswd).unwrap();
    writeln!(f, "weak:{}", bcrypt::hash("pw", 4).unwrap()).unwrap();
    writeln!(f, "strong:{}", bcrypt::hash("pw", 10).unwrap()).unwrap();
    let path = dir.path().join("ui.yml");
    std::fs::write(
        &path,
        format!(
            "listen: \"127.0.0.1:0\"\ndb: {{ url: \"{}\" }}\nauth: {{ htpasswd: {} }}\n",
            fx.db.url(),
            htpasswd.display()
        ),
    )
    .unwrap();
    let (running, log) = start_ui(&path);
    drop(running);
    let warnings: Vec<_> = log.iter().filter(|l| l.contains("bcrypt cost")).collect();
    assert_eq!(warnings.len(), 1, "{log:#?}");
    assert!(
        warnings[0].contains("WARN")
            && warnings[0].contains("\"weak\" has bcrypt cost 4")
            && warnings[0].contains("htpasswd -B -C 12"),
        "{log:#?}"
    );
}

/// `metrics_listen` in ui.yml: the running binary serves the fleet's metrics there.
#[tokio::test]
async fn metrics_listen_serves_the_fleet_metrics() {
    let fx = common::Fixture::new("ui_metrics_binary").await;
    fx.report("web-1", vec![common::install("nginx", "1.0")])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = common::htpasswd_file();
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = dir.path().join("ui.yml");
    std::fs::write(
        &path,
        format!(
            "listen: \"127.0.0.1:0\"\ndb: {{ url: \"{}\" }}\nauth: {{ htpasswd: {} }}\n\
             metrics_listen: \"127.0.0.1:{metrics_port}\"\n",
            fx.db.url(),
            htpasswd.path().display()
        ),
    )
    .unwrap();
    let (running, _log) = start_ui(&path);
    let addr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let metrics = masif_testkit::scrape::scrape(addr).await;
    drop(running);
    assert_eq!(metrics.value("masif_agents", &[]), 1.0);
    assert_eq!(
        metrics.value("masif_pending_tasks", &[("action", "install")]),
        1.0
    );
}

/// The running UI checks the pending summary when it starts (then every
/// `summary_check_interval`) and corrects the counts that writes past the store made wrong,
/// saying so in its log.
#[tokio::test]
async fn the_pending_summary_is_checked_and_corrected_at_start() {
    let fx = common::Fixture::new("ui_summary_check").await;
    for name in ["web-1", "web-2"] {
        fx.report(name, vec![common::install("nginx", "1.0")]).await;
    }
    let agents = "SELECT COALESCE(SUM(agents), 0) FROM pending_package_summary WHERE action = ''";
    assert_eq!(fx.count(agents).await, 2);
    // What the original UI's approval does: the pending rows deleted, past the store.
    fx.rows("DELETE FROM task WHERE approved = 0").await;
    assert_eq!(fx.count(agents).await, 2, "the summary changed by itself");
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = common::htpasswd_file();
    let path = dir.path().join("ui.yml");
    std::fs::write(
        &path,
        format!(
            "listen: \"127.0.0.1:0\"\ndb: {{ url: \"{}\" }}\nauth: {{ htpasswd: {} }}\n\
             summary_check_interval: 60\n",
            fx.db.url(),
            htpasswd.path().display()
        ),
    )
    .unwrap();
    let (running, log) = start_ui_until(&path, "pending summary");
    drop(running);
    let last = log.last().unwrap();
    assert!(
        last.contains("WARN") && last.contains("3 counts were wrong and are corrected"),
        "{log:#?}"
    );
    assert_eq!(fx.count(agents).await, 0);
    // No key left: the UI's corrections and the fixture's counts sit in rows of their own
    // slots, and sum to 0.
    let keys = "SELECT COUNT(*) FROM (SELECT package FROM pending_summary
                 GROUP BY package, action, to_version HAVING SUM(agents) <> 0) k";
    assert_eq!(fx.count(keys).await, 0);
}

/// A running `masif-ui`, killed when dropped (also when the test fails).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary under test with `config` and reads its log until it listens.
fn start_ui(config: &std::path::Path) -> (Running, Vec<String>) {
    start_ui_until(config, "UI listening on")
}

/// Starts the binary under test with `config` and reads its log up to the first line that
/// contains `awaited`.
fn start_ui_until(config: &std::path::Path, awaited: &str) -> (Running, Vec<String>) {
    use std::io::{BufRead, BufReader};
    // Test fixture: runs the binary under test until it listens.
    #[allow(clippy::disallowed_methods)]
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_masif-ui"))
        .args(["--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let running = Running(child);
    let mut log = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        let seen = line.contains(awaited);
        log.push(line);
        if seen {
            break;
        }
    }
    (running, log)
}
