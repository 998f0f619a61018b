//! The core stays sans-IO: no sockets, files, threads, clocks, randomness,
//! shared ownership or locks. This test fails the moment one appears in
//! `core/src` or among the core's dependencies.

use std::fs;
use std::path::Path;

/// Tokens that have no business in a sans-IO core, with the reason.
const FORBIDDEN: &[(&str, &str)] = &[
    ("std::net", "sockets belong to the runtimes"),
    ("std::fs", "files belong to the runtimes"),
    ("std::io::", "I/O belongs to the runtimes"),
    ("std::thread", "threads belong to the runtimes"),
    ("std::process", "processes belong to the runtimes"),
    ("Instant::now", "time enters only as an argument"),
    ("SystemTime", "time enters only as an argument"),
    ("getrandom", "nonces enter only as arguments"),
    ("rand::", "nonces enter only as arguments"),
    ("HashMap", "hash seeds are randomness; use BTreeMap"),
    ("HashSet", "hash seeds are randomness; use BTreeSet"),
    ("Arc<", "the core owns its state outright"),
    ("Rc<", "the core owns its state outright"),
    ("Mutex", "the core never blocks"),
    ("RwLock", "the core never blocks"),
    ("mpsc", "the core has no channels"),
    ("Condvar", "the core never blocks"),
    ("tokio", "rigwire never uses tokio"),
    ("unsafe ", "the core forbids unsafe code"),
];

#[test]
fn core_sources_contain_no_io_threads_clocks_randomness_or_locks() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offences = Vec::new();
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for (token, why) in FORBIDDEN {
                if code.contains(token) {
                    offences.push(format!("{}:{}: `{token}` ({why})", path.display(), n + 1));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "sans-IO rule broken:\n{}",
        offences.join("\n")
    );
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

#[test]
fn the_forbidden_list_catches_what_it_should() {
    // Guard the guard: a line that smuggles in a clock is caught.
    let line = "let t = std::time::Instant::now();";
    assert!(FORBIDDEN.iter().any(|(token, _)| line.contains(token)));
}
