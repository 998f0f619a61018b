//! The core's cost per call, in memory with no I/O: encode a small call,
//! decode and dispatch it on the other side, reply, and decode the reply.
//! `cargo bench -p rigwire-core --bench call_path`

// The sans-IO rule (core/clippy.toml) is for core/src; tests may read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::Instant;

use bytes::Bytes;
use divan::{black_box, Bencher};
use rigwire_core::{
    Codec, Connection, Event, Framing, Message, Payload, ProtocolConfig, Registry, Role,
};

fn main() {
    divan::main();
}

fn connected_pair() -> (Connection, Connection, Instant) {
    let now = Instant::now();
    let mut registry = Registry::new();
    registry.expose("add").unwrap();
    let mut client = Connection::new(
        ProtocolConfig::named("c"),
        Registry::new(),
        Role::Client,
        Framing::Stream,
        [1; 32],
        now,
    )
    .unwrap();
    let mut server = Connection::new(
        ProtocolConfig::named("s"),
        registry,
        Role::Server,
        Framing::Stream,
        [2; 32],
        now,
    )
    .unwrap();
    for _ in 0..2 {
        while let Some(b) = client.poll_transmit() {
            server.handle_input(&b, now);
        }
        while let Some(b) = server.poll_transmit() {
            client.handle_input(&b, now);
        }
    }
    while client.poll_event().is_some() {}
    while server.poll_event().is_some() {}
    (client, server, now)
}

/// One whole call: encode, frame, decode, dispatch, reply, decode the reply.
#[divan::bench]
fn call_and_reply_round_trip(bencher: Bencher) {
    let (mut client, mut server, now) = connected_pair();
    let args = Payload::new(Codec::Postcard, Bytes::from_static(&[2, 4]));
    let result = Payload::new(Codec::Postcard, Bytes::from_static(&[6]));
    bencher.bench_local(|| {
        let id = client.call("add", args.clone(), None, now).unwrap();
        while let Some(b) = client.poll_transmit() {
            server.handle_input(&b, now);
        }
        let Some(Event::Call(call)) = server.poll_event() else {
            unreachable!()
        };
        server.reply(call.id, Ok(result.clone())).unwrap();
        while let Some(b) = server.poll_transmit() {
            client.handle_input(&b, now);
        }
        let Some(Event::Response { id: got, result }) = client.poll_event() else {
            unreachable!()
        };
        assert_eq!(got, id);
        black_box(result)
    });
}

/// 64 calls in flight, as a pipelined client sends them: amortised cost per call.
#[divan::bench(counter = divan::counter::ItemsCount::new(64usize))]
fn pipelined_64(bencher: Bencher) {
    let (mut client, mut server, now) = connected_pair();
    let args = Payload::new(Codec::Postcard, Bytes::from_static(&[2, 4]));
    let result = Payload::new(Codec::Postcard, Bytes::from_static(&[6]));
    bencher.bench_local(|| {
        for _ in 0..64 {
            client.call("add", args.clone(), None, now).unwrap();
        }
        while let Some(b) = client.poll_transmit() {
            server.handle_input(&b, now);
        }
        while let Some(Event::Call(call)) = server.poll_event() {
            server.reply(call.id, Ok(result.clone())).unwrap();
        }
        while let Some(b) = server.poll_transmit() {
            client.handle_input(&b, now);
        }
        let mut n = 0;
        while let Some(Event::Response { .. }) = client.poll_event() {
            n += 1;
        }
        assert_eq!(n, 64);
    });
}

#[divan::bench]
fn encode_small_call() -> Vec<u8> {
    Message::Call {
        id: black_box(17),
        method: "add".into(),
        deadline_us: Some(5_000_000),
        codec: Codec::Postcard,
        args: Bytes::from_static(&[2, 4]),
    }
    .encode()
}

#[divan::bench]
fn decode_small_call(bencher: Bencher) {
    let frame = Bytes::from(
        Message::Call {
            id: 17,
            method: "add".into(),
            deadline_us: Some(5_000_000),
            codec: Codec::Postcard,
            args: Bytes::from_static(&[2, 4]),
        }
        .encode(),
    );
    bencher.bench(|| Message::decode(black_box(&frame)).unwrap());
}
