//! The demo's one UI user: a fixed name and a fresh random password, hashed with bcrypt the way
//! `htpasswd -B` does, so the UI checks it exactly like a configured user; and one API token
//! for the `masif` command line, in files of the work directory as `auth.tokens` would name.

use std::path::{Path, PathBuf};

use anyhow::Context;
use masif_ui::{ApiTokens, Users};
use rand::distr::{Alphanumeric, SampleString};

/// The demo user's name.
pub const USER: &str = "admin";

/// bcrypt cost of the throwaway password: cheap, since it lives only as long as the demo.
const BCRYPT_COST: u32 = 6;

/// The login printed at start-up and the user list the UI checks it against.
#[derive(Debug)]
pub(super) struct DemoLogin {
    pub password: String,
    pub users: Users,
}

impl DemoLogin {
    pub(super) fn generate() -> anyhow::Result<Self> {
        let password = Alphanumeric.sample_string(&mut rand::rng(), 16);
        let hash = bcrypt::hash(&password, BCRYPT_COST).context("hashing the demo password")?;
        let users = Users::parse(&format!("{USER}:{hash}\n"))
            .map_err(|e| anyhow::anyhow!("demo htpasswd: {e}"))?;
        Ok(Self { password, users })
    }
}

/// The API token's name in the audit log (`token:cli`).
const TOKEN_NAME: &str = "cli";

/// The demo's API token: the file `masif --token-file` reads and the tokens the UI checks.
#[derive(Debug)]
pub(super) struct DemoToken {
    pub file: PathBuf,
    pub tokens: ApiTokens,
}

impl DemoToken {
    /// Writes `DIR/api-token` (the secret, mode 0600) and `DIR/api-tokens` (`cli:HASH`).
    pub(super) fn create(dir: &Path) -> anyhow::Result<Self> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let token = Alphanumeric.sample_string(&mut rand::rng(), 32);
        let hash = bcrypt::hash(&token, BCRYPT_COST).context("hashing the demo token")?;
        let file = dir.join("api-token");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .and_then(|mut f| writeln!(f, "{token}"))
            .with_context(|| format!("writing {}", file.display()))?;
        let hashes = dir.join("api-tokens");
        std::fs::write(&hashes, format!("{TOKEN_NAME}:{hash}\n"))
            .with_context(|| format!("writing {}", hashes.display()))?;
        let tokens = ApiTokens::load(&hashes).map_err(|e| anyhow::anyhow!("demo tokens: {e}"))?;
        Ok(Self { file, tokens })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_password_logs_in_and_others_do_not() {
        let login = DemoLogin::generate().unwrap();
        assert_eq!(login.password.len(), 16);
        assert!(login.users.verify(USER, &login.password));
        assert!(!login.users.verify(USER, "wrong"));
        assert_ne!(DemoLogin::generate().unwrap().password, login.password);
    }
}
