//! Masif Upgrader certificates: load PEM/DER files, build rustls configs, discover and check PKIs.
//!
//! Entry points: [`TlsSource`] (the `tls:` config key) → [`TlsSource::resolve`] → [`TlsFiles`]
//! → [`server_config`] (master) / [`client_config`] (agent).

#![forbid(unsafe_code)]

pub mod crl;
pub mod discover;
pub mod ephemeral;
pub mod error;
pub mod load;
pub mod source;
pub mod tls;
pub mod x509;

pub use discover::{discover, Discovered};
pub use error::{PkiError, Result};
pub use load::{load_certs, load_crls, load_key};
pub use source::{Discover, DiscoverRequest, Role, TlsSource};
pub use tls::{client_config, provider, server_config, LoadedTls, TlsFiles};
pub use x509::{common_name, CertFacts, Eku};
