//! Property tests: message round trips, framing invariance under arbitrary
//! splits, and the call table against a reference model.

// The sans-IO rule (core/clippy.toml) is for core/src; tests may read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use rigwire_core::message::Hello;
use rigwire_core::testing::{CallTable, FrameDecoder, InsertError};
use rigwire_core::{Codec, ErrorKind, Message, RejectCode};

fn codec() -> impl Strategy<Value = Codec> {
    any::<u8>().prop_map(Codec::from)
}

fn payload() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(any::<u8>(), 2000..5000),
    ]
    .prop_map(Bytes::from)
}

fn message() -> impl Strategy<Value = Message> {
    let s = || ".{0,40}";
    prop_oneof![
        (
            any::<[u8; 32]>(),
            s(),
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            any::<bool>()
        )
            .prop_map(
                |(
                    nonce,
                    name,
                    min_version,
                    max_version,
                    max_frame,
                    max_incoming_calls,
                    secret_required,
                )| {
                    Message::Hello(Hello {
                        magic: *b"RGWR",
                        min_version,
                        max_version,
                        name,
                        nonce,
                        max_frame,
                        max_incoming_calls,
                        secret_required,
                    })
                }
            ),
        any::<[u8; 32]>().prop_map(|proof| Message::Auth { proof }),
        (any::<u32>(), s()).prop_map(|(c, reason)| Message::Reject {
            code: RejectCode::from(c),
            reason
        }),
        s().prop_map(|reason| Message::Goodbye { reason }),
        (any::<u64>(), s(), any::<Option<u64>>(), codec(), payload()).prop_map(
            |(id, method, deadline_us, codec, args)| Message::Call {
                id,
                method,
                deadline_us,
                codec,
                args
            }
        ),
        (any::<u64>(), codec(), payload()).prop_map(|(id, codec, result)| Message::Reply {
            id,
            codec,
            result
        }),
        (any::<u64>(), any::<u32>(), s(), prop::option::of(s())).prop_map(
            |(id, k, message, detail)| Message::Error {
                id,
                kind: ErrorKind::from(k),
                message,
                detail
            }
        ),
        (s(), codec(), payload()).prop_map(|(method, codec, args)| Message::Notify {
            method,
            codec,
            args
        }),
        any::<u64>().prop_map(|id| Message::Cancel { id }),
        any::<u64>().prop_map(|seq| Message::Ping { seq }),
        any::<u64>().prop_map(|seq| Message::Pong { seq }),
        (any::<u64>(), payload()).prop_map(|(seq, payload)| Message::Confirm { seq, payload }),
        (any::<u64>(), payload()).prop_map(|(seq, payload)| Message::Echo { seq, payload }),
    ]
}

proptest! {
    #[test]
    fn messages_round_trip_and_match_plain_postcard(msg in message()) {
        let encoded = msg.encode();
        // Head-then-payload encoding is byte-for-byte postcard's own.
        prop_assert_eq!(&encoded, &postcard::to_allocvec(&msg).unwrap());
        let decoded = Message::decode(&Bytes::from(encoded)).unwrap();
        prop_assert_eq!(decoded, msg);
    }

    #[test]
    fn a_truncated_message_never_decodes_to_something_else(msg in message(), cut in any::<prop::sample::Index>()) {
        let encoded = msg.encode();
        let at = cut.index(encoded.len());
        let result = Message::decode(&Bytes::copy_from_slice(&encoded[..at]));
        // A strict prefix can only decode if it is a Hello (which tolerates a
        // longer layout), never as a different message.
        if let Ok(other) = result {
            prop_assert!(matches!(other, Message::Hello(_)));
        }
    }

    #[test]
    fn framing_is_the_same_however_the_stream_is_split(
        frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20),
        cuts in prop::collection::vec(1usize..50, 0..200),
    ) {
        let mut stream = Vec::new();
        for f in &frames {
            stream.extend_from_slice(&(f.len() as u32).to_be_bytes());
            stream.extend_from_slice(f);
        }
        let mut decoder = FrameDecoder::new();
        let mut got = Vec::new();
        let mut rest = &stream[..];
        let mut cuts = cuts.into_iter().cycle();
        while !rest.is_empty() {
            let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
            let (mut chunk, tail) = rest.split_at(n);
            rest = tail;
            while !chunk.is_empty() {
                let (used, frame) = decoder.decode(chunk, 4096, false).unwrap();
                chunk = &chunk[used..];
                got.extend(frame.map(|f| f.to_vec()));
            }
        }
        prop_assert_eq!(got, frames);
        prop_assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn an_over_limit_header_is_rejected_before_its_body_is_buffered(len in 4097u32.., first in 0usize..4) {
        let header = len.to_be_bytes();
        let mut decoder = FrameDecoder::new();
        let (used, frame) = decoder.decode(&header[..first], 4096, true).unwrap();
        prop_assert_eq!((used, frame), (first, None));
        let err = decoder.decode(&header[first..], 4096, true).unwrap_err();
        prop_assert!(err.to_string().contains("pre-authentication"));
        prop_assert_eq!(decoder.buffered(), 4);
    }
}

