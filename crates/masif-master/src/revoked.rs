//! The certificates the CRL in force revokes, by issuer and serial number: a connection
//! opened before a new CRL took effect is checked against it at every request (the TLS
//! handshake checked it only against the CRL of its time).

use std::collections::HashSet;

use masif_pki::TlsFiles;
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

/// Revoked (issuer, serial) pairs, both as raw DER bytes.
#[derive(Debug, Default)]
pub(crate) struct Revoked(HashSet<(Vec<u8>, Vec<u8>)>);

impl Revoked {
    /// The certificates `files`' CRL revokes (none without a CRL). Called after the same
    /// files made a server configuration, so they load and parse.
    pub(crate) fn load(files: &TlsFiles) -> Self {
        let Some(path) = &files.crl else {
            return Self::default();
        };
        let crls = masif_pki::load_crls(path).unwrap_or_default();
        let mut revoked = HashSet::new();
        for der in &crls {
            let Ok((_, crl)) = CertificateRevocationList::from_der(der) else {
                continue;
            };
            let issuer = crl.issuer().as_raw().to_vec();
            for entry in crl.iter_revoked_certificates() {
                revoked.insert((issuer.clone(), entry.raw_serial().to_vec()));
            }
        }
        Self(revoked)
    }

    /// Whether `leaf` is revoked; a leaf that does not parse counts as revoked (it passed
    /// the handshake, so that does not happen).
    pub(crate) fn contains(&self, leaf: &CertificateDer<'_>) -> bool {
        if self.0.is_empty() {
            return false;
        }
        match X509Certificate::from_der(leaf) {
            Ok((_, cert)) => self
                .0
                .contains(&(cert.issuer().as_raw().to_vec(), cert.raw_serial().to_vec())),
            Err(_) => true,
        }
    }
}
