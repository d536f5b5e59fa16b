//! `masif-pki check` and `startup_check`: every broken case gives the right finding and exit
//! code, through the library and through the built binary.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::cli::{cli, cli_check};
use common::{write, Ca, Leaf, Use};
use masif_pki::Aspect;
use masif_pki::{check, startup_check, CheckOptions, Role, Severity, TlsFiles};
use rstest::rstest;
use time::{Duration, OffsetDateTime};

/// Ways to break a good set of files.
#[derive(Debug, Clone, Copy)]
enum Broken {
    WrongKey,
    ForeignCa,
    Expired,
    NotYetValid,
    ExpiringSoon,
    ServerOnlyForAgent,
    ClientOnlyForMaster,
    Revoked,
    CrlFromOtherCa,
    V1Crl,
    ExpiredCrl,
    WorldReadableKey,
    GroupWritableKey,
    MissingFile,
    EmptyFile,
    GarbagePem,
    MasterNameMismatch,
    NoCommonName,
    NoSanForMaster,
}

/// Good files for `role` in `dir`, broken as `broken` says (`None`: all good).
fn fixture(dir: &Path, role: Role, broken: Option<Broken>) -> TlsFiles {
    use Broken::*;
    let ca = Ca::new("Masif Check CA");
    let now = OffsetDateTime::now_utc();
    let (name, usage) = match (role, broken) {
        (Role::Agent, Some(ServerOnlyForAgent)) => ("agent.test", Use::Server),
        (Role::Master, Some(ClientOnlyForMaster)) => ("master.test", Use::Client),
        (Role::Agent, _) => ("agent.test", Use::Client),
        (Role::Master, _) => ("master.test", Use::Server),
    };
    let leaf: Leaf = match broken {
        Some(Expired) => ca.leaf_valid(
            name,
            usage,
            now - Duration::days(400),
            now - Duration::days(2),
        ),
        Some(NotYetValid) => ca.leaf_valid(
            name,
            usage,
            now + Duration::days(2),
            now + Duration::days(400),
        ),
        Some(ExpiringSoon) => ca.leaf_valid(
            name,
            usage,
            now - Duration::days(300),
            now + Duration::days(10),
        ),
        Some(ForeignCa) => Ca::new("Somebody Else's CA").leaf(name, usage),
        Some(MasterNameMismatch) => ca.leaf("other.test", usage),
        Some(NoCommonName) => ca.leaf_without_cn(name, usage),
        Some(NoSanForMaster) => ca.leaf_without_san(name, usage),
        _ => ca.leaf(name, usage),
    };
    let crl = match broken {
        Some(Revoked) => ca.crl(&[&leaf], 30),
        Some(CrlFromOtherCa) => Ca::new("Other CA").crl(&[], 30),
        Some(V1Crl) => common::v1_crl(dir, &ca),
        Some(ExpiredCrl) => ca.crl(&[], -3),
        _ => ca.crl(&[], 90),
    };
    let files = common::files(dir, "host", &ca, &leaf, Some(&crl));
    let mode = match broken {
        Some(WorldReadableKey) => 0o644,
        Some(GroupWritableKey) => 0o660,
        _ => 0o600,
    };
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(mode)).unwrap();
    match broken {
        Some(WrongKey) => {
            write(dir, "host.key", ca.leaf(name, usage).key_pem);
        }
        Some(MissingFile) => std::fs::remove_file(&files.ca).unwrap(),
        Some(EmptyFile) => {
            write(dir, "host.crt", "");
        }
        Some(GarbagePem) => {
            write(
                dir,
                "host-crl.pem",
                "-----BEGIN X509 CRL-----\nnot base64 at all!\n-----END X509 CRL-----\n",
            );
        }
        _ => {}
    }
    files
}

