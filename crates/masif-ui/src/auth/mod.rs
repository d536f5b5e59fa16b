//! Who is asking: session cookies from the login form, or a user name set by a trusted
//! reverse proxy; the login and logout routes; CSRF checks for every form.

pub(crate) mod htpasswd;
pub(crate) mod session;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use warp::http::header::{HeaderMap, LOCATION, SET_COOKIE};
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::form::{field, Form};
use crate::pages::reject::{Forbidden, Unauthenticated};
use crate::server::ClientAddr;
use crate::App;
use htpasswd::Users;
use session::Sessions;

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
    /// Mark cookies `Secure` (the UI serves HTTPS).
    pub secure: bool,
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
    pub(crate) fn new(
        users: Users,
        trusted: Option<TrustedHeader>,
        ttl: Duration,
        secure: bool,
    ) -> Self {
        Self {
            users,
            trusted,
            sessions: Sessions::new(ttl),
            secure,
        }
    }

    fn identify(
        &self,
        cookie: Option<&str>,
        headers: &HeaderMap,
        addr: Option<ClientAddr>,
    ) -> Option<User> {
        if let (Some(t), Some(ClientAddr(addr))) = (&self.trusted, addr) {
            if t.from.contains(&addr.ip()) {
                let name = headers
                    .get(t.name.as_str())
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .filter(|n| !n.is_empty() && n.len() <= 191);
                if let Some(name) = name {
                    let scope = format!("u:{name}");
                    return Some(User {
                        name: name.to_owned(),
                        csrf: self.sessions.csrf_token(&scope),
                        csrf_scope: scope,
                        session: None,
                    });
                }
            }
        }
        let id = cookie?;
        let name = self.sessions.user(id)?;
        let scope = format!("s:{id}");
        Some(User {
            name,
            csrf: self.sessions.csrf_token(&scope),
            csrf_scope: scope,
            session: Some(id.to_owned()),
        })
    }

    /// Refuses a form whose `csrf` field is missing or not this user's token.
    pub(crate) fn check_csrf(&self, user: &User, form: &Form) -> Result<(), Rejection> {
        let given = field(form, "csrf").unwrap_or("");
        if self.sessions.csrf_ok(&user.csrf_scope, given) {
            Ok(())
        } else {
            tracing::warn!(user = %user.name, "form refused: missing or wrong CSRF token");
            Err(warp::reject::custom(Forbidden))
        }
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
                    .identify(cookie.as_deref(), &headers, addr)
                    .ok_or_else(|| warp::reject::custom(Unauthenticated))
            }
        })
}

#[derive(Serialize)]
struct LoginPage<'a> {
    title: &'a str,
    user: Option<&'a str>,
    csrf: &'a str,
    active: &'a str,
    error: Option<&'a str>,
    username: &'a str,
    password_login: bool,
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
            login_response(&app, nonce, None, "", StatusCode::OK)
        });
    let login = warp::path!("login")
        .and(warp::post())
        .and(warp::cookie::optional::<String>(LOGIN_COOKIE))
        .and(crate::form::body())
        .and(with_app.clone())
        .and_then(login_submit);
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

fn login_response(
    app: &App,
    nonce: Option<String>,
    error: Option<&str>,
    username: &str,
    status: StatusCode,
) -> Response {
    let nonce = nonce
        .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(session::random_token);
    let csrf = app.auth.sessions.csrf_token(&format!("l:{nonce}"));
    let mut r = app.templates.render(
        "login",
        &LoginPage {
            title: "Log in",
            user: None,
            csrf: &csrf,
            active: "login",
            error,
            username,
            password_login: !app.auth.users.is_empty(),
        },
    );
    *r.status_mut() = status;
    r.headers_mut().append(
        SET_COOKIE,
        app.auth.cookie(LOGIN_COOKIE, &nonce, "/", Some(3600)),
    );
    r
}

async fn login_submit(
    nonce: Option<String>,
    form: Form,
    app: Arc<App>,
) -> Result<Response, Rejection> {
    let given = field(&form, "csrf").unwrap_or("");
    let Some(nonce) = nonce.filter(|n| app.auth.sessions.csrf_ok(&format!("l:{n}"), given)) else {
        tracing::warn!("login refused: missing or wrong CSRF token");
        return Err(warp::reject::custom(Forbidden));
    };
    let username = field(&form, "username").unwrap_or("").trim().to_owned();
    let password = field(&form, "password").unwrap_or("").to_owned();
    if username.is_empty() || username.len() > 191 || password.len() > 1024 {
        return Ok(login_response(
            &app,
            Some(nonce),
            Some("Enter a user name and a password."),
            "",
            StatusCode::BAD_REQUEST,
        ));
    }
    let ok = {
        let app = app.clone();
        let username = username.clone();
        tokio::task::spawn_blocking(move || app.auth.users.verify(&username, &password))
            .await
            .unwrap_or(false)
    };
    if !ok {
        tracing::warn!(user = ?username, "failed login");
        return Ok(login_response(
            &app,
            Some(nonce),
            Some("Wrong user name or password."),
            &username,
            StatusCode::UNAUTHORIZED,
        ));
    }
    let id = app.auth.sessions.create(&username);
    tracing::info!(user = %username, "logged in");
    let mut r = redirect("/");
    r.headers_mut()
        .append(SET_COOKIE, app.auth.cookie(SESSION_COOKIE, &id, "/", None));
    Ok(r)
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
