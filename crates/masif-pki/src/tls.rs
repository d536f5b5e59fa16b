//! The TLS files of a host and the rustls server/client configurations built from them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};

use crate::client_verifier::SingleCommonName;
use crate::crl::inspect_crls;
use crate::error::{PkiError, Result};
use crate::load::{load_certs, load_crls, load_key};

/// Where a host's certificate, key, CA bundle and (optional) CRL live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The host's certificate (optionally followed by intermediates).
    pub cert: PathBuf,
    /// The host's private key (PKCS#1, PKCS#8 or SEC1; PEM or DER).
    pub key: PathBuf,
    /// The CA bundle that peers must chain to (one or more certificates).
    pub ca: PathBuf,
    /// CRLs of the CA(s), one or more in one file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl: Option<PathBuf>,
}

impl TlsFiles {
    /// The files, certificate first, CRL last when there is one.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        [
            Some(&self.cert),
            Some(&self.key),
            Some(&self.ca),
            self.crl.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
    }

    /// The newest modification time of all the files. The master polls this to rebuild its
    /// `ServerConfig` when a certificate is renewed or a new CRL is published.
    pub fn newest_modification(&self) -> Result<SystemTime> {
        let mut newest = SystemTime::UNIX_EPOCH;
        for path in self.paths() {
            let modified = std::fs::metadata(path)
                .and_then(|m| m.modified())
                .map_err(|e| PkiError::read(path, e))?;
            newest = newest.max(modified);
        }
        Ok(newest)
    }
}

/// What the files' metadata says about their contents: per file (modified, length, inode).
/// Two stamps differ after any change or replacement, even by a file with an older
/// modification time (`cp -p`, `install -p`, an atomic rename).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesStamp(Vec<(SystemTime, u64, u64)>);

impl TlsFiles {
    /// The current [`FilesStamp`]; a missing file is an error naming it.
    pub fn stamp(&self) -> Result<FilesStamp> {
        use std::os::unix::fs::MetadataExt;
        self.paths()
            .map(|path| {
                let meta = std::fs::metadata(path).map_err(|e| PkiError::read(path, e))?;
                let modified = meta.modified().map_err(|e| PkiError::read(path, e))?;
                Ok((modified, meta.len(), meta.ino()))
            })
            .collect::<Result<Vec<_>>>()
            .map(FilesStamp)
    }
}

/// The ring provider restricted to ECDHE key exchange with AEAD ciphers (TLS 1.3 and 1.2).
pub fn provider() -> Arc<CryptoProvider> {
    use ring::cipher_suite::*;
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            TLS13_AES_256_GCM_SHA384,
            TLS13_AES_128_GCM_SHA256,
            TLS13_CHACHA20_POLY1305_SHA256,
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..ring::default_provider()
    })
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Everything in a `TlsFiles`, loaded and checked for consistency.
#[derive(Debug)]
pub struct LoadedTls {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub roots: Arc<RootCertStore>,
    pub crls: Vec<CertificateRevocationListDer<'static>>,
}

impl LoadedTls {
    /// Loads all files; the key must match the certificate, every CA certificate must be a
    /// usable trust anchor, and every CRL must be v2 and signed by a certificate of the CA file.
    pub fn load(files: &TlsFiles) -> Result<Self> {
        let chain = load_certs(&files.cert)?;
        let key = load_key(&files.key)?;
        check_key_matches(files, &chain, &key)?;
        let ca_certs = load_certs(&files.ca)?;
        let mut roots = RootCertStore::empty();
        for (i, cert) in ca_certs.iter().enumerate() {
            roots.add(cert.clone()).map_err(|e| {
                PkiError::invalid(
                    &files.ca,
                    format!("certificate {} is not usable as a trust anchor: {e}", i + 1),
                )
            })?;
        }
        let crls = match &files.crl {
            None => Vec::new(),
            Some(path) => {
                let crls = load_crls(path)?;
                let infos =
                    inspect_crls(&crls, &ca_certs).map_err(|e| PkiError::invalid(path, e))?;
                if let Some(reason) = infos.iter().find_map(|i| i.unusable_reason(&files.ca)) {
                    return Err(PkiError::invalid(path, reason));
                }
                crls
            }
        };
        Ok(Self {
            chain,
            key,
            roots: Arc::new(roots),
            crls,
        })
    }
}

