//! The websocket codec against a peer that breaks the framing: whatever it
//! sends afterwards is discarded, never decoded (nor a panic).

use rigwire_ws::{Handshake, Violation, WsCodec};

/// Both ends of an upgrade done in memory.
fn upgraded(max_frame: u32) -> (WsCodec, WsCodec) {
    let mut client = Handshake::client("ws://127.0.0.1:1/rig", max_frame).unwrap();
    let mut server = Handshake::server("/rig", max_frame).unwrap();
    let request = client.take_output();
    let server_codec = server
        .feed(&request)
        .unwrap()
        .expect("the request is whole");
    let client_codec = client
        .feed(&server.take_output())
        .unwrap()
        .expect("the answer is whole");
    (client_codec, server_codec)
}

#[test]
fn after_an_oversized_header_what_follows_is_discarded_not_decoded() {
    let (_client, mut server) = upgraded(16 * 1024 * 1024);
    // A masked binary frame announcing 8 MiB, before authentication.
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(8u64 << 20).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    let err = server.decode(&header).unwrap_err();
    assert_eq!(Violation::of(&err), Some(Violation::TooLarge(8 << 20)));
    // The peer goes on sending (more than the decoder's buffer holds):
    // tungstenite kept the refused header, and decoding again asserted
    // `in_buffer.capacity() > len` (a panic in a debug build).
    for _ in 0..8 {
        let decoded = server.decode(&[0x55; 40 * 1024]).unwrap();
        assert!(decoded.frames.is_empty() && !decoded.closed);
    }
}
