//! Fuzz-style property tests of the certificate, key and CRL loaders and of the check that
//! inspects CRLs: arbitrary bytes, and real PEM and DER files (a CA, a leaf certificate, its
//! key, a CRL made with rcgen) truncated, flipped and spliced, as text and inside re-encoded
//! PEM. Whatever a file holds, loading never panics, answers the same twice and refuses with a
//! short message. A few dozen cases each in CI; for a long run:
//! `PROPTEST_CASES=100000 cargo nextest run -p masif-pki --test fuzz`.

use std::path::Path;
use std::sync::LazyLock;

use masif_pki::{check, load_certs, load_crls, load_key, CheckOptions, Role, TlsFiles};
use masif_testkit::fuzz::{assert_short_message, config, mutated, parse_twice, raw_bytes};
use masif_testkit::pki::{EphemeralCa, Usage};
use proptest::prelude::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

/// PEM's syntax, spliced in by mutations.
const PEM: &[&[u8]] = &[
    b"-----BEGIN CERTIFICATE-----\n",
    b"-----END CERTIFICATE-----\n",
    b"-----BEGIN PRIVATE KEY-----\n",
    b"-----END PRIVATE KEY-----\n",
    b"-----BEGIN X509 CRL-----\n",
    b"-----END X509 CRL-----\n",
    b"-----BEGIN EC PRIVATE KEY-----\n",
    b"-----BEGIN RSA PRIVATE KEY-----\n",
    b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n",
    b"-----BEGIN ",
    b"-----END ",
    b"-----",
    b"Proc-Type: 4,ENCRYPTED\n",
    b"MIIB",
    b"=",
    b"==\n",
    b"\n",
    b"\x30\x82\xff\xff",
    b"\x30\x84\xff\xff\xff\xff",
    b"\x30\x80",
    b"\x02\x01\x00",
    b"\x06\x03\x55\x04\x03",
];

/// A real PKI's files: PEM as written, and the DER inside.
struct Fixture {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    crl_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
    crl_der: Vec<u8>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let ca = EphemeralCa::new("Fuzz CA").unwrap();
    let leaf = ca.issue("agent.fuzz.test", Usage::Client).unwrap();
    let crl_pem = ca.crl_pem(&[&leaf], 30).unwrap();
    Fixture {
        ca_pem: ca.cert_pem(),
        cert_der: CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes())
            .unwrap()
            .to_vec(),
        key_der: PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())
            .unwrap()
            .secret_der()
            .to_vec(),
        crl_der: CertificateRevocationListDer::from_pem_slice(crl_pem.as_bytes())
            .unwrap()
            .to_vec(),
        cert_pem: leaf.cert_pem,
        key_pem: leaf.key_pem,
        crl_pem,
    }
});

/// Which file of the fixture a case starts from.
#[derive(Debug, Clone, Copy)]
enum Seed {
    CertPem,
    KeyPem,
    CrlPem,
    CertDer,
    KeyDer,
    CrlDer,
    /// A chain, key and CRL all in one PEM file.
    Bundle,
}

impl Seed {
    const ALL: [Seed; 7] = [
        Seed::CertPem,
        Seed::KeyPem,
        Seed::CrlPem,
        Seed::CertDer,
        Seed::KeyDer,
        Seed::CrlDer,
        Seed::Bundle,
    ];

    fn bytes(self) -> Vec<u8> {
        let f = &*FIXTURE;
        match self {
            Seed::CertPem => f.cert_pem.clone().into_bytes(),
            Seed::KeyPem => f.key_pem.clone().into_bytes(),
            Seed::CrlPem => f.crl_pem.clone().into_bytes(),
            Seed::CertDer => f.cert_der.clone(),
            Seed::KeyDer => f.key_der.clone(),
            Seed::CrlDer => f.crl_der.clone(),
            Seed::Bundle => [&f.cert_pem, &f.ca_pem, &f.key_pem, &f.crl_pem]
                .map(String::as_str)
                .concat()
                .into_bytes(),
        }
    }

    /// The PEM label of a DER seed, to wrap its mutated DER in.
    fn label(self) -> &'static str {
        match self {
            Seed::CertDer | Seed::CertPem | Seed::Bundle => "CERTIFICATE",
            Seed::KeyDer | Seed::KeyPem => "PRIVATE KEY",
            Seed::CrlDer | Seed::CrlPem => "X509 CRL",
        }
    }
}

fn seed() -> impl Strategy<Value = Seed> {
    proptest::sample::select(Seed::ALL.to_vec())
}

/// A fixture file mutated as it is (PEM text or DER bytes).
fn mutated_file() -> impl Strategy<Value = Vec<u8>> {
    seed().prop_flat_map(|seed| mutated(Just(seed.bytes()), PEM))
}

/// A DER seed mutated, then wrapped in PEM again, so that the mutation reaches the ASN.1
/// parsers behind a well-formed PEM layer.
fn mutated_der_in_pem() -> impl Strategy<Value = Vec<u8>> {
    proptest::sample::select(vec![Seed::CertDer, Seed::KeyDer, Seed::CrlDer]).prop_flat_map(
        |seed| {
            mutated(Just(seed.bytes()), PEM)
                .prop_map(move |der| pem::encode(&pem::Pem::new(seed.label(), der)).into_bytes())
        },
    )
}

