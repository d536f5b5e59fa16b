//! Throwaway PKIs made in memory with rcgen, for tests, benchmarks and `masif demo`: a CA,
//! leaf certificates for agents and the master, CRLs, and the files laid out for [`TlsFiles`].
//! Never for production: keys are generated on the spot and written unencrypted.
//!
//! rcgen is re-exported for tests that shape a certificate themselves
//! ([`EphemeralCa::issue_with`]).

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use masif_pki::TlsFiles;
pub use rcgen;

/// What a leaf certificate may be used for (its extended key usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Client,
    Server,
    Both,
    /// No EKU extension at all, as Icinga 2 issues them.
    Unrestricted,
}

/// A certificate with its key, PEM encoded.
#[derive(Debug, Clone)]
pub struct Issued {
    pub common_name: String,
    pub cert_pem: String,
    pub key_pem: String,
    serial: Vec<u8>,
}

/// An in-memory certificate authority.
pub struct EphemeralCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    next_serial: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for EphemeralCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EphemeralCa").finish_non_exhaustive()
    }
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

impl EphemeralCa {
    /// A new self-signed CA called `common_name`, valid from yesterday for ten years.
    pub fn new(common_name: &str) -> Result<Self, rcgen::Error> {
        Self::build(common_name, None)
    }

    /// An intermediate CA called `common_name`, signed by this CA (as Puppet 7's "Puppet CA"
    /// is signed by its "Puppet Root CA").
    pub fn intermediate(&self, common_name: &str) -> Result<Self, rcgen::Error> {
        Self::build(common_name, Some(self))
    }

    fn build(common_name: &str, parent: Option<&EphemeralCa>) -> Result<Self, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        params.key_identifier_method = KeyIdMethod::Sha256;
        let key = KeyPair::generate()?;
        let issuer = match parent {
            None => CertifiedIssuer::self_signed(params, key)?,
            Some(parent) => {
                params.serial_number = Some(parent.next_serial());
                CertifiedIssuer::signed_by(params, key, &parent.issuer)?
            }
        };
        // Serials must differ between CAs' certificates only per CA; start from the clock so
        // two CAs of one test never look alike either.
        let start = now.unix_timestamp_nanos() as u64 & 0x0fff_ffff_ffff_ffff;
        Ok(Self {
            issuer,
            next_serial: std::sync::atomic::AtomicU64::new(start),
        })
    }

    fn next_serial(&self) -> SerialNumber {
        let serial = self
            .next_serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        SerialNumber::from_slice(&serial.to_be_bytes())
    }

    /// The CA's private key, PEM (PKCS#8), for tools such as openssl in test fixtures.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate for `common_name` (also its DNS SAN), valid from yesterday for a year.
    pub fn issue(&self, common_name: &str, usage: Usage) -> Result<Issued, rcgen::Error> {
        self.issue_with(common_name, usage, |_| {})
    }

    /// A leaf certificate with an explicit validity window (for expired/not-yet-valid cases).
    pub fn issue_valid(
        &self,
        common_name: &str,
        usage: Usage,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Issued, rcgen::Error> {
        self.issue_with(common_name, usage, |params| {
            params.not_before = not_before;
            params.not_after = not_after;
        })
    }

    /// A leaf certificate valid from yesterday for a year, with `change` applied to its
    /// parameters last (to drop the SAN or the CN, move the validity, …).
    pub fn issue_with(
        &self,
        common_name: &str,
        usage: Usage,
        change: impl FnOnce(&mut CertificateParams),
    ) -> Result<Issued, rcgen::Error> {
        let now = OffsetDateTime::now_utc();
        let sans = if common_name.is_empty() {
            vec![]
        } else {
            vec![common_name.to_owned()]
        };
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = match usage {
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Both => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Usage::Unrestricted => vec![],
        };
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(365);
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(self.next_serial());
        change(&mut params);
        let serial = params
            .serial_number
            .as_ref()
            .map(SerialNumber::to_bytes)
            .unwrap_or_default();
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            common_name: common_name.to_owned(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial,
        })
    }

    /// A v2 CRL of this CA listing `revoked`, valid from yesterday for `days` days (negative:
    /// already expired).
    pub fn crl_pem(&self, revoked: &[&Issued], days: i64) -> Result<String, rcgen::Error> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::days(1) + Duration::days(days.min(0)) - Duration::days(1),
            next_update: now + Duration::days(days),
            crl_number: SerialNumber::from(now.unix_timestamp() as u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|issued| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&issued.serial),
                    revocation_time: now - Duration::minutes(1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer)?.pem()
    }

    /// Writes `<dir>/<cn>.crt`, `<dir>/<cn>.key` (mode 0600) and `<dir>/ca.crt` (and
    /// `<dir>/crl.pem` when a CRL is given) and returns their paths.
    pub fn write_files(
        &self,
        dir: &Path,
        issued: &Issued,
        crl_pem: Option<&str>,
    ) -> std::io::Result<TlsFiles> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir)?;
        let base = if issued.common_name.is_empty() {
            "no-cn"
        } else {
            &issued.common_name
        };
        let files = TlsFiles {
            cert: dir.join(format!("{base}.crt")),
            key: dir.join(format!("{base}.key")),
            ca: dir.join("ca.crt"),
            crl: crl_pem.map(|_| dir.join("crl.pem")),
        };
        std::fs::write(&files.cert, &issued.cert_pem)?;
        std::fs::write(&files.key, &issued.key_pem)?;
        std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600))?;
        std::fs::write(&files.ca, self.cert_pem())?;
        if let (Some(path), Some(pem)) = (&files.crl, crl_pem) {
            std::fs::write(path, pem)?;
        }
        Ok(files)
    }
}
