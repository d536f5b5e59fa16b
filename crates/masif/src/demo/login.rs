//! The demo's one UI user: a fixed name and a fresh random password, hashed with bcrypt the way
//! `htpasswd -B` does, so the UI checks it exactly like a configured user.

use anyhow::Context;
use masif_ui::Users;
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