/// Writes `bytes` to a fresh file and loads it as each kind: every answer the same twice,
/// every refusal short.
fn load_every_way(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, bytes).unwrap();
    let shown = |e: &masif_pki::PkiError| {
        let text = e.to_string();
        // The message starts with the file's name, which is ours, not the input.
        let rest = text.replacen(&path.display().to_string(), "FILE", 1);
        assert_short_message(&rest);
    };
    if let Err(e) = parse_twice(|| load_certs(&path)) {
        shown(&e);
    }
    if let Err(e) = parse_twice(|| load_key(&path)) {
        shown(&e);
    }
    if let Err(e) = parse_twice(|| load_crls(&path)) {
        shown(&e);
    }
}

/// The real files with one replaced by `bytes`: `masif-pki check` (which inspects CRLs
/// against the CA bundle) gives the same findings twice, each short.
fn check_with(slot: usize, bytes: &[u8]) {
    let f = &*FIXTURE;
    let dir = tempfile::tempdir().unwrap();
    let mut contents = [
        f.cert_pem.as_bytes(),
        f.key_pem.as_bytes(),
        f.ca_pem.as_bytes(),
        f.crl_pem.as_bytes(),
    ];
    contents[slot % contents.len()] = bytes;
    let names = ["cert.pem", "key.pem", "ca.pem", "crl.pem"];
    for (name, content) in names.iter().zip(contents) {
        write_private(&dir.path().join(name), content);
    }
    let files = TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
        ca: dir.path().join("ca.pem"),
        crl: Some(dir.path().join("crl.pem")),
    };
    let options = CheckOptions::new(Role::Agent);
    let findings = |report: masif_pki::Report| format!("{:?}", report.findings);
    let first = findings(check(&files, &options));
    assert_eq!(
        first,
        findings(check(&files, &options)),
        "checks are deterministic"
    );
    for finding in check(&files, &options).findings {
        let message = finding
            .to_string()
            .replace(&dir.path().display().to_string(), "DIR");
        assert_short_message(&message);
    }
}

fn write_private(path: &Path, content: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn raw_bytes_are_refused_briefly(bytes in raw_bytes(300, PEM)) {
        load_every_way(&bytes);
    }

    #[test]
    fn mutated_pem_and_der_files(bytes in mutated_file()) {
        load_every_way(&bytes);
    }

    #[test]
    fn mutated_der_inside_pem(bytes in mutated_der_in_pem()) {
        load_every_way(&bytes);
    }

    #[test]
    fn checks_with_one_mutated_file(
        slot in 0..4usize,
        bytes in prop_oneof![mutated_file(), mutated_der_in_pem()],
    ) {
        check_with(slot, &bytes);
    }
}

#[test]
fn the_fixture_loads_every_way_it_should() {
    let dir = tempfile::tempdir().unwrap();
    for (seed, certs, keys, crls) in [
        (Seed::CertPem, 1, 0, 0),
        (Seed::CertDer, 1, 0, 0),
        (Seed::KeyPem, 0, 1, 0),
        (Seed::KeyDer, 0, 1, 0),
        (Seed::CrlPem, 0, 0, 1),
        (Seed::CrlDer, 0, 0, 1),
        (Seed::Bundle, 2, 1, 1),
    ] {
        let path = dir.path().join("f");
        std::fs::write(&path, seed.bytes()).unwrap();
        assert_eq!(load_certs(&path).map_or(0, |c| c.len()), certs, "{seed:?}");
        assert_eq!(usize::from(load_key(&path).is_ok()), keys, "{seed:?}");
        assert_eq!(load_crls(&path).map_or(0, |c| c.len()), crls, "{seed:?}");
    }
}

/// Found by `mutated_pem_and_der_files`: the PEM parser's message lists every byte of the
/// offending line as a number, so a 300-byte line made a 1,060-character message.
#[rstest::rstest]
#[case::unended_section(format!("-----BEGIN PRIVATE K{}-----\nMIIB\n", "'".repeat(300)), "malformed PEM: section \"PRIVATE K''''")]
#[case::malformed_begin_line(format!("-----BEGIN PRIVATE KEY-----{}\nMIIB\n", "'".repeat(300)), "malformed PEM: malformed BEGIN line \"-----BEGIN PRIVATE KEY-----''''")]
fn a_long_malformed_pem_line_is_quoted_briefly(#[case] text: String, #[case] expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, text).unwrap();
    for err in [
        load_certs(&path).unwrap_err(),
        load_key(&path).unwrap_err(),
        load_crls(&path).unwrap_err(),
    ] {
        let message = err
            .to_string()
            .replacen(&path.display().to_string(), "FILE", 1);
        assert_short_message(&message);
        assert!(
            message.starts_with(&format!("FILE: {expected}")),
            "{message}"
        );
    }
}
