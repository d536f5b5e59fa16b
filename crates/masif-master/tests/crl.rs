//! A broken new CRL keeps the previous one in force, and says so loudly: an error at every
//! reload check until it is fixed, and a CRITICAL finding from `masif-pki check --config`.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{client_config, post_once, Master, Pki};
use masif_master::{Reload, ReloadingTls};

/// Log output collected in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn error_lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains("ERROR"))
            .map(str::to_owned)
            .collect()
    }
}

fn break_crl(pki: &Pki) {
    let path = pki.master.crl.clone().unwrap();
    let tmp = path.with_extension("new");
    std::fs::write(
        &tmp,
        "-----BEGIN X509 CRL-----\nnot a crl\n-----END X509 CRL-----\n",
    )
    .unwrap();
    std::fs::rename(tmp, path).unwrap();
}

#[test]
fn a_broken_crl_is_an_error_at_every_check_until_fixed() {
    let pki = Pki::new();
    let tls = ReloadingTls::load(pki.master.clone()).unwrap();
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        assert_eq!(tls.reload_if_changed(), Reload::Unchanged);
        break_crl(&pki);
        for check in 1..=3 {
            assert!(
                matches!(tls.reload_if_changed(), Reload::Broken(ref why) if why.contains("crl")),
                "check {check}"
            );
            assert_eq!(log.error_lines().len(), check, "{:?}", log.error_lines());
        }
        assert!(tls.problem().is_some());
        pki.revoke(&[]);
        assert_eq!(tls.reload_if_changed(), Reload::Reloaded);
        assert_eq!(tls.reload_if_changed(), Reload::Unchanged);
    });
    assert_eq!(log.error_lines().len(), 3);
    assert!(tls.problem().is_none());
}

#[tokio::test]
async fn with_a_broken_crl_the_previous_one_stays_in_force() {
    let pki = Pki::new();
    let (revoked, revoked_files) = pki.agent("revoked.example.com");
    pki.revoke(&[&revoked]);
    let master = Master::start(&pki, |_| {}).await;
    let (_, good) = pki.agent("good.example.com");
    let reply = post_once(master.addr, client_config(&good), "[]")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "serving before the CRL broke");
    break_crl(&pki);
    let tls = ReloadingTls::load(pki.master.clone());
    assert!(tls.is_err(), "a master would not start with it");
    // The running master keeps the CRL that revokes the agent (its default reload interval
    // is 10 s: the unit test above covers the checks themselves).
    let refused = post_once(master.addr, client_config(&revoked_files), "[]").await;
    assert!(refused.is_err(), "{refused:?}");
    let (_, good) = pki.agent("good.example.com");
    let reply = post_once(master.addr, client_config(&good), "[]")
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    // And masif-pki check --config says CRITICAL.
    let config = pki.dir.path().join("master.yml");
    let files = &pki.master;
    std::fs::write(
        &config,
        format!(
            "api: {{ listen: \"127.0.0.1:8150\" }}\ntls:\n  cert: {}\n  key: {}\n  ca: {}\n  crl: {}\ndb: {{ url: \"sqlite:///x.db\" }}\n",
            files.cert.display(),
            files.key.display(),
            files.ca.display(),
            files.crl.as_ref().unwrap().display()
        ),
    )
    .unwrap();
    use clap::Parser;
    let args = ["masif-pki", "check", "--role", "master", "--config"];
    let cli =
        masif_pki::cli::Cli::parse_from(args.iter().copied().chain([config.to_str().unwrap()]));
    let out = masif_pki::cli::run(cli);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stdout.contains("CRITICAL file: ")
            && out.stdout.contains("crl.pem: CRL 1 is malformed"),
        "{}",
        out.stdout
    );
    master.stop().await.unwrap();
}
