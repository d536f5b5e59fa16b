//! Login hardening, in-process against a real MariaDB: failed logins lock the user name and
//! the source (IPv6 by /64) with a growing lock and a 429, a success clears the count, password
//! checks are bounded (503), sessions end after their absolute lifetime, a new login ends the
//! browser's old session, and `secure_cookies` marks cookies `Secure` over plain HTTP.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::in_process::*;
use common::*;
use masif_ui::{LoginBackoff, UiSettings, Users};
use warp::http::StatusCode;

const A: &str = "192.0.2.10:1000";
const B: &str = "198.51.100.7:2000";

fn backoff(first_lock: u64) -> LoginBackoff {
    LoginBackoff {
        first_lock: Duration::from_secs(first_lock),
        ..LoginBackoff::default()
    }
}

fn session_cookie(r: &Reply) -> Option<String> {
    r.set_cookies()
        .iter()
        .find(|c| c.starts_with("masif_session="))
        .map(|c| cookie_pair(c))
}

fn retry_after(r: &Reply) -> u64 {
    r.headers["retry-after"].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn failures_lock_the_user_name_and_the_source_with_a_429() {
    let mut s = settings();
    s.login_backoff = backoff(60);
    let ui = ui("ui_login_lock", s).await;
    let (nonce, csrf) = ui.login_form().await;
    let login = |addr: &str, user: &'static str, pw: &'static str| {
        let (addr, nonce, csrf) = (addr.to_owned(), nonce.clone(), csrf.clone());
        let ui = &ui;
        async move { ui.try_login(&addr, &nonce, &csrf, user, pw).await }
    };
    // Five free failures, and the sixth locks for the first lock.
    for _ in 0..6 {
        assert_eq!(
            login(A, USER, "wrong").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Locked: even the right password is refused, with a readable page and no session.
    let r = login(A, USER, PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!((1..=60).contains(&retry_after(&r)), "{:?}", r.headers);
    assert!(r.body.contains("Too many failed logins"), "{}", r.body);
    assert_eq!(session_cookie(&r), None);
    // The user name is locked from everywhere; another name from elsewhere is not.
    assert_eq!(
        login(B, USER, PASSWORD).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login(B, "nobody", "x").await.status,
        StatusCode::UNAUTHORIZED
    );
    // Unknown names lock as well, whatever the source.
    for i in 1..=6 {
        assert_eq!(
            login(&format!("203.0.113.{i}:1"), "ghost", "x")
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login("203.0.113.7:1", "ghost", "x").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A source spraying names is locked for every name, across its IPv6 /64.
    for name in ["n1", "n2", "n3", "n4", "n5", "n6"] {
        assert_eq!(
            login("[2001:db8:1:2::1]:1", name, "x").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login("[2001:db8:1:2:ffff::9]:1", "n7", "x").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login("[2001:db8:1:3::1]:1", "n7", "x").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_lock_ends_and_a_success_clears_the_count() {
    let mut s = settings();
    s.login_backoff = backoff(1);
    let ui = ui("ui_login_unlock", s).await;
    let (nonce, csrf) = ui.login_form().await;
    for _ in 0..6 {
        let r = ui.try_login(A, &nonce, &csrf, USER, "wrong").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Polled until the one-second lock has run out.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = ui.try_login(A, &nonce, &csrf, USER, PASSWORD).await;
        if r.status == StatusCode::SEE_OTHER {
            break;
        }
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(Instant::now() < deadline, "the lock never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The success cleared the count: one more failure does not lock again.
    let r = ui.try_login(A, &nonce, &csrf, USER, "wrong").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = ui.try_login(A, &nonce, &csrf, USER, PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
}

#[tokio::test]
async fn password_checks_beyond_the_permits_get_a_503() {
    // A slow hash (bcrypt cost 10), one check at a time, no waiting for a free one.
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "{USER}:{}", bcrypt::hash(PASSWORD, 10).unwrap()).unwrap();
    let s = UiSettings {
        password_checks: 1,
        password_check_wait: Duration::ZERO,
        ..UiSettings::with_users(Users::load(f.path()).unwrap())
    };
    let ui = ui("ui_login_permits", s).await;
    let (nonce, csrf) = ui.login_form().await;
    let (one, two) = tokio::join!(
        ui.try_login(A, &nonce, &csrf, USER, "wrong"),
        ui.try_login(B, &nonce, &csrf, USER, "wrong"),
    );
    let mut statuses = [one.status, two.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::UNAUTHORIZED, StatusCode::SERVICE_UNAVAILABLE]
    );
    let busy = if one.status == StatusCode::SERVICE_UNAVAILABLE {
        one
    } else {
        two
    };
    assert!(retry_after(&busy) >= 1);
    assert!(busy.body.contains("busy"), "{}", busy.body);
    // The permit is back once the check is done.
    let r = ui.try_login(A, &nonce, &csrf, USER, PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
}

#[tokio::test]
async fn a_session_ends_after_its_absolute_lifetime_even_when_used() {
    let mut s = settings();
    s.session_lifetime = 1;
    let ui = ui("ui_session_lifetime", s).await;
    let (session, _) = ui.login().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = ui.get("/", &session).await;
        if r.status == StatusCode::SEE_OTHER {
            assert_eq!(r.location(), "/login");
            break;
        }
        assert_eq!(r.status, StatusCode::OK);
        assert!(Instant::now() < deadline, "the session never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_new_login_ends_the_old_session_and_ids_are_never_reused() {
    let ui = ui("ui_relogin", settings()).await;
    let (old, _) = ui.login().await;
    let (nonce, csrf) = ui.login_form().await;
    let r = ui
        .try_login(LOCAL, &format!("{nonce}; {old}"), &csrf, USER, PASSWORD)
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let new = session_cookie(&r).unwrap();
    assert_ne!(new, old);
    assert_eq!(ui.get("/", &old).await.status, StatusCode::SEE_OTHER);
    assert_eq!(ui.get("/", &new).await.status, StatusCode::OK);
    // A planted id never becomes a session.
    let planted = format!("masif_session={}", "ab".repeat(32));
    let r = ui
        .try_login(LOCAL, &format!("{nonce}; {planted}"), &csrf, USER, PASSWORD)
        .await;
    let fresh = session_cookie(&r).unwrap();
    assert_ne!(fresh, planted);
    assert_eq!(ui.get("/", &planted).await.status, StatusCode::SEE_OTHER);
    assert_eq!(ui.get("/", &fresh).await.status, StatusCode::OK);
}

#[tokio::test]
async fn secure_cookies_are_secure_over_plain_http() {
    let mut s = settings();
    s.secure_cookies = true;
    let ui = ui("ui_secure_cookies", s).await;
    let page = ui.get("/login", "").await;
    assert!(
        page.set_cookies()[0].contains("; Secure"),
        "{:?}",
        page.set_cookies()
    );
    // Not TLS itself: no HSTS.
    assert!(!page.headers.contains_key("strict-transport-security"));
    let (nonce, csrf) = (cookie_pair(&page.set_cookies()[0]), csrf_of(&page.body));
    let r = ui.try_login(LOCAL, &nonce, &csrf, USER, PASSWORD).await;
    let session = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("masif_session="))
        .unwrap();
    assert!(session.contains("; Secure"), "{session}");
}