#[rstest]
#[case::agent(Role::Agent)]
#[case::master(Role::Master)]
fn good_files_are_ok(#[case] role: Role) {
    let dir = tempfile::tempdir().unwrap();
    let files = fixture(dir.path(), role, None);
    let report = check(&files, &CheckOptions::new(role));
    assert_eq!(report.status(), Severity::Ok, "{:#?}", report.findings);
    assert!(report.days_left.unwrap() >= 363);
    let (code, out) = cli_check(role, &files, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(&format!("MASIF-PKI OK - {role} certificate ")),
        "{out}"
    );
    assert_eq!(startup_check(role, &files, None).unwrap(), vec![]);
}

#[rstest]
#[case(
    Broken::WrongKey,
    Role::Agent,
    Aspect::Key,
    Severity::Critical,
    "private key does not match the certificate"
)]
#[case(
    Broken::ForeignCa,
    Role::Agent,
    Aspect::Chain,
    Severity::Critical,
    "does not chain to any certificate in"
)]
#[case(
    Broken::Expired,
    Role::Agent,
    Aspect::Validity,
    Severity::Critical,
    "certificate expired on"
)]
#[case(
    Broken::NotYetValid,
    Role::Master,
    Aspect::Validity,
    Severity::Critical,
    "certificate is not valid before"
)]
#[case(
    Broken::ExpiringSoon,
    Role::Agent,
    Aspect::Validity,
    Severity::Warning,
    "certificate expires in 9 days"
)]
#[case(
    Broken::ServerOnlyForAgent,
    Role::Agent,
    Aspect::Usage,
    Severity::Critical,
    "allows serverAuth only, but an agent needs clientAuth"
)]
#[case(
    Broken::ClientOnlyForMaster,
    Role::Master,
    Aspect::Usage,
    Severity::Critical,
    "allows clientAuth only, but the master needs serverAuth"
)]
#[case(
    Broken::Revoked,
    Role::Agent,
    Aspect::Revocation,
    Severity::Critical,
    "is revoked by CRL 1"
)]
#[case(
    Broken::CrlFromOtherCa,
    Role::Master,
    Aspect::Crl,
    Severity::Critical,
    "is not signed by a certificate of"
)]
#[case(
    Broken::V1Crl,
    Role::Master,
    Aspect::Crl,
    Severity::Critical,
    "is a version 1 CRL"
)]
#[case(
    Broken::ExpiredCrl,
    Role::Master,
    Aspect::Crl,
    Severity::Warning,
    "expired on"
)]
#[case(
    Broken::WorldReadableKey,
    Role::Agent,
    Aspect::Permissions,
    Severity::Critical,
    "private key is readable by everyone (mode 0644)"
)]
#[case(
    Broken::GroupWritableKey,
    Role::Agent,
    Aspect::Permissions,
    Severity::Warning,
    "writable by group or others (mode 0660)"
)]
#[case(
    Broken::MissingFile,
    Role::Agent,
    Aspect::File,
    Severity::Critical,
    "cannot read"
)]
#[case(
    Broken::EmptyFile,
    Role::Master,
    Aspect::File,
    Severity::Critical,
    "host.crt: file is empty"
)]
#[case(
    Broken::GarbagePem,
    Role::Master,
    Aspect::File,
    Severity::Critical,
    "host-crl.pem: malformed PEM"
)]
#[case(
    Broken::MasterNameMismatch,
    Role::Master,
    Aspect::Name,
    Severity::Critical,
    "agents expecting master.test will refuse this certificate (its DNS names: other.test)"
)]
#[case(
    Broken::NoCommonName,
    Role::Agent,
    Aspect::Name,
    Severity::Critical,
    "no common name"
)]
#[case(
    Broken::NoSanForMaster,
    Role::Master,
    Aspect::Name,
    Severity::Critical,
    "no DNS subject alternative name"
)]
fn broken_case_gives_its_finding_and_exit_code(
    #[case] broken: Broken,
    #[case] role: Role,
    #[case] aspect: Aspect,
    #[case] severity: Severity,
    #[case] message: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let files = fixture(dir.path(), role, Some(broken));
    let mut options = CheckOptions::new(role);
    options.expected_name = (role == Role::Master).then(|| "master.test".to_string());
    let report = check(&files, &options);
    let hit = report
        .findings
        .iter()
        .find(|f| f.aspect == aspect && f.severity == severity && f.message.contains(message));
    assert!(
        hit.is_some(),
        "no {severity} {aspect} {message:?} in {:#?}",
        report.findings
    );
    assert_eq!(report.status(), severity, "{:#?}", report.findings);

    let name_args: &[&str] = match role {
        Role::Master => &["--name", "master.test"],
        Role::Agent => &[],
    };
    let (code, out) = cli_check(role, &files, name_args);
    assert_eq!(code, severity.exit_code(), "{out}");
    assert!(
        out.starts_with(&format!("MASIF-PKI {severity} - ")),
        "{out}"
    );
    let line = hit.unwrap().to_string();
    assert!(
        out.lines().any(|l| l == line),
        "{line:?} not printed in {out}"
    );

    match startup_check(role, &files, options.expected_name.as_deref()) {
        Ok(findings) => {
            assert_eq!(severity, Severity::Warning, "{findings:#?}");
            assert!(
                findings.iter().any(|f| f.to_string() == line),
                "{findings:#?}"
            );
            assert!(findings.iter().all(|f| f.severity == Severity::Warning));
        }
        Err(e) => {
            assert_eq!(severity, Severity::Critical);
            assert!(e.to_string().lines().any(|l| l == line), "{e}");
        }
    }
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let now = OffsetDateTime::now_utc();
    let leaf = ca.leaf_valid(
        "agent.test",
        Use::Server,
        now - Duration::days(90),
        now - Duration::days(1),
    );
    let files = common::files(dir.path(), "a", &ca, &leaf, Some(&ca.crl(&[&leaf], -1)));
    write(dir.path(), "a.key", ca.leaf("x.test", Use::Client).key_pem);
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let report = check(&files, &CheckOptions::new(Role::Agent));
    let critical: Vec<Aspect> = report.at(Severity::Critical).map(|f| f.aspect).collect();
    for aspect in [
        Aspect::Key,
        Aspect::Validity,
        Aspect::Usage,
        Aspect::Revocation,
        Aspect::Permissions,
    ] {
        assert!(
            critical.contains(&aspect),
            "{aspect} missing in {:#?}",
            report.findings
        );
    }
    assert!(report
        .at(Severity::Warning)
        .any(|f| f.aspect == Aspect::Crl));
    let (code, out) = cli_check(Role::Agent, &files, &[]);
    assert_eq!(code, 2);
    assert!(
        out.lines()
            .next()
            .unwrap()
            .contains("5 critical, 1 warning:"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1 + report.findings.len(), "{out}");
}

#[test]
fn warn_days_moves_the_warning_and_perfdata_carries_days_left() {
    let dir = tempfile::tempdir().unwrap();
    let files = fixture(dir.path(), Role::Agent, None);
    let (code, out) = cli_check(Role::Agent, &files, &["--warn-days", "400"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.lines().next().unwrap().ends_with(";400:;0:"), "{out}");
    let (code, out) = cli_check(Role::Agent, &files, &["--warn-days", "5"]);
    assert_eq!(code, 0, "{out}");
    let perf = out.lines().next().unwrap().split(" | ").nth(1).unwrap();
    assert!(perf.starts_with("days_left=36"), "{perf}");
}

#[test]
fn json_output_carries_status_and_findings() {
    let dir = tempfile::tempdir().unwrap();
    let files = fixture(dir.path(), Role::Agent, Some(Broken::Revoked));
    let (code, out) = cli_check(Role::Agent, &files, &["--json"]);
    assert_eq!(code, 2);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["status"], "CRITICAL");
    assert_eq!(json["exit_code"], 2);
    assert_eq!(json["source"], "files");
    let findings = json["report"]["findings"].as_array().unwrap();
    assert!(findings
        .iter()
        .any(|f| f["aspect"] == "revocation" && f["severity"] == "CRITICAL"));
    assert!(json["report"]["days_left"].as_i64().unwrap() > 300);
}

#[test]
fn service_user_must_be_able_to_read_every_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let files = fixture(dir.path(), Role::Agent, None);
    let (code, out) = cli_check(Role::Agent, &files, &["--user", "root"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("OK permissions: user root can read every file"),
        "{out}"
    );
    // The key is 0600 and owned by whoever runs the tests; "nobody" cannot read it.
    if std::fs::metadata(&files.key)
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap()
        != 65534
    {
        let (code, out) = cli_check(Role::Agent, &files, &["--user", "nobody"]);
        assert_eq!(code, 2, "{out}");
        assert!(
            out.contains("CRITICAL permissions: user nobody cannot read"),
            "{out}"
        );
    }
    let (code, out) = cli_check(Role::Agent, &files, &["--user", "no-such-user-masif"]);
    assert_eq!(code, 3, "{out}");
}

#[rstest]
#[case::key_missing(&["check", "--role", "agent", "--cert", "/x.pem", "--ca", "/ca.pem"], "needs --cert, --key and --ca")]
#[case::files_and_source(&["check", "--role", "agent", "--source", "puppet", "--cert", "/x"], "cannot be combined with --source puppet")]
#[case::root_with_files(&["check", "--role", "agent", "--source", "files", "--cert", "/a", "--key", "/b", "--ca", "/c", "--root", "/r"], "--root applies to discovered paths")]
#[case::unknown_source(&["check", "--role", "agent", "--source", "vault"], "unknown discover source")]
#[case::bad_role(&["check", "--role", "admin"], "unknown role")]
#[case::no_role(&["check"], "--role")]
#[case::bad_warn_days(&["check", "--role", "agent", "--warn-days", "soon"], "invalid value")]
#[case::unknown_flag(&["check", "--role", "agent", "--frobnicate"], "unexpected argument")]
fn usage_errors_are_unknown(#[case] args: &[&str], #[case] expected: &str) {
    let (code, out) = cli(args);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains(expected), "{out}");
}

