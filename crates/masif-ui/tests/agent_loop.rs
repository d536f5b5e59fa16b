//! The closed loop in the UI, in-process against a real MariaDB seeded through the real store
//! (reports, `flush`, `record_runs`): offline agents and the state filter, counts, failing
//! agents, an agent's run history with hostile output shown as text, and the approved packages
//! that failed on the pending page.

mod common;

use common::in_process::*;
use common::*;
use masif_proto::v2::Outcome;
use warp::http::StatusCode;

/// The `<tr …>…</tr>` of `body` whose text holds `>needle<`.
fn row_of<'a>(body: &'a str, needle: &str) -> &'a str {
    body.split("<tr")
        .find(|row| row.contains(&format!(">{needle}<")))
        .map(|row| &row[..row.find("</tr>").unwrap_or(row.len())])
        .unwrap_or_else(|| panic!("no row with {needle} in {body}"))
}

/// Runs on the standard scene at `now`: perl failed on web-1 and web-2 (libc6 succeeded on
/// web-1 before), db-1's newpkg run found its plan changed.
async fn record_scene_runs(fx: &Fixture, now: i64) {
    fx.record_runs(
        "web-1",
        &[
            run(
                "w1-1",
                update("libc6", "2.36-1", "2.36-2"),
                Outcome::Succeeded,
                now - 3000,
            ),
            run(
                "w1-2",
                update("perl", "5.1", "5.2"),
                Outcome::Failed,
                now - 200,
            ),
        ],
    )
    .await;
    fx.record_runs(
        "web-2",
        &[run(
            "w2-1",
            update("perl", "5.1", "5.2"),
            Outcome::Failed,
            now - 250,
        )],
    )
    .await;
    fx.record_runs(
        "db-1",
        &[run(
            "d1-1",
            install("newpkg", "1.0"),
            Outcome::PlanChanged,
            now - 1000,
        )],
    )
    .await;
}

#[tokio::test]
async fn agents_page_counts_marks_offline_and_filters_by_state() {
    let mut s = settings();
    s.offline_after = 300;
    let ui = ui("ui_loop_agents", s).await;
    let (session, _) = ui.login().await;
    let now = unix_now();
    // db-1 was last seen 10 min ago (offline after 5), web-1 2 min ago; legacy-1 only ever
    // reported to the original master, whose pending set last changed 3 days ago.
    ui.fx.set_last_seen("db-1", now - 600).await;
    ui.fx.set_last_seen("web-1", now - 120).await;
    let legacy = now - 3 * 86_400;
    ui.fx
        .db
        .execute(&format!(
            "INSERT INTO agent (name, ctime, mtime) VALUES ('legacy-1', {legacy}, {legacy})"
        ))
        .await;
    record_scene_runs(&ui.fx, now).await;

    let r = ui.get("/agents", &session).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let body = &r.body;
    assert!(
        body.contains("<a href=\"/agents\">5 agent(s)</a>"),
        "{body}"
    );
    assert!(
        body.contains("<a href=\"/agents?state=offline\" class=\"offline\">2 offline</a>"),
        "{body}"
    );
    assert!(
        body.contains("<a href=\"/agents?state=failing\" class=\"failing\">2 failing</a>"),
        "{body}"
    );
    assert!(body.contains("no report for 5 min"), "{body}");

    let db1 = row_of(body, "db-1");
    assert!(db1.contains("class=\"offline\""), "{db1}");
    assert!(db1.contains("badge-offline"), "{db1}");
    assert!(db1.contains("10 min ago"), "{db1}");
    assert!(
        db1.contains("outcome-plan-changed\">plan changed</strong> 16 min ago"),
        "{db1}"
    );
    let web1 = row_of(body, "web-1");
    assert!(!web1.contains("offline"), "{web1}");
    assert!(web1.contains("2 min ago"), "{web1}");
    assert!(
        web1.contains("outcome-failed\">failed</strong> 3 min ago"),
        "{web1}"
    );
    assert!(
        web1.contains("<strong class=\"failing\">1</strong>"),
        "{web1}"
    );
    let legacy1 = row_of(body, "legacy-1");
    assert!(legacy1.contains("badge-offline"), "{legacy1}");
    assert!(
        legacy1.contains("never reported here; pending set changed 3 days ago"),
        "{legacy1}"
    );
    assert!(legacy1.contains("<em>none</em>"), "no run: {legacy1}");
    // Reported just now, no runs.
    let hostile = row_of(body, "o&#x27;brien &quot;the&quot; &lt;b&gt;host&lt;/b&gt;");
    assert!(!hostile.contains("offline"), "{hostile}");

    let listed = |body: &str| {
        ["web-1", "web-2", "db-1", "legacy-1"]
            .into_iter()
            .filter(|a| body.contains(&format!("href=\"/agent?name={a}\"")))
            .collect::<Vec<_>>()
    };
    let r = ui.get("/agents?state=offline", &session).await;
    assert_eq!(listed(&r.body), ["db-1", "legacy-1"]);
    assert!(r.body.contains("(2 in all)"), "{}", r.body);
    assert!(r.body.contains("<option value=\"offline\" selected>"));
    // The counts stay those of all agents.
    assert!(r.body.contains("5 agent(s)"));
    let r = ui.get("/agents?state=failing", &session).await;
    assert_eq!(listed(&r.body), ["web-1", "web-2"]);
    let r = ui.get("/agents?state=failing&name=WEB-2", &session).await;
    assert_eq!(listed(&r.body), ["web-2"]);
    let r = ui.get("/agents?state=offline&name=web", &session).await;
    assert!(listed(&r.body).is_empty());
    assert!(
        r.body.contains("No agent matches this filter"),
        "{}",
        r.body
    );
    // An empty state (the form's "all") is no filter.
    let r = ui.get("/agents?state=&name=", &session).await;
    assert_eq!(listed(&r.body).len(), 4);

    for path in [
        "/agents?state=bogus",
        "/agents?state=OFFLINE",
        "/agents?state=offline&state=failing",
    ] {
        let r = ui.get(path, &session).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            r.body
                .contains("the state filter must be offline, failing or reboot")
                || r.body.contains("Invalid query parameters"),
            "{path}: {}",
            r.body
        );
    }
}

