//! Entry point for the fuzz target of this crate (`fuzz/fuzz_targets/ws_input.rs`)
//! and its corpus replay: arbitrary bytes as a client would send them,
//! through the server's upgrade and then the websocket framing. Nothing may
//! panic, and before authentication no message over the pre-authentication
//! frame size may come out.

use rigwire_core::framing::PRE_AUTH_MAX_FRAME;

use crate::Handshake;

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
    let mut frames = 0usize;
    for piece in std::iter::once(&[][..]).chain(pieces) {
        codec.push(piece);
        loop {
            match codec.next_frame() {
                Ok(Some(Some(frame))) => {
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
                Ok(Some(None)) | Err(_) => return,
                Ok(None) => break,
            }
        }
        let _ = codec.take_output();
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

    /// The seed corpus and any saved crash reproducers, replayed.
    #[test]
    fn the_fuzz_corpus_replays_cleanly() {
        let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        for dir in ["corpus/ws_input", "artifacts/ws_input"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                upgrade_and_frames(&std::fs::read(entry.path()).unwrap());
            }
        }
    }
}
