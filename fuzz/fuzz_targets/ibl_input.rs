//! An iblutil endpoint fed arbitrary datagrams, sends and time.
#![no_main]
use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let epoch = *EPOCH.get_or_init(Instant::now);
    rigwire_core::fuzzing::ibl(data, epoch);
});
