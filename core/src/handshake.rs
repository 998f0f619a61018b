//! The handshake: both sides send `Hello` at once. With a shared secret the
//! client then sends its `Auth` proof over both Hellos (see [`crate::auth`]);
//! the server sends its own proof only once the client's has verified, so a
//! stranger who connects receives nothing that depends on the secret and
//! has nothing to guess it from offline. No call, notify or echo is processed
//! until the handshake completes.

use bytes::Bytes;

use crate::auth::Transcript;
use crate::config::Role;
use crate::connection::{Connection, PeerInfo, Queued, State};
use crate::error::{printable, AuthFailure, CallError, ConnectionError, EchoError, VersionRange};
use crate::event::Event;
use crate::framing::PRE_AUTH_MAX_FRAME;
use crate::message::{
    Hello, Message, MessageRef, PayloadLen, RejectCode, MAX_NAME, PROTOCOL_VERSION,
};

const OURS: VersionRange = VersionRange {
    min: PROTOCOL_VERSION,
    max: PROTOCOL_VERSION,
};

impl Connection {
    pub(crate) fn on_handshake_message(&mut self, msg: MessageRef<'_>, frame: &Bytes) {
        match msg {
            Message::Hello(hello) if self.peer_hello.is_none() => self.on_hello(&hello, frame),
            Message::Auth { proof } if self.awaiting_proof => self.on_proof(&proof),
            Message::Reject { code, reason } => self.on_reject(code, reason),
            Message::Goodbye { reason } => {
                self.fail(ConnectionError::PeerClosed(printable(reason, false)))
            }
            other => {
                let what = other.type_name();
                self.fail_by_peer(ConnectionError::Protocol(format!(
                    "{what} received before the handshake completed"
                )))
            }
        }
    }

    /// Refuses the connection when the peer's versions do not overlap ours.
    /// Returns the version to speak otherwise.
    pub(crate) fn on_version_range(&mut self, min: u16, max: u16) -> Option<u16> {
        let theirs = VersionRange { min, max };
        let lo = OURS.min.max(theirs.min);
        let hi = OURS.max.min(theirs.max);
        if lo <= hi && theirs.min <= theirs.max {
            return Some(hi);
        }
        let err = ConnectionError::VersionMismatch { ours: OURS, theirs };
        let reason = err.to_string();
        self.send_control(&Message::Reject {
            code: RejectCode::VersionMismatch,
            reason: &reason,
        });
        self.fail(err);
        None
    }

    fn on_hello(&mut self, hello: &Hello<&str>, frame: &Bytes) {
        let Some(version) = self.on_version_range(hello.min_version, hello.max_version) else {
            return;
        };
        if hello.max_frame < PRE_AUTH_MAX_FRAME || hello.max_incoming_calls == 0 {
            return self.fail_by_peer(ConnectionError::Protocol(format!(
                "Hello announces max_frame {} and max_incoming_calls {}; the minimums are {} and 1",
                hello.max_frame, hello.max_incoming_calls, PRE_AUTH_MAX_FRAME
            )));
        }
        if hello.name.len() > MAX_NAME {
            return self.fail_by_peer(ConnectionError::Protocol(format!(
                "Hello carries a name of {} bytes; at most {MAX_NAME} are allowed",
                hello.name.len()
            )));
        }
        self.peer_hello = Some(frame.clone());
        self.peer = Some(PeerInfo {
            name: printable(hello.name, false),
            version,
            max_frame: hello.max_frame,
            max_incoming_calls: hello.max_incoming_calls,
        });
        match (&self.config.secret, hello.secret_required) {
            (None, false) => self.establish(),
            (Some(secret), true) => {
                if self.role == Role::Client {
                    let proof = self.transcript().proof(secret, self.role);
                    self.send_control(&Message::Auth { proof });
                }
                self.awaiting_proof = true;
            }
            (None, true) => self.refuse_auth(
                RejectCode::AuthRequired,
                "no shared secret is configured on this side, but the peer requires one",
                AuthFailure::NoSecretConfigured,
            ),
            (Some(_), false) => self.refuse_auth(
                RejectCode::AuthRequired,
                "this side requires a shared secret and the peer has none configured",
                AuthFailure::PeerHasNoSecret,
            ),
        }
    }

    fn on_proof(&mut self, proof: &[u8; 32]) {
        let verified = match &self.config.secret {
            Some(secret) => self.transcript().verify(secret, self.role.peer(), proof),
            None => false,
        };
        if verified {
            self.awaiting_proof = false;
            if self.role == Role::Server && self.admission_gate {
                // Admitted or refused first: a client refused then learns
                // it from its connect (a `Reject`, not our proof).
                self.awaiting_admission = true;
                self.events.push_back(Event::AdmissionWanted);
                return;
            }
            if self.role == Role::Server {
                // Only now, to a peer that has shown it holds the secret.
                if let Some(secret) = &self.config.secret {
                    let proof = self.transcript().proof(secret, self.role);
                    self.send_control(&Message::Auth { proof });
                }
            }
            self.establish();
        } else {
            self.refuse_auth(
                RejectCode::AuthFailed,
                "the proofs do not match, so the shared secrets differ",
                AuthFailure::WrongSecret,
            );
        }
    }