/// One operation on a call table.
#[derive(Debug, Clone)]
enum Op {
    Insert { id: u64, timeout_ms: Option<u64> },
    Remove { id: u64 },
    Advance { ms: u64 },
    Expire,
    Drain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..20, prop::option::of(0u64..100)).prop_map(|(id, timeout_ms)| Op::Insert { id, timeout_ms }),
        3 => (0u64..20).prop_map(|id| Op::Remove { id }),
        2 => (0u64..60).prop_map(|ms| Op::Advance { ms }),
        2 => Just(Op::Expire),
        1 => Just(Op::Drain),
    ]
}

proptest! {
    #[test]
    fn the_call_table_behaves_like_a_bounded_map_with_deadlines(
        capacity in 1usize..8,
        ops in prop::collection::vec(op(), 0..200),
    ) {
        let epoch = Instant::now();
        let mut now = epoch;
        let mut table: CallTable<u64> = CallTable::new(capacity);
        // Model: id -> (deadline, value); the simplest thing that is obviously right.
        let mut model: BTreeMap<u64, (Option<Instant>, u64)> = BTreeMap::new();
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Insert { id, timeout_ms } => {
                    let deadline = timeout_ms.map(|ms| now + Duration::from_millis(ms));
                    let expected = if model.contains_key(&id) {
                        Err(InsertError::Duplicate)
                    } else if model.len() >= capacity {
                        Err(InsertError::Full)
                    } else {
                        model.insert(id, (deadline, step as u64));
                        Ok(())
                    };
                    prop_assert_eq!(table.insert(id, deadline, step as u64), expected);
                }
                Op::Remove { id } => {
                    prop_assert_eq!(table.remove(id), model.remove(&id).map(|(_, v)| v));
                }
                Op::Advance { ms } => now += Duration::from_millis(ms),
                Op::Expire => {
                    let mut expired = Vec::new();
                    while let Some((id, v)) = table.pop_expired(now) {
                        expired.push((id, v));
                    }
                    // Earliest deadline first; ties by id.
                    let mut due: Vec<_> = model.iter()
                        .filter_map(|(&id, &(d, v))| d.filter(|d| *d <= now).map(|d| (d, id, v)))
                        .collect();
                    due.sort();
                    for (_, id, _) in &due {
                        model.remove(id);
                    }
                    let due: Vec<_> = due.into_iter().map(|(_, id, v)| (id, v)).collect();
                    prop_assert_eq!(expired, due);
                }
                Op::Drain => {
                    let drained: Vec<_> = table.drain().collect();
                    let all: Vec<_> = std::mem::take(&mut model).into_iter().map(|(id, (_, v))| (id, v)).collect();
                    prop_assert_eq!(drained, all);
                }
            }
            prop_assert_eq!(table.len(), model.len());
            prop_assert!(table.len() <= capacity);
            prop_assert_eq!(table.next_deadline(), model.values().filter_map(|(d, _)| *d).min());
        }
    }
}

mod connection_model {
    use super::*;
    use rigwire_core::testing::{Netem, Pair, Side};
    use rigwire_core::{CallError, Event, Framing, Payload, ProtocolConfig, Registry};

    #[derive(Debug, Clone)]
    enum CallOp {
        Call { timeout_ms: Option<u64> },
        Reply { pick: prop::sample::Index },
        Cancel { pick: prop::sample::Index },
        Advance { ms: u64 },
        Disconnect,
    }

    fn call_op() -> impl Strategy<Value = CallOp> {
        prop_oneof![
            4 => prop::option::of(1u64..50).prop_map(|timeout_ms| CallOp::Call { timeout_ms }),
            3 => any::<prop::sample::Index>().prop_map(|pick| CallOp::Reply { pick }),
            2 => any::<prop::sample::Index>().prop_map(|pick| CallOp::Cancel { pick }),
            3 => (0u64..30).prop_map(|ms| CallOp::Advance { ms }),
            1 => Just(CallOp::Disconnect),
        ]
    }

