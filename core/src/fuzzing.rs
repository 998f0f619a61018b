//! The bodies of the fuzz targets in `fuzz/`, kept here so the normal test
//! suite replays the seed corpus through exactly the same code.
//!
//! Each function takes arbitrary bytes and panics only when an invariant of
//! the core is broken: a panic here is a bug in the core, never bad input.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::{Keepalive, ProtocolConfig, Secret};
use crate::dispatch::Registry;
use crate::event::Event;
use crate::framing::{FrameDecoder, Framing};
use crate::message::Message;
use crate::testing::{Netem, Pair, Side};
use crate::Payload;

/// Decodes `data[2..]` as a byte stream twice — in one piece and in chunks
/// whose sizes come from `data[0]` — with the limit chosen by `data[1]`, and
/// asserts both give the same frames and the same error, and that the
/// decoder never holds more than one frame.
pub fn frame_decoder(data: &[u8]) {
    let [chunking, limit_pick, stream @ ..] = data else {
        return;
    };
    let limit = 16 + u32::from(*limit_pick) * 4;
    let chunk = usize::from(*chunking % 17) + 1;
    let whole = decode_stream(stream, stream.len().max(1), limit);
    let split = decode_stream(stream, chunk, limit);
    assert_eq!(whole, split, "framing depends on how the stream is split");
}

type Decoded = (Vec<Bytes>, Option<crate::FrameError>);

fn decode_stream(stream: &[u8], chunk: usize, limit: u32) -> Decoded {
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    for mut piece in stream.chunks(chunk) {
        while !piece.is_empty() {
            match decoder.decode(piece, limit, false) {
                Ok((used, frame)) => {
                    assert!(used > 0 && used <= piece.len());
                    piece = &piece[used..];
                    frames.extend(frame);
                }
                Err(e) => return (frames, Some(e)),
            }
            assert!(
                decoder.buffered() <= limit as usize + 4,
                "decoder holds more than one frame"
            );
        }
    }
    (frames, None)
}

/// Decodes `data` as one message; whatever decodes must encode and decode
/// back to the same message.
pub fn message(data: &[u8]) {
    let frame = Bytes::copy_from_slice(data);
    if let Ok(msg) = Message::decode(&frame) {
        let again =
            Message::decode(&Bytes::from(msg.encode())).expect("re-encoded message decodes");
        assert_eq!(again, msg, "message does not survive a round trip");
    }
}

/// Interprets `data` as a script of operations on a connected pair (calls
/// both ways, replies, cancels, notifies, pings, confirmed sends, time,
/// raw injected bytes, loss, corruption, close) and checks the core's
/// invariants after each: bounded tables and buffers, and nothing pending
/// once closed.
pub fn connection(data: &[u8], epoch: Instant) {
    let Some((&setup, mut ops)) = data.split_first() else {
        return;
    };
    let framing = if setup & 1 == 0 {
        Framing::Stream
    } else {
        Framing::Message
    };
    let secret = |on: bool, s: &str| on.then(|| Secret::new(s).expect("non-empty"));
    let base = ProtocolConfig {
        max_frame: 8192,
        max_incoming_calls: 4,
        max_outgoing_calls: 4,
        max_pending_confirms: 4,
        max_pending_pings: 2,
        max_queued_output: 65_536,
        keepalive: Some(Keepalive {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(300),
        }),
        ..ProtocolConfig::default()
    };
    let client = ProtocolConfig {
        secret: secret(setup & 2 != 0, "key-of-sixteen-bytes"),
        ..base.clone()
    };
    let server = ProtocolConfig {
        secret: secret(
            setup & 4 != 0,
            if setup & 8 != 0 {
                "other-key-sixteen-b"
            } else {
                "key-of-sixteen-bytes"
            },
        ),
        ..base
    };
    let mut registry = Registry::new();
    registry.expose("work").expect("valid name");
    let mut p = Pair::new(
        epoch,
        framing,
        (client, registry.clone()),
        (server, registry),
        Netem::default(),
    );
    let mut incoming: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    let mut outgoing: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    while let Some((&op, rest)) = ops.split_first() {
        ops = rest;
        let side = if op & 0x80 == 0 {
            Side::Client
        } else {
            Side::Server
        };
        let arg = ops.first().copied().unwrap_or(0);
        let now = p.now;
        match op & 0x0f {
            0 => {
                let timeout = (arg % 4 != 0).then(|| Duration::from_millis(u64::from(arg)));
                let method = if arg & 0x40 != 0 { "missing" } else { "work" };
                if let Ok(id) = p.conn(side).call(method, payload(arg), timeout, now) {
                    outgoing[side as usize].push(id);
                }
            }
            1 => {
                if let Some(id) = pick(&mut incoming[side as usize], arg) {
                    let result = if arg & 1 == 0 {
                        Ok(payload(arg))
                    } else {
                        Err(crate::RemoteError::new(crate::ErrorKind::Handler, "no"))
                    };
                    let _ = p.conn(side).reply(id, result);
                }
            }
            2 => {
                if let Some(id) = pick(&mut outgoing[side as usize], arg) {
                    p.conn(side).cancel(id);
                }
            }
            3 => {
                let _ = p.conn(side).notify("work", payload(arg), now);
            }
            4 => {
                let _ = p.conn(side).ping(now);
            }
            5 => {
                let _ = p.conn(side).confirmed_send(payload(arg).bytes, now);
            }
            6 => p.advance(Duration::from_millis(u64::from(arg) * 5)),
            7 => {
                let len = usize::from(arg).min(ops.len().saturating_sub(1));
                let bytes = ops.get(1..1 + len).unwrap_or_default().to_vec();
                ops = ops.get(1 + len..).unwrap_or_default();
                p.inject(side, &bytes);
                continue;
            }
            8 => p.netem.loss = f64::from(arg % 4) * 0.1,
            9 => p.netem.garble = f64::from(arg % 4) * 0.1,
            10 => p.conn(side).close("fuzz"),
            11 => p.conn(side).handle_transport_closed("fuzz", now),
            _ => p.run(),
        }
        ops = ops.get(1..).unwrap_or_default();
        p.settle();
        for s in [Side::Client, Side::Server] {
            for event in p.take_events(s) {
                if let Event::Call(call) = event {
                    incoming[s as usize].push(call.id);
                }
            }
            check_invariants(p.conn(s));
        }
    }
}

