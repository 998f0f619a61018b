//! Established traffic: what the core does with each message once the
//! handshake has completed. Calls to unknown names, calls past the in-flight
//! limit and pings are answered here, without the application.

use std::time::Duration;

use bytes::Bytes;

use crate::codec::Payload;
use crate::connection::Connection;
use crate::dispatch::{INTROSPECTION_METHOD, RESERVED_PREFIX};
use crate::error::{printable, CallError, ConnectionError, RemoteError};
use crate::event::{CancelReason, Event, IncomingCall, IncomingNotify};
use crate::framing::PRE_AUTH_MAX_FRAME;
use crate::message::{Codec, ErrorKind, Message, MessageRef, PayloadLen, RawBytes};
use crate::relay::FOLLOW_METHOD;

/// Why a `URL#NAME` fails at a peer that is not a relay.
const NOT_A_RELAY: &str = "this peer is not a relay (URL#NAME reaches the service NAME \
                           through a relay's clients URL): connect to it without #NAME";

impl Connection {
    pub(crate) fn on_message(&mut self, msg: MessageRef<'_>, frame: &Bytes) {
        match msg {
            Message::Call {
                id,
                method,
                deadline_us,
                codec,
                args,
            } => self.on_call(
                id,
                method,
                deadline_us,
                Payload::new(codec, frame.slice_ref(args.0)),
            ),
            Message::Reply { id, codec, result } => {
                let payload = Payload::new(codec, frame.slice_ref(result.0));
                self.on_answer(id, Ok(payload));
            }
            Message::Error {
                id,
                kind,
                message,
                detail,
            } => {
                let err = RemoteError {
                    kind,
                    message: printable(message, false),
                    detail: detail.map(|d| printable(d, true)),
                };
                if id == 0 {
                    self.events.push_back(Event::PeerError(err));
                } else {
                    let ours_passed = self.outgoing.deadline(id).is_some_and(|d| d <= self.now);
                    self.on_answer(id, Err(remote_to_call_error(err, ours_passed)));
                }
            }
            Message::Notify {
                method,
                codec,
                args,
            } => self.on_notify(method, codec, args, frame),
            Message::Cancel { id } => match self.incoming.remove(id) {
                Some(()) => self.events.push_back(Event::Cancelled {
                    id,
                    reason: CancelReason::PeerCancelled,
                }),
                None => self.stats.unknown_cancels += 1,
            },
            Message::Ping { seq } => self.send_control(&Message::Pong { seq }),
            Message::Pong { seq } => match self.pings.remove(seq) {
                Some(sent) => {
                    let rtt = self.now.saturating_duration_since(sent);
                    self.events.push_back(Event::Pong { seq, rtt });
                }
                // seq 0 is the keepalive, which needs no answer beyond arriving.
                None if seq == 0 => {}
                None => self.stats.unknown_pongs += 1,
            },
            Message::Confirm { seq, payload } => self.on_confirm(seq, frame.slice_ref(payload.0)),
            Message::Echo { seq, payload } => self.on_echo(seq, payload.0),
            Message::Reject { code, reason } => self.on_reject(code, reason),
            Message::Goodbye { reason } => {
                self.fail(ConnectionError::PeerClosed(printable(reason, false)))
            }
            Message::Hello(_) | Message::Auth { .. } => {
                let what = msg.type_name();
                self.fail_by_peer(ConnectionError::Protocol(format!(
                    "{what} received after the handshake completed"
                )));
            }
        }
    }

    fn on_answer(&mut self, id: u64, result: Result<Payload, CallError>) {
        match self.outgoing.remove(id) {
            Some(()) => self.events.push_back(Event::Response { id, result }),
            None => self.stats.unknown_replies += 1,
        }
    }

    fn on_call(&mut self, id: u64, method: &str, deadline_us: Option<u64>, args: Payload) {
        if id == 0 {
            return self.fail_by_peer(ConnectionError::Protocol("call with id 0".into()));
        }
        if self.incoming.contains(id) {
            return self.fail_by_peer(ConnectionError::Protocol(format!(
                "call id {id} reused while still in flight"
            )));
        }
        if method == INTROSPECTION_METHOD {
            let listed = self.registry.introspect(args.codec);
            return self.answer_directly(
                id,
                listed.map_err(|e| RemoteError::new(ErrorKind::BadArguments, e.to_string())),
            );
        }
        let Some(handler) = self.registry.lookup(method) else {
            self.stats.no_such_method += 1;
            let message = match (self.registry.absent_because(), self.meant_a_relay(method)) {
                (Some(why), _) => format!("no method '{method}' is exposed: {why}"),
                (None, true) => format!("no method '{method}' is exposed, and {NOT_A_RELAY}"),
                (None, false) => match self.registry.closest_to(method) {
                    Some(meant) => format!(
                        "no method '{method}' is exposed: did you mean '{meant}'? (call \
                         {INTROSPECTION_METHOD} to list them)"
                    ),
                    None => format!(
                        "no method '{method}' is exposed; call {INTROSPECTION_METHOD} to list them"
                    ),
                },
            };
            return self
                .answer_directly(id, Err(RemoteError::new(ErrorKind::NoSuchMethod, message)));
        };
        // A forwarded call's codec is its service's to check (spec §6.8),
        // so that a name the service lacks is NoSuchMethod first, as direct.
        if let (Codec::Other(code), false) = (args.codec, self.registry.forwards(method)) {
            let message =
                format!("unsupported codec {code}; this side speaks postcard (0) and JSON (1)");
            return self
                .answer_directly(id, Err(RemoteError::new(ErrorKind::BadArguments, message)));
        }
        if deadline_us == Some(0) {
            let message = "the call arrived with no time left".to_owned();
            return self.answer_directly(
                id,
                Err(RemoteError::new(ErrorKind::DeadlineExceeded, message)),
            );
        }
        let deadline = deadline_us.and_then(|us| self.now.checked_add(Duration::from_micros(us)));
        let elsewhere = self.notifies_running + self.abandoned;
        if self.incoming.len() + elsewhere >= self.incoming.capacity()
            || self.incoming.insert(id, deadline, ()).is_err()
        {
            self.stats.busy_rejections += 1;
            let message = format!(
                "{} calls and notifies already in flight here (limit {})",
                self.incoming.len() + elsewhere,
                self.incoming.capacity()
            );
            return self.answer_directly(id, Err(RemoteError::new(ErrorKind::Busy, message)));
        }
        self.events.push_back(Event::Call(IncomingCall {
            id,
            method: method.to_owned(),
            handler,
            args,
            deadline,
        }));
    }

