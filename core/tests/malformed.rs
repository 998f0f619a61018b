//! Hostile and broken input: every case ends in a defined error or is safely
//! ignored, never a panic, and memory stays bounded.

// The sans-IO rule (core/clippy.toml) is for core/src; tests may read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use rigwire_core::testing::{Netem, Side};
use rigwire_core::{
    Codec, ConnectionError, DecodeError, Event, FrameError, Framing, Message, Role,
};

/// Feeds `bytes` to a fresh server after a valid Hello exchange, or before it.
fn feed(established: bool, bytes: &[u8]) -> rigwire_core::Connection {
    let (mut conn, now) = lone(Role::Server, None);
    if established {
        conn.handle_input(&framed(&hello(1, 1, false)), now);
        assert!(conn.is_established());
    }
    conn.handle_input(bytes, now);
    conn
}

fn frame_of(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

#[test]
fn truncated_frames_wait_for_more_and_are_bounded() {
    let full = framed(&Message::Ping { seq: 1 });
    for cut in 0..full.len() {
        let conn = feed(true, &full[..cut]);
        assert!(conn.error().is_none(), "cut at {cut}");
        assert_eq!(conn.buffered_input(), cut);
    }
}

#[test]
fn a_truncated_message_inside_a_complete_frame_is_a_decode_error() {
    let body = Message::Call {
        id: 1,
        method: "add".into(),
        deadline_us: None,
        codec: Codec::Json,
        args: Bytes::from_static(b"[1,2]"),
    }
    .encode();
    for cut in 1..body.len() {
        let conn = feed(true, &frame_of(&body[..cut]));
        assert!(
            matches!(conn.error(), Some(ConnectionError::Decode(_))),
            "cut {cut}: {:?}",
            conn.error()
        );
    }
}

#[test]
fn oversized_lengths_are_rejected_from_the_header_in_both_phases() {
    let conn = feed(false, &u32::MAX.to_be_bytes());
    assert!(matches!(
        conn.error(),
        Some(ConnectionError::Frame(FrameError::TooLarge {
            pre_auth: true,
            limit: 4096,
            ..
        }))
    ));
    let conn = feed(true, &(16 * 1024 * 1024 + 1u32).to_be_bytes());
    assert!(matches!(
        conn.error(),
        Some(ConnectionError::Frame(FrameError::TooLarge {
            pre_auth: false,
            ..
        }))
    ));
    assert_eq!(conn.buffered_input(), 0);
}

#[test]
fn oversized_datagrams_are_rejected_on_message_transports() {
    let mut p = pair_with(
        Framing::Message,
        config("c", None),
        config("s", None),
        Netem::default(),
    );
    p.inject(Side::Server, &vec![0u8; 5000]);
    assert!(matches!(
        p.server.error(),
        Some(ConnectionError::Frame(FrameError::TooLarge {
            len: 5000,
            ..
        }))
    ));
}

#[test]
fn wrong_magic_says_not_rigwire() {
    let mut body = hello(1, 1, false).encode();
    body[1..5].copy_from_slice(b"HTTP");
    let conn = feed(false, &frame_of(&body));
    assert_eq!(
        conn.error(),
        Some(&ConnectionError::Decode(DecodeError::BadMagic(*b"HTTP")))
    );
    assert!(conn
        .error()
        .unwrap()
        .to_string()
        .contains("not speaking rigwire"));
}

#[test]
fn wrong_version_is_a_version_mismatch() {
    let conn = feed(false, &framed(&hello(0, 0, false)));
    assert!(matches!(
        conn.error(),
        Some(ConnectionError::VersionMismatch { .. })
    ));
    let conn = feed(false, &framed(&hello(5, 2, false))); // inverted range
    assert!(matches!(
        conn.error(),
        Some(ConnectionError::VersionMismatch { .. })
    ));
}

#[test]
fn garbage_after_a_valid_frame_is_an_error_and_the_valid_frame_still_counts() {
    let mut bytes = framed(&Message::Ping { seq: 1 });
    bytes.extend_from_slice(&[0xff; 12]);
    let mut conn = feed(true, &bytes);
    assert!(
        matches!(conn.error(), Some(ConnectionError::Frame(_))),
        "{:?}",
        conn.error()
    );
    // The ping before the garbage was answered (Pong is queued before Goodbye).
    let sent = drain_messages(&mut conn);
    assert!(
        sent.iter().any(|m| *m == Message::Pong { seq: 1 }),
        "{sent:?}"
    );
    assert!(matches!(sent.last(), Some(Message::Goodbye { .. })));
}

#[test]
fn trailing_bytes_inside_a_frame_are_an_error() {
    let mut body = Message::Ping { seq: 1 }.encode();
    body.push(0);
    let conn = feed(true, &frame_of(&body));
    assert_eq!(
        conn.error(),
        Some(&ConnectionError::Decode(DecodeError::TrailingBytes {
            message: "Ping",
            trailing: 1
        }))
    );
}

#[test]
fn replies_and_other_traffic_before_the_handshake_are_refused() {
    for msg in [
        Message::Reply {
            id: 1,
            codec: Codec::Json,
            result: Bytes::from_static(b"1"),
        },
        Message::Error {
            id: 1,
            kind: rigwire_core::ErrorKind::Handler,
            message: "x".into(),
            detail: None,
        },
        Message::Notify {
            method: "log".into(),
            codec: Codec::Json,
            args: Bytes::new(),
        },
        Message::Cancel { id: 1 },
        Message::Ping { seq: 1 },
        Message::Confirm {
            seq: 1,
            payload: Bytes::new(),
        },
        Message::Echo {
            seq: 1,
            payload: Bytes::new(),
        },
        Message::Auth { proof: [0; 32] },
    ] {
        let mut conn = feed(false, &framed(&msg));
        assert!(
            matches!(conn.error(), Some(ConnectionError::Protocol(m)) if m.contains("before the handshake")),
            "{msg:?}"
        );
        assert!(drain_events(&mut conn)
            .iter()
            .all(|e| matches!(e, Event::Closed(_))));
    }
}

#[test]
fn a_second_hello_after_the_handshake_is_a_protocol_violation() {
    let conn = feed(true, &framed(&hello(1, 1, false)));
    assert!(
        matches!(conn.error(), Some(ConnectionError::Protocol(m)) if m.contains("after the handshake"))
    );
}

#[test]
fn unknown_message_types_and_invalid_utf8_are_decode_errors() {
    let conn = feed(true, &frame_of(&[200]));
    assert!(matches!(
        conn.error(),
        Some(ConnectionError::Decode(DecodeError::Malformed(_)))
    ));
    // Goodbye whose reason is not UTF-8.
    let conn = feed(true, &frame_of(&[3, 2, 0xff, 0xfe]));
    assert!(matches!(
        conn.error(),
        Some(ConnectionError::Decode(DecodeError::Malformed(_)))
    ));
    let conn = feed(true, &frame_of(&[]));
    assert_eq!(
        conn.error(),
        Some(&ConnectionError::Decode(DecodeError::Empty))
    );
}

#[test]
fn replies_cancels_echoes_and_pongs_for_unknown_ids_are_counted_not_fatal() {
    let mut p = connected();
    for msg in [
        Message::Reply {
            id: 77,
            codec: Codec::Json,
            result: Bytes::from_static(b"1"),
        },
        Message::Error {
            id: 78,
            kind: rigwire_core::ErrorKind::Handler,
            message: "x".into(),
            detail: None,
        },
        Message::Cancel { id: 79 },
        Message::Echo {
            seq: 80,
            payload: Bytes::new(),
        },
        Message::Pong { seq: 81 },
    ] {
        p.inject(Side::Client, &framed(&msg));
    }
    let stats = p.client.stats();
    assert_eq!(
        (
            stats.unknown_replies,
            stats.unknown_cancels,
            stats.unknown_echoes,
            stats.unknown_pongs
        ),
        (2, 1, 1, 1)
    );
    assert!(p.client.is_established());
}

#[test]
fn a_peer_that_floods_without_reading_is_cut_off_at_the_output_limit() {
    let (mut conn, now) = lone(Role::Server, None);
    conn.handle_input(&framed(&hello(1, 1, false)), now);
    let mut pings = Vec::new();
    for seq in 0..10_000u64 {
        pings.extend_from_slice(&framed(&Message::Ping { seq }));
    }
    let small = rigwire_core::ProtocolConfig {
        max_frame: 4096,
        max_queued_output: 4096,
        ..config("s", None)
    };
    let mut conn2 = rigwire_core::Connection::new(
        small,
        rig_registry(),
        Role::Server,
        Framing::Stream,
        [3; 32],
        now,
    )
    .unwrap();
    conn2.handle_input(&framed(&hello(1, 1, false)), now);
    let mut fed = 0;
    for chunk in pings.chunks(64) {
        if !conn2.wants_input() {
            break;
        }
        conn2.handle_input(chunk, now);
        fed += chunk.len();
    }
    // A runtime that honours wants_input stops reading before the hard limit.
    assert!(fed < pings.len());
    assert!(conn2.error().is_none());
    assert!(conn2.queued_output() <= 4096 + 64);
    // One that does not is cut off at twice the limit instead of growing.
    conn2.handle_input(&pings[fed..], now);
    assert!(matches!(
        conn2.error(),
        Some(ConnectionError::OutputOverflow { limit: 8192, .. })
    ));
    conn.handle_input(&pings, now);
    assert!(conn.error().is_none());
}

#[test]
fn lossy_and_corrupting_networks_end_in_defined_states() {
    for framing in [Framing::Stream, Framing::Message] {
        for seed in 1..40u64 {
            let netem = Netem {
                latency: Duration::from_millis(2),
                loss: 0.05,
                garble: 0.05,
                seed,
            };
            let client = rigwire_core::ProtocolConfig {
                keepalive: fast_keepalive(),
                default_call_timeout: Some(Duration::from_millis(300)),
                ..config("c", Some("key-of-sixteen-bytes"))
            };
            let server = rigwire_core::ProtocolConfig {
                keepalive: fast_keepalive(),
                ..config("s", Some("key-of-sixteen-bytes"))
            };
            let mut p = pair_with(framing, client, server, netem);
            let mut ids = Vec::new();
            for round in 0..20 {
                if let Ok(id) = p.client.call("add", json((round, 1)), None, p.now) {
                    ids.push(id);
                }
                let _ = p.client.confirmed_send(Bytes::from_static(b"sync"), p.now);
                p.advance(Duration::from_millis(20));
                serve(&mut p, Side::Server);
            }
            p.advance(Duration::from_secs(2));
            // Every call has exactly one outcome; nothing is left waiting.
            for id in ids {
                let n = p
                    .client_events
                    .iter()
                    .filter(|e| matches!(e, Event::Response { id: got, .. } if *got == id))
                    .count();
                assert_eq!(n, 1, "{framing:?} seed {seed} call {id}");
            }
            assert_eq!(p.client.calls_in_flight(), 0);
        }
    }
}
