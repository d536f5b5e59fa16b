//! Host facts in the UI's routes, in-process against a real MariaDB with the facts put in
//! through the store's `report_with_facts` (the master's path): the security badge, filter and
//! count, the held note, what rows need, approving with and without the closure, the reboot
//! mark, filter and count, an agent's facts, and hostile facts shown as text.

mod common;

use common::facts::*;
use common::in_process::*;
use common::*;
use masif_proto::facts::{Facts, Origin, TaskFacts};
use masif_proto::TaskSet;
use warp::http::StatusCode;

/// The UI over the standard scene plus the facts scene.
async fn facts_ui(
    prefix: &str,
) -> Ui<
    impl warp::Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible>
        + Clone
        + 'static,
> {
    let ui = ui(prefix, settings()).await;
    ui.fx.seed_facts().await;
    ui
}

/// The `<tr class="task…">…</tr>` of the pending row whose checkbox value is `key`.
fn row_of<'a>(body: &'a str, key: &str) -> &'a str {
    let value = format!("value=\"{}\"", key.replace('"', "&quot;"));
    let at = body
        .find(&value)
        .unwrap_or_else(|| panic!("{key} missing: {body}"));
    let start = body[..at].rfind("<tr").unwrap();
    let end = at + body[at..].find("</tr>").unwrap();
    &body[start..end]
}

