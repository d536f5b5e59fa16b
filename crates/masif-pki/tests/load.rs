//! Loading certificates, keys and CRLs: every format that must work and every error that must be clear.

mod common;

use common::{files, openssl, v1_crl, write, Ca, Use};
use masif_pki::{load_certs, load_crls, load_key, server_config, LoadedTls, PkiError};
use rstest::rstest;

fn pem_to_der(dir: &std::path::Path, kind: &str, pem: &str) -> Vec<u8> {
    let input = write(dir, &format!("{kind}.in.pem"), pem);
    let input = input.to_str().unwrap();
    match kind {
        "x509" | "crl" => openssl(dir, &[kind, "-in", input, "-outform", "DER"]),
        _ => openssl(dir, &["pkey", "-in", input, "-outform", "DER"]),
    }
}

#[test]
fn ca_bundle_with_several_certificates_loads_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = Ca::new("Test Root CA");
    let inter = root.intermediate("Test Intermediate CA");
    let path = write(
        dir.path(),
        "ca.pem",
        format!("{}{}", inter.cert_pem, root.cert_pem),
    );
    let certs = load_certs(&path).unwrap();
    assert_eq!(certs.len(), 2);
    assert_eq!(
        masif_pki::common_name(&certs[0]).unwrap().as_deref(),
        Some("Test Intermediate CA")
    );
    assert_eq!(
        masif_pki::common_name(&certs[1]).unwrap().as_deref(),
        Some("Test Root CA")
    );
}

#[test]
fn der_certificate_key_and_crl_load() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("DER CA");
    let leaf = ca.leaf("host.test", Use::Client);
    let cert = write(
        dir.path(),
        "c.der",
        pem_to_der(dir.path(), "x509", &leaf.cert_pem),
    );
    let key = write(
        dir.path(),
        "k.der",
        pem_to_der(dir.path(), "pkey", &leaf.key_pem),
    );
    let crl = write(
        dir.path(),
        "crl.der",
        pem_to_der(dir.path(), "crl", &ca.crl(&[&leaf], 30)),
    );
    assert_eq!(load_certs(&cert).unwrap().len(), 1);
    load_key(&key).unwrap();
    assert_eq!(load_crls(&crl).unwrap().len(), 1);
}

#[test]
fn several_crls_in_one_file_load() {
    let dir = tempfile::tempdir().unwrap();
    let root = Ca::new("Root");
    let inter = root.intermediate("Inter");
    let path = write(
        dir.path(),
        "crl.pem",
        format!("{}{}", inter.crl(&[], 30), root.crl(&[], 30)),
    );
    assert_eq!(load_crls(&path).unwrap().len(), 2);
}

#[rstest]
#[case::pkcs1_rsa(&["genrsa", "-traditional", "2048"], "BEGIN RSA PRIVATE KEY")]
#[case::pkcs8_rsa(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], "BEGIN PRIVATE KEY")]
#[case::sec1_ec(&["ecparam", "-name", "prime256v1", "-genkey", "-noout"], "BEGIN EC PRIVATE KEY")]
fn key_formats_load(#[case] args: &[&str], #[case] marker: &str) {
    let dir = tempfile::tempdir().unwrap();
    let pem = String::from_utf8(openssl(dir.path(), args)).unwrap();
    assert!(pem.contains(marker), "{pem}");
    let path = write(dir.path(), "key.pem", &pem);
    load_key(&path).unwrap();
}

/// The message of a load error, which must name the file.
fn message(err: PkiError, path: &std::path::Path) -> String {
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()),
        "{text:?} does not name {path:?}"
    );
    text
}

#[rstest]
#[case::empty("", "file is empty")]
#[case::whitespace("  \n\n", "file is empty")]
#[case::garbage_text(
    "hello, this is not a certificate\n",
    "neither a PEM file nor a DER certificate"
)]
#[case::garbage_binary("\u{1}\u{2}\u{3}\u{4}", "neither a PEM file nor a DER certificate")]
#[case::bad_base64(
    "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    "malformed PEM"
)]
#[case::unterminated("-----BEGIN CERTIFICATE-----\nMIIB\n", "malformed PEM")]
#[case::valid_base64_not_x509(
    "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
    "certificate 1 is not valid X.509"
)]
#[case::only_a_key("KEY", "contains no certificate (found: private key)")]
#[case::unknown_section(
    "-----BEGIN FOO-----\naGVsbG8=\n-----END FOO-----\n",
    "contains no certificate (no recognised PEM section)"
)]
fn bad_certificate_files_are_refused(#[case] contents: &str, #[case] expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let contents = if contents == "KEY" {
        rcgen::KeyPair::generate().unwrap().serialize_pem()
    } else {
        contents.to_string()
    };
    let path = write(dir.path(), "cert.pem", contents);
    let text = message(load_certs(&path).unwrap_err(), &path);
    assert!(text.contains(expected), "{text:?} lacks {expected:?}");
}

#[rstest]
#[case::empty("", "file is empty")]
#[case::garbage("garbage", "neither a PEM file nor a DER private key")]
#[case::certificate_instead("CERT", "contains no private key (found: certificate)")]
#[case::encrypted(
    "-----BEGIN ENCRYPTED PRIVATE KEY-----\naGVsbG8=\n-----END ENCRYPTED PRIVATE KEY-----\n",
    "private key is encrypted"
)]
#[case::not_a_key(
    "-----BEGIN PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n-----END PRIVATE KEY-----\n",
    "unusable private key"
)]
#[case::two_keys("TWO", "more than one private key")]
fn bad_key_files_are_refused(#[case] contents: &str, #[case] expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let contents = match contents {
        "CERT" => Ca::new("x").cert_pem,
        "TWO" => format!(
            "{}{}",
            rcgen::KeyPair::generate().unwrap().serialize_pem(),
            rcgen::KeyPair::generate().unwrap().serialize_pem()
        ),
        other => other.to_string(),
    };
    let path = write(dir.path(), "key.pem", contents);
    let text = message(load_key(&path).unwrap_err(), &path);
    assert!(text.contains(expected), "{text:?} lacks {expected:?}");
}

