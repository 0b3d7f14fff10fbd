//! Repository hygiene, enforced by `cargo test` (as rust-analyzer's tidy).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_ci_script_runs_the_readme_test_command() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    let command = "cargo test --workspace";
    assert!(readme.contains(command), "README.md names the test command");
    assert!(ci.lines().any(|l| l.trim() == command), ".ci/run runs `{command}`");
    assert!(readme.contains("cargo xtask demo"), "README.md names the main command");
}

#[test]
fn library_code_does_not_unwrap() {
    let mut files = Vec::new();
    for dir in
        ["crates/core/src", "crates/data/src", "crates/model/src", "crates/eval/src", "crates/train/src", "xtask/src"]
    {
        rust_sources(&root().join(dir), &mut files);
    }
    let mut offenders = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (i, line) in code.lines().enumerate() {
            if line.contains(".unwrap()") && !line.trim_start().starts_with("//") {
                offenders.push(format!("{}:{}", file.display(), i + 1));
            }
        }
    }
    assert!(offenders.is_empty(), "use `?` or `expect` with a reason:\n{}", offenders.join("\n"));
}

#[test]
fn the_architecture_document_maps_every_crate() {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    for dir in std::fs::read_dir(root().join("crates")).unwrap() {
        let name = dir.unwrap().file_name().to_string_lossy().into_owned();
        assert!(doc.contains(&format!("### `crates/{name}`")), "ARCHITECTURE.md has no section for crates/{name}");
    }
    assert!(doc.contains("### `xtask`"));
}
