//! Two connections driven by an arbitrary script of operations and raw input.
#![no_main]
use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // One fixed epoch keeps every run of an input identical.
    let epoch = *EPOCH.get_or_init(Instant::now);
    rigwire_core::fuzzing::connection(data, epoch);
});
