//! The message decoder: never panics; whatever decodes survives a round trip.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rigwire_core::fuzzing::message(data));
