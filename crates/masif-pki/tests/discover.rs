//! Discovery in Puppet-, Icinga 2- and easy-rsa-shaped trees made with openssl, checked with
//! the library and the `masif-pki` binary, and used for real TLS handshakes.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::cli::{cli, cli_check, cli_ok};
use common::tls::handshake;
use common::{
    icinga_leaf_ext, puppet_leaf_ext, write, OpensslCa, OpensslLeaf, ICINGA_CA_EXT, PUPPET_CA_EXT,
};
use masif_pki::{discover, Discover, DiscoverRequest, Role, TlsFiles};

/// A Puppet 7 CA: a root and an intermediate ("Puppet CA: …"), each with a CRL.
struct PuppetCa {
    _work: tempfile::TempDir,
    root: OpensslCa,
    inter: OpensslCa,
}

#[derive(Clone, Copy)]
enum Layout {
    Official,
    Debian,
}

impl Layout {
    fn confdir(self) -> &'static str {
        match self {
            Layout::Official => "etc/puppetlabs/puppet",
            Layout::Debian => "etc/puppet",
        }
    }
    fn ssldir(self) -> &'static str {
        match self {
            Layout::Official => "etc/puppetlabs/puppet/ssl",
            Layout::Debian => "var/lib/puppet/ssl",
        }
    }
}

impl PuppetCa {
    fn new() -> PuppetCa {
        let work = tempfile::tempdir().unwrap();
        let root = OpensslCa::root(
            work.path(),
            "root",
            "Puppet Root CA: 5f1e2d3c4b5a",
            PUPPET_CA_EXT,
        );
        let inter = root.sub_ca(
            work.path(),
            "inter",
            "Puppet CA: puppet.example.com",
            PUPPET_CA_EXT,
        );
        PuppetCa {
            _work: work,
            root,
            inter,
        }
    }

    fn issue(&self, certname: &str) -> OpensslLeaf {
        self.inter
            .issue(certname, certname, &puppet_leaf_ext(certname), 1825)
    }

    /// Lays out an agent's ssldir under `tree` as Puppet does and returns the expected files.
    fn install(&self, tree: &Path, layout: Layout, certname: &str, leaf: &OpensslLeaf) -> TlsFiles {
        let ssl = tree.join(layout.ssldir());
        let files = TlsFiles {
            cert: write(&ssl, &format!("certs/{certname}.pem"), leaf.cert_pem()),
            key: write(
                &ssl,
                &format!("private_keys/{certname}.pem"),
                leaf.key_pem(),
            ),
            ca: write(
                &ssl,
                "certs/ca.pem",
                self.inter.cert_pem() + &self.root.cert_pem(),
            ),
            crl: Some(write(&ssl, "crl.pem", self.inter.crl() + &self.root.crl())),
        };
        std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o640)).unwrap();
        files
    }
}

fn puppet_conf(tree: &Path, layout: Layout, text: &str) {
    write(&tree.join(layout.confdir()), "puppet.conf", text);
}

fn request(discover: Discover, root: &Path, name: Option<&str>) -> DiscoverRequest {
    DiscoverRequest {
        discover,
        name: name.map(String::from),
        root: Some(root.to_path_buf()),
    }
}

#[test]
fn puppet_official_layout_with_certname_from_agent_section() {
    let ca = PuppetCa::new();
    let tree = tempfile::tempdir().unwrap();
    let leaf = ca.issue("agent01.example.com");
    let expected = ca.install(tree.path(), Layout::Official, "agent01.example.com", &leaf);
    puppet_conf(tree.path(), Layout::Official, "[main]\ncertname = wrong.example.com\n[agent]\ncertname = agent01.example.com\nserver = puppet\n");
    let found = discover(&request(Discover::Puppet, tree.path(), None), Role::Agent).unwrap();
    assert_eq!(found.files, expected);
    assert_eq!(found.name, "agent01.example.com");
    assert!(
        found.notes.iter().any(|n| n.contains("certname in")),
        "{:?}",
        found.notes
    );

    let root = tree.path().to_str().unwrap();
    let out = cli_ok(&[
        "check", "--role", "agent", "--source", "puppet", "--root", root,
    ]);
    assert!(
        out.starts_with("MASIF-PKI OK - agent certificate agent01.example.com"),
        "{out}"
    );
    assert!(out.contains("| days_left="), "{out}");
    for line in [
        "OK chain:",
        "OK revocation:",
        "OK key:",
        "CRL 1 (CN=Puppet CA: puppet.example.com)",
        "CRL 2 (CN=Puppet Root CA",
    ] {
        assert!(out.contains(line), "{line:?} missing in {out}");
    }
}