fn check_invariants(conn: &mut crate::Connection) {
    let cfg = conn.config().clone();
    assert!(conn.calls_in_flight() <= cfg.max_outgoing_calls as usize);
    assert!(conn.incoming_in_flight() <= cfg.max_incoming_calls as usize);
    assert!(conn.buffered_input() <= cfg.max_frame as usize + 4);
    assert!(conn.queued_output() <= 2 * cfg.max_queued_output + cfg.max_frame as usize + 64);
    if conn.is_closed() {
        assert_eq!(
            conn.calls_in_flight(),
            0,
            "a closed connection left calls pending"
        );
        assert_eq!(conn.incoming_in_flight(), 0);
        assert!(conn.error().is_some());
        assert_eq!(conn.poll_timeout(), None);
    }
}

fn pick(ids: &mut Vec<u64>, arg: u8) -> Option<u64> {
    (!ids.is_empty()).then(|| ids.swap_remove(usize::from(arg) % ids.len()))
}

fn payload(arg: u8) -> Payload {
    // Mostly small, sometimes past the 8 KiB frame limit.
    let len = if arg & 0x20 != 0 {
        9000
    } else {
        usize::from(arg)
    };
    Payload::new(crate::Codec::from(arg & 3), vec![arg; len])
}

/// Interprets `data` as a script against a relay with two services and two
/// clients (registrations of arbitrary names, calls to arbitrary names,
/// replies, cancels, closes, raw bytes, time) and checks that nothing panics
/// and that every forwarded call stays accounted for.
pub fn relay(data: &[u8], epoch: Instant) {
    use crate::relay::{PeerKind, Relay, RelayConfig, FOLLOW_METHOD, REGISTER_METHOD};
    let config = RelayConfig {
        allowed: Some(vec!["a".into(), "b".into(), "c".into()]),
        max_forward_timeout: Some(Duration::from_millis(300)),
        insecure_services: true,
        ..RelayConfig::default()
    };
    let Ok(mut relay) = Relay::new(config, Registry::new()) else {
        return;
    };
    let mut now = epoch;
    let mut service_registry = Registry::new();
    let _ = service_registry.expose("m");
    let sides = [
        PeerKind::Service,
        PeerKind::Service,
        PeerKind::Client,
        PeerKind::Client,
    ];
    let mut peers = Vec::new();
    for (i, side) in sides.iter().enumerate() {
        let Ok(id) = relay.accept(*side, Framing::Stream, [i as u8; 32], now) else {
            return;
        };
        let registry = if *side == PeerKind::Service {
            service_registry.clone()
        } else {
            Registry::new()
        };
        let Ok(conn) = crate::Connection::new(
            ProtocolConfig::named("peer"),
            registry,
            crate::Role::Client,
            Framing::Stream,
            [9; 32],
            now,
        ) else {
            return;
        };
        peers.push((id, conn, Vec::<u64>::new()));
    }
    let names = ["a", "b", "c", "x", "rigwire", ""];
    let pump = |relay: &mut Relay,
                peers: &mut Vec<(crate::relay::ConnId, crate::Connection, Vec<u64>)>,
                now: Instant| {
        for _ in 0..50 {
            let mut moved = false;
            for (id, conn, incoming) in peers.iter_mut() {
                while let Some(b) = conn.poll_transmit() {
                    relay.handle_input(*id, &b, now);
                    moved = true;
                }
                if let Some(c) = relay.connection(*id) {
                    while let Some(b) = c.poll_transmit() {
                        conn.handle_input(&b, now);
                        moved = true;
                    }
                }
                while let Some(e) = conn.poll_event() {
                    if let Event::Call(call) = e {
                        incoming.push(call.id);
                    }
                }
            }
            while relay.poll_event().is_some() {}
            if !moved {
                break;
            }
        }
    };
    let mut ops = data;
    while let Some((&op, rest)) = ops.split_first() {
        let arg = rest.first().copied().unwrap_or(0);
        ops = rest.get(1..).unwrap_or_default();
        let who = usize::from(op >> 6);
        let name = names[usize::from(arg) % names.len()];
        let (id, conn, incoming) = &mut peers[who];
        match op & 0x0F {
            0 => {
                let _ = conn.call(
                    REGISTER_METHOD,
                    Payload::postcard(&[name]).expect("encodes"),
                    None,
                    now,
                );
            }
            1 => {
                let timeout = (arg & 1 == 1).then(|| Duration::from_millis(u64::from(arg)));
                let _ = conn.call(&format!("{name}.m"), payload(arg), timeout, now);
            }
            2 => {
                if let Some(call) = pick(incoming, arg) {
                    let _ = conn.reply(call, Ok(payload(arg)));
                }
            }
            3 => {
                conn.cancel(u64::from(arg % 8) + 1);
            }
            4 => {
                conn.close("fuzz");
            }
            5 => relay.handle_transport_closed(*id, "fuzz", now),
            6 => {
                let len = usize::from(arg).min(ops.len());
                relay.handle_input(*id, &ops[..len], now);
                ops = &ops[len..];
            }
            // Notifies: forwarded to a service, fanned out from one to its
            // followers (a name the relay does not serve), refused from a
            // client; follows by notify and by call; the relay's broadcasts.
            8 => {
                let _ = conn.notify(&format!("{name}.m"), payload(arg), now);
            }
            9 => {
                let _ = conn.notify(FOLLOW_METHOD, Payload::json(&name).expect("encodes"), now);
            }
            10 => {
                let _ = conn.call(FOLLOW_METHOD, payload(arg), None, now);
            }
            11 => {
                let _ = conn.notify("news", payload(arg), now);
            }
            12 => {
                relay.broadcast_clients("news", &payload(arg), now);
            }
            13 => {
                relay.broadcast_service(name, "news", &payload(arg), now);
            }
            _ => {
                now += Duration::from_millis(u64::from(arg) * 4);
                relay.handle_timeout(now);
                for (_, conn, _) in peers.iter_mut() {
                    conn.handle_timeout(now);
                }
            }
        }
        pump(&mut relay, &mut peers, now);
        let open_calls: usize = peers
            .iter_mut()
            .filter_map(|(id, _, _)| relay.connection(*id).map(|c| c.calls_in_flight()))
            .sum();
        assert!(
            relay.forwarded_in_flight() <= open_calls,
            "a forwarded call outlived its call to the service"
        );
    }
}

