//! What an endpoint sets up before it connects. One attempt to connect has
//! one deadline: each step (dialling, TLS, websocket, the handshake) gets
//! what the steps before it left, and a handshake that times out names the
//! limit the user set. A raised frame limit stays a valid setting.

// The sans-IO rule (core/clippy.toml) is for core/src; tests may read the clock.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use rigwire_core::{Config, ConnectionError, Error, ProtocolConfig};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn the_handshake_gets_what_the_transport_left_of_the_limit() {
    let config = Config::named("script").connect_within(secs(2.0));
    let start = Instant::now();
    let attempt = config.connecting(start).unwrap();
    assert_eq!(attempt.by(), start + secs(2.0));

    // The upgrade took 1.7 s: the handshake has 0.3 s, not 2 s of its own.
    let begun = start + secs(1.7);
    assert_eq!(attempt.left(begun), secs(0.3));
    let protocol = attempt.handshake_settings(&config.protocol, begun);
    assert_eq!(protocol.handshake_timeout, secs(0.3));
    assert!(attempt.handshake_wait(begun) <= attempt.by() + secs(0.1));

    // A quick transport leaves the protocol's own (shorter) timeout as it is.
    let quick = attempt.handshake_settings(&config.protocol, start);
    assert_eq!(
        quick.handshake_timeout,
        ProtocolConfig::default().handshake_timeout.min(secs(2.0))
    );

    // Past the deadline nothing is left, and nothing underflows.
    assert_eq!(attempt.left(start + secs(9.0)), Duration::ZERO);
    let late = attempt.handshake_settings(&config.protocol, start + secs(9.0));
    assert_eq!(late.handshake_timeout, Duration::ZERO);
}

#[test]
fn a_handshake_that_timed_out_names_the_limit_the_user_set() {
    let config = Config::named("script").connect_within(secs(0.5));
    let attempt = config.connecting(Instant::now()).unwrap();
    let cut = Error::Disconnected(ConnectionError::HandshakeTimeout(secs(0.2)));
    // A connection that never was is a failure to connect, not a disconnect.
    let said = "could not connect to tcp://rig:1: no rigwire handshake within 500ms: the port took \
                the connection, then said nothing (another program's port, or a server that is stuck)";
    match attempt.handshake_outcome(Some(Err(cut)), "tcp://rig:1") {
        Err(e @ Error::Connect { .. }) => assert_eq!(e.to_string(), said),
        other => panic!("expected a handshake timeout, got {other:?}"),
    }
    match attempt.handshake_outcome(None, "tcp://rig:1") {
        Err(e @ Error::Connect { .. }) => assert_eq!(e.to_string(), said),
        other => panic!("a wait that ended first: {other:?}"),
    }

    // Other outcomes pass as they are.
    assert!(attempt
        .handshake_outcome(Some(Ok(())), "tcp://rig:1")
        .is_ok());
    let refused = Error::AuthFailed(rigwire_core::AuthFailure::WrongSecret);
    assert!(matches!(
        attempt.handshake_outcome(Some(Err(refused)), "tcp://rig:1"),
        Err(Error::AuthFailed(_))
    ));
}

#[test]
fn a_raised_frame_limit_leaves_room_to_queue_such_a_frame() {
    let big = Config::named("camera").max_frame(256 << 20);
    assert_eq!(big.protocol.max_frame, 256 << 20);
    assert!(big.protocol.max_queued_output >= 256 << 20);
    big.protocol
        .validate()
        .expect("a raised frame limit is a valid setting");
    // Lowering it leaves the queue as it was.
    let small = Config::named("rig").max_frame(64 << 10);
    assert_eq!(
        small.protocol.max_queued_output,
        ProtocolConfig::default().max_queued_output
    );
    assert!(Config::named("rig")
        .max_frame(100)
        .protocol
        .validate()
        .is_err());
}

/// An empty name would show this side to its peers, their logs and the
/// control page as nothing: refused, as a name too long is.
#[test]
fn a_name_empty_or_too_long_is_refused() {
    use rigwire_core::ConfigError;
    let named = |name: &str| Config::named(name).protocol.validate();
    assert_eq!(named(""), Err(ConfigError::EmptyName));
    assert_eq!(named(&"r".repeat(256)), Err(ConfigError::NameTooLong(256)));
    assert_eq!(named("rig-1"), Ok(()));
}

/// A user's "no limit" given as the largest number of seconds: a deadline
/// far away, never an overflow of `Instant + Duration` (which panics).
#[test]
fn the_longest_limits_are_far_deadlines_not_a_panic() {
    use rigwire_core::link::after;
    let now = Instant::now();
    let century = Duration::from_secs(100 * 365 * 86_400);
    assert_eq!(after(now, Duration::MAX), now + century);
    assert_eq!(after(now, secs(2.0)), now + secs(2.0));
    let mut config = Config::named("script").connect_within(Duration::MAX);
    config.protocol.handshake_timeout = Duration::MAX;
    let attempt = config.connecting(now).unwrap();
    assert_eq!(attempt.by(), now + century);
    assert!(attempt.handshake_wait(now) > now + century / 2);
    let protocol = attempt.handshake_settings(&config.protocol, now);
    let conn = rigwire_core::Connection::new(
        protocol,
        rigwire_core::Registry::default(),
        rigwire_core::Role::Client,
        rigwire_core::Framing::Stream,
        [0; 32],
        now,
    );
    assert!(conn.is_ok());
}
