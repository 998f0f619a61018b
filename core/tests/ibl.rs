//! The iblutil dialect: the captured bytes of iblutil 1.20.0, and the echo rule.

// The sans-IO rule (core/clippy.toml) is for core/src; tests may read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use rigwire_core::ibl::{
    IblEchoError, IblEndpoint, IblEndpointEvent, IblEvent, IblMessage, MAX_MESSAGE,
};
use serde_json::{json, Value};

#[test]
fn messages_encode_as_the_captured_bytes_of_iblutil_1_20() {
    let cases: [(IblMessage, &str); 10] = [
        (IblMessage::init(Value::Null), "[1, null]"),
        (
            IblMessage::init(json!({"x": [1, 2]})),
            r#"[1, {"x": [1, 2]}]"#,
        ),
        (
            IblMessage::start(Some("2022-01-01_1_subject"), json!({"foo": "bar"})),
            r#"[2, "2022-01-01_1_subject", {"foo": "bar"}]"#,
        ),
        (IblMessage::stop(Value::Null, false), "[4, null]"),
        (IblMessage::stop(json!(5), true), "[16, 5]"),
        (IblMessage::cleanup(Value::Null), "[8, null]"),
        (IblMessage::status(json!(30)), "[32, 30]"),
        (
            IblMessage::info(json!(20), json!({"k": "v"})),
            r#"[64, 20, {"k": "v"}]"#,
        ),
        (IblMessage::alyx(None, json!({})), "[128, null, {}]"),
        (
            IblMessage::error("ValueError", "boom", IblEvent::Start),
            r#"[0, "ValueError: boom", 2]"#,
        ),
    ];
    for (message, bytes) in cases {
        assert_eq!(&message.encode()[..], bytes.as_bytes());
        assert_eq!(IblMessage::decode(bytes.as_bytes()).unwrap(), message);
    }
    assert_eq!(
        &IblMessage::init(json!("µ")).encode()[..],
        br#"[1, "\u00b5"]"#
    );
}

