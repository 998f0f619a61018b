//! Entry points for the fuzz targets of this crate
//! (`fuzz/fuzz_targets/ws_input.rs`, `tls_input.rs`) and their corpus
//! replay: arbitrary bytes as a client would send them, through the
//! server's upgrade and then the websocket framing, or into a TLS server's
//! opening and, after a real handshake, into its wire. Nothing may panic,
//! and before authentication no message over the pre-authentication frame
//! size may come out.

use std::time::Instant;

use bytes::Bytes;
use rigwire_core::framing::PRE_AUTH_MAX_FRAME;
use rigwire_core::{TlsProblem, Url};

use crate::tls::{self_signed, ClientTls, ServerTls};
use crate::{Handshake, Opening, Sink, Violation};

/// Feeds `data` (its first byte picks the chunk size) to a server upgrade
/// for `/rig`, then to the websocket decoder, opening the limit after some
/// frames as authentication would.
pub fn upgrade_and_frames(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first % 64) + 1;
    let Ok(mut upgrade) = Handshake::server("/rig", 64 * 1024) else {
        return;
    };
    let mut pieces = rest.chunks(chunk);
    let mut codec = loop {
        let Some(piece) = pieces.next() else {
            return;
        };
        match upgrade.feed(piece) {
            Ok(Some(codec)) => break codec,
            Ok(None) => {
                let _ = upgrade.take_output();
            }
            Err(_) => return,
        }
    };
    // After an error or the peer's close, a runtime goes on reading (and
    // handing in) until the peer ends its side: so does this, and nothing
    // more may come out after an error.
    let (mut frames, mut failed) = (0usize, false);
    for piece in std::iter::once(&[][..]).chain(pieces) {
        codec.push(piece);
        loop {
            match codec.next_frame() {
                Ok(Some(Some(frame))) => {
                    assert!(!failed, "a message after the framing broke");
                    assert!(
                        !codec.is_pre_auth() || frame.len() <= PRE_AUTH_MAX_FRAME as usize + 64,
                        "a {}-byte message before authentication",
                        frame.len()
                    );
                    frames += 1;
                    if frames == 2 {
                        codec.open_up();
                    }
                }
                Ok(Some(None)) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
                Ok(None) => break,
            }
        }
        let _ = codec.take_output();
    }
}

/// A server identity and a client that pins it, made once per process.
fn tls_pair() -> &'static (ServerTls, ClientTls) {
    static PAIR: std::sync::OnceLock<(ServerTls, ClientTls)> = std::sync::OnceLock::new();
    PAIR.get_or_init(|| {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let made = self_signed(&["rig".into()]).expect("a certificate");
        let cert = CertificateDer::from_pem_slice(made.cert_pem.as_bytes()).expect("PEM");
        let key = PrivateKeyDer::from_pem_slice(made.key_pem.as_bytes()).expect("PEM");
        let server = ServerTls::new(vec![cert], key).expect("an identity");
        let client = ClientTls::from_settings(&rigwire_core::TlsSettings {
            trust: rigwire_core::Trust::Pin(made.fingerprint),
            ..Default::default()
        })
        .expect("a pin");
        (server, client)
    })
}

/// Discards what a wire delivers, checking only that nothing panics.
struct Ignore;

impl Sink for Ignore {
    fn authenticated(&mut self) -> bool {
        false
    }
    fn bytes(&mut self, _: &[u8], _: Instant) {}
    fn frame(&mut self, frame: Bytes, _: Instant) {
        assert!(frame.len() <= PRE_AUTH_MAX_FRAME as usize + 64);
    }
    fn violation(&mut self, _: Violation, _: Instant) {}
    fn closed(&mut self, _: &str, _: Instant) {}
    fn tls_failed(&mut self, _: TlsProblem, _: Instant) {}
}

/// The first byte picks the transport (`tls://` or `wss://`) and whether
/// the bytes go to a TLS server's opening as a stranger's, or into its
/// wire after a real client's handshake (as ciphertext, then as
/// application data the client encrypts); the second, the chunk size.
pub fn tls_input(data: &[u8]) {
    let [mode, size, rest @ ..] = data else {
        return;
    };
    let chunk = usize::from(size % 64) + 1;
    let url = match mode % 2 {
        0 => Url::parse("tls://127.0.0.1:1").expect("a URL"),
        _ => Url::parse("wss://127.0.0.1:1/rig").expect("a URL"),
    };
    let (server_tls, client_tls) = tls_pair();
    let Ok(mut server) = Opening::server(&url, Some(server_tls), 64 * 1024) else {
        return;
    };
    if mode % 4 < 2 {
        // A stranger's bytes where the ClientHello belongs.
        for piece in rest.chunks(chunk) {
            if !matches!(server.feed(piece), Ok(None)) {
                return;
            }
            let _ = server.take_output();
        }
        return;
    }
    // A real client first, then the bytes.
    let Ok(mut client) = Opening::client(&url, Some(client_tls), 64 * 1024) else {
        return;
    };
    let (mut c, mut s) = (None, None);
    let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        if c.is_none() {
            c = client.feed(&std::mem::take(&mut to_client)).ok().flatten();
            to_server.extend(client.take_output());
        }
        if s.is_none() {
            s = server.feed(&std::mem::take(&mut to_server)).ok().flatten();
            to_client.extend(server.take_output());
        }
    }
    let (Some(mut client_wire), Some(mut server_wire)) = (c, s) else {
        panic!("a real client's handshake did not complete");
    };
    let now = Instant::now();
    server_wire.start(&mut Ignore, now);
    client_wire.start(&mut Ignore, now);
    for piece in rest.chunks(chunk) {
        let bytes = match mode % 8 < 6 {
            true => piece.to_vec(),
            // As application data: through the client's encryption.
            false => client_wire.tls.as_mut().expect("tls").encrypt(piece),
        };
        server_wire.feed(&mut Ignore, Ok(bytes.len()), &bytes, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_upgrades_and_frames_do_not_panic() {
        upgrade_and_frames(&[]);
        upgrade_and_frames(b"\x05GET / HTTP/1.1\r\n\r\n");
        let mut request = b"\x10GET /rig HTTP/1.1\r\nHost: rig\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec();
        // A masked binary message announcing 8 MiB: refused at its header.
        request.extend_from_slice(&[0x82, 0xFF, 0, 0, 0, 0, 0, 0x80, 0, 0, 1, 2, 3, 4]);
        request.extend_from_slice(&[0u8; 300]);
        upgrade_and_frames(&request);
    }

    #[test]
    fn garbage_into_tls_openings_and_wires_does_not_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for mode in 0..8u8 {
            for len in [0usize, 1, 5, 17, 300, 5000] {
                let mut data = vec![mode, (len % 251) as u8];
                data.extend((0..len).map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                }));
                tls_input(&data);
            }
            // A record header announcing a huge handshake message.
            tls_input(&[
                mode, 63, 0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0xff, 0xff, 0xff,
            ]);
        }
    }

    /// The seed corpus and any saved crash reproducers, replayed.
    #[test]
    fn the_fuzz_corpus_replays_cleanly() {
        let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let targets = [
            ("ws_input", upgrade_and_frames as fn(&[u8])),
            ("tls_input", tls_input),
        ];
        for (target, run) in targets {
            for dir in ["corpus", "artifacts"] {
                let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
                    continue;
                };
                for entry in entries.flatten() {
                    run(&std::fs::read(entry.path()).unwrap());
                }
            }
        }
    }
}
