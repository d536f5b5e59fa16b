//! End-to-end tests of `masif demo`: the real binary, real sandboxes with apt-get and dpkg, the
//! UI over plain HTTP (log in, approve with the form's CSRF token), the upgrade seen in the
//! sandbox's dpkg database, and Ctrl-C leaving no process, socket or directory behind.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Guards against hangs only (nothing asserts how fast anything is): a debug build on a busy
/// two-core machine makes sandboxes and runs apt slowly.
const PATIENCE: Duration = Duration::from_secs(300);

/// A running `masif demo` and what its banner said.
struct Demo {
    child: Child,
    ui: String,
    master: String,
    user: String,
    password: String,
    workdir: PathBuf,
    stdout: mpsc::Receiver<String>,
}

impl Demo {
    /// Starts `masif demo ARGS` and waits for the banner.
    fn start(args: &[&str]) -> Self {
        let (mut child, _stderr) = spawn_demo(args, &[]);
        let (tx, stdout) = mpsc::channel();
        let out = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                println!("demo> {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + PATIENCE;
        let mut banner = BTreeMap::new();
        while !banner.contains_key("Press Ctrl-C to stop.") {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match stdout.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    panic!("no banner from masif demo; status {:?}", child.wait());
                }
            };
            let (key, value) = line.split_once(": ").unwrap_or((line.as_str(), ""));
            banner.insert(key.to_owned(), value.to_owned());
        }
        let ui = banner["UI"].clone();
        assert!(
            ui.starts_with("http://127.0.0.1:") && ui.ends_with('/'),
            "UI line: {ui}"
        );
        let (user, password) = banner["login"]
            .split_once(" / ")
            .expect("login: USER / PASSWORD");
        let master = banner["master"]
            .split_whitespace()
            .next()
            .unwrap()
            .trim_start_matches("https://")
            .to_owned();
        let workdir = banner["work directory"]
            .rsplit_once(" (")
            .expect("work directory: PATH (…)")
            .0
            .into();
        Self {
            ui: ui
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned(),
            master,
            user: user.to_owned(),
            password: password.to_owned(),
            workdir,
            stdout,
            child,
        }
    }

    /// Presses Ctrl-C: SIGINT to the demo's whole process group, as a terminal sends it, and
    /// waits for the exit.
    fn interrupt(mut self) -> (ExitStatus, Vec<String>) {
        signal_group(self.child.id(), "-INT");
        let status = wait_with_patience(&mut self.child);
        let rest = self.stdout.try_iter().collect();
        (status, rest)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // A failed test must not leave a demo running.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts the demo binary; its stderr (logs) is relayed to the test output and returned, whole,
/// by the thread once the demo closes it.
#[allow(clippy::disallowed_methods)] // test fixture: runs the demo binary under test
fn spawn_demo(args: &[&str], env: &[(&str, &str)]) -> (Child, std::thread::JoinHandle<String>) {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(env!("CARGO_BIN_EXE_masif"))
        // Its own process group, like a job started from a shell.
        .process_group(0)
        .arg("demo")
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(|mut child| {
            let err = child.stderr.take().expect("piped stderr");
            let relay = std::thread::spawn(move || {
                let mut all = String::new();
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    eprintln!("demo! {line}");
                    all.push_str(&line);
                    all.push('\n');
                }
                all
            });
            (child, relay)
        })
        .expect("starting masif demo")
}

/// Sends signal `which` (`-INT`) to the process group led by `pid`.
#[allow(clippy::disallowed_methods)] // test fixture: kill(1) delivers the signal
fn signal_group(pid: u32, which: &str) {
    let group = format!("-{pid}");
    let status = std::process::Command::new("kill")
        .args([which, "--", &group])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill {which} -- {group}");
}

