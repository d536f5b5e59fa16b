//! The UI's routes driven in-process with `warp::test` (no sockets): a UI over a seeded
//! database, requests from a fixed local address, replies with status, headers and body,
//! and a logged-in session with its CSRF token.

use masif_ui::{ClientAddr, UiSettings};
use warp::http::StatusCode;
use warp::Filter;

use super::{cookie_pair, csrf_of, enc, Fixture, PASSWORD, USER};

pub const LOCAL: &str = "127.0.0.1:40000";

/// A UI over a seeded database, driven in-process.
pub struct Ui<F> {
    pub fx: Fixture,
    pub routes: F,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: warp::http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
}

pub async fn ui(
    prefix: &str,
    settings: UiSettings,
) -> Ui<
    impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone + 'static,
> {
    let fx = Fixture::new(prefix).await;
    fx.seed().await;
    let routes = masif_ui::routes(&settings, fx.store.clone()).unwrap();
    Ui { fx, routes }
}

impl<F> Ui<F>
where
    F: Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible>
        + Clone
        + 'static,
{
    pub async fn send(&self, req: warp::test::RequestBuilder) -> Reply {
        self.send_from(LOCAL, req).await
    }

    /// Sends `req` as if from TCP peer `addr` (`IP:port`).
    pub async fn send_from(&self, addr: &str, req: warp::test::RequestBuilder) -> Reply {
        let r = req
            .extension(ClientAddr(addr.parse().unwrap()))
            .reply(&self.routes)
            .await;
        Reply {
            status: r.status(),
            headers: r.headers().clone(),
            body: String::from_utf8_lossy(r.body()).into_owned(),
        }
    }

    pub async fn get(&self, path: &str, cookie: &str) -> Reply {
        self.send(
            warp::test::request()
                .method("GET")
                .path(path)
                .header("cookie", cookie),
        )
        .await
    }

    pub async fn post(&self, path: &str, cookie: &str, body: &str) -> Reply {
        self.send(
            warp::test::request()
                .method("POST")
                .path(path)
                .header("cookie", cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
        )
        .await
    }

    /// A login form: its nonce cookie (`name=value`) and CSRF token.
    pub async fn login_form(&self) -> (String, String) {
        let page = self.get("/login", "").await;
        assert_eq!(page.status, StatusCode::OK);
        (cookie_pair(&page.set_cookies()[0]), csrf_of(&page.body))
    }

    /// Submits the login form from `addr` with `cookie` (the form's nonce, maybe a session).
    pub async fn try_login(
        &self,
        addr: &str,
        cookie: &str,
        csrf: &str,
        user: &str,
        password: &str,
    ) -> Reply {
        self.send_from(
            addr,
            warp::test::request()
                .method("POST")
                .path("/login")
                .header("cookie", cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!(
                    "csrf={csrf}&username={}&password={}",
                    enc(user),
                    enc(password)
                )),
        )
        .await
    }

    /// Logs in and returns the session cookie and the session's CSRF token.
    pub async fn login(&self) -> (String, String) {
        let page = self.get("/login", "").await;
        assert_eq!(page.status, StatusCode::OK);
        let nonce = cookie_pair(&page.set_cookies()[0]);
        let csrf = csrf_of(&page.body);
        let r = self
            .post(
                "/login",
                &nonce,
                &format!("csrf={csrf}&username={USER}&password={}", enc(PASSWORD)),
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        assert_eq!(r.location(), "/");
        let session = cookie_pair(&r.set_cookies()[0]);
        let front = self.get("/", &session).await;
        assert_eq!(front.status, StatusCode::OK);
        let token = csrf_of(&front.body);
        (session, token)
    }
}