#[test]
fn puppet_debian_layout_with_certname_from_main_then_fqdn() {
    let ca = PuppetCa::new();
    let tree = tempfile::tempdir().unwrap();
    let leaf = ca.issue("web1.example.com");
    let expected = ca.install(tree.path(), Layout::Debian, "web1.example.com", &leaf);
    puppet_conf(
        tree.path(),
        Layout::Debian,
        "[main]\ncertname = web1.example.com\n",
    );
    let found = discover(&request(Discover::Puppet, tree.path(), None), Role::Master).unwrap();
    assert_eq!(found.files, expected);

    // Without a certname setting the FQDN of the tree is used.
    puppet_conf(
        tree.path(),
        Layout::Debian,
        "[main]\nlogdir = /var/log/puppet\n",
    );
    write(tree.path(), "etc/hostname", "web1\n");
    write(
        tree.path(),
        "etc/hosts",
        "127.0.0.1 localhost\n192.0.2.10 web1.example.com web1\n",
    );
    let found = discover(&request(Discover::Puppet, tree.path(), None), Role::Master).unwrap();
    assert_eq!(found.name, "web1.example.com");
    assert_eq!(found.files, expected);
    assert!(
        found.notes.iter().any(|n| n.contains("FQDN")),
        "{:?}",
        found.notes
    );

    let root = tree.path().to_str().unwrap();
    let out = cli_ok(&[
        "check", "--role", "master", "--source", "puppet", "--root", root,
    ]);
    assert!(
        out.contains("OK name: agents expecting web1.example.com accept this certificate"),
        "{out}"
    );
}

#[test]
fn puppet_ssldir_setting_and_explicit_name_are_honoured() {
    let ca = PuppetCa::new();
    let tree = tempfile::tempdir().unwrap();
    let leaf = ca.issue("db2.example.com");
    ca.install(tree.path(), Layout::Debian, "db2.example.com", &leaf);
    std::fs::rename(
        tree.path().join("var/lib/puppet/ssl"),
        tree.path().join("srv-ssl"),
    )
    .unwrap();
    std::fs::create_dir_all(tree.path().join("var/lib/puppet/ssl")).unwrap();
    puppet_conf(tree.path(), Layout::Debian, "[agent]\nssldir = /srv-ssl\n");
    let found = discover(
        &request(Discover::Puppet, tree.path(), Some("db2.example.com")),
        Role::Agent,
    )
    .unwrap();
    assert_eq!(
        found.files.cert,
        tree.path().join("srv-ssl/certs/db2.example.com.pem")
    );
}

