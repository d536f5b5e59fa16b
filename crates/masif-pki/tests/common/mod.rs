//! Test fixtures: real CAs, leaf certificates and CRLs made with rcgen (and openssl where
//! rcgen cannot make the case), written to temporary directories.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use masif_pki::TlsFiles;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use time::{Duration, OffsetDateTime};

static SERIAL: AtomicU64 = AtomicU64::new(1000);

fn next_serial() -> SerialNumber {
    SerialNumber::from(SERIAL.fetch_add(1, Ordering::Relaxed))
}

/// A certificate authority that can issue leaves and CRLs.
pub struct Ca {
    pub issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub key_pem: String,
}

/// An issued certificate with its key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub serial: SerialNumber,
}

/// What a leaf is for.
#[derive(Clone, Copy)]
pub enum Use {
    Client,
    Server,
    Both,
    NoEku,
}

impl Ca {
    pub fn new(cn: &str) -> Ca {
        Self::build(cn, None)
    }

    /// An intermediate CA signed by `self`.
    pub fn intermediate(&self, cn: &str) -> Ca {
        Self::build(cn, Some(&self.issuer))
    }

    fn build(cn: &str, parent: Option<&Issuer<'static, KeyPair>>) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(next_serial());
        params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(3650);
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = match parent {
            None => params.self_signed(&key).unwrap(),
            Some(parent) => params.signed_by(&key, parent).unwrap(),
        };
        let key_pem = key.serialize_pem();
        Ca {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf valid from yesterday for a year.
    pub fn leaf(&self, cn: &str, usage: Use) -> Leaf {
        let now = OffsetDateTime::now_utc();
        self.leaf_valid(
            cn,
            usage,
            now - Duration::days(1),
            now + Duration::days(365),
        )
    }

    /// A leaf with a DNS SAN but no common name.
    pub fn leaf_without_cn(&self, name: &str, usage: Use) -> Leaf {
        self.leaf_with(name, usage, |p| {
            p.distinguished_name = rcgen::DistinguishedName::new()
        })
    }

    /// A leaf with a common name but no subject alternative name.
    pub fn leaf_without_san(&self, name: &str, usage: Use) -> Leaf {
        self.leaf_with(name, usage, |p| p.subject_alt_names.clear())
    }

    fn leaf_with(
        &self,
        name: &str,
        usage: Use,
        change: impl FnOnce(&mut CertificateParams),
    ) -> Leaf {
        let now = OffsetDateTime::now_utc();
        self.build_leaf(
            name,
            usage,
            now - Duration::days(1),
            now + Duration::days(365),
            change,
        )
    }

    /// A leaf with an explicit validity window.
    pub fn leaf_valid(
        &self,
        cn: &str,
        usage: Use,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Leaf {
        self.build_leaf(cn, usage, not_before, not_after, |_| {})
    }

    fn build_leaf(
        &self,
        cn: &str,
        usage: Use,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        change: impl FnOnce(&mut CertificateParams),
    ) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![cn.to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = match usage {
            Use::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Use::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Use::Both => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Use::NoEku => vec![],
        };
        params.key_usages = match usage {
            Use::NoEku => vec![],
            _ => vec![KeyUsagePurpose::DigitalSignature],
        };
        let serial = next_serial();
        params.serial_number = Some(serial.clone());
        params.not_before = not_before;
        params.not_after = not_after;
        change(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial,
        }
    }

    /// A v2 CRL revoking `revoked`, next update in `days` days (negative: already expired).
    pub fn crl(&self, revoked: &[&Leaf], days: i64) -> String {
        let now = OffsetDateTime::now_utc();
        let this_update = if days < 0 {
            now + Duration::days(days) - Duration::days(30)
        } else {
            now - Duration::hours(1)
        };
        let params = CertificateRevocationListParams {
            this_update,
            next_update: now + Duration::days(days),
            crl_number: next_serial(),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|leaf| RevokedCertParams {
                    serial_number: leaf.serial.clone(),
                    revocation_time: now - Duration::hours(1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, contents).unwrap();
    path
}

/// Writes a leaf, its CA and optionally a CRL into `dir` under `prefix` and returns the files.
pub fn files(dir: &Path, prefix: &str, ca: &Ca, leaf: &Leaf, crl: Option<&str>) -> TlsFiles {
    TlsFiles {
        cert: write(dir, &format!("{prefix}.crt"), &leaf.cert_pem),
        key: write(dir, &format!("{prefix}.key"), &leaf.key_pem),
        ca: write(dir, &format!("{prefix}-ca.crt"), &ca.cert_pem),
        crl: crl.map(|c| write(dir, &format!("{prefix}-crl.pem"), c)),
    }
}

/// Runs openssl in `dir` and panics with its stderr when it fails.
pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    // Test fixture helper: openssl makes what rcgen cannot (PKCS#1 keys, v1 CRLs).
    #[allow(clippy::disallowed_methods)]
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (scripts/test-all.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A version-1 CRL of `ca` (openssl without a crlnumber file), revoking nothing.
pub fn v1_crl(dir: &Path, ca: &Ca) -> String {
    let work = dir.join("v1crl");
    std::fs::create_dir_all(&work).unwrap();
    write(&work, "ca.crt", &ca.cert_pem);
    write(&work, "ca.key", &ca.key_pem);
    write(&work, "index.txt", "");
    write(
        &work,
        "ca.cnf",
        "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\ndefault_md = sha256\ndefault_crl_days = 30\n",
    );
    openssl(
        &work,
        &[
            "ca", "-gencrl", "-config", "ca.cnf", "-keyfile", "ca.key", "-cert", "ca.crt", "-out",
            "crl.pem",
        ],
    );
    std::fs::read_to_string(work.join("crl.pem")).unwrap()
}

/// A CA made with the openssl command line (RSA keys in PKCS#1, as Puppet and Icinga 2 write
/// them), with its own `openssl ca` database so it can revoke and publish v2 CRLs.
pub struct OpensslCa {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A certificate and PKCS#1 key made by an [`OpensslCa`].
pub struct OpensslLeaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl OpensslLeaf {
    pub fn cert_pem(&self) -> String {
        std::fs::read_to_string(&self.cert).unwrap()
    }
    pub fn key_pem(&self) -> String {
        std::fs::read_to_string(&self.key).unwrap()
    }
}

/// Extensions of Puppet's CAs.
pub const PUPPET_CA_EXT: &str = "basicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n";
/// Extensions of Icinga 2's CA: no key usage, no key identifiers.
pub const ICINGA_CA_EXT: &str = "basicConstraints = critical,CA:TRUE\nsubjectKeyIdentifier = none\nauthorityKeyIdentifier = none\n";

/// Extensions of a Puppet host certificate for `name`.
pub fn puppet_leaf_ext(name: &str) -> String {
    format!("basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = serverAuth,clientAuth\nsubjectAltName = DNS:{name}\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n")
}

/// Extensions of an Icinga 2 node certificate for `name`: no EKU, no key usage.
pub fn icinga_leaf_ext(name: &str) -> String {
    format!(
        "subjectAltName = DNS:{name}\nsubjectKeyIdentifier = none\nauthorityKeyIdentifier = none\n"
    )
}

fn rsa_key(dir: &Path, path: &Path) {
    // 2048 bits: Puppet uses 4096, which only makes the tests slower.
    openssl(
        dir,
        &[
            "genrsa",
            "-traditional",
            "-out",
            path.to_str().unwrap(),
            "2048",
        ],
    );
}

fn ext_file(dir: &Path, stem: &str, ext: &str) -> PathBuf {
    write(dir, &format!("{stem}.ext"), format!("[x]\n{ext}"))
}

impl OpensslCa {
    /// A self-signed root CA in `base/stem/`.
    pub fn root(base: &Path, stem: &str, cn: &str, ext: &str) -> OpensslCa {
        let ca = Self::prepare(base, stem);
        let extfile = ext_file(&ca.dir, "self", ext);
        rsa_key(&ca.dir, &ca.key);
        openssl(
            &ca.dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-subj",
                &format!("/CN={cn}"),
                "-days",
                "5475",
                "-config",
                extfile.to_str().unwrap(),
                "-extensions",
                "x",
                "-out",
                "ca.crt",
            ],
        );
        ca
    }

    /// A CA in `base/stem/` signed by `self`.
    pub fn sub_ca(&self, base: &Path, stem: &str, cn: &str, ext: &str) -> OpensslCa {
        let ca = Self::prepare(base, stem);
        rsa_key(&ca.dir, &ca.key);
        let signed = self.sign(&ca.key, cn, ext, 5475, stem);
        std::fs::copy(signed, &ca.cert).unwrap();
        ca
    }

    /// A leaf for `cn`, valid for `days`, written to `self.dir/issued/stem.{crt,key}`.
    pub fn issue(&self, stem: &str, cn: &str, ext: &str, days: u32) -> OpensslLeaf {
        let issued = self.dir.join("issued");
        std::fs::create_dir_all(&issued).unwrap();
        let key = issued.join(format!("{stem}.key"));
        rsa_key(&self.dir, &key);
        let cert = self.sign(&key, cn, ext, days, stem);
        OpensslLeaf { cert, key }
    }

    /// Adds `cert` to this CA's revocation database.
    pub fn revoke(&self, cert: &Path) {
        openssl(
            &self.dir,
            &[
                "ca",
                "-config",
                "ca.cnf",
                "-keyfile",
                "ca.key",
                "-cert",
                "ca.crt",
                "-revoke",
                cert.to_str().unwrap(),
            ],
        );
    }

    /// A v2 CRL (with a CRL number, no other extensions) of everything revoked so far.
    pub fn crl(&self) -> String {
        openssl(
            &self.dir,
            &[
                "ca", "-gencrl", "-config", "ca.cnf", "-keyfile", "ca.key", "-cert", "ca.crt",
                "-out", "crl.pem",
            ],
        );
        std::fs::read_to_string(self.dir.join("crl.pem")).unwrap()
    }

    pub fn cert_pem(&self) -> String {
        std::fs::read_to_string(&self.cert).unwrap()
    }

    fn prepare(base: &Path, stem: &str) -> OpensslCa {
        let dir = base.join(stem);
        std::fs::create_dir_all(&dir).unwrap();
        write(&dir, "index.txt", "");
        write(&dir, "crlnumber", "1000\n");
        write(&dir, "ca.cnf", "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 5475\n");
        OpensslCa {
            cert: dir.join("ca.crt"),
            key: dir.join("ca.key"),
            dir,
        }
    }

    fn sign(&self, key: &Path, cn: &str, ext: &str, days: u32, stem: &str) -> PathBuf {
        let csr = self.dir.join(format!("{stem}.csr"));
        let cert = self.dir.join("issued").join(format!("{stem}.crt"));
        std::fs::create_dir_all(cert.parent().unwrap()).unwrap();
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-key",
                key.to_str().unwrap(),
                "-subj",
                &format!("/CN={cn}"),
                "-config",
                "/dev/null",
                "-out",
                csr.to_str().unwrap(),
            ],
        );
        let extfile = ext_file(&self.dir, stem, ext);
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                csr.to_str().unwrap(),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-days",
                &days.to_string(),
                "-extfile",
                extfile.to_str().unwrap(),
                "-extensions",
                "x",
                "-out",
                cert.to_str().unwrap(),
            ],
        );
        cert
    }
}
