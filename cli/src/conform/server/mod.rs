//! `rigwire conform server URL`: a client that tests a server, one fresh
//! connection per case. The server exposes the conformance rig (spec §2.1):
//! `echo` (any payload back, same codec), `add` (`(f64, f64) -> f64`) and
//! `sleep` (`f64` seconds, stops early when cancelled).

use std::time::Duration;

use bytes::Bytes;
use rigwire_std::core::auth::proof;
use rigwire_std::core::message::Hello;
use rigwire_std::core::{Codec, ErrorKind, Message, Payload, RejectCode, Role, Secret, Url};

mod handshake_cases;
mod traffic_cases;

use handshake_cases::*;
use traffic_cases::*;

use super::{
    check_hello, check_proof, fail, hello_of, our_hello, skip, Case, Checked, Got, Mismatch, Wire,
};
use super::{OUR_MAX_FRAME, PROMPT};

/// The server under test.
pub struct Target {
    /// Where it listens.
    pub url: Url,
    /// The shared secret, if it requires one.
    pub secret: Option<Secret>,
    /// The target is a relay, and the conformance rig is the service of this
    /// name registered there (spec §6.8): its methods are called `NAME.echo`
    /// and so on, two hops away.
    pub service: Option<String>,
    /// How to trust it over `tls://` and `wss://`.
    pub tls: Option<rigwire_ws::ClientTls>,
}

impl Target {
    /// The name to call for the rig's `method` (through the relay, if any).
    fn method(&self, method: &str) -> String {
        through(self.service.as_deref(), method)
    }
}

/// `method` of the rig, reached as `service.method` through a relay.
fn through(service: Option<&str>, method: &str) -> String {
    match service {
        Some(service) => format!("{service}.{method}"),
        None => method.to_owned(),
    }
}

/// A connection to the server with the handshake done.
struct Session {
    wire: Wire,
    server: Hello,
    next_id: u64,
    /// See [`Target::service`].
    service: Option<String>,
}

/// Dials the target and reads its `Hello`, which must come without ours.
fn open(target: &Target) -> Result<(Wire, Hello, Bytes), Mismatch> {
    let mut wire = Wire::connect(&target.url, target.tls.as_ref())
        .map_err(|e| fail("to connect", format!("cannot connect: {e}")))?;
    let got = wire.recv(PROMPT);
    let hello = hello_of(&got)?;
    let Got::Frame(body) = got else {
        unreachable!("a Hello is a frame")
    };
    Ok((wire, hello, body))
}

/// Whether anything answers at the target at all: a connection, and a first
/// frame within [`PROMPT`]. Every case needs one, so a wrong port or a
/// server that waits for our `Hello` is told once, at once, instead of in
/// every case after its wait.
///
/// # Errors
/// What happened instead, for the user.
pub fn answers(target: &Target) -> Result<(), String> {
    let url = &target.url;
    let mut wire = Wire::connect(url, target.tls.as_ref())
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let why = match wire.recv(PROMPT) {
        Got::Silent => format!("nothing came from {url} within {} s", PROMPT.as_secs()),
        Got::Closed => format!("{url} closed the connection without a word"),
        Got::Frame(_) | Got::TooLarge(_) => return Ok(()),
    };
    Err(format!(
        "{why}: a rigwire server sends its Hello at once, without waiting for ours (spec §5.1); \
         is this a rigwire server's URL, and does it send its Hello first?"
    ))
}

/// Connects and completes the handshake, proving the secret if there is one.
fn establish(target: &Target) -> Result<Session, Mismatch> {
    let (mut wire, server, server_body) = open(target)?;
    let ours = Message::Hello(our_hello(target.secret.is_some()));
    let our_body = ours.encode();
    send(&mut wire, &ours)?;
    if let Some(secret) = &target.secret {
        let mine = proof(secret, Role::Client, &our_body, &server_body);
        send(&mut wire, &Message::Auth { proof: mine })?;
        let expected = proof(secret, Role::Server, &our_body, &server_body);
        check_proof(&wire.next(PROMPT), expected, "the server's")?;
    }
    Ok(Session {
        wire,
        server,
        next_id: 1,
        service: target.service.clone(),
    })
}

fn send(wire: &mut Wire, m: &Message) -> Checked {
    wire.send(m)
        .map_err(|e| fail("to send", format!("the connection failed: {e}")))
}

impl Session {
    fn call(
        &mut self,
        method: &str,
        payload: Payload,
        deadline_us: Option<u64>,
    ) -> Result<u64, Mismatch> {
        let id = self.next_id;
        self.next_id += 1;
        self.call_with_id(id, method, payload, deadline_us)?;
        Ok(id)
    }

