//! `rigwire conform client --listen URL`: plays the server for a client
//! under test. The client runs the script of spec §11.2: [`CONNECTIONS`]
//! times, one after another, it connects, calls `add` with the JSON
//! arguments `[1, 2]` and a 2 s deadline, and closes, whatever the call gave.
//! Each connection is one case; the tester answers it differently each time
//! and judges what the client sends.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rigwire_std::core::auth::proof;
use rigwire_std::core::message::Hello;
use rigwire_std::core::{Codec, ErrorKind, Message, RejectCode, Role, Secret};

use super::PROMPT;
use super::{
    check_hello, check_proof, fail, hello_of, our_hello, Case, Checked, Got, Listener, Mismatch,
    Wire,
};

/// How many connections the script makes.
pub const CONNECTIONS: usize = 7;

/// The deadline the script gives its calls.
pub const SCRIPT_DEADLINE: Duration = Duration::from_secs(2);

/// The listening tester.
pub struct Stage {
    /// Where the client under test connects.
    pub listener: Listener,
    /// The shared secret, if the client is to prove one.
    pub secret: Option<Secret>,
    /// How long to wait for each connection.
    pub wait: Duration,
    /// Connections that arrived and were judged by an earlier case.
    pub seen: RefCell<usize>,
}

/// One accepted connection with the handshake done.
struct Session {
    wire: Wire,
}

impl Stage {
    /// Accepts the script's next connection and sends our `Hello` at once,
    /// as §5.1 asks of both sides (edited by `edit`).
    fn accept_raw(&self, edit: impl FnOnce(&mut Hello)) -> Result<(Wire, Bytes), Mismatch> {
        *self.seen.borrow_mut() += 1;
        let mut wire = self.listener.accept(self.wait).map_err(|e| {
            fail(
                format!("connection {} of the script (§11.2)", self.seen.borrow()),
                e.to_string(),
            )
        })?;
        let mut hello = our_hello(self.secret.is_some());
        edit(&mut hello);
        let ours = Message::Hello(hello);
        wire.send(&ours)
            .map_err(|e| fail("to send our Hello", e.to_string()))?;
        Ok((wire, ours.encode().into()))
    }

    /// Accepts the script's next connection and completes the handshake as a
    /// server, checking the client's `Hello` and proof. With `reject`, the
    /// tester sends that instead of completing: after the client's `Hello`,
    /// or, with a secret, instead of its own proof.
    fn accept(&self, reject: Option<(RejectCode, &str)>) -> Result<Session, Mismatch> {
        let (mut wire, our_body) = self.accept_raw(|_| {})?;
        let got = wire.next(PROMPT);
        let hello = hello_of(&got)?;
        check_hello(&hello, self.secret.as_ref())?;
        let refuse = |wire: &mut Wire, (code, reason): (RejectCode, &str)| {
            wire.send(&Message::Reject {
                code,
                reason: reason.into(),
            })
            .map_err(|e| fail("to send", e.to_string()))
        };
        if let (Some(r), None) = (reject, &self.secret) {
            refuse(&mut wire, r)?;
            return Ok(Session { wire });
        }
        let Got::Frame(client_body) = got else {
            unreachable!("a Hello is a frame")
        };
        if let Some(secret) = &self.secret {
            let expected = proof(secret, Role::Client, &client_body, &our_body);
            check_proof(&wire.next(PROMPT), expected, "the client's")?;
            if let Some(r) = reject {
                refuse(&mut wire, r)?;
                return Ok(Session { wire });
            }
            let mine = proof(secret, Role::Server, &client_body, &our_body);
            wire.send(&Message::Auth { proof: mine })
                .map_err(|e| fail("to send", e.to_string()))?;
        }
        Ok(Session { wire })
    }
}

impl Session {
    /// The script's call: `add`, JSON `[1, 2]`, a deadline of at most 2 s.
    fn script_call(&mut self) -> Result<(u64, Instant), Mismatch> {
        let got = self.wire.next(PROMPT);
        let arrived = Instant::now();
        let Some(Message::Call {
            id,
            method,
            deadline_us,
            codec,
            args,
        }) = got.message()
        else {
            return Err(fail("the script's Call", got.describe()));
        };
        let args: Option<serde_json::Value> = serde_json::from_slice(&args).ok();
        let deadline_ok =
            deadline_us.is_some_and(|us| us > 0 && us <= SCRIPT_DEADLINE.as_micros() as u64);
        if id == 0
            || method != "add"
            || codec != Codec::Json
            || args != Some(serde_json::json!([1, 2]))
            || !deadline_ok
        {
            return Err(fail(
                "Call{id ≠ 0, \"add\", deadline_us in (0, 2 s], JSON [1,2]}",
                format!(
                    "Call{{id {id}, {method:?}, deadline_us {deadline_us:?}, {codec:?}, {args:?}}}"
                ),
            ));
        }
        Ok((id, arrived))
    }

    /// Answers the script's call with its sum, `3`.
    fn answer_three(&mut self, id: u64) -> Checked {
        self.send(&Message::Reply {
            id,
            codec: Codec::Json,
            result: Bytes::from_static(b"3"),
        })
    }

    fn send(&mut self, m: &Message) -> Checked {
        self.wire
            .send(m)
            .map_err(|e| fail("to send", e.to_string()))
    }

