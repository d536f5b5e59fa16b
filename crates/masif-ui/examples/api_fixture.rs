//! `cargo run -p masif-ui --example api-fixture -- DIR TOKEN`: a UI for checking the API
//! from outside (schemathesis in `scripts/test-api-schema.sh`). Seeds an SQLite store in DIR
//! through the store's API (agents with pending tasks, security facts, runs, an approval, tagged
//! agents, a tag with max in flight and windows, a roll-out),
//! writes a token file with TOKEN as line `fixture`, serves on 127.0.0.1 (a free port),
//! prints `URL http://…/` and stops when stdin closes or on SIGTERM/SIGINT.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use masif_proto::facts::Facts;
use masif_proto::v2::{Outcome, Run, RunId, RunOutput};
use masif_proto::Tag;
use masif_store::schedule::Window;
use masif_store::{ApprovalScope, Retention, RolloutSpec, Store, TagSettings, TaskKey};
use masif_testkit::tasks::{agent, install, task, update};
use masif_ui::{ApiTokens, UiSettings, Users};

async fn seed(store: &Arc<dyn Store>) -> anyhow::Result<()> {
    use masif_proto::Action;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let reports = [
        (
            "web-1",
            vec![
                update("perl", "5.1", "5.2"),
                update("libc6", "2.36-1", "2.36-2"),
            ],
        ),
        (
            "web-2",
            vec![update("perl", "5.1", "5.2"), install("newpkg", "1.0")],
        ),
        (
            "db-1",
            vec![
                task("oldpkg", Action::Remove, Some("0.9"), None),
                update("zeta", "1", "2"),
            ],
        ),
        (
            "o'brien \"the\" <b>host</b>",
            vec![update("<script>alert(1)</script>", "1", "2")],
        ),
    ];
    for (name, tasks) in reports {
        store
            .report(&agent(name), &tasks.into_iter().collect())
            .await?;
    }
    let run = |id: &str, t: masif_proto::Task, outcome| Run {
        id: RunId::new(id).unwrap(),
        package: t.package().clone(),
        started_at: now - 600,
        duration_ms: 1500,
        exit_code: Some(if outcome == Outcome::Failed { 100 } else { 0 }),
        outcome,
        tasks: [t].into_iter().collect(),
        output: RunOutput::new("Setting up zeta (2) ...\n").unwrap(),
    };
    store
        .record_runs(
            &agent("db-1"),
            &[
                run("r1", update("zeta", "1", "2"), Outcome::Failed),
                run("r2", update("perl", "5.0", "5.1"), Outcome::Succeeded),
            ],
            &Retention::default(),
        )
        .await?;
    let key = |p: &str, a, to: Option<&str>| TaskKey {
        package: masif_proto::PackageName::new(p).unwrap(),
        action: a,
        to_version: to.map(|v| masif_proto::Version::new(v).unwrap()),
    };
    store
        .approve(
            &[key("libc6", Action::Update, Some("2.36-2"))],
            &ApprovalScope::AllAgents,
            "fixture",
        )
        .await?;
    store
        .approve(
            &[key("newpkg", Action::Install, Some("1.0"))],
            &ApprovalScope::Agents(vec![agent("web-2")]),
            "fixture",
        )
        .await?;
    seed_rollout(store, now).await?;
    store.flush().await;
    Ok(())
}

/// Agents tagged `canary` and `web`, `web` with max in flight and windows, and a roll-out
/// over both rings.
async fn seed_rollout(store: &Arc<dyn Store>, now: i64) -> anyhow::Result<()> {
    let tag = |t: &str| Tag::new(t).map_err(anyhow::Error::msg);
    for (name, tags) in [("canary-1", ["canary", "web"]), ("web-3", ["web", "prod"])] {
        let facts = Facts {
            tags: tags.iter().map(|t| tag(t)).collect::<Result<_, _>>()?,
            ..Facts::default()
        };
        let tasks = [update("perl", "5.1", "5.2")].into_iter().collect();
        store
            .report_with_facts(&agent(name), &tasks, Some(&facts))
            .await?;
    }
    let windows = serde_json::json!([
        {"days": ["mon", "wed"], "start": "02:00", "end": "04:30", "time_zone": "Europe/Berlin"},
        {"from": "2030-01-01T00:00:00Z", "to": "2030-01-02T00:00:00Z"},
    ]);
    let settings = TagSettings {
        max_in_flight: Some(2),
        windows: Window::parse_list(&windows, "windows")?,
    };
    store.set_tag(&tag("web")?, &settings, "fixture").await?;
    let spec = RolloutSpec {
        tasks: vec![TaskKey {
            package: masif_proto::PackageName::new("perl").unwrap(),
            action: masif_proto::Action::Update,
            to_version: Some(masif_proto::Version::new("5.2").unwrap()),
        }
        .into()],
        rings: vec![tag("canary")?, tag("web")?],
        soak_secs: Some(3600),
        max_failure_percent: 10,
    };
    store.create_rollout(&spec, "fixture", now).await?;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(token)) = (args.next().map(PathBuf::from), args.next()) else {
        anyhow::bail!("usage: api-fixture DIR TOKEN");
    };
    let dir = std::fs::canonicalize(&dir)?;
    let store = masif_store::open(&masif_store::DbUrl::sqlite(dir.join("masif.db"))).await?;
    seed(&store).await?;
    let token_path = dir.join("tokens");
    std::fs::write(
        &token_path,
        format!("fixture:{}\n", bcrypt::hash(&token, 4)?),
    )?;
    let settings = UiSettings {
        tokens: Some(Arc::new(ApiTokens::load(&token_path)?)),
        // schemathesis sends wrong tokens on purpose and expects 401 for each, not 429.
        login_backoff: masif_ui::LoginBackoff {
            free_failures: u32::MAX - 1,
            ..Default::default()
        },
        ..UiSettings::with_users(Users::default())
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("URL http://{}/", listener.local_addr()?);
    std::io::stdout().flush()?;
    let signal = masif_daemon::shutdown::signal_future()?;
    let stop = async {
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)
        });
        tokio::select! {
            _ = stdin_closed => {}
            _ = signal => {}
        }
    };
    masif_ui::serve_with_listener(settings, store, listener, stop).await?;
    Ok(())
}