    fn call_with_id(
        &mut self,
        id: u64,
        method: &str,
        payload: Payload,
        deadline_us: Option<u64>,
    ) -> Checked {
        let method = through(self.service.as_deref(), method);
        send(
            &mut self.wire,
            &Message::Call {
                id,
                method,
                deadline_us,
                codec: payload.codec,
                args: payload.bytes,
            },
        )
    }

    /// The `Reply` or `Error` for call `id`.
    fn answer(&mut self, id: u64, within: Duration) -> Result<Message, Mismatch> {
        let got = self.wire.next(within);
        got.message()
            .filter(|m| matches!(m, Message::Reply { id: i, .. } | Message::Error { id: i, .. } if *i == id))
            .ok_or_else(|| fail(format!("an answer to call {id}"), got.describe()))
    }

    /// Expects `Error{id, kind}`.
    fn error(&mut self, id: u64, kind: ErrorKind) -> Checked {
        match self.answer(id, PROMPT)? {
            Message::Error { kind: k, .. } if k == kind => Ok(()),
            other => Err(fail(
                format!("Error{{id {id}, {kind:?}}}"),
                super::describe(&other),
            )),
        }
    }

    /// Expects `Reply{id}` decoding as `T` in `codec`.
    fn reply<T: serde::de::DeserializeOwned>(
        &mut self,
        id: u64,
        codec: Codec,
    ) -> Result<T, Mismatch> {
        match self.answer(id, PROMPT)? {
            Message::Reply {
                codec: c, result, ..
            } if c == codec => Payload::new(codec, result)
                .decode()
                .map_err(|e| fail("a result of the published type", format!("{e}"))),
            other => Err(fail(
                format!("Reply{{id {id}, {codec:?}}}"),
                super::describe(&other),
            )),
        }
    }

    /// Pings with `seq` and expects its `Pong`, allowing nothing else but
    /// keepalive; proves the connection is alive and no frame for an
    /// earlier id came first.
    fn alive(&mut self, seq: u64, quiet_about: &str) -> Checked {
        send(&mut self.wire, &Message::Ping { seq })?;
        let got = self.wire.next(PROMPT);
        match got.message() {
            Some(Message::Pong { seq: s }) if s == seq => Ok(()),
            _ => Err(fail(
                format!("{quiet_about}, then Pong{{{seq}}}"),
                got.describe(),
            )),
        }
    }

    /// Expects nothing but keepalive for `quiet`, then a live connection.
    fn silence(&mut self, quiet: Duration, what: &str) -> Checked {
        match self.wire.next(quiet) {
            Got::Silent => self.alive(99, what),
            other => Err(fail(what.to_owned(), other.describe())),
        }
    }

    /// Expects a `Goodbye` (§9) and the connection's end.
    fn goodbye(&mut self) -> Checked {
        closes_with(&mut self.wire, "Goodbye", |m| {
            matches!(m, Message::Goodbye { .. })
        })
    }
}

/// Expects the frame `wanted` picks, then the end of the connection.
fn closes_with(wire: &mut Wire, what: &str, wanted: impl Fn(&Message) -> bool) -> Checked {
    let got = wire.next(PROMPT);
    if !got.message().is_some_and(|m| wanted(&m)) {
        return Err(fail(format!("{what}, then close"), got.describe()));
    }
    wire.expect_close(PROMPT).map_err(|got| {
        fail(
            format!("the connection closed after {what}"),
            got.describe(),
        )
    })
}

/// Expects `Reject{code}` and the connection's end.
fn rejects(wire: &mut Wire, code: RejectCode) -> Checked {
    closes_with(
        wire,
        &format!("Reject{{{code:?}}}"),
        |m| matches!(m, Message::Reject { code: c, .. } if *c == code),
    )
}

fn json(text: &str) -> Payload {
    Payload::new(Codec::Json, text.as_bytes().to_vec())
}

fn postcard<T: serde::Serialize>(value: &T) -> Payload {
    Payload::postcard(value).expect("conformance payloads encode")
}

