//! Calls in both directions, dispatch, remote errors, deadlines, cancels and
//! the bounded in-flight tables, as scripts over the two-peer harness.

// The sans-IO rule (core/clippy.toml) is for core/src; tests may read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use rigwire_core::testing::{Netem, Pair, Side};
use rigwire_core::{
    CallError, CancelReason, Codec, ErrorKind, Event, ExposedMethod, Framing, Message, Payload,
    ProtocolConfig, Registry, RemoteError, ReplyError, INTROSPECTION_METHOD,
};

#[test]
fn calls_flow_in_both_directions_with_either_codec() {
    let mut p = connected();
    let a = p.client.call("add", json((2, 3)), None, p.now).unwrap();
    let b = p
        .client
        .call(
            "add",
            Payload::postcard(&(10i64, 20i64)).unwrap(),
            None,
            p.now,
        )
        .unwrap();
    p.run();
    serve(&mut p, Side::Server);
    let ra = response(&p.client_events, a).unwrap().unwrap();
    assert_eq!((ra.codec, ra.decode::<i64>().unwrap()), (Codec::Json, 5));
    let rb = response(&p.client_events, b).unwrap().unwrap();
    assert_eq!(
        (rb.codec, rb.decode::<i64>().unwrap()),
        (Codec::Postcard, 30)
    );

    // The rig calls back the script over the same connection (as kaa does).
    let c = p.server.call("echo", json("ready?"), None, p.now).unwrap();
    p.run();
    serve(&mut p, Side::Client);
    let rc = response(&p.server_events, c).unwrap().unwrap();
    assert_eq!(rc.decode::<String>().unwrap(), "ready?");
}

#[test]
fn aliases_reach_the_same_handler() {
    let mut p = connected();
    p.client.call("plus", json((1, 1)), None, p.now).unwrap();
    p.run();
    let Event::Call(call) = &p.server_events[0] else {
        panic!()
    };
    assert_eq!(call.method, "plus");
    assert_eq!(p.server.registry().name_of(call.handler), Some("add"));
}

#[test]
fn notify_reaches_the_handler_and_needs_no_answer() {
    let mut p = connected();
    p.client.notify("log", json("trial 3 done"), p.now).unwrap();
    p.run();
    let Event::Notify(n) = &p.server_events[0] else {
        panic!("{:?}", p.server_events)
    };
    assert_eq!(n.method, "log");
    assert_eq!(n.args.decode::<String>().unwrap(), "trial 3 done");
    assert!(p.client_events.is_empty());
}

#[test]
fn a_notify_to_an_unknown_name_is_reported_back_not_dropped() {
    let mut p = connected();
    p.client.notify("nope", json(1), p.now).unwrap();
    p.run();
    assert!(p.server_events.is_empty());
    let Event::PeerError(err) = &p.client_events[0] else {
        panic!("{:?}", p.client_events)
    };
    assert_eq!(err.kind, ErrorKind::NoSuchMethod);
    assert!(err.message.contains("'nope'"));
}

#[test]
fn unknown_methods_are_answered_by_the_core() {
    let mut p = connected();
    let id = p
        .client
        .call("launch_missiles", json(()), None, p.now)
        .unwrap();
    p.run();
    assert!(p.server_events.is_empty(), "the application never sees it");
    let Err(CallError::Remote(err)) = response(&p.client_events, id).unwrap() else {
        panic!()
    };
    assert_eq!(err.kind, ErrorKind::NoSuchMethod);
    assert_eq!(
        err.message,
        "no method 'launch_missiles' is exposed; call rigwire.methods to list them"
    );
    assert_eq!(p.server.stats().no_such_method, 1);
}

