//! Reading the facts masif needs from a certificate: names, key usages, validity, serial.

use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::{PkiError, Result};

/// The subject's common name, if the certificate has one.
pub fn common_name(cert: &CertificateDer<'_>) -> Result<Option<String>> {
    Ok(CertFacts::parse(cert)?.common_name)
}

/// What the extended key usage extension allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eku {
    /// No EKU extension: any use (as Icinga 2 issues them).
    Absent,
    /// The extension is there; these are the purposes masif cares about.
    Present {
        server_auth: bool,
        client_auth: bool,
    },
}

/// The facts of one certificate, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    pub subject: String,
    pub issuer: String,
    /// The first common name of the subject.
    pub common_name: Option<String>,
    /// How many common names the subject has (the master refuses more than one).
    pub common_names: usize,
    pub dns_names: Vec<String>,
    pub eku: Eku,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// Raw big-endian serial number.
    pub serial: Vec<u8>,
    pub is_ca: bool,
}

impl CertFacts {
    /// Parses a DER certificate.
    pub fn parse(der: &CertificateDer<'_>) -> Result<Self> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| PkiError::Certificate(format!("not valid X.509: {e}")))?;
        let bad =
            |e: x509_parser::error::X509Error| PkiError::Certificate(format!("bad extension: {e}"));
        let common_name = match cert.subject().iter_common_name().next() {
            None => None,
            Some(cn) => Some(
                cn.as_str()
                    .map_err(|e| PkiError::Certificate(format!("common name is not text: {e}")))?
                    .to_owned(),
            ),
        };
        let common_names = cert.subject().iter_common_name().count();
        let dns_names = match cert.subject_alternative_name().map_err(bad)? {
            None => Vec::new(),
            Some(san) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect(),
        };
        let eku = match cert.extended_key_usage().map_err(bad)? {
            None => Eku::Absent,
            Some(ext) => Eku::Present {
                server_auth: ext.value.server_auth || ext.value.any,
                client_auth: ext.value.client_auth || ext.value.any,
            },
        };
        Ok(Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            common_name,
            common_names,
            dns_names,
            eku,
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            serial: cert.raw_serial().to_vec(),
            is_ca: cert.is_ca(),
        })
    }

    /// Whether a rustls peer expecting `name` would accept this certificate: SAN DNS names,
    /// case-insensitive, `*.` wildcards for one label. Like rustls, the CN is not looked at.
    pub fn matches_name(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.dns_names.iter().any(|pattern| {
            let pattern = pattern.to_ascii_lowercase();
            match pattern.strip_prefix("*.") {
                Some(suffix) => name
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
                None => pattern == name,
            }
        })
    }

    /// Serial number as colon-separated hex, as openssl prints it.
    pub fn serial_hex(&self) -> String {
        self.serial
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use masif_testkit::pki::{EphemeralCa, Usage};
    use rustls::pki_types::pem::PemObject;

    fn facts(ca: &EphemeralCa, cn: &str, sans: &[&str], usage: Usage) -> CertFacts {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let issued = ca
            .issue_with(cn, usage, |p| {
                p.subject_alt_names = sans
                    .iter()
                    .map(|s| {
                        masif_testkit::pki::rcgen::SanType::DnsName(s.clone().try_into().unwrap())
                    })
                    .collect()
            })
            .unwrap();
        CertFacts::parse(&CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap())
            .unwrap()
    }

    #[test]
    fn names_match_like_rustls_does() {
        let ca = EphemeralCa::new("CA").unwrap();
        let f = facts(
            &ca,
            "master",
            &["Master.Example.com", "*.pool.example.com"],
            Usage::Both,
        );
        assert_eq!(f.common_name.as_deref(), Some("master"));
        assert!(f.matches_name("master.example.com"));
        assert!(f.matches_name("MASTER.example.com."));
        assert!(f.matches_name("m1.pool.example.com"));
        assert!(!f.matches_name("a.m1.pool.example.com"));
        assert!(!f.matches_name("pool.example.com"));
        // The CN alone does not count: rustls only looks at the SAN.
        assert!(!f.matches_name("master"));
        let bare = facts(&ca, "bare.example.com", &[], Usage::Server);
        assert!(bare.dns_names.is_empty() && !bare.matches_name("bare.example.com"));
    }

    #[test]
    fn eku_and_serial_are_read() {
        let ca = EphemeralCa::new("CA").unwrap();
        let f = facts(&ca, "a", &["a"], Usage::Client);
        assert_eq!(
            f.eku,
            Eku::Present {
                server_auth: false,
                client_auth: true
            }
        );
        assert_eq!(
            facts(&ca, "a", &["a"], Usage::Unrestricted).eku,
            Eku::Absent
        );
        assert!(!f.serial_hex().is_empty() && !f.is_ca);
        assert_eq!(f.issuer, "CN=CA");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let err = common_name(&CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01])).unwrap_err();
        assert!(
            err.to_string().starts_with("certificate: not valid X.509"),
            "{err}"
        );
    }
}
