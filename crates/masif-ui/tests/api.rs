//! The JSON API end to end over real HTTP on MariaDB: tokens (valid, wrong, missing,
//! malformed, throttled), sessions with and without the CSRF header, audit entries under the
//! user's and the token's name, and errors that change nothing.

mod common;

use std::time::Duration;

use common::api::{api_settings, delete, get, login, post, send, serve, token_file, TOKEN};
use common::served::Served;
use common::Fixture;
use masif_ui::LoginBackoff;
use serde_json::json;

/// Headers, body, expected status and a part of the error.
type RawCase<'a> = (Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);

fn approve_perl() -> serde_json::Value {
    json!({"tasks": [{"package": "perl", "action": "update", "to_version": "5.2"}]})
}

#[tokio::test]
async fn tokens_are_checked_and_failures_are_throttled() {
    let fx = Fixture::new("api_tokens").await;
    fx.seed().await;
    let tokens = token_file();
    let settings = masif_ui::UiSettings {
        login_backoff: LoginBackoff {
            free_failures: 2,
            first_lock: Duration::from_secs(600),
            max_lock: Duration::from_secs(600),
        },
        ..api_settings(&tokens)
    };
    let ui = Served::start(settings, fx.store.clone()).await;
    // The valid token, before any failure, so it is remembered.
    assert_eq!(get(&ui, "/api/v1/audit").await.status, 200);
    for (headers, want) in [
        (vec![], "authentication required"),
        (vec![("Authorization", "Bearer wrong")], "invalid token"),
        (vec![("Authorization", "Basic YWRtaW46eA==")], "malformed"),
        (vec![("Authorization", "Bearer")], "malformed"),
        (vec![("Authorization", "Bearer a b")], "malformed"),
    ] {
        let a = send(&ui, "GET", "/api/v1/pending", &headers, b"").await;
        let e = a.error(401);
        assert!(e.contains(want), "{headers:?}: {e}");
        assert_eq!(a.header("www-authenticate"), Some("Bearer"));
    }
    let bearer = format!("Bearer {TOKEN}");
    let twice = send(
        &ui,
        "GET",
        "/api/v1/pending",
        &[("Authorization", &bearer), ("Authorization", &bearer)],
        b"",
    )
    .await;
    assert!(twice.error(401).contains("more than once"));
    // Two wrong tokens are free (malformed headers cost no check and do not count); the
    // third locks this source.
    for wrong in ["Bearer nope", "Bearer nope1"] {
        let a = send(
            &ui,
            "GET",
            "/api/v1/pending",
            &[("Authorization", wrong)],
            b"",
        )
        .await;
        assert_eq!(a.status, 401);
    }
    let locked = send(
        &ui,
        "GET",
        "/api/v1/pending",
        &[("Authorization", "Bearer nope2")],
        b"",
    )
    .await;
    assert!(locked.error(429).contains("too many"));
    assert!(
        locked
            .header("retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    // A token verified before costs no check: it still works from the locked source.
    assert_eq!(get(&ui, "/api/v1/pending").await.status, 200);
    ui.stop().await;
}

#[tokio::test]
async fn sessions_read_and_write_with_the_csrf_header() {
    let fx = Fixture::new("api_sessions").await;
    fx.seed().await;
    let (ui, _tokens) = serve(fx.store.clone()).await;
    let (session, csrf) = login(&ui).await;
    let read = send(&ui, "GET", "/api/v1/pending", &[("Cookie", &session)], b"").await;
    assert_eq!(read.status, 200, "{}", read.body);
    let before = fx.db.snapshot().await;
    let body = approve_perl().to_string();
    for (token, want) in [(None, 403), (Some("wrong"), 403), (Some(&csrf[..10]), 403)] {
        let mut headers = vec![
            ("Cookie", session.as_str()),
            ("Content-Type", "application/json"),
        ];
        if let Some(t) = token {
            headers.push(("X-CSRF-Token", t));
        }
        let a = send(&ui, "POST", "/api/v1/approvals", &headers, body.as_bytes()).await;
        assert!(a.error(want).contains("X-CSRF-Token"));
    }
    assert_eq!(
        fx.db.snapshot().await,
        before,
        "a refused write changed the database"
    );
    let ok = send(
        &ui,
        "POST",
        "/api/v1/approvals",
        &[
            ("Cookie", &session),
            ("Content-Type", "application/json"),
            ("X-CSRF-Token", &csrf),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["pending_rows_approved"], 2);
    // Revoke by the session, approve by the token: both audited under their names.
    let id = get(&ui, "/api/v1/approvals").await.json()["items"][0]["id"]
        .as_u64()
        .unwrap();
    let no_csrf = send(
        &ui,
        "DELETE",
        &format!("/api/v1/approvals/{id}"),
        &[("Cookie", &session)],
        b"",
    )
    .await;
    no_csrf.error(403);
    let revoked = send(
        &ui,
        "DELETE",
        &format!("/api/v1/approvals/{id}"),
        &[("Cookie", &session), ("X-CSRF-Token", &csrf)],
        b"",
    )
    .await;
    assert_eq!(revoked.json(), json!({"revoked": id}));
    let by_token = post(&ui, "/api/v1/approvals", &approve_perl()).await;
    assert_eq!(by_token.status, 200, "{}", by_token.body);
    let audit = get(&ui, "/api/v1/audit").await.json();
    let entries: Vec<(String, String)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["user"].as_str().unwrap().into(),
                e["action"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("token:ci".to_owned(), "approve".to_owned()),
            ("admin".into(), "revoke".into()),
            ("admin".into(), "approve".into()),
        ]
    );
    // The revoked row was written again by the token; the other stayed the user's.
    let mut approved_by: Vec<_> = fx
        .approval_rows()
        .await
        .into_iter()
        .map(|r| r[5].clone().unwrap())
        .collect();
    approved_by.sort();
    assert_eq!(approved_by, ["admin", "token:ci"]);
    ui.stop().await;
}

#[tokio::test]
async fn bad_requests_are_json_errors_and_change_nothing() {
    let fx = Fixture::new("api_errors").await;
    fx.seed().await;
    let (ui, _tokens) = serve(fx.store.clone()).await;
    let before = fx.db.snapshot().await;
    let bearer = format!("Bearer {TOKEN}");
    let auth = ("Authorization", bearer.as_str());
    let json_type = ("Content-Type", "application/json");
    let task = |package: serde_json::Value| json!({"tasks": [{"package": package, "action": "update", "to_version": "1"}]});
    let bodies: Vec<(serde_json::Value, &str)> = vec![
        (json!({"tasks": []}), "tasks is empty"),
        (json!({}), "tasks is missing"),
        (json!([]), "body must be an object"),
        (json!({"tasks": [], "extra": 1}), "unknown field \"extra\""),
        (task(json!("a\u{1}b")), "tasks[0].package"),
        (task(json!("a\u{202e}b")), "tasks[0].package"),
        (task(json!("x".repeat(192))), "tasks[0].package"),
        (task(json!(5)), "tasks[0].package must be a string"),
        (
            json!({"tasks": [{"package": "p", "action": "upgrade", "to_version": "1"}]}),
            "tasks[0].action",
        ),
        (
            json!({"tasks": [{"package": "p", "action": "update"}]}),
            "tasks[0].to_version is missing",
        ),
        (
            json!({"tasks": [{"package": "p", "action": "update", "to_version": null}]}),
            "needs a target version",
        ),
        (
            json!({"tasks": [{"package": "p", "action": "remove", "to_version": "1"}]}),
            "must be null for remove",
        ),
        (
            json!({"tasks": [{"package": "p", "action": "install", "to_version": "1", "from_version": "0"}]}),
            "from_version",
        ),
        (
            json!({"tasks": [{"package": "p", "action": "update", "to_version": "1", "x": 1}]}),
            "tasks[0]: unknown field",
        ),
        (
            json!({"tasks": vec![json!({"package": "p", "action": "update", "to_version": "1"}); 1001]}),
            "more than 1000",
        ),
        (
            json!({"tasks": [{"package": "perl", "action": "update", "to_version": "5.2"}], "agents": []}),
            "agents is empty",
        ),
        (
            json!({"tasks": [{"package": "perl", "action": "update", "to_version": "5.2"}], "agents": ["web-1", 7]}),
            "agents[1] must be a string",
        ),
        (
            json!({"tasks": [{"package": "perl", "action": "update", "to_version": "5.2"}], "agents": ["web-1", "<script>nobody</script>"]}),
            "unknown agent <script>nobody</script>",
        ),
    ];
    for (body, want) in bodies {
        let a = send(
            &ui,
            "POST",
            "/api/v1/approvals",
            &[auth, json_type],
            body.to_string().as_bytes(),
        )
        .await;
        let e = a.error(400);
        assert!(e.contains(want), "{body}: {e}");
    }
    let raw_cases: Vec<RawCase<'_>> = vec![
        (
            vec![auth, json_type],
            b"{not json".to_vec(),
            400,
            "not valid JSON",
        ),
        (
            vec![auth, ("Content-Type", "text/plain")],
            b"{}".to_vec(),
            415,
            "application/json",
        ),
        (vec![auth], b"{}".to_vec(), 415, "application/json"),
        (
            vec![auth, json_type],
            vec![b' '; 70 * 1024],
            413,
            "larger than",
        ),
    ];
    for (headers, body, status, want) in raw_cases {
        let a = send(&ui, "POST", "/api/v1/approvals", &headers, &body).await;
        assert!(a.error(status).contains(want), "{}", a.body);
    }
    for (method, path, status, want) in [
        ("GET", "/api/v1/pending?page=0", 400, "page"),
        ("GET", "/api/v1/pending?per_page=501", 400, "per_page"),
        ("GET", "/api/v1/pending?per_page=x", 400, "per_page"),
        ("GET", "/api/v1/pending?security=1", 400, "security"),
        ("GET", "/api/v1/pending?action=upgrade", 400, "action"),
        ("GET", "/api/v1/pending?package=%01", 400, "package"),
        (
            "GET",
            "/api/v1/pending?bogus=1",
            400,
            "unknown query parameter \"bogus\"",
        ),
        (
            "GET",
            "/api/v1/pending?page=1&page=2",
            400,
            "more than once",
        ),
        ("GET", "/api/v1/pending?%zz", 400, "query"),
        ("GET", "/api/v1/agents?offline=yes", 400, "offline"),
        (
            "GET",
            "/api/v1/agents/nobody",
            404,
            "no agent named \"nobody\"",
        ),
        ("GET", "/api/v1/agents/%ff", 404, ""),
        (
            "DELETE",
            "/api/v1/approvals/999999",
            404,
            "no approval 999999",
        ),
        (
            "DELETE",
            "/api/v1/approvals/18446744073709551615",
            404,
            "no approval",
        ),
        ("DELETE", "/api/v1/approvals/x", 400, "id"),
        ("GET", "/api/v1/nope", 404, "no such API path"),
        ("GET", "/api/v2/pending", 404, "no such API path"),
        ("GET", "/api/", 404, "no such API path"),
        ("PUT", "/api/v1/pending", 405, "method"),
        ("DELETE", "/api/v1/approvals", 405, "method"),
        ("POST", "/api/v1/audit", 405, "method"),
    ] {
        let a = send(&ui, method, path, &[auth], b"").await;
        let e = a.error(status);
        assert!(e.contains(want), "{method} {path}: {e}");
    }
    assert_eq!(
        fx.db.snapshot().await,
        before,
        "a refused request changed the database"
    );
    // The pages keep their HTML errors.
    let page = send(&ui, "GET", "/nope", &[], b"").await;
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    ui.stop().await;
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let fx = Fixture::new("api_routes").await;
    fx.seed().await;
    let (ui, _tokens) = serve(fx.store.clone()).await;
    for (method, path) in masif_ui::API_ROUTES {
        let path = path
            .replace("{id}", "999999")
            .replace("{name}", "web-1")
            .replace("{tag}", "web");
        let a = match (*method, path.as_str()) {
            ("post", "/api/v1/rollouts") => {
                let body = json!({"tasks": approve_perl()["tasks"], "rings": ["web"]});
                post(&ui, &path, &body).await
            }
            ("post", p) if p.ends_with("/promote") => post(&ui, &path, &json!({})).await,
            ("post", _) => post(&ui, &path, &approve_perl()).await,
            ("put", _) => {
                let body = json!({"max_in_flight": 2, "windows": []});
                send(
                    &ui,
                    "PUT",
                    &path,
                    &[
                        ("Authorization", &format!("Bearer {TOKEN}")),
                        ("Content-Type", "application/json"),
                    ],
                    body.to_string().as_bytes(),
                )
                .await
            }
            ("delete", _) => delete(&ui, &path).await,
            _ => get(&ui, &path).await,
        };
        // The seeded agents carry no tag: a roll-out has no first ring to approve.
        let expected = ["no approval", "no roll-out", "no agent carries tag web"];
        assert!(
            a.status == 200 || expected.iter().any(|e| a.body.contains(e)),
            "{method} {path}: {} {}",
            a.status,
            a.body
        );
    }
    let doc = send(&ui, "GET", "/api/v1/openapi.json", &[], b"").await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.json()["openapi"], "3.1.0");
    ui.stop().await;
}
