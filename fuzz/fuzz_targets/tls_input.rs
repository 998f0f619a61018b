//! The TLS layer: a server's TLS opening on a stranger's bytes, and its wire
//! after a real handshake, on arbitrary ciphertext and application data.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rigwire_ws::fuzzing::tls_input(data));
