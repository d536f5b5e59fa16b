//! `docs/api.md` is what `masif-xtask api-doc` renders from the UI's OpenAPI document: the test
//! fails when either changed without the other (regenerate with
//! `cargo run -p masif-xtask -- api-doc docs/api.md`).

#![allow(clippy::disallowed_methods)] // runs the generator binary under test

#[test]
fn docs_api_md_is_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api.md");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_masif-xtask"))
        .arg("api-doc")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let rendered = std::fs::read_to_string(&file).unwrap();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md"))
            .unwrap_or_default();
    assert!(
        rendered == committed,
        "docs/api.md is out of date: run `cargo run -p masif-xtask -- api-doc docs/api.md`"
    );
    for path in [
        "GET /api/v1/pending",
        "POST /api/v1/approvals",
        "DELETE /api/v1/approvals/{id}",
        "### AgentItem",
    ] {
        assert!(rendered.contains(path), "{path}");
    }
}