/// Interprets `data` as a script against an iblutil endpoint with three
/// peers: op bytes choose a peer and whether to feed it bytes (the next
/// length-prefixed piece), make a confirmed send, or let time pass. Checks
/// that whatever is echoed is exactly a piece of what was received.
pub fn ibl(data: &[u8], epoch: Instant) {
    use crate::ibl::{IblEndpoint, IblMessage};
    use std::time::Duration;
    // An odd first byte makes it a stream's (TCP's) endpoint, which keeps
    // the start of a message cut by a read: its echoes then come from
    // everything received, not from one piece.
    let streams = data.first().is_some_and(|b| b % 2 == 1);
    let mut endpoint = match streams {
        true => IblEndpoint::<u8>::for_streams(),
        false => IblEndpoint::<u8>::new(),
    };
    let mut received: [Vec<u8>; 3] = Default::default();
    let mut now = epoch;
    let mut rest = data;
    while let [op, tail @ ..] = rest {
        rest = tail;
        let peer = op % 3;
        match op / 3 % 4 {
            0 | 1 => {
                let len = rest
                    .first()
                    .map_or(0, |l| usize::from(*l))
                    .min(rest.len().saturating_sub(1));
                let piece = rest.get(1..1 + len).unwrap_or(&[]);
                rest = rest.get(1 + len..).unwrap_or(&[]);
                endpoint.handle_input(peer, piece, now);
                let from = &mut received[usize::from(peer)];
                match streams {
                    true => from.extend_from_slice(piece),
                    false => *from = piece.to_vec(),
                }
                while let Some((to, echoed)) = endpoint.poll_transmit() {
                    assert_eq!(to, peer, "an echo goes back to its sender");
                    assert!(
                        echoed.is_empty() || from.windows(echoed.len()).any(|w| w == &echoed[..]),
                        "an echo is a piece of what was received"
                    );
                }
            }
            2 => {
                let message = IblMessage::status(serde_json::Value::from(*op));
                let _ = endpoint.confirmed_send(peer, &message, Duration::from_millis(5), now);
                while endpoint.poll_transmit().is_some() {}
            }
            _ => {
                now += Duration::from_millis(u64::from(*op % 8));
                endpoint.handle_timeout(now);
            }
        }
        while endpoint.poll_event().is_some() {}
    }
}
