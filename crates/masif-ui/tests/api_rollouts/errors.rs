//! Bad input to the roll-out control endpoints: malformed, oversized and hostile bodies, paths
//! and parameters are refused naming the field (404 for unknown roll-outs, 409 never for bad
//! input), a session write needs its CSRF header, and nothing is written.

use serde_json::{json, Value};

use super::common::api::{get, login, post, send, serve, TOKEN};
use super::common::{Fixture, USER};
use super::{perl_task, tagged_scene, weekly};

#[tokio::test]
async fn bad_input_names_the_field_and_writes_nothing() {
    let fx = Fixture::new("api_rollout_errors").await;
    tagged_scene(&*fx.store).await;
    let (ui, _tokens) = serve(fx.store.clone()).await;
    let created = post(
        &ui,
        "/api/v1/rollouts",
        &json!({"tasks": [perl_task()], "rings": ["canary", "web"]}),
    )
    .await;
    let id = created.json()["id"].as_u64().unwrap();
    let before = fx.db.snapshot().await;
    let tag = |body: Value| ("PUT", "/api/v1/tags/web".to_owned(), body);
    let rollout = |body: Value| ("POST", "/api/v1/rollouts".to_owned(), body);
    let approve = |body: Value| ("POST", "/api/v1/approvals".to_owned(), body);
    let window = |w: Value| json!({"max_in_flight": null, "windows": [w]});
    let cases: Vec<((&str, String, Value), u16, &str)> = vec![
        (
            tag(window(weekly("Mars/Base"))),
            400,
            "windows[0].time_zone: unknown time zone \"Mars/Base\"",
        ),
        (
            tag(window(weekly(&"Europe/".repeat(2000)))),
            400,
            "windows[0].time_zone: unknown time zone",
        ),
        (
            tag(window(
                json!({"days": ["mon", "fri2"], "start": "01:00", "end": "02:00", "time_zone": "UTC"}),
            )),
            400,
            "windows[0].days[1]: \"fri2\" is not a day",
        ),
        (
            tag(window(
                json!({"days": ["mon"], "start": "03:00", "end": "02:00", "time_zone": "UTC"}),
            )),
            400,
            "windows[0].end: must be after start",
        ),
        (
            tag(window(
                json!({"from": "2030-01-02T00:00:00Z", "to": "2030-01-01T00:00:00Z"}),
            )),
            400,
            "windows[0].to: must be after from",
        ),
        (
            tag(window(
                json!({"from": "<script>", "to": "2030-01-01T00:00:00Z"}),
            )),
            400,
            "windows[0].from",
        ),
        (
            tag(json!({"max_in_flight": null, "windows": vec![weekly("UTC"); 51]})),
            400,
            "more than 50",
        ),
        (
            tag(json!({"max_in_flight": 0, "windows": []})),
            400,
            "max_in_flight must be",
        ),
        (
            tag(json!({"max_in_flight": 100_001, "windows": []})),
            400,
            "max_in_flight must be",
        ),
        (tag(json!({"windows": []})), 400, "max_in_flight is missing"),
        (tag(json!({"max_in_flight": 1})), 400, "windows is missing"),
        (tag(json!([])), 400, "body must be an object"),
        (
            (
                "PUT",
                "/api/v1/tags/%3Cscript%3E".into(),
                json!({"max_in_flight": 1, "windows": []}),
            ),
            400,
            "tag: must be",
        ),
        (
            (
                "PUT",
                format!("/api/v1/tags/{}", "a".repeat(65)),
                json!({"max_in_flight": 1, "windows": []}),
            ),
            400,
            "tag: must be",
        ),
        (
            rollout(json!({"tasks": [perl_task()], "rings": ["nobody"]})),
            400,
            "no agent carries tag nobody",
        ),
        (
            rollout(json!({"tasks": [perl_task()], "rings": ["web", "web"]})),
            400,
            "rings[1]: repeats",
        ),
        (
            rollout(json!({"tasks": [perl_task()], "rings": ["web", "<b>"]})),
            400,
            "rings[1]: must be",
        ),
        (
            rollout(json!({"tasks": [perl_task()], "rings": vec!["a"; 11]})),
            400,
            "rings has more than 10",
        ),
        (
            rollout(json!({"tasks": [], "rings": ["web"]})),
            400,
            "tasks is empty",
        ),
        (
            rollout(json!({"tasks": vec![perl_task(); 1001], "rings": ["web"]})),
            400,
            "more than 1000",
        ),
        (
            rollout(
                json!({"tasks": [{"package": "a\u{202e}b", "action": "update", "to_version": "1"}], "rings": ["web"]}),
            ),
            400,
            "tasks[0].package",
        ),
        (
            rollout(json!({"tasks": [perl_task()], "rings": ["web"], "soak_seconds": 2_592_001})),
            400,
            "soak_seconds must be",
        ),
        (
            rollout(json!({"tasks": [perl_task()], "rings": ["web"], "max_failure_percent": 101})),
            400,
            "max_failure_percent must be",
        ),
        (
            rollout(json!({"tasks": [perl_task()], "rings": ["web"], "state": "completed"})),
            400,
            "unknown field \"state\"",
        ),
        (
            approve(json!({"tasks": [perl_task()], "tag": "web", "agents": ["web-1"]})),
            400,
            "exclude each other",
        ),
        (
            approve(json!({"tasks": [perl_task()], "tag": "nobody"})),
            400,
            "no agent carries tag nobody; nothing was approved",
        ),
        (
            approve(json!({"tasks": [perl_task()], "tag": "we b"})),
            400,
            "tag: must be",
        ),
        (
            approve(json!({"tasks": [perl_task()], "tag": 7})),
            400,
            "tag must be a string",
        ),
        (
            (
                "POST",
                format!("/api/v1/rollouts/{id}/promote"),
                json!({"force": "yes"}),
            ),
            400,
            "force must be true or false",
        ),
        (
            (
                "POST",
                format!("/api/v1/rollouts/{id}/promote"),
                json!({"forse": true}),
            ),
            400,
            "unknown field",
        ),
        (
            ("POST", "/api/v1/rollouts/999999/promote".into(), json!({})),
            404,
            "no roll-out 999999",
        ),
        (
            (
                "POST",
                "/api/v1/rollouts/18446744073709551615/promote".into(),
                json!({}),
            ),
            404,
            "no roll-out",
        ),
        (
            ("POST", "/api/v1/rollouts/x/promote".into(), json!({})),
            400,
            "id must be",
        ),
    ];
    let bearer = format!("Bearer {TOKEN}");
    for ((method, path, body), status, want) in cases {
        let headers = [
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
        ];
        let a = send(&ui, method, &path, &headers, body.to_string().as_bytes()).await;
        let e = a.error(status);
        assert!(e.contains(want), "{method} {path} {body}: {e}");
    }
    for (method, path, status, want) in [
        (
            "GET",
            "/api/v1/rollouts/999999".to_owned(),
            404,
            "no roll-out 999999",
        ),
        ("GET", "/api/v1/rollouts/-1".into(), 400, "id must be"),
        ("GET", "/api/v1/rollouts?per_page=0".into(), 400, "per_page"),
        (
            "GET",
            "/api/v1/tags?tag=web".into(),
            400,
            "unknown query parameter",
        ),
        (
            "GET",
            "/api/v1/agents?tag=%3Cscript%3E".into(),
            400,
            "tag: must be",
        ),
        (
            "GET",
            format!("/api/v1/pending?tag={}", "t".repeat(65)),
            400,
            "tag: must be",
        ),
        ("DELETE", "/api/v1/tags/web".into(), 405, "method"),
        (
            "GET",
            "/api/v1/agents?name=%0C%C2%85web".into(),
            400,
            "control characters",
        ),
        (
            "GET",
            format!("/api/v1/rollouts/{id}/promote"),
            405,
            "method",
        ),
    ] {
        let a = send(&ui, method, &path, &[("Authorization", &bearer)], b"").await;
        assert!(
            a.error(status).contains(want),
            "{method} {path}: {}",
            a.body
        );
    }
    // Oversized and non-JSON bodies, and a session without its CSRF header.
    let big = send(
        &ui,
        "PUT",
        "/api/v1/tags/web",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        &vec![b' '; 70 * 1024],
    )
    .await;
    assert!(big.error(413).contains("larger than"));
    let text = send(
        &ui,
        "POST",
        "/api/v1/rollouts",
        &[("Authorization", &bearer), ("Content-Type", "text/plain")],
        b"{}",
    )
    .await;
    text.error(415);
    let (session, csrf) = login(&ui).await;
    let body = json!({"max_in_flight": 1, "windows": []}).to_string();
    let no_csrf = send(
        &ui,
        "PUT",
        "/api/v1/tags/web",
        &[("Cookie", &session), ("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await;
    assert!(no_csrf.error(403).contains("X-CSRF-Token"));
    assert_eq!(
        fx.db.snapshot().await,
        before,
        "a refused request changed the database"
    );
    let with_csrf = send(
        &ui,
        "PUT",
        "/api/v1/tags/web",
        &[
            ("Cookie", &session),
            ("Content-Type", "application/json"),
            ("X-CSRF-Token", &csrf),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(with_csrf.json()["max_in_flight"], 1, "{}", with_csrf.body);
    assert_eq!(
        get(&ui, "/api/v1/audit").await.json()["items"][0]["user"],
        USER
    );
    ui.stop().await;
}