#[tokio::test]
async fn agent_page_shows_its_runs_newest_first_with_output_as_text() {
    let ui = ui("ui_loop_runs", settings()).await;
    let (session, _) = ui.login().await;
    let now = unix_now();
    record_scene_runs(&ui.fx, now).await;
    ui.fx
        .record_runs(
            "web-1",
            &[with_output(
                run(
                    "w1-3",
                    update("perl", "5.1", "5.2"),
                    Outcome::Failed,
                    now - 100,
                ),
                "Setting up perl (5.2) ...\n<script>alert(1)</script>\n& \"quoted\" 'single' </pre><b>x</b>",
            )],
        )
        .await;
    ui.fx.set_last_seen("web-1", now - 3600).await;

    let r = ui.get("/agent?name=web-1", &session).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let body = &r.body;
    assert!(!body.contains("<script>alert"), "{body}");
    assert!(!body.contains("<b>x</b>"), "{body}");
    assert!(
        body.contains(
            "<pre class=\"output\">Setting up perl (5.2) ...\n&lt;script&gt;alert(1)&lt;/script&gt;\n\
             &amp; &quot;quoted&quot; &#x27;single&#x27; &lt;/pre&gt;&lt;b&gt;x&lt;/b&gt;</pre>"
        ),
        "{body}"
    );
    // Last contact an hour ago: offline after the default 15 min.
    assert!(body.contains("badge-offline"), "{body}");
    assert!(body.contains("(offline: no report for 15 min)"), "{body}");
    assert!(body.contains("1 h ago"), "{body}");
    assert!(
        body.contains("<strong class=\"failing\">1</strong>"),
        "{body}"
    );

    // Newest first: the perl run with output, the earlier failed one, then libc6.
    let runs: Vec<&str> = body.split("<tbody class=\"run ").skip(1).collect();
    assert_eq!(runs.len(), 3, "{body}");
    assert!(runs[0].contains("&lt;script&gt;") && runs[0].contains("1 min ago"));
    assert!(runs[1].starts_with("outcome-failed") && runs[1].contains("3 min ago"));
    assert!(runs[1].contains("<p class=\"help\">No output.</p>"));
    assert!(runs[2].starts_with("outcome-succeeded") && runs[2].contains(">libc6<"));
    assert!(
        runs[0].contains("<td class=\"count\">100</td>"),
        "{}",
        runs[0]
    );
    assert!(
        runs[2].contains("<td class=\"count\">0</td>"),
        "{}",
        runs[2]
    );
    assert!(runs[0].contains("1 min 5 s"), "{}", runs[0]);
    assert!(
        runs[0].contains("<li>update perl 5.1 -&gt; 5.2</li>"),
        "{}",
        runs[0]
    );
    assert!(runs[0].contains("<details open>"), "failed: output open");
    assert!(!runs[2].contains("<details open>"));

    // Plan changed: apt-get did not run.
    let r = ui.get("/agent?name=db-1", &session).await;
    assert!(r.body.contains("plan changed"), "{}", r.body);
    assert!(r.body.contains("<td class=\"count\"><em>none</em></td>"));
    assert!(!r.body.contains("badge-offline"), "reported just now");
    // No runs.
    let r = ui
        .get(&format!("/agent?name={}", enc(HOSTILE_AGENT)), &session)
        .await;
    assert!(r.body.contains("No run of this agent is stored."));
}

