//! The handshake as scripts: each case states what both sides see.

// The sans-IO rule (core/clippy.toml) is for core/src; tests may read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::Duration;

use common::*;
use rigwire_core::testing::{Netem, Side};
use rigwire_core::{
    AuthFailure, CallError, ConnectionError, Event, Framing, Message, RejectCode, Role,
    VersionRange,
};

#[test]
fn without_secret_both_sides_connect_and_learn_names() {
    let mut p = pair_with(
        Framing::Stream,
        config("script", None),
        config("rig-1", None),
        Netem::default(),
    );
    p.connect();
    assert_eq!(
        p.client_events,
        vec![Event::Connected {
            peer_name: "rig-1".into(),
            version: 1
        }]
    );
    assert_eq!(
        p.server_events,
        vec![Event::Connected {
            peer_name: "script".into(),
            version: 1
        }]
    );
    assert_eq!(p.client.peer().unwrap().max_incoming_calls, 256);
}

#[test]
fn with_matching_secret_both_sides_connect() {
    for framing in [Framing::Stream, Framing::Message] {
        let mut p = pair_with(
            framing,
            config("script", Some("s3cret-s3cret-s3cret")),
            config("rig", Some("s3cret-s3cret-s3cret")),
            Netem::default(),
        );
        p.connect();
        assert!(p.client.is_established(), "{framing:?}");
        assert!(p.server.is_established(), "{framing:?}");
    }
}

/// A secret file read whole (`std::fs::read`, Python's `open(f).read()`)
/// keeps its line break, which `--secret-file` leaves out: the two sides
/// then held different secrets, and the handshake said only that they
/// differ. Such a secret is refused where it is made, saying so.
#[test]
fn a_text_secret_ending_in_a_line_break_is_refused_and_a_file_drops_it() {
    use rigwire_core::{ConfigError, Secret};
    let file = b"8f2c0a9e4b7d1f3a6c5e0b2d9a8f7e6c\n";
    for read_whole in [&file[..], b"8f2c0a9e4b7d1f3a6c5e0b2d9a8f7e6c\r\n"] {
        let refused = Secret::new(read_whole.to_vec()).unwrap_err();
        assert_eq!(refused, ConfigError::SecretEndsInLineBreak);
        assert!(refused.to_string().contains("--secret-file"), "{refused}");
        assert!(Secret::from_file_contents(read_whole).is_ok());
    }
    assert!(Secret::new(&file[..file.len() - 1]).is_ok());
    // Random bytes that are not text may end in 0x0a: taken as they are.
    let mut random = vec![0xff; 31];
    random.push(b'\n');
    assert!(Secret::new(random).is_ok());
}

