//! Facts about CRLs relative to a CA bundle: version, which CA signed them, validity, revoked serials.

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate, X509Version};
use x509_parser::revocation_list::CertificateRevocationList;

/// What one CRL of a CRL file is, judged against the CA bundle it is used with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CrlInfo {
    /// 1-based position in the CRL file.
    pub index: usize,
    /// The issuer's distinguished name, as text.
    pub issuer: String,
    /// Whether this is a v2 CRL (rustls rejects v1).
    pub v2: bool,
    /// 1-based position in the CA bundle of the certificate whose key signed it.
    pub signed_by: Option<usize>,
    /// Why no CA certificate matched, when `signed_by` is `None`.
    pub unsigned_reason: Option<String>,
    pub this_update: OffsetDateTime,
    pub next_update: Option<OffsetDateTime>,
    /// Raw big-endian serial numbers of the revoked certificates.
    pub revoked_serials: Vec<Vec<u8>>,
}

impl CrlInfo {
    /// The clear message for a CRL that rustls would reject or that would lock every peer out.
    pub(crate) fn unusable_reason(&self, ca_file: &std::path::Path) -> Option<String> {
        if !self.v2 {
            return Some(format!(
                "CRL {} (issuer {}) is a version 1 CRL; rustls needs v2 (with openssl, keep a crlnumber file)",
                self.index, self.issuer
            ));
        }
        self.signed_by.is_none().then(|| {
            format!(
                "CRL {} (issuer {}) is not signed by a certificate of {} ({}); with it every peer would be refused",
                self.index,
                self.issuer,
                ca_file.display(),
                self.unsigned_reason.as_deref().unwrap_or("no match")
            )
        })
    }

    /// Whether the CRL's next update lies in the past at `now`.
    pub(crate) fn expired_at(&self, now: OffsetDateTime) -> bool {
        self.next_update.is_some_and(|t| t < now)
    }
}

/// Inspects every CRL against the CA bundle. CRLs that do not parse get an error string.
pub(crate) fn inspect_crls(
    crls: &[CertificateRevocationListDer<'_>],
    cas: &[CertificateDer<'_>],
) -> Result<Vec<CrlInfo>, String> {
    let parsed_cas: Vec<X509Certificate<'_>> = cas
        .iter()
        .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c))
        .collect();
    crls.iter()
        .enumerate()
        .map(|(i, der)| {
            let (_, crl) = CertificateRevocationList::from_der(der)
                .map_err(|e| format!("CRL {} is malformed: {e}", i + 1))?;
            Ok(inspect_one(i + 1, &crl, &parsed_cas))
        })
        .collect()
}

fn inspect_one(
    index: usize,
    crl: &CertificateRevocationList<'_>,
    cas: &[X509Certificate<'_>],
) -> CrlInfo {
    let issuer = crl.issuer();
    let mut signed_by = None;
    let mut unsigned_reason = Some(format!("no CA certificate has the subject {issuer}"));
    for (pos, ca) in cas.iter().enumerate() {
        if ca.subject().as_raw() != issuer.as_raw() {
            continue;
        }
        match crl.verify_signature(ca.public_key()) {
            Ok(()) => {
                signed_by = Some(pos + 1);
                unsigned_reason = None;
                break;
            }
            Err(e) => {
                unsigned_reason = Some(format!(
                    "the signature does not verify with CA certificate {} of that name: {e}",
                    pos + 1
                ));
            }
        }
    }
    CrlInfo {
        index,
        issuer: issuer.to_string(),
        v2: crl.version() == Some(X509Version::V2),
        signed_by,
        unsigned_reason,
        this_update: crl.last_update().to_datetime(),
        next_update: crl.next_update().map(|t| t.to_datetime()),
        revoked_serials: crl
            .iter_revoked_certificates()
            .map(|r| r.raw_serial().to_vec())
            .collect(),
    }
}
