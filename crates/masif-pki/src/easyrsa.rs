//! Making a PKI for masif with easy-rsa (batch mode, settings from `pki/vars`): the only place
//! in masif-pki that starts a process.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::error::{PkiError, Result};
use crate::source::valid_name;

/// Debian's easy-rsa script (package `easy-rsa`; not on PATH).
pub const DEFAULT_SCRIPT: &str = "/usr/share/easy-rsa/easyrsa";

/// The one PATH easy-rsa runs with (it needs openssl and the usual shell tools).
const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The easy-rsa settings written into every new PKI as `vars`.
pub const VARS: &str = include_str!("../../../pki/vars");

/// The default common name of a new CA.
pub const DEFAULT_CA_NAME: &str = "Masif Upgrader CA";

/// What an issued certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// EKU clientAuth: an agent.
    Client,
    /// EKU serverAuth: a master.
    Server,
    /// Both: a host that is master and agent.
    Both,
}

impl Purpose {
    fn command(self) -> &'static str {
        match self {
            Purpose::Client => "build-client-full",
            Purpose::Server => "build-server-full",
            Purpose::Both => "build-serverClient-full",
        }
    }
}

/// An easy-rsa script working on one PKI directory.
#[derive(Debug, Clone)]
pub struct EasyRsa {
    script: PathBuf,
    pki: PathBuf,
}

impl EasyRsa {
    /// Uses `script` (default: Debian's) on the PKI in `pki`; fails clearly when easy-rsa is
    /// not installed.
    pub fn new(script: Option<&Path>, pki: &Path) -> Result<Self> {
        let script = script.unwrap_or(Path::new(DEFAULT_SCRIPT)).to_path_buf();
        if !script.is_file() {
            return Err(PkiError::EasyRsa(format!(
                "{} not found: install Debian's easy-rsa (apt-get install easy-rsa) or give --easyrsa PATH",
                script.display()
            )));
        }
        let pki = std::path::absolute(pki).map_err(|e| PkiError::read(pki, e))?;
        Ok(Self { script, pki })
    }

    /// The PKI directory.
    pub fn dir(&self) -> &Path {
        &self.pki
    }

    /// Creates a new PKI with a CA called `ca_name` and an empty CRL. Refuses a directory
    /// that exists and is not empty (easy-rsa would wipe it).
    pub fn init(&self, ca_name: &str) -> Result<()> {
        if std::fs::read_dir(&self.pki).is_ok_and(|mut entries| entries.next().is_some()) {
            return Err(PkiError::EasyRsa(format!(
                "{} exists and is not empty; refusing to overwrite it",
                self.pki.display()
            )));
        }
        if ca_name.trim().is_empty() || ca_name.chars().any(|c| c.is_control()) {
            return Err(PkiError::EasyRsa(format!("bad CA name {ca_name:?}")));
        }
        self.run(&["init-pki"], None)?;
        let vars = self.pki.join("vars");
        std::fs::write(&vars, VARS).map_err(|e| PkiError::read(&vars, e))?;
        self.run(&["build-ca", "nopass"], Some(ca_name))?;
        self.crl().map(|_| ())
    }

    /// Issues a certificate and key for `name` (`issued/NAME.crt`, `private/NAME.key`).
    pub fn issue(&self, name: &str, purpose: Purpose) -> Result<(PathBuf, PathBuf)> {
        self.require_pki()?;
        let cert = self.issued(name)?;
        if cert.exists() {
            return Err(PkiError::EasyRsa(format!(
                "{} exists already; revoke it first to issue a new one",
                cert.display()
            )));
        }
        self.run(&[purpose.command(), name, "nopass"], None)?;
        Ok((cert, self.pki.join("private").join(format!("{name}.key"))))
    }

    /// Revokes the certificate of `name`; run [`EasyRsa::crl`] afterwards to publish it.
    pub fn revoke(&self, name: &str) -> Result<()> {
        self.require_pki()?;
        let cert = self.issued(name)?;
        if !cert.is_file() {
            return Err(PkiError::EasyRsa(format!(
                "no certificate {} to revoke",
                cert.display()
            )));
        }
        self.run(&["revoke", name], None).map(|_| ())
    }

    /// Writes a new CRL to `crl.pem` and returns its path.
    pub fn crl(&self) -> Result<PathBuf> {
        self.require_pki()?;
        self.run(&["gen-crl"], None)?;
        Ok(self.pki.join("crl.pem"))
    }

    fn require_pki(&self) -> Result<()> {
        match self.pki.join("ca.crt").is_file() {
            true => Ok(()),
            false => Err(PkiError::EasyRsa(format!(
                "{} is not a PKI (no ca.crt); create one with `masif-pki init {}`",
                self.pki.display(),
                self.pki.display()
            ))),
        }
    }

    fn issued(&self, name: &str) -> Result<PathBuf> {
        if !valid_name(name) {
            return Err(PkiError::EasyRsa(format!(
                "{name:?} is not a valid certificate name (letters, digits, '.', '-', '_')"
            )));
        }
        Ok(self.pki.join("issued").join(format!("{name}.crt")))
    }

    /// Runs easy-rsa in batch mode with a fixed environment and returns its output; the
    /// error carries the end of its output.
    fn run(&self, args: &[&str], req_cn: Option<&str>) -> Result<String> {
        let vars = self.pki.join("vars");
        let cwd = match self.pki.is_dir() {
            true => self.pki.clone(),
            false => self.pki.parent().unwrap_or(Path::new("/")).to_path_buf(),
        };
        tracing::debug!(script = %self.script.display(), ?args, pki = %self.pki.display(), "running easy-rsa");
        // The one process masif-pki starts: easy-rsa, in batch mode, stdin closed.
        #[allow(clippy::disallowed_methods)]
        let mut command = std::process::Command::new(&self.script);
        // A cleared environment: nothing of the caller's (EASYRSA_* settings, OPENSSL_CONF,
        // a PATH leading to another openssl) changes what is issued.
        command
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", SAFE_PATH)
            .env("LC_ALL", "C")
            .env("EASYRSA_BATCH", "1")
            .env("EASYRSA_PKI", &self.pki)
            .stdin(Stdio::null());
        if vars.is_file() {
            command.env("EASYRSA_VARS_FILE", &vars);
        }
        if let Some(cn) = req_cn {
            command.env("EASYRSA_REQ_CN", cn);
        }
        let output = command
            .output()
            .map_err(|e| PkiError::EasyRsa(format!("cannot run {}: {e}", self.script.display())))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if output.status.success() {
            return Ok(text);
        }
        let tail: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("Host:"))
            .collect();
        let tail = tail[tail.len().saturating_sub(6)..].join(" / ");
        Err(PkiError::EasyRsa(format!(
            "`easyrsa {}` failed ({}): {tail}",
            args.join(" "),
            output.status
        )))
    }
}
