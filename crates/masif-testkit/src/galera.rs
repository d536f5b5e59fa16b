//! A 3-node MariaDB Galera cluster for tests: the shared one CI starts (`MASIF_TEST_GALERA_URLS`,
//! see `scripts/test-all.sh`), or one of the test's own started with `scripts/galera.sh` on free
//! ports (for tests that kill nodes, or when the variable is unset), and a fresh uniquely named
//! database on it, created through one node, visible on all, dropped afterwards.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use tempfile::TempDir;

/// The environment variable naming the shared cluster: the nodes' server URLs
/// (`mysql://root@127.0.0.1:PORT`), comma-separated.
pub const URLS_VAR: &str = "MASIF_TEST_GALERA_URLS";

/// How long a cluster may take to start or a database to appear on every node (a guard
/// against hangs on a busy machine, not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(180);

/// A running cluster: its nodes' server URLs (no database), node 1 first.
pub struct Cluster {
    urls: Vec<String>,
    own: Option<OwnCluster>,
}

/// A cluster this process started: its directory (data, pid files, logs) and base port.
struct OwnCluster {
    dir: TempDir,
    base: u16,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("urls", &self.urls)
            .field("own", &self.own.as_ref().map(|o| o.base))
            .finish()
    }
}

impl Cluster {
    /// The shared cluster of `MASIF_TEST_GALERA_URLS`, or, when that is unset, a cluster of
    /// this test's own (about 15 s to start; stopped when dropped). Panics, saying how to start
    /// one, when neither works: a Galera test never passes without a cluster.
    pub async fn shared() -> Self {
        match std::env::var(URLS_VAR) {
            Ok(list) if !list.trim().is_empty() => {
                let urls = parse_urls(&list).unwrap_or_else(|e| panic!("{e}"));
                let cluster = Self { urls, own: None };
                cluster.wait_for_size(3).await;
                cluster
            }
            _ => {
                eprintln!("{URLS_VAR} is unset: starting a Galera cluster of this test's own");
                Self::start_own().await
            }
        }
    }

    /// A cluster of the caller's own on free ports, which it may break ([`Cluster::kill_node`])
    /// without harm to other tests; stopped and removed when dropped.
    pub async fn start_own() -> Self {
        tokio::task::spawn_blocking(Self::start_own_blocking)
            .await
            .expect("starting the cluster")
    }