/// A name one typo away from an exposed one (a letter missing, extra,
/// wrong, two swapped, another case) is answered with the name meant.
#[test]
fn a_misspelt_method_is_answered_with_the_name_meant() {
    let mut rig = Registry::new();
    for name in ["exp.start", "exp.stop", "grab_frame", "set_laser_power"] {
        rig.expose(name).unwrap();
    }
    let mut p = Pair::new(
        Instant::now(),
        Framing::Stream,
        (config("script", None), Registry::new()),
        (config("rig", None), rig),
        Netem::default(),
    );
    p.connect();
    let asked = [
        ("exp.strat", Some("exp.start")),
        ("exp.stp", Some("exp.stop")),
        ("Grab_Frame", Some("grab_frame")),
        ("grab_frames", Some("grab_frame")),
        ("set_lazer_powr", Some("set_laser_power")),
        ("laser", None),
        ("exp", None),
    ];
    let ids: Vec<u64> = asked
        .iter()
        .map(|(name, _)| p.client.call(name, json(()), None, p.now).unwrap())
        .collect();
    p.run();
    for ((name, meant), id) in asked.iter().zip(ids) {
        let Err(CallError::Remote(err)) = response(&p.client_events, id).unwrap() else {
            panic!()
        };
        assert_eq!(err.kind, ErrorKind::NoSuchMethod);
        let expected = match meant {
            Some(meant) => format!(
                "no method '{name}' is exposed: did you mean '{meant}'? (call rigwire.methods \
                 to list them)"
            ),
            None => format!("no method '{name}' is exposed; call rigwire.methods to list them"),
        };
        assert_eq!(err.message, expected);
    }
}

/// Finding the name meant is bounded: past the first names looked at, a
/// rig exposing thousands answers without a guess rather than spend its
/// time on a peer's unknown names.
#[test]
fn the_name_meant_is_looked_for_among_a_bounded_number_of_names() {
    let mut rig = Registry::new();
    for i in 0..2000 {
        rig.expose(&format!("channel_{i:04}")).unwrap();
    }
    assert_eq!(rig.closest_to("chanel_0001"), Some("channel_0001"));
    assert_eq!(rig.closest_to("chanel_1999"), None);
}

/// A `URL#NAME` given a rig's URL instead of a relay's: the client follows
/// `NAME` and calls `NAME.method`. The rig says it is not a relay, where it
/// would otherwise answer only that `NAME.method` is not exposed.
#[test]
fn a_service_name_sent_to_a_peer_that_is_not_a_relay_is_told_so() {
    let mut p = connected();
    let target = rigwire_core::Target::parse("tcp://127.0.0.1:7400#data").unwrap();
    target.follow(&mut p.client, p.now).unwrap();
    let meant = p
        .client
        .call(&target.method("echo"), json(1), None, p.now)
        .unwrap();
    let listing = target.method(INTROSPECTION_METHOD);
    let listed = p.client.call(&listing, json(()), None, p.now).unwrap();
    let typo = p.client.call("data.nope", json(1), None, p.now).unwrap();
    let reserved = p.client.call("rigwire.echo", json(1), None, p.now).unwrap();
    p.run();
    let Event::PeerError(follow) = &p.client_events[0] else {
        panic!("{:?}", p.client_events)
    };
    assert!(
        follow.message.contains("this peer is not a relay"),
        "{follow:?}"
    );
    for id in [meant, listed] {
        let Err(CallError::Remote(err)) = response(&p.client_events, id).unwrap() else {
            panic!()
        };
        assert_eq!(err.kind, ErrorKind::NoSuchMethod);
        assert!(err.message.contains("this peer is not a relay"), "{err:?}");
        assert!(err.message.contains("without #NAME"), "{err:?}");
    }
    // `nope` is not exposed here either: no guess about a relay.
    let Err(CallError::Remote(err)) = response(&p.client_events, typo).unwrap() else {
        panic!()
    };
    assert_eq!(
        err.message,
        "no method 'data.nope' is exposed; call rigwire.methods to list them"
    );
    // Nor about a name of the protocol's.
    let Err(CallError::Remote(err)) = response(&p.client_events, reserved).unwrap() else {
        panic!()
    };
    assert!(!err.message.contains("relay"), "{err:?}");
}

