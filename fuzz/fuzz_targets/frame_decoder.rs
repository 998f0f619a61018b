//! The stream frame decoder: same frames however the stream is split, bounded memory.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rigwire_core::fuzzing::frame_decoder(data));
