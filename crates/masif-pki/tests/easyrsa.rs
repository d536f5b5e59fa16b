//! A real easy-rsa PKI made by `masif-pki init/issue/revoke/crl` (Debian's easy-rsa script),
//! discovered, checked, and used for TLS; revocation reaches a rebuilt server config.

mod common;

use std::path::Path;

use common::cli::{cli, cli_check, cli_ok};
use common::tls::handshake;
use masif_pki::{discover, Discover, DiscoverRequest, Role, TlsFiles};

fn files(dir: &Path, name: &str, role: Role) -> TlsFiles {
    let request = DiscoverRequest {
        discover: Discover::EasyRsa(dir.to_path_buf()),
        name: Some(name.into()),
        root: None,
    };
    discover(&request, role).unwrap().files
}

#[tokio::test]
async fn easyrsa_pki_lifecycle_init_issue_check_connect_revoke() {
    let work = tempfile::tempdir().unwrap();
    let pki = work.path().join("pki");
    let dir = pki.to_str().unwrap();
    let out = cli_ok(&["init", dir, "--ca-name", "Masif Test CA"]);
    assert!(out.contains("created PKI"), "{out}");
    assert!(
        pki.join("ca.crt").is_file() && pki.join("crl.pem").is_file() && pki.join("vars").is_file()
    );
    cli_ok(&["issue", dir, "master.test", "--server"]);
    cli_ok(&["issue", dir, "agent1.test", "--client"]);
    cli_ok(&["issue", dir, "agent2.test", "--client"]);
    cli_ok(&["issue", dir, "both.test", "--both"]);

    let source = format!("easyrsa:{dir}");
    let out = cli_ok(&[
        "check",
        "--role",
        "master",
        "--source",
        &source,
        "--name",
        "master.test",
    ]);
    assert!(
        out.contains("OK name: agents expecting master.test accept this certificate"),
        "{out}"
    );
    assert!(out.contains("(CN=Masif Test CA) valid until"), "{out}");
    for (role, name) in [
        ("agent", "agent1.test"),
        ("agent", "both.test"),
        ("master", "both.test"),
    ] {
        cli_ok(&["check", "--role", role, "--source", &source, "--name", name]);
    }
    let (code, out) = cli(&[
        "check",
        "--role",
        "agent",
        "--source",
        &source,
        "--name",
        "master.test",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("CRITICAL usage: extended key usage allows serverAuth only, but an agent needs clientAuth"), "{out}");

    let master = files(&pki, "master.test", Role::Master);
    let agent1 = files(&pki, "agent1.test", Role::Agent);
    let agent2 = files(&pki, "agent2.test", Role::Agent);
    assert_eq!(
        handshake(&master, &agent1, "master.test").await.unwrap(),
        "agent1.test"
    );
    assert_eq!(
        handshake(&master, &agent2, "master.test").await.unwrap(),
        "agent2.test"
    );

    // A server-only certificate cannot be an agent's client certificate.
    let as_agent = files(&pki, "master.test", Role::Agent);
    assert!(handshake(&master, &as_agent, "master.test").await.is_err());

    // Revoke agent2 and publish: the master's next config (it polls the files) refuses it.
    // The agent keeps its copy of the files (easy-rsa moves the PKI's copy away).
    let agent2 = TlsFiles {
        cert: copy(&agent2.cert, work.path()),
        key: copy(&agent2.key, work.path()),
        ..agent2
    };
    let before = master.newest_modification().unwrap();
    let out = cli_ok(&["revoke", dir, "agent2.test"]);
    assert!(out.contains(&format!("masif-pki crl {dir}")), "{out}");
    std::thread::sleep(std::time::Duration::from_millis(20));
    cli_ok(&["crl", dir]);
    assert!(master.newest_modification().unwrap() > before);
    let err = handshake(&master, &agent2, "master.test")
        .await
        .unwrap_err();
    assert!(err.contains("Revoked"), "{err}");
    assert_eq!(
        handshake(&master, &agent1, "master.test").await.unwrap(),
        "agent1.test"
    );
    // easy-rsa moved the revoked files away; checking the old files names the revocation.
    let revoked = std::fs::read_dir(pki.join("revoked/certs_by_serial"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let old_files = TlsFiles {
        cert: revoked,
        key: agent1.key.clone(),
        ca: master.ca.clone(),
        crl: Some(master.crl.clone().unwrap()),
    };
    let (code, out) = cli_check(Role::Agent, &old_files, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("CRITICAL revocation: certificate (serial"),
        "{out}"
    );

    // The same name can be issued again once revoked.
    cli_ok(&["issue", dir, "agent2.test", "--client"]);
    let agent2 = files(&pki, "agent2.test", Role::Agent);
    assert_eq!(
        handshake(&master, &agent2, "master.test").await.unwrap(),
        "agent2.test"
    );
}

#[test]
fn easyrsa_commands_refuse_bad_input_and_change_nothing() {
    let work = tempfile::tempdir().unwrap();
    let pki = work.path().join("pki");
    let dir = pki.to_str().unwrap();

    let (code, out) = cli(&["crl", dir]);
    assert_eq!(code, 1);
    assert!(
        out.contains("is not a PKI (no ca.crt)") && out.contains("masif-pki init"),
        "{out}"
    );
    let (code, out) = cli(&["init", dir, "--easyrsa", "/nonexistent/easyrsa"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("/nonexistent/easyrsa not found: install Debian's easy-rsa"),
        "{out}"
    );
    assert!(!pki.exists());

    cli_ok(&["init", dir]);
    let snapshot = || {
        let mut names: Vec<String> = walk(&pki);
        names.sort();
        names
    };
    let before = snapshot();
    for (args, expected) in [
        (vec!["init", dir], "exists and is not empty"),
        (
            vec!["issue", dir, "../../etc/x", "--client"],
            "not a valid certificate name",
        ),
        (
            vec!["issue", dir, "--client", "--", "-rf"],
            "not a valid certificate name",
        ),
        (vec!["revoke", dir, "nobody.test"], "no certificate"),
    ] {
        let (code, out) = cli(&args);
        assert_eq!(code, 1, "{args:?}: {out}");
        assert!(out.contains(expected), "{args:?}: {out}");
        assert_eq!(snapshot(), before, "{args:?} changed the PKI");
    }
    cli_ok(&["issue", dir, "a.test", "--client"]);
    let (code, out) = cli(&["issue", dir, "a.test", "--server"]);
    assert_eq!(code, 1);
    assert!(out.contains("exists already"), "{out}");
    let (code, out) = cli(&["issue", dir, "b.test"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("--client|--server|--both"), "{out}");
}

fn copy(file: &Path, dir: &Path) -> std::path::PathBuf {
    let to = dir.join(file.file_name().unwrap());
    std::fs::copy(file, &to).unwrap();
    to
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        out.push(path.display().to_string());
        if path.is_dir() {
            out.extend(walk(&path));
        }
    }
    out
}

#[test]
fn easyrsa_runs_with_a_cleared_environment() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().unwrap();
    let seen = work.path().join("env.txt");
    let script = work.path().join("easyrsa");
    // Stands in for easy-rsa: records the environment it was given, then fails.
    std::fs::write(
        &script,
        format!("#!/bin/sh\nenv > '{}'\nexit 1\n", seen.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pki = work.path().join("pki");
    // Test helper: the binary under test, run with settings that would change what easy-rsa
    // issues.
    #[allow(clippy::disallowed_methods)]
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_masif-pki"))
        .args(["init", pki.to_str().unwrap(), "--easyrsa"])
        .arg(&script)
        .env("EASYRSA_DIGEST", "md5")
        .env("EASYRSA_KEY_SIZE", "512")
        .env("OPENSSL_CONF", "/tmp/hostile.cnf")
        .env(
            "PATH",
            format!("/tmp/hostile-bin:{}", std::env::var("PATH").unwrap()),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let env = std::fs::read_to_string(&seen).unwrap();
    let names: std::collections::BTreeSet<&str> = env
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .collect();
    let allowed = [
        "PATH",
        "LC_ALL",
        "EASYRSA_BATCH",
        "EASYRSA_PKI",
        "EASYRSA_VARS_FILE",
        "EASYRSA_REQ_CN",
        "PWD",
        "OLDPWD",
        "SHLVL",
        "_",
    ];
    for name in &names {
        assert!(allowed.contains(name), "{name} reached easy-rsa: {env}");
    }
    assert!(!env.contains("hostile"), "{env}");
}
