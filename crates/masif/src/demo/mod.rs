//! `masif demo`: the whole system in one process on loopback — a throwaway PKI, an SQLite
//! database, the master, the UI and N agents, each agent on its own sandbox apt root with fake
//! packages (real apt-get and dpkg) — until Ctrl-C, then everything stops and the temporary
//! directory goes.

mod agents;
mod login;
mod pki;
mod tools;
mod workdir;

use std::future::Future;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use login::USER;
pub use pki::{agent_name, MASTER_CN};

/// The UI's port unless `--port` says otherwise (the port of the example `ui.yml`).
pub const DEFAULT_UI_PORT: u16 = 8151;
/// Most agents one demo runs (each has its own sandbox and apt runs).
pub const MAX_AGENTS: usize = 50;
/// How long components get to stop after Ctrl-C before the demo gives up waiting (an agent
/// finishes a running apt/dpkg call first).
const STOP_GRACE: Duration = Duration::from_secs(60);

/// The command line of `masif demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub agents: usize,
    /// UI port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Work in this directory and keep it, instead of a removed temporary one.
    pub keep: Option<PathBuf>,
}

/// Runs the demo until SIGINT or SIGTERM (what `masif demo` does).
pub fn run_until_signal(options: DemoOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async {
        let signals = signals().context("installing signal handlers")?;
        run(options, signals).await
    });
    // Blocking tasks (SQLite calls) are short; do not let a stuck one keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

/// Completes on the first SIGINT, SIGTERM or SIGHUP (the terminal went away): each stops the
/// demo cleanly.
fn signals() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
    })
}

/// Runs the demo until `stop` completes or a component fails, then stops every component and
/// removes the working directory (unless kept).
pub async fn run(options: DemoOptions, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
    if options.agents == 0 || options.agents > MAX_AGENTS {
        anyhow::bail!("--agents must be 1 to {MAX_AGENTS}");
    }
    tools::check(std::env::var_os("PATH").as_deref())?;
    let workdir = workdir::Workdir::create(options.keep.as_deref())?;
    tracing::info!("work directory {}", workdir.path().display());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut components = JoinSet::new();
    tokio::pin!(stop);
    // Ctrl-C while sandboxes are still being built stops there: the steps in flight (apt-get,
    // dpkg-deb, which run in process groups of their own) end before the directory goes.
    let started = {
        let starting = start(&options, &workdir, &stop_rx, &mut components);
        tokio::pin!(starting);
        tokio::select! {
            started = &mut starting => Some(started),
            () = &mut stop => {
                let _ = stop_tx.send(true);
                if tokio::time::timeout(STOP_GRACE, &mut starting).await.is_err() {
                    tracing::error!(
                        "sandbox builds still running {}s after Ctrl-C",
                        STOP_GRACE.as_secs()
                    );
                }
                None
            }
        }
    };
    let result = match started {
        Some(Ok(banner)) => {
            print_banner(&banner, &workdir);
            tokio::select! {
                () = &mut stop => {
                    say("stopping");
                    Ok(())
                }
                Some(ended) = components.join_next() => {
                    Err(early_end(ended))
                }
            }
        }
        Some(Err(e)) => Err(e),
        None => {
            say("stopping");
            Ok(())
        }
    };
    let _ = stop_tx.send(true);
    let stopped = stop_all(&mut components).await;
    let removed = workdir.finish();
    result.and(stopped).and(removed)
}

/// What the banner shows.
struct Banner {
    ui: SocketAddr,
    master: SocketAddr,
    agents: usize,
    password: String,
    token_file: std::path::PathBuf,
}

type Components = JoinSet<(String, anyhow::Result<()>)>;

