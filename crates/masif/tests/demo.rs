//! End-to-end tests of `masif demo`: the real binary, real sandboxes with apt-get and dpkg, the
//! UI over plain HTTP (log in, approve with the form's CSRF token), the upgrade seen in the
//! sandbox's dpkg database, and Ctrl-C leaving no process, socket or directory behind.

mod common;

use std::path::Path;

use common::browser::{hidden_field, html_escape_quotes, input_values, Browser};
use common::procs::{descendants, port_of, processes_mentioning, tcp_listener_owners};
use common::{
    eventually, installed_version, sandbox_status, signal_group, spawn_demo, wait_with_patience,
    Demo, WithoutArchiveTools,
};

/// The whole demo, on a machine as the README's first command finds it: nothing but apt and
/// dpkg (no apt-ftparchive, no dpkg-scanpackages: the run fails if it calls either).
#[test]
fn approving_in_the_ui_upgrades_the_sandboxes() {
    let scratch = tempfile::tempdir().unwrap();
    let keep = scratch.path().join("demo");
    let without = WithoutArchiveTools::new();
    without.assert_unavailable();
    let demo = Demo::start_with(
        Some(&without),
        &[
            "--agents",
            "2",
            "--port",
            "0",
            "--keep",
            keep.to_str().unwrap(),
        ],
    );
    let agents = ["agent-01.masif-demo.test", "agent-02.masif-demo.test"];
    for agent in agents {
        let status = sandbox_status(&demo.workdir, agent);
        assert_eq!(installed_version(&status, "alpha").as_deref(), Some("1.0"));
        assert_eq!(installed_version(&status, "beta").as_deref(), Some("1.0"));
    }

    let mut browser = Browser::new(&demo.ui);
    // Not logged in: the pending page sends us to the login page.
    assert_eq!(browser.get("/").status, 303);
    browser.log_in(&demo.user, &demo.password);

    // Both agents report: upgrading alpha to 2.0 (apt's "Inst" and "Conf" lines, an update
    // and a configure task) awaits two agents.
    let alpha = [
        r#"["alpha","update","2.0"]"#,
        r#"["alpha","configure","2.0"]"#,
    ];
    let csrf = eventually("both agents awaiting the alpha upgrade", || {
        let page = browser.get("/");
        assert_eq!(page.status, 200, "{page:?}");
        let keys = input_values(&page.body, "key");
        let awaited_by_two = |key: &str| {
            let row = page.body.find(&html_escape_quotes(key))?;
            page.body[row..]
                .split("</tr>")
                .next()?
                .contains(">2<")
                .then_some(())
        };
        for key in alpha {
            keys.iter().find(|k| *k == key)?;
            awaited_by_two(key)?;
        }
        hidden_field(&page.body, "csrf")
    });
    // theta 2.0 comes from the security archive; the first host needs a reboot.
    eventually("theta marked as a security update on both agents", || {
        let page = browser.get("/");
        page.body
            .contains("1 security update awaiting approval on 2 agents")
            .then_some(())
    });
    let agents_page = browser.get("/agents");
    assert!(
        agents_page.body.contains("1 reboot required"),
        "{agents_page:?}"
    );
    fn form<'a>(keys: &[&'a str], csrf: Option<&'a str>) -> Vec<(&'static str, &'a str)> {
        let mut form: Vec<(&str, &str)> = keys.iter().map(|k| ("key", *k)).collect();
        form.push(("do", "approve"));
        form.extend(csrf.map(|c| ("csrf", c)));
        form
    }

    // A form without the CSRF token is refused and approves nothing.
    let forged = browser.post("/approve", &form(&alpha, None));
    assert_eq!(forged.status, 403, "{forged:?}");

    let approved = browser.post("/approve", &form(&alpha, Some(&csrf)));
    assert_eq!(approved.status, 303, "{approved:?}");
    let result = browser.approval_result(&approved);
    assert!(
        result.starts_with("/?approved=4"),
        "{approved:?} → {result}"
    );

    // The agents pick the approval up and upgrade alpha for real; beta (not approved, its
    // upgrade would install gamma) stays.
    for agent in agents {
        let status = sandbox_status(&demo.workdir, agent);
        eventually(&format!("alpha 2.0 installed on {agent}"), || {
            (installed_version(&status, "alpha").as_deref() == Some("2.0")).then_some(())
        });
        assert_eq!(installed_version(&status, "beta").as_deref(), Some("1.0"));
        assert_eq!(installed_version(&status, "gamma"), None);
    }

    // zeta's upgrade fails on purpose (its postinst): once approved, the failure shows on the
    // pending page, the Agents page and each agent's page.
    let zeta = [
        r#"["zeta","update","2.0"]"#,
        r#"["zeta","configure","2.0"]"#,
    ];
    let csrf = hidden_field(&browser.get("/").body, "csrf").expect("csrf");
    let approved = browser.post("/approve", &form(&zeta, Some(&csrf)));
    assert_eq!(approved.status, 303, "{approved:?}");
    eventually("zeta failed on both agents", || {
        let page = browser.get("/");
        page.body.contains("failed on 2 agent(s)").then_some(())
    });
    let agents_page = browser.get("/agents?state=failing");
    assert!(agents_page.body.contains("2 failing"), "{agents_page:?}");
    let agent_page = browser.get(&format!("/agent?name={}", agents[0]));
    assert!(
        agent_page.body.contains("post-installation script"),
        "{agent_page:?}"
    );

    let workdir = demo.workdir.clone();
    let (status, _) = demo.interrupt();
    assert!(status.success(), "{status:?}");
    // --keep: the directory and its database stay.
    assert!(workdir.join("masif.db").exists());
    assert_eq!(
        without.calls(),
        Vec::<String>::new(),
        "archive tools called"
    );
}

