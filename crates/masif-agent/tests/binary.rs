//! The `masif-agent` binary as an operator runs it: `--check-config`, a real SIGTERM during
//! an apt/dpkg run (waited for), a real SIGINT while idle (exit at once). Processes are
//! started and signalled through the agent's own command wrapper.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{eventually, StandInMaster};
use masif_agent::exec::{Runner, Running};
use masif_proto::Action;
use masif_testkit::sandbox::{standard_packages, FakePackage, Sandbox, Stage};

const BIN: &str = env!("CARGO_BIN_EXE_masif-agent");

struct Setup {
    dir: tempfile::TempDir,
    master: StandInMaster,
    sandbox: Sandbox,
    config: PathBuf,
    socket: PathBuf,
}

async fn setup(packages: &[FakePackage]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let master = StandInMaster::start().await;
    let tls = master.agent_files("agent.binary-tests.invalid");
    let sandbox = Sandbox::create(&dir.path().join("sb"), packages)
        .await
        .unwrap();
    sandbox.publish(Stage::V2).await.unwrap();
    let socket = dir.path().join("agent.sock");
    let yaml = common::agent_yaml(&master, &tls, &sandbox, &socket, 1);
    let config = dir.path().join("agent.yml");
    std::fs::write(&config, yaml).unwrap();
    Setup {
        dir,
        master,
        sandbox,
        config,
        socket,
    }
}

async fn spawn_agent(config: &Path) -> Running {
    Runner::default()
        .command(BIN)
        .arg("--config")
        .arg(config)
        .spawn()
        .await
        .unwrap()
}

async fn signal(agent: &Running, name: &str) {
    let pid = agent.id().unwrap().to_string();
    let out = Runner::default()
        .command("/bin/kill")
        .args(["-s", name, &pid])
        .run()
        .await
        .unwrap();
    assert!(out.success(), "{out:?}");
}

async fn activity(socket: &Path) -> Option<String> {
    let status = masif_agent::api::query(socket, "/v1/status").await.ok()?;
    status["activity"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn sigterm_during_an_upgrade_waits_for_apt_and_dpkg_to_finish() {
    let packages = [
        FakePackage::new("sloth", "1.0"),
        FakePackage::new("sloth", "2.0").postinst("sleep 3").v2(),
    ];
    let s = setup(&packages).await;
    s.master
        .approve("sloth", &[Action::Update, Action::Configure]);
    let agent = spawn_agent(&s.config).await;
    eventually("executing", || async {
        activity(&s.socket).await.as_deref() == Some("executing")
    })
    .await;
    signal(&agent, "TERM").await;
    let status = agent.wait().await.unwrap();
    assert!(status.success(), "{status}");
    // The run was not cut short: sloth is fully installed, not half-configured.
    let state = s.sandbox.package_state("sloth").await.unwrap().unwrap();
    assert_eq!(
        (state.status.as_str(), state.version.as_str()),
        ("ii", "2.0")
    );
    assert!(!s.socket.exists(), "socket removed at exit");
    drop(s.dir);
}

#[tokio::test]
async fn sigint_while_idle_exits_at_once() {
    let s = setup(&[FakePackage::new("calm", "1.0")]).await;
    let agent = spawn_agent(&s.config).await;
    eventually("sleeping", || async {
        activity(&s.socket).await.as_deref() == Some("sleeping")
    })
    .await;
    signal(&agent, "INT").await;
    let status = tokio::time::timeout(Duration::from_secs(30), agent.wait())
        .await
        .expect("exited")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn check_config_reports_problems_with_the_file_and_key() {
    let s = setup(&[FakePackage::new("calm", "1.0")]).await;
    let run = |config: PathBuf| async move {
        Runner::default()
            .command(BIN)
            .arg("--check-config")
            .arg("--config")
            .arg(config)
            .run()
            .await
            .unwrap()
    };
    let ok = run(s.config.clone()).await;
    assert!(ok.success(), "{ok:?}");
    assert!(ok.stdout.contains("OK"), "{ok:?}");

    let bad = s.dir.path().join("bad.yml");
    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&bad, text.replace("check: 1", "check: soon")).unwrap();
    let out = run(bad.clone()).await;
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr.contains("bad.yml: interval.check"),
        "{}",
        out.stderr
    );

    let missing_cert = s.dir.path().join("missing-cert.yml");
    let text = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace("cert: /", "cert: /nonexistent/");
    std::fs::write(&missing_cert, text).unwrap();
    let out = run(missing_cert).await;
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr.contains("tls: ") && out.stderr.contains("/nonexistent/"),
        "{}",
        out.stderr
    );

    // A CRITICAL finding of `masif-pki check` (here a world-readable key) is refused too.
    let text = std::fs::read_to_string(&s.config).unwrap();
    let key = text
        .lines()
        .find_map(|l| l.split("key: ").nth(1))
        .and_then(|rest| rest.split([',', ' ', '}']).next())
        .unwrap()
        .to_owned();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let exposed = s.config.clone();
    let out = run(exposed).await;
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stderr.contains("readable by everyone"),
        "{}",
        out.stderr
    );
}

/// The agent upgrades a package while the host's root file system is mounted read-only (in a
/// private mount namespace; only the test's directory stays writable): nothing outside the
/// sandbox is written, so the host's dpkg database cannot have been touched.
#[tokio::test]
async fn an_upgrade_writes_nothing_outside_the_sandbox() {
    let s = setup(&standard_packages()).await;
    s.master
        .approve("alpha", &[Action::Update, Action::Configure]);
    let dir = s.dir.path().display().to_string();
    // Exit 99 if the host were still writable: then the test would prove nothing.
    let script = format!(
        "mount --bind '{dir}' '{dir}' && mount -o remount,bind,ro / && \\
         if touch /var/lib/dpkg/.masif-probe 2>/dev/null; then exit 99; fi && \\
         exec '{BIN}' --config '{}'",
        s.config.display()
    );
    let agent = Runner::default()
        .command("/usr/bin/unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            &script,
        ])
        .spawn()
        .await
        .unwrap();
    let socket = s.socket.clone();
    eventually("alpha 2.0 in the sandbox", || async {
        s.sandbox
            .installed_version("alpha")
            .await
            .unwrap()
            .as_deref()
            == Some("2.0")
    })
    .await;
    let status = masif_agent::api::query(&socket, "/v1/status")
        .await
        .unwrap();
    assert!(status["last_error"].is_null(), "{status}");
    signal(&agent, "TERM").await;
    let exit = agent.wait().await.unwrap();
    assert!(
        exit.success(),
        "{exit} (99: the host was writable; 1: no mount namespace)"
    );
    assert!(!std::path::Path::new("/var/lib/dpkg/.masif-probe").exists());
}
