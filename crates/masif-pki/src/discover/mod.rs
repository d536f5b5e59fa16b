//! Finding a host's certificate, key, CA bundle and CRL in an existing PKI (Puppet, Icinga 2, easy-rsa).

use serde::Serialize;

use crate::error::{PkiError, Result};
use crate::source::{DiscoverRequest, Role};
use crate::tls::TlsFiles;

/// What discovery found, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Discovered {
    /// The source that was searched (`puppet`, `icinga2`, `easyrsa:DIR`).
    pub source: String,
    /// The certificate name that was looked for.
    pub name: String,
    pub files: TlsFiles,
    /// How the name and directories were chosen, for `masif-pki discover`.
    pub notes: Vec<String>,
}

/// Finds the TLS files described by `request` for `role`.
pub fn discover(request: &DiscoverRequest, role: Role) -> Result<Discovered> {
    let _ = role;
    Err(PkiError::Discover {
        source_name: request.discover.to_string(),
        reason: "not implemented yet; give cert/key/ca files".into(),
    })
}
