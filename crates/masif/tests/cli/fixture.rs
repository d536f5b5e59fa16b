//! A real UI for the command line: `masif_ui::serve_with_listener` on a loopback port over an
//! SQLite file or a fresh MariaDB database seeded through the store, an API token file, and the
//! real `masif` binary run against it.

use std::path::PathBuf;
use std::sync::Arc;

use masif_proto::v2::Run;
use masif_proto::{AgentName, Task, TaskSet};
use masif_store::{Retention, Store};
use masif_testkit::db::TestDatabase;
pub use masif_testkit::tasks::{install, run, update};
use masif_ui::{ApiTokens, UiError, UiSettings, Users};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The API token of the tests and the name it acts as.
pub const TOKEN: &str = "cli-test-token-4f1c9a2e";
pub const TOKEN_NAME: &str = "ops";

/// What one run of `masif` did.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// The stdout as JSON (of `--json`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }

    /// Asserts exit 0 and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "{self:?}");
        &self.stdout
    }
}

/// How to serve the UI.
pub struct Options {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub offline_after: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            tls: None,
            offline_after: 900,
        }
    }
}

/// A UI serving on a loopback port.
pub struct Ui {
    pub store: Arc<dyn Store>,
    pub url: String,
    pub token_file: PathBuf,
    pub dir: tempfile::TempDir,
    pub db: Option<TestDatabase>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), UiError>>,
}

impl Ui {
    /// A UI over a fresh SQLite file.
    pub async fn sqlite(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = masif_store::DbUrl::sqlite(dir.path().join("masif.db"));
        let store = masif_store::open(&url).await.expect("open SQLite store");
        Self::start(store, dir, None, options).await
    }

    /// A UI over a fresh MariaDB database.
    pub async fn mariadb(prefix: &str, options: Options) -> Self {
        let db = TestDatabase::create(prefix).await;
        let store = masif_store::open(&db.url().parse().unwrap())
            .await
            .expect("open MariaDB store");
        Self::start(store, tempfile::tempdir().unwrap(), Some(db), options).await
    }

    async fn start(
        store: Arc<dyn Store>,
        dir: tempfile::TempDir,
        db: Option<TestDatabase>,
        options: Options,
    ) -> Self {
        let tokens = dir.path().join("tokens");
        let hash = bcrypt::hash(TOKEN, 4).unwrap();
        std::fs::write(&tokens, format!("{TOKEN_NAME}:{hash}\n")).unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        let mut settings = UiSettings::with_users(Users::default());
        settings.tokens = Some(Arc::new(ApiTokens::load(&tokens).expect("token file")));
        settings.offline_after = options.offline_after;
        let https = options.tls.is_some();
        settings.tls = options.tls;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(masif_ui::serve_with_listener(
            settings,
            store.clone(),
            listener,
            async {
                stopped.await.ok();
            },
        ));
        let url = match https {
            true => format!("https://localhost:{port}/"),
            false => format!("http://127.0.0.1:{port}/"),
        };
        Self {
            store,
            url,
            token_file,
            dir,
            db,
            stop,
            task,
        }
    }

    /// Runs `masif ARGS --url URL --token-file FILE`.
    pub async fn masif(&self, args: &[&str]) -> Out {
        let token_file = self.token_file.to_str().unwrap();
        let mut all = args.to_vec();
        all.extend(["--url", &self.url, "--token-file", token_file]);
        masif(&all, &[]).await
    }

    /// Reports `tasks` as agent `name` through the real report transaction.
    pub async fn report(&self, name: &str, tasks: Vec<Task>) {
        let set: TaskSet = tasks.into_iter().collect();
        self.store
            .report(&AgentName::new(name).unwrap(), &set)
            .await
            .expect("report");
    }

    /// Reports `tasks` as agent `name` with host facts (protocol v2) that put `security` (one of
    /// them) in the security archive.
    pub async fn report_security(&self, name: &str, security: Task, tasks: Vec<Task>) {
        self.report_securities(name, vec![security], tasks).await;
    }

    /// Reports `security` and `others` as agent `name`, the `security` ones from the security
    /// archive (host facts, protocol v2).
    pub async fn report_securities(&self, name: &str, security: Vec<Task>, others: Vec<Task>) {
        use masif_proto::facts::{Facts, Origin, TaskFacts};
        let origin = Origin::new("Debian-Security:12/stable-security").unwrap();
        let facts = Facts {
            tasks: security
                .iter()
                .map(|t| {
                    let facts = TaskFacts {
                        origin: Some(origin.clone()),
                        needs: TaskSet::default(),
                    };
                    (t.clone(), facts)
                })
                .collect(),
            ..Facts::default()
        };
        let set: TaskSet = security.into_iter().chain(others).collect();
        self.store
            .report_with_facts(&AgentName::new(name).unwrap(), &set, Some(&facts))
            .await
            .expect("report with facts");
    }

    /// Stores `runs` as agent `name`'s, as the master does.
    pub async fn record_runs(&self, name: &str, runs: &[Run]) {
        self.store
            .record_runs(&AgentName::new(name).unwrap(), runs, &Retention::default())
            .await
            .expect("record runs");
    }

    /// Runs `sql` on the MariaDB database, after what the store holds back is written.
    pub async fn sql(&self, sql: &str) {
        self.store.flush().await;
        self.db.as_ref().expect("a MariaDB UI").execute(sql).await;
    }

    pub async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// Runs the real `masif` binary with `args` and the extra environment `env` (MASIF_URL,
/// MASIF_TOKEN and MASIF_TOKEN_FILE cleared first).
#[allow(clippy::disallowed_methods)] // the binary under test
pub async fn masif(args: &[&str], env: &[(&str, &str)]) -> Out {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_masif"))
        .args(args)
        .env_remove("MASIF_URL")
        .env_remove("MASIF_TOKEN")
        .env_remove("MASIF_TOKEN_FILE")
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run masif");
    let out = Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("UTF-8 stderr"),
    };
    println!(
        "masif {args:?} -> {}\n{}{}",
        out.code, out.stdout, out.stderr
    );
    out
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
