//! A minimal HTTP/1.0 client for the demo's UI (cookies, forms) and the HTML helpers that
//! read its pages.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;

use super::PATIENCE;

/// A minimal HTTP/1.0 client with a cookie jar: one request per connection, the body read to
/// the end, no redirects followed.
pub struct Browser {
    addr: String,
    cookies: BTreeMap<String, String>,
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Browser {
    pub fn new(addr: &str) -> Self {
        Self {
            addr: addr.to_owned(),
            cookies: BTreeMap::new(),
        }
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.send("GET", path, None)
    }

    /// Where a `POST /approve` answer sends the browser once the approval is done: a large
    /// or slow one goes to its progress page first, which redirects to the result when done.
    pub fn approval_result(&mut self, answer: &Response) -> String {
        let mut location = answer.header("location").unwrap_or_default().to_owned();
        let deadline = std::time::Instant::now() + PATIENCE;
        while location.starts_with("/approving") {
            assert!(
                std::time::Instant::now() < deadline,
                "approval still running"
            );
            let page = self.get(&location);
            if page.status == 303 {
                location = page.header("location").unwrap_or_default().to_owned();
            } else {
                assert_eq!(page.status, 200, "{page:?}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        location
    }

    pub fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Response {
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

    pub fn log_in(&mut self, user: &str, password: &str) {
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

pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn html_unescape(s: &str) -> String {
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
pub fn hidden_field(html: &str, name: &str) -> Option<String> {
    input_values(html, name).into_iter().next()
}

/// Every `value` of `<input … name="NAME" value="…">` in `html`, unescaped.
pub fn input_values(html: &str, name: &str) -> Vec<String> {
    let marker = format!("name=\"{name}\" value=\"");
    html.match_indices(&marker)
        .filter_map(|(i, _)| {
            let rest = &html[i + marker.len()..];
            rest.find('"').map(|end| html_unescape(&rest[..end]))
        })
        .collect()
}

pub fn html_escape_quotes(s: &str) -> String {
    s.replace('"', "&quot;")
}