/// Every case, in the order run.
pub fn cases() -> Vec<Case<Target>> {
    case_table! { Target:
        "hello-first", "5.1", "the server sends a valid Hello at once, without waiting for ours" => hello_first;
        "handshake", "5.3", "the handshake completes; with a secret, the server proves it after our proof" => handshake;
        "version-mismatch", "5.1", "ranges that do not overlap: Reject{VersionMismatch}" => version_mismatch;
        "wrong-magic", "5.1", "a wrong magic: Reject{Protocol}, close" => wrong_magic;
        "long-name", "5.1", "a peer name over 255 bytes: Reject{Protocol}" => long_name;
        "small-limits", "5.1", "max_frame under 4096: Reject{Protocol}" => small_limits;
        "wrong-secret", "5.3", "a proof that does not verify: Reject{AuthFailed}, no proof from the server" => wrong_secret;
        "secret-on-one-side", "5.2", "a secret on one side only: Reject{AuthRequired}" => secret_on_one_side;
        "call-before-handshake", "5.5", "a Call before the handshake completes: Reject{Protocol}" => call_before_handshake;
        "pipelined-call", "5.5", "a Call right behind our Hello (and proof), in one write, is served" => pipelined_call;
        "graceful-close", "6.7", "a refused peer that goes on sending reads the Reject and meets no reset" => graceful_close;
        "oversized-before-handshake", "8", "a frame over 4096 bytes before completion: Reject{Protocol}" => oversized_before_handshake;
        "call-json", "6.1", "add [1, 2] in JSON: Reply in JSON, 3" => call_json;
        "call-postcard", "6.1", "add (1.5, 2.25) in postcard: Reply in postcard, 3.75" => call_postcard;
        "echo-bytes", "6.1", "echo returns the payload's bytes and codec untouched (postcard, JSON, bytes)" => echo_bytes;
        "no-such-method", "6.1", "a name not exposed: Error{NoSuchMethod}" => no_such_method;
        "long-method-name", "6.6", "a method name over 255 bytes: Error{NoSuchMethod}" => long_method_name;
        "unknown-codec", "6.1", "an unknown codec: Error{BadArguments}" => unknown_codec;
        "check-order", "6.1", "method before codec before deadline before the table" => check_order;
        "bad-arguments", "6.1", "arguments of the wrong type: Error{BadArguments}" => bad_arguments;
        "expired-on-arrival", "6.1", "deadline_us Some(0): Error{DeadlineExceeded}" => expired_on_arrival;
        "callee-deadline", "6.1", "a call whose deadline passes gets no answer" => callee_deadline;
        "cancel", "6.4", "a cancelled call gets no answer" => cancel;
        "busy", "6.1", "a call beyond max_incoming_calls: Error{Busy}; served again once all are cancelled" => busy;
        "id-zero", "6.1", "a Call with id 0: Goodbye, close" => id_zero;
        "id-reused", "6.1", "a Call reusing an id in flight: Goodbye, close" => id_reused;
        "notify", "6.3", "a notify gets no answer" => notify;
        "notify-unknown", "6.3", "a notify to a name not exposed: Error{id 0, NoSuchMethod}" => notify_unknown;
        "confirm", "6.5", "Confirm is answered by an Echo of the identical bytes" => confirm;
        "methods-json", "6.6", "rigwire.methods in JSON lists the rig, not itself" => methods_json;
        "methods-postcard", "6.6", "rigwire.methods in postcard: (name, aliases) records" => methods_postcard;
        "ping", "7", "Ping{seq} is answered Pong{seq}" => ping;
        "overlong-varint", "2", "an overlong varint within the type's maximum is accepted" => overlong_varint;
        "trailing-bytes", "3", "bytes after a message: Goodbye, close" => trailing_bytes;
        "undecodable", "9", "a body that does not decode: Goodbye, close" => undecodable;
        "hello-after-handshake", "9", "a Hello after completion: Goodbye, close" => hello_after_handshake;
        "oversized-after-handshake", "8", "a frame over the negotiated limit: Goodbye, close" => oversized_after_handshake;
        "goodbye", "6.7", "after our Goodbye the server closes" => goodbye;
        "relay-services", "6.8", "a relay lists the service in rigwire.services" => relay_services;
        "relay-unavailable", "6.8", "a relay answers a name nobody serves: Error{Unavailable}" => relay_unavailable;
        "relay-follow", "6.8", "rigwire.follow with a name answers null, with a number Error{BadArguments}" => relay_follow;
        "ws-text-message", "1.1", "a text websocket message: Goodbye, a websocket Close, close" => ws_text_message;
        "ws-fragmented", "1.1", "a Call in a fragmented binary message is served" => ws_fragmented;
        "ws-wrong-path", "1.1", "an upgrade to another path: 404 Not Found" => ws_wrong_path;
        "keepalive", "7", "a silent peer is pinged (Ping{0}), then dropped past the timeout" => keepalive;
        "handshake-timeout", "5.5", "no Hello from us: Reject{HandshakeTimeout}" => handshake_timeout;
    }
}