/// Starts master, UI and agents as tasks in `components`, each stopping when `stop` turns true.
async fn start(
    options: &DemoOptions,
    workdir: &workdir::Workdir,
    stop: &watch::Receiver<bool>,
    components: &mut Components,
) -> anyhow::Result<Banner> {
    let dir = workdir.path();
    let pki = pki::DemoPki::create(&dir.join("pki"), options.agents)?;
    let db = dir.join("masif.db");
    let store = masif_store::open(&masif_store::DbUrl::sqlite(&db))
        .await
        .with_context(|| format!("opening {}", db.display()))?;

    let master_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .context("binding the master's port on 127.0.0.1")?;
    let master = master_listener.local_addr()?;
    let settings = masif_master::ServeSettings::new(pki.master.clone());
    let master_store = store.clone();
    let master_stop = stopped(stop.clone());
    components.spawn(async move {
        let result =
            masif_master::serve_with_listener(settings, master_store, master_listener, master_stop)
                .await;
        ("master".to_owned(), result)
    });

    let ui_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, options.port))
        .await
        .with_context(|| {
            format!(
                "--port {}: cannot listen on 127.0.0.1:{} (try another port, or --port 0 for any free one)",
                options.port, options.port
            )
        })?;
    let ui = ui_listener.local_addr()?;
    let login = login::DemoLogin::generate()?;
    let token = login::DemoToken::create(dir)?;
    let mut ui_settings = masif_ui::UiSettings::with_users(login.users.clone());
    ui_settings.tokens = Some(std::sync::Arc::new(token.tokens));
    let ui_stop = stopped(stop.clone());
    components.spawn(async move {
        let result = masif_ui::serve_with_listener(ui_settings, store, ui_listener, ui_stop)
            .await
            .map_err(anyhow::Error::from);
        ("ui".to_owned(), result)
    });

    agents::start(dir, &pki, master, stop, components).await?;
    Ok(Banner {
        ui,
        master,
        agents: options.agents,
        password: login.password,
        token_file: token.file,
    })
}

fn print_banner(banner: &Banner, workdir: &workdir::Workdir) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "Masif Upgrader demo is running.");
    let _ = writeln!(out, "UI: http://{}/", banner.ui);
    let _ = writeln!(out, "login: {} / {}", USER, banner.password);
    let _ = writeln!(
        out,
        "CLI: masif pending --url http://{}/ --token-file {}",
        banner.ui,
        banner.token_file.display()
    );
    let _ = writeln!(
        out,
        "master: https://{} ({} agents, each with a sandbox of fake packages awaiting approval)",
        banner.master, banner.agents
    );
    let kept = if workdir.is_kept() {
        "kept"
    } else {
        "removed at exit"
    };
    let _ = writeln!(out, "work directory: {} ({kept})", workdir.path().display());
    let _ = writeln!(out, "Press Ctrl-C to stop.");
    let _ = out.flush();
}

/// Prints a line on stdout, which may be gone (closed terminal): stopping must go on then.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// A future that completes once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn early_end(ended: Result<(String, anyhow::Result<()>), tokio::task::JoinError>) -> anyhow::Error {
    match ended {
        Ok((name, Ok(()))) => anyhow::anyhow!("{name} stopped unexpectedly"),
        Ok((name, Err(e))) => e.context(format!("{name} failed")),
        Err(e) => anyhow::anyhow!("a demo component panicked: {e}"),
    }
}

/// Waits for every component to end (they were told to stop), reporting the first failure.
async fn stop_all(components: &mut Components) -> anyhow::Result<()> {
    let mut first_error = None;
    let waited = tokio::time::timeout(STOP_GRACE, async {
        while let Some(ended) = components.join_next().await {
            let failure = match ended {
                Ok((_, Ok(()))) => None,
                Ok((name, Err(e))) => Some(e.context(format!("{name} failed while stopping"))),
                Err(e) => Some(anyhow::anyhow!("a demo component panicked: {e}")),
            };
            if let Some(e) = failure {
                tracing::error!("{e:#}");
                first_error.get_or_insert(e);
            }
        }
    })
    .await;
    if waited.is_err() {
        components.abort_all();
        anyhow::bail!(
            "components still running {}s after Ctrl-C were aborted",
            STOP_GRACE.as_secs()
        );
    }
    first_error.map_or(Ok(()), Err)
}