    fn start_own_blocking() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("masif-galera-")
            .tempdir()
            .expect("temporary directory");
        // The nodes run as `mysql`: it must reach the data directories below this one.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod the cluster's directory");
        let base = free_base_port();
        let out = script()
            .args([
                "start",
                &path_str(&dir.path().join("cluster")),
                &base.to_string(),
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script_path().display()));
        let own = OwnCluster { dir, base };
        let urls: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("mysql://"))
            .map(str::to_owned)
            .collect();
        let cluster = Self {
            urls,
            own: Some(own),
        };
        assert!(
            out.status.success() && cluster.urls.len() == 3,
            "scripts/galera.sh start failed ({}): needs root, mariadb-server (galera-4) and rsync\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    /// The nodes' server URLs (no database), node 1 first.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Kills node `n` (1 to 3) with SIGKILL, as a crash would, and waits until it is gone.
    /// Only on a cluster of this test's own.
    pub fn kill_node(&self, n: usize) {
        let own = self
            .own
            .as_ref()
            .expect("kill_node: only on a cluster of the test's own (Cluster::start_own)");
        kill_pid_file(&own.node_dir(n).join("mysqld.pid"));
    }

    /// Cuts node `n` off from the other two (`gmcast.isolate`), as a network partition would:
    /// it leaves the primary component, `wsrep_ready` goes OFF and every statement there fails
    /// with 1047. Returns once it does (about 5 s). Only on a cluster of this test's own.
    pub async fn isolate_node(&self, n: usize) {
        self.set_isolated(n, true).await;
        self.wait_for_ready(n, "OFF").await;
    }

    /// Ends [`Cluster::isolate_node`]: node `n` rejoins, catches up (IST) and is ready again.
    pub async fn rejoin_node(&self, n: usize) {
        self.set_isolated(n, false).await;
        self.wait_for_ready(n, "ON").await;
        self.wait_for_size(3).await;
    }

    async fn set_isolated(&self, n: usize, isolated: bool) {
        assert!(
            self.own.is_some(),
            "isolate_node: only on a cluster of the test's own (Cluster::start_own)"
        );
        let url = &self.urls[n - 1];
        let mut conn = mysql_async::Conn::from_url(url)
            .await
            .unwrap_or_else(|e| panic!("Galera node {n}: {e}"));
        conn.query_drop(format!(
            "SET GLOBAL wsrep_provider_options = 'gmcast.isolate={}'",
            u8::from(isolated)
        ))
        .await
        .expect("gmcast.isolate");
        conn.disconnect().await.ok();
    }

    async fn wait_for_ready(&self, n: usize, ready: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let now = status_value(&self.urls[n - 1], "wsrep_ready").await;
            if now.as_ref().is_ok_and(|v| v.as_deref() == Some(ready)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {n}: wsrep_ready never {ready} (last: {now:?})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until some node that answers sees a cluster of `size` members (after a kill: the
    /// others have noticed, about 5 s).
    pub async fn wait_for_size(&self, size: u64) {
        let deadline = Instant::now() + PATIENCE;
        let mut last = String::new();
        loop {
            for url in &self.urls {
                match status_value(url, "wsrep_cluster_size").await {
                    Ok(Some(v)) if v == size.to_string() => return,
                    Ok(v) => last = format!("{url}: wsrep_cluster_size {v:?}"),
                    Err(e) => last = format!("{url}: {e}"),
                }
            }
            assert!(
                Instant::now() < deadline,
                "the Galera cluster never had {size} members (last: {last}); \
                 start it with `scripts/galera.sh start DIR` and export {URLS_VAR}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl OwnCluster {
    fn node_dir(&self, n: usize) -> PathBuf {
        assert!((1..=3).contains(&n), "nodes are 1 to 3, not {n}");
        self.dir.path().join(format!("cluster/node{n}"))
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        // A throwaway: no clean shutdown needed, its data directories go with it.
        for n in 1..=3 {
            kill_pid_file(&self.node_dir(n).join("mysqld.pid"));
        }
    }
}

/// A database that exists on the cluster for the lifetime of this value.
#[derive(Debug)]
pub struct GaleraDatabase {
    servers: Vec<String>,
    name: String,
}

impl GaleraDatabase {
    /// Creates `masif_galera_<prefix>_<pid>_<n>_<time>` through node 1 and returns once every
    /// node has it.
    pub async fn create(cluster: &Cluster, prefix: &str) -> Self {
        let name = crate::db::unique_name("masif_galera", prefix);
        let servers = cluster.urls.clone();
        let mut conn = mysql_async::Conn::from_url(&servers[0])
            .await
            .unwrap_or_else(|e| panic!("Galera node 1 ({}): {e}", servers[0]));
        conn.query_drop(format!("CREATE DATABASE `{name}`"))
            .await
            .expect("create test database");
        conn.disconnect().await.ok();
        let deadline = Instant::now() + PATIENCE;
        for server in &servers {
            loop {
                let mut conn = mysql_async::Conn::from_url(server)
                    .await
                    .unwrap_or_else(|e| panic!("Galera node {server}: {e}"));
                let found: Option<String> = conn
                    .exec_first(
                        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                        (&name,),
                    )
                    .await
                    .expect("read the schemata");
                conn.disconnect().await.ok();
                if found.is_some() {
                    break;
                }
                assert!(Instant::now() < deadline, "{name} never reached {server}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Self { servers, name }
    }

    /// URL of this database on node `n` (1 to 3).
    pub fn url(&self, n: usize) -> String {
        assert!((1..=3).contains(&n), "nodes are 1 to 3, not {n}");
        format!("{}/{}", self.servers[n - 1], self.name)
    }

    /// URLs of this database on the nodes in `order` (node numbers), as `db.urls` lists them.
    pub fn urls(&self, order: &[usize]) -> Vec<String> {
        order.iter().map(|&n| self.url(n)).collect()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Rows of `sql` (bound `params`) read through node `n`, after that node has applied
    /// everything committed anywhere in the cluster (`wsrep_sync_wait`).
    pub async fn query_on<T, P>(&self, n: usize, sql: &str, params: P) -> Vec<T>
    where
        T: mysql_async::prelude::FromRow + Send + 'static,
        P: Into<mysql_async::Params> + Send,
    {
        let mut conn = mysql_async::Conn::from_url(self.url(n))
            .await
            .unwrap_or_else(|e| panic!("Galera node {n}: {e}"));
        conn.query_drop("SET SESSION wsrep_sync_wait = 1")
            .await
            .expect("wsrep_sync_wait");
        let rows = conn
            .exec(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        conn.disconnect().await.ok();
        rows
    }
}

/// Node `n` holding back what the others commit, as a node that lags behind: a session of
/// its own holds `FLUSH TABLES WITH READ LOCK`, which pauses the node's applying (it reads
/// `Donor/Desynced`) until [`Lagging::catch_up`]. Reads there without `wsrep_sync_wait` see
/// the past; with it they wait.
pub struct Lagging {
    conn: mysql_async::Conn,
}

impl Lagging {
    /// Holds node `n` of `db`'s cluster back.
    pub async fn start(db: &GaleraDatabase, n: usize) -> Self {
        let mut conn = mysql_async::Conn::from_url(db.url(n))
            .await
            .unwrap_or_else(|e| panic!("Galera node {n}: {e}"));
        conn.query_drop("FLUSH TABLES WITH READ LOCK")
            .await
            .expect("FLUSH TABLES WITH READ LOCK");
        Self { conn }
    }

    /// Lets the node apply what it held back.
    pub async fn catch_up(mut self) {
        self.conn
            .query_drop("UNLOCK TABLES")
            .await
            .expect("UNLOCK TABLES");
        self.conn.disconnect().await.ok();
    }
}

impl Drop for GaleraDatabase {
    fn drop(&mut self) {
        if !crate::db::drop_database(&self.servers, &self.name) {
            eprintln!("could not drop test database {} on the cluster", self.name);
        }
    }
}

/// The server URLs of `MASIF_TEST_GALERA_URLS`: three `mysql://` URLs without a database,
/// comma-separated.
fn parse_urls(list: &str) -> Result<Vec<String>, String> {
    let urls: Vec<String> = list
        .split(',')
        .map(|u| u.trim().trim_end_matches('/').to_owned())
        .collect();
    let bad = |why: &str| Err(format!("{URLS_VAR}: {why}; it is {list:?}"));
    if urls.len() != 3 || urls.iter().any(String::is_empty) {
        return bad("list the 3 nodes' URLs, comma-separated");
    }
    match urls.iter().find(|u| {
        let rest = u.strip_prefix("mysql://").unwrap_or("/");
        rest.contains('/') || rest.contains('?')
    }) {
        Some(url) => bad(&format!(
            "{url:?} is not a mysql:// URL of a server (no database)"
        )),
        None => Ok(urls),
    }
}

/// `SHOW STATUS LIKE 'NAME'` on the server at `url`, within a few seconds.
async fn status_value(url: &str, name: &str) -> Result<Option<String>, String> {
    let ask = async {
        let mut conn = mysql_async::Conn::from_url(url)
            .await
            .map_err(|e| e.to_string())?;
        let row: Option<(String, String)> = conn
            .query_first(format!("SHOW STATUS LIKE '{name}'"))
            .await
            .map_err(|e| e.to_string())?;
        conn.disconnect().await.ok();
        Ok(row.map(|(_, v)| v))
    };
    tokio::time::timeout(Duration::from_secs(5), ask)
        .await
        .unwrap_or_else(|_| Err("no answer within 5 s".into()))
}

fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/galera.sh")
}

/// `scripts/galera.sh`. Test fixture: the cluster's nodes are processes of their own.
#[allow(clippy::disallowed_methods)]
fn script() -> Command {
    let mut command = Command::new("bash");
    command.arg(script_path());
    command
}

fn path_str(path: &Path) -> String {
    path.to_str().expect("a UTF-8 temporary path").to_owned()
}

/// A base port for `scripts/galera.sh` whose twelve ports (base + 1…3, +11…13, +21…23,
/// +31…33) are free, below the kernel's ephemeral range so outgoing connections do not take
/// them meanwhile; picked at random so that concurrent tests rarely try the same.
fn free_base_port() -> u16 {
    let mut seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as u64;
    for _ in 0..200 {
        // xorshift: enough to spread the tries.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let base = 20_000 + 40 * (seed % 300) as u16;
        let ports = [1, 2, 3, 11, 12, 13, 21, 22, 23, 31, 32, 33].map(|o| base + o);
        if ports
            .iter()
            .all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        {
            return base;
        }
    }
    panic!("no free ports for a Galera cluster between 20000 and 32000");
}

/// SIGKILLs the process of a pid file, if it runs, and waits until it is gone.
#[allow(clippy::disallowed_methods)] // test fixture: kill(1) delivers the signal
fn kill_pid_file(pid_file: &Path) {
    let Ok(text) = std::fs::read_to_string(pid_file) else {
        return;
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return;
    };
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + PATIENCE;
    // Gone, or a zombie its parent (init) has yet to reap.
    while proc_dir.exists()
        && !std::fs::read_to_string(proc_dir.join("stat")).is_ok_and(|s| s.contains(") Z "))
    {
        assert!(Instant::now() < deadline, "process {pid} survived SIGKILL");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_urls_variable_lists_three_servers() {
        let urls = parse_urls(" mysql://root@127.0.0.1:34061/,mysql://root@127.0.0.1:34062 ,mysql://root@127.0.0.1:34063")
            .unwrap();
        assert_eq!(
            urls,
            [
                "mysql://root@127.0.0.1:34061",
                "mysql://root@127.0.0.1:34062",
                "mysql://root@127.0.0.1:34063"
            ]
        );
        for (bad, says) in [
            ("mysql://a:1,mysql://b:2", "list the 3 nodes"),
            ("mysql://a:1,,mysql://b:2", "list the 3 nodes"),
            (
                "mysql://a:1,mysql://b:2,mysql://c:3,mysql://d:4",
                "list the 3 nodes",
            ),
            (
                "mysql://a:1,mysql://b:2,postgres://c:3",
                "\"postgres://c:3\" is not",
            ),
            (
                "mysql://a:1,mysql://b:2/db,mysql://c:3",
                "\"mysql://b:2/db\" is not",
            ),
        ] {
            let error = parse_urls(bad).unwrap_err();
            assert!(
                error.starts_with(URLS_VAR) && error.contains(says),
                "{bad}: {error}"
            );
        }
    }
}
