//! The JSON API over real HTTP: a UI served on a loopback port with a token file, a small
//! HTTP/1.1 client (raw, so tests can send malformed headers and bodies), and logging in to
//! get a session cookie and its CSRF token.

use std::io::Write;
use std::sync::Arc;

use masif_store::Store;
use masif_ui::{ApiTokens, UiSettings};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::served::Served;
use super::{cookie_pair, csrf_of, enc, settings, PASSWORD, USER};

/// The token of the line `ci` of the test token file.
pub const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub const TOKEN_NAME: &str = "ci";

/// A token file with [`TOKEN_NAME`]:bcrypt([`TOKEN`]) and a comment.
pub fn token_file() -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    let hash = bcrypt::hash(TOKEN, 4).unwrap().replacen("$2b$", "$2y$", 1);
    writeln!(f, "# API tokens\n{TOKEN_NAME}:{hash}").unwrap();
    f
}

/// The test settings plus the token file.
pub fn api_settings(tokens: &tempfile::NamedTempFile) -> UiSettings {
    UiSettings {
        tokens: Some(Arc::new(ApiTokens::load(tokens.path()).unwrap())),
        ..settings()
    }
}

/// A UI served with tokens over `store`.
pub async fn serve(store: Arc<dyn Store>) -> (Served, tempfile::NamedTempFile) {
    let tokens = token_file();
    let served = Served::start(api_settings(&tokens), store).await;
    (served, tokens)
}

/// An answer: status, headers (lowercase names) and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    /// The `error` of a JSON error answer with `status`.
    pub fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.header("content-type"), Some("application/json"));
        self.json()["error"].as_str().unwrap().to_owned()
    }
}

/// Sends one request (`Connection: close`) and reads the whole answer.
pub async fn send(
    served: &Served,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: masif\r\nConnection: close\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut tcp = tokio::net::TcpStream::connect(served.addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) before reading a large body.
    let _ = tcp.write_all(body).await;
    let mut raw = Vec::new();
    let _ = tcp.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// `GET path` with the test token.
pub async fn get(served: &Served, path: &str) -> Answer {
    send(
        served,
        "GET",
        path,
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        b"",
    )
    .await
}

/// `POST path` with the test token and a JSON body.
pub async fn post(served: &Served, path: &str, body: &Value) -> Answer {
    send(
        served,
        "POST",
        path,
        &[
            ("Authorization", &format!("Bearer {TOKEN}")),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
    .await
}

/// `DELETE path` with the test token.
pub async fn delete(served: &Served, path: &str) -> Answer {
    send(
        served,
        "DELETE",
        path,
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        b"",
    )
    .await
}

/// Logs in through the form: the session cookie (`name=value`) and its CSRF token.
pub async fn login(served: &Served) -> (String, String) {
    let page = send(served, "GET", "/login", &[], b"").await;
    let nonce = cookie_pair(page.header("set-cookie").unwrap());
    let csrf = csrf_of(&page.body);
    let form = format!("csrf={csrf}&username={USER}&password={}", enc(PASSWORD));
    let r = send(
        served,
        "POST",
        "/login",
        &[
            ("Cookie", &nonce),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        form.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let session = cookie_pair(r.header("set-cookie").unwrap());
    let front = send(served, "GET", "/", &[("Cookie", &session)], b"").await;
    assert_eq!(front.status, 200);
    (session, csrf_of(&front.body))
}

/// An agent name.
pub fn agent(name: &str) -> masif_proto::AgentName {
    masif_proto::AgentName::new(name).unwrap()
}
