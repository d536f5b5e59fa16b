//! Test fixtures: real CAs, leaf certificates and CRLs made with rcgen (and openssl where
//! rcgen cannot make the case), written to temporary directories.
#![allow(dead_code)]

pub mod cli;
pub mod tls;

use std::path::{Path, PathBuf};

use masif_pki::TlsFiles;
use masif_testkit::pki::{EphemeralCa, Issued, Usage};
use time::OffsetDateTime;

/// An issued certificate with its key.
pub type Leaf = Issued;
/// What a leaf is for.
#[allow(unused_imports)]
pub use masif_testkit::pki::Usage as Use;

/// A test CA: the testkit's ephemeral CA, its PEMs at hand, panicking instead of failing.
pub struct Ca {
    pub inner: EphemeralCa,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(cn: &str) -> Ca {
        Self::wrap(EphemeralCa::new(cn).unwrap())
    }

    /// An intermediate CA signed by `self`.
    pub fn intermediate(&self, cn: &str) -> Ca {
        Self::wrap(self.inner.intermediate(cn).unwrap())
    }

    fn wrap(inner: EphemeralCa) -> Ca {
        Ca {
            cert_pem: inner.cert_pem(),
            key_pem: inner.key_pem(),
            inner,
        }
    }

    /// A leaf valid from yesterday for a year.
    pub fn leaf(&self, cn: &str, usage: Usage) -> Leaf {
        self.inner.issue(cn, usage).unwrap()
    }

    /// A leaf with an explicit validity window.
    pub fn leaf_valid(
        &self,
        cn: &str,
        usage: Usage,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Leaf {
        self.inner
            .issue_valid(cn, usage, not_before, not_after)
            .unwrap()
    }

    /// A leaf with a DNS SAN but no common name.
    pub fn leaf_without_cn(&self, name: &str, usage: Usage) -> Leaf {
        self.inner
            .issue_with(name, usage, |p| {
                p.distinguished_name = rcgen::DistinguishedName::new()
            })
            .unwrap()
    }

    /// A leaf with a common name but no subject alternative name.
    pub fn leaf_without_san(&self, name: &str, usage: Usage) -> Leaf {
        self.inner
            .issue_with(name, usage, |p| p.subject_alt_names.clear())
            .unwrap()
    }

    /// A v2 CRL revoking `revoked`, next update in `days` days (negative: already expired).
    pub fn crl(&self, revoked: &[&Leaf], days: i64) -> String {
        self.inner.crl_pem(revoked, days).unwrap()
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