#[tokio::test]
async fn pending_page_shows_security_held_and_needs() {
    let ui = facts_ui("ui_facts_pending").await;
    let (session, _) = ui.login().await;
    let r = ui.get("/", &session).await;
    assert_eq!(r.status, StatusCode::OK);
    let body = &r.body;
    assert!(
        body.contains("1 security update awaiting approval on 2 agents"),
        "{body}"
    );
    // The security row has the badge and its needs, without the configure step approval adds.
    let openssl = row_of(body, &key_value("openssl", "update", Some("3.0.2")));
    assert!(openssl.contains("badge-security"), "{openssl}");
    assert!(
        openssl.contains("needs: install libssl4 1.0</p>"),
        "{openssl}"
    );
    assert!(!openssl.contains("configure libssl4"), "{openssl}");
    let libssl4 = row_of(body, &key_value("libssl4", "install", Some("1.0")));
    assert!(!libssl4.contains("badge-security") && !libssl4.contains("needs:"));
    let perl = row_of(body, &key_value("perl", "update", Some("5.2")));
    assert!(!perl.contains("badge-security"), "{perl}");
    // perl is held on sec-2: its group says so; openssl's does not.
    assert_eq!(body.matches("never runs there").count(), 1, "{body}");
    assert!(
        body.contains("held on 1 agent — never runs there"),
        "{body}"
    );
    // The closure box is there and ticked.
    assert!(body
        .contains("<input type=\"checkbox\" id=\"closure\" name=\"closure\" value=\"1\" checked>"));

    // Security only: openssl's row, nothing else; the box stays ticked.
    let r = ui.get("/?security=1", &session).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains(">openssl<"), "{}", r.body);
    for gone in [">perl<", ">libssl4<", ">libc6<", ">newpkg<"] {
        assert!(!r.body.contains(gone), "{gone}: {}", r.body);
    }
    assert!(r.body.contains("name=\"security\" value=\"1\" checked"));
    // With another filter, and off again.
    let r = ui.get("/?security=1&package=perl", &session).await;
    assert!(r
        .body
        .contains("Nothing is awaiting approval for this filter"));
    let r = ui.get("/?security=0", &session).await;
    assert!(r.body.contains(">perl<"));
    assert!(!r.body.contains("name=\"security\" value=\"1\" checked"));
    assert_eq!(
        ui.get("/?security=2", &session).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn no_security_updates_is_said_and_the_filter_is_kept_across_pages() {
    let ui = ui("ui_facts_paging", settings()).await;
    let (session, _) = ui.login().await;
    let r = ui.get("/", &session).await;
    assert!(r.body.contains("No security updates awaiting approval."));
    assert!(!r.body.contains("security update awaiting"));

    // 51 security updates: two pages of security rows, the filter in the pager's link.
    let tasks: Vec<_> = (0..51)
        .map(|i| update(&format!("sec{i:02}"), "1", "2"))
        .collect();
    let facts = Facts {
        tasks: tasks
            .iter()
            .map(|t| {
                let f = TaskFacts {
                    origin: Some(Origin::new(SECURITY_ORIGIN).unwrap()),
                    needs: TaskSet::default(),
                };
                (t.clone(), f)
            })
            .collect(),
        ..Facts::default()
    };
    ui.fx.report_with_facts("many", tasks, &facts).await;
    let r = ui.get("/?security=1", &session).await;
    assert!(
        r.body
            .contains("51 security updates awaiting approval on 1 agent"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("rel=\"next\" href=\"/?security&#x3D;1&amp;page&#x3D;2\""),
        "{}",
        r.body
    );
    let r = ui.get("/?security=1&page=2", &session).await;
    assert!(r.body.contains("Page 2 of 2 (51 in all)"), "{}", r.body);
    assert!(!r.body.contains(">perl<"));
}

#[tokio::test]
async fn approving_with_the_closure_approves_what_the_rows_need() {
    let ui = facts_ui("ui_facts_closure").await;
    let (session, csrf) = ui.login().await;
    let openssl = enc(&key_value("openssl", "update", Some("3.0.2")));
    let r = ui
        .post(
            "/approve",
            &session,
            &format!("csrf={csrf}&do=approve&closure=1&key={openssl}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        ui.fx.approved().await,
        [
            "* configure libssl4 1.0",
            "* configure openssl 3.0.2",
            "* install libssl4 1.0",
            "* update openssl 3.0.2",
        ]
    );
    assert!(r.location().contains("needed=1"), "{}", r.location());
    let page = ui.get(r.location(), &session).await;
    assert!(
        page.body
            .contains("(with 1 task(s) the selected rows need)"),
        "{}",
        page.body
    );
    assert!(!page.body.contains(">openssl<") && !page.body.contains(">libssl4<"));
    // The audit entry names everything approved.
    let audit = ui.get("/audit", &session).await;
    assert!(
        audit.body.contains("openssl") && audit.body.contains("libssl4"),
        "{}",
        audit.body
    );
}

#[tokio::test]
async fn approving_without_the_closure_approves_only_the_rows() {
    let ui = facts_ui("ui_facts_no_closure").await;
    let (session, csrf) = ui.login().await;
    let openssl = enc(&key_value("openssl", "update", Some("3.0.2")));
    let r = ui
        .post(
            "/approve",
            &session,
            &format!("csrf={csrf}&do=approve&key={openssl}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(!r.location().contains("needed"), "{}", r.location());
    assert_eq!(
        ui.fx.approved().await,
        ["* configure openssl 3.0.2", "* update openssl 3.0.2"]
    );
    let page = ui.get("/", &session).await;
    assert!(page.body.contains(">libssl4<"));
}

#[tokio::test]
async fn selected_agents_get_the_closure_of_their_own_needs() {
    let ui = facts_ui("ui_facts_select").await;
    let (session, csrf) = ui.login().await;
    let openssl = enc(&key_value("openssl", "update", Some("3.0.2")));
    // The choice made on the pending page is the box's state on the agents form.
    let r = ui
        .post(
            "/approve",
            &session,
            &format!("csrf={csrf}&do=select&closure=1&key={openssl}"),
        )
        .await;
    assert!(
        r.body.contains("name=\"closure\" value=\"1\" checked>"),
        "{}",
        r.body
    );
    assert!(r.body.contains("badge-security") || r.body.contains("openssl"));
    let r = ui
        .post(
            "/approve",
            &session,
            &format!("csrf={csrf}&do=select&key={openssl}"),
        )
        .await;
    assert!(
        r.body.contains("name=\"closure\" value=\"1\">"),
        "{}",
        r.body
    );

    let r = ui
        .post(
            "/approve",
            &session,
            &format!("csrf={csrf}&do=approve-agents&agent=sec-1&closure=1&key={openssl}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        ui.fx.approved().await,
        [
            "sec-1 configure libssl4 1.0",
            "sec-1 configure openssl 3.0.2",
            "sec-1 install libssl4 1.0",
            "sec-1 update openssl 3.0.2",
        ]
    );
    // sec-2 still awaits both.
    let r = ui.get("/agent?name=sec-2", &session).await;
    assert!(r.body.contains(">openssl<") && r.body.contains(">libssl4<"));

    // From the agent page (its form has the box, ticked), back to the agent page.
    assert!(r.body.contains("name=\"closure\" value=\"1\" checked>"));
    let r = ui
        .post(
            "/approve",
            &session,
            &format!(
                "csrf={csrf}&do=approve-agents&agent=sec-2&return=agent&closure=1&key={openssl}"
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(
        r.location().starts_with("/agent?name=sec-2&approved="),
        "{}",
        r.location()
    );
    let r = ui.get(r.location(), &session).await;
    assert!(r.body.contains("the selected rows need"), "{}", r.body);
    assert!(!r.body.contains(">libssl4<"), "{}", r.body);
}

#[tokio::test]
async fn agents_page_marks_counts_and_filters_reboots() {
    let ui = facts_ui("ui_facts_reboot").await;
    let (session, _) = ui.login().await;
    let r = ui.get("/agents", &session).await;
    assert!(r.body.contains(">1 reboot required</a>"), "{}", r.body);
    assert_eq!(r.body.matches("badge-reboot").count(), 1, "{}", r.body);
    let sec1 = &r.body[r.body.find("/agent?name=sec-1").unwrap()..];
    assert!(sec1[..sec1.find("</th>").unwrap()].contains("reboot required"));

    let r = ui.get("/agents?state=reboot", &session).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("/agent?name=sec-1"), "{}", r.body);
    for other in ["sec-2", "web-1", "db-1"] {
        assert!(!r.body.contains(&format!("/agent?name={other}")), "{other}");
    }
    assert!(r.body.contains("value=\"reboot\" selected"));
}

#[tokio::test]
async fn agent_page_shows_facts_as_text() {
    let ui = facts_ui("ui_facts_agent").await;
    let (session, _) = ui.login().await;
    let r = ui.get("/agent?name=sec-1", &session).await;
    assert_eq!(r.status, StatusCode::OK);
    let body = &r.body;
    // Hostile facts are text.
    assert!(
        !body.contains(HOSTILE_OS) && !body.contains("<b>"),
        "{body}"
    );
    assert!(
        body.contains("<dd class=\"os\">&lt;script&gt;alert(1)&lt;/script&gt;</dd>"),
        "{body}"
    );
    assert!(
        body.contains(
            "<dd class=\"kernel\">6.1.0-13-amd64 &quot;quoted&quot; &#x27;single&#x27; &lt;b&gt;</dd>"
        ),
        "{body}"
    );
    assert!(body.contains("<dd class=\"agent-version\">2.0.0</dd>"));
    assert!(
        body.contains(
            "reboot required</strong> asked for by <span class=\"name\">linux-image-amd64</span>"
        ),
        "{body}"
    );
    assert!(
        body.contains("<span class=\"name\">grub-pc</span>"),
        "{body}"
    );
    assert!(body.contains("just now") || body.contains("ago"));
    // Per task: origin, badge and needs.
    let openssl = row_of(body, &key_value("openssl", "update", Some("3.0.2")));
    assert!(openssl.contains(SECURITY_ORIGIN) && openssl.contains("badge-security"));
    assert!(
        openssl.contains("needs: install libssl4 1.0</p>"),
        "{openssl}"
    );
    let libssl4 = row_of(body, &key_value("libssl4", "install", Some("1.0")));
    assert!(libssl4.contains(STABLE_ORIGIN) && !libssl4.contains("badge-security"));

    let r = ui.get("/agent?name=sec-2", &session).await;
    assert!(
        r.body.contains("<dd class=\"reboot\">not required</dd>"),
        "{}",
        r.body
    );
    assert!(r.body.contains("<span class=\"name\">perl</span>"));
    // An agent that sent no facts.
    let r = ui.get("/agent?name=web-1", &session).await;
    assert!(
        r.body
            .contains("No facts reported (agent speaks protocol v1)."),
        "{}",
        r.body
    );
    assert!(!r.body.contains("class=\"os\""));
}
