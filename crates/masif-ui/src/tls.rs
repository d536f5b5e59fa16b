//! HTTPS for the UI: a rustls server configuration from a certificate chain and key loaded
//! by `masif_pki::load` (no client certificates: people log in with passwords or through a
//! proxy).

use std::path::Path;

use rustls::ServerConfig;

use crate::UiError;

/// Builds the server configuration (TLS 1.2+, masif-pki's ECDHE+AEAD ring provider, ALPN
/// http/1.1 only, as the serving core speaks no HTTP/2). Certificate and key may be PEM or DER; the key must match the certificate.
pub(crate) fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, UiError> {
    let chain = masif_pki::load_certs(cert)?;
    let private_key = masif_pki::load_key(key)?;
    let mut config = ServerConfig::builder_with_provider(masif_pki::provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| UiError::Tls {
            path: cert.to_owned(),
            source,
        })?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|source| UiError::Tls {
            path: key.to_owned(),
            source,
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
