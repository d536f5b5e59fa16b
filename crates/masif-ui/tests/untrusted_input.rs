//! The UI's answers to untrusted requests, in-process against a real MariaDB: malformed and
//! hostile input is refused and changes nothing, and the trusted proxy header is believed only
//! from the configured addresses.

mod common;

use common::in_process::*;
use common::*;
use std::net::SocketAddr;

use masif_ui::{ClientAddr, TrustedHeader};
use warp::http::StatusCode;

#[tokio::test]
async fn malformed_and_hostile_requests_are_refused() {
    let ui = ui("ui_malformed", settings()).await;
    let (session, csrf) = ui.login().await;
    for (path, status) in [
        ("/?page=0", StatusCode::BAD_REQUEST),
        ("/?page=abc", StatusCode::BAD_REQUEST),
        ("/?page=99999999999", StatusCode::BAD_REQUEST),
        ("/?bogus=1", StatusCode::BAD_REQUEST),
        ("/agents?page=-1", StatusCode::BAD_REQUEST),
        ("/agents?state=gone", StatusCode::BAD_REQUEST),
        ("/agents?state=offline&page=0", StatusCode::BAD_REQUEST),
        ("/agents?status=offline", StatusCode::BAD_REQUEST),
        ("/agent?name=web-1&page=0", StatusCode::BAD_REQUEST),
        ("/agent", StatusCode::BAD_REQUEST),
        ("/agent?name=", StatusCode::BAD_REQUEST),
        ("/agent?name=a%0Ab", StatusCode::BAD_REQUEST),
        ("/nope", StatusCode::NOT_FOUND),
        ("/approve", StatusCode::METHOD_NOT_ALLOWED),
    ] {
        let r = ui.get(path, &session).await;
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert!(r.body.contains("<h1>"), "{path}: error pages are pages");
    }
    let long = "x".repeat(300);
    assert_eq!(
        ui.get(&format!("/?package={long}"), &session).await.status,
        StatusCode::BAD_REQUEST
    );
    // A page past the end is fine and empty.
    let r = ui.get("/?page=500", &session).await;
    assert_eq!(r.status, StatusCode::OK);

    let before = ui.fx.db.snapshot().await;
    for body in [
        format!("csrf={csrf}&do=approve"),
        format!("csrf={csrf}&do=approve&key=perl"),
        format!(
            "csrf={csrf}&do=approve&key={}",
            enc("[\"perl\",\"upgrade\",\"1\"]")
        ),
        format!(
            "csrf={csrf}&do=approve&key={}",
            enc("[\"\",\"update\",\"1\"]")
        ),
        format!(
            "csrf={csrf}&do=approve&key={}",
            enc(&format!("[\"{}\",\"update\",\"1\"]", "p".repeat(200)))
        ),
        format!(
            "csrf={csrf}&do=launch&key={}",
            enc(&key_value("perl", "update", Some("5.2")))
        ),
        format!(
            "csrf={csrf}&do=approve-agents&agent=&key={}",
            enc(&key_value("perl", "update", Some("5.2")))
        ),
    ] {
        let r = ui.post("/approve", &session, &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
    }
    // Oversized and wrongly typed bodies.
    let big = format!("csrf={csrf}&pad={}", "x".repeat(2 * 1024 * 1024));
    assert_eq!(
        ui.post("/approve", &session, &big).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let r = ui
        .send(
            warp::test::request()
                .method("POST")
                .path("/approve")
                .header("cookie", &session)
                .header("content-type", "application/json")
                .body("{}"),
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.status);
    // Too many ticked rows.
    let many = format!("csrf={csrf}&do=approve{}", "&key=x".repeat(10_001));
    assert_eq!(
        ui.post("/approve", &session, &many).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(ui.fx.db.snapshot().await, before);
}

#[tokio::test]
async fn hostile_tags_windows_and_roll_out_forms_are_refused() {
    let ui = ui("ui_hostile_tags", settings()).await;
    let (session, csrf) = ui.login().await;
    for (path, status) in [
        ("/agents?tag=%3Cb%3E", StatusCode::BAD_REQUEST),
        ("/agents?tag=a%20b", StatusCode::BAD_REQUEST),
        ("/?tag=-web", StatusCode::BAD_REQUEST),
        (
            "/?approved=1&approved_tag=%3Cscript%3E",
            StatusCode::BAD_REQUEST,
        ),
        ("/tags?saved=%3Cscript%3E", StatusCode::BAD_REQUEST),
        ("/tags?bogus=1", StatusCode::BAD_REQUEST),
        ("/rollouts?page=0", StatusCode::BAD_REQUEST),
        ("/rollouts/abc", StatusCode::NOT_FOUND),
        ("/rollouts/1?done=7", StatusCode::BAD_REQUEST),
        ("/rollouts/99999999999999999999", StatusCode::NOT_FOUND),
        ("/rollouts/1/promote", StatusCode::METHOD_NOT_ALLOWED),
    ] {
        let r = ui.get(path, &session).await;
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert!(!r.body.contains("<script>"), "{path}");
    }
    let before = ui.fx.db.snapshot().await;
    let tag_form = |tag: &str, max: &str, windows: &str| {
        format!(
            "csrf={csrf}&tag={}&max_in_flight={}&windows={}",
            enc(tag),
            enc(max),
            enc(windows)
        )
    };
    let many = "mon 22:00-23:00 UTC\n".repeat(51);
    let huge = "x".repeat(20_000);
    for (body, error) in [
        (
            tag_form("<script>alert(1)</script>", "", ""),
            "tag: must be",
        ),
        (tag_form("", "1", ""), "tag: enter a tag name"),
        (tag_form(&"t".repeat(65), "", ""), "tag: must be"),
        (tag_form("web", "0", ""), "max in flight: must be"),
        (tag_form("web", "<b>1</b>", ""), "max in flight: must be"),
        (
            tag_form("web", "", "mon 22:00-23:00 <script>alert(1)</script>"),
            "window 1: unknown time zone",
        ),
        (
            tag_form("web", "", "mon 22:00-23:00 UTC\u{0}"),
            "window 1: holds control characters",
        ),
        (tag_form("web", "", &many), "windows: more than 50 windows"),
        (tag_form("web", "", &huge), "windows: more than"),
    ] {
        let r = ui.post("/tags", &session, &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{error}: {}", r.body);
        assert!(r.body.contains(error), "{error}: {}", r.body);
        assert!(!r.body.contains("<script>alert"), "{error}");
    }
    let perl = enc(&key_value("perl", "update", Some("5.2")));
    for tag in ["%3Cscript%3E", "", "a%20b", &"t".repeat(65)] {
        let body = format!("csrf={csrf}&do=approve-tag&approve_tag={tag}&key={perl}");
        let r = ui.post("/approve", &session, &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        assert!(!r.body.contains("<script>"));
    }
    for body in [
        format!("csrf={csrf}&rings=canary&max_failure_percent=1"),
        format!(
            "csrf={csrf}&key={perl}&rings={}&max_failure_percent=1",
            "a,".repeat(11)
        ),
        format!("csrf={csrf}&key=perl&rings=canary&max_failure_percent=1"),
        format!("csrf={csrf}&key={perl}&rings=canary&max_failure_percent=-1"),
        format!("csrf={csrf}&key={perl}&rings=canary&soak_seconds=1e9&max_failure_percent=1"),
    ] {
        let r = ui.post("/rollouts", &session, &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
    }
    assert_eq!(
        ui.post("/rollouts/1/promote", &session, "force=1")
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let r = ui
        .post(
            "/rollouts/1/promote",
            &session,
            &format!("csrf={csrf}&force=yes"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    for path in ["/tags", "/rollouts", "/rollouts/1/promote"] {
        let big = format!("csrf={csrf}&windows={}", "x".repeat(2 * 1024 * 1024));
        assert_eq!(
            ui.post(path, &session, &big).await.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{path}"
        );
    }
    assert_eq!(ui.fx.db.snapshot().await, before);
}

#[tokio::test]
async fn trusted_proxy_header_only_from_configured_addresses() {
    let mut s = settings();
    s.trusted_header = Some(TrustedHeader {
        name: "x-remote-user".into(),
        from: vec!["127.0.0.1".parse().unwrap()],
    });
    let ui = ui("ui_proxy", s).await;
    let via = |addr: &str| {
        warp::test::request()
            .method("GET")
            .path("/")
            .header("x-remote-user", "proxied-alice")
            .extension(ClientAddr(addr.parse::<SocketAddr>().unwrap()))
    };
    let r = via(LOCAL).reply(&ui.routes).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body = String::from_utf8_lossy(r.body()).into_owned();
    assert!(body.contains("proxied-alice"));
    let csrf = csrf_of(&body);
    // From elsewhere the header means nothing.
    let r = via("10.1.2.3:5555").reply(&ui.routes).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // The proxy user's forms carry a token of their own.
    let perl = enc(&key_value("perl", "update", Some("5.2")));
    let post = |body: String| {
        warp::test::request()
            .method("POST")
            .path("/approve")
            .header("x-remote-user", "proxied-alice")
            .header("content-type", "application/x-www-form-urlencoded")
            .extension(ClientAddr(LOCAL.parse().unwrap()))
            .body(body)
    };
    let r = post(format!("do=approve&key={perl}"))
        .reply(&ui.routes)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = post(format!("csrf={csrf}&do=approve&key={perl}"))
        .reply(&ui.routes)
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        ui.fx
            .rows("SELECT DISTINCT approved_by FROM approval")
            .await,
        vec![vec![Some("proxied-alice".into())]]
    );
}

#[tokio::test]
async fn a_repeated_trusted_header_is_refused_never_picked_from() {
    let fx = Fixture::new("ui_proxy_twice").await;
    fx.seed().await;
    let mut s = settings();
    s.trusted_header = Some(TrustedHeader {
        name: "x-remote-user".into(),
        from: vec!["127.0.0.1".parse().unwrap()],
    });
    let ui = served::Served::start(s, fx.store.clone()).await;
    let once = ui
        .raw("GET / HTTP/1.1\r\nHost: t\r\nX-Remote-User: alice")
        .await;
    assert!(once.starts_with("HTTP/1.1 200"), "{once}");
    for head in [
        "GET / HTTP/1.1\r\nHost: t\r\nX-Remote-User: alice\r\nX-Remote-User: admin",
        "GET / HTTP/1.1\r\nHost: t\r\nx-remote-user: alice\r\nX-REMOTE-USER: alice",
    ] {
        let twice = ui.raw(head).await;
        assert!(twice.starts_with("HTTP/1.1 400"), "{twice}");
        assert!(
            twice.contains("x-remote-user appears more than once"),
            "{twice}"
        );
    }
    ui.stop().await;
}