#[test]
fn ctrl_c_leaves_nothing_running() {
    let demo = Demo::start(&["--agents", "2", "--port", "0"]);
    let workdir = demo.workdir.clone();
    let needle = workdir.display().to_string();
    let (ui_port, master_port) = (port_of(&demo.ui), port_of(&demo.master));
    assert!(workdir.join("masif.db").exists());
    let demo_pid = demo.child.id();
    assert!(tcp_listener_owners(ui_port).contains(&demo_pid));
    assert!(tcp_listener_owners(master_port).contains(&demo_pid));
    // Let the agents get going (their first report reaches the database).
    let mut browser = Browser::new(&demo.ui);
    browser.log_in(&demo.user, &demo.password);
    eventually("agents listed in the UI", || {
        let page = browser.get("/agents");
        (page.body.contains("agent-01.masif-demo.test")
            && page.body.contains("agent-02.masif-demo.test"))
        .then_some(())
    });
    let mut ours = descendants(demo_pid);
    ours.push(demo_pid);

    let (status, rest) = demo.interrupt();
    assert!(status.success(), "{status:?}");
    assert!(rest.iter().any(|l| l == "stopping"), "{rest:?}");
    assert!(!workdir.exists(), "{} left behind", workdir.display());
    for &pid in &ours {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || processes_mentioning(&needle).iter().all(|(p, _)| *p != pid),
            "child process {pid} still running"
        );
    }
    assert_eq!(
        processes_mentioning(&needle),
        vec![],
        "processes left behind"
    );
    for port in [ui_port, master_port] {
        let owners = tcp_listener_owners(port);
        assert!(
            owners.iter().all(|p| !ours.contains(p)),
            "port {port} still listened on by {owners:?}"
        );
    }
    let unix = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    assert!(
        !unix.contains(&needle),
        "unix sockets left behind: {}",
        unix.lines()
            .filter(|l| l.contains(&needle))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn without_apt_and_dpkg_it_says_so_and_stops() {
    let scratch = tempfile::tempdir().unwrap();
    let empty_path = scratch.path().join("bin");
    std::fs::create_dir(&empty_path).unwrap();
    let keep = scratch.path().join("demo");
    let (mut child, stderr) = spawn_demo(
        &["--port", "0", "--keep", keep.to_str().unwrap()],
        &[("PATH", empty_path.to_str().unwrap())],
    );
    let status = wait_with_patience(&mut child);
    assert!(!status.success());
    let stderr = stderr.join().unwrap();
    assert!(
        stderr.contains("apt-get")
            && stderr.contains("dpkg")
            && stderr.contains("not found in PATH"),
        "{stderr}"
    );
    assert!(!keep.exists(), "nothing is created");
}

#[test]
fn a_non_empty_keep_directory_is_refused_untouched() {
    let scratch = tempfile::tempdir().unwrap();
    std::fs::write(scratch.path().join("precious"), "data").unwrap();
    let (mut child, stderr) = spawn_demo(
        &["--port", "0", "--keep", scratch.path().to_str().unwrap()],
        &[],
    );
    let status = wait_with_patience(&mut child);
    assert!(!status.success());
    let stderr = stderr.join().unwrap();
    assert!(stderr.contains("not empty"), "{stderr}");
    let entries: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        std::fs::read_to_string(scratch.path().join("precious")).unwrap(),
        "data"
    );
}

