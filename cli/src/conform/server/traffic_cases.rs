//! The cases of established traffic (spec §2, §3, §6 to §9).

use std::time::{Duration, Instant};

use bytes::Bytes;
use rigwire_std::core::{Codec, ErrorKind, ExposedMethod, Message, RejectCode, Url};

use super::*;

pub(super) fn call_json(t: &Target) -> Checked {
    let mut s = establish(t)?;
    let id = s.call("add", json("[1,2]"), None)?;
    let sum: f64 = s.reply(id, Codec::Json)?;
    if sum != 3.0 {
        return Err(fail("3", sum.to_string()));
    }
    Ok(())
}

pub(super) fn call_postcard(t: &Target) -> Checked {
    let mut s = establish(t)?;
    let id = s.call("add", postcard(&(1.5f64, 2.25f64)), Some(5_000_000))?;
    let sum: f64 = s.reply(id, Codec::Postcard)?;
    if sum != 3.75 {
        return Err(fail("3.75", sum.to_string()));
    }
    Ok(())
}

pub(super) fn echo_bytes(t: &Target) -> Checked {
    let mut s = establish(t)?;
    let mut noise = vec![0u8; 3000];
    getrandom::fill(&mut noise).expect("the operating system's random source works");
    for payload in [
        postcard(&noise),
        json(r#"{"trial": 7, "valves": [true, false]}"#),
        Payload::bytes(noise.clone()),
    ] {
        let id = s.call("echo", payload.clone(), None)?;
        match s.answer(id, PROMPT)? {
            Message::Reply { codec, result, .. }
                if codec == payload.codec && result == payload.bytes => {}
            other => {
                return Err(fail(
                    format!(
                        "Reply{{id {id}}} with the {} bytes sent, {:?}",
                        payload.bytes.len(),
                        payload.codec
                    ),
                    crate::conform::describe(&other),
                ))
            }
        }
    }
    Ok(())
}

pub(super) fn no_such_method(t: &Target) -> Checked {
    let mut s = establish(t)?;
    let id = s.call("conform.nope", json("null"), None)?;
    s.error(id, ErrorKind::NoSuchMethod)
}

pub(super) fn long_method_name(t: &Target) -> Checked {
    let mut s = establish(t)?;
    let id = s.call(&"m".repeat(300), json("null"), None)?;
    s.error(id, ErrorKind::NoSuchMethod)
}

pub(super) fn unknown_codec(t: &Target) -> Checked {
    let mut s = establish(t)?;
    let id = s.call("echo", Payload::new(Codec::Other(7), &b"?"[..]), None)?;
    s.error(id, ErrorKind::BadArguments)
}

pub(super) fn check_order(t: &Target) -> Checked {
    let mut s = establish(t)?;
    // 3 before 4: an unknown name with an unknown codec.
    let id = s.call(
        "conform.nope",
        Payload::new(Codec::Other(7), &b"?"[..]),
        None,
    )?;
    s.error(id, ErrorKind::NoSuchMethod)?;
    if t.service.is_some() {
        // Through a relay, 5 is the relay's and 3 and 4 the service's (§6.8).
        return Ok(());
    }
    // 4 before 5: an unknown codec that arrived expired.
    let id = s.call("echo", Payload::new(Codec::Other(7), &b"?"[..]), Some(0))?;
    s.error(id, ErrorKind::BadArguments)?;
    // 3 before 5: an unknown name that arrived expired.
    let id = s.call("conform.nope", json("null"), Some(0))?;
    s.error(id, ErrorKind::NoSuchMethod)
}

pub(super) fn bad_arguments(t: &Target) -> Checked {
    let mut s = establish(t)?;
    let id = s.call("add", json(r#""one and two""#), None)?;
    s.error(id, ErrorKind::BadArguments)
}

pub(super) fn expired_on_arrival(t: &Target) -> Checked {
    let mut s = establish(t)?;
    let id = s.call("add", json("[1,2]"), Some(0))?;
    s.error(id, ErrorKind::DeadlineExceeded)
}

pub(super) fn callee_deadline(t: &Target) -> Checked {
    let mut s = establish(t)?;
    s.call("sleep", json("1.0"), Some(200_000))?;
    s.silence(
        Duration::from_millis(1500),
        "no answer to a call whose 200 ms deadline passed",
    )
}

pub(super) fn cancel(t: &Target) -> Checked {
    let mut s = establish(t)?;
    let id = s.call("sleep", json("1.0"), None)?;
    std::thread::sleep(Duration::from_millis(100));
    send(&mut s.wire, &Message::Cancel { id })?;
    s.silence(
        Duration::from_millis(1500),
        "no answer to the cancelled call",
    )
}

pub(super) fn busy(t: &Target) -> Checked {
    let mut s = establish(t)?;
    let limit = s.server.max_incoming_calls as u64;
    if limit > 1024 {
        return Err(skip(format!("max_incoming_calls {limit} is over 1024")));
    }
    let ids: Vec<u64> = (0..=limit)
        .map(|_| s.call("sleep", json("2.0"), Some(5_000_000)))
        .collect::<Result<_, _>>()?;
    let last = *ids.last().expect("at least two calls");
    let outcome = s.error(last, ErrorKind::Busy);
    for id in ids {
        let _ = s.wire.send(&Message::Cancel { id });
    }
    outcome?;
    // A cancelled call keeps its slot until its handler ends (§6.4), and
    // behind a relay every case reaches the service on the relay's one
    // connection: the case ends when the server takes calls again, so that
    // the next case does not meet a full table.
    served_again(&mut s, SLOTS_FREED)
}

/// How long the busy case waits for the server to take calls again once
/// it has cancelled its calls. A server that tells its handlers frees the
/// slots at once; one whose handlers heed neither the cancel nor the 5 s
/// deadline (the spec lets them run on, §6.4) frees them as its pool gets
/// through the 2 s sleeps: 30 s covers a pool of 18 threads or more.
const SLOTS_FREED: Duration = Duration::from_secs(30);

/// Calls `add` until it is served, while it is refused `Busy` for at most
/// `within`.
fn served_again(s: &mut Session, within: Duration) -> Checked {
    let give_up = Instant::now() + within;
    loop {
        let id = s.call("add", json("[1,2]"), None)?;
        let wait = give_up
            .saturating_duration_since(Instant::now())
            .max(PROMPT);
        match s.answer(id, wait)? {
            Message::Reply { .. } => return Ok(()),
            Message::Error {
                kind: ErrorKind::Busy,
                ..
            } if Instant::now() < give_up => std::thread::sleep(Duration::from_millis(20)),
            other => {
                return Err(fail(
                    format!(
                        "a Reply within {} s of cancelling every call (the next cases need a free slot)",
                        within.as_secs()
                    ),
                    crate::conform::describe(&other),
                ))
            }
        }
    }
}

pub(super) fn id_zero(t: &Target) -> Checked {
    let mut s = establish(t)?;
    s.call_with_id(0, "add", json("[1,2]"), None)?;
    s.goodbye()
}

pub(super) fn id_reused(t: &Target) -> Checked {
    let mut s = establish(t)?;
    s.call_with_id(5, "sleep", json("1.0"), None)?;
    s.call_with_id(5, "sleep", json("1.0"), None)?;
    s.goodbye()
}

pub(super) fn notify(t: &Target) -> Checked {
    let mut s = establish(t)?;
    let args = json(r#""a notify""#);
    send(
        &mut s.wire,
        &Message::Notify {
            method: t.method("echo"),
            codec: args.codec,
            args: args.bytes,
        },
    )?;
    s.alive(1, "no answer to the notify")
}

pub(super) fn notify_unknown(t: &Target) -> Checked {
    if t.service.is_some() {
        return Err(skip(
            "a relay cannot route a service's Error{id 0} back to its sender (§6.8)",
        ));
    }
    let mut s = establish(t)?;
    send(
        &mut s.wire,
        &Message::Notify {
            method: t.method("conform.nope"),
            codec: Codec::Json,
            args: Bytes::from_static(b"null"),
        },
    )?;
    let got = s.wire.next(PROMPT);
    match got.message() {
        Some(Message::Error {
            id: 0,
            kind: ErrorKind::NoSuchMethod,
            ..
        }) => Ok(()),
        _ => Err(fail("Error{id 0, NoSuchMethod}", got.describe())),
    }
}

pub(super) fn confirm(t: &Target) -> Checked {
    let mut s = establish(t)?;
    let payload = Bytes::from_static(b"trial 12 reward");
    send(
        &mut s.wire,
        &Message::Confirm {
            seq: 1,
            payload: payload.clone(),
        },
    )?;
    let got = s.wire.next(PROMPT);
    match got.message() {
        Some(Message::Echo { seq: 1, payload: p }) if p == payload => Ok(()),
        _ => Err(fail("Echo{1} with the identical bytes", got.describe())),
    }
}

pub(super) fn methods_json(t: &Target) -> Checked {
    let mut s = establish(t)?;
    let id = s.call("rigwire.methods", json("null"), None)?;
    let listed: Vec<serde_json::Value> = s.reply(id, Codec::Json)?;
    let names: Vec<&str> = listed.iter().filter_map(|r| r["name"].as_str()).collect();
    let well_formed = listed
        .iter()
        .all(|r| r["name"].is_string() && r["aliases"].is_array());
    let rig = ["echo", "add", "sleep"].iter().all(|n| names.contains(n));
    if !well_formed || !rig || names.contains(&"rigwire.methods") {
        return Err(fail(
            "records {name, aliases} with echo, add and sleep, and not rigwire.methods",
            serde_json::to_string(&listed).unwrap_or_default(),
        ));
    }
    Ok(())
}

pub(super) fn methods_postcard(t: &Target) -> Checked {
    let mut s = establish(t)?;
    let id = s.call("rigwire.methods", postcard(&()), None)?;
    let listed: Vec<ExposedMethod> = s.reply(id, Codec::Postcard)?;
    if !["echo", "add", "sleep"]
        .iter()
        .all(|n| listed.iter().any(|m| m.name == *n))
    {
        return Err(fail("echo, add and sleep listed", format!("{listed:?}")));
    }
    Ok(())
}

pub(super) fn ping(t: &Target) -> Checked {
    establish(t)?.alive(7, "nothing else")
}

pub(super) fn overlong_varint(t: &Target) -> Checked {
    let mut s = establish(t)?;
    // Ping (9) with seq 5 written in two bytes: 85 00.
    s.wire
        .send_body(&[0x09, 0x85, 0x00])
        .map_err(|e| fail("to send", e.to_string()))?;
    let got = s.wire.next(PROMPT);
    match got.message() {
        Some(Message::Pong { seq: 5 }) => Ok(()),
        _ => Err(fail("Pong{5}", got.describe())),
    }
}

pub(super) fn send_body_then_goodbye(t: &Target, body: &[u8]) -> Checked {
    let mut s = establish(t)?;
    s.wire
        .send_body(body)
        .map_err(|e| fail("to send", e.to_string()))?;
    s.goodbye()
}

pub(super) fn trailing_bytes(t: &Target) -> Checked {
    send_body_then_goodbye(t, &[0x09, 0x01, 0x00])
}

pub(super) fn undecodable(t: &Target) -> Checked {
    send_body_then_goodbye(t, &[0x7f, 0xff, 0x01])
}

pub(super) fn hello_after_handshake(t: &Target) -> Checked {
    send_body_then_goodbye(t, &Message::Hello(our_hello(t.secret.is_some())).encode())
}

pub(super) fn oversized_after_handshake(t: &Target) -> Checked {
    let mut s = establish(t)?;
    let limit = s.server.max_frame.min(OUR_MAX_FRAME);
    s.wire
        .send_oversized(limit + 1, 0)
        .map_err(|e| fail("to send", e.to_string()))?;
    s.goodbye()
}

pub(super) fn goodbye(t: &Target) -> Checked {
    let mut s = establish(t)?;
    send(
        &mut s.wire,
        &Message::Goodbye {
            reason: "conformance done".into(),
        },
    )?;
    s.wire
        .expect_close(PROMPT)
        .map_err(|got| fail("the connection closed, nothing sent", got.describe()))
}

pub(super) fn keepalive(t: &Target) -> Checked {
    let mut s = establish(t)?;
    // Default interval 2 s; allow a slow or busy server.
    let got = s.wire.recv(Duration::from_secs(10));
    if !matches!(got.message(), Some(Message::Ping { seq: 0 })) {
        return Err(fail("Ping{0} within 10 s of silence", got.describe()));
    }
    // Never answered, and silent ourselves: past the keepalive timeout
    // (default 6 s) the server declares us dead and closes.
    let until = std::time::Instant::now() + Duration::from_secs(12);
    loop {
        let got = s
            .wire
            .recv(until.saturating_duration_since(std::time::Instant::now()));
        match got {
            Got::Closed => return Ok(()),
            _ if matches!(got.message(), Some(Message::Ping { seq: 0 })) => {}
            _ => {
                return Err(fail(
                    "more Ping{0}, then the connection closed within 12 s (§7)",
                    got.describe(),
                ))
            }
        }
    }
}

pub(super) fn handshake_timeout(t: &Target) -> Checked {
    let (mut wire, _, _) = open(t)?;
    let got = wire.recv(Duration::from_secs(15));
    match got.message() {
        Some(Message::Reject {
            code: RejectCode::HandshakeTimeout,
            ..
        }) => Ok(()),
        _ => Err(fail("Reject{HandshakeTimeout} within 15 s", got.describe())),
    }
}

pub(super) fn ws_text_message(t: &Target) -> Checked {
    let mut s = establish(t)?;
    let sent = s.wire.send_text("[1, 2]");
    if !sent.map_err(|e| fail("to send", e.to_string()))? {
        return Err(skip("websocket only"));
    }
    s.goodbye()?;
    if !s.wire.saw_ws_close() {
        return Err(fail(
            "a websocket Close frame after the Goodbye",
            "the connection closed without one",
        ));
    }
    Ok(())
}

pub(super) fn ws_fragmented(t: &Target) -> Checked {
    let mut s = establish(t)?;
    let call = Message::Call {
        id: 1,
        method: t.method("add"),
        deadline_us: None,
        codec: Codec::Json,
        args: Bytes::from_static(b"[1,2]"),
    };
    let sent = s.wire.send_fragmented(&call.encode());
    if !sent.map_err(|e| fail("to send", e.to_string()))? {
        return Err(skip("websocket only"));
    }
    let sum: f64 = s.reply(1, Codec::Json)?;
    if sum != 3.0 {
        return Err(fail("3", sum.to_string()));
    }
    Ok(())
}

pub(super) fn ws_wrong_path(t: &Target) -> Checked {
    let Url::Ws { addr, path, tls } = &t.url else {
        return Err(skip("websocket only"));
    };
    let other = Url::Ws {
        addr: addr.clone(),
        path: format!("{}-not-this-one", path.trim_end_matches('/')),
        tls: *tls,
    };
    match Wire::connect(&other, t.tls.as_ref()) {
        Err(e) if e.to_string().contains("404") => Ok(()),
        Err(e) => Err(fail("404 Not Found", e.to_string())),
        Ok(_) => Err(fail("404 Not Found", "the upgrade succeeded")),
    }
}

/// A session with the relay itself, for its own names; the relay- cases
/// are skipped unless the target is a relay.
fn relay_session(t: &Target) -> Result<Session, Mismatch> {
    if t.service.is_none() {
        return Err(skip("needs --service (the target is a relay)"));
    }
    let mut s = establish(t)?;
    s.service = None;
    Ok(s)
}

pub(super) fn relay_services(t: &Target) -> Checked {
    let mut s = relay_session(t)?;
    let service = t.service.as_deref().unwrap_or_default();
    let id = s.call("rigwire.services", json("null"), None)?;
    let names: Vec<String> = s.reply(id, Codec::Json)?;
    if !names.iter().any(|n| n == service) {
        return Err(fail(
            format!("a list with {service:?}"),
            format!("{names:?}"),
        ));
    }
    Ok(())
}

pub(super) fn relay_follow(t: &Target) -> Checked {
    let mut s = relay_session(t)?;
    let id = s.call("rigwire.follow", json("\"conform-any\""), None)?;
    s.reply::<()>(id, Codec::Json)?;
    let id = s.call("rigwire.follow", json("42"), None)?;
    s.error(id, ErrorKind::BadArguments)
}

pub(super) fn relay_unavailable(t: &Target) -> Checked {
    let mut s = relay_session(t)?;
    let id = s.call("conform-nobody.echo", json("null"), None)?;
    s.error(id, ErrorKind::Unavailable)
}
