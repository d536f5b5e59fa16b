//! `masif-agent check`, the real binary, against real agents: the loop on a sandbox with its
//! monitoring socket served as `masif-agent` serves it, and the agent binary itself with its
//! configuration file. Exit codes 0/1/2/3 under each condition, the original plugin's flags
//! and its name (a symlink called check_masifupgrader_agent), and sockets that answer
//! garbage or nothing.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{eventually, start_loop, LoopConfig, Running, StandInMaster};
use masif_agent::exec::{Output, Runner};
use masif_proto::Action;
use masif_testkit::sandbox::{standard_packages, FakePackage, Sandbox, Stage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_masif-agent");

/// Runs `program` (the binary or a link to it) with `args`; the exit code and stdout.
async fn run(program: &Path, args: &[&str]) -> (i32, String) {
    let out: Output = Runner::default()
        .command(program)
        .args(args)
        .timeout(Duration::from_secs(60))
        .run()
        .await
        .unwrap();
    (out.code().expect("exited"), out.stdout)
}

async fn check(socket: &Path, args: &[&str]) -> (i32, String) {
    let socket = socket.to_str().unwrap();
    let mut all = vec!["check", "--socket", socket];
    all.extend(args);
    run(Path::new(BIN), &all).await
}

/// The loop on the standard sandbox packages with its monitoring socket served.
struct Served {
    agent: Running,
    socket: PathBuf,
    _dir: tempfile::TempDir,
    stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve(approve: &[&str]) -> Served {
    let agent = start_loop(&standard_packages(), LoopConfig::retry(3600), |m| {
        for package in approve {
            m.approve(package, &[Action::Update, Action::Configure]);
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let listener = masif_agent::api::bind(&socket).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(masif_agent::api::serve(
        listener,
        agent.monitor.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    eventually("a first report", || async {
        agent.monitor.status().last_report.is_some()
    })
    .await;
    Served {
        agent,
        socket,
        _dir: dir,
        stop,
    }
}

impl Served {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.agent.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_fresh_agent_is_ok_and_report_age_thresholds_apply() {
    let s = serve(&[]).await;
    let (code, out) = check(&s.socket, &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("MASIF-AGENT OK - "), "{out}");
    assert!(out.contains("last report "), "{out}");
    for perf in [
        " report_age=",
        "s;1800;7200;0",
        " failed_packages=0;0;;0",
        " approved_age=0s;3600;;0",
        " reboot_required=0",
        " resptime=",
        " query_1m=",
        " error_15m=0;;;0",
    ] {
        assert!(out.contains(perf), "{perf} missing in {out}");
    }
    // The last report is seconds old: ranges that alert on any age of up to a day.
    let (code, out) = check(&s.socket, &["--report-warn", "@0:86400"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("MASIF-AGENT WARNING - ") && out.contains("last report"),
        "{out}"
    );
    let (code, out) = check(
        &s.socket,
        &["--report-warn", "@0:", "--report-crit", "@~:86400"],
    )
    .await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("report_age=") && out.contains(";@0:;@~:86400;0"),
        "{out}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_failed_run_warns_and_a_reboot_required_warns_unless_told_otherwise() {
    // zeta's postinst fails.
    let s = serve(&["zeta"]).await;
    eventually("zeta failed", || async {
        s.agent.monitor.status().failed_packages.contains("zeta")
    })
    .await;
    let (code, out) = check(&s.socket, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("1 package failed (zeta)"), "{out}");
    assert!(out.contains(" failed_packages=1;0;;0"), "{out}");
    let (code, out) = check(&s.socket, &["--failed-crit", "0"]).await;
    assert_eq!(code, 2, "{out}");
    // The original judged neither.
    let (code, out) = check(&s.socket, &["--original"]).await;
    assert_eq!(code, 0, "{out}");
    s.stop().await;

    let s = serve(&[]).await;
    s.agent
        .sb
        .require_reboot(&["linux-image-6.1.0-28-amd64"])
        .unwrap();
    eventually("reboot_required seen", || async {
        s.agent.monitor.status().reboot_required
    })
    .await;
    let (code, out) = check(&s.socket, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("reboot required") && out.contains("reboot_required=1"),
        "{out}"
    );
    let (code, _) = check(&s.socket, &["--reboot-required", "critical"]).await;
    assert_eq!(code, 2);
    let (code, _) = check(&s.socket, &["--reboot-required", "ok"]).await;
    assert_eq!(code, 0);
    s.stop().await;
}

#[tokio::test]
async fn approved_tasks_left_undone_warn_once_they_waited_too_long() {
    // beta's update is approved, but not the install of gamma it needs: the approved tasks
    // wait, undone, for as long as nobody approves the rest.
    let s = serve(&["beta"]).await;
    eventually("beta's approved tasks waiting", || async {
        s.agent.monitor.status().approved_since.is_some()
    })
    .await;
    let status = s.agent.monitor.status();
    assert_eq!(status.approved_tasks, 2, "beta's update and configure");
    assert_eq!(s.agent.version("beta").await.as_deref(), Some("1.0"));
    // Younger than the default hour: no problem yet.
    let (code, out) = check(&s.socket, &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(", 2 approved,"), "{out}");
    assert!(out.contains(" approved_tasks=2;;;0"), "{out}");
    assert!(out.contains(";3600;;0 "), "the default limit: {out}");
    // Left undone for longer than a one-second limit: a WARNING saying so.
    let since = status.approved_since.unwrap();
    eventually("the approved tasks waited over a second", || async {
        unix_now() - since >= 2
    })
    .await;
    let (code, out) = check(&s.socket, &["--approved-age-warn", "1"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("MASIF-AGENT WARNING - "), "{out}");
    assert!(
        out.contains("2 tasks approved, not yet done, for "),
        "{out}"
    );
    let age = perf_value(&out, "approved_age");
    assert!(age >= 2, "{out}");
    assert!(out.contains(&format!(" approved_age={age}s;1;;0")), "{out}");
    assert!(out.contains(" approved_tasks=2;;;0"), "{out}");
    // Still nothing ran.
    assert_eq!(s.agent.version("beta").await.as_deref(), Some("1.0"));
    let (code, out) = check(&s.socket, &["--approved-age-crit", "1"]).await;
    assert_eq!(code, 2, "{out}");
    s.stop().await;
}

fn unix_now() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.unwrap().as_secs() as i64
}

/// The value of perfdata `label` in a check's output (`label=VALUE[uom];…`), whole units.
fn perf_value(out: &str, label: &str) -> i64 {
    let needle = format!(" {label}=");
    let start = out
        .find(&needle)
        .unwrap_or_else(|| panic!("{label} in {out}"))
        + needle.len();
    let digits: String = out[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{label} in {out}"))
}

#[tokio::test]
async fn the_original_plugins_name_and_flags_keep_working() {
    let s = serve(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("check_masifupgrader_agent");
    std::os::unix::fs::symlink(BIN, &plugin).unwrap();
    let sock = s.socket.to_str().unwrap();
    // No error happened: 0 errors in 15 minutes, which `@~:42` (42 or below) alerts on.
    let (code, out) = run(&plugin, &["-restsock", sock, "-error-15m-warn", "@~:42"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error 15m: 0"), "{out}");
    assert!(out.contains(" error_15m=0;@~:42;;0"), "{out}");
    let (code, out) = run(
        &plugin,
        &[
            "-restsock",
            sock,
            "-error-15m-warn",
            "0",
            "-error-1m-crit=@~:42",
        ],
    )
    .await;
    assert_eq!(code, 2, "{out}");
    let (code, out) = run(
        &plugin,
        &[
            "-restsock",
            sock,
            "-resptime-warn",
            "60",
            "-resptime-crit",
            "120",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(" resptime=") && out.contains("s;60;120;0"),
        "{out}"
    );
    let (code, out) = run(&plugin, &["-restsock", sock, "-resptime-crit", "@0:"]).await;
    assert_eq!(code, 2, "{out}");
    // The same flags through `masif-agent check`, where the agent's own checks apply too.
    s.agent.sb.require_reboot(&["alpha"]).unwrap();
    eventually("reboot_required seen", || async {
        s.agent.monitor.status().reboot_required
    })
    .await;
    let (code, out) = run(&plugin, &["-restsock", sock, "-error-15m-warn", "0"]).await;
    assert_eq!(code, 0, "the original does not judge reboots: {out}");
    let (code, out) = check(&s.socket, &["-error-15m-warn", "0"]).await;
    assert_eq!(code, 1, "{out}");
    // Malformed ranges and flags are UNKNOWN with the reason on stdout.
    for (args, reason) in [
        (
            &["-restsock", sock, "-query-1m-warn", "20:10"][..],
            "start is greater than end",
        ),
        (
            &["-restsock", sock, "-query-1m-warn"][..],
            "-query-1m-warn needs a value",
        ),
        (
            &["-restsock", sock, "-query-2m-warn", "1"][..],
            "unexpected argument",
        ),
        (
            &["-restsock", sock, "-resptime-warn", "1e9"][..],
            "not a number",
        ),
    ] {
        let (code, out) = run(&plugin, args).await;
        assert_eq!(code, 3, "{args:?}: {out}");
        assert!(
            out.starts_with("MASIF-AGENT UNKNOWN - ") && out.contains(reason),
            "{out}"
        );
    }
    s.stop().await;
}

/// A socket that accepts and answers each connection with `answer` (then closes), or with
/// nothing at all (`None`: holds the connection open).
fn fake_socket(path: &Path, answer: Option<Vec<u8>>) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            match &answer {
                Some(bytes) => {
                    let _ = stream.write_all(bytes).await;
                }
                None => held.push(stream),
            }
        }
    })
}

#[tokio::test]
async fn no_socket_garbage_and_silence_are_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sock");
    let (code, out) = check(&missing, &[]).await;
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("No such file") && out.contains("is masif-upgrader-agent running?"),
        "{out}"
    );

    let http = |body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let huge = format!("{{\"x\":\"{}\"}}", "a".repeat(2 << 20));
    let cases: Vec<(&str, Option<Vec<u8>>, &str)> = vec![
        (
            "not-http",
            Some(b"\x00\x01garbage\r\n\r\n".to_vec()),
            "monitoring socket",
        ),
        ("not-json", Some(http("<html>hello</html>")), "/v1/status"),
        (
            "wrong-json",
            Some(http(r#"{"activity":"dancing"}"#)),
            "unexpected answer",
        ),
        ("huge", Some(http(&huge)), "monitoring socket"),
        (
            "error",
            Some(b"HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n".to_vec()),
            "500",
        ),
        ("silent", None, "no answer within 1 s"),
    ];
    for (name, answer, reason) in cases {
        let path = dir.path().join(format!("{name}.sock"));
        let server = fake_socket(&path, answer);
        let (code, out) = check(&path, &["--timeout", "1"]).await;
        assert_eq!(code, 3, "{name}: {out}");
        assert!(
            out.starts_with("MASIF-AGENT UNKNOWN - ") && out.contains(reason),
            "{name}: {out}"
        );
        server.abort();
    }
}

#[tokio::test]
async fn the_agent_binary_is_checked_through_its_configuration_file() {
    let dir = tempfile::tempdir().unwrap();
    let master = StandInMaster::start().await;
    let tls = master.agent_files("agent.check-tests.invalid");
    let sandbox = Sandbox::create(&dir.path().join("sb"), &[FakePackage::new("calm", "1.0")])
        .await
        .unwrap();
    sandbox.publish(Stage::V2).await.unwrap();
    let socket = dir.path().join("run/agent.sock");
    let config = dir.path().join("agent.yml");
    std::fs::write(
        &config,
        common::agent_yaml(&master, &tls, &sandbox, &socket, 1),
    )
    .unwrap();
    let agent = Runner::default()
        .command(BIN)
        .arg("--config")
        .arg(&config)
        .spawn()
        .await
        .unwrap();
    let config = config.to_str().unwrap();
    eventually("the agent reported", || async {
        let (code, out) = run(Path::new(BIN), &["check", "--config", config]).await;
        code == 0 && out.contains(": last report")
    })
    .await;
    let (code, out) = run(Path::new(BIN), &["check", "--config", config]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("MASIF-AGENT OK - agent.check-tests.invalid: last report"),
        "{out}"
    );
    agent.stop().await;
    // Stopped: the socket is gone.
    let (code, out) = run(Path::new(BIN), &["check", "--config", config]).await;
    assert_eq!(code, 3, "{out}");
    // A configuration that does not load is UNKNOWN, naming it.
    std::fs::write(dir.path().join("bad.yml"), "socket: [\n").unwrap();
    let bad = dir.path().join("bad.yml");
    let (code, out) = run(
        Path::new(BIN),
        &["check", "--config", bad.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("bad.yml") && out.contains("or give --socket"),
        "{out}"
    );
}
