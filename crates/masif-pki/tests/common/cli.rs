//! The built `masif-pki` binary, run as the tests' subject.

use std::process::Command;

use masif_pki::{Role, TlsFiles};

/// Runs the built `masif-pki` with `args`; returns (exit code, stdout followed by stderr).
pub fn cli(args: &[&str]) -> (i32, String) {
    // Test helper: the binary under test.
    #[allow(clippy::disallowed_methods)]
    let out = Command::new(env!("CARGO_BIN_EXE_masif-pki"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap(), format!("{stdout}{stderr}"))
}

/// Runs `masif-pki` with `args`, expecting exit code 0; returns its output.
pub fn cli_ok(args: &[&str]) -> String {
    let (code, out) = cli(args);
    assert_eq!(code, 0, "masif-pki {args:?}: {out}");
    out
}

/// `check --role R --cert … --key … --ca … [--crl …]` plus `extra`.
pub fn cli_check(role: Role, files: &TlsFiles, extra: &[&str]) -> (i32, String) {
    let role = role.to_string();
    let mut args = vec![
        "check",
        "--role",
        role.as_str(),
        "--cert",
        files.cert.to_str().unwrap(),
        "--key",
        files.key.to_str().unwrap(),
        "--ca",
        files.ca.to_str().unwrap(),
    ];
    if let Some(crl) = &files.crl {
        args.extend(["--crl", crl.to_str().unwrap()]);
    }
    args.extend(extra);
    cli(&args)
}