#[rstest]
#[case::empty("", "file is empty")]
#[case::garbage("garbage", "neither a PEM file nor a DER CRL")]
#[case::certificate_instead("CERT", "contains no CRL (found: certificate)")]
#[case::not_a_crl(
    "-----BEGIN X509 CRL-----\naGVsbG8gd29ybGQ=\n-----END X509 CRL-----\n",
    "CRL 1 is malformed"
)]
fn bad_crl_files_are_refused(#[case] contents: &str, #[case] expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let contents = match contents {
        "CERT" => Ca::new("x").cert_pem,
        other => other.to_string(),
    };
    let path = write(dir.path(), "crl.pem", contents);
    let text = message(load_crls(&path).unwrap_err(), &path);
    assert!(text.contains(expected), "{text:?} lacks {expected:?}");
}

#[test]
fn missing_file_is_a_read_error_naming_it() {
    let path = std::path::Path::new("/nonexistent/masif/cert.pem");
    let text = message(load_certs(path).unwrap_err(), path);
    assert!(text.starts_with("cannot read"), "{text}");
}

#[test]
fn oversized_file_is_refused_without_reading_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.pem");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(masif_pki::MAX_FILE_SIZE + 10).unwrap();
    let text = message(load_certs(&path).unwrap_err(), &path);
    assert!(text.contains("larger than"), "{text}");
}

#[test]
fn key_of_another_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let leaf = ca.leaf("a.test", Use::Both);
    let other = ca.leaf("b.test", Use::Both);
    let mut f = files(dir.path(), "a", &ca, &leaf, None);
    f.key = write(dir.path(), "b.key", &other.key_pem);
    let err = LoadedTls::load(&f).unwrap_err();
    assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("b.key") && text.contains("a.crt") && text.contains("does not match"),
        "{text}"
    );
}

/// CRLs a server configuration must refuse.
#[derive(Debug, Clone, Copy)]
enum BadCrl {
    /// A version 1 CRL of the right CA (made with openssl).
    Version1,
    /// A CRL of another CA.
    OtherCa,
    /// A CRL of a CA with the same name but another key.
    SameNameOtherKey,
}

#[rstest]
#[case::v1_crl(BadCrl::Version1, &["m-crl.pem", "version 1 CRL"])]
#[case::crl_of_another_ca(BadCrl::OtherCa, &["m-crl.pem", "not signed by a certificate of"])]
#[case::crl_of_same_name_but_other_key(BadCrl::SameNameOtherKey, &["signature does not verify"])]
fn bad_crls_are_refused_by_server_config(#[case] bad: BadCrl, #[case] expected: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let leaf = ca.leaf("master.test", Use::Server);
    let crl = match bad {
        BadCrl::Version1 => v1_crl(dir.path(), &ca),
        BadCrl::OtherCa => Ca::new("Foreign CA").crl(&[], 30),
        BadCrl::SameNameOtherKey => Ca::new("CA").crl(&[], 30),
    };
    let f = files(dir.path(), "m", &ca, &leaf, Some(&crl));
    let text = server_config(&f).unwrap_err().to_string();
    assert!(expected.iter().all(|e| text.contains(e)), "{text}");
}

#[test]
fn expired_crl_is_still_accepted_for_configs() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let leaf = ca.leaf("master.test", Use::Both);
    let f = files(dir.path(), "m", &ca, &leaf, Some(&ca.crl(&[], -5)));
    server_config(&f).unwrap();
    masif_pki::client_config(&f).unwrap();
}

#[test]
fn newest_modification_follows_the_newest_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let leaf = ca.leaf("master.test", Use::Both);
    let f = files(dir.path(), "m", &ca, &leaf, Some(&ca.crl(&[], 30)));
    let before = f.newest_modification().unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(f.crl.as_ref().unwrap())
        .unwrap()
        .set_modified(later)
        .unwrap();
    let after = f.newest_modification().unwrap();
    assert!(after > before);
    assert_eq!(after, later);
    std::fs::remove_file(&f.key).unwrap();
    assert!(f
        .newest_modification()
        .unwrap_err()
        .to_string()
        .contains("m.key"));
}

#[test]
fn stamp_changes_when_a_file_is_replaced_by_an_older_one() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let leaf = ca.leaf("master.test", Use::Both);
    let f = files(dir.path(), "m", &ca, &leaf, Some(&ca.crl(&[], 30)));
    let before = f.stamp().unwrap();
    assert_eq!(f.stamp().unwrap(), before);
    let newest = f.newest_modification().unwrap();
    // A new CRL put in place by rename, carrying an old modification time.
    let staged = write(dir.path(), "staged-crl.pem", ca.crl(&[&leaf], 30));
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(&staged)
        .unwrap()
        .set_modified(old)
        .unwrap();
    std::fs::rename(&staged, f.crl.as_ref().unwrap()).unwrap();
    assert_ne!(f.stamp().unwrap(), before);
    assert!(f.newest_modification().unwrap() <= newest);
    std::fs::remove_file(&f.cert).unwrap();
    assert!(f.stamp().unwrap_err().to_string().contains("m.crt"));
}