    /// The server admits the peer whose proof verified
    /// ([`Event::AdmissionWanted`]): our proof goes out, the handshake
    /// completes, and what the peer sent behind its proof is served. Does
    /// nothing otherwise.
    pub fn admit(&mut self) {
        if !std::mem::take(&mut self.awaiting_admission) || self.state != State::Handshaking {
            return;
        }
        if let Some(secret) = &self.config.secret {
            let proof = self.transcript().proof(secret, self.role);
            self.send_control(&Message::Auth { proof });
        }
        self.establish();
        let now = self.now;
        let held = std::mem::take(&mut self.held_input);
        if !held.is_empty() {
            self.handle_input(&held, now);
        }
        for frame in std::mem::take(&mut self.held_frames) {
            self.handle_frame(frame, now);
        }
    }

    /// On a server with a secret: once a peer has proven the secret, asks
    /// the application whether to admit it ([`Event::AdmissionWanted`];
    /// answer with [`admit`](Self::admit) or [`reject`](Self::reject))
    /// before our proof goes out, so that a peer refused then (the server
    /// full meanwhile) is told by a `Reject` in the handshake, not closed
    /// after it. What the peer sends meanwhile (at most a frame) waits.
    /// Call before the peer's `Auth` arrives.
    pub fn gate_admission(&mut self) {
        self.admission_gate = self.role == Role::Server && self.config.secret.is_some();
    }

    fn refuse_auth(&mut self, code: RejectCode, reason: &str, failure: AuthFailure) {
        self.send_control(&Message::Reject { code, reason });
        self.fail(ConnectionError::AuthFailed(failure));
    }

    /// A `Reject` ends the connection at any stage; authentication refusals
    /// surface as `AuthFailed` so both sides report the same class of error.
    pub(crate) fn on_reject(&mut self, code: crate::message::RejectCode, reason: &str) {
        let reason = printable(reason, false);
        let err = match code {
            RejectCode::AuthFailed | RejectCode::AuthRequired => {
                ConnectionError::AuthFailed(AuthFailure::RejectedByPeer(reason))
            }
            _ => ConnectionError::Rejected { code, reason },
        };
        self.fail(err);
    }

    fn transcript(&self) -> Transcript<'_> {
        let ours = &self.our_hello[..];
        let theirs = self.peer_hello.as_deref().unwrap_or_default();
        match self.role {
            Role::Client => Transcript {
                client_hello: ours,
                server_hello: theirs,
            },
            Role::Server => Transcript {
                client_hello: theirs,
                server_hello: ours,
            },
        }
    }

    /// The handshake is done: raise the frame limit, start keepalive, report
    /// the peer, and send what the application queued meanwhile.
    fn establish(&mut self) {
        let Some(peer) = self.peer.clone() else {
            return;
        };
        self.state = State::Established;
        self.frame_limit = self.config.max_frame.min(peer.max_frame);
        self.last_rx = self.now;
        self.last_keepalive = None;
        self.events.push_back(Event::Connected {
            peer_name: peer.name,
            version: peer.version,
        });
        while let Some(work) = self.queued.pop_front() {
            self.send_queued(work);
        }
    }

    fn send_queued(&mut self, work: Queued) {
        let limit = self.frame_limit;
        match work {
            Queued::Call { id, method, args } => {
                if !self.outgoing.contains(id) {
                    return; // expired or cancelled while queued
                }
                let deadline = self.outgoing.deadline(id);
                if let Err(len) = self.send_call(id, &method, &args, deadline) {
                    self.outgoing.remove(id);
                    self.events.push_back(Event::Response {
                        id,
                        result: Err(CallError::TooLarge { len, limit }),
                    });
                }
            }
            Queued::Notify { method, args } => {
                let head = Message::Notify {
                    method: method.as_str(),
                    codec: args.codec,
                    args: PayloadLen(args.bytes.len()),
                };
                if self.try_send(&head, Some(&args.bytes)).is_err() {
                    self.stats.dropped_notifies += 1;
                }
            }
            Queued::Confirm { seq } => {
                let Some(payload) = self.confirms.get(seq).cloned() else {
                    return; // timed out while queued
                };
                let head = Message::Confirm {
                    seq,
                    payload: PayloadLen(payload.len()),
                };
                if let Err(len) = self.try_send(&head, Some(&payload)) {
                    self.confirms.remove(seq);
                    self.events.push_back(Event::ConfirmFailed {
                        seq,
                        error: EchoError::TooLarge { len, limit },
                    });
                }
            }
            Queued::Ping { seq } => {
                if let Some(sent) = self.pings.get_mut(seq) {
                    *sent = self.now;
                    self.send_control(&Message::Ping { seq });
                }
            }
        }
    }
}
