//! The websocket layer: a server's upgrade, then framing, on arbitrary bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rigwire_ws::fuzzing::upgrade_and_frames(data));
