//! Route tests of the UI with `warp::test` against a real MariaDB seeded through the real
//! store: authentication, CSRF, every page and form, hostile data in pages; and one HTTPS round
//! trip through the real server. Malformed requests are in `untrusted_input.rs`.

mod common;
#[path = "routes/rollout.rs"]
mod rollout;

use std::sync::Arc;

use common::in_process::*;
use common::*;
use warp::http::StatusCode;

#[tokio::test]
async fn login_is_required_and_cookies_are_strict() {
    let ui = ui("ui_login", settings()).await;
    for path in [
        "/",
        "/agents",
        "/agent?name=web-1",
        "/approvals",
        "/audit",
        "/reset",
    ] {
        let r = ui.get(path, "").await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(r.location(), "/login", "{path}");
    }
    // Static files need no login.
    let css = ui.get("/static/style.css", "").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    assert_eq!(
        ui.get("/static/nope.css", "").await.status,
        StatusCode::NOT_FOUND
    );
    // A forged session cookie is nobody.
    let r = ui
        .get("/", &format!("masif_session={}", "ab".repeat(32)))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);

    let page = ui.get("/login", "").await;
    let nonce_cookie = &page.set_cookies()[0];
    assert!(nonce_cookie.contains("HttpOnly") && nonce_cookie.contains("SameSite=Strict"));
    let nonce = cookie_pair(nonce_cookie);
    let csrf = csrf_of(&page.body);
    // Wrong password, unknown user: 401, the same message, no session.
    for (user, pw) in [(USER, "wrong"), ("nobody", PASSWORD)] {
        let r = ui
            .post(
                "/login",
                &nonce,
                &format!("csrf={csrf}&username={user}&password={}", enc(pw)),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.body.contains("Wrong user name or password."));
        assert!(!r
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("masif_session=")));
    }
    // No CSRF token, or one from another login form: refused.
    let r = ui
        .post(
            "/login",
            &nonce,
            &format!("username={USER}&password={}", enc(PASSWORD)),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = ui
        .post(
            "/login",
            &format!("masif_login={}", "cd".repeat(32)),
            &format!("csrf={csrf}&username={USER}&password={}", enc(PASSWORD)),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Empty fields.
    let r = ui
        .post(
            "/login",
            &nonce,
            &format!("csrf={csrf}&username=&password="),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let (session, csrf) = ui.login().await;
    let r = ui.get("/", &session).await;
    assert!(r.body.contains(USER));
    // Plain HTTP: no Secure flag and no HSTS (checked under TLS below).
    let page = ui.get("/login", "").await;
    assert!(!page.set_cookies()[0].contains("Secure"));
    assert!(!page.headers.contains_key("strict-transport-security"));

    // Logout needs the token, then ends the session.
    let r = ui.post("/logout", &session, "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = ui.post("/logout", &session, &format!("csrf={csrf}")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.set_cookies()[0].contains("Max-Age=0"));
    assert_eq!(ui.get("/", &session).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn pending_page_groups_counts_and_marks_installs_and_removals() {
    let ui = ui("ui_pending", settings()).await;
    let (session, _) = ui.login().await;
    let r = ui.get("/", &session).await;
    assert_eq!(r.status, StatusCode::OK);
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(r.headers["x-frame-options"], "DENY");
    let body = &r.body;
    // Ordered by agent count, then name: perl (3), libc6 (2), then 1-agent packages by name.
    let pos = |s: &str| body.find(s).unwrap_or_else(|| panic!("{s} missing"));
    assert!(pos(">perl<") < pos(">libc6<"));
    assert!(pos(">libc6<") < pos("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(pos("&lt;script&gt;") < pos(">newpkg<"));
    assert!(pos(">newpkg<") < pos(">oldpkg<"));
    assert!(body.contains("3 agent(s)"));
    assert!(body.contains("badge-install"));
    assert!(body.contains("badge-removal"));
    // Hostile data is text.
    assert!(!body.contains("<script>alert(1)</script>"));
    // Filters.
    let r = ui.get("/?package=PKG", &session).await;
    assert!(r.body.contains(">newpkg<") && !r.body.contains(">perl<"));
    let r = ui.get("/?agent=web-2", &session).await;
    assert!(r.body.contains(">perl<") && !r.body.contains(">newpkg<"));
    let r = ui.get("/?package=nothing-matches", &session).await;
    assert!(r.body.contains("Nothing is awaiting approval"));
}

#[tokio::test]
async fn approve_for_every_agent_and_csrf_is_enforced() {
    let ui = ui("ui_approve", settings()).await;
    let (session, csrf) = ui.login().await;
    let perl = enc(&key_value("perl", "update", Some("5.2")));
    let libc = enc(&key_value("libc6", "update", Some("2.36-2")));
    let before = ui.fx.db.snapshot().await;
    // Missing, empty and wrong tokens: 403, nothing written.
    for token in ["", "csrf=&", "csrf=0123&"] {
        let r = ui
            .post(
                "/approve",
                &session,
                &format!("{token}do=approve&key={perl}"),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{token}");
    }
    assert_eq!(ui.fx.db.snapshot().await, before);

    let r = ui
        .post(
            "/approve",
            &session,
            &format!("csrf={csrf}&do=approve&key={perl}&key={libc}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // Each update brings its configure step (`Admin::approve`).
    assert_eq!(r.location(), "/?approved=4&written=4");
    assert_eq!(ui.fx.approval_rows().await, perl_and_libc_approvals());
    let page = ui.get("/?approved=4&written=4", &session).await;
    assert!(page.body.contains("Approved 4 pending task(s)"));
    // The audit page shows it.
    let audit = ui.get("/audit", &session).await;
    assert!(audit.body.contains("approve") && audit.body.contains("perl"));
}

#[tokio::test]
async fn select_agents_first_then_approve_for_them() {
    let ui = ui("ui_select", settings()).await;
    let (session, csrf) = ui.login().await;
    let perl52 = enc(&key_value("perl", "update", Some("5.2")));
    let perl53 = enc(&key_value("perl", "update", Some("5.3")));
    let r = ui
        .post(
            "/approve",
            &session,
            &format!("csrf={csrf}&do=select&key={perl52}&key={perl53}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for a in ["web-1", "web-2", "db-1"] {
        assert!(r.body.contains(&format!("value=\"{a}\"")), "{a}");
    }
    assert!(r
        .body
        .contains("3 agent(s) await any of the selected tasks</caption>"));
    assert!(!r.body.contains("Only the first"));
    assert!(
        !r.body.contains("o&#x27;brien"),
        "hostile agent awaits no perl"
    );
    // The second form carries the keys along.
    assert_eq!(r.body.matches("name=\"key\"").count(), 2);
    let r = ui
        .post(
            "/approve",
            &session,
            &format!(
                "csrf={csrf}&do=approve-agents&key={perl52}&key={perl53}&agent=web-1&agent=db-1"
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let rows = ui
        .fx
        .rows(
            "SELECT a.name, t.to_version FROM task t JOIN agent a ON a.id = t.agent \
             WHERE t.approved = 1 ORDER BY 1, 2",
        )
        .await;
    // One row per (agent, key), even where the agent awaited only one of the keys; each
    // update brings its configure step, so 2 agents × (2 updates + 2 configures).
    assert_eq!(rows.len(), 8);
    assert_eq!(
        ui.fx
            .count(
                "SELECT COUNT(*) FROM task t JOIN agent a ON a.id = t.agent \
                 WHERE a.name = 'web-2' AND t.approved = 0"
            )
            .await,
        2
    );
    // No agent ticked, or an unknown one: refused, nothing written.
    let before = ui.fx.db.snapshot().await;
    let r = ui
        .post(
            "/approve",
            &session,
            &format!("csrf={csrf}&do=approve-agents&key={perl52}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = ui
        .post(
            "/approve",
            &session,
            &format!("csrf={csrf}&do=approve-agents&key={perl52}&agent=ghost"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("unknown agent ghost"), "{}", r.body);
    assert_eq!(ui.fx.db.snapshot().await, before);
}

#[tokio::test]
async fn agent_pages_and_approving_for_one_agent() {
    let ui = ui("ui_agents", settings()).await;
    let (session, csrf) = ui.login().await;
    let r = ui.get("/agents", &session).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("href=\"/agent?name=web-1\""));
    // The hostile agent: escaped text, percent-encoded link.
    assert!(
        r.body
            .contains("o&#x27;brien &quot;the&quot; &lt;b&gt;host&lt;/b&gt;"),
        "{}",
        r.body
    );
    assert!(r
        .body
        .contains("/agent?name=o%27brien%20%22the%22%20%3Cb%3Ehost%3C%2Fb%3E"));
    assert!(!r.body.contains("<b>host</b>"));
    let r = ui.get("/agents?name=WEB", &session).await;
    assert!(r.body.contains("web-2") && !r.body.contains("db-1"));

    let r = ui
        .get(&format!("/agent?name={}", enc(HOSTILE_AGENT)), &session)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let r = ui.get("/agent?name=db-1", &session).await;
    assert!(r.body.contains("newpkg") && r.body.contains("badge-removal"));
    let r = ui.get("/agent?name=ghost", &session).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.contains("no agent named ghost"));

    let newpkg = enc(&key_value("newpkg", "install", Some("1.0")));
    let r = ui
        .post(
            "/approve",
            &session,
            &format!("csrf={csrf}&do=approve-agents&agent=db-1&return=agent&key={newpkg}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    // The install and its configure step.
    assert_eq!(r.location(), "/agent?name=db-1&approved=1&written=2");
    let r = ui.get(r.location(), &session).await;
    assert!(r.body.contains("Approved 1 pending task(s) for this agent"));
    assert!(!r.body.contains("newpkg"));
}

#[tokio::test]
async fn approvals_can_be_revoked_and_reset_needs_confirmation() {
    let ui = ui("ui_revoke", settings()).await;
    let (session, csrf) = ui.login().await;
    let perl = enc(&key_value("perl", "update", Some("5.2")));
    ui.post(
        "/approve",
        &session,
        &format!("csrf={csrf}&do=approve&key={perl}"),
    )
    .await;
    let r = ui.get("/approvals", &session).await;
    assert!(r.body.contains("every agent") && r.body.contains(USER));
    let id = ui
        .fx
        .count("SELECT id FROM task WHERE approved = 1 AND action = 'update'")
        .await;
    // An approval row as the original UI could leave it: wildcards everywhere, no who/when.
    ui.fx
        .db
        .execute(
            "INSERT INTO task (agent, package, from_version, to_version, action, approved) \
             VALUES (NULL, NULL, NULL, NULL, NULL, 1)",
        )
        .await;
    let r = ui.get("/approvals", &session).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("any package") && r.body.contains("unknown"));
    ui.fx
        .db
        .execute("DELETE FROM task WHERE approved = 1 AND package IS NULL")
        .await;
    let r = ui.post("/revoke", &session, &format!("id={id}")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = ui
        .post("/revoke", &session, &format!("csrf={csrf}&id=abc"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = ui
        .post("/revoke", &session, &format!("csrf={csrf}&id={id}"))
        .await;
    assert_eq!(r.location(), "/approvals?revoked=1");
    assert_eq!(
        ui.fx
            .count("SELECT COUNT(*) FROM task WHERE approved = 1 AND action = 'update'")
            .await,
        0
    );
    let r = ui
        .post("/revoke", &session, &format!("csrf={csrf}&id={id}"))
        .await;
    assert_eq!(r.location(), "/approvals?revoked=0");

    let r = ui.get("/reset", &session).await;
    assert!(
        r.body.contains("<strong class=\"tasks\">7</strong>"),
        "{}",
        r.body
    );
    let before = ui.fx.db.snapshot().await;
    let r = ui.post("/reset", &session, "confirm=yes").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = ui.post("/reset", &session, &format!("csrf={csrf}")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(ui.fx.db.snapshot().await, before);
    let r = ui
        .post("/reset", &session, &format!("csrf={csrf}&confirm=yes"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body
            .contains("Deleted 7 task(s), 0 package(s) and 0 agent(s)."),
        "{}",
        r.body
    );
    assert_eq!(ui.fx.count("SELECT COUNT(*) FROM agent").await, 4);
    let r = ui
        .post(
            "/reset",
            &session,
            &format!("csrf={csrf}&confirm=yes&packages_and_agents=yes"),
        )
        .await;
    assert!(
        r.body.contains("0 task(s), 5 package(s) and 4 agent(s)."),
        "{}",
        r.body
    );
    let audit = ui.get("/audit", &session).await;
    assert_eq!(audit.body.matches("<td>reset</td>").count(), 2);
    assert_eq!(audit.body.matches("<td>revoke</td>").count(), 1);
}

#[tokio::test]
async fn https_serves_pages_with_secure_cookies_and_hsts() {
    let fx = Fixture::new("ui_tls").await;
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let htpasswd = htpasswd_file();
    let config = format!(
        "listen: \"127.0.0.1:0\"\ndb: {{ url: \"{}\" }}\nauth: {{ htpasswd: {} }}\ntls: {{ cert: {}, key: {} }}\n",
        fx.db.url(),
        htpasswd.path().display(),
        cert_path.display(),
        key_path.display()
    );
    let config = masif_ui::config::parse(std::path::Path::new("ui.yml"), &config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(masif_ui::serve_with_listener(
        config.settings,
        fx.store.clone(),
        listener,
        async {
            stopped.await.ok();
        },
    ));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(b"GET /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.ok();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let cookie = response
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("\r\nstrict-transport-security: max-age=31536000\r\n"),
        "{response}"
    );

    // A plain-HTTP client gets no page.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /login HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf).await;
    assert!(!String::from_utf8_lossy(&buf).contains("Log in"));

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// An approval the store has not written within a second goes on in the background: the
/// browser is sent to its progress page, which reloads itself and, once the approval is done,
/// sends the browser to the result.
#[tokio::test]
async fn a_slow_approval_shows_its_progress_then_its_result() {
    use mysql_async::prelude::Queryable;
    let ui = ui("ui_approving", settings()).await;
    ui.fx.seed().await;
    let (session, csrf) = ui.login().await;
    // Every chunk of an approval bumps the approval generation first: holding its row holds
    // the approval.
    let mut holder = mysql_async::Conn::from_url(ui.fx.db.url()).await.unwrap();
    holder
        .query_drop(
            "INSERT INTO approval_generation (id, generation) VALUES (1, 1) \
             ON DUPLICATE KEY UPDATE generation = generation",
        )
        .await
        .unwrap();
    holder.query_drop("START TRANSACTION").await.unwrap();
    holder
        .query_drop("SELECT generation FROM approval_generation WHERE id = 1 FOR UPDATE")
        .await
        .unwrap();
    let perl = enc(&key_value("perl", "update", Some("5.2")));
    let r = ui
        .post(
            "/approve",
            &session,
            &format!("csrf={csrf}&do=approve&key={perl}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let progress = r.location().to_owned();
    assert!(progress.starts_with("/approving?job="), "{progress}");
    let page = ui.get(&progress, &session).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains("<meta http-equiv=\"refresh\" content=\"1\">")
            && page.body.contains("Approving 1 task(s) for every agent")
            && page
                .body
                .contains("<strong class=\"approved\">0</strong> pending task(s)"),
        "{}",
        page.body
    );
    assert!(
        ui.fx.approval_rows().await.is_empty(),
        "nothing written yet"
    );
    holder.query_drop("ROLLBACK").await.unwrap();
    // The page the browser reloads, until the approval is done.
    let result = loop {
        let page = ui.get(&progress, &session).await;
        if page.status == StatusCode::SEE_OTHER {
            break page.location().to_owned();
        }
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // perl 5.2 on two agents, and its configure step.
    assert_eq!(result, "/?approved=2&written=2");
    assert_eq!(ui.fx.approval_rows().await.len(), 2);
    let unknown = ui.get("/approving?job=999", &session).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.body.contains("No such approval here"));
}