#[test]
fn puppet_official_layout_wins_and_missing_certs_are_listed() {
    let ca = PuppetCa::new();
    let tree = tempfile::tempdir().unwrap();
    let official = ca.issue("a.example.com");
    let debian = ca.issue("b.example.com");
    ca.install(tree.path(), Layout::Official, "a.example.com", &official);
    ca.install(tree.path(), Layout::Debian, "b.example.com", &debian);
    let found = discover(
        &request(Discover::Puppet, tree.path(), Some("a.example.com")),
        Role::Agent,
    )
    .unwrap();
    assert!(found
        .files
        .cert
        .starts_with(tree.path().join("etc/puppetlabs")));
    let found = discover(
        &request(Discover::Puppet, tree.path(), Some("b.example.com")),
        Role::Agent,
    )
    .unwrap();
    assert!(found
        .files
        .cert
        .starts_with(tree.path().join("var/lib/puppet")));
    let err = discover(
        &request(Discover::Puppet, tree.path(), Some("c.example.com")),
        Role::Agent,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("c.example.com.pem (missing; found a.example.com)")
            && err.contains("found b.example.com"),
        "{err}"
    );

    let empty = tempfile::tempdir().unwrap();
    let (code, out) = cli(&[
        "check",
        "--role",
        "agent",
        "--source",
        "puppet",
        "--root",
        empty.path().to_str().unwrap(),
        "--name",
        "x.example.com",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.starts_with("MASIF-PKI CRITICAL - discover puppet: no agent certificate found"),
        "{out}"
    );
}

#[test]
fn hostile_certname_in_puppet_conf_is_refused() {
    let ca = PuppetCa::new();
    let tree = tempfile::tempdir().unwrap();
    let leaf = ca.issue("a.example.com");
    ca.install(tree.path(), Layout::Debian, "a.example.com", &leaf);
    puppet_conf(
        tree.path(),
        Layout::Debian,
        "[main]\ncertname = ../../../../etc/shadow\n",
    );
    let err = discover(&request(Discover::Puppet, tree.path(), None), Role::Agent)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a valid certificate name"), "{err}");
}

#[tokio::test]
async fn puppet_agent_and_master_from_discovered_trees_talk() {
    let ca = PuppetCa::new();
    let master_tree = tempfile::tempdir().unwrap();
    let agent_tree = tempfile::tempdir().unwrap();
    let master_leaf = ca.issue("puppet-master.example.com");
    let agent_leaf = ca.issue("agent07.example.com");
    ca.install(
        master_tree.path(),
        Layout::Official,
        "puppet-master.example.com",
        &master_leaf,
    );
    ca.install(
        agent_tree.path(),
        Layout::Debian,
        "agent07.example.com",
        &agent_leaf,
    );
    let master = discover(
        &request(
            Discover::Puppet,
            master_tree.path(),
            Some("puppet-master.example.com"),
        ),
        Role::Master,
    )
    .unwrap();
    let agent = discover(
        &request(
            Discover::Puppet,
            agent_tree.path(),
            Some("agent07.example.com"),
        ),
        Role::Agent,
    )
    .unwrap();
    let cn = handshake(&master.files, &agent.files, "puppet-master.example.com")
        .await
        .unwrap();
    assert_eq!(cn, "agent07.example.com");

    // Revoked by the intermediate, published in its CRL: refused.
    ca.inter.revoke(&agent_leaf.cert);
    let crl_path = master.files.crl.clone().unwrap();
    std::fs::write(&crl_path, ca.inter.crl() + &ca.root.crl()).unwrap();
    let err = handshake(&master.files, &agent.files, "puppet-master.example.com")
        .await
        .unwrap_err();
    assert!(err.contains("Revoked"), "{err}");
    let trusting_the_master = TlsFiles {
        ca: master.files.ca.clone(),
        crl: Some(master.files.crl.clone().unwrap()),
        ..agent.files.clone()
    };
    let (code, out) = cli_check(Role::Agent, &trusting_the_master, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("CRITICAL revocation: certificate (serial"),
        "{out}"
    );
}

/// An Icinga 2 CA and a node tree (2.8+ or older layout).
struct IcingaCa {
    _work: tempfile::TempDir,
    ca: OpensslCa,
}

impl IcingaCa {
    fn new() -> IcingaCa {
        let work = tempfile::tempdir().unwrap();
        let ca = OpensslCa::root(work.path(), "ca", "Icinga CA", ICINGA_CA_EXT);
        IcingaCa { _work: work, ca }
    }

    fn node(&self, tree: &Path, dir: &str, name: &str) -> (OpensslLeaf, TlsFiles) {
        let leaf = self.ca.issue(name, name, &icinga_leaf_ext(name), 397);
        let dir = tree.join(dir);
        let files = TlsFiles {
            cert: write(&dir, &format!("{name}.crt"), leaf.cert_pem()),
            key: write(&dir, &format!("{name}.key"), leaf.key_pem()),
            ca: write(&dir, "ca.crt", self.ca.cert_pem()),
            crl: None,
        };
        std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600)).unwrap();
        (leaf, files)
    }
}

#[test]
fn icinga2_node_name_from_constants_conf_and_no_eku_leaf_fits_both_roles() {
    let icinga = IcingaCa::new();
    let tree = tempfile::tempdir().unwrap();
    let (_, expected) = icinga.node(tree.path(), "var/lib/icinga2/certs", "node1.example.com");
    write(tree.path(), "etc/icinga2/constants.conf", "/* const NodeName = \"old\" */\nconst PluginDir = \"/usr/lib/nagios/plugins\"\nconst NodeName = \"node1.example.com\"\nconst ZoneName = \"node1.example.com\"\n");
    let found = discover(&request(Discover::Icinga2, tree.path(), None), Role::Agent).unwrap();
    assert_eq!(found.files, expected);
    let root = tree.path().to_str().unwrap();
    for role in ["agent", "master"] {
        let out = cli_ok(&[
            "check", "--role", role, "--source", "icinga2", "--root", root,
        ]);
        assert!(
            out.contains("OK usage: no extended key usage: any use allowed"),
            "{out}"
        );
        assert!(out.contains("OK crl: no CRL configured"), "{out}");
    }
}

