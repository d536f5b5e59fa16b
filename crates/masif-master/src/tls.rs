//! The server's TLS configuration, re-read from disk when certificate, key or CRL change
//! (Icinga renews certificates yearly, CRLs are republished) without a restart.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use masif_daemon::serve::Acceptors;
use masif_pki::{FilesStamp, TlsFiles};
use rustls::pki_types::CertificateDer;
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::revoked::Revoked;

/// The current server configuration and the file state it was built from.
pub struct ReloadingTls {
    files: TlsFiles,
    current: RwLock<Loaded>,
}

struct Loaded {
    config: Arc<ServerConfig>,
    /// What the configuration's CRL revokes.
    revoked: Arc<Revoked>,
    stamp: Option<FilesStamp>,
    /// Why the files on disk are not the configuration in force, while that lasts.
    broken: Option<String>,
}

/// What a check of the TLS files found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The files are the ones in force.
    Unchanged,
    /// Changed files were read and are in force now.
    Reloaded,
    /// The files on disk cannot be used (this reason); the previous configuration stays in
    /// force. Returned, and logged as an error, at every check until the files are fixed.
    Broken(String),
}

impl ReloadingTls {
    /// Builds the first configuration; a bad file is an error here (the master does not start).
    pub fn load(files: TlsFiles) -> Result<Self, masif_pki::PkiError> {
        let stamp = files.stamp().ok();
        let config = Arc::new(masif_pki::server_config(&files)?);
        let revoked = Arc::new(Revoked::load(&files));
        Ok(Self {
            files,
            current: RwLock::new(Loaded {
                config,
                revoked,
                stamp,
                broken: None,
            }),
        })
    }

    /// An acceptor for the next connection, with the configuration in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .expect("tls lock poisoned")
                .config
                .clone(),
        )
    }

    /// Rebuilds the configuration if any file changed since the last load. Files that cannot
    /// be used keep the previous configuration in force; that is logged as an error at every
    /// call (every reload interval) until the files are fixed, so a broken new CRL, which
    /// leaves revoked certificates getting in, is not a single line that scrolls away.
    pub fn reload_if_changed(&self) -> Reload {
        let outcome = self.reload();
        if let Reload::Broken(reason) = &outcome {
            tracing::error!(error = %reason, "TLS files on disk cannot be used; the previous certificate, key and CRL stay in force");
        }
        outcome
    }

    /// Whether the CRL in force revokes `leaf` (a client certificate that passed an earlier
    /// handshake).
    pub fn is_revoked(&self, leaf: &CertificateDer<'_>) -> bool {
        let revoked = self
            .current
            .read()
            .expect("tls lock poisoned")
            .revoked
            .clone();
        revoked.contains(leaf)
    }

    /// Why the TLS files on disk are not in force, if they are not.
    pub fn problem(&self) -> Option<String> {
        self.current
            .read()
            .expect("tls lock poisoned")
            .broken
            .clone()
    }

    fn reload(&self) -> Reload {
        let stamp = match self.files.stamp() {
            Ok(stamp) => Some(stamp),
            Err(e) => {
                let reason = format!("cannot check the TLS files for changes: {e}");
                let mut current = self.current.write().expect("tls lock poisoned");
                // Read the files again once they can be checked, whatever their stamp.
                current.stamp = None;
                current.broken = Some(reason.clone());
                return Reload::Broken(reason);
            }
        };
        let mut current = self.current.write().expect("tls lock poisoned");
        if stamp == current.stamp {
            return match &current.broken {
                Some(reason) => Reload::Broken(reason.clone()),
                None => Reload::Unchanged,
            };
        }
        current.stamp = stamp;
        match masif_pki::server_config(&self.files) {
            Ok(config) => {
                current.config = Arc::new(config);
                current.revoked = Arc::new(Revoked::load(&self.files));
                current.broken = None;
                tracing::info!("TLS certificate, key and CRL re-read");
                Reload::Reloaded
            }
            Err(e) => {
                let reason = e.to_string();
                current.broken = Some(reason.clone());
                Reload::Broken(reason)
            }
        }
    }

    /// Checks for changes every `interval` until the task is dropped.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let this = self.clone();
            // File reads and certificate parsing are blocking work.
            let _ = tokio::task::spawn_blocking(move || this.reload_if_changed()).await;
        }
    }
}

/// New connections get the configuration in force when they arrive; agents are named by
/// their certificate's CN.
impl Acceptors for ReloadingTls {
    fn current(&self) -> TlsAcceptor {
        self.acceptor()
    }

    fn client_name(&self, leaf: &CertificateDer<'_>) -> Option<String> {
        masif_pki::common_name(leaf).ok().flatten()
    }
}