#[tokio::test]
async fn run_history_is_paged() {
    let ui = ui("ui_loop_paging", settings()).await;
    let (session, _) = ui.login().await;
    let now = unix_now();
    let runs: Vec<_> = (0..25)
        .map(|i| {
            run(
                &format!("r{i:02}"),
                update(&format!("pkg-{i:02}"), "1", "2"),
                Outcome::Succeeded,
                now - 1000 + i,
            )
        })
        .collect();
    ui.fx.record_runs("web-2", &runs).await;
    let r = ui.get("/agent?name=web-2", &session).await;
    assert_eq!(r.body.matches("<tbody class=\"run ").count(), 20);
    assert!(r.body.contains(">pkg-24<") && !r.body.contains(">pkg-04<"));
    assert!(r.body.contains("Page 1 of 2 (25 in all)"), "{}", r.body);
    assert!(
        r.body
            .contains("<a rel=\"next\" href=\"/agent?name&#x3D;web-2&amp;page&#x3D;2#runs\">"),
        "{}",
        r.body
    );
    let r = ui.get("/agent?name=web-2&page=2", &session).await;
    assert_eq!(r.body.matches("<tbody class=\"run ").count(), 5);
    assert!(r.body.contains(">pkg-04<") && r.body.contains(">pkg-00<"));
    // The pending tasks are on every page of the history.
    assert!(r.body.contains(">perl<"), "{}", r.body);
    for path in [
        "/agent?name=web-2&page=0",
        "/agent?name=web-2&page=x",
        "/agent?name=web-2&page=-1",
        "/agent?name=web-2&state=offline",
    ] {
        assert_eq!(
            ui.get(path, &session).await.status,
            StatusCode::BAD_REQUEST,
            "{path}"
        );
    }
}

#[tokio::test]
async fn pending_page_lists_approved_packages_that_failed() {
    let ui = ui("ui_loop_pending", settings()).await;
    let (session, _) = ui.login().await;
    let r = ui.get("/", &session).await;
    assert!(!r.body.contains("Approved, but failed"), "{}", r.body);
    assert!(!r.body.contains("badge-failed"));

    let now = unix_now();
    record_scene_runs(&ui.fx, now).await;
    // libc6 failed on web-2, then succeeded: its latest run is what counts.
    ui.fx
        .record_runs(
            "web-2",
            &[
                run(
                    "w2-2",
                    update("libc6", "2.36-1", "2.36-2"),
                    Outcome::Failed,
                    now - 240,
                ),
                run(
                    "w2-3",
                    update("libc6", "2.36-1", "2.36-2"),
                    Outcome::Succeeded,
                    now - 60,
                ),
            ],
        )
        .await;
    ui.fx
        .record_runs(
            HOSTILE_AGENT,
            &[with_output(
                run(
                    "h-1",
                    update(HOSTILE_PACKAGE, "1", "2"),
                    Outcome::Failed,
                    now - 30,
                ),
                "<img src=x onerror=alert(1)>",
            )],
        )
        .await;

    let r = ui.get("/", &session).await;
    assert_eq!(r.status, StatusCode::OK);
    let body = &r.body;
    assert!(body.contains("Approved, but failed"), "{body}");
    let failures =
        &body[body.find("class=\"failures\"").unwrap()..body.find("</section>").unwrap()];
    // Most agents first; each links to the failing agents.
    let perl = failures
        .find("<strong class=\"name\">perl</strong> — approved, <a href=\"/agents?state=failing\">failed on 2 agent(s)</a> (last at ")
        .unwrap_or_else(|| panic!("{failures}"));
    let hostile = failures
        .find("<strong class=\"name\">&lt;script&gt;alert(1)&lt;/script&gt;</strong> — approved, <a href=\"/agents?state=failing\">failed on 1 agent(s)</a>")
        .unwrap_or_else(|| panic!("{failures}"));
    assert!(perl < hostile);
    assert!(
        failures.contains("3 min ago)"),
        "perl last failed on web-1: {failures}"
    );
    assert!(
        !failures.contains("libc6") && !failures.contains("newpkg"),
        "{failures}"
    );
    assert!(!body.contains("<script>alert") && !body.contains("<img"));

    // Inside the table, the groups of failing packages are marked.
    assert!(
        body.contains(
            "<tr class=\"package failed\"><th scope=\"rowgroup\" colspan=\"2\">perl</th><td><strong class=\"badge badge-failed\">failed</strong> <a href=\"/agents?state=failing\">on 2 agent(s)</a></td>"
        ),
        "{body}"
    );
    assert!(
        body.contains(
            "<tr class=\"package\"><th scope=\"rowgroup\" colspan=\"2\">libc6</th><td></td>"
        ),
        "{body}"
    );
    // The package filter leaves the failures list alone: they are never out of sight.
    let r = ui.get("/?package=libc", &session).await;
    assert!(r.body.contains("Approved, but failed") && r.body.contains(">perl</strong>"));
}
