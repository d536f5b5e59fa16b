//! Figures for the master's certificate work: building a `ServerConfig` (done again on every
//! reload), `check()` and mutual-TLS handshakes, with CRLs of growing size.
//! Run: `cargo bench -p masif-pki --bench pki` (prints a table; asserts nothing).

use std::sync::Arc;
use std::time::{Duration, Instant};

use masif_pki::{check, CheckOptions, Role, TlsFiles};
use masif_testkit::pki::{EphemeralCa, Usage};
use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use time::OffsetDateTime;

/// A CRL of `ca` listing `count` made-up serials.
fn big_crl(ca: &EphemeralCa, count: u64) -> String {
    // The ephemeral CA signs CRLs of issued certificates only; build the list by hand here.
    let key = rcgen::KeyPair::from_pem(&ca.key_pem()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.cert_pem(), key).unwrap();
    let now = OffsetDateTime::now_utc();
    let params = CertificateRevocationListParams {
        this_update: now - time::Duration::hours(1),
        next_update: now + time::Duration::days(30),
        crl_number: SerialNumber::from(7u64),
        issuing_distribution_point: None,
        revoked_certs: (0..count)
            .map(|i| RevokedCertParams {
                serial_number: SerialNumber::from(0x4000_0000_0000_0000 + i),
                revocation_time: now - time::Duration::hours(2),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    params.signed_by(&issuer).unwrap().pem().unwrap()
}

/// Mean time of `runs` calls of `f`.
fn time<T>(runs: u32, mut f: impl FnMut() -> T) -> Duration {
    let start = Instant::now();
    for _ in 0..runs {
        std::hint::black_box(f());
    }
    start.elapsed() / runs
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let ca = EphemeralCa::new("Bench CA").unwrap();
    let master = ca.issue("master.bench", Usage::Server).unwrap();
    let agent = ca.issue("agent.bench", Usage::Client).unwrap();
    let agent_files = ca
        .write_files(&dir.path().join("agent"), &agent, None)
        .unwrap();

    println!(
        "{:>12} {:>10} {:>16} {:>12} {:>16}",
        "CRL entries", "CRL bytes", "server_config", "check()", "handshakes/s"
    );
    for entries in [0u64, 10_000, 100_000] {
        let crl = big_crl(&ca, entries);
        let files: TlsFiles = ca
            .write_files(&dir.path().join(format!("m{entries}")), &master, Some(&crl))
            .unwrap();
        let build = time(5, || masif_pki::server_config(&files).unwrap());
        let checked = time(5, || check(&files, &CheckOptions::new(Role::Master)));
        let rate = handshakes(&files, &agent_files, 200);
        println!(
            "{entries:>12} {:>10} {:>13.1} ms {:>9.1} ms {rate:>16.0}",
            crl.len(),
            ms(build),
            ms(checked)
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Sequential full mutual-TLS handshakes over loopback per second (one client, one server task).
fn handshakes(master: &TlsFiles, agent: &TlsFiles, count: u32) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = Arc::new(masif_pki::server_config(master).unwrap());
    let client = Arc::new(masif_pki::client_config(agent).unwrap());
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        tokio::spawn(async move {
            for _ in 0..count {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut tls = acceptor.accept(tcp).await.unwrap();
                // The client may already be gone once it has its byte.
                let _ = tls.write_all(b"x").await;
                let _ = tls.shutdown().await;
            }
        });
        let connector = tokio_rustls::TlsConnector::from(client);
        let start = Instant::now();
        for _ in 0..count {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("master.bench").unwrap();
            let mut tls = connector.connect(name, tcp).await.unwrap();
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await.unwrap();
        }
        f64::from(count) / start.elapsed().as_secs_f64()
    })
}
