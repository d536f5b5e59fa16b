//! The demo's throwaway PKI: one CA, a server certificate for the master and a client
//! certificate per agent, written as PEM files under the working directory.

use std::path::Path;

use anyhow::Context;
use masif_pki::TlsFiles;
use masif_testkit::pki::{EphemeralCa, Usage};

/// The name in the master's certificate, which agents require (`master.cn`).
pub const MASTER_CN: &str = "master.masif-demo.test";

/// Certificate files of master and agents.
#[derive(Debug, Clone)]
pub(super) struct DemoPki {
    pub master: TlsFiles,
    /// `(agent name = certificate CN, files)`, in order.
    pub agents: Vec<(String, TlsFiles)>,
}

/// The agent name (certificate CN) of agent number `n` (from 1).
pub fn agent_name(n: usize) -> String {
    format!("agent-{n:02}.masif-demo.test")
}

impl DemoPki {
    /// Makes a CA and `agents` + 1 certificates under `dir`.
    pub(super) fn create(dir: &Path, agents: usize) -> anyhow::Result<Self> {
        let ca = EphemeralCa::new("Masif Upgrader demo CA").context("making the demo CA")?;
        let issue = |cn: &str, usage| {
            let issued = ca
                .issue(cn, usage)
                .with_context(|| format!("issuing a certificate for {cn}"))?;
            let sub = dir.join(cn);
            ca.write_files(&sub, &issued, None)
                .with_context(|| format!("writing certificate files to {}", sub.display()))
        };
        let master = issue(MASTER_CN, Usage::Server)?;
        let agents = (1..=agents)
            .map(|n| {
                let name = agent_name(n);
                issue(&name, Usage::Client).map(|files| (name, files))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { master, agents })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_written_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let pki = DemoPki::create(dir.path(), 2).unwrap();
        assert_eq!(pki.agents.len(), 2);
        assert_eq!(pki.agents[1].0, "agent-02.masif-demo.test");
        masif_pki::server_config(&pki.master).unwrap();
        for (_, files) in &pki.agents {
            assert!(files.cert.exists() && files.key.exists() && files.ca.exists());
        }
    }
}