#[test]
fn wrong_secret_fails_on_both_sides_with_a_reject() {
    let mut p = pair_with(
        Framing::Stream,
        config("script", Some("secret-number-one")),
        config("rig", Some("secret-number-two")),
        Netem::default(),
    );
    p.connect();
    // The server finds the client's proof wrong and says so; the client is
    // told why, not left guessing.
    assert_eq!(
        closed_error(&p.server_events),
        Some(ConnectionError::AuthFailed(AuthFailure::WrongSecret))
    );
    match closed_error(&p.client_events) {
        Some(e @ ConnectionError::AuthFailed(AuthFailure::RejectedByPeer(_))) => {
            // Said once: the failure, who refused, and why.
            let shown = e.to_string();
            assert!(shown.contains("secrets differ"), "{shown}");
            assert_eq!(shown.matches("authentication failed").count(), 1, "{shown}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!p
        .client_events
        .iter()
        .any(|e| matches!(e, Event::Connected { .. })));
}

#[test]
fn wrong_secret_sends_an_explicit_reject_frame() {
    let (mut conn, now) = lone(Role::Server, Some("the-right-secret-1234"));
    drain_messages(&mut conn);
    conn.handle_input(&framed(&hello(1, 1, true)), now);
    conn.handle_input(&framed(&Message::Auth { proof: [0; 32] }), now);
    let sent = drain_messages(&mut conn);
    // Only the refusal: nothing that depends on the secret goes to a peer
    // whose proof failed.
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        matches!(&sent[0], Message::Reject { code: RejectCode::AuthFailed, reason } if reason.contains("secrets differ")),
        "{sent:?}"
    );
    assert_eq!(
        conn.error(),
        Some(&ConnectionError::AuthFailed(AuthFailure::WrongSecret))
    );
}

#[test]
fn missing_secret_on_either_side_is_reported_on_both() {
    let mut p = pair_with(
        Framing::Stream,
        config("script", None),
        config("rig", Some("secret-of-16-bytes")),
        Netem::default(),
    );
    p.connect();
    assert_eq!(
        closed_error(&p.client_events),
        Some(ConnectionError::AuthFailed(AuthFailure::NoSecretConfigured))
    );
    assert_eq!(
        closed_error(&p.server_events),
        Some(ConnectionError::AuthFailed(AuthFailure::PeerHasNoSecret))
    );

    let mut p = pair_with(
        Framing::Stream,
        config("script", Some("secret-of-16-bytes")),
        config("rig", None),
        Netem::default(),
    );
    p.connect();
    assert_eq!(
        closed_error(&p.client_events),
        Some(ConnectionError::AuthFailed(AuthFailure::PeerHasNoSecret))
    );
    assert_eq!(
        closed_error(&p.server_events),
        Some(ConnectionError::AuthFailed(AuthFailure::NoSecretConfigured))
    );
}

#[test]
fn version_mismatch_names_both_versions_and_rejects() {
    let (mut conn, now) = lone(Role::Server, None);
    drain_messages(&mut conn);
    conn.handle_input(&framed(&hello(2, 3, false)), now);
    let err = conn.error().unwrap().clone();
    assert_eq!(
        err,
        ConnectionError::VersionMismatch {
            ours: VersionRange { min: 1, max: 1 },
            theirs: VersionRange { min: 2, max: 3 }
        }
    );
    assert_eq!(
        err.to_string(),
        "protocol version mismatch: this side speaks v1, the peer speaks v2..=v3"
    );
    let sent = drain_messages(&mut conn);
    assert!(
        matches!(&sent[0], Message::Reject { code: RejectCode::VersionMismatch, reason } if reason.contains("v2..=v3"))
    );
}

#[test]
fn a_newer_hello_we_cannot_read_is_still_reported_as_a_version_mismatch() {
    // A hypothetical v7 Hello: the frozen prefix, then a layout v1 cannot parse.
    let mut body = vec![0x00];
    body.extend_from_slice(b"RGWR");
    body.extend_from_slice(&[7, 9, 0xff, 0xff]);
    let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&body);
    let (mut conn, now) = lone(Role::Client, None);
    conn.handle_input(&bytes, now);
    assert!(matches!(
        conn.error(),
        Some(ConnectionError::VersionMismatch {
            theirs: VersionRange { min: 7, max: 9 },
            ..
        })
    ));
}

#[test]
fn handshake_timeout_fails_pending_calls_and_rejects() {
    let mut p = pair_with(
        Framing::Stream,
        config("script", None),
        config("rig", None),
        Netem::default(),
    );
    p.cut(Side::Server); // the server's Hello never arrives
    let id = p.client.call("add", json((1, 2)), None, p.now).unwrap();
    p.advance(Duration::from_secs(4));
    assert_eq!(
        closed_error(&p.client_events),
        Some(ConnectionError::HandshakeTimeout(Duration::from_secs(3)))
    );
    assert!(matches!(
        response(&p.client_events, id),
        Some(Err(CallError::Disconnected(
            ConnectionError::HandshakeTimeout(_)
        )))
    ));
}

