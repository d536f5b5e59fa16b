//! The browser of the UI's end-to-end tests: Debian's chromedriver and headless Chromium
//! driven by fantoccini, the page steps several tests share (click, navigate, log in), and the
//! scene of `browser.rs`: a real server over a seeded database with a browser session.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use std::path::PathBuf;

use fantoccini::{Client, ClientBuilder, Locator};

use super::{settings, Fixture};

/// chromedriver in its own process group, killed with everything it started on drop.
pub struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Driver {
    // Test fixture: the browser driver is a process of its own.
    #[allow(clippy::disallowed_methods)]
    pub fn start() -> Self {
        use std::os::unix::process::CommandExt;
        let profile = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("chromedriver")
            .arg("--port=0")
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver) must be installed");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("chromedriver exited before it was ready")
                .unwrap();
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                break rest
                    .trim_end_matches('.')
                    .trim()
                    .parse()
                    .expect("port number");
            }
        };
        // Keep draining stdout so chromedriver never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            port,
            _profile: profile,
        }
    }

    pub async fn client(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--window-size=1280,1000",
                    format!("--user-data-dir={}", self._profile.path().display()),
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("webdriver session")
    }
}

impl Drop for Driver {
    // Test fixture: killing chromedriver leaves Chromium running, so kill the whole group.
    #[allow(clippy::disallowed_methods)]
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &group])
            .status();
        let _ = self.child.wait();
    }
}

/// Clicks the element matching `css`.
pub async fn click(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Clicks a button that submits a form or follows a link, and waits for the new page.
pub async fn navigate(browser: &Client, css: &str) {
    browser
        .execute("document.documentElement.dataset.stale = '1'", vec![])
        .await
        .unwrap();
    click(browser, css).await;
    for _ in 0..200 {
        let fresh = browser
            .execute(
                "return document.readyState === 'complete' \
                 && document.documentElement.dataset.stale === undefined",
                vec![],
            )
            .await
            .unwrap();
        if fresh == serde_json::Value::Bool(true) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("clicking {css} loaded no new page");
}

/// Opens `base`/login and submits the login form.
pub async fn log_in(browser: &Client, base: &str, user: &str, password: &str) {
    browser.goto(&format!("{base}/login")).await.unwrap();
    let form = browser.form(Locator::Css("form.login")).await.unwrap();
    form.set_by_name("username", user).await.unwrap();
    form.set_by_name("password", password).await.unwrap();
    navigate(browser, "form.login button[type=submit]").await;
}

/// A real server on a free port over a seeded database, with a browser session.
pub struct Scene {
    pub fx: Fixture,
    pub base: String,
    pub browser: Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), masif_ui::UiError>>>,
    _driver: Driver,
}

impl Scene {
    pub async fn new(prefix: &str) -> Self {
        let fx = Fixture::new(prefix).await;
        fx.seed().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(masif_ui::serve_with_listener(
            settings(),
            fx.store.clone(),
            listener,
            async {
                stopped.await.ok();
            },
        ));
        let driver = Driver::start();
        let browser = driver.client().await;
        Self {
            fx,
            base,
            browser,
            stop: Some(stop),
            server: Some(server),
            _driver: driver,
        }
    }

    pub async fn goto(&self, path: &str) {
        self.browser
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    pub async fn source(&self) -> String {
        self.browser.source().await.unwrap()
    }

    pub async fn path(&self) -> String {
        let url = self.browser.current_url().await.unwrap();
        url.as_str().trim_start_matches(&self.base).to_owned()
    }

    pub async fn click(&self, css: &str) {
        click(&self.browser, css).await;
    }

    /// Clicks a button that submits a form or follows a link, and waits for the new page.
    pub async fn navigate(&self, css: &str) {
        navigate(&self.browser, css).await;
    }

    pub async fn login_as(&self, user: &str, password: &str) {
        log_in(&self.browser, &self.base, user, password).await;
    }

    /// Ticks the checkbox whose label reads `label` inside the tbody of `package`.
    pub async fn tick(&self, value: &str) {
        let css = format!(
            "input[type=checkbox][value='{}']",
            value.replace('\'', "\\'")
        );
        self.click(&css).await;
    }

    pub async fn finish(mut self) {
        self.browser.clone().close().await.ok();
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
