//! Rules about the workspace as a whole.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn tokio_is_nowhere_in_the_dependency_tree() {
    // The workspace's, and the Python package's (a workspace of its own).
    for lock in ["Cargo.lock", "python/Cargo.lock"] {
        let text = std::fs::read_to_string(root().join(lock)).expect("the lock file exists");
        for line in text.lines() {
            assert_ne!(line.trim(), "name = \"tokio\"", "tokio has entered {lock}");
        }
    }
}

#[test]
fn every_library_crate_forbids_unsafe_and_warns_on_missing_docs() {
    for krate in [
        "core",
        "runtime-std",
        "runtime-smol",
        "tests",
        "twin",
        "ws",
        "python",
    ] {
        let lib = std::fs::read_to_string(root().join(krate).join("src/lib.rs")).unwrap();
        assert!(lib.contains("#![forbid(unsafe_code)]"), "{krate}");
        assert!(lib.contains("#![warn(missing_docs"), "{krate}");
    }
}

#[test]
fn the_fuzz_crate_is_its_own_workspace() {
    let manifest = std::fs::read_to_string(root().join("fuzz/Cargo.toml")).unwrap();
    assert!(manifest.contains("[workspace]\nmembers = [\".\"]"));
    let workspace = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(workspace.contains("exclude = [\"fuzz\", \"python\"]"));
}

#[test]
fn every_spec_vector_named_by_the_spec_exists() {
    let spec = std::fs::read_to_string(root().join("spec/PROTOCOL.md")).unwrap();
    for name in [
        "handshake-plain",
        "handshake-secret",
        "auth-rejected",
        "call-reply",
        "error-reply",
        "notify",
        "cancel",
        "ping-echo-goodbye",
    ] {
        assert!(
            spec.contains(&format!("`{name}`")),
            "the spec does not name {name}"
        );
        assert!(
            root()
                .join("spec/vectors")
                .join(format!("{name}.txt"))
                .exists(),
            "{name}.txt missing"
        );
    }
}
