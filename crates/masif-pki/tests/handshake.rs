//! Real mutual-TLS handshakes over loopback with the configs masif-pki builds.

mod common;

use common::tls::connect;
use common::{files, Ca, Leaf, Use};
use masif_pki::{client_config, server_config, TlsFiles};
use rstest::rstest;

struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    master: Leaf,
}

impl Pki {
    fn new() -> Pki {
        let ca = Ca::new("Masif Test CA");
        let master = ca.leaf("master.test", Use::Server);
        Pki {
            dir: tempfile::tempdir().unwrap(),
            ca,
            master,
        }
    }

    fn master_files(&self, crl: Option<&str>) -> TlsFiles {
        files(self.dir.path(), "master", &self.ca, &self.master, crl)
    }

    fn agent_files(&self, ca: &Ca, leaf: &Leaf, name: &str) -> TlsFiles {
        let mut f = files(self.dir.path(), name, ca, leaf, None);
        // The agent always trusts the real CA, whoever issued its own certificate.
        f.ca = common::write(
            self.dir.path(),
            &format!("{name}-trust.crt"),
            &self.ca.cert_pem,
        );
        f
    }
}

#[tokio::test]
async fn good_client_certificate_is_accepted_and_its_cn_seen() {
    let pki = Pki::new();
    let agent = pki.ca.leaf("agent01.test", Use::Client);
    let crl = pki.ca.crl(&[], 30);
    let server = server_config(&pki.master_files(Some(&crl))).unwrap();
    let client = client_config(&pki.agent_files(&pki.ca, &agent, "agent01")).unwrap();
    let out = connect(server, client, "master.test").await;
    assert_eq!(out.server, Ok("agent01.test".to_string()));
    assert_eq!(out.client, Ok("hello agent01.test".to_string()));
}

#[tokio::test]
async fn intermediate_issued_client_with_two_cert_bundle_and_two_crls_is_accepted() {
    let pki = Pki::new();
    let inter = pki.ca.intermediate("Masif Intermediate CA");
    let agent = inter.leaf("agent02.test", Use::Client);
    let dir = pki.dir.path();
    let mut master = pki.master_files(None);
    master.ca = common::write(
        dir,
        "bundle.pem",
        format!("{}{}", inter.cert_pem, pki.ca.cert_pem),
    );
    master.crl = Some(common::write(
        dir,
        "two-crls.pem",
        format!("{}{}", inter.crl(&[], 30), pki.ca.crl(&[], 30)),
    ));
    let server = server_config(&master).unwrap();
    let client = client_config(&pki.agent_files(&inter, &agent, "agent02")).unwrap();
    let out = connect(server, client, "master.test").await;
    assert_eq!(out.client, Ok("hello agent02.test".to_string()));
}

/// Client certificates the master must refuse.
#[derive(Debug, Clone, Copy)]
enum Refused {
    /// Issued by a CA the master does not trust.
    ForeignCa,
    /// Revoked in the CA's current CRL.
    Revoked,
    /// Revoked in a CRL past its next update: the revocation still applies.
    RevokedInExpiredCrl,
}