/// Fails with `KeyMismatch` when the key's public half is not the certificate's.
fn check_key_matches(
    files: &TlsFiles,
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
) -> Result<()> {
    match key_matches(chain, key) {
        Ok(true) => Ok(()),
        Ok(false) => Err(PkiError::KeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        }),
        Err(e) => Err(PkiError::invalid(
            &files.cert,
            format!("cannot compare certificate and key: {e}"),
        )),
    }
}

/// Whether `key` is the private half of the first certificate of `chain`.
pub(crate) fn key_matches(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
) -> std::result::Result<bool, rustls::Error> {
    let signing_key = provider().key_provider.load_private_key(key.clone_key())?;
    match CertifiedKey::new(chain.to_vec(), signing_key).keys_match() {
        Ok(()) => Ok(true),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Maps a verifier-builder error to a message naming the CRL (or CA) file.
fn verifier_error(files: &TlsFiles, e: rustls::server::VerifierBuilderError) -> PkiError {
    use rustls::server::VerifierBuilderError as E;
    match (e, &files.crl) {
        (E::InvalidCrl(crl_error), Some(path)) => {
            PkiError::invalid(path, format!("CRL rejected by rustls: {crl_error:?}"))
        }
        (E::NoRootAnchors, _) => PkiError::invalid(&files.ca, "contains no usable CA certificate"),
        (other, _) => PkiError::Tls(format!("{other}")),
    }
}

/// The master's TLS configuration: TLS 1.2+, ECDHE+AEAD only, a client certificate chaining
/// to the CA file is REQUIRED, CRLs apply (also once expired — `masif-pki check` warns about
/// that instead of locking the fleet out), a client certificate with more than one CN is
/// refused (the CN names the agent, and two would leave the choice to a parser), ALPN `http/1.1` only (the serving core speaks no
/// HTTP/2).
///
/// No session resumption: a resumed session skips the client certificate check, so a
/// certificate revoked meanwhile would still get in, and a fleet of thousands of agents that
/// reconnect every few minutes would not fit a session cache anyway. Issuing no tickets also
/// saves two records and their bookkeeping per handshake.
pub fn server_config(files: &TlsFiles) -> Result<ServerConfig> {
    let loaded = LoadedTls::load(files)?;
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(loaded.roots, provider.clone())
        .with_crls(loaded.crls)
        .build()
        .map_err(|e| verifier_error(files, e))?;
    let verifier = Arc::new(SingleCommonName::new(verifier));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(|e| PkiError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(loaded.chain, loaded.key)
        .map_err(|e| PkiError::Tls(format!("{}: {e}", files.cert.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// The agent's TLS configuration: presents the client certificate and verifies the server
/// against the CA file (and CRL when given). ALPN offers `http/1.1` only.
///
/// The name the server certificate must carry (in its SAN) is **not** part of this
/// configuration: it is the `ServerName` the caller passes to `TlsConnector::connect`, which may
/// differ from the host that is dialled (e.g. the agent's `master.cn` setting).
pub fn client_config(files: &TlsFiles) -> Result<ClientConfig> {
    let loaded = LoadedTls::load(files)?;
    let provider = provider();
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(loaded.roots, provider.clone())
            .with_crls(loaded.crls)
            .build()
            .map_err(|e| verifier_error(files, e))?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(|e| PkiError::Tls(e.to_string()))?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(loaded.chain, loaded.key)
        .map_err(|e| PkiError::Tls(format!("{}: {e}", files.cert.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A client configuration that verifies the server against the CA bundle `ca` (every
/// certificate in it that is usable as a trust anchor; none is an error) and presents no
/// certificate: the `masif` command line's HTTPS to the UI, where the bundle is a private CA or
/// the system's. ALPN offers `http/1.1` only.
pub fn server_only_client_config(ca: &Path) -> Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    let (added, _unusable) = roots.add_parsable_certificates(load_certs(ca)?);
    if added == 0 {
        return Err(PkiError::invalid(ca, "contains no usable CA certificate"));
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| PkiError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
