//! Closing the loop, end to end on both back ends (MariaDB and SQLite): an approval made in the
//! UI reaches a long-polling agent with a 300 s report interval at once; zeta's failing
//! postinst shows on the agent page, the Agents page and the pending page; an agent reports
//! while idle (heartbeat) and is shown offline once stopped; our agent falls back to v1 against
//! a master with v2 turned off; a run whose plan changed between its approval and its start
//! (the package lists were updated meanwhile) is refused, recorded as "plan changed" and
//! planned again, with nothing changed on the host.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::world::{
    apt_get_wrapper, eventually, Backend, Options, Setup, TestAgent, World, MASTER_CN,
};
use masif_proto::v2::Outcome;
use masif_proto::AgentName;
use masif_store::Page;
use masif_testkit::sandbox::{standard_packages, FakePackage, Sandbox, Stage};

/// A production-like pace: without the long-poll an approval would wait for the next report,
/// 240 s or more after the last one (the interval jittered by up to 20 %).
const SLOW: &str = "{ check: 300, report: 300, retry: 60 }";
/// A fast pace, for tests about what happens between reports.
const FAST: &str = "{ check: 1, report: 1, retry: 1 }";
const ALPHA: [&str; 2] = [
    r#"["alpha","update","2.0"]"#,
    r#"["alpha","configure","2.0"]"#,
];
const ZETA: [&str; 2] = [
    r#"["zeta","update","2.0"]"#,
    r#"["zeta","configure","2.0"]"#,
];

/// beta's update with the install of gamma 1.0 it needs, as the pending page offers them.
const BETA_WITH_GAMMA: [&str; 4] = [
    r#"["beta","update","2.0"]"#,
    r#"["beta","configure","2.0"]"#,
    r#"["gamma","install","1.0"]"#,
    r#"["gamma","configure","1.0"]"#,
];
fn options(backend: Backend) -> Options {
    Options {
        backend,
        ..Options::default()
    }
}

async fn approval_reaches_a_long_polling_agent_at_once(backend: Backend) {
    let world = World::start_with(options(backend)).await;
    let ui = world.start_ui(Duration::from_secs(900)).await;
    let name = format!("lp-{backend:?}.e2e.test").to_lowercase();
    let agent = TestAgent::start_configured(&world, &name, MASTER_CN, SLOW).await;
    eventually("alpha pending, the agent waiting", || async {
        world
            .pending(&name)
            .await
            .contains(&"update alpha 2.0".to_string())
            && agent.status().await["activity"] == "waiting_for_approval"
    })
    .await;
    let approved = Instant::now();
    ui.approve(&ALPHA).await;
    // Well before the next report (≥ 240 s away) would have brought the approval.
    agent.wait_version("alpha", "2.0").await;
    println!(
        "{backend:?}: approval → alpha 2.0 installed in {:?}",
        approved.elapsed()
    );
    agent.stop().await;
    ui.stop().await;
    world.stop().await;
}

#[tokio::test]
async fn approval_reaches_a_long_polling_agent_at_once_mysql() {
    approval_reaches_a_long_polling_agent_at_once(Backend::Mysql).await;
}

#[tokio::test]
async fn approval_reaches_a_long_polling_agent_at_once_sqlite() {
    approval_reaches_a_long_polling_agent_at_once(Backend::Sqlite).await;
}

async fn a_failing_run_is_shown_everywhere(backend: Backend) {
    let world = World::start_with(options(backend)).await;
    let ui = world.start_ui(Duration::from_secs(900)).await;
    let name = format!("zeta-{backend:?}.e2e.test").to_lowercase();
    let agent = TestAgent::start_configured(&world, &name, MASTER_CN, SLOW).await;
    eventually("zeta pending", || async {
        world
            .pending(&name)
            .await
            .contains(&"update zeta 2.0".to_string())
    })
    .await;
    ui.approve(&ZETA).await;
    let agent_page = format!("/agent?name={name}");
    let page = loop_until(&ui, &agent_page, "post-installation script").await;
    assert!(page.contains("failed"), "the run's outcome: {page}");
    let agents = ui.page("/agents").await;
    assert!(agents.contains("1 failing"), "{agents}");
    let failing = ui.page("/agents?state=failing").await;
    assert!(failing.contains(&name), "{failing}");
    let pending = ui.page("/").await;
    assert!(pending.contains("failed on 1 agent"), "{pending}");
    agent.stop().await;
    ui.stop().await;
    world.stop().await;
}