#[test]
fn non_messages_are_reported_not_fatal() {
    for (bytes, want) in [
        (&b"hello"[..], "not JSON"),
        (b"[2]", "expected [event"),
        (b"{\"a\": 1}", "expected [event"),
        (b"[3, null]", "unknown event 3"),
    ] {
        let err = IblMessage::decode(bytes).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
}

fn drain<A: Ord + Clone>(e: &mut IblEndpoint<A>) -> (Vec<(A, Bytes)>, Vec<IblEndpointEvent<A>>) {
    (
        std::iter::from_fn(|| e.poll_transmit()).collect(),
        std::iter::from_fn(|| e.poll_event()).collect(),
    )
}

#[test]
fn received_messages_are_echoed_byte_for_byte_before_they_are_handled() {
    let mut rig = IblEndpoint::new();
    let now = Instant::now();
    // Not Python's spacing: the echo is still the bytes received.
    rig.handle_input(7, b"[1,{\"a\":1}]", now);
    rig.handle_input(7, b"hello", now);
    rig.handle_input(7, br#"[0, "ValueError: boom", 2]"#, now);
    let (out, events) = drain(&mut rig);
    assert_eq!(
        out,
        vec![
            (7, Bytes::from_static(b"[1,{\"a\":1}]")),
            (7, Bytes::from_static(b"hello"))
        ]
    );
    assert!(
        matches!(&events[0], IblEndpointEvent::Received { message, .. } if message.event == IblEvent::Init)
    );
    assert!(matches!(&events[1], IblEndpointEvent::Malformed { .. }));
    assert!(
        matches!(&events[2], IblEndpointEvent::Received { message, .. }
        if message.error_report() == Some(("ValueError: boom".into(), Some(IblEvent::Start))))
    );
}

/// A message over one UDP datagram is refused before anything is sent,
/// rather than lost on the way and reported as an echo that never came.
#[test]
fn a_message_larger_than_iblutil_carries_is_refused_and_nothing_is_sent() {
    let now = Instant::now();
    let mut script = IblEndpoint::new();
    let status = |text: String| IblMessage::status(json!(text));
    let overhead = status(String::new()).encode().len();
    let too_large = status("x".repeat(MAX_MESSAGE + 1 - overhead));
    let t = Duration::from_secs(1);
    assert_eq!(
        script.confirmed_send(1, &too_large, t, now),
        Err(IblEchoError::TooLarge(MAX_MESSAGE + 1))
    );
    assert_eq!(
        script.send(1, &too_large),
        Err(IblEchoError::TooLarge(MAX_MESSAGE + 1))
    );
    assert_eq!(drain(&mut script), (vec![], vec![]));
    assert_eq!(script.poll_timeout(), None);
    // Nothing waits for an echo: the largest message goes at once.
    let largest = status("x".repeat(MAX_MESSAGE - overhead));
    script.confirmed_send(1, &largest, t, now).unwrap();
    let (out, _) = drain(&mut script);
    assert_eq!(out[0].1.len(), MAX_MESSAGE);
}

#[test]
fn a_confirmed_send_succeeds_fails_or_times_out_alone() {
    let now = Instant::now();
    let mut script = IblEndpoint::new();
    let init = IblMessage::init(Value::Null);
    let t = Duration::from_secs(1);
    script.confirmed_send(1, &init, t, now).unwrap();
    assert_eq!(
        script.confirmed_send(1, &init, t, now),
        Err(IblEchoError::Busy)
    );
    script.confirmed_send(2, &init, t, now).unwrap();
    script.confirmed_send(3, &init, t, now).unwrap();
    assert_eq!(script.poll_timeout(), Some(now + t));
    let (out, _) = drain(&mut script);
    assert_eq!(out.len(), 3);
    script.handle_input(1, b"[1, null]", now);
    script.handle_input(2, b"garbage", now);
    // A message of rig 3's own crossing our send is handled, not fatal.
    script.handle_input(3, b"[32, 20]", now);
    script.handle_timeout(now + t);
    let (out, events) = drain(&mut script);
    assert_eq!(out, vec![(3, Bytes::from_static(b"[32, 20]"))]);
    assert_eq!(events[0], IblEndpointEvent::Confirmed { to: 1 });
    assert!(matches!(
        events[1],
        IblEndpointEvent::EchoFailed {
            to: 2,
            error: IblEchoError::Mismatch { .. }
        }
    ));
    assert!(matches!(
        &events[2],
        IblEndpointEvent::Received { from: 3, .. }
    ));
    assert_eq!(
        events[3],
        IblEndpointEvent::EchoFailed {
            to: 3,
            error: IblEchoError::Timeout(t)
        }
    );
    // Usable afterwards.
    script.confirmed_send(2, &init, t, now + t).unwrap();
    script.handle_disconnect(&2);
    let (out, events) = drain(&mut script);
    assert!(out.is_empty());
    assert_eq!(
        events,
        vec![IblEndpointEvent::EchoFailed {
            to: 2,
            error: IblEchoError::Disconnected
        }]
    );
}

#[test]
fn events_are_named_as_iblutil_or_plainly() {
    for e in IblEvent::ALL {
        assert_eq!(IblEvent::from_code(e.code()), Some(e));
        assert_eq!(IblEvent::from_name(&e.to_string()), Some(e));
        assert_eq!(IblEvent::from_name(&e.code().to_string()), Some(e));
    }
    assert_eq!(IblEvent::from_name("stop"), Some(IblEvent::End));
    assert_eq!(IblEvent::from_name("nope"), None);
}

#[test]
fn a_rig_answers_each_step_with_its_status_and_refuses_steps_out_of_order() {
    use rigwire_core::ibl::rig_answer;
    use rigwire_core::Lifecycle;
    let mut rig = Lifecycle::new();
    let mut answer = |m: IblMessage| rig_answer(&mut rig, &m, "rig-1").map(|a| a.to_string());
    assert_eq!(
        answer(IblMessage::start(Some("2022-01-01_1_subject"), Value::Null)).unwrap(),
        format!(
            r#"[0, "RuntimeError: {}", 2]"#,
            Lifecycle::new()
                .check(rigwire_core::Step::Start)
                .unwrap_err()
        )
    );
    assert_eq!(
        answer(IblMessage::init(Value::Null)).unwrap(),
        r#"[1, {"status": 10}]"#
    );
    assert_eq!(
        answer(IblMessage::start(
            Some("2022-01-01_1_subject"),
            json!({"foo": "bar"})
        ))
        .unwrap(),
        r#"[2, "2022-01-01_1_subject", {"status": 20}]"#
    );
    assert_eq!(answer(IblMessage::status(Value::Null)).unwrap(), "[32, 20]");
    assert_eq!(
        answer(IblMessage::info(Value::Null, Value::Null)).unwrap(),
        r#"[64, 20, {"exp_ref": "2022-01-01_1_subject", "name": "rig-1"}]"#
    );
    assert_eq!(
        answer(IblMessage::stop(Value::Null, true)).unwrap(),
        r#"[16, {"status": 30}]"#
    );
    assert_eq!(
        answer(IblMessage::cleanup(Value::Null)).unwrap(),
        r#"[8, {"status": 0}]"#
    );
    assert_eq!(
        answer(IblMessage::error("ValueError", "boom", IblEvent::Init)),
        None
    );
}

#[test]
fn tcp_reads_holding_several_messages_are_taken_apart() {
    let now = Instant::now();
    let mut script = IblEndpoint::new();
    let init = IblMessage::init(Value::Null);
    script
        .confirmed_send(1, &init, Duration::from_secs(1), now)
        .unwrap();
    let _ = drain(&mut script);
    // The echo and the rig's answer in one read.
    script.handle_input(1, br#"[1, null][1, {"status": 10}]"#, now);
    let (out, events) = drain(&mut script);
    assert_eq!(
        out,
        vec![(1, Bytes::from_static(br#"[1, {"status": 10}]"#))]
    );
    assert_eq!(events[0], IblEndpointEvent::Confirmed { to: 1 });
    assert!(
        matches!(&events[1], IblEndpointEvent::Received { message, .. } if message.event == IblEvent::Init)
    );
    // Two messages in one read, nothing awaited: each echoed and handled.
    script.handle_input(2, b"[4, null] [8, null]\n", now);
    let (out, events) = drain(&mut script);
    assert_eq!(
        out,
        vec![
            (2, Bytes::from_static(b"[4, null]")),
            (2, Bytes::from_static(b" [8, null]\n"))
        ]
    );
    assert_eq!(events.len(), 2);
    // Half a message stays one (malformed) piece, echoed whole.
    script.handle_input(3, b"[4, nu", now);
    let (out, _) = drain(&mut script);
    assert_eq!(out, vec![(3, Bytes::from_static(b"[4, nu"))]);
}

/// Over TCP a large message may come in several reads (the network cuts
/// it where it likes): the start is kept until the rest arrives, and the
/// message is then echoed and handled once, whole. iblutil takes each piece
/// for a message, and fails.
#[test]
fn a_message_cut_across_tcp_reads_is_handled_once_whole() {
    let now = Instant::now();
    let sent = IblMessage::init(json!({"frames": "x".repeat(40)}));
    let echo = sent.encode();
    let answer = br#" [1, {"status": 10, "gain": NaN}]"#;
    let read = [&echo[..], &answer[..]].concat();
    for cut in 1..read.len() {
        let mut script = IblEndpoint::for_streams();
        script
            .confirmed_send(7, &sent, Duration::from_secs(1), now)
            .unwrap();
        let _ = drain(&mut script);
        script.handle_input(7, &read[..cut], now);
        script.handle_input(7, &read[cut..], now);
        let (out, events) = drain(&mut script);
        let echoed: Vec<u8> = out.iter().flat_map(|(_, bytes)| bytes.to_vec()).collect();
        assert_eq!(echoed, answer, "cut at {cut}");
        assert_eq!(events.len(), 2, "cut at {cut}: {events:?}");
        assert_eq!(events[0], IblEndpointEvent::Confirmed { to: 7 });
        assert!(
            matches!(&events[1], IblEndpointEvent::Received { message, .. }
            if message.field(0)["gain"].is_null()),
            "cut at {cut}: {events:?}"
        );
    }
}

/// A peer that sends a large message a byte at a time gets it handled
/// once, whole, and costs a few parses of it: one parse a byte cost
/// seconds of a core for 60 KB.
#[test]
fn a_message_sent_a_byte_at_a_time_is_handled_once_and_parsed_a_few_times() {
    let now = Instant::now();
    let mut rig = IblEndpoint::for_streams();
    let message = IblMessage::status(json!("x".repeat(60_000))).encode();
    for byte in message.iter() {
        rig.handle_input(1, std::slice::from_ref(byte), now);
    }
    let (out, events) = drain(&mut rig);
    assert_eq!(out, vec![(1, message.clone())]);
    assert!(matches!(&events[..], [IblEndpointEvent::Received { .. }]));
    // Once each time what is kept doubled (17 times to 60 KB), and once
    // when the message closed.
    assert!(rig.parses() <= 20, "{} parses", rig.parses());
}

/// What is kept of an unfinished message is bounded, and forgotten with its
/// connection; something that is not JSON is not kept at all.
#[test]
fn an_unfinished_message_is_kept_up_to_the_limit_and_forgotten_on_disconnect() {
    let now = Instant::now();
    let mut rig = IblEndpoint::for_streams();
    // A start that never ends, longer than any message, behind a whole
    // one: the whole one is handled, and the rest as it is.
    let endless = [b"[4, null][32, \"".as_slice(), &vec![b'x'; MAX_MESSAGE]].concat();
    rig.handle_input(1, &endless, now);
    let (out, events) = drain(&mut rig);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].1, Bytes::from_static(b"[4, null]"));
    assert!(matches!(
        &events[..],
        [
            IblEndpointEvent::Received { .. },
            IblEndpointEvent::Malformed { .. }
        ]
    ));
    rig.handle_input(1, b"[32, 1]", now);
    let (_, events) = drain(&mut rig);
    assert!(matches!(&events[..], [IblEndpointEvent::Received { .. }]));
    // Not JSON: handled at once, as iblutil's garbage always was.
    rig.handle_input(2, b"[32, nope", now);
    let (out, _) = drain(&mut rig);
    assert_eq!(out, vec![(2, Bytes::from_static(b"[32, nope"))]);
    // A start forgotten with its connection: the next one begins afresh.
    rig.handle_input(3, b"[32, ", now);
    assert_eq!(drain(&mut rig), (vec![], vec![]));
    rig.handle_disconnect(&3);
    rig.handle_input(3, b"[32, 2]", now);
    let (out, _) = drain(&mut rig);
    assert_eq!(out, vec![(3, Bytes::from_static(b"[32, 2]"))]);
}

/// Python's `json.dumps`, which iblutil uses, writes `NaN`, `Infinity` and
/// `-Infinity`; JSON has no word for them, and a message holding one used
/// to be dropped as not JSON.
#[test]
fn python_nan_and_infinity_from_iblutil_read_as_null_and_are_echoed_as_sent() {
    let now = Instant::now();
    let sent: &[u8] =
        br#"[1, {"threshold": NaN, "range": [-Infinity, Infinity], "note": "NaN \"Infinity\""}]"#;
    let message = IblMessage::decode(sent).unwrap();
    assert_eq!(message.event, IblEvent::Init);
    assert_eq!(
        message.fields,
        [json!({"threshold": null, "range": [null, null], "note": "NaN \"Infinity\""})],
        "replaced outside strings only"
    );
    // Two such messages in one TCP read are still taken apart where they
    // meet, and each is echoed exactly as it came.
    let mut rig = IblEndpoint::new();
    rig.handle_input(5, br#"[4, NaN][8, {"t": -Infinity}]"#, now);
    let (out, events) = drain(&mut rig);
    assert_eq!(
        out,
        vec![
            (5, Bytes::from_static(br#"[4, NaN]"#)),
            (5, Bytes::from_static(br#"[8, {"t": -Infinity}]"#))
        ]
    );
    assert!(
        matches!(&events[..], [IblEndpointEvent::Received { message: a, .. }, IblEndpointEvent::Received { message: b, .. }]
            if a.event == IblEvent::End && b.event == IblEvent::Cleanup && b.field(0) == &json!({"t": null})),
        "{events:?}"
    );
    // Other bare words are still not JSON.
    assert!(IblMessage::decode(b"[1, nan]").is_err());
}