    /// The client ends the connection: an optional `Goodbye`, then close,
    /// within `within`, and nothing else (keepalive aside).
    fn closes(&mut self, within: Duration, goodbye_allowed: bool) -> Checked {
        let got = self.wire.next(within);
        match got.message() {
            Some(Message::Goodbye { .. }) if goodbye_allowed => self
                .wire
                .expect_close(within)
                .map_err(|g| fail("the connection closed after the Goodbye", g.describe())),
            _ if matches!(got, Got::Closed) => Ok(()),
            _ => Err(fail(
                if goodbye_allowed {
                    "a Goodbye or the connection closed, nothing else"
                } else {
                    "nothing more, the connection closed"
                },
                got.describe(),
            )),
        }
    }
}

/// Every case, in the order of the script's connections.
pub fn cases() -> Vec<Case<Stage>> {
    case_table! { Stage:
        "client-handshake-and-call", "5.1", "a valid Hello at once, a proof that verifies, a well-formed Call" => handshake_and_call;
        "client-error", "6.2", "an Error answer ends the call; the client closes cleanly" => error_answer;
        "client-deadline", "6.1", "no answer: Cancel{id} once the deadline passes; a late answer is ignored" => deadline;
        "client-ping", "7", "the client answers Ping{seq} with Pong{seq}" => ping;
        "client-goodbye", "6.7", "after our Goodbye the client sends nothing and closes" => goodbye;
        "client-reject", "6.7", "after a Reject the client closes; with a secret it never sent a Call" => reject;
        "client-version-mismatch", "5.1", "a server speaking v2..=v3: Reject{VersionMismatch}, no Call" => version_mismatch;
    }
}

fn handshake_and_call(s: &Stage) -> Checked {
    let mut c = s.accept(None)?;
    let (id, _) = c.script_call()?;
    c.answer_three(id)?;
    c.closes(Duration::from_secs(5), true)
}

fn error_answer(s: &Stage) -> Checked {
    let mut c = s.accept(None)?;
    let (id, _) = c.script_call()?;
    c.send(&Message::Error {
        id,
        kind: ErrorKind::Handler,
        message: "conformance: an expected failure".into(),
        detail: Some("at conform.rs:1".into()),
    })?;
    c.closes(Duration::from_secs(5), true)
}

fn deadline(s: &Stage) -> Checked {
    let mut c = s.accept(None)?;
    let (id, arrived) = c.script_call()?;
    let got = c.wire.next(SCRIPT_DEADLINE + Duration::from_secs(2));
    match got.message() {
        Some(Message::Cancel { id: i }) if i == id => {}
        _ => {
            return Err(fail(
                format!("Cancel{{id {id}}} within the 2 s deadline plus 2 s"),
                got.describe(),
            ))
        }
    }
    // Sent before the deadline would be a caller giving up early.
    if arrived.elapsed() + Duration::from_millis(100) < SCRIPT_DEADLINE {
        return Err(fail(
            "the Cancel once the 2 s deadline passed",
            format!("a Cancel after {} ms", arrived.elapsed().as_millis()),
        ));
    }
    // A late answer is ignored (§6.1): the client just closes, as it would.
    // It may have closed already, so the answer may not even be taken.
    let _ = c.answer_three(id);
    c.closes(Duration::from_secs(5), true)
}

fn ping(s: &Stage) -> Checked {
    let mut c = s.accept(None)?;
    c.send(&Message::Ping { seq: 7 })?;
    // The call and the Pong, in either order.
    let mut call = None;
    let mut ponged = false;
    while call.is_none() || !ponged {
        let got = c.wire.next(PROMPT);
        match got.message() {
            Some(Message::Pong { seq: 7 }) if !ponged => ponged = true,
            Some(Message::Call { id, .. }) if call.is_none() => call = Some(id),
            _ => return Err(fail("Pong{7} and the script's Call", got.describe())),
        }
    }
    if let Some(id) = call {
        c.answer_three(id)?;
    }
    c.closes(Duration::from_secs(5), true)
}

fn goodbye(s: &Stage) -> Checked {
    let mut c = s.accept(None)?;
    c.script_call()?;
    c.send(&Message::Goodbye {
        reason: "conformance: goodbye".into(),
    })?;
    c.closes(PROMPT, false)
}

fn reject(s: &Stage) -> Checked {
    let mut c = s.accept(Some((RejectCode::ConnectionLimit, "conformance: rejected")))?;
    loop {
        let got = c.wire.next(PROMPT);
        match got.message() {
            // Without a secret the handshake completed on our Hello, so the
            // script's Call may have crossed our Reject on the way.
            Some(Message::Call { .. }) if s.secret.is_none() => {}
            _ if matches!(got, Got::Closed) => return Ok(()),
            _ => return Err(fail("nothing more, the connection closed", got.describe())),
        }
    }
}

fn version_mismatch(s: &Stage) -> Checked {
    let (mut wire, _) = s.accept_raw(|h| {
        h.min_version = 2;
        h.max_version = 3;
    })?;
    hello_of(&wire.next(PROMPT))?;
    let got = wire.next(PROMPT);
    match got.message() {
        Some(Message::Reject {
            code: RejectCode::VersionMismatch,
            ..
        }) => {}
        _ => return Err(fail("Reject{VersionMismatch}, then close", got.describe())),
    }
    wire.expect_close(PROMPT)
        .map_err(|g| fail("the connection closed after the Reject", g.describe()))
}