    fn on_notify(&mut self, method: &str, codec: Codec, args: RawBytes<'_>, frame: &Bytes) {
        let in_flight = self.incoming.len() + self.notifies_running + self.abandoned;
        match self.registry.lookup_notify(method) {
            // Notifies count against the incoming limit like calls; one over
            // it is dropped, and the sender told so.
            Some(_) if in_flight >= self.incoming.capacity() => {
                self.stats.busy_rejections += 1;
                let message = format!(
                    "notify to '{method}' dropped: {in_flight} calls and notifies already in flight here (limit {})",
                    self.incoming.capacity()
                );
                self.send_error(0, &RemoteError::new(ErrorKind::Busy, message));
            }
            Some(handler) => {
                self.notifies_running += 1;
                self.events.push_back(Event::Notify(IncomingNotify {
                    method: method.to_owned(),
                    handler,
                    args: Payload::new(codec, frame.slice_ref(args.0)),
                }));
            }
            None => {
                // A notify has no id to answer; id 0 tells the sender anyway.
                self.stats.no_such_method += 1;
                let message = match method == FOLLOW_METHOD {
                    true => format!("notify to '{method}', which is not exposed: {NOT_A_RELAY}"),
                    false => format!("notify to '{method}', which is not exposed"),
                };
                self.send_error(0, &RemoteError::new(ErrorKind::NoSuchMethod, message));
            }
        }
    }

    /// Whether a call to `NAME.method`, with `method` exposed here, meant
    /// a service `NAME` behind a relay (a `URL#NAME` given this peer's URL).
    fn meant_a_relay(&self, method: &str) -> bool {
        if method.starts_with(RESERVED_PREFIX) {
            return false; // the protocol's name, not a service's
        }
        let meant = method.split_once('.').map(|(_, rest)| rest);
        meant.is_some_and(|rest| {
            rest == INTROSPECTION_METHOD || self.registry.lookup(rest).is_some()
        })
    }

    /// Answers a call the core handles itself (it never entered the table).
    fn answer_directly(&mut self, id: u64, result: Result<Payload, RemoteError>) {
        match result {
            Ok(payload) => {
                let head = Message::Reply {
                    id,
                    codec: payload.codec,
                    result: PayloadLen(payload.bytes.len()),
                };
                if let Err(len) = self.try_send(&head, Some(&payload.bytes)) {
                    self.send_too_large(id, len);
                }
            }
            Err(err) => self.send_error(id, &err),
        }
    }

    /// Sends an `Error`; if message and detail do not fit the frame limit,
    /// both are cut (saying so) so the caller still hears what failed and
    /// where: the message to 1 KiB, the detail to a quarter of the limit
    /// (at most 64 KiB).
    pub(crate) fn send_error(&mut self, id: u64, err: &RemoteError) {
        let head = Message::Error {
            id,
            kind: err.kind,
            message: err.message.as_str(),
            detail: err.detail.as_deref(),
        };
        if self.try_send(&head, None).is_ok() {
            return;
        }
        let detail_room = (self.frame_limit.max(PRE_AUTH_MAX_FRAME) / 4).min(64 << 10) as usize;
        let detail = err.detail.as_deref().map(|d| cut_to(d, detail_room));
        self.send_control(&Message::Error {
            id,
            kind: err.kind,
            message: &cut_to(&err.message, 1024),
            detail: detail.as_deref(),
        });
    }

    pub(crate) fn send_too_large(&mut self, id: u64, len: usize) {
        let message = format!(
            "result of {len} bytes exceeds the frame limit of {} bytes (the smaller of the two \
             sides' max_frame; raise it on both, or answer with less at once)",
            self.frame_limit
        );
        self.send_error(id, &RemoteError::new(ErrorKind::TooLarge, message));
    }
}

/// Remote errors that mean the same as a local failure are reported as that
/// failure, so callers handle `Busy` and deadlines one way wherever they
/// arose. A `DeadlineExceeded` is ours only once our own deadline has
/// passed (`ours_passed`); before it (or with none) the peer held the call
/// to a shorter limit (a relay's cap), and its reason stays (see
/// `Error::is_deadline_exceeded`).
fn remote_to_call_error(err: RemoteError, ours_passed: bool) -> CallError {
    match err.kind {
        ErrorKind::Busy => CallError::Busy(format!("the peer says: {}", err.message)),
        ErrorKind::DeadlineExceeded if ours_passed => CallError::DeadlineExceeded,
        _ => CallError::Remote(err),
    }
}

/// `text`, or its first `room` bytes (to a character's end) saying that it
/// was cut.
fn cut_to(text: &str, room: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= room {
        return text.into();
    }
    let mut end = room;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… (cut to {end} of its {} bytes, to fit the frame limit)",
        &text[..end],
        text.len()
    )
    .into()
}
