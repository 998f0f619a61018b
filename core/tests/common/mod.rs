//! Helpers shared by the core's integration tests.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use rigwire_core::testing::{Netem, Pair, Side};
use rigwire_core::{
    CallError, Event, Framing, IncomingCall, Payload, ProtocolConfig, Registry, RemoteError, Secret,
};
use rigwire_core::{ErrorKind, Keepalive};

/// The rig's methods: add, echo, fail (returns an error with detail), slow (never answered by `serve`).
pub fn rig_registry() -> Registry {
    let mut r = Registry::new();
    let add = r.expose("add").unwrap();
    r.alias("plus", add).unwrap();
    r.expose("echo").unwrap();
    r.expose("fail").unwrap();
    r.expose("slow").unwrap();
    r.expose("log").unwrap();
    r
}

pub fn config(name: &str, secret: Option<&str>) -> ProtocolConfig {
    ProtocolConfig {
        secret: secret.map(|s| Secret::new(s.as_bytes()).unwrap()),
        ..ProtocolConfig::named(name)
    }
}

pub fn pair_with(
    framing: Framing,
    client: ProtocolConfig,
    server: ProtocolConfig,
    netem: Netem,
) -> Pair {
    Pair::new(
        Instant::now(),
        framing,
        (client, rig_registry()),
        (server, rig_registry()),
        netem,
    )
}

/// A connected pair over a byte stream with these configs; events so far cleared.
pub fn connected_with(client: ProtocolConfig, server: ProtocolConfig) -> Pair {
    let mut p = pair_with(Framing::Stream, client, server, Netem::default());
    p.connect();
    assert!(p.client.is_established() && p.server.is_established());
    p.take_events(Side::Client);
    p.take_events(Side::Server);
    p
}

/// A connected pair over a byte stream, no secret.
pub fn connected() -> Pair {
    connected_with(config("script", None), config("rig", None))
}

/// The client calls `method`; returns the call's id and the server's view of it.
pub fn pending_call(p: &mut Pair, method: &str, timeout: Option<Duration>) -> (u64, IncomingCall) {
    let id = p.client.call(method, json(()), timeout, p.now).unwrap();
    p.run();
    let at = p
        .server_events
        .iter()
        .position(|e| matches!(e, Event::Call(_)))
        .expect("the call arrived");
    let Event::Call(call) = p.server_events.remove(at) else {
        unreachable!()
    };
    (id, call)
}

/// Answers every pending call on `side` as the demo rig would (except `slow`).
pub fn serve(p: &mut Pair, side: Side) {
    let events = p.take_events(side);
    let mut keep = Vec::new();
    for e in events {
        match e {
            Event::Call(call) if call.method != "slow" => {
                let result = answer(&call);
                p.conn(side).reply(call.id, result).unwrap();
            }
            other => keep.push(other),
        }
    }
    match side {
        Side::Client => p.client_events.extend(keep),
        Side::Server => p.server_events.extend(keep),
    }
    p.run();
}

fn answer(call: &IncomingCall) -> Result<Payload, RemoteError> {
    let codec = call.args.codec;
    match call.method.as_str() {
        "add" | "plus" => {
            let (a, b): (i64, i64) = call
                .args
                .decode()
                .map_err(|e| RemoteError::new(ErrorKind::BadArguments, e.to_string()))?;
            Ok(Payload::encode_as(codec, &(a + b)).unwrap())
        }
        "echo" => Ok(call.args.clone()),
        "fail" => Err(RemoteError::new(ErrorKind::Handler, "the rig refused")
            .with_detail("caused by: motor stalled\n  at rig.py:42")),
        other => panic!("unexpected call {other}"),
    }
}

/// The outcome of call `id` among `events`, if it has arrived.
pub fn response(events: &[Event], id: u64) -> Option<Result<Payload, CallError>> {
    events.iter().find_map(|e| match e {
        Event::Response { id: got, result } if *got == id => Some(result.clone()),
        _ => None,
    })
}

pub fn closed_error(events: &[Event]) -> Option<rigwire_core::ConnectionError> {
    events.iter().find_map(|e| match e {
        Event::Closed(err) => Some(err.clone()),
        _ => None,
    })
}

pub fn json(v: impl serde::Serialize) -> Payload {
    Payload::json(&v).unwrap()
}

pub fn fast_keepalive() -> Option<Keepalive> {
    Some(Keepalive {
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(600),
    })
}

/// A message framed for a byte stream.
pub fn framed(msg: &rigwire_core::Message) -> Vec<u8> {
    let body = msg.encode();
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// A valid `Hello` with the given version range and secret flag.
pub fn hello(min: u16, max: u16, secret_required: bool) -> rigwire_core::Message {
    rigwire_core::Message::Hello(rigwire_core::message::Hello {
        magic: *b"RGWR",
        min_version: min,
        max_version: max,
        name: "intruder".into(),
        nonce: [9; 32],
        max_frame: 1 << 20,
        max_incoming_calls: 8,
        secret_required,
    })
}

/// A lone connection (no peer) for feeding hand-made bytes.
pub fn lone(role: rigwire_core::Role, secret: Option<&str>) -> (rigwire_core::Connection, Instant) {
    let now = Instant::now();
    let conn = rigwire_core::Connection::new(
        config("lone", secret),
        rig_registry(),
        role,
        Framing::Stream,
        [7; 32],
        now,
    )
    .unwrap();
    (conn, now)
}

pub fn drain_events(conn: &mut rigwire_core::Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

/// Every frame `conn` has queued, decoded.
pub fn drain_messages(conn: &mut rigwire_core::Connection) -> Vec<rigwire_core::Message> {
    let mut bytes = Vec::new();
    while let Some(chunk) = conn.poll_transmit() {
        bytes.extend_from_slice(&chunk);
    }
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let body = bytes::Bytes::copy_from_slice(&rest[4..4 + len]);
        out.push(rigwire_core::Message::decode(&body).unwrap());
        rest = &rest[4 + len..];
    }
    out
}