#[test]
fn introspection_lists_names_and_aliases_in_the_callers_codec() {
    let mut p = connected();
    let j = p
        .client
        .call(INTROSPECTION_METHOD, json(()), None, p.now)
        .unwrap();
    let pc = p
        .client
        .call(
            INTROSPECTION_METHOD,
            Payload::postcard(&()).unwrap(),
            None,
            p.now,
        )
        .unwrap();
    p.run();
    let expected = vec![
        ExposedMethod {
            name: "add".into(),
            aliases: vec!["plus".into()],
        },
        ExposedMethod {
            name: "echo".into(),
            aliases: vec![],
        },
        ExposedMethod {
            name: "fail".into(),
            aliases: vec![],
        },
        ExposedMethod {
            name: "slow".into(),
            aliases: vec![],
        },
        ExposedMethod {
            name: "log".into(),
            aliases: vec![],
        },
    ];
    let rj = response(&p.client_events, j).unwrap().unwrap();
    assert_eq!(rj.codec, Codec::Json);
    assert!(std::str::from_utf8(&rj.bytes)
        .unwrap()
        .starts_with(r#"[{"name":"add","aliases":["plus"]}"#));
    assert_eq!(rj.decode::<Vec<ExposedMethod>>().unwrap(), expected);
    let rp = response(&p.client_events, pc).unwrap().unwrap();
    assert_eq!(rp.decode::<Vec<ExposedMethod>>().unwrap(), expected);
}

/// Spec §6.6: described methods carry `signature` in JSON only; postcard
/// records keep their two fields.
#[test]
fn introspection_describes_signatures_in_json_only() {
    let mut registry = rig_registry();
    registry
        .describe("add", &rigwire_core::rust_signature::<(f64, f64), f64>())
        .unwrap();
    assert!(registry.describe("nope", "x").is_err());
    let json = registry.introspect(Codec::Json).unwrap();
    assert!(
        std::str::from_utf8(&json.bytes).unwrap().starts_with(
            r#"[{"name":"add","aliases":["plus"],"signature":"(f64, f64) -> f64"},{"name":"echo","aliases":[]}"#
        ),
        "{json:?}"
    );
    let postcard = registry.introspect(Codec::Postcard).unwrap();
    assert_eq!(
        postcard.decode::<Vec<ExposedMethod>>().unwrap(),
        rig_registry().methods()
    );
    assert_eq!(
        rigwire_core::rust_signature::<Vec<String>, Option<std::collections::BTreeMap<String, u8>>>(
        ),
        "Vec<String> -> Option<BTreeMap<String, u8>>"
    );
}

#[test]
fn remote_errors_carry_kind_message_and_detail() {
    let mut p = connected();
    let id = p.client.call("fail", json(()), None, p.now).unwrap();
    p.run();
    serve(&mut p, Side::Server);
    let Err(CallError::Remote(err)) = response(&p.client_events, id).unwrap() else {
        panic!()
    };
    assert_eq!(err.kind, ErrorKind::Handler);
    assert_eq!(err.message, "the rig refused");
    assert_eq!(
        err.detail.as_deref(),
        Some("caused by: motor stalled\n  at rig.py:42")
    );
    assert_eq!(err.to_string(), "Handler: the rig refused");
}

#[test]
fn bad_arguments_surface_as_a_typed_error() {
    let mut p = connected();
    let id = p
        .client
        .call("add", json("not a pair"), None, p.now)
        .unwrap();
    p.run();
    serve(&mut p, Side::Server);
    let Err(CallError::Remote(err)) = response(&p.client_events, id).unwrap() else {
        panic!()
    };
    assert_eq!(err.kind, ErrorKind::BadArguments);
}

#[test]
fn an_unknown_codec_is_refused_by_the_core() {
    let mut p = connected();
    let id = p
        .client
        .call(
            "add",
            Payload::new(Codec::Other(9), Bytes::from_static(b"?")),
            None,
            p.now,
        )
        .unwrap();
    p.run();
    assert!(p.server_events.is_empty());
    let Err(CallError::Remote(err)) = response(&p.client_events, id).unwrap() else {
        panic!()
    };
    assert_eq!(err.kind, ErrorKind::BadArguments);
    assert!(err.message.contains("unsupported codec 9"));
}

#[test]
fn a_deadline_fails_the_caller_and_cancels_the_callee() {
    let mut p = connected();
    let id = p
        .client
        .call("slow", json(()), Some(Duration::from_millis(500)), p.now)
        .unwrap();
    p.run();
    let Event::Call(call) = p.server_events[0].clone() else {
        panic!()
    };
    // The callee learns the remaining time, relative to its own clock.
    // It carries the 500 ms left when it was sent; transit time is unknown to
    // both sides, so the callee's deadline falls one latency after the caller's.
    let left = call.deadline.unwrap().duration_since(p.now);
    assert_eq!(left, Duration::from_millis(500));
    p.advance(Duration::from_millis(498));
    assert!(response(&p.client_events, id).is_none());
    p.advance(Duration::from_millis(2));
    assert_eq!(
        response(&p.client_events, id),
        Some(Err(CallError::DeadlineExceeded))
    );
    p.run();
    assert!(
        p.server_events
            .iter()
            .any(|e| matches!(e, Event::Cancelled { id: got, .. } if *got == call.id)),
        "{:?}",
        p.server_events
    );
    // A late answer is refused locally and never reaches the caller.
    assert_eq!(
        p.server.reply(call.id, Ok(json(1))),
        Err(ReplyError::NotPending(call.id))
    );
    assert_eq!(p.client.calls_in_flight(), 0);
    assert_eq!(p.server.incoming_in_flight(), 0);
}

#[test]
fn a_late_reply_is_ignored_and_counted() {
    let mut p = connected();
    p.netem.latency = Duration::from_millis(50);
    let id = p
        .client
        .call("add", json((1, 2)), Some(Duration::from_millis(80)), p.now)
        .unwrap();
    p.advance(Duration::from_millis(50));
    // The server answers at once; the answer needs 50 ms more, the deadline is in 30.
    let Event::Call(call) = p.server_events.remove(0) else {
        panic!()
    };
    p.server.reply(call.id, Ok(json(3))).unwrap();
    p.advance(Duration::from_millis(100));
    assert_eq!(
        response(&p.client_events, id),
        Some(Err(CallError::DeadlineExceeded))
    );
    assert_eq!(p.client.stats().unknown_replies, 1);
    assert!(p.client.is_established());
}

#[test]
fn cancel_reaches_the_callee() {
    let mut p = connected();
    let id = p.client.call("slow", json(()), None, p.now).unwrap();
    p.run();
    assert!(p.client.cancel(id));
    assert!(!p.client.cancel(id));
    p.run();
    assert!(p.server_events.iter().any(|e| *e
        == Event::Cancelled {
            id,
            reason: CancelReason::PeerCancelled
        }));
    assert!(
        response(&p.client_events, id).is_none(),
        "a cancelled call emits no response"
    );
}

#[test]
fn a_full_outgoing_table_answers_busy_and_does_not_grow() {
    let client = ProtocolConfig {
        max_outgoing_calls: 2,
        ..config("script", None)
    };
    let mut p = connected_with(client, config("rig", None));
    p.client.call("slow", json(()), None, p.now).unwrap();
    p.client.call("slow", json(()), None, p.now).unwrap();
    let err = p.client.call("slow", json(()), None, p.now).unwrap_err();
    assert_eq!(
        err,
        CallError::Busy("2 calls in flight on this connection (limit 2)".into())
    );
    assert_eq!(p.client.calls_in_flight(), 2);
}

#[test]
fn a_full_incoming_table_answers_busy() {
    let server = ProtocolConfig {
        max_incoming_calls: 1,
        ..config("rig", None)
    };
    let mut p = connected_with(config("script", None), server);
    let first = p.client.call("slow", json(()), None, p.now).unwrap();
    let second = p.client.call("slow", json(()), None, p.now).unwrap();
    p.run();
    assert!(response(&p.client_events, first).is_none());
    assert!(
        matches!(response(&p.client_events, second), Some(Err(CallError::Busy(m))) if m.contains("limit 1"))
    );
    assert_eq!(p.server.stats().busy_rejections, 1);
}

#[test]
fn an_oversized_call_fails_locally_and_an_oversized_reply_reaches_the_caller_as_an_error() {
    let small = ProtocolConfig {
        max_frame: 8192,
        ..config("rig", None)
    };
    let mut p = connected_with(config("script", None), small);
    let big = Payload::new(Codec::Postcard, vec![0u8; 9000]);
    assert!(matches!(
        p.client.call("echo", big, None, p.now),
        Err(CallError::TooLarge { limit: 8192, .. })
    ));
    // Calls in the other direction obey the same negotiated limit.
    let (id, call) = pending_call(&mut p, "slow", None);
    let err = p
        .server
        .reply(call.id, Ok(Payload::new(Codec::Postcard, vec![1u8; 9000])))
        .unwrap_err();
    assert!(matches!(err, ReplyError::TooLarge { limit: 8192, .. }));
    p.run();
    let Err(CallError::Remote(remote)) = response(&p.client_events, id).unwrap() else {
        panic!()
    };
    assert_eq!(remote.kind, ErrorKind::TooLarge);
    // Said as a call too large is: what the limit is, and what to do.
    assert!(
        remote
            .message
            .ends_with("max_frame; raise it on both, or answer with less at once)"),
        "{remote:?}"
    );
}

#[test]
fn an_error_too_long_for_a_frame_is_shortened_not_lost() {
    let small = ProtocolConfig {
        max_frame: 4096,
        ..config("rig", None)
    };
    let mut p = connected_with(config("script", None), small);
    let (id, call) = pending_call(&mut p, "slow", None);
    let huge = RemoteError::new(ErrorKind::Handler, "é".repeat(5000)).with_detail("x".repeat(5000));
    p.server.reply(call.id, Err(huge)).unwrap();
    p.run();
    let Err(CallError::Remote(remote)) = response(&p.client_events, id).unwrap() else {
        panic!()
    };
    // Cut where it would not fit, and said to be: the start of the message
    // and of the traceback, which name what went wrong and where.
    let (message, detail) = (remote.message, remote.detail.unwrap());
    assert!(message.starts_with(&"é".repeat(512)), "{message}");
    assert!(
        message.ends_with("é… (cut to 1024 of its 10000 bytes, to fit the frame limit)"),
        "{message}"
    );
    assert!(detail.starts_with(&"x".repeat(1024)), "{detail}");
    assert!(
        detail.ends_with("x… (cut to 1024 of its 5000 bytes, to fit the frame limit)"),
        "{detail}"
    );
}

#[test]
fn large_payloads_are_not_copied_on_the_way_out_or_in() {
    let mut p = connected();
    let args = Bytes::from(vec![7u8; 100_000]);
    p.client
        .call(
            "echo",
            Payload::new(Codec::Postcard, args.clone()),
            None,
            p.now,
        )
        .unwrap();
    // Outgoing: the payload leaves as its own chunk, the application's own memory.
    let head = p.client.poll_transmit().unwrap();
    let body = p.client.poll_transmit().unwrap();
    assert_eq!(body.as_ptr(), args.as_ptr());
    assert_eq!(body.len(), args.len());
    // Incoming on a message transport: the event's payload points into the frame.
    let mut frame = head.slice(4..).to_vec();
    frame.extend_from_slice(&body);
    let frame = Bytes::from(frame);
    let mut m = pair_with(
        Framing::Message,
        config("script", None),
        config("rig", None),
        Netem::default(),
    );
    m.connect();
    m.server.handle_frame(frame.clone(), m.now);
    let Some(Event::Call(call)) = m.server.poll_event() else {
        panic!()
    };
    let range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
    assert!(range.contains(&(call.args.bytes.as_ptr() as usize)));
}

#[test]
fn small_frames_are_batched_into_one_write() {
    let mut p = connected();
    for i in 0..64 {
        p.client.call("add", json((i, i)), None, p.now).unwrap();
    }
    let chunk = p.client.poll_transmit().unwrap();
    assert!(p.client.poll_transmit().is_none());
    // 64 frames in one chunk, each decodable.
    let mut rest = &chunk[..];
    let mut n = 0;
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        assert!(matches!(
            Message::decode(&Bytes::copy_from_slice(&rest[4..4 + len])).unwrap(),
            Message::Call { .. }
        ));
        rest = &rest[4 + len..];
        n += 1;
    }
    assert_eq!(n, 64);
}

#[test]
fn a_call_with_no_time_left_is_refused_at_once() {
    let mut p = connected();
    let call = Message::Call {
        id: 9,
        method: "add".into(),
        deadline_us: Some(0),
        codec: Codec::Json,
        args: Bytes::from_static(b"[1,2]"),
    };
    p.inject(Side::Server, &framed(&call));
    assert!(p.server_events.is_empty());
    assert_eq!(p.server.incoming_in_flight(), 0);
}

#[test]
fn a_duplicate_call_id_is_a_protocol_violation() {
    let mut p = connected();
    let call = Message::Call {
        id: 5,
        method: "slow".into(),
        deadline_us: None,
        codec: Codec::Json,
        args: Bytes::from_static(b"null"),
    };
    p.inject(Side::Server, &framed(&call));
    p.inject(Side::Server, &framed(&call));
    assert!(
        matches!(closed_error(&p.server_events), Some(rigwire_core::ConnectionError::Protocol(m)) if m.contains("reused"))
    );
}

#[test]
fn an_answer_read_after_the_deadline_is_late_even_before_the_timer_fires() {
    let mut p = connected();
    let (id, call) = pending_call(&mut p, "slow", Some(Duration::from_millis(10)));
    p.server.reply(call.id, Ok(json(1))).unwrap();
    let mut reply = Vec::new();
    while let Some(chunk) = p.server.poll_transmit() {
        reply.extend_from_slice(&chunk);
    }
    // The runtime reads the reply 20 ms later, never having called handle_timeout.
    let late = p.now + Duration::from_millis(20);
    p.client.handle_input(&reply, late);
    let events: Vec<_> = std::iter::from_fn(|| p.client.poll_event()).collect();
    assert_eq!(
        events,
        vec![Event::Response {
            id,
            result: Err(CallError::DeadlineExceeded)
        }]
    );
    assert_eq!(p.client.stats().unknown_replies, 1);
}

#[test]
fn a_handler_table_finds_each_handler_by_name_alias_and_id() {
    use rigwire_core::{HandlerTable, CLOCK_METHOD};
    let mut table = HandlerTable::new("clock");
    let add = table.insert("add", "adder").unwrap();
    table
        .alias("plus", "add")
        .unwrap()
        .describe("add", "(f64, f64) -> f64")
        .unwrap();
    assert_eq!(table.lookup("plus").unwrap(), add);
    assert_eq!(table.get(add), Some(&"adder"));
    let clock = table.registry().lookup(CLOCK_METHOD).unwrap();
    assert_eq!(table.get(clock), Some(&"clock"));
    assert!(
        table.insert("add", "again").is_err(),
        "a name is exposed once"
    );
    assert!(table.alias("x", "missing").is_err());
    let fallback = table.insert_fallback("catch-all").unwrap();
    assert_eq!(table.get(fallback), Some(&"catch-all"));
    assert!(table.insert_fallback("second").is_err());
    assert_eq!(table.get(rigwire_core::HandlerId(99)), None);
    let panicked = rigwire_core::handler_panicked("add", &"boom");
    assert_eq!(panicked.kind, rigwire_core::ErrorKind::Panicked);
    assert_eq!(panicked.message, "handler 'add' panicked: boom");
}

#[test]
fn adaptive_dispatch_moves_a_handler_inline_after_fast_runs_and_back_after_a_slow_one() {
    use rigwire_core::{Dispatch, FAST_RUN, FAST_RUNS};
    let mut runs = 0;
    for _ in 0..FAST_RUNS {
        assert!(!Dispatch::Adaptive.runs_inline(runs));
        runs = Dispatch::fast_runs_after(runs, FAST_RUN);
    }
    assert!(Dispatch::Adaptive.runs_inline(runs));
    runs = Dispatch::fast_runs_after(runs, FAST_RUN + Duration::from_micros(1));
    assert!(
        !Dispatch::Adaptive.runs_inline(runs),
        "one slow run sends it back"
    );
    assert!(Dispatch::Inline.runs_inline(0) && !Dispatch::Pool.runs_inline(u32::MAX));
    assert_eq!(
        Dispatch::fast_runs_after(u32::MAX, Duration::ZERO),
        u32::MAX
    );
    for d in [Dispatch::Adaptive, Dispatch::Inline, Dispatch::Pool] {
        assert_eq!(Dispatch::from_u8(d.as_u8()), d);
    }
    assert!(Dispatch::Adaptive.learns() && !Dispatch::Inline.learns());
}

/// A call with too few or too many arguments for a handler that takes a
/// tuple is told how many it takes; serde said "invalid length 1, expected
/// a tuple of size 2", or "trailing characters" for one too many.
#[test]
fn arguments_of_the_wrong_number_are_told_how_many_the_method_takes() {
    let told = |args: Payload| {
        let refused = args.decode_args::<(f64, f64)>().unwrap_err();
        assert_eq!(refused.kind, ErrorKind::BadArguments);
        refused.message
    };
    let takes = "this method takes 2 arguments (a JSON array of 2 values); ";
    let sent = [
        (json((1,)), "1 was sent"),
        (json(1), "1 was sent"),
        (json((1, 2, 3)), "3 were sent"),
        (json(()), "none were sent"),
        (json(Vec::<u8>::new()), "0 were sent"),
        (
            Payload::json(&serde_json::json!({"a": 1, "b": 2})).unwrap(),
            "named arguments (a JSON object) were sent",
        ),
    ];
    for (args, said) in sent {
        assert_eq!(told(args), format!("{takes}{said}"));
    }
    // As many as it takes, of the wrong kind: serde's words, which say it.
    assert!(told(json(("x", 2))).contains("invalid type: string \"x\", expected f64"));
    // A handler that takes one value is not counted.
    let one = json((1, 2)).decode_args::<String>().unwrap_err();
    assert!(
        one.message.starts_with("arguments do not decode"),
        "{one:?}"
    );
}