#[rstest]
#[case::client_certificate_from_foreign_ca(Refused::ForeignCa, "UnknownIssuer")]
#[case::revoked_client_certificate(Refused::Revoked, "Revoked")]
#[case::revocation_in_an_expired_crl_still_applies(Refused::RevokedInExpiredCrl, "Revoked")]
#[tokio::test]
async fn client_certificates_are_refused(#[case] case: Refused, #[case] reason: &str) {
    let pki = Pki::new();
    let foreign = Ca::new("Foreign CA");
    let (issuer, crl_days) = match case {
        Refused::ForeignCa => (&foreign, None),
        Refused::Revoked => (&pki.ca, Some(30)),
        Refused::RevokedInExpiredCrl => (&pki.ca, Some(-3)),
    };
    let agent = issuer.leaf("refused.test", Use::Client);
    let crl = crl_days.map(|days| pki.ca.crl(&[&agent], days));
    let server = server_config(&pki.master_files(crl.as_deref())).unwrap();
    let client = client_config(&pki.agent_files(issuer, &agent, "refused")).unwrap();
    let out = connect(server, client, "master.test").await;
    let err = out.server.unwrap_err();
    assert!(err.contains(reason), "{err}");
    assert!(out.client.is_err());
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let pki = Pki::new();
    let server = server_config(&pki.master_files(None)).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(
            masif_pki::load_certs(&pki.master_files(None).ca)
                .unwrap()
                .remove(0),
        )
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(masif_pki::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let out = connect(server, client, "master.test").await;
    let err = out.server.unwrap_err();
    assert!(
        err.contains("NoCertificatesPresented") || err.contains("certificate"),
        "{err}"
    );
    assert!(out.client.is_err());
}

#[tokio::test]
async fn server_only_certificate_is_refused_as_client_certificate() {
    let pki = Pki::new();
    let agent = pki.ca.leaf("agent03.test", Use::Server);
    let server = server_config(&pki.master_files(None)).unwrap();
    let client = client_config(&pki.agent_files(&pki.ca, &agent, "agent03")).unwrap();
    let out = connect(server, client, "master.test").await;
    assert!(out.server.is_err());
}

#[tokio::test]
async fn client_refuses_server_whose_name_does_not_match() {
    let pki = Pki::new();
    let agent = pki.ca.leaf("agent01.test", Use::Client);
    let server = server_config(&pki.master_files(None)).unwrap();
    let client = client_config(&pki.agent_files(&pki.ca, &agent, "agent01")).unwrap();
    let out = connect(server, client, "other-master.test").await;
    let err = out.client.unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");
    assert!(out.server.is_err());
}

#[tokio::test]
async fn client_refuses_server_from_foreign_ca() {
    let pki = Pki::new();
    let foreign = Ca::new("Foreign CA");
    let fake_master = foreign.leaf("master.test", Use::Server);
    let dir = pki.dir.path();
    let mut master = files(dir, "fake", &foreign, &fake_master, None);
    master.ca = common::write(dir, "fake-trust.crt", &pki.ca.cert_pem);
    let agent = pki.ca.leaf("agent01.test", Use::Client);
    let server = server_config(&master).unwrap();
    let client = client_config(&pki.agent_files(&pki.ca, &agent, "agent01")).unwrap();
    let out = connect(server, client, "master.test").await;
    assert!(out.client.unwrap_err().contains("UnknownIssuer"));
}

#[test]
fn server_config_offers_only_http11_and_only_tls12_plus_aead() {
    let pki = Pki::new();
    let config = server_config(&pki.master_files(None)).unwrap();
    assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    for suite in &config.crypto_provider().cipher_suites {
        let name = format!("{:?}", suite.suite());
        assert!(
            name.starts_with("TLS13_") || name.starts_with("TLS_ECDHE_"),
            "{name}"
        );
        assert!(
            name.contains("GCM") || name.contains("CHACHA20_POLY1305"),
            "{name}"
        );
    }
}

/// The master issues no session tickets and keeps no sessions: every connection of an agent,
/// even with its client configuration (and session store) reused, is a full handshake with its
/// certificate checked against the CA and CRL.
#[tokio::test]
async fn sessions_are_never_resumed() {
    use rustls::HandshakeKind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let pki = Pki::new();
    let agent = pki.ca.leaf("agent.test", Use::Client);
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(
        server_config(&pki.master_files(None)).unwrap(),
    ));
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        client_config(&pki.agent_files(&pki.ca, &agent, "agent")).unwrap(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    for attempt in 0..3 {
        let client = tokio::spawn({
            let connector = connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                let name = rustls::pki_types::ServerName::try_from("master.test").unwrap();
                let mut tls = connector.connect(name, tcp).await.unwrap();
                let mut reply = Vec::new();
                tls.read_to_end(&mut reply).await.unwrap();
                tls.get_ref().1.handshake_kind()
            }
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        assert_eq!(
            tls.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Full),
            "server, connection {attempt}"
        );
        tls.write_all(b"hello").await.unwrap();
        tls.shutdown().await.unwrap();
        assert_eq!(
            client.await.unwrap(),
            Some(HandshakeKind::Full),
            "client, connection {attempt}"
        );
    }
}