#[tokio::test]
async fn a_failing_run_is_shown_everywhere_mysql() {
    a_failing_run_is_shown_everywhere(Backend::Mysql).await;
}

#[tokio::test]
async fn a_failing_run_is_shown_everywhere_sqlite() {
    a_failing_run_is_shown_everywhere(Backend::Sqlite).await;
}

/// GETs `path` until it contains `needle`, and returns it.
async fn loop_until(ui: &common::ui::Ui, path: &str, needle: &str) -> String {
    for _ in 0..1800 {
        let page = ui.page(path).await;
        if page.contains(needle) {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never happened: {needle:?} on {path}");
}

async fn an_idle_agent_keeps_reporting_and_is_offline_once_stopped(backend: Backend) {
    let world = World::start_with(options(backend)).await;
    let offline_after = Duration::from_secs(4);
    let ui = world.start_ui(offline_after).await;
    let name = format!("hb-{backend:?}.e2e.test").to_lowercase();
    let agent = TestAgent::start_configured(&world, &name, MASTER_CN, FAST).await;
    // Reports keep coming with nothing to change: past `offline_after` since it started, the
    // agent is still online.
    let started = Instant::now();
    let first = agent.reports().await;
    eventually("reports for longer than offline_after", || async {
        agent.reports().await > first + 2 && started.elapsed() > offline_after * 2
    })
    .await;
    world.store.flush().await;
    let online = ui.page("/agents").await;
    assert!(
        online.contains("0 offline"),
        "a reporting agent is online: {online}"
    );
    let offline = ui.page("/agents?state=offline").await;
    assert!(!offline.contains(&name), "{offline}");
    agent.stop().await;
    loop_until(&ui, "/agents?state=offline", &name).await;
    let agents = ui.page("/agents").await;
    assert!(agents.contains("1 offline"), "{agents}");
    ui.stop().await;
    world.stop().await;
}

#[tokio::test]
async fn an_idle_agent_keeps_reporting_and_is_offline_once_stopped_mysql() {
    an_idle_agent_keeps_reporting_and_is_offline_once_stopped(Backend::Mysql).await;
}

#[tokio::test]
async fn an_idle_agent_keeps_reporting_and_is_offline_once_stopped_sqlite() {
    an_idle_agent_keeps_reporting_and_is_offline_once_stopped(Backend::Sqlite).await;
}

async fn our_agent_falls_back_to_v1(backend: Backend) {
    let world = World::start_with(Options { backend, v2: false }).await;
    let name = format!("v1-{backend:?}.e2e.test").to_lowercase();
    let agent = TestAgent::start_configured(&world, &name, MASTER_CN, FAST).await;
    eventually("alpha pending", || async {
        world
            .pending(&name)
            .await
            .contains(&"update alpha 2.0".to_string())
    })
    .await;
    world.approve_update("alpha", "2.0").await;
    agent.wait_version("alpha", "2.0").await;
    assert_eq!(agent.status().await["protocol"], 1);
    agent.stop().await;
    world.stop().await;
}

#[tokio::test]
async fn our_agent_falls_back_to_v1_mysql() {
    our_agent_falls_back_to_v1(Backend::Mysql).await;
}

#[tokio::test]
async fn our_agent_falls_back_to_v1_sqlite() {
    our_agent_falls_back_to_v1(Backend::Sqlite).await;
}

/// Holds an agent's check of a run against its approval until the test lets it go, so that
/// the package lists can change in between: the agent's apt-get (an [`apt_get_wrapper`]
/// running [`HeldRunCheck::script`]) announces its first such check (the simulation with the
/// run's own arguments: `-sqq` and the run's `--force-confold`) on the FIFO `checking`, then
/// waits for a line on the FIFO `go`.
struct HeldRunCheck {
    dir: PathBuf,
}

impl HeldRunCheck {
    async fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let held = Self { dir: dir.into() };
        for fifo in [held.checking(), held.go()] {
            let made = masif_agent::exec::Runner::default()
                .command("/usr/bin/mkfifo")
                .arg(&fifo)
                .run()
                .await
                .unwrap();
            assert!(made.success(), "mkfifo {}: {}", fifo.display(), made.stderr);
        }
        held
    }

    fn checking(&self) -> PathBuf {
        self.dir.join("checking")
    }

    fn go(&self) -> PathBuf {
        self.dir.join("go")
    }

    /// What the apt-get wrapper runs first.
    fn script(&self) -> String {
        format!(
            r#"if [ "$1" = -sqq ] && [ ! -e '{done}' ]; then
  case "$*" in *--force-confold*)
    touch '{done}'; echo "$*" > '{checking}'; read go < '{go}' ;;
  esac
fi"#,
            done = self.dir.join("done").display(),
            checking = self.checking().display(),
            go = self.go().display(),
        )
    }

    /// Waits until the agent checks a run; returns the check's apt-get arguments.
    async fn reached(&self) -> String {
        let read = tokio::fs::read_to_string(self.checking());
        tokio::time::timeout(common::PATIENCE, read)
            .await
            .expect("the agent never checked a run")
            .unwrap()
    }

    /// Lets the held check go on.
    async fn release(&self) {
        let write = tokio::fs::write(self.go(), "go\n");
        tokio::time::timeout(common::PATIENCE, write)
            .await
            .expect("the held check went away")
            .unwrap();
    }
}

