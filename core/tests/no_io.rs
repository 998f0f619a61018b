//! The core stays sans-IO: no sockets, files, threads, clocks, randomness,
//! shared ownership or locks. Clippy refuses them in `core/src`
//! (`core/clippy.toml`, checked here); these tests fail the moment the list
//! is emptied or the core gains a dependency that does I/O.

// The sans-IO rule (core/clippy.toml) is for core/src; tests may read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::fs;
use std::path::Path;

/// What clippy must refuse in `core/src` (see `core/clippy.toml`): the
/// guard itself is guarded, so that the list cannot be emptied quietly.
const GUARDED: &[&str] = &[
    "std::sync::Arc",
    "std::sync::Mutex",
    "std::collections::HashMap",
    "std::net::TcpStream",
    "std::time::Instant::now",
    "std::time::SystemTime::now",
    "std::thread::spawn",
];

#[test]
fn clippy_refuses_io_threads_clocks_randomness_and_locks_in_the_core() {
    let config =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("clippy.toml")).unwrap();
    for path in GUARDED {
        assert!(
            config.contains(&format!("path = \"{path}\"")),
            "core/clippy.toml no longer refuses {path}"
        );
    }
}

#[test]
fn core_depends_on_nothing_that_does_io() {
    let manifest =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap();
    let names: Vec<&str> = deps
        .lines()
        .filter_map(|l| l.split(['=', '.']).next())
        .map(str::trim)
        .filter(|n| !n.is_empty() && !n.starts_with('#'))
        .collect();
    let allowed = [
        "bytes",
        "postcard",
        "serde",
        "serde_json",
        "thiserror",
        "hmac",
        "sha2",
    ];
    for name in &names {
        assert!(
            allowed.contains(name),
            "rigwire-core must not depend on `{name}`"
        );
    }
    assert_eq!(names.len(), allowed.len(), "{names:?}");
}