fn wait_with_patience(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for the demo") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("masif demo did not exit after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after [`PATIENCE`].
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A minimal HTTP/1.0 client with a cookie jar: one request per connection, the body read to
/// the end, no redirects followed.
struct Browser {
    addr: String,
    cookies: BTreeMap<String, String>,
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Browser {
    fn new(addr: &str) -> Self {
        Self {
            addr: addr.to_owned(),
            cookies: BTreeMap::new(),
        }
    }

    fn get(&mut self, path: &str) -> Response {
        self.send("GET", path, None)
    }

    fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Response {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
            .collect();
        self.send("POST", path, Some(body.join("&")))
    }

    fn send(&mut self, method: &str, path: &str, form: Option<String>) -> Response {
        let mut stream = TcpStream::connect(&self.addr).expect("connecting to the UI");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {}\r\n", self.addr);
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            request.push_str(&format!("Cookie: {}\r\n", jar.join("; ")));
        }
        if let Some(body) = &form {
            request.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        request.push_str(form.as_deref().unwrap_or(""));
        stream.write_all(request.as_bytes()).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("reading the response");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").expect("response head");
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        for (name, value) in &headers {
            if name.eq_ignore_ascii_case("set-cookie") {
                let pair = value.split(';').next().unwrap_or("");
                if let Some((k, v)) = pair.split_once('=') {
                    if v.is_empty() || value.contains("Max-Age=0") {
                        self.cookies.remove(k);
                    } else {
                        self.cookies.insert(k.to_owned(), v.to_owned());
                    }
                }
            }
        }
        Response {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    fn log_in(&mut self, user: &str, password: &str) {
        let page = self.get("/login");
        assert_eq!(page.status, 200, "{page:?}");
        let csrf = hidden_field(&page.body, "csrf").expect("login form csrf");
        let answer = self.post(
            "/login",
            &[("csrf", &csrf), ("username", user), ("password", password)],
        );
        assert_eq!(answer.status, 303, "login refused: {answer:?}");
        assert_eq!(answer.header("location"), Some("/"));
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#x3D;", "=")
        .replace("&#x60;", "`")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The `value` of the first `<input … name="NAME" value="…">` in `html`.
fn hidden_field(html: &str, name: &str) -> Option<String> {
    input_values(html, name).into_iter().next()
}

/// Every `value` of `<input … name="NAME" value="…">` in `html`, unescaped.
fn input_values(html: &str, name: &str) -> Vec<String> {
    let marker = format!("name=\"{name}\" value=\"");
    html.match_indices(&marker)
        .filter_map(|(i, _)| {
            let rest = &html[i + marker.len()..];
            rest.find('"').map(|end| html_unescape(&rest[..end]))
        })
        .collect()
}

/// The version of `package` in a dpkg status file, if installed.
fn installed_version(status_file: &Path, package: &str) -> Option<String> {
    let status = std::fs::read_to_string(status_file).ok()?;
    status.split("\n\n").find_map(|paragraph| {
        let field = |name: &str| {
            paragraph
                .lines()
                .find_map(|l| l.strip_prefix(name).map(str::trim))
        };
        (field("Package:") == Some(package)
            && field("Status:").is_some_and(|s| s.ends_with(" installed")))
        .then(|| field("Version:").map(str::to_owned))
        .flatten()
    })
}

fn sandbox_status(workdir: &Path, agent: &str) -> PathBuf {
    workdir.join(format!("agents/{agent}/sandbox/root/var/lib/dpkg/status"))
}

#[test]
fn approving_in_the_ui_upgrades_the_sandboxes() {
    let scratch = tempfile::tempdir().unwrap();
    let keep = scratch.path().join("demo");
    let demo = Demo::start(&[
        "--agents",
        "2",
        "--port",
        "0",
        "--keep",
        keep.to_str().unwrap(),
    ]);
    let agents = ["agent-01.masif-demo.test", "agent-02.masif-demo.test"];
    for agent in agents {
        let status = sandbox_status(&demo.workdir, agent);
        assert_eq!(installed_version(&status, "alpha").as_deref(), Some("1.0"));
        assert_eq!(installed_version(&status, "beta").as_deref(), Some("1.0"));
    }

    let mut browser = Browser::new(&demo.ui);
    // Not logged in: the pending page sends us to the login page.
    assert_eq!(browser.get("/").status, 303);
    browser.log_in(&demo.user, &demo.password);

    // Both agents report: upgrading alpha to 2.0 (apt's "Inst" and "Conf" lines, an update
    // and a configure task) awaits two agents.
    let alpha = [
        r#"["alpha","update","2.0"]"#,
        r#"["alpha","configure","2.0"]"#,
    ];
    let csrf = eventually("both agents awaiting the alpha upgrade", || {
        let page = browser.get("/");
        assert_eq!(page.status, 200, "{page:?}");
        let keys = input_values(&page.body, "key");
        let awaited_by_two = |key: &str| {
            let row = page.body.find(&html_escape_quotes(key))?;
            page.body[row..]
                .split("</tr>")
                .next()?
                .contains(">2<")
                .then_some(())
        };
        for key in alpha {
            keys.iter().find(|k| *k == key)?;
            awaited_by_two(key)?;
        }
        hidden_field(&page.body, "csrf")
    });
    fn form<'a>(keys: &[&'a str], csrf: Option<&'a str>) -> Vec<(&'static str, &'a str)> {
        let mut form: Vec<(&str, &str)> = keys.iter().map(|k| ("key", *k)).collect();
        form.push(("do", "approve"));
        form.extend(csrf.map(|c| ("csrf", c)));
        form
    }

    // A form without the CSRF token is refused and approves nothing.
    let forged = browser.post("/approve", &form(&alpha, None));
    assert_eq!(forged.status, 403, "{forged:?}");

    let approved = browser.post("/approve", &form(&alpha, Some(&csrf)));
    assert_eq!(approved.status, 303, "{approved:?}");
    assert!(
        approved
            .header("location")
            .is_some_and(|l| l.starts_with("/?approved=4")),
        "{approved:?}"
    );

    // The agents pick the approval up and upgrade alpha for real; beta (not approved, its
    // upgrade would install gamma) stays.
    for agent in agents {
        let status = sandbox_status(&demo.workdir, agent);
        eventually(&format!("alpha 2.0 installed on {agent}"), || {
            (installed_version(&status, "alpha").as_deref() == Some("2.0")).then_some(())
        });
        assert_eq!(installed_version(&status, "beta").as_deref(), Some("1.0"));
        assert_eq!(installed_version(&status, "gamma"), None);
    }

    let workdir = demo.workdir.clone();
    let (status, _) = demo.interrupt();
    assert!(status.success(), "{status:?}");
    // --keep: the directory and its database stay.
    assert!(workdir.join("masif.db").exists());
}

fn html_escape_quotes(s: &str) -> String {
    s.replace('"', "&quot;")
}

/// Every process (pid) whose parent chain leads to `ancestor`.
fn descendants(ancestor: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) state ppid …": comm may contain spaces, so split after the last ')'.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![ancestor];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// Processes whose command line or environment mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let text = String::from_utf8_lossy(&[cmdline, environ].concat()).replace('\0', " ");
            text.contains(needle).then_some((pid, text))
        })
        .collect()
}

/// Processes holding a socket that listens on TCP `port` (IPv4 or IPv6): the socket inodes from
/// /proc/net/tcp*, their owners from the /proc/PID/fd links.
fn tcp_listener_owners(port: u16) -> Vec<u32> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .flat_map(|table| {
            std::fs::read_to_string(table)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let cols: Vec<&str> = line.split_whitespace().collect();
                    let local_port = cols
                        .get(1)
                        .and_then(|a| a.rsplit_once(':'))
                        .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
                    (local_port == Some(port) && cols.get(3) == Some(&"0A"))
                        .then(|| format!("socket:[{}]", cols[9]))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .any(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
        })
        .collect()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

#[test]
fn ctrl_c_leaves_nothing_running() {
    let demo = Demo::start(&["--agents", "2", "--port", "0"]);
    let workdir = demo.workdir.clone();
    let needle = workdir.display().to_string();
    let (ui_port, master_port) = (port_of(&demo.ui), port_of(&demo.master));
    assert!(workdir.join("masif.db").exists());
    let demo_pid = demo.child.id();
    assert!(tcp_listener_owners(ui_port).contains(&demo_pid));
    assert!(tcp_listener_owners(master_port).contains(&demo_pid));
    // Let the agents get going (their first report reaches the database).
    let mut browser = Browser::new(&demo.ui);
    browser.log_in(&demo.user, &demo.password);
    eventually("agents listed in the UI", || {
        let page = browser.get("/agents");
        (page.body.contains("agent-01.masif-demo.test")
            && page.body.contains("agent-02.masif-demo.test"))
        .then_some(())
    });
    let mut ours = descendants(demo_pid);
    ours.push(demo_pid);

    let (status, rest) = demo.interrupt();
    assert!(status.success(), "{status:?}");
    assert!(rest.iter().any(|l| l == "stopping"), "{rest:?}");
    assert!(!workdir.exists(), "{} left behind", workdir.display());
    for &pid in &ours {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || processes_mentioning(&needle).iter().all(|(p, _)| *p != pid),
            "child process {pid} still running"
        );
    }
    assert_eq!(
        processes_mentioning(&needle),
        vec![],
        "processes left behind"
    );
    for port in [ui_port, master_port] {
        let owners = tcp_listener_owners(port);
        assert!(
            owners.iter().all(|p| !ours.contains(p)),
            "port {port} still listened on by {owners:?}"
        );
    }
    let unix = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    assert!(
        !unix.contains(&needle),
        "unix sockets left behind: {}",
        unix.lines()
            .filter(|l| l.contains(&needle))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn without_apt_and_dpkg_it_says_so_and_stops() {
    let scratch = tempfile::tempdir().unwrap();
    let empty_path = scratch.path().join("bin");
    std::fs::create_dir(&empty_path).unwrap();
    let keep = scratch.path().join("demo");
    let (mut child, stderr) = spawn_demo(
        &["--port", "0", "--keep", keep.to_str().unwrap()],
        &[("PATH", empty_path.to_str().unwrap())],
    );
    let status = wait_with_patience(&mut child);
    assert!(!status.success());
    let stderr = stderr.join().unwrap();
    assert!(
        stderr.contains("apt-get")
            && stderr.contains("dpkg")
            && stderr.contains("not found in PATH"),
        "{stderr}"
    );
    assert!(!keep.exists(), "nothing is created");
}

#[test]
fn a_non_empty_keep_directory_is_refused_untouched() {
    let scratch = tempfile::tempdir().unwrap();
    std::fs::write(scratch.path().join("precious"), "data").unwrap();
    let (mut child, stderr) = spawn_demo(
        &["--port", "0", "--keep", scratch.path().to_str().unwrap()],
        &[],
    );
    let status = wait_with_patience(&mut child);
    assert!(!status.success());
    let stderr = stderr.join().unwrap();
    assert!(stderr.contains("not empty"), "{stderr}");
    let entries: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        std::fs::read_to_string(scratch.path().join("precious")).unwrap(),
        "data"
    );
}

#[test]
fn ctrl_c_while_sandboxes_are_built_stops_cleanly() {
    let (mut child, stderr) = spawn_demo(&["--agents", "3", "--port", "0"], &[]);
    // Wait until the demo runs a tool (dpkg-deb, dpkg-scanpackages, apt-get …) of a build.
    eventually("a sandbox build running", || {
        (!descendants(child.id()).is_empty()).then_some(())
    });
    signal_group(child.id(), "-INT");
    let status = wait_with_patience(&mut child);
    assert!(status.success(), "{status:?}");
    let stderr = stderr.join().unwrap();
    let workdir = stderr
        .lines()
        .find_map(|l| {
            l.split_once("work directory ")
                .map(|(_, d)| d.trim().to_owned())
        })
        .expect("the demo logs its work directory");
    assert!(!Path::new(&workdir).exists(), "{workdir} left behind");
    assert_eq!(
        processes_mentioning(&workdir),
        vec![],
        "processes left behind"
    );
}

#[test]
fn bad_options_are_refused_before_anything_starts() {
    let scratch = tempfile::tempdir().unwrap();
    let keep = scratch.path().join("demo");
    let keep = keep.to_str().unwrap();
    for args in [
        vec!["--agents", "0", "--keep", keep],
        vec!["--agents", "51", "--keep", keep],
        vec!["--agents", "-3", "--keep", keep],
        vec!["--port", "65536", "--keep", keep],
        vec!["--port", "http", "--keep", keep],
        vec!["--keep", keep, "--bogus"],
    ] {
        let (mut child, stderr) = spawn_demo(&args, &[]);
        let status = wait_with_patience(&mut child);
        let stderr = stderr.join().unwrap();
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("error:"), "{args:?}: {stderr}");
        assert!(!Path::new(keep).exists(), "{args:?} created {keep}");
    }
}

#[test]
fn a_hangup_or_sigterm_stops_it_as_cleanly_as_ctrl_c() {
    for signal in ["-HUP", "-TERM"] {
        let mut demo = Demo::start(&["--agents", "1", "--port", "0"]);
        let workdir = demo.workdir.clone();
        signal_group(demo.child.id(), signal);
        let status = wait_with_patience(&mut demo.child);
        assert!(status.success(), "{signal}: {status:?}");
        assert!(
            !workdir.exists(),
            "{signal}: {} left behind",
            workdir.display()
        );
        assert_eq!(
            processes_mentioning(&workdir.display().to_string()),
            vec![],
            "{signal}: processes left behind"
        );
    }
}
