//! Who calls the API: a bearer token from `auth.tokens` (checked under the login throttle and
//! the password-check semaphore, then remembered), or the UI's own session cookie or trusted
//! proxy header; writes by a session or proxy user need the `X-CSRF-Token` header.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use warp::http::header::{HeaderMap, AUTHORIZATION};
use warp::http::StatusCode;
use warp::{Filter, Rejection};

use super::error::{ApiError, RETRY_AFTER_SECS};
use super::tokens::digest;
use crate::auth::throttle::Source;
use crate::auth::{User, SESSION_COOKIE};
use crate::server::ClientAddr;
use crate::App;

/// The header a session's or proxy user's write carries its CSRF token in.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// Longest bearer token accepted (`openssl rand -hex 32` makes 64 characters).
const MAX_TOKEN_CHARS: usize = 1024;

/// Who is calling.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// A bearer token, by the name of its line.
    Token(String),
    /// A logged-in or proxy-authenticated user.
    Person(User),
}

impl Caller {
    /// The name writes are audited under: the user's, or `token:NAME`.
    pub(crate) fn audit_name(&self) -> String {
        match self {
            Caller::Token(name) => format!("token:{name}"),
            Caller::Person(user) => user.name.clone(),
        }
    }
}

/// Whether a route reads or writes (writes by a person need the CSRF header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// Extracts the caller, or rejects with 401 (no or bad credentials), 403 (a write without
/// the CSRF header), 429 or 503.
pub(crate) fn caller(
    app: Arc<App>,
    access: Access,
) -> impl Filter<Extract = (Caller,), Error = Rejection> + Clone {
    warp::cookie::optional::<String>(SESSION_COOKIE)
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<ClientAddr>())
        .and_then(move |cookie: Option<String>, headers: HeaderMap, addr| {
            let app = app.clone();
            async move { identify(&app, access, cookie.as_deref(), &headers, addr).await }
        })
}

async fn identify(
    app: &Arc<App>,
    access: Access,
    cookie: Option<&str>,
    headers: &HeaderMap,
    addr: Option<ClientAddr>,
) -> Result<Caller, Rejection> {
    let mut authorization = headers.get_all(AUTHORIZATION).iter();
    if let Some(value) = authorization.next() {
        if authorization.next().is_some() {
            return Err(ApiError::unauthorized(
                "the Authorization header appears more than once",
            ));
        }
        let token = bearer_token(value.as_bytes())?;
        return token_caller(app, token, addr).await.map(Caller::Token);
    }
    let Some(user) = app.auth.identify(cookie, headers, addr)? else {
        return Err(ApiError::unauthorized(
            "authentication required: send Authorization: Bearer TOKEN or a session cookie",
        ));
    };
    if access == Access::Write {
        let given = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !app.auth.csrf_ok(&user, given) {
            tracing::warn!(user = %user.name, "API write refused: missing or wrong X-CSRF-Token");
            return Err(ApiError::reject(
                StatusCode::FORBIDDEN,
                "a write with a session needs the header X-CSRF-Token with the session's CSRF token",
            ));
        }
    }
    Ok(Caller::Person(user))
}

/// The token of `Authorization: Bearer TOKEN` (scheme case-insensitive, printable ASCII).
fn bearer_token(value: &[u8]) -> Result<&str, Rejection> {
    let malformed =
        || ApiError::unauthorized("malformed Authorization header: expected Bearer TOKEN");
    let value = std::str::from_utf8(value).map_err(|_| malformed())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || token.len() > MAX_TOKEN_CHARS
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(malformed());
    }
    Ok(token)
}

/// The name of the token's line. A token seen before costs a lookup; a new one a hash check
/// per line, under the source's login throttle and the password-check semaphore.
async fn token_caller(
    app: &Arc<App>,
    token: &str,
    addr: Option<ClientAddr>,
) -> Result<String, Rejection> {
    let ip = addr.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.0.ip());
    let source = Source::from(ip);
    let invalid = || {
        app.auth.throttle.source_failed(source);
        tracing::warn!(%ip, "API request refused: invalid bearer token");
        ApiError::unauthorized("invalid token")
    };
    let Some(tokens) = app.tokens.clone() else {
        return Err(invalid());
    };
    let key = digest(token);
    let (lines, generation) = match tokens.lookup(&key) {
        Ok(name) => return Ok(name),
        Err(unverified) => unverified,
    };
    if let Some(wait) = app.auth.throttle.source_locked_for(source) {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        tracing::warn!(%ip, seconds, "API request refused: too many failed checks");
        return Err(ApiError::retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins or tokens from this address",
            seconds,
        ));
    }
    let permits = app.auth.password_checks.clone();
    let Ok(Ok(permit)) =
        tokio::time::timeout(app.auth.password_check_wait, permits.acquire_owned()).await
    else {
        return Err(ApiError::retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is busy checking other credentials",
            RETRY_AFTER_SECS,
        ));
    };
    let secret = token.to_owned();
    let name = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        lines.name_of_secret(&secret)
    })
    .await
    .ok()
    .flatten();
    match name {
        Some(name) => {
            tokens.remember(key, &name, generation);
            Ok(name)
        }
        None => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_headers_are_parsed_strictly() {
        assert_eq!(bearer_token(b"Bearer abc").ok(), Some("abc"));
        assert_eq!(bearer_token(b"bearer  abc ").ok(), Some("abc"));
        for bad in [
            &b"Basic abc"[..],
            b"Bearer",
            b"Bearer ",
            b"Bearerabc",
            b"Bearer a b",
            b"Bearer \xff",
            b"abc",
        ] {
            assert!(bearer_token(bad).is_err(), "{bad:?}");
        }
        assert!(bearer_token(format!("Bearer {}", "a".repeat(1025)).as_bytes()).is_err());
    }
}
