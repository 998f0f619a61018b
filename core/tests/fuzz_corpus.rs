//! Replays the fuzz seed corpus (and any reproducer saved under
//! `fuzz/artifacts/`) through the fuzz targets' bodies, so every finding
//! stays fixed in the normal test suite.

// The sans-IO rule (core/clippy.toml) is for core/src; tests may read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::Path;
use std::time::Instant;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for dir in ["corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    out.sort();
    out
}

fn replay(target: &str, min: usize, run: impl Fn(&[u8])) {
    let inputs = inputs(target);
    assert!(
        inputs.len() >= min,
        "{target}: only {} seed inputs found",
        inputs.len()
    );
    for (name, data) in inputs {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&data)));
        assert!(outcome.is_ok(), "{target} fails on {name}");
    }
}

#[test]
fn frame_decoder_corpus() {
    replay("frame_decoder", 3, rigwire_core::fuzzing::frame_decoder);
}

#[test]
fn message_decode_corpus() {
    replay("message_decode", 30, rigwire_core::fuzzing::message);
}

#[test]
fn connection_ops_corpus() {
    let epoch = Instant::now();
    replay("connection_ops", 5, |d| {
        rigwire_core::fuzzing::connection(d, epoch)
    });
}

#[test]
fn relay_ops_corpus() {
    let epoch = Instant::now();
    replay("relay_ops", 5, |d| rigwire_core::fuzzing::relay(d, epoch));
}

#[test]
fn ibl_input_corpus() {
    let epoch = Instant::now();
    replay("ibl_input", 5, |d| rigwire_core::fuzzing::ibl(d, epoch));
}