#[test]
fn ctrl_c_while_sandboxes_are_built_stops_cleanly() {
    let (mut child, stderr) = spawn_demo(&["--agents", "3", "--port", "0"], &[]);
    // Wait until the demo runs a tool (dpkg-deb, apt-get …) of a build.
    eventually("a sandbox build running", || {
        (!descendants(child.id()).is_empty()).then_some(())
    });
    signal_group(child.id(), "-INT");
    let status = wait_with_patience(&mut child);
    assert!(status.success(), "{status:?}");
    let stderr = stderr.join().unwrap();
    let workdir = stderr
        .lines()
        .find_map(|l| {
            l.split_once("work directory ")
                .map(|(_, d)| d.trim().to_owned())
        })
        .expect("the demo logs its work directory");
    assert!(!Path::new(&workdir).exists(), "{workdir} left behind");
    assert_eq!(
        processes_mentioning(&workdir),
        vec![],
        "processes left behind"
    );
}

#[test]
fn bad_options_are_refused_before_anything_starts() {
    let scratch = tempfile::tempdir().unwrap();
    let keep = scratch.path().join("demo");
    let keep = keep.to_str().unwrap();
    for args in [
        vec!["--agents", "0", "--keep", keep],
        vec!["--agents", "51", "--keep", keep],
        vec!["--agents", "-3", "--keep", keep],
        vec!["--port", "65536", "--keep", keep],
        vec!["--port", "http", "--keep", keep],
        vec!["--keep", keep, "--bogus"],
    ] {
        let (mut child, stderr) = spawn_demo(&args, &[]);
        let status = wait_with_patience(&mut child);
        let stderr = stderr.join().unwrap();
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("error:"), "{args:?}: {stderr}");
        assert!(!Path::new(keep).exists(), "{args:?} created {keep}");
    }
}

#[test]
fn a_hangup_or_sigterm_stops_it_as_cleanly_as_ctrl_c() {
    for signal in ["-HUP", "-TERM"] {
        let mut demo = Demo::start(&["--agents", "1", "--port", "0"]);
        let workdir = demo.workdir.clone();
        signal_group(demo.child.id(), signal);
        let status = wait_with_patience(&mut demo.child);
        assert!(status.success(), "{signal}: {status:?}");
        assert!(
            !workdir.exists(),
            "{signal}: {} left behind",
            workdir.display()
        );
        assert_eq!(
            processes_mentioning(&workdir.display().to_string()),
            vec![],
            "{signal}: processes left behind"
        );
    }
}