#[test]
fn calls_made_before_the_handshake_are_queued_then_sent_in_order() {
    let mut p = pair_with(
        Framing::Stream,
        config("script", Some("key-of-sixteen-bytes")),
        config("rig", Some("key-of-sixteen-bytes")),
        Netem::default(),
    );
    let a = p.client.call("add", json((1, 2)), None, p.now).unwrap();
    p.client.notify("log", json("hello"), p.now).unwrap();
    let b = p.client.call("add", json((3, 4)), None, p.now).unwrap();
    // Nothing but the handshake may leave before authentication.
    let first = p.client.poll_transmit().unwrap();
    assert_eq!(
        Message::decode(&first.slice(4..)).unwrap().type_name(),
        "Hello"
    );
    assert!(p.client.poll_transmit().is_none());
    p.inject(Side::Server, &first);
    p.run();
    let calls: Vec<_> = p
        .server_events
        .iter()
        .filter_map(|e| match e {
            Event::Call(c) => Some(c.id),
            Event::Notify(_) => Some(0),
            _ => None,
        })
        .collect();
    assert_eq!(calls, vec![a, 0, b]);
    serve(&mut p, Side::Server);
    assert_eq!(
        response(&p.client_events, a)
            .unwrap()
            .unwrap()
            .decode::<i64>()
            .unwrap(),
        3
    );
    assert_eq!(
        response(&p.client_events, b)
            .unwrap()
            .unwrap()
            .decode::<i64>()
            .unwrap(),
        7
    );
}

#[test]
fn a_call_before_the_handshake_is_a_protocol_violation() {
    let (mut conn, now) = lone(Role::Server, None);
    drain_messages(&mut conn);
    let call = Message::Call {
        id: 1,
        method: "add".into(),
        deadline_us: None,
        codec: rigwire_core::Codec::Json,
        args: bytes::Bytes::from_static(b"[1,2]"),
    };
    conn.handle_input(&framed(&call), now);
    assert_eq!(
        conn.error(),
        Some(&ConnectionError::Protocol(
            "Call received before the handshake completed".into()
        ))
    );
    assert!(drain_events(&mut conn)
        .iter()
        .all(|e| !matches!(e, Event::Call(_))));
    let sent = drain_messages(&mut conn);
    assert!(matches!(
        &sent[0],
        Message::Reject {
            code: RejectCode::Protocol,
            ..
        }
    ));
}

#[test]
fn a_reflected_proof_does_not_verify() {
    // The server echoes the client's own proof back: the role tag differs.
    let (mut client, now) = lone(Role::Client, Some("key-of-sixteen-bytes"));
    let client_hello = drain_messages(&mut client);
    let mut server_hello = hello(1, 1, true);
    if let Message::Hello(h) = &mut server_hello {
        h.name = "mirror".into();
    }
    client.handle_input(&framed(&server_hello), now);
    let sent = drain_messages(&mut client);
    let Message::Auth { proof } = sent[0] else {
        panic!("{sent:?}")
    };
    client.handle_input(&framed(&Message::Auth { proof }), now);
    assert_eq!(
        client.error(),
        Some(&ConnectionError::AuthFailed(AuthFailure::WrongSecret))
    );
    assert_eq!(client_hello.len(), 1);
}

#[test]
fn pre_auth_frames_are_limited_to_4_kib_from_the_header() {
    let (mut conn, now) = lone(Role::Server, None);
    conn.handle_input(&5000u32.to_be_bytes(), now);
    let err = conn.error().unwrap().to_string();
    assert_eq!(
        err,
        "frame of 5000 bytes exceeds the pre-authentication limit of 4096 bytes (is the peer speaking rigwire?)"
    );
    assert_eq!(conn.buffered_input(), 0);
}

