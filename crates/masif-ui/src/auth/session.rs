//! Login sessions kept in memory (random ids, idle and absolute expiry) and CSRF tokens derived from a
//! per-process secret, so a token is bound to one session, one proxy user or one login form.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Most sessions kept at once; past it the least recently used ones are dropped.
const MAX_SESSIONS: usize = 10_000;

struct Entry {
    user: String,
    /// Idle expiry, pushed back by every request, never past `ends`.
    expires: Instant,
    /// Absolute expiry.
    ends: Instant,
}

/// Sessions by id, plus the secret CSRF tokens are derived from.
pub(crate) struct Sessions {
    secret: [u8; 32],
    /// Idle lifetime.
    ttl: Duration,
    /// Absolute lifetime, from the login.
    lifetime: Duration,
    map: Mutex<HashMap<String, Entry>>,
}

impl Sessions {
    pub(crate) fn new(ttl: Duration, lifetime: Duration) -> Self {
        Self {
            secret: rand::random(),
            ttl,
            lifetime,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a session for `user` and returns its id (256 random bits, hex: never one in use
    /// or presented before, so a planted id cannot become a session).
    pub(crate) fn create(&self, user: &str) -> String {
        let id = random_token();
        let now = Instant::now();
        let mut map = self.map.lock().expect("session map poisoned");
        map.retain(|_, e| e.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.expires)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            id.clone(),
            Entry {
                user: user.to_owned(),
                expires: now + self.ttl.min(self.lifetime),
                ends: now + self.lifetime,
            },
        );
        id
    }

    /// The user of a live session, extending its idle lifetime (never past its absolute one);
    /// `None` if unknown or expired.
    pub(crate) fn user(&self, id: &str) -> Option<String> {
        let now = Instant::now();
        let mut map = self.map.lock().expect("session map poisoned");
        match map.get_mut(id) {
            Some(e) if e.expires > now => {
                e.expires = (now + self.ttl).min(e.ends);
                Some(e.user.clone())
            }
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    pub(crate) fn remove(&self, id: &str) {
        self.map.lock().expect("session map poisoned").remove(id);
    }

    /// The CSRF token of a scope (`s:` + session id, `u:` + proxy user, `l:` + login nonce).
    pub(crate) fn csrf_token(&self, scope: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(scope.as_bytes());
        hex(&h.finalize())
    }

    /// Whether `given` is the token of `scope`, compared in constant time.
    pub(crate) fn csrf_ok(&self, scope: &str, given: &str) -> bool {
        let want = self.csrf_token(scope);
        want.len() == given.len()
            && want
                .bytes()
                .zip(given.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// 256 random bits as hex.
pub(crate) fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_live_until_removed_or_expired() {
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(600));
        let id = s.create("alice");
        assert_eq!(id.len(), 64);
        assert_eq!(s.user(&id).as_deref(), Some("alice"));
        assert_eq!(s.user("nonsense"), None);
        s.remove(&id);
        assert_eq!(s.user(&id), None);

        let expired = Sessions::new(Duration::ZERO, Duration::from_secs(600));
        let id = expired.create("bob");
        assert_eq!(expired.user(&id), None);

        let ended = Sessions::new(Duration::from_secs(60), Duration::ZERO);
        let id = ended.create("carol");
        assert_eq!(ended.user(&id), None);
    }

    #[test]
    fn csrf_tokens_are_bound_to_scope_and_process() {
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(600));
        let t = s.csrf_token("s:abc");
        assert!(s.csrf_ok("s:abc", &t));
        assert!(!s.csrf_ok("s:abd", &t));
        assert!(!s.csrf_ok("s:abc", ""));
        assert!(!s.csrf_ok("s:abc", &t[..10]));
        let other = Sessions::new(Duration::from_secs(60), Duration::from_secs(600));
        assert!(!other.csrf_ok("s:abc", &t));
    }

    #[test]
    fn the_session_table_is_bounded() {
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(600));
        for _ in 0..MAX_SESSIONS + 5 {
            s.create("mallory");
        }
        assert!(s.map.lock().unwrap().len() <= MAX_SESSIONS);
    }
}
