//! Masif Upgrader certificates: load PEM/DER files, build rustls configs, discover and check PKIs.
//!
//! Entry points: [`TlsSource`] (the `tls:` config key) → [`TlsSource::resolve`] → [`TlsFiles`]
//! → [`server_config`] (master) / [`client_config`] (agent).

#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

pub mod cli;
mod client_verifier;
mod crl;
mod discover;
pub mod easyrsa;
mod error;
mod finding;
mod load;
mod perms;
mod source;
mod tls;
mod validate;
mod x509;

pub use discover::{discover, discover_any, Discovered};
pub use error::{PkiError, Result};
pub use load::{load_certs, load_crls, load_key, MAX_FILE_SIZE};
pub use source::{Discover, DiscoverRequest, Role, TlsSource};
pub use tls::{
    client_config, provider, server_config, server_only_client_config, FilesStamp, LoadedTls,
    TlsFiles,
};
pub use validate::{check, startup_check, Aspect, CheckOptions, Finding, Report, Severity};
pub use x509::{common_name, CertFacts, Eku};
