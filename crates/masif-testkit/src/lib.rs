//! Test fixtures of Masif Upgrader, kept out of the daemons: real apt/dpkg sandbox roots with
//! fake packages ([`sandbox`]), scratch MariaDB databases ([`db`]), throwaway MariaDB servers
//! ([`mariadb`]), a Galera cluster and databases on it ([`galera`]), throwaway rcgen PKIs
//! ([`pki`]), the benchmarks' synthetic fleet ([`fleet`]), task builders ([`tasks`]), the
//! mutations of fuzz-style property tests ([`fuzz`]) and a scraper and reader of Prometheus
//! metrics ([`scrape`]).
//!
//! Each module sits behind the cargo feature of the same name (`mariadb` behind `db`), so a user links only what it
//! needs: `masif demo` takes `sandbox` and `pki`, never `db` or `fleet`.

#![warn(unreachable_pub)]

#[cfg(feature = "db")]
pub mod db;
#[cfg(feature = "fleet")]
pub mod fleet;
#[cfg(feature = "fuzz")]
pub mod fuzz;
#[cfg(feature = "galera")]
pub mod galera;
#[cfg(feature = "db")]
pub mod mariadb;
#[cfg(feature = "pki")]
pub mod pki;
#[cfg(feature = "sandbox")]
pub mod sandbox;
#[cfg(feature = "scrape")]
pub mod scrape;
#[cfg(feature = "tasks")]
pub mod tasks;

/// Errors of the fixtures that report them (the sandbox; the PKI returns rcgen's errors, the
/// database helpers panic as tests want).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An external program could not be run (through the agent's process wrapper).
    #[cfg(feature = "sandbox")]
    #[error(transparent)]
    Exec(#[from] masif_agent::exec::ExecError),
    /// A file of the fixture could not be read or written.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A step of building or using a sandbox failed, or a fixture description is invalid.
    #[error("sandbox: {0}")]
    Sandbox(String),
}

/// Result of the fallible fixtures.
pub type Result<T, E = Error> = std::result::Result<T, E>;