    /// What the model expects to have happened to one call.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Outcome {
        Pending,
        Answered,
        Expired,
        Cancelled,
        Disconnected,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn every_call_ends_exactly_once_as_the_model_says(ops in prop::collection::vec(call_op(), 0..80)) {
            let mut registry = Registry::new();
            registry.expose("work").unwrap();
            let client = ProtocolConfig { max_outgoing_calls: 8, keepalive: None, ..ProtocolConfig::named("c") };
            let server = ProtocolConfig { keepalive: None, ..ProtocolConfig::named("s") };
            // Zero latency: the model need not track transit.
            let netem = Netem { latency: Duration::ZERO, ..Netem::default() };
            let mut p = Pair::new(Instant::now(), Framing::Stream, (client, Registry::new()), (server, registry), netem);
            p.connect();
            p.take_events(Side::Client);
            let mut model: BTreeMap<u64, (Option<Instant>, Outcome)> = BTreeMap::new();
            let mut server_calls: Vec<u64> = Vec::new();
            let mut connected = true;
            for op in ops {
                match op {
                    CallOp::Call { timeout_ms } => {
                        let result = p.client.call("work", Payload::json(&1).unwrap(), timeout_ms.map(Duration::from_millis), p.now);
                        let pending = model.values().filter(|(_, o)| *o == Outcome::Pending).count();
                        match result {
                            Ok(id) => {
                                prop_assert!(connected && pending < 8);
                                model.insert(id, (timeout_ms.map(|ms| p.now + Duration::from_millis(ms)), Outcome::Pending));
                            }
                            Err(CallError::Busy(_)) => prop_assert!(connected && pending == 8),
                            Err(CallError::Disconnected(_)) => prop_assert!(!connected),
                            Err(other) => prop_assert!(false, "unexpected {other:?}"),
                        }
                    }
                    CallOp::Reply { pick } => {
                        if !server_calls.is_empty() {
                            let id = server_calls.remove(pick.index(server_calls.len()));
                            let answered = p.server.reply(id, Ok(Payload::json(&2).unwrap())).is_ok();
                            if answered {
                                if let Some(entry) = model.get_mut(&id) {
                                    if entry.1 == Outcome::Pending {
                                        entry.1 = Outcome::Answered;
                                    }
                                }
                            }
                        }
                    }
                    CallOp::Cancel { pick } => {
                        let pending: Vec<u64> = model.iter().filter(|(_, (_, o))| *o == Outcome::Pending).map(|(id, _)| *id).collect();
                        if !pending.is_empty() {
                            let id = pending[pick.index(pending.len())];
                            prop_assert!(p.client.cancel(id));
                            model.get_mut(&id).unwrap().1 = Outcome::Cancelled;
                        }
                    }
                    CallOp::Advance { ms } => {
                        let until = p.now + Duration::from_millis(ms);
                        for (deadline, outcome) in model.values_mut() {
                            if *outcome == Outcome::Pending && deadline.is_some_and(|d| d <= until) {
                                *outcome = Outcome::Expired;
                            }
                        }
                        p.advance(Duration::from_millis(ms));
                    }
                    CallOp::Disconnect => {
                        if connected {
                            p.client.handle_transport_closed("cable pulled", p.now);
                            for (_, outcome) in model.values_mut() {
                                if *outcome == Outcome::Pending {
                                    *outcome = Outcome::Disconnected;
                                }
                            }
                            connected = false;
                        }
                    }
                }
                p.run();
                for e in p.take_events(Side::Server) {
                    if let Event::Call(c) = e {
                        server_calls.push(c.id);
                    }
                }
                let pending = model.values().filter(|(_, o)| *o == Outcome::Pending).count();
                prop_assert_eq!(p.client.calls_in_flight(), pending);
            }
            // Compare every call's fate: exactly one response unless cancelled or pending.
            let events = p.take_events(Side::Client);
            for (id, (_, outcome)) in &model {
                let responses: Vec<_> = events.iter().filter_map(|e| match e {
                    Event::Response { id: got, result } if got == id => Some(result.clone()),
                    _ => None,
                }).collect();
                match outcome {
                    Outcome::Pending | Outcome::Cancelled => prop_assert!(responses.is_empty(), "{id}: {responses:?}"),
                    Outcome::Answered => prop_assert!(matches!(responses.as_slice(), [Ok(_)]), "{id}: {responses:?}"),
                    Outcome::Expired => prop_assert_eq!(responses, vec![Err(CallError::DeadlineExceeded)]),
                    Outcome::Disconnected => prop_assert!(matches!(responses.as_slice(), [Err(CallError::Disconnected(_))]), "{id}: {responses:?}"),
                }
            }
        }
    }
}
