//! Keepalive, close, goodbye and transport loss: nothing pending is ever left waiting.

// The sans-IO rule (core/clippy.toml) is for core/src; tests may read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::Duration;

use common::*;
use rigwire_core::testing::{Netem, Side};
use rigwire_core::{
    CallError, CancelReason, ConnectionError, EchoError, Event, Framing, ProtocolConfig,
};

fn live_pair() -> rigwire_core::testing::Pair {
    let client = ProtocolConfig {
        keepalive: fast_keepalive(),
        ..config("script", None)
    };
    let server = ProtocolConfig {
        keepalive: fast_keepalive(),
        ..config("rig", None)
    };
    connected_with(client, server)
}

#[test]
fn an_idle_connection_stays_up_on_keepalives() {
    let mut p = live_pair();
    p.advance(Duration::from_secs(60));
    assert!(p.client.is_established() && p.server.is_established());
    assert!(p.client_events.is_empty() && p.server_events.is_empty());
    // Keepalives are real traffic: both sides have been receiving pings or pongs.
    assert!(p.client.stats().frames_in > 100);
}

#[test]
fn a_ten_minute_call_on_a_live_peer_is_fine() {
    let mut p = live_pair();
    let id = p.client.call("slow", json(()), None, p.now).unwrap();
    p.run();
    p.advance(Duration::from_secs(600));
    assert!(response(&p.client_events, id).is_none());
    let Some(Event::Call(call)) = p.server_events.first().cloned() else {
        panic!()
    };
    p.server.reply(call.id, Ok(json("done"))).unwrap();
    p.run();
    assert_eq!(
        response(&p.client_events, id)
            .unwrap()
            .unwrap()
            .decode::<String>()
            .unwrap(),
        "done"
    );
}

#[test]
fn a_dead_peer_fails_every_pending_call_within_the_keepalive_bound() {
    let mut p = live_pair();
    let long = p
        .client
        .call("slow", json(()), Some(Duration::from_secs(3600)), p.now)
        .unwrap();
    let forever = p.client.call("slow", json(()), None, p.now).unwrap();
    p.run();
    let killed_at = p.now;
    p.cut(Side::Server); // the rig's host dies: silence, not a close
    let confirm = p
        .client
        .confirmed_send(bytes::Bytes::from_static(b"x"), p.now)
        .unwrap();
    p.advance(Duration::from_secs(2));
    let err = closed_error(&p.client_events).expect("declared dead");
    assert!(
        matches!(err, ConnectionError::PeerSilent(d) if d <= Duration::from_millis(600) + Duration::from_millis(2)),
        "{err}"
    );
    // Said in tenths of a second (it was "600.412ms" or "6.000139951s").
    assert_eq!(err.to_string(), "peer silent for 0.6 s: declared dead");
    for id in [long, forever] {
        assert!(matches!(
            response(&p.client_events, id),
            Some(Err(CallError::Disconnected(ConnectionError::PeerSilent(_))))
        ));
    }
    assert!(p
        .client_events
        .iter()
        .any(|e| matches!(e, Event::ConfirmFailed { seq, .. } if *seq == confirm)));
    // Closed is the last event, and it came within the bound.
    assert!(matches!(p.client_events.last(), Some(Event::Closed(_))));
    assert!(p.now.duration_since(killed_at) <= Duration::from_secs(2));
    assert_eq!(p.client.calls_in_flight(), 0);
}

#[test]
fn keepalive_off_means_no_pings_and_no_silence_timeout() {
    let client = ProtocolConfig {
        keepalive: None,
        ..config("script", None)
    };
    let server = ProtocolConfig {
        keepalive: None,
        ..config("rig", None)
    };
    let mut p = pair_with(Framing::Stream, client, server, Netem::default());
    p.connect();
    let frames = p.client.stats().frames_in;
    p.advance(Duration::from_secs(3600));
    assert_eq!(p.client.stats().frames_in, frames);
    assert!(p.client.is_established());
    assert_eq!(p.client.poll_timeout(), None);
}