#[test]
fn an_http_client_is_refused_as_not_rigwire() {
    let (mut conn, now) = lone(Role::Server, None);
    conn.handle_input(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", now);
    assert!(conn
        .error()
        .unwrap()
        .to_string()
        .contains("(it is an HTTP request: a ws:// client?"));
    // A client that reached a websocket server hears HTTP back.
    let (mut conn, now) = lone(Role::Client, None);
    conn.handle_input(b"HTTP/1.1 400 Bad Request\r\n\r\n", now);
    assert!(conn
        .error()
        .unwrap()
        .to_string()
        .contains("(the peer answered in HTTP: a websocket endpoint? Connect with ws://"));
}

#[test]
fn the_server_proves_itself_only_after_the_client_has() {
    let (mut server, now) = lone(Role::Server, Some("the-right-secret-1234"));
    drain_messages(&mut server);
    // A stranger's Hello alone gets nothing that depends on the secret.
    server.handle_input(&framed(&hello(1, 1, true)), now);
    assert!(drain_messages(&mut server).is_empty());
    assert!(!server.is_established());
}

/// A server that gates admission asks once the client has proven the
/// secret, before its own proof goes out: refused then, the client's
/// handshake fails with the reason (`Rejected`), never completes; admitted,
/// both sides connect.
#[test]
fn a_gated_server_admits_or_refuses_before_its_proof_goes_out() {
    for admit in [false, true] {
        let mut p = pair_with(
            Framing::Stream,
            config("script", Some("s3cret-s3cret-s3cret")),
            config("rig", Some("s3cret-s3cret-s3cret")),
            Netem::default(),
        );
        p.server.gate_admission();
        p.connect();
        assert_eq!(p.server_events, vec![Event::AdmissionWanted]);
        assert!(!p.client.is_established(), "no proof from the server yet");
        assert!(!p.server.is_established());
        if admit {
            p.server.admit();
        } else {
            p.server
                .reject(RejectCode::ConnectionLimit, "the server is full");
        }
        p.run();
        assert_eq!(p.client.is_established(), admit);
        assert_eq!(p.server.is_established(), admit);
        if !admit {
            assert_eq!(
                p.client.error(),
                Some(&ConnectionError::Rejected {
                    code: RejectCode::ConnectionLimit,
                    reason: "the server is full".into()
                })
            );
        }
    }
}

#[test]
fn peer_text_cannot_forge_log_lines() {
    let mut p = pair_with(
        Framing::Stream,
        config("evil\nINFO rigwire: connected peer=trusted-rig", None),
        config("rig", None),
        Netem::default(),
    );
    p.connect();
    let name = &p.server.peer().unwrap().name;
    assert!(!name.contains('\n'), "{name:?}");
    assert_eq!(name, "evil\\nINFO rigwire: connected peer=trusted-rig");
    p.client.close("bye\n\u{1b}[31mred");
    p.run();
    match p.server.error() {
        Some(ConnectionError::PeerClosed(why)) => {
            assert!(!why.chars().any(char::is_control), "{why:?}");
        }
        other => panic!("{other:?}"),
    }
}

/// Spec §5.1: a peer name is at most 255 bytes; a longer one is a protocol
/// violation, answered `Reject{Protocol}` naming the length.
#[test]
fn a_hello_with_a_name_over_255_bytes_is_rejected() {
    for (len, refused) in [(255, false), (256, true)] {
        let (mut conn, now) = lone(Role::Server, None);
        drain_messages(&mut conn);
        let Message::Hello(mut h) = hello(1, 1, false) else {
            unreachable!()
        };
        h.name = "n".repeat(len);
        conn.handle_input(&framed(&Message::Hello(h)), now);
        let sent = drain_messages(&mut conn);
        assert_eq!(conn.error().is_some(), refused, "{len}: {sent:?}");
        if refused {
            assert!(
                matches!(&sent[0], Message::Reject { code: RejectCode::Protocol, reason } if reason.contains("256 bytes")),
                "{sent:?}"
            );
        }
    }
}

#[test]
fn the_lobby_lets_go_of_who_spoke_and_tells_the_silent_and_the_evicted_why() {
    use rigwire_core::link::{Admission, Lobby};

    fn frames(chunks: Vec<bytes::Bytes>) -> Vec<Message> {
        let bytes: Vec<u8> = chunks.concat();
        let mut rest = &bytes[..];
        let mut out = Vec::new();
        while rest.len() >= 4 {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            out.push(Message::decode(&bytes::Bytes::copy_from_slice(&rest[4..4 + len])).unwrap());
            rest = &rest[4 + len..];
        }
        out
    }
    let held = |name| {
        let (mut conn, now) = lone(Role::Server, None);
        drain_messages(&mut conn); // our Hello, sent on accept
        (name, conn, now)
    };
    let mut lobby = Lobby::default();
    assert_eq!(lobby.next_deadline(), None);
    let mut start = None;
    for (id, name) in [(1, "a"), (2, "b"), (3, "c"), (4, "d")] {
        let (socket, conn, now) = held(name);
        let until = now + Duration::from_secs(10 + id);
        start.get_or_insert(until);
        lobby.hold(id, id * 100, socket, Some(conn), until);
    }
    assert_eq!(lobby.next_deadline(), start);

    // "a" and "c" spoke: let go to be served, the others stay.
    let spoke = lobby.spoke(vec![2, 0, 2, 9]);
    let mut ids: Vec<u64> = spoke.iter().map(|l| l.id).collect();
    ids.sort();
    assert_eq!(ids, vec![1, 3]);
    let mut left: Vec<&str> = lobby.sockets().copied().collect();
    left.sort();
    assert_eq!(left, vec!["b", "d"]);

    // "b" is evicted for a newcomer: its last words say why.
    let mut evicted = lobby.evict(200).expect("held here");
    assert_eq!((evicted.id, evicted.socket), (2, "b"));
    let why = Admission::eviction();
    assert_eq!(
        frames(evicted.last_words()),
        vec![Message::Reject {
            code: why.code,
            reason: why.reason
        }]
    );
    assert!(lobby.evict(200).is_none(), "not held any more");

    // "d" stays silent: nothing before its time, then told the handshake timed out.
    let (_, _, now) = held("probe");
    assert!(lobby.expire(now).is_empty());
    let mut expired = lobby.expire(now + Duration::from_secs(60));
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].ticket, 400);
    let words = frames(expired[0].last_words());
    assert!(
        matches!(
            words.as_slice(),
            [Message::Reject {
                code: RejectCode::HandshakeTimeout,
                ..
            }]
        ),
        "{words:?}"
    );
    assert!(lobby.is_empty() && lobby.next_deadline().is_none());
}