#[test]
fn icinga2_pre_2_8_layout_with_fqdn_and_crl_path_from_api_conf() {
    let icinga = IcingaCa::new();
    let tree = tempfile::tempdir().unwrap();
    write(tree.path(), "etc/hostname", "sat2.icinga.example\n");
    let (leaf, _) = icinga.node(tree.path(), "etc/icinga2/pki", "sat2.icinga.example");
    let found = discover(&request(Discover::Icinga2, tree.path(), None), Role::Agent).unwrap();
    assert_eq!(
        found.files.cert,
        tree.path().join("etc/icinga2/pki/sat2.icinga.example.crt")
    );
    assert_eq!(found.files.crl, None);

    // A CRL made with openssl from the Icinga CA (Icinga publishes none), named in api.conf.
    icinga.ca.revoke(&leaf.cert);
    write(tree.path(), "etc/icinga2/pki/crl.pem", icinga.ca.crl());
    write(
        tree.path(),
        "etc/icinga2/features-enabled/api.conf",
        "object ApiListener \"api\" {\n  crl_path = \"/etc/icinga2/pki/crl.pem\"\n}\n",
    );
    let found = discover(&request(Discover::Icinga2, tree.path(), None), Role::Agent).unwrap();
    assert_eq!(
        found.files.crl,
        Some(tree.path().join("etc/icinga2/pki/crl.pem"))
    );
    let (code, out) = cli(&[
        "check",
        "--role",
        "agent",
        "--source",
        "icinga2",
        "--root",
        tree.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("CRITICAL revocation"), "{out}");
}

#[tokio::test]
async fn icinga2_nodes_talk_with_their_no_eku_certificates() {
    let icinga = IcingaCa::new();
    let master_tree = tempfile::tempdir().unwrap();
    let agent_tree = tempfile::tempdir().unwrap();
    let (_, master) = icinga.node(
        master_tree.path(),
        "var/lib/icinga2/certs",
        "icinga-master.example",
    );
    let (_, agent) = icinga.node(agent_tree.path(), "var/lib/icinga2/certs", "node9.example");
    assert_eq!(
        handshake(&master, &agent, "icinga-master.example")
            .await
            .unwrap(),
        "node9.example"
    );
}

#[test]
fn discover_command_prints_what_it_found() {
    let icinga = IcingaCa::new();
    let tree = tempfile::tempdir().unwrap();
    icinga.node(tree.path(), "var/lib/icinga2/certs", "n.example");
    let root = tree.path().to_str().unwrap();
    let out = cli_ok(&[
        "discover",
        "--source",
        "icinga2",
        "--root",
        root,
        "--name",
        "n.example",
    ]);
    assert!(out.contains("source: icinga2\nname: n.example\n"), "{out}");
    assert!(out.contains("(CN=n.example, until "), "{out}");
    assert!(out.contains("crl: none"), "{out}");
    // Without --source: Puppet is tried first, then Icinga 2.
    let out = cli_ok(&["discover", "--root", root, "--name", "n.example", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["source"], "icinga2");
    assert!(json["files"]["cert"]
        .as_str()
        .unwrap()
        .ends_with("var/lib/icinga2/certs/n.example.crt"));
    let (code, out) = cli(&["discover", "--source", "vault"]);
    assert_eq!(code, 3, "{out}");
}

#[test]
fn easyrsa_tree_is_found_under_a_root() {
    let tree = tempfile::tempdir().unwrap();
    let ca = common::Ca::new("Masif CA");
    let leaf = ca.leaf("m.example", common::Use::Server);
    let pki: PathBuf = tree.path().join("etc/masif/pki");
    write(&pki, "ca.crt", &ca.cert_pem);
    write(&pki, "issued/m.example.crt", &leaf.cert_pem);
    write(&pki, "private/m.example.key", &leaf.key_pem);
    let req = request(
        Discover::EasyRsa("/etc/masif/pki".into()),
        tree.path(),
        Some("m.example"),
    );
    let found = discover(&req, Role::Master).unwrap();
    assert_eq!(found.files.key, pki.join("private/m.example.key"));
    assert_eq!(found.files.crl, None);
    let req = request(
        Discover::EasyRsa("/etc/masif/pki".into()),
        tree.path(),
        Some("other.example"),
    );
    let err = discover(&req, Role::Master).unwrap_err().to_string();
    assert!(
        err.contains("issued: m.example") && err.contains("masif-pki issue"),
        "{err}"
    );
    let req = request(
        Discover::EasyRsa("/nowhere".into()),
        tree.path(),
        Some("m.example"),
    );
    assert!(discover(&req, Role::Master)
        .unwrap_err()
        .to_string()
        .contains("not an easy-rsa PKI"));
}
