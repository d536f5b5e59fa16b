//! Who is asking: session cookies from the login form, or a user name set by a trusted
//! reverse proxy; the login and logout routes (throttled, with a bounded number of password
//! checks at a time); CSRF checks for every form.

pub(crate) mod htpasswd;
mod login;
pub(crate) mod session;
pub(crate) mod throttle;

pub use throttle::LoginBackoff;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use warp::http::header::{HeaderMap, LOCATION, SET_COOKIE};
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::form::{field, Form};
use crate::pages::reject::{BadRequest, Forbidden, Unauthenticated};
use crate::server::ClientAddr;
use crate::{App, UiSettings};
use htpasswd::Users;
use session::Sessions;
use throttle::Throttle;

pub(crate) const SESSION_COOKIE: &str = "masif_session";
const LOGIN_COOKIE: &str = "masif_login";

/// A user name taken from a request header, believed only from the listed proxy addresses.
#[derive(Debug, Clone)]
pub struct TrustedHeader {
    /// Header name, lowercase.
    pub name: String,
    pub from: Vec<IpAddr>,
}

/// Authentication state of a running UI.
pub(crate) struct Auth {
    pub users: Users,
    pub trusted: Option<TrustedHeader>,
    pub sessions: Sessions,
    /// Mark cookies `Secure` (the UI serves HTTPS, or sits behind an HTTPS proxy).
    pub secure: bool,
    /// Failed logins by source and user name.
    pub throttle: Throttle,
    /// Password checks allowed at once (each can take a core, or 19 MiB with argon2).
    pub password_checks: Arc<tokio::sync::Semaphore>,
    /// How long a login waits for a password check before it is answered 503.
    pub password_check_wait: Duration,
}

/// The person behind a request.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub name: String,
    /// The token every form of this user must carry.
    pub csrf: String,
    csrf_scope: String,
    session: Option<String>,
}

impl Auth {
    pub(crate) fn new(settings: &UiSettings) -> Self {
        Self {
            users: settings.users.clone(),
            trusted: settings.trusted_header.clone(),
            sessions: Sessions::new(
                Duration::from_secs(settings.session_ttl),
                Duration::from_secs(settings.session_lifetime),
            ),
            secure: settings.tls.is_some() || settings.secure_cookies,
            throttle: Throttle::new(settings.login_backoff),
            password_checks: Arc::new(tokio::sync::Semaphore::new(settings.password_checks)),
            password_check_wait: settings.password_check_wait,
        }
    }

    /// The user of a request: the trusted proxy's header from a trusted address, else the
    /// session cookie's. A trusted header given more than once is refused (400), never
    /// picked from.
    pub(crate) fn identify(
        &self,
        cookie: Option<&str>,
        headers: &HeaderMap,
        addr: Option<ClientAddr>,
    ) -> Result<Option<User>, Rejection> {
        if let (Some(t), Some(ClientAddr(addr))) = (&self.trusted, addr) {
            if t.from.contains(&addr.ip()) {
                let mut values = headers.get_all(t.name.as_str()).iter();
                let first = values.next();
                if values.next().is_some() {
                    tracing::warn!(header = %t.name, "request refused: trusted header given more than once");
                    return Err(BadRequest::reject(format!(
                        "The header {} appears more than once in the request; the proxy must send it exactly once.",
                        t.name
                    )));
                }
                let name = first
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .filter(|n| !n.is_empty() && n.len() <= 191);
                if let Some(name) = name {
                    let scope = format!("u:{name}");
                    return Ok(Some(User {
                        name: name.to_owned(),
                        csrf: self.sessions.csrf_token(&scope),
                        csrf_scope: scope,
                        session: None,
                    }));
                }
            }
        }
        let Some(id) = cookie else {
            return Ok(None);
        };
        let Some(name) = self.sessions.user(id) else {
            return Ok(None);
        };
        let scope = format!("s:{id}");
        Ok(Some(User {
            name,
            csrf: self.sessions.csrf_token(&scope),
            csrf_scope: scope,
            session: Some(id.to_owned()),
        }))
    }

    /// Refuses a form whose `csrf` field is missing or not this user's token.
    pub(crate) fn check_csrf(&self, user: &User, form: &Form) -> Result<(), Rejection> {
        if self.csrf_ok(user, field(form, "csrf").unwrap_or("")) {
            Ok(())
        } else {
            tracing::warn!(user = %user.name, "form refused: missing or wrong CSRF token");
            Err(warp::reject::custom(Forbidden))
        }
    }

    /// Whether `given` is `user`'s CSRF token (from a form field or the API's header).
    pub(crate) fn csrf_ok(&self, user: &User, given: &str) -> bool {
        self.sessions.csrf_ok(&user.csrf_scope, given)
    }

    fn cookie(&self, name: &str, value: &str, path: &str, max_age: Option<u64>) -> HeaderValue {
        let mut c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict");
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        if self.secure {
            c.push_str("; Secure");
        }
        HeaderValue::from_str(&c).expect("cookie values are hex")
    }
}

/// Extracts the logged-in user, or rejects with [`Unauthenticated`] (a redirect to the login
/// page).
pub(crate) fn user(app: Arc<App>) -> impl Filter<Extract = (User,), Error = Rejection> + Clone {
    warp::cookie::optional::<String>(SESSION_COOKIE)
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<ClientAddr>())
        .and_then(move |cookie: Option<String>, headers: HeaderMap, addr| {
            let app = app.clone();
            async move {
                app.auth
                    .identify(cookie.as_deref(), &headers, addr)?
                    .ok_or_else(|| warp::reject::custom(Unauthenticated))
            }
        })
}

/// `GET /login`, `POST /login`, `POST /logout`.
pub(crate) fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let with_app = {
        let app = app.clone();
        warp::any().map(move || app.clone())
    };
    let login_page = warp::path!("login")
        .and(warp::get())
        .and(warp::cookie::optional::<String>(LOGIN_COOKIE))
        .and(with_app.clone())
        .map(|nonce: Option<String>, app: Arc<App>| {
            login::page(&app, nonce, None, "", StatusCode::OK)
        });
    let login = warp::path!("login")
        .and(warp::post())
        .and(warp::cookie::optional::<String>(LOGIN_COOKIE))
        .and(warp::cookie::optional::<String>(SESSION_COOKIE))
        .and(warp::ext::optional::<ClientAddr>())
        .and(crate::form::body())
        .and(with_app.clone())
        .and_then(login::submit);
    let logout = warp::path!("logout")
        .and(warp::post())
        .and(user(app.clone()))
        .and(crate::form::body())
        .and(with_app)
        .and_then(|user: User, form: Form, app: Arc<App>| async move {
            app.auth.check_csrf(&user, &form)?;
            if let Some(id) = &user.session {
                app.auth.sessions.remove(id);
            }
            tracing::info!(user = %user.name, "logged out");
            let mut r = redirect("/login");
            r.headers_mut().append(
                SET_COOKIE,
                app.auth.cookie(SESSION_COOKIE, "", "/", Some(0)),
            );
            Ok::<_, Rejection>(r)
        });
    login_page.or(login).unify().or(logout).unify()
}

/// A 303 "see other" to a local path.
pub(crate) fn redirect(location: &str) -> Response {
    let mut r = Response::new(Default::default());
    *r.status_mut() = StatusCode::SEE_OTHER;
    r.headers_mut().insert(
        LOCATION,
        HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/")),
    );
    r
}