async fn a_run_whose_plan_changed_is_refused(backend: Backend) {
    let world = World::start_with(options(backend)).await;
    let ui = world.start_ui(Duration::from_secs(900)).await;
    let name = format!("pc-{backend:?}.e2e.test").to_lowercase();
    let dir = tempfile::tempdir().unwrap();
    let mut packages = standard_packages();
    packages.push(FakePackage::new("gamma", "1.1").v3());
    let sandbox = Sandbox::create(&dir.path().join("sandbox"), &packages)
        .await
        .unwrap();
    sandbox.publish(Stage::V2).await.unwrap();
    let held = HeldRunCheck::new(&dir.path().join("held")).await;
    let apt_get = apt_get_wrapper(&dir.path().join("apt"), &held.script());
    let setup = Setup {
        masters: &[world.addr],
        tags: &[],
        apt_get: Some(&apt_get),
    };
    let agent = TestAgent::start_set_up(&world, &name, MASTER_CN, SLOW, dir, sandbox, setup).await;
    eventually("beta and gamma 1.0 pending, the agent waiting", || async {
        let pending = world.pending(&name).await;
        pending.contains(&"update beta 2.0".to_string())
            && pending.contains(&"install gamma 1.0".to_string())
            && agent.status().await["activity"] == "waiting_for_approval"
    })
    .await;
    let installed = agent.sandbox.packages().await.unwrap();
    let dpkg_log = agent.sandbox.root().join("var/log/dpkg.log");
    let logged = std::fs::read_to_string(&dpkg_log).unwrap();
    ui.approve(&BETA_WITH_GAMMA).await;
    // Between the approval and the run: gamma 1.1 is published and the lists updated.
    let check = held.reached().await;
    assert!(check.contains(" beta=2.0"), "{check}");
    agent.sandbox.publish(Stage::V3).await.unwrap();
    held.release().await;
    let agent_page = format!("/agent?name={name}");
    let page = loop_until(&ui, &agent_page, "plan changed").await;
    assert!(page.contains("now also install gamma 1.1"), "{page}");
    let runs = world
        .store
        .agent_runs(&AgentName::new(&name).unwrap(), Page::default())
        .await
        .unwrap()
        .rows;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let refused = &runs[0];
    assert_eq!(
        (refused.package.as_str(), refused.outcome, refused.exit_code),
        ("beta", Outcome::PlanChanged, None)
    );
    let why = refused.output.as_str();
    assert!(
        why.contains("now also install gamma 1.1, configure gamma 1.1")
            && why.contains("no longer install gamma 1.0, configure gamma 1.0"),
        "{why}"
    );
    // Planned again: the next report asks for gamma 1.1, which nobody approved, and the agent
    // waits for it.
    eventually("the new plan reported, the agent waiting", || async {
        let pending = world.pending(&name).await;
        pending.contains(&"install gamma 1.1".to_string())
            && !pending.contains(&"install gamma 1.0".to_string())
            && agent.status().await["activity"] == "waiting_for_approval"
    })
    .await;
    assert_eq!(agent.sandbox.packages().await.unwrap(), installed);
    assert_eq!(std::fs::read_to_string(&dpkg_log).unwrap(), logged);
    agent.stop().await;
    ui.stop().await;
    world.stop().await;
}

#[tokio::test]
async fn a_run_whose_plan_changed_is_refused_mysql() {
    a_run_whose_plan_changed_is_refused(Backend::Mysql).await;
}

#[tokio::test]
async fn a_run_whose_plan_changed_is_refused_sqlite() {
    a_run_whose_plan_changed_is_refused(Backend::Sqlite).await;
}
