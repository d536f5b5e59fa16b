//! `masif-xtask man DIR` writes a non-empty roff page for each shipped command, naming its flags.

#![allow(clippy::disallowed_methods)] // runs the generator binary under test

#[test]
fn man_pages_name_every_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_masif-xtask"))
        .arg("man")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    for (name, flags) in [
        (
            "masif-agent",
            &[
                "--config",
                "--check-config",
                "--version",
                "COMMAND MASIF-AGENT CHECK",
                "--socket",
                "--report-warn",
                "--load",
                "--original",
                "-restsock PATH",
                "@~:42",
            ][..],
        ),
        ("masif-master", &["--config", "--check-config", "--version"]),
        ("masif-ui", &["--config", "--check-config", "--version"]),
        (
            "masif-pki",
            &["check", "--role", "--source", "--root", "--json", "--crl"],
        ),
    ] {
        let page = std::fs::read_to_string(dir.path().join(format!("{name}.8"))).unwrap();
        assert!(
            page.starts_with(".ie") || page.starts_with(".TH"),
            "{name}: {page:.200}"
        );
        assert!(
            page.contains(&format!(".TH {name} 8")),
            "{name}: {page:.300}"
        );
        // roff escapes '-' as '\-'.
        let plain = page.replace("\\-", "-");
        for flag in flags {
            assert!(plain.contains(flag), "{name}.8 lacks {flag}");
        }
        // Only these four pages ship: none refers to a page of a subcommand.
        assert!(
            !plain.contains("(8)"),
            "{name}.8 refers to a page that is not shipped"
        );
        if name != "masif-pki" {
            assert!(
                page.contains(".SH ENVIRONMENT") && page.contains("MASIF_LOG"),
                "{name}.8 lacks MASIF_LOG"
            );
        }
    }
}

#[test]
fn a_directory_that_cannot_be_made_is_an_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_masif-xtask"))
        .args(["man", "/proc/masif-man"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/proc/masif-man"));
}
