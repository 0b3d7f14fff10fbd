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

/// What may panic: `unwrap`, `expect`, `assert!`/`assert_eq!`/`assert_ne!`
/// (not `debug_assert!`), `panic!`, `unreachable!`.
fn panics(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or_default();
    let asserts = ["assert!(", "assert_eq!(", "assert_ne!("]
        .iter()
        .any(|a| code.match_indices(a).any(|(i, _)| !code[..i].ends_with("debug_")));
    asserts || [".unwrap()", ".expect(", "panic!(", "unreachable!("].iter().any(|p| code.contains(p))
}

/// Library and command code may not panic on what a user can influence:
/// errors instead. A panic that no input can reach says why on the line
/// above, in a comment starting `// tidy:`.
#[test]
fn library_code_does_not_panic_without_a_reason() {
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
        let lines: Vec<&str> = code.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let reason = i > 0 && lines[i - 1].trim_start().starts_with("// tidy:");
            if panics(line) && !reason {
                offenders.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "return an error, or give the reason no input reaches it (`// tidy: ...` on the line above):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_panic_check_sees_what_it_should() {
    assert!(panics("    let x = y.unwrap();"));
    assert!(panics("    let x = y.expect(\"why\");"));
    assert!(panics("    assert!(n > 0);"));
    assert!(panics("    assert_eq!(a, b);"));
    assert!(!panics("    debug_assert_eq!(a, b);"));
    assert!(!panics("    let x = y.unwrap_or(0); // not .unwrap()"));
    assert!(!panics("    let x = y.unwrap_or_default();"));
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
