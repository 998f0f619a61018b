//! Echo-confirmed messages: exact echo, mismatch and timeout fail that send only.

// The sans-IO rule (core/clippy.toml) is for core/src; tests may read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use rigwire_core::testing::Side;
use rigwire_core::{EchoError, Event, Message};

#[test]
fn a_confirmed_send_resolves_when_the_peer_echoes_it() {
    let mut p = connected();
    let seq = p
        .client
        .confirmed_send(
            Bytes::from_static(b"[\"START\", \"2026-11-21_1_mouse\"]"),
            p.now,
        )
        .unwrap();
    p.run();
    assert_eq!(
        p.server_events,
        vec![Event::Message {
            seq,
            payload: Bytes::from_static(b"[\"START\", \"2026-11-21_1_mouse\"]")
        }]
    );
    assert_eq!(p.client_events, vec![Event::Confirmed { seq }]);
}

#[test]
fn a_wrong_echo_fails_that_send_only() {
    let mut p = connected();
    let seq = p
        .client
        .confirmed_send(Bytes::from_static(b"abc"), p.now)
        .unwrap();
    // Intercept the server's side: a peer that echoes something else.
    p.cut(Side::Server);
    p.run();
    p.inject(
        Side::Client,
        &framed(&Message::Echo {
            seq,
            payload: Bytes::from_static(b"abd"),
        }),
    );
    assert_eq!(
        p.client_events,
        vec![Event::ConfirmFailed {
            seq,
            error: EchoError::Mismatch { sent: 3, echoed: 3 }
        }]
    );
    assert!(p.client.is_established());
}

#[test]
fn no_echo_within_the_timeout_fails_that_send_only() {
    let mut p = connected();
    p.netem.latency = Duration::from_millis(600); // 1.2 s round trip > 1 s default
    let seq = p
        .client
        .confirmed_send(Bytes::from_static(b"abc"), p.now)
        .unwrap();
    p.advance(Duration::from_millis(999));
    assert!(p.client_events.is_empty());
    p.advance(Duration::from_millis(1));
    assert_eq!(
        p.client_events,
        vec![Event::ConfirmFailed {
            seq,
            error: EchoError::Timeout(Duration::from_secs(1))
        }]
    );
    p.run();
    assert_eq!(p.client.stats().unknown_echoes, 1);
    assert!(p.client.is_established());
    // The connection still works for the next send.
    p.netem.latency = Duration::from_millis(1);
    let next = p
        .client
        .confirmed_send(Bytes::from_static(b"def"), p.now)
        .unwrap();
    p.run();
    assert!(p.client_events.contains(&Event::Confirmed { seq: next }));
}

#[test]
fn too_many_unconfirmed_sends_are_refused() {
    let mut p = connected();
    for _ in 0..64 {
        p.client
            .confirmed_send(Bytes::from_static(b"x"), p.now)
            .unwrap();
    }
    assert_eq!(
        p.client.confirmed_send(Bytes::from_static(b"x"), p.now),
        Err(EchoError::TooMany(64))
    );
}
