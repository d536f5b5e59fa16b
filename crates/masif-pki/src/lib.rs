//! Masif Upgrader certificates: load PEM/DER files, build rustls configs, discover and check PKIs.
//!
//! Entry points: [`TlsSource`] (the `tls:` config key) → [`TlsSource::resolve`] → [`TlsFiles`]
//! → [`server_config`] (master) / [`client_config`] (agent).

#![forbid(unsafe_code)]

pub mod cli;
pub mod crl;
pub mod discover;
pub mod easyrsa;
pub mod error;
pub mod load;
pub mod perms;
pub mod source;
pub mod tls;
pub mod validate;
pub mod x509;

pub use discover::{discover, discover_any, Discovered};
pub use error::{PkiError, Result};
pub use load::{load_certs, load_crls, load_key};
pub use source::{Discover, DiscoverRequest, Role, TlsSource};
pub use tls::{client_config, provider, server_config, FilesStamp, LoadedTls, TlsFiles};
pub use validate::{check, startup_check, CheckOptions, Finding, Report, Severity};
pub use x509::{common_name, CertFacts, Eku};
