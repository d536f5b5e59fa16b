//! The `masif` command line against `masif demo`: the banner's command works as printed, and
//! an approval made with `masif approve` upgrades the sandboxes for real.

mod common;

use std::process::Output;

use common::{eventually, installed_version, sandbox_status, Demo};

/// Runs the real `masif` with `args` followed by the banner's `--url … --token-file …`.
#[allow(clippy::disallowed_methods)] // the binary under test
fn masif(demo: &Demo, args: &[&str]) -> Output {
    let banner: Vec<&str> = demo.cli.split_whitespace().collect();
    assert_eq!(banner[..2], ["masif", "pending"], "{}", demo.cli);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_masif"))
        .args(args)
        .args(&banner[2..])
        .env_remove("MASIF_URL")
        .env_remove("MASIF_TOKEN")
        .env_remove("MASIF_TOKEN_FILE")
        .output()
        .expect("run masif");
    println!(
        "masif {args:?} -> {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn masif_approve_upgrades_the_demo_sandboxes() {
    let demo = Demo::start(&["--agents", "2", "--port", "0"]);
    let agents = ["agent-01.masif-demo.test", "agent-02.masif-demo.test"];

    // The banner's own command, once both agents have reported alpha's upgrade.
    eventually("alpha's update awaited by both agents", || {
        let text = stdout(&masif(&demo, &["pending"]));
        text.lines()
            .any(|l| {
                l.split_whitespace()
                    .collect::<Vec<_>>()
                    .starts_with(&["alpha", "update", "2.0", "2"])
            })
            .then_some(())
    });
    let out = masif(&demo, &["approve", "--task", "update:alpha=2.0"]);
    assert!(
        stdout(&out).contains("approved update alpha 2.0\n"),
        "{out:?}"
    );
    for agent in agents {
        let status = sandbox_status(&demo.workdir, agent);
        eventually(&format!("alpha 2.0 installed on {agent}"), || {
            (installed_version(&status, "alpha").as_deref() == Some("2.0")).then_some(())
        });
        assert_eq!(installed_version(&status, "beta").as_deref(), Some("1.0"));
    }
    let audit = stdout(&masif(&demo, &["audit"]));
    assert!(audit.contains("token:cli  approve"), "{audit}");
    let agents_table = stdout(&masif(&demo, &["agents"]));
    for agent in agents {
        assert!(agents_table.contains(agent), "{agents_table}");
    }
    let (status, _) = demo.interrupt();
    assert!(status.success(), "{status:?}");
}