#[test]
fn a_server_without_a_secret_beyond_this_machine_is_warned_of() {
    use rigwire_core::{ProtocolConfig, Url};
    let open = ProtocolConfig::named("rig");
    let closed = ProtocolConfig::named("rig")
        .secret("the-right-secret-1234")
        .unwrap();
    let warned =
        |config: &ProtocolConfig, url: &str| config.exposure_warning(&Url::parse(url).unwrap());
    for reachable in [
        "tcp://0.0.0.0:7400",
        "tcp://[::]:7400",
        "ws://10.0.0.5:7400/rig",
        "tls://rig-1.lab:7400",
    ] {
        let warning = warned(&open, reachable).expect(reachable);
        assert!(
            warning.contains(reachable) && warning.contains("without a shared secret"),
            "{warning}"
        );
        assert_eq!(warned(&closed, reachable), None, "{reachable}");
    }
    for here in [
        "tcp://127.0.0.1:7400",
        "tcp://127.0.0.2:7400",
        "tcp://[::1]:7400",
        "ws://localhost:7400/rig",
        "unix:///tmp/rig.sock",
    ] {
        assert_eq!(warned(&open, here), None, "{here}");
    }
}

#[test]
fn failed_accepts_pause_longer_each_time_and_are_told_of_once_a_minute_and_on_recovery() {
    use rigwire_core::link::{AcceptFailures, RETRY_AFTER};

    let t0 = std::time::Instant::now();
    let out_of_fds = std::io::Error::from_raw_os_error(24);
    let mut failures = AcceptFailures::default();
    assert_eq!(
        failures.accepted(t0),
        None,
        "nothing failed: nothing to tell"
    );
    // A failure that lasts: accept fails at once whenever it is tried.
    let mut now = t0;
    let mut told = Vec::new();
    let mut pauses = Vec::new();
    while now < t0 + Duration::from_secs(150) {
        let pause = failures.failed(&out_of_fds, now);
        // The pause is the core's to remember: a runtime asks for it.
        assert_eq!(failures.paused_until(now), Some(pause.until));
        assert_eq!(failures.paused_until(pause.until), None);
        told.extend(pause.tell);
        pauses.push(pause.until - now);
        now = pause.until;
    }
    assert_eq!(pauses[0], RETRY_AFTER);
    assert_eq!(pauses[1], RETRY_AFTER * 2);
    assert!(pauses.windows(2).all(|w| w[1] >= w[0]));
    assert_eq!(*pauses.last().unwrap(), AcceptFailures::LONGEST_PAUSE);
    // About one try a second, not a spin; three lines in 150 s, not one per try.
    assert!(pauses.len() < 170, "{} tries", pauses.len());
    assert_eq!(told.len(), 3, "{told:#?}");
    assert!(told[0].starts_with("accept failed: Too many open files"));
    assert!(told[0].contains("pausing accepts"));
    assert!(told[1].starts_with("accept still failing: Too many open files ("));
    // Recovered: told so, with the count; the next failure starts afresh.
    let back = failures.accepted(now).expect("a recovery is told of");
    assert!(back.starts_with(&format!(
        "accepting again, after {} failed accepts in 1",
        pauses.len()
    )));
    assert_eq!(failures.accepted(now), None);
    let again = failures.failed(&out_of_fds, now);
    assert_eq!(again.until - now, RETRY_AFTER);
    assert!(again.tell.is_some());
}

