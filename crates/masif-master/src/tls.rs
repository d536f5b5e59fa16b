//! The server's TLS configuration, re-read from disk when certificate, key or CRL change
//! (Icinga renews certificates yearly, CRLs are republished) without a restart.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use masif_daemon::serve::Acceptors;
use masif_pki::{FilesStamp, TlsFiles};
use rustls::pki_types::CertificateDer;
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// The current server configuration and the file state it was built from.
pub struct ReloadingTls {
    files: TlsFiles,
    current: RwLock<Loaded>,
}

struct Loaded {
    config: Arc<ServerConfig>,
    stamp: Option<FilesStamp>,
}

impl ReloadingTls {
    /// Builds the first configuration; a bad file is an error here (the master does not start).
    pub fn load(files: TlsFiles) -> Result<Self, masif_pki::PkiError> {
        let stamp = files.stamp().ok();
        let config = Arc::new(masif_pki::server_config(&files)?);
        Ok(Self {
            files,
            current: RwLock::new(Loaded { config, stamp }),
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

    /// Rebuilds the configuration if any file changed since the last load. A broken new file
    /// keeps the previous configuration in force (and is retried when it changes again).
    /// Returns whether a new configuration took effect.
    pub fn reload_if_changed(&self) -> bool {
        let stamp = match self.files.stamp() {
            Ok(stamp) => Some(stamp),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check TLS files for changes");
                return false;
            }
        };
        if stamp == self.current.read().expect("tls lock poisoned").stamp {
            return false;
        }
        let mut current = self.current.write().expect("tls lock poisoned");
        current.stamp = stamp;
        match masif_pki::server_config(&self.files) {
            Ok(config) => {
                current.config = Arc::new(config);
                tracing::info!("TLS certificate, key and CRL re-read");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS files changed but cannot be used; keeping the previous configuration");
                false
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
