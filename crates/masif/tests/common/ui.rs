//! The real UI in a test: served on plain HTTP with one user over the world's database
//! ([`World::start_ui`]), and driven as an administrator would with the [`super::browser`]:
//! pages read logged in, rows approved through the pending page's or an agent page's form.

#![allow(dead_code)]

use std::time::Duration;

use tokio::sync::oneshot;

use super::world::World;

/// The UI on plain HTTP with one user, serving the world's database.
pub struct Ui {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The UI user's name and password.
pub const UI_USER: &str = "e2e-admin";
pub const UI_PASSWORD: &str = "e2e-password";

impl World {
    /// Starts the UI on the world's database; agents not seen for `offline_after` are offline.
    pub async fn start_ui(&self, offline_after: Duration) -> Ui {
        let hash = bcrypt::hash(UI_PASSWORD, 4).unwrap();
        let users = masif_ui::Users::parse(&format!("{UI_USER}:{hash}\n")).unwrap();
        let mut settings = masif_ui::UiSettings::with_users(users);
        settings.offline_after = offline_after.as_secs();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let store = masif_store::open(&self.db_url.parse().unwrap())
            .await
            .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            masif_ui::serve_with_listener(settings, store, listener, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Ui {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

impl Ui {
    /// Logs in, then runs `visit` with the browser (blocking HTTP, so on a blocking thread).
    pub async fn visit<T: Send + 'static>(
        &self,
        visit: impl FnOnce(&mut super::browser::Browser) -> T + Send + 'static,
    ) -> T {
        let addr = self.addr.clone();
        tokio::task::spawn_blocking(move || {
            let mut browser = super::browser::Browser::new(&addr);
            browser.log_in(UI_USER, UI_PASSWORD);
            visit(&mut browser)
        })
        .await
        .unwrap()
    }

    /// GETs `path` (logged in) and returns the page, which must be a 200.
    pub async fn page(&self, path: &str) -> String {
        let path = path.to_owned();
        self.visit(move |browser| {
            let page = browser.get(&path);
            assert_eq!(page.status, 200, "{path}: {page:?}");
            page.body
        })
        .await
    }

    /// Ticks the pending page's rows `keys` (as in its checkboxes, e.g.
    /// `["alpha","update","2.0"]`) and presses "approve", as an administrator would.
    pub async fn approve(&self, keys: &[&str]) {
        self.approve_rows(keys, false).await;
    }

    /// [`Ui::approve`] with the form's "also approve what they need" box ticked, as the page
    /// renders it.
    pub async fn approve_with_needs(&self, keys: &[&str]) {
        self.approve_rows(keys, true).await;
    }

    /// Ticks rows `keys` on `agent`'s page and presses "Approve selection for this agent"
    /// (the rows' needs not ticked); returns when the form was posted (after the page was
    /// read).
    pub async fn approve_for_agent(&self, agent: &str, keys: &[&str]) -> std::time::SystemTime {
        let fields = [
            ("do", "approve-agents"),
            ("agent", agent),
            ("return", "agent"),
        ];
        self.post_approval(&format!("/agent?name={agent}"), keys, &fields)
            .await
    }

    async fn approve_rows(&self, keys: &[&str], with_needs: bool) {
        let fields: &[(&str, &str)] = match with_needs {
            true => &[("closure", "1"), ("do", "approve")],
            false => &[("do", "approve")],
        };
        self.post_approval("/", keys, fields).await;
    }

    /// Reads `page` for its form's CSRF token and posts rows `keys` with `fields` to
    /// `/approve`, which must answer with a redirect; returns when the form was posted.
    async fn post_approval(
        &self,
        page: &str,
        keys: &[&str],
        fields: &[(&str, &str)],
    ) -> std::time::SystemTime {
        let page = page.to_owned();
        let mut form: Vec<(String, String)> =
            keys.iter().map(|k| ("key".into(), k.to_string())).collect();
        form.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.visit(move |browser| {
            let page = browser.get(&page);
            let csrf = super::browser::hidden_field(&page.body, "csrf").expect("csrf");
            form.push(("csrf".into(), csrf));
            let form: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let posted = std::time::SystemTime::now();
            let answer = browser.post("/approve", &form);
            assert_eq!(answer.status, 303, "{answer:?}");
            posted
        })
        .await
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }
}
