//! The browser approval UI: pending updates grouped by package (with the approved ones that
//! failed), agents (last contact, offline, run history, tags, next window), tags (max in
//! flight, maintenance windows), roll-outs, approvals, reset and audit pages over the shared database, with local or proxy authentication and CSRF
//! protection. `masif-ui` (the binary), tests and `masif demo` all run [`serve_with_listener`].

#![warn(unreachable_pub)]

mod api;
mod auth;
pub mod cli;
pub mod config;
mod form;
mod metrics;
mod pages;
mod render;
mod server;
mod summary_check;
mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use masif_store::Store;
use tokio::net::TcpListener;
use warp::http::header::{HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use warp::reply::Response;
use warp::Filter;

pub use api::tokens::ApiTokens;
pub use api::{OPENAPI_DOCUMENT, ROUTES as API_ROUTES};
pub use auth::htpasswd::Users;
pub use auth::{LoginBackoff, TrustedHeader};
pub use masif_daemon::serve::Limits;
pub use server::ClientAddr;

/// Errors of the UI library.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("htpasswd {0}")]
    Htpasswd(String),
    /// A certificate or key file could not be loaded.
    #[error("tls {0}")]
    TlsFile(#[from] masif_pki::PkiError),
    /// rustls refused the certificate and key (e.g. they do not belong together).
    #[error("tls {}: {source}", path.display())]
    Tls {
        path: std::path::PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("template {0}")]
    Template(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What a running UI needs besides its store and listener.
#[derive(Debug)]
pub struct UiSettings {
    /// Local users (may be empty when a trusted proxy authenticates).
    pub users: Users,
    /// API bearer tokens (`auth.tokens`), if any.
    pub tokens: Option<Arc<ApiTokens>>,
    pub trusted_header: Option<TrustedHeader>,
    /// Serve HTTPS with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Idle lifetime of a login session, seconds.
    pub session_ttl: u64,
    /// Absolute lifetime of a login session, seconds.
    pub session_lifetime: u64,
    /// Mark cookies `Secure` even without `tls` (a UI behind an HTTPS proxy).
    pub secure_cookies: bool,
    /// When failed logins lock a source or a user name.
    pub login_backoff: LoginBackoff,
    /// Password checks at once (default: one per CPU).
    pub password_checks: usize,
    /// How long a login waits for a free password check before a 503.
    pub password_check_wait: Duration,
    /// Seconds without a report after which an agent is shown offline.
    pub offline_after: u64,
}

impl UiSettings {
    /// Local users only, plain HTTP, default session lifetime.
    pub fn with_users(users: Users) -> Self {
        Self {
            users,
            tokens: None,
            trusted_header: None,
            tls: None,
            session_ttl: config::DEFAULT_SESSION_TTL,
            session_lifetime: config::DEFAULT_SESSION_LIFETIME,
            secure_cookies: false,
            login_backoff: LoginBackoff::default(),
            password_checks: default_password_checks(),
            password_check_wait: DEFAULT_PASSWORD_CHECK_WAIT,
            offline_after: config::DEFAULT_OFFLINE_AFTER,
        }
    }
}

/// How long a login waits for a free password check by default.
pub const DEFAULT_PASSWORD_CHECK_WAIT: Duration = Duration::from_secs(10);

/// One password check at a time per CPU.
pub fn default_password_checks() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// State shared by every handler.
pub(crate) struct App {
    pub store: Arc<dyn Store>,
    pub templates: render::Templates,
    pub auth: auth::Auth,
    /// API bearer tokens, if configured.
    pub tokens: Option<Arc<ApiTokens>>,
    /// Seconds without a report after which an agent is shown offline.
    pub offline_after: i64,
    /// The approvals written in the background, for their progress pages.
    pub approvals: pages::approving::Jobs,
}

/// Every route of the UI, with error pages and security headers: what the server runs, and
/// what route tests drive with `warp::test` (they set a [`ClientAddr`] extension themselves).
pub fn routes(
    settings: &UiSettings,
    store: Arc<dyn Store>,
) -> Result<impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone, UiError> {
    let app = Arc::new(App {
        store,
        templates: render::Templates::new()?,
        auth: auth::Auth::new(settings),
        tokens: settings.tokens.clone(),
        offline_after: i64::try_from(settings.offline_after).unwrap_or(i64::MAX),
        approvals: pages::approving::Jobs::default(),
    });
    let recover_app = app.clone();
    let routes = static_files()
        .or(api::routes(app.clone()))
        .unify()
        .or(pages::routes(app))
        .unify()
        .recover(move |r| pages::reject::recover(recover_app.clone(), r))
        .unify()
        .with(warp::reply::with::headers(security_headers(
            settings.tls.is_some(),
        )))
        .map(warp::Reply::into_response);
    Ok(routes)
}

/// Serves the UI on `listener` (HTTPS when `settings.tls` is set) until `shutdown` completes,
/// with the serving core's default [`Limits`].
pub async fn serve_with_listener(
    settings: UiSettings,
    store: Arc<dyn Store>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), UiError> {
    serve_with_limits(settings, Limits::default(), store, listener, shutdown).await
}

/// [`serve_with_listener`] with explicit connection limits and deadlines.
pub async fn serve_with_limits(
    settings: UiSettings,
    limits: Limits,
    store: Arc<dyn Store>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), UiError> {
    warn_about_users(&settings.users);
    let routes = routes(&settings, store)?;
    let addr = listener.local_addr()?;
    let scheme = if settings.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!("UI listening on {scheme}://{addr}/");
    server::serve(listener, settings.tls.clone(), routes, limits, shutdown).await;
    Ok(())
}

/// Runs the UI as configured (what `masif-ui --config FILE` does) until `shutdown` completes.
pub async fn run(config: config::Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let store = masif_store::open_any(&config.db_urls, &masif_store::StoreSettings::default())
        .await
        .with_context(|| masif_store::describe_urls(&config.db_urls))?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen {}", config.listen))?;
    let summary_check = config.summary_check_interval.map(|interval| {
        let store = store.clone();
        tokio::spawn(async move { summary_check::run(store.as_ref(), interval).await })
    });
    let stop_summary_check = || summary_check.as_ref().map(tokio::task::JoinHandle::abort);
    let Some(metrics_addr) = config.metrics_listen else {
        let served = serve_with_listener(config.settings, store, listener, shutdown).await;
        stop_summary_check();
        return Ok(served?);
    };
    let metrics_listener = TcpListener::bind(metrics_addr)
        .await
        .with_context(|| format!("metrics_listen {metrics_addr}"))?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let metrics = tokio::spawn(serve_metrics(
        store.clone(),
        config.settings.offline_after,
        metrics_listener,
        async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|stop| *stop).await;
        },
    ));
    let served = serve_with_listener(config.settings, store, listener, shutdown).await;
    let _ = stop.send(true);
    let _ = metrics.await;
    stop_summary_check();
    served?;
    Ok(())
}

/// Serves the fleet metrics (`GET /metrics`: agents, offline agents by `offline_after`
/// seconds, failing agents, reboots required, pending tasks by action) on `listener`, plain
/// HTTP, until `shutdown` completes.
pub async fn serve_metrics(
    store: Arc<dyn Store>,
    offline_after: u64,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let fleet = Arc::new(metrics::FleetMetrics::new(
        store,
        offline_after,
        metrics::CACHE_FOR,
    ));
    masif_daemon::metrics::serve(listener, fleet, shutdown).await;
}

/// Start-up warnings about the password file: weak bcrypt costs, and users whose hash costs
/// differ from the first one (the dummy checked for unknown names is made like the first).
fn warn_about_users(users: &Users) {
    for (user, cost) in users.weak_bcrypt() {
        tracing::warn!(
            "htpasswd: user {user:?} has bcrypt cost {cost}, below {}: set a new password with `htpasswd -B -C 12`",
            auth::htpasswd::MIN_BCRYPT_COST
        );
    }
    let other = users.other_costs();
    if !other.is_empty() {
        tracing::warn!(
            "htpasswd: users {other:?} have another hash algorithm or cost than the first user; \
             login timing may tell them apart from unknown names"
        );
    }
}

fn static_files() -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("static" / String)
        .and(warp::get())
        .and_then(|name: String| async move {
            let (_, content_type, body) = render::STATIC_FILES
                .iter()
                .find(|(n, _, _)| *n == name)
                .ok_or_else(warp::reject::not_found)?;
            let mut r = Response::new((*body).into());
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
            Ok::<_, warp::Rejection>(r)
        })
}

/// Headers on every response: no inline script or style, no framing, no sniffing, no referrer;
/// and when the UI serves HTTPS itself, HTTPS only for a year (HSTS).
fn security_headers(tls: bool) -> HeaderMap {
    let mut h = HeaderMap::new();
    if tls {
        h.insert(
            "strict-transport-security",
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h
}
