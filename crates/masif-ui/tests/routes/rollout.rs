//! The pages of roll-out control: the Tags page with its edit forms, tags and next windows
//! on the Agents pages, the tag filter and tag scope of the pending page, starting, listing
//! and promoting roll-outs (a halted one only with force).

use masif_proto::v2::Outcome;
use warp::http::StatusCode;

use super::common::in_process::*;
use super::common::*;

#[tokio::test]
async fn tags_page_sets_windows_seen_on_the_agents_pages() {
    let ui = ui("ui_tags", settings()).await;
    ui.fx.seed_tags().await;
    let (session, csrf) = ui.login().await;
    let r = ui.get("/tags", &session).await;
    assert_eq!(r.status, StatusCode::OK);
    for t in ["canary", "db", "web"] {
        assert!(r.body.contains(&format!("href=\"/agents?tag={t}\"")), "{t}");
    }
    assert!(r
        .body
        .contains("<a href=\"/tags\" aria-current=\"page\">Tags</a>"));

    let before = ui.fx.db.snapshot().await;
    let form = |tag: &str, max: &str, windows: &str| {
        format!(
            "csrf={csrf}&tag={}&max_in_flight={}&windows={}",
            enc(tag),
            enc(max),
            enc(windows)
        )
    };
    let weekly = "mon,wed 22:00-24:00 Europe/Berlin";
    let once = "2099-01-01T00:00:00Z 2099-01-01T01:00:00Z";
    let r = ui
        .post(
            "/tags",
            &session,
            &form("web", "2", &format!("{weekly}\nmon 22:00-23:00 Mars/Base")),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body
            .contains("window 2: unknown time zone &quot;Mars/Base&quot;"),
        "{}",
        r.body
    );
    // The form comes back with what was entered.
    assert!(
        r.body.contains("22:00-23:00 Mars/Base</textarea>"),
        "{}",
        r.body
    );
    let r = ui
        .post(
            "/tags",
            &session,
            &form("web", "2", &format!("{weekly}\n{once}")),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/tags?saved=web");
    assert_ne!(ui.fx.db.snapshot().await, before);
    let r = ui.get("/tags?saved=web", &session).await;
    assert!(r.body.contains("Saved the settings of tag web."));
    assert!(
        r.body
            .contains("<li>Mon, Wed 22:00–24:00 Europe/Berlin</li>"),
        "{}",
        r.body
    );
    assert!(r
        .body
        .contains("<li>once 2099-01-01 00:00 – 01:00 UTC</li>"));
    assert!(r.body.contains(&format!("{weekly}\n{once}</textarea>")));
    // A tag no agent carries yet.
    let r = ui.post("/tags", &session, &form("later", "1", once)).await;
    assert_eq!(r.location(), "/tags?saved=later");
    // Only the one-off window for web now, so the next window is certain.
    ui.post("/tags", &session, &form("web", "", once)).await;
    let r = ui.get("/tags", &session).await;
    assert!(r.body.contains("id=\"tag-later\""));
    assert!(r.body.contains("next: 2099-01-01 00:00 UTC"));

    let r = ui.get("/agents", &session).await;
    assert!(r.body.contains("<a class=\"tag\" href=\"/agents?tag=canary\">canary</a> <a class=\"tag\" href=\"/agents?tag=web\">web</a>"), "{}", r.body);
    assert_eq!(r.body.matches("next: 2099-01-01 00:00 UTC").count(), 2);
    let r = ui.get("/agents?tag=web", &session).await;
    assert!(r.body.contains("web-2") && !r.body.contains("db-1"));
    assert!(r.body.contains("Agents tagged web by name"));
    let r = ui.get("/agents?tag=nobody", &session).await;
    assert!(r.body.contains("No agent carries the tag nobody."));
    let r = ui.get("/agent?name=web-1", &session).await;
    assert!(r.body.contains("next: 2099-01-01 00:00 UTC"));
    assert!(r.body.contains("href=\"/agents?tag=canary\""));
    let r = ui.get("/agent?name=db-1", &session).await;
    assert!(r.body.contains("any time (no tag of it has windows)"));
}

#[tokio::test]
async fn pending_filters_and_approves_by_tag() {
    let ui = ui("ui_pending_tag", settings()).await;
    ui.fx.seed_tags().await;
    let (session, csrf) = ui.login().await;
    let r = ui.get("/?tag=db", &session).await;
    assert!(r.body.contains(">newpkg<") && !r.body.contains(">libc6<"));
    assert!(r.body.contains("name=\"approve_tag\" value=\"db\""));
    let perl = enc(&key_value("perl", "update", Some("5.2")));
    let before = ui.fx.db.snapshot().await;
    let approve = |tag: &str| format!("csrf={csrf}&do=approve-tag&approve_tag={tag}&key={perl}");
    let r = ui.post("/approve", &session, &approve("nobody")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r
        .body
        .contains("No agent carries the tag nobody: nothing was approved."));
    let r = ui.post("/approve", &session, &approve("")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(ui.fx.db.snapshot().await, before);
    let r = ui.post("/approve", &session, &approve("web")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(
        r.location().ends_with("&approved_tag=web"),
        "{}",
        r.location()
    );
    let r = ui.get(r.location(), &session).await;
    assert!(r.body.contains("for the agents tagged web"), "{}", r.body);
    let approved = ui.fx.approved().await;
    assert!(
        approved.contains(&"web-1 update perl 5.2".to_owned()),
        "{approved:?}"
    );
    assert!(
        approved.contains(&"web-2 update perl 5.2".to_owned()),
        "{approved:?}"
    );
    assert!(!approved
        .iter()
        .any(|a| a.starts_with("db-1") || a.starts_with('*')));
}

#[tokio::test]
async fn rollouts_start_from_the_selection_and_promote() {
    let ui = ui("ui_rollouts", settings()).await;
    ui.fx.seed_tags().await;
    let (session, csrf) = ui.login().await;
    let perl = enc(&key_value("perl", "update", Some("5.2")));
    let r = ui
        .post(
            "/approve",
            &session,
            &format!("csrf={csrf}&do=rollout&key={perl}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("name=\"rings\"") && r.body.contains("name=\"key\""));

    let before = ui.fx.db.snapshot().await;
    let start = |rings: &str, soak: &str, percent: &str| {
        format!(
            "csrf={csrf}&key={perl}&rings={}&soak_seconds={soak}&max_failure_percent={percent}",
            enc(rings)
        )
    };
    for (body, error) in [
        (start("", "", "20"), "rings: enter 1 to 10 tags"),
        (
            start("canary, <b>", "", "20"),
            "rings: &quot;&lt;b&gt;&quot;: must be",
        ),
        (start("canary", "x", "20"), "soak seconds:"),
        (start("canary", "", "101"), "max failure percent:"),
        (start("nobody, web", "", "20"), "Nothing was started:"),
    ] {
        let r = ui.post("/rollouts", &session, &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(r.body.contains(error), "{body}: {}", r.body);
        assert!(!r.body.contains("<b>"));
    }
    assert_eq!(ui.fx.db.snapshot().await, before);

    let r = ui
        .post("/rollouts", &session, &start("canary, web", "", "20"))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = r.location().to_owned();
    assert!(page.ends_with("?done=1"), "{page}");
    let r = ui.get(&page, &session).await;
    assert!(r.body.contains("canary (1 of 2)"), "{}", r.body);
    assert!(r.body.contains("Promote to the next ring"));
    assert!(r.body.contains("by hand only"));
    let approved = ui.fx.approved().await;
    assert!(
        approved.contains(&"web-1 update perl 5.2".to_owned()),
        "{approved:?}"
    );
    assert!(
        !approved.iter().any(|a| a.starts_with("web-2")),
        "{approved:?}"
    );
    let list = ui.get("/rollouts", &session).await;
    assert!(list
        .body
        .contains("<a class=\"tag\" href=\"/agents?tag=canary\">canary</a> (1 of 2)"));

    // web-1 fails: the roll-out halts, shows why and promotes only with force.
    let now = unix_now();
    ui.fx
        .record_runs(
            "web-1",
            &[run(
                "r1",
                update("perl", "5.1", "5.2"),
                Outcome::Failed,
                now,
            )],
        )
        .await;
    ui.fx.store.advance_rollouts(now + 1).await.unwrap();
    let r = ui.get(page.trim_end_matches("?done=1"), &session).await;
    assert!(r.body.contains("<strong>Halted:</strong>"), "{}", r.body);
    assert!(r.body.contains("Promote anyway"));
    let promote = format!("{}/promote", page.trim_end_matches("?done=1"));
    let r = ui.post(&promote, &session, "force=1").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = ui.post(&promote, &session, &format!("csrf={csrf}")).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("Not promoted: halted"), "{}", r.body);
    let r = ui
        .post(&promote, &session, &format!("csrf={csrf}&force=1"))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = ui.get(r.location(), &session).await;
    assert!(r.body.contains("web (2 of 2)"), "{}", r.body);
    assert!(r.body.contains("Promoted: the next ring is approved."));
    assert!(!r.body.contains("Promote to the next ring"));
    let approved = ui.fx.approved().await;
    assert!(
        approved.contains(&"web-2 update perl 5.2".to_owned()),
        "{approved:?}"
    );
    // Nothing left to promote.
    let r = ui.post(&promote, &session, &format!("csrf={csrf}")).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        ui.get("/rollouts/999", &session).await.status,
        StatusCode::NOT_FOUND
    );
}
