//! The error type of masif-pki: every message names the file (or config key) and what is wrong.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while loading certificates or building TLS configurations.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read at all (missing, permissions, …).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file was read but its content is unusable (empty, garbage, wrong kind, bad CRL, …).
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    /// The private key is fine on its own but belongs to another certificate.
    #[error("{}: private key does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// A certificate given as bytes (no file) is unusable.
    #[error("certificate: {0}")]
    Certificate(String),
    /// rustls refused to build a configuration from otherwise readable files.
    #[error("tls configuration: {0}")]
    Tls(String),
    /// Certificate discovery (puppet, icinga2, easy-rsa) found nothing usable.
    #[error("discover {source_name}: {reason}")]
    Discover { source_name: String, reason: String },
    /// A `tls:` configuration value is malformed.
    #[error("tls: {0}")]
    Config(String),
    /// The start-up check found CRITICAL problems (one `masif-pki check` line each).
    #[error("certificate check failed:\n{0}")]
    Check(String),
    /// Running easy-rsa failed.
    #[error("easy-rsa: {0}")]
    EasyRsa(String),
}

/// The result type of masif-pki.
pub type Result<T, E = PkiError> = std::result::Result<T, E>;

impl PkiError {
    /// A file-content error for `path`.
    pub(crate) fn invalid(path: &Path, reason: impl Into<String>) -> Self {
        PkiError::Invalid {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// A read error for `path`.
    pub(crate) fn read(path: &Path, source: std::io::Error) -> Self {
        PkiError::Read {
            path: path.to_path_buf(),
            source,
        }
    }
}