#[test]
fn host_certificate_in_the_ca_file_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let files = fixture(dir.path(), Role::Agent, None);
    let stray = Ca::new("Other").leaf("stray.test", Use::Client);
    let bundle = std::fs::read_to_string(&files.ca).unwrap() + &stray.cert_pem;
    write(dir.path(), "host-ca.crt", bundle);
    let report = check(&files, &CheckOptions::new(Role::Agent));
    assert_eq!(report.status(), Severity::Warning, "{:#?}", report.findings);
    assert!(
        report.at(Severity::Warning).any(|f| f
            .message
            .contains("CA certificate 2 (CN=stray.test) is not a CA certificate")),
        "{:#?}",
        report.findings
    );
}

#[test]
fn check_config_uses_the_tls_key_of_a_daemon_config() {
    let dir = tempfile::tempdir().unwrap();
    let files = fixture(dir.path(), Role::Master, None);
    let config = write(
        dir.path(),
        "master.yml",
        format!(
            "api:\n  listen: \"0.0.0.0:8150\"\ntls:\n  cert: {}\n  key: {}\n  ca: {}\n  crl: {}\ndb: {{ url: \"sqlite:///x.db\" }}\n",
            files.cert.display(),
            files.key.display(),
            files.ca.display(),
            files.crl.as_ref().unwrap().display()
        ),
    );
    let config = config.to_str().unwrap();
    let check_as = |name| {
        cli(&[
            "check", "--role", "master", "--config", config, "--name", name,
        ])
    };
    let (code, out) = check_as("master.test");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK crl:"), "{out}");
    let (code, out) = check_as("elsewhere.test");
    assert_eq!(code, 2, "{out}");

    let (code, out) = cli(&[
        "check", "--role", "master", "--config", config, "--source", "puppet",
    ]);
    assert_eq!(code, 3, "{out}");
    let broken = write(dir.path(), "broken.yml", "tls: { cert: /x }\n");
    let (code, out) = cli(&[
        "check",
        "--role",
        "agent",
        "--config",
        broken.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("broken.yml: tls: missing key, ca"), "{out}");
}