#[test]
fn tls_settings_a_plain_url_would_leave_unused_are_warned_of() {
    use rigwire_core::{TlsSettings, Trust, Url};
    let url = |u: &str| Url::parse(u).unwrap();
    let serving = TlsSettings {
        cert: Some("rig-1.crt".into()),
        key: Some("rig-1.key".into()),
        ..TlsSettings::default()
    };
    let said = serving.unused_at(&url("tcp://0.0.0.0:7400"), true).unwrap();
    assert_eq!(
        said,
        "a TLS certificate is given, but tcp://0.0.0.0:7400 is not TLS: it serves in clear; \
         listen on tls:// or wss:// to use it"
    );
    assert!(serving
        .unused_at(&url("ws://127.0.0.1:1/rig"), true)
        .is_some());
    assert_eq!(serving.unused_at(&url("tls://0.0.0.0:7400"), true), None);
    assert_eq!(
        serving.unused_at(&url("wss://0.0.0.0:7400/rig"), true),
        None
    );
    // A client's certificate files mean nothing to it; its trust does.
    assert_eq!(serving.unused_at(&url("tcp://rig:7400"), false), None);
    let pinned = TlsSettings {
        trust: Trust::Pin("sha256:00".into()),
        ..TlsSettings::default()
    };
    let said = pinned.unused_at(&url("tcp://rig:7400"), false).unwrap();
    assert_eq!(
        said,
        "a certificate pin is given, but tcp://rig:7400 is not TLS: nothing is encrypted and no \
         certificate is checked; connect with tls:// or wss:// to use it"
    );
    let ca = TlsSettings {
        trust: Trust::Ca("lab-ca.pem".into()),
        ..TlsSettings::default()
    };
    assert!(ca
        .unused_at(&url("unix:///tmp/rig.sock"), false)
        .unwrap()
        .starts_with("a CA to trust is given"));
    assert_eq!(ca.unused_at(&url("tls://rig:7400"), false), None);
    assert_eq!(
        TlsSettings::default().unused_at(&url("tcp://rig:7400"), false),
        None
    );
}

#[test]
fn a_relay_warns_of_open_clients_and_of_a_certificate_a_plain_listener_leaves_unused() {
    use rigwire_core::relay::RelayConfig;
    use rigwire_core::Url;
    let url = |u: &str| Url::parse(u).unwrap();
    let mut config = RelayConfig::default();
    config.tls.cert = Some("relay.crt".into());
    let said = config.listening_warnings(&url("tcp://0.0.0.0:7500"), &url("wss://0.0.0.0:7501/s"));
    assert_eq!(said.len(), 2, "{said:?}");
    assert!(said[0].contains("without a shared secret"), "{said:?}");
    assert!(
        said[1].starts_with("a TLS certificate is given, but tcp://0.0.0.0:7500"),
        "{said:?}"
    );
    let config = config.clients_secret("clients-secret-0123456").unwrap();
    let tls = config.listening_warnings(&url("tls://0.0.0.0:7500"), &url("wss://0.0.0.0:7501/s"));
    assert!(tls.is_empty(), "{tls:?}");
    // One secret for both sides: every client could register as a service.
    let (clients, services) = (url("tls://0.0.0.0:7500"), url("wss://0.0.0.0:7501/s"));
    let same = config.services_secret("clients-secret-0123456").unwrap();
    let said = same.listening_warnings(&clients, &services);
    assert_eq!(
        said,
        [
            "the clients and the services share one secret: any client could register a service \
          and forge its answers; give the services a secret of their own \
          (`rigwire secret new services.secret`)"
        ]
    );
    let apart = same.services_secret("services-secret-0123456").unwrap();
    assert!(apart.listening_warnings(&clients, &services).is_empty());
}
