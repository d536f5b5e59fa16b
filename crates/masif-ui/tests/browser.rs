//! End-to-end tests in a real headless Chromium (Debian's `chromium` + `chromium-driver`,
//! driven by fantoccini) against a real `masif-ui` server and MariaDB seeded through the real
//! store: login, the grouped table, approving, selecting agents first, the per-agent page,
//! revoking, resetting, a failed login, a refused form without CSRF token, hostile data, runs
//! and failures, the security-only filter and approving with the closure, a window set on the
//! Tags page seen on the Agents page, a roll-out started and promoted. Screenshots of the
//! pages land in `target/ui-screenshots/`.

mod common;

use common::browser::{screenshot_dir, Scene};
use common::*;
use fantoccini::Locator;
use masif_proto::v2::Outcome;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_see_counts_approve_two_rows_and_hostile_data_is_text() {
    let s = Scene::new("ui_browser_approve").await;
    // A failed login stays on the login page with a message.
    s.login_as(USER, "not the password").await;
    assert_eq!(s.path().await, "/login");
    assert!(s.source().await.contains("Wrong user name or password."));
    s.login_as(USER, PASSWORD).await;
    assert_eq!(s.path().await, "/");

    // The grouped table: package headers with agent counts, most awaited first.
    let headers = s
        .browser
        .find_all(Locator::Css("tr.package"))
        .await
        .unwrap();
    let mut texts = Vec::new();
    for h in headers {
        texts.push(h.text().await.unwrap());
    }
    assert_eq!(texts.len(), 5, "{texts:?}");
    assert!(
        texts[0].starts_with("perl") && texts[0].ends_with("3 agent(s)"),
        "{texts:?}"
    );
    assert!(
        texts[1].starts_with("libc6") && texts[1].ends_with("2 agent(s)"),
        "{texts:?}"
    );
    // The hostile package name is text in the page, not a script element.
    assert!(texts[2].starts_with(HOSTILE_PACKAGE), "{texts:?}");
    let scripts = s.browser.find_all(Locator::Css("script")).await.unwrap();
    assert_eq!(scripts.len(), 1, "only ui.js");
    let alert = s.browser.get_alert_text().await;
    assert!(alert.is_err(), "no alert may open: {alert:?}");
    // Installs and removals are marked.
    let install = s
        .browser
        .find(Locator::Css("tr.risk-install"))
        .await
        .unwrap();
    assert!(install.text().await.unwrap().contains("install"));
    s.browser
        .find(Locator::Css("tr.risk-removal"))
        .await
        .unwrap();

    std::fs::write(
        screenshot_dir().join("pending.png"),
        s.browser.screenshot().await.unwrap(),
    )
    .unwrap();
    s.browser.set_window_size(390, 844).await.unwrap();
    std::fs::write(
        screenshot_dir().join("pending-phone.png"),
        s.browser.screenshot().await.unwrap(),
    )
    .unwrap();
    s.browser.set_window_size(1280, 1000).await.unwrap();

    // "Invert selection" is there with JavaScript and flips every box.
    s.click("button[data-invert]").await;
    let checked: Vec<_> = s
        .browser
        .find_all(Locator::Css("input[name=key]:checked"))
        .await
        .unwrap();
    assert_eq!(checked.len(), 6);
    s.click("button[data-invert]").await;

    // Live counts: another agent reports perl 5.2; the page updates its counts in place and
    // keeps what was ticked (the script's timer is replaced by a direct call here).
    s.tick(&key_value("perl", "update", Some("5.2"))).await;
    s.fx.report("web-3", vec![update("perl", "5.1", "5.2")])
        .await;
    let refreshed = s
        .browser
        .execute("return window.masifRefreshCounts()", vec![])
        .await
        .unwrap();
    assert_eq!(refreshed, serde_json::Value::Bool(true));
    let perl = s.browser.find(Locator::Css("tr.package")).await.unwrap();
    assert!(perl.text().await.unwrap().ends_with("4 agent(s)"));
    let status = s.browser.find(Locator::Css("#live-status")).await.unwrap();
    assert!(status.text().await.unwrap().starts_with("Counts updated"));
    let ticked = s
        .browser
        .find_all(Locator::Css("input[name=key]:checked"))
        .await
        .unwrap();
    assert_eq!(ticked.len(), 1);

    // Tick a second row and approve both for every agent.
    s.tick(&key_value("libc6", "update", Some("2.36-2"))).await;
    s.navigate("button[value=approve]").await;
    assert!(
        s.path().await.starts_with("/?approved=5"),
        "{}",
        s.path().await
    );
    assert!(s.source().await.contains("Approved 5 pending task(s)"));
    // Each update brings its configure step (`Admin::approve`).
    assert_eq!(s.fx.approval_rows().await, perl_and_libc_approvals());
    // libc6 is gone from the table; perl still has the 5.3 row.
    let source = s.source().await;
    assert!(!source.contains(">libc6<"));
    assert!(source.contains("5.3"));
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_agents_first_and_the_per_agent_page() {
    let s = Scene::new("ui_browser_select").await;
    s.login_as(USER, PASSWORD).await;
    s.tick(&key_value("perl", "update", Some("5.2"))).await;
    s.navigate("button[value=select]").await;
    // The agents awaiting perl 5.2, with their pending package counts.
    let rows = s
        .browser
        .find_all(Locator::Css("table tbody tr"))
        .await
        .unwrap();
    let mut texts = Vec::new();
    for r in rows {
        texts.push(r.text().await.unwrap());
    }
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[0].contains("web-1") && texts[0].contains('2'),
        "{texts:?}"
    );
    assert!(texts[1].contains("web-2"), "{texts:?}");
    s.click("input[name=agent][value='web-2']").await;
    s.navigate("button.approve").await;
    assert!(
        s.path().await.starts_with("/?approved=1"),
        "{}",
        s.path().await
    );
    assert_eq!(
        s.fx.rows(
            "SELECT a.name, t.action, t.to_version FROM task t JOIN agent a ON a.id = t.agent \
             WHERE t.approved = 1 ORDER BY t.action"
        )
        .await,
        vec![
            vec![
                Some("web-2".into()),
                Some("update".into()),
                Some("5.2".into())
            ],
            vec![
                Some("web-2".into()),
                Some("configure".into()),
                Some("5.2".into())
            ]
        ]
    );

    // The agents list links to each agent; the hostile name is text.
    s.goto("/agents").await;
    let link = s
        .browser
        .find(Locator::LinkText(HOSTILE_AGENT))
        .await
        .expect("hostile agent name shown as text");
    drop(link);
    s.navigate(&format!(
        "a[href='/agent?name={}']",
        "o%27brien%20%22the%22%20%3Cb%3Ehost%3C%2Fb%3E"
    ))
    .await;
    let h1 = s.browser.find(Locator::Css("h1")).await.unwrap();
    assert_eq!(h1.text().await.unwrap(), format!("Agent {HOSTILE_AGENT}"));
    let alert = s.browser.get_alert_text().await;
    assert!(alert.is_err(), "no alert may open: {alert:?}");

    // Per-agent page: approve one task for this agent only.
    s.goto("/agents").await;
    s.navigate("a[href='/agent?name=db-1']").await;
    let source = s.source().await;
    assert!(source.contains("newpkg") && source.contains("oldpkg"));
    s.tick(&key_value("oldpkg", "remove", None)).await;
    s.navigate("button.approve").await;
    assert!(
        s.path().await.starts_with("/agent?name=db-1&approved=1"),
        "{}",
        s.path().await
    );
    assert!(!s.source().await.contains("oldpkg"));
    assert_eq!(
        s.fx.count(
            "SELECT COUNT(*) FROM task t JOIN agent a ON a.id = t.agent \
             WHERE a.name = 'db-1' AND t.approved = 1 AND t.action = 'remove'"
        )
        .await,
        1
    );
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_reset_and_a_form_without_csrf_token_is_refused() {
    let s = Scene::new("ui_browser_revoke").await;
    s.login_as(USER, PASSWORD).await;
    // A removal: one approval row (an install would bring its configure step).
    s.tick(&key_value("oldpkg", "remove", None)).await;
    s.navigate("button[value=approve]").await;
    assert_eq!(
        s.fx.count("SELECT COUNT(*) FROM task WHERE approved = 1")
            .await,
        1
    );

    // A form whose token was removed is refused with 403 and changes nothing.
    s.goto("/").await;
    s.tick(&key_value("perl", "update", Some("5.3"))).await;
    s.browser
        .execute(
            "document.querySelector('form.selection input[name=csrf]').remove()",
            vec![],
        )
        .await
        .unwrap();
    let before = s.fx.db.snapshot().await;
    s.navigate("button[value=approve]").await;
    let source = s.source().await;
    assert!(source.contains("Forbidden"), "{source}");
    assert!(source.contains("security token (CSRF)"));
    assert_eq!(s.fx.db.snapshot().await, before);

    // Revoke from the approvals page.
    s.goto("/approvals").await;
    let source = s.source().await;
    assert!(source.contains("oldpkg") && source.contains(USER));
    s.navigate("form[action='/revoke'] button").await;
    assert_eq!(s.path().await, "/approvals?revoked=1");
    assert!(s.source().await.contains("Approval revoked."));
    assert_eq!(
        s.fx.count("SELECT COUNT(*) FROM task WHERE approved = 1")
            .await,
        0
    );

    // Reset: counts shown, confirmation needed (the browser enforces `required` too).
    s.goto("/reset").await;
    let tasks = s.browser.find(Locator::Css("strong.tasks")).await.unwrap();
    assert_eq!(tasks.text().await.unwrap(), "7");
    s.click("button.danger").await;
    assert_eq!(s.path().await, "/reset", "unconfirmed: still on the form");
    assert_eq!(s.fx.count("SELECT COUNT(*) FROM task").await, 7);
    s.click("#confirm").await;
    s.click("#packages_and_agents").await;
    s.navigate("button.danger").await;
    assert!(s
        .source()
        .await
        .contains("Deleted 7 task(s), 5 package(s) and 4 agent(s)."));
    assert_eq!(s.fx.count("SELECT COUNT(*) FROM agent").await, 0);

    // Everything is in the audit log.
    s.goto("/audit").await;
    let source = s.source().await;
    for what in ["<td>approve</td>", "<td>revoke</td>", "<td>reset</td>"] {
        assert!(source.contains(what), "{what}");
    }

    // Logging out ends the session.
    s.navigate("form.logout button").await;
    assert_eq!(s.path().await, "/login");
    s.goto("/").await;
    assert_eq!(s.path().await, "/login");
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_counts_and_run_output_in_a_browser() {
    let s = Scene::new("ui_browser_runs").await;
    let now = unix_now();
    let output =
        "Setting up perl (5.2) ...\n<script>alert(1)</script><img src=x onerror=alert(2)>\n\
                  dpkg: error processing package perl (--configure): \"exit status 1\" & more";
    let perl = || update("perl", "5.1", "5.2");
    s.fx.record_runs(
        "web-1",
        &[
            run(
                "w1-1",
                update("libc6", "2.36-1", "2.36-2"),
                Outcome::Succeeded,
                now - 3000,
            ),
            with_output(run("w1-2", perl(), Outcome::Failed, now - 200), output),
        ],
    )
    .await;
    s.fx.record_runs("web-2", &[run("w2-1", perl(), Outcome::Failed, now - 250)])
        .await;
    s.fx.set_last_seen("db-1", now - 3600).await;
    s.login_as(USER, PASSWORD).await;

    // The pending page names the approved package that failed, above the table.
    let item = s.browser.find(Locator::Css(".failures li")).await.unwrap();
    let text = item.text().await.unwrap();
    assert!(
        text.starts_with("perl — approved, failed on 2 agent(s) (last at "),
        "{text}"
    );
    std::fs::write(
        screenshot_dir().join("pending-failures.png"),
        s.browser.screenshot().await.unwrap(),
    )
    .unwrap();

    // The counts link to the failing agents.
    s.goto("/agents").await;
    let counts = s.browser.find(Locator::Css("p.counts")).await.unwrap();
    assert_eq!(
        counts.text().await.unwrap(),
        "4 agent(s), 1 offline, 2 failing, 0 reboot required"
    );
    std::fs::write(
        screenshot_dir().join("agents.png"),
        s.browser.screenshot().await.unwrap(),
    )
    .unwrap();
    s.navigate("p.counts a[href='/agents?state=failing']").await;
    let rows = s
        .browser
        .find_all(Locator::Css("table.agents tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);

    // The failed run's output is open, and it is text: no script ran, no image was made.
    s.navigate("a[href='/agent?name=web-1']").await;
    let pre = s.browser.find(Locator::Css("pre.output")).await.unwrap();
    assert_eq!(pre.text().await.unwrap(), output);
    assert!(
        s.browser.get_alert_text().await.is_err(),
        "no alert may open"
    );
    assert!(s
        .browser
        .find_all(Locator::Css("main img, main script"))
        .await
        .unwrap()
        .is_empty());
    std::fs::write(
        screenshot_dir().join("agent-runs.png"),
        s.browser.screenshot().await.unwrap(),
    )
    .unwrap();

    // Host facts: tick "security updates only", approve openssl's row with its closure.
    s.fx.seed_facts().await;
    s.goto("/").await;
    let summary = s
        .browser
        .find(Locator::Css("p.security-summary"))
        .await
        .unwrap();
    assert_eq!(
        summary.text().await.unwrap(),
        "SECURITY 1 security update awaiting approval on 2 agents"
    );
    s.click("#f-security").await;
    s.navigate("form.filters button[type=submit]").await;
    assert!(s.path().await.contains("security=1"), "{}", s.path().await);
    let rows = s
        .browser
        .find_all(Locator::Css("table.pending tr.task"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "only the security row");
    let row = rows[0].text().await.unwrap();
    assert!(
        row.contains("SECURITY") && row.contains("needs: install libssl4 1.0"),
        "{row}"
    );
    let closure = s.browser.find(Locator::Css("#closure")).await.unwrap();
    assert!(closure.is_selected().await.unwrap(), "ticked by default");
    std::fs::write(
        screenshot_dir().join("pending-security.png"),
        s.browser.screenshot().await.unwrap(),
    )
    .unwrap();
    s.tick(&key_value("openssl", "update", Some("3.0.2"))).await;
    s.navigate("button[value=approve]").await;
    assert!(
        s.source()
            .await
            .contains("(with 1 task(s) the selected rows need)"),
        "{}",
        s.path().await
    );
    let approved = s.fx.approved().await;
    assert!(
        approved.contains(&"* install libssl4 1.0".to_owned())
            && approved.contains(&"* update openssl 3.0.2".to_owned()),
        "{approved:?}"
    );
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_a_window_on_a_tag_then_start_and_promote_a_roll_out() {
    let s = Scene::new("ui_browser_rollout").await;
    s.fx.seed_tags().await;
    s.login_as(USER, PASSWORD).await;
    // A window on tag web, through its edit form on the Tags page.
    s.goto("/").await;
    s.navigate("nav a[href='/tags']").await;
    s.click("#tag-web summary").await;
    let windows = s
        .browser
        .find(Locator::Css("#tag-web textarea[name=windows]"))
        .await
        .unwrap();
    windows
        .send_keys("2099-01-01T00:00:00Z 2099-01-01T01:00:00Z")
        .await
        .unwrap();
    s.navigate("#tag-web button[type=submit]").await;
    let row = s.browser.find(Locator::Css("#tag-web")).await.unwrap();
    let text = row.text().await.unwrap();
    assert!(text.contains("once 2099-01-01 00:00 – 01:00 UTC"), "{text}");
    assert!(s.source().await.contains("Saved the settings of tag web."));
    std::fs::write(
        screenshot_dir().join("tags.png"),
        s.browser.screenshot().await.unwrap(),
    )
    .unwrap();
    // The Agents page shows it for web's agents.
    s.navigate("nav a[href='/agents']").await;
    let mut windows = Vec::new();
    for cell in s.browser.find_all(Locator::Css("td.window")).await.unwrap() {
        windows.push(cell.text().await.unwrap());
    }
    let next = "next: 2099-01-01 00:00 UTC";
    assert_eq!(
        windows.iter().filter(|w| *w == next).count(),
        2,
        "{windows:?}"
    );

    // A roll-out of perl 5.2 over canary, then web, from the pending page.
    s.goto("/").await;
    s.tick(&key_value("perl", "update", Some("5.2"))).await;
    s.navigate("button[value=rollout]").await;
    let form = s
        .browser
        .form(Locator::Css("form.start-rollout"))
        .await
        .unwrap();
    form.set_by_name("rings", "canary, web").await.unwrap();
    form.set_by_name("max_failure_percent", "20").await.unwrap();
    s.navigate("form.start-rollout button[type=submit]").await;
    assert!(
        s.path().await.starts_with("/rollouts/"),
        "{}",
        s.path().await
    );
    let ring = s
        .browser
        .find(Locator::Css("dd.current-ring"))
        .await
        .unwrap();
    assert!(ring.text().await.unwrap().starts_with("canary (1 of 2)"));
    s.navigate("form.promote button[type=submit]").await;
    let ring = s
        .browser
        .find(Locator::Css("dd.current-ring"))
        .await
        .unwrap();
    assert!(ring.text().await.unwrap().starts_with("web (2 of 2)"));
    assert!(s
        .source()
        .await
        .contains("Promoted: the next ring is approved."));
    std::fs::write(
        screenshot_dir().join("rollout.png"),
        s.browser.screenshot().await.unwrap(),
    )
    .unwrap();
    let approved = s.fx.approved().await;
    assert!(
        approved.contains(&"web-2 update perl 5.2".to_owned()),
        "{approved:?}"
    );
    s.navigate("nav a[href='/rollouts']").await;
    std::fs::write(
        screenshot_dir().join("rollouts.png"),
        s.browser.screenshot().await.unwrap(),
    )
    .unwrap();
    s.finish().await;
}
