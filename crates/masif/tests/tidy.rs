//! The workspace's conventions, checked over the source tree: every Rust file opens with a `//!`
//! line saying what it is for, none is longer than 600 lines, and every crate takes the
//! workspace's lints.

use std::path::{Path, PathBuf};

/// Longest a Rust source file may be.
const MAX_LINES: usize = 600;

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crates/ holds this crate")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, recursively, skipping build output.
fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, found);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

fn all_rust_files() -> Vec<PathBuf> {
    let mut found = Vec::new();
    rust_files(&crates_dir(), &mut found);
    found.sort();
    assert!(
        found.len() > 100,
        "found only {} Rust files under {}",
        found.len(),
        crates_dir().display()
    );
    found
}

fn relative(path: &Path) -> String {
    path.strip_prefix(crates_dir())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let missing: Vec<String> = all_rust_files()
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).expect("readable source");
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            !first.starts_with("//!")
        })
        .map(|path| relative(&path))
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` line saying what they are for: {missing:#?}"
    );
}

#[test]
fn no_rust_file_is_longer_than_the_ceiling() {
    let long: Vec<String> = all_rust_files()
        .into_iter()
        .filter_map(|path| {
            let lines = std::fs::read_to_string(&path)
                .expect("readable source")
                .lines()
                .count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", relative(&path)))
        })
        .collect();
    assert!(
        long.is_empty(),
        "these files are over {MAX_LINES} lines; split them by topic: {long:#?}"
    );
}

/// The crates whose `file` (relative to the crate) exists and fails `ok`.
fn crates_where(file: &str, ok: impl Fn(&str) -> bool) -> Vec<String> {
    let mut failing = Vec::new();
    for entry in std::fs::read_dir(crates_dir()).expect("crates/") {
        let path = entry.expect("directory entry").path().join(file);
        if let Ok(text) = std::fs::read_to_string(&path) {
            if !ok(&text) {
                failing.push(relative(&path));
            }
        }
    }
    failing
}

#[test]
fn every_crate_takes_the_workspace_lints() {
    let without = crates_where("Cargo.toml", |text| {
        text.split("[lints]")
            .nth(1)
            .is_some_and(|rest| rest.trim_start().starts_with("workspace = true"))
    });
    assert!(
        without.is_empty(),
        "these crates lack `[lints] workspace = true`: {without:?}"
    );
}

#[test]
fn every_library_keeps_its_internals_crate_private() {
    let without = crates_where("src/lib.rs", |text| {
        text.contains("#![warn(unreachable_pub)]")
    });
    assert!(
        without.is_empty(),
        "these libraries lack `#![warn(unreachable_pub)]` (internals are `pub(crate)`, `pub` is \
         the API): {without:?}"
    );
}
