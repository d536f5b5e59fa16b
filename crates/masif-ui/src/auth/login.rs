//! The login form and its submission: CSRF check, throttling by source and user name (429
//! with `Retry-After` while locked, before any password check), password checks on blocking
//! threads under a semaphore (503 with `Retry-After` when none frees up in time), and a fresh
//! session that replaces the one the browser held.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use warp::http::header::{HeaderValue, RETRY_AFTER, SET_COOKIE};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Rejection;

use super::throttle::Source;
use super::{redirect, session, LOGIN_COOKIE, SESSION_COOKIE};
use crate::form::{field, Form};
use crate::pages::reject::Forbidden;
use crate::server::ClientAddr;
use crate::App;

/// `Retry-After` of a login that found every password check busy, seconds.
const BUSY_RETRY_AFTER: u64 = 5;

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

/// The login page with an optional error, a fresh (or the given) login nonce cookie and its
/// CSRF token.
pub(super) fn page(
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

/// The login page answering "come back later": `status` with `Retry-After: seconds`.
fn retry_later(
    app: &App,
    nonce: String,
    message: &str,
    username: &str,
    status: StatusCode,
    seconds: u64,
) -> Response {
    let mut r = page(app, Some(nonce), Some(message), username, status);
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    r
}

/// Whole seconds, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// `POST /login`.
pub(super) async fn submit(
    nonce: Option<String>,
    old_session: Option<String>,
    addr: Option<ClientAddr>,
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
        return Ok(page(
            &app,
            Some(nonce),
            Some("Enter a user name and a password."),
            "",
            StatusCode::BAD_REQUEST,
        ));
    }
    // The serving core always sets the address; `warp::test` requests without one share it.
    let ip = addr.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.0.ip());
    let source = Source::from(ip);
    if let Some(wait) = app.auth.throttle.locked_for(source, &username) {
        let seconds = ceil_secs(wait);
        tracing::warn!(user = ?username, %ip, seconds, "login refused: too many failed logins");
        let message = format!(
            "Too many failed logins for this user name or from this address. Try again in {seconds} second(s)."
        );
        return Ok(retry_later(
            &app,
            nonce,
            &message,
            &username,
            StatusCode::TOO_MANY_REQUESTS,
            seconds,
        ));
    }
    let permits = app.auth.password_checks.clone();
    let permit = match tokio::time::timeout(app.auth.password_check_wait, permits.acquire_owned())
        .await
    {
        Ok(Ok(permit)) => permit,
        _ => {
            tracing::warn!(user = ?username, %ip, "login refused: every password check is busy");
            return Ok(retry_later(
                &app,
                nonce,
                "The server is busy checking other logins. Try again in a few seconds.",
                &username,
                StatusCode::SERVICE_UNAVAILABLE,
                BUSY_RETRY_AFTER,
            ));
        }
    };
    let ok = {
        let app = app.clone();
        let username = username.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            app.auth.users.verify(&username, &password)
        })
        .await
        .unwrap_or(false)
    };
    if !ok {
        app.auth.throttle.failed(source, &username);
        tracing::warn!(user = ?username, %ip, "failed login");
        return Ok(page(
            &app,
            Some(nonce),
            Some("Wrong user name or password."),
            &username,
            StatusCode::UNAUTHORIZED,
        ));
    }
    app.auth.throttle.succeeded(source, &username);
    if let Some(old) = old_session {
        // A new login ends the browser's old session; its id is never used again.
        app.auth.sessions.remove(&old);
    }
    let id = app.auth.sessions.create(&username);
    tracing::info!(user = %username, %ip, "logged in");
    let mut r = redirect("/");
    r.headers_mut()
        .append(SET_COOKIE, app.auth.cookie(SESSION_COOKIE, &id, "/", None));
    Ok(r)
}
