//! ARCHITECTURE.md and docs/DESIGN.md describe the tree as it is: every repository path they name
//! in backticks exists. A moved or deleted file fails this test until the docs follow.

use std::path::Path;

/// The documents whose paths are checked, relative to the workspace root.
const DOCUMENTS: &[&str] = &["ARCHITECTURE.md", "docs/DESIGN.md", "README.md"];

/// Where a path in the documents may start: the workspace's top-level folders.
const ROOTS: &[&str] = &[
    "registry-api/",
    "registry-zookeeper/",
    "registry-mysql/",
    "registry-etcd/",
    "registry-all/",
    "task-dispatch/",
    "console-server/",
    "deploy/",
    "tests/",
    "docs/",
    ".ci/",
];

/// Backticked spans that start at a top-level folder, cut at the first character a path does not
/// have (`path:line`, `path (what)`, globs like `registry-*`).
fn named_paths(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| ROOTS.iter().any(|root| span.starts_with(root)))
        .map(|span| {
            span.split(|c: char| !(c.is_alphanumeric() || "/._-".contains(c)))
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .filter(|path| !path.contains("..."))
        .collect()
}

#[test]
fn docs_name_only_paths_that_exist() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut missing = Vec::new();
    let mut checked = 0;
    for document in DOCUMENTS {
        let text = std::fs::read_to_string(workspace.join(document))
            .unwrap_or_else(|error| panic!("cannot read {document}: {error}"));
        for path in named_paths(&text) {
            checked += 1;
            if !workspace.join(&path).exists() {
                missing.push(format!("{document}: `{path}`"));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} paths found: is the extraction broken?"
    );
    assert!(
        missing.is_empty(),
        "paths named in the docs that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_extraction_cuts_line_numbers_and_keeps_folders() {
    let text = "see `console-server/src/node/peers.rs:97` and `deploy/` but not `Cargo.toml` \
                or `registry-*`";
    assert_eq!(
        named_paths(text),
        vec!["console-server/src/node/peers.rs", "deploy/"]
    );
}