#[test]
fn close_sends_goodbye_and_fails_pending_work_on_both_sides() {
    let mut p = live_pair();
    let ours = p.client.call("slow", json(()), None, p.now).unwrap();
    let theirs = p.server.call("slow", json(()), None, p.now).unwrap();
    p.run();
    p.client.close("experiment finished");
    p.settle();
    assert_eq!(
        response(&p.client_events, ours),
        Some(Err(CallError::Disconnected(
            ConnectionError::LocallyClosed("experiment finished".into())
        )))
    );
    p.run();
    assert_eq!(
        closed_error(&p.server_events),
        Some(ConnectionError::PeerClosed("experiment finished".into()))
    );
    assert!(matches!(
        response(&p.server_events, theirs),
        Some(Err(CallError::Disconnected(_)))
    ));
    assert!(p.server_events.iter().any(|e| matches!(
        e,
        Event::Cancelled {
            reason: CancelReason::Disconnected,
            ..
        }
    )));
}

#[test]
fn errors_are_sticky_after_close() {
    let mut p = live_pair();
    p.client
        .handle_transport_closed("connection reset by peer", p.now);
    p.settle();
    let expected = ConnectionError::TransportClosed("connection reset by peer".into());
    assert_eq!(closed_error(&p.client_events), Some(expected.clone()));
    assert_eq!(
        p.client.call("add", json((1, 2)), None, p.now),
        Err(CallError::Disconnected(expected.clone()))
    );
    assert_eq!(
        p.client.notify("log", json(1), p.now),
        Err(CallError::Disconnected(expected.clone()))
    );
    assert_eq!(
        p.client.ping(p.now),
        Err(CallError::Disconnected(expected.clone()))
    );
    assert_eq!(
        p.client.confirmed_send(bytes::Bytes::new(), p.now),
        Err(EchoError::Disconnected(expected.clone()))
    );
    assert_eq!(p.client.error(), Some(&expected));
    // Closing again or feeding input changes nothing.
    p.client.close("again");
    p.client.handle_input(b"\x00\x00\x00\x01\x09", p.now);
    assert_eq!(p.client.error(), Some(&expected));
    assert_eq!(p.client.poll_timeout(), None);
}

#[test]
fn application_ping_reports_the_round_trip() {
    let mut p = live_pair();
    p.netem.latency = Duration::from_millis(3);
    let seq = p.client.ping(p.now).unwrap();
    p.run();
    assert!(
        p.client_events.contains(&Event::Pong {
            seq,
            rtt: Duration::from_millis(6)
        }),
        "{:?}",
        p.client_events
    );
}

#[test]
fn time_going_backwards_is_treated_as_no_time_passing() {
    let mut p = live_pair();
    let earlier = p.now - Duration::from_secs(5);
    let id = p
        .client
        .call("slow", json(()), Some(Duration::from_millis(10)), p.now)
        .unwrap();
    p.client.handle_timeout(earlier);
    p.client.handle_input(&[], earlier);
    assert!(p.client.poll_event().is_none());
    p.advance(Duration::from_millis(20));
    assert_eq!(
        response(&p.client_events, id),
        Some(Err(CallError::DeadlineExceeded))
    );
}

#[test]
fn shutdown_answers_pending_incoming_calls_before_goodbye() {
    let mut p = live_pair();
    let (id, _) = pending_call(&mut p, "slow", None);
    p.server.shutdown("server shutting down");
    p.run();
    let Some(Err(CallError::Remote(err))) = response(&p.client_events, id) else {
        panic!("{:?}", p.client_events)
    };
    assert_eq!(err.kind, rigwire_core::ErrorKind::Shutdown);
    assert_eq!(
        closed_error(&p.client_events),
        Some(ConnectionError::PeerClosed("server shutting down".into()))
    );
}

#[test]
fn reject_tells_the_peer_why() {
    let mut p = pair_with(
        Framing::Stream,
        config("script", None),
        config("rig", None),
        Netem::default(),
    );
    p.server.reject(
        rigwire_core::RejectCode::ConnectionLimit,
        "64 connections (limit 64)",
    );
    p.run();
    assert_eq!(
        closed_error(&p.client_events),
        Some(ConnectionError::Rejected {
            code: rigwire_core::RejectCode::ConnectionLimit,
            reason: "64 connections (limit 64)".into()
        })
    );
}
