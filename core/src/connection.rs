//! The connection state machine: its fields, inputs, outputs and timers.
//! The handshake, established traffic, commands and echo live in sibling
//! modules as further `impl Connection` blocks.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use crate::calls::CallTable;
use crate::codec::Payload;
use crate::config::{ProtocolConfig, Role};
use crate::dispatch::Registry;
use crate::error::{CallError, ConfigError, ConnectionError, DecodeError, EchoError};
use crate::event::{CancelReason, Event, Stats};
use crate::framing::{FrameDecoder, Framing, OutQueue, LENGTH_PREFIX, PRE_AUTH_MAX_FRAME};
use crate::message::{
    head_to_vec, Hello, Message, MessageHead, MessageRef, RejectCode, MAGIC, PROTOCOL_VERSION,
};

/// Why a peer is closed that sent more than a frame behind its proof
/// while the server decided whether to admit it.
const HELD_TOO_MUCH: &str = "more than a frame sent before the handshake completed";

/// What the peer announced in its `Hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's name.
    pub name: String,
    /// The negotiated protocol version.
    pub version: u16,
    /// The largest frame the peer accepts.
    pub max_frame: u32,
    /// How many of our calls the peer runs at once.
    pub max_incoming_calls: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Handshaking,
    Established,
    Closed,
}

/// Work the application issued before the handshake completed; sent, in
/// order, the moment it does.
#[derive(Debug)]
pub(crate) enum Queued {
    Call {
        id: u64,
        method: String,
        args: Payload,
    },
    Notify {
        method: String,
        args: Payload,
    },
    Confirm {
        seq: u64,
    },
    Ping {
        seq: u64,
    },
}

/// One rigwire connection as a pure state machine: no sockets, threads, clocks
/// or randomness. The runtime moves bytes and time in and out.
///
/// # The four method families
///
/// * **Getters** (`&self`): [`is_established`](Self::is_established),
///   [`is_closed`](Self::is_closed), [`error`](Self::error),
///   [`peer`](Self::peer), [`role`](Self::role), [`config`](Self::config),
///   [`registry`](Self::registry), [`stats`](Self::stats),
///   [`calls_in_flight`](Self::calls_in_flight),
///   [`incoming_in_flight`](Self::incoming_in_flight),
///   [`is_incoming`](Self::is_incoming), [`incoming_ids`](Self::incoming_ids),
///   [`queued_output`](Self::queued_output),
///   [`queued_before_handshake`](Self::queued_before_handshake),
///   [`buffered_input`](Self::buffered_input) and
///   [`wants_input`](Self::wants_input); and
///   [`registry_mut`](Self::registry_mut) to expose more names while connected.
/// * **Inputs**: [`handle_input`](Self::handle_input) for byte streams,
///   [`handle_frame`](Self::handle_frame) for websocket messages and datagrams,
///   [`handle_timeout`](Self::handle_timeout) when the instant from
///   `poll_timeout` has passed (extra calls are harmless),
///   [`handle_transport_closed`](Self::handle_transport_closed) on end of stream
///   or an I/O error, [`handle_tls_failure`](Self::handle_tls_failure) when
///   the TLS under the stream fails, and, from a message transport's own decoder,
///   [`handle_oversized_frame`](Self::handle_oversized_frame) and
///   [`handle_protocol_violation`](Self::handle_protocol_violation) (a
///   websocket message over the limit, or a text one).
/// * **Commands**: [`call`](Self::call), [`notify`](Self::notify),
///   [`reply`](Self::reply), [`cancel`](Self::cancel), [`ping`](Self::ping),
///   [`confirmed_send`](Self::confirmed_send), [`close`](Self::close),
///   [`shutdown`](Self::shutdown) (answers pending incoming calls first) and
///   [`reject`](Self::reject) (refuses a connection with a code and reason);
///   on a server, [`gate_admission`](Self::gate_admission) and
///   [`admit`](Self::admit) (decides admission before its proof goes out).
///   Each returns a typed error instead of panicking. And
///   [`release_idle_buffers`](Self::release_idle_buffers), for a runtime
///   setting an idle connection aside.
/// * **Outputs**: [`poll_transmit`](Self::poll_transmit),
///   [`poll_event`](Self::poll_event), [`poll_timeout`](Self::poll_timeout).
///
/// # Call order
///
/// After **every** input or command, drain the outputs: call `poll_transmit`
/// until it returns `None` and write each chunk in order, call `poll_event`
/// until it returns `None`, then wait until new bytes arrive or the instant
/// from `poll_timeout` passes, whichever is first. Outputs are only produced by
/// inputs and commands, so nothing is lost by draining late, but a timer is
/// only armed correctly after the latest `poll_timeout`.
///
/// Time enters only as the `now` arguments and must not go backwards (a
/// smaller `now` is treated as the latest one seen). Fatal errors are sticky:
/// after [`Event::Closed`] every command returns the same error.
///
/// While [`wants_input`](Self::wants_input) is false the peer is sending
/// faster than the transport drains our answers: stop reading until the
/// queued output has been written.
#[derive(Debug)]
pub struct Connection {
    pub(crate) config: ProtocolConfig,
    pub(crate) registry: Registry,
    pub(crate) role: Role,
    pub(crate) state: State,
    /// Our `Hello` frame body, exactly as sent (for the auth transcript).
    pub(crate) our_hello: Bytes,
    /// The peer's `Hello` frame body, exactly as received.
    pub(crate) peer_hello: Option<Bytes>,
    pub(crate) peer: Option<PeerInfo>,
    /// Waiting for the peer's `Auth` after both Hellos.
    pub(crate) awaiting_proof: bool,
    /// A server whose admission of a peer is decided once the peer has
    /// proven the secret, before our proof goes out
    /// ([`gate_admission`](Self::gate_admission)).
    pub(crate) admission_gate: bool,
    /// The peer's proof verified; our proof waits for [`admit`](Self::admit).
    pub(crate) awaiting_admission: bool,
    /// What the peer sent behind its proof meanwhile, served once admitted
    /// (spec §5.5: frames pipelined behind the `Auth` are served).
    pub(crate) held_input: Vec<u8>,
    /// The same, from a message transport: whole frames.
    pub(crate) held_frames: VecDeque<Bytes>,
    /// Frame limit in force for both directions.
    pub(crate) frame_limit: u32,
    pub(crate) decoder: FrameDecoder,
    pub(crate) out: OutQueue,
    pub(crate) events: VecDeque<Event>,
    /// Our calls awaiting an answer.
    pub(crate) outgoing: CallTable<()>,
    /// The peer's calls being handled here.
    pub(crate) incoming: CallTable<()>,
    /// Our confirmed sends awaiting their echo, with the bytes sent.
    pub(crate) confirms: CallTable<Bytes>,
    /// Our application pings awaiting their pong, with the time sent.
    pub(crate) pings: CallTable<Instant>,
    pub(crate) queued: VecDeque<Queued>,
    /// Notify handlers running here (they count against the incoming limit).
    pub(crate) notifies_running: usize,
    /// Handlers of calls cancelled or expired that still run: their slot is
    /// not free until they finish.
    pub(crate) abandoned: usize,
    pub(crate) next_call_id: u64,
    pub(crate) next_confirm_seq: u64,
    pub(crate) next_ping_seq: u64,
    pub(crate) handshake_deadline: Instant,
    pub(crate) last_rx: Instant,
    pub(crate) last_keepalive: Option<Instant>,
    pub(crate) now: Instant,
    pub(crate) error: Option<ConnectionError>,
    pub(crate) stats: Stats,
}

impl Connection {
    /// Starts a connection: our `Hello` is queued at once.
    ///
    /// `nonce` must be 32 fresh random bytes from the runtime; reusing one lets
    /// an eavesdropper replay a proof. `registry` lists what the peer may call.
    ///
    /// # Errors
    /// [`ConfigError`] if `config` breaks a rule (see [`ProtocolConfig::validate`]).
    pub fn new(
        config: ProtocolConfig,
        registry: Registry,
        role: Role,
        framing: Framing,
        nonce: [u8; 32],
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut out = OutQueue::new(framing);
        let hello: MessageHead<'_> = Message::Hello(Hello {
            magic: MAGIC,
            min_version: PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            name: config.name.as_str(),
            nonce,
            max_frame: config.max_frame,
            max_incoming_calls: config.max_incoming_calls,
            secret_required: config.secret.is_some(),
        });
        let our_hello = Bytes::from(head_to_vec(&hello));
        out.push(&hello, None, PRE_AUTH_MAX_FRAME)
            .map_err(ConfigError::NameTooLong)?;
        let handshake_deadline = crate::link::after(now, config.handshake_timeout);
        Ok(Connection {
            outgoing: CallTable::new(config.max_outgoing_calls as usize),
            incoming: CallTable::new(config.max_incoming_calls as usize),
            confirms: CallTable::new(config.max_pending_confirms as usize),
            pings: CallTable::new(config.max_pending_pings as usize),
            config,
            registry,
            role,
            state: State::Handshaking,
            our_hello,
            peer_hello: None,
            peer: None,
            awaiting_proof: false,
            admission_gate: false,
            awaiting_admission: false,
            held_input: Vec::new(),
            held_frames: VecDeque::new(),
            frame_limit: PRE_AUTH_MAX_FRAME,
            decoder: FrameDecoder::new(),
            out,
            events: VecDeque::new(),
            queued: VecDeque::new(),
            notifies_running: 0,
            abandoned: 0,
            next_call_id: 1,
            next_confirm_seq: 1,
            next_ping_seq: 1,
            handshake_deadline,
            last_rx: now,
            last_keepalive: None,
            now,
            error: None,
            stats: Stats {
                frames_out: 1,
                ..Stats::default()
            },
        })
    }

    // ----- getters -----

    /// Whether the handshake has completed and the connection is not closed.
    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }

    /// Whether the connection is closed (see [`error`](Self::error) for why).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The fatal error that closed the connection, if it is closed.
    pub fn error(&self) -> Option<&ConnectionError> {
        self.error.as_ref()
    }

    /// What the peer announced, once its `Hello` has been accepted.
    pub fn peer(&self) -> Option<&PeerInfo> {
        self.peer.as_ref()
    }

    /// The name the peer announced in its `Hello`; empty before it.
    pub fn peer_name(&self) -> String {
        self.peer().map(|p| p.name.clone()).unwrap_or_default()
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration in force.
    pub fn config(&self) -> &ProtocolConfig {
        &self.config
    }

    /// The exposed names.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The exposed names, to add more while connected.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Counters of late answers, rejections and traffic.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Our calls awaiting an answer.
    pub fn calls_in_flight(&self) -> usize {
        self.outgoing.len()
    }

    /// The peer's calls awaiting our reply.
    pub fn incoming_in_flight(&self) -> usize {
        self.incoming.len()
    }

    /// Gives back the block frames are encoded into when nothing is queued
    /// in it: a connection set aside idle need not keep it. Harmless at any
    /// time (the next frame takes a new block); it changes no state the
    /// peer sees.
    pub fn release_idle_buffers(&mut self) {
        self.out.release_block();
    }

    /// Bytes queued for the transport and not yet taken by `poll_transmit`.
    pub fn queued_output(&self) -> usize {
        self.out.queued()
    }

    /// Bytes of calls and notifies made before the handshake completed,
    /// waiting in order to be sent the moment it does.
    pub fn queued_before_handshake(&self) -> usize {
        self.queued
            .iter()
            .map(|q| match q {
                Queued::Call { method, args, .. } | Queued::Notify { method, args } => {
                    method.len() + args.bytes.len()
                }
                Queued::Confirm { .. } | Queued::Ping { .. } => 0,
            })
            .sum()
    }

    /// Lends out the rest of a frame being received on a byte stream, once
    /// the peer has authenticated and at least `min` bytes of it are still
    /// to come: a runtime reads them straight into it, outside its lock,
    /// and gives it back with [`return_room`](Self::return_room). Until then
    /// no input may be fed.
    pub fn lend_room(&mut self, min: usize) -> Option<crate::framing::FrameRoom> {
        if self.state != State::Established {
            return None;
        }
        self.decoder.lend(min)
    }

    /// Gives back a room from [`lend_room`](Self::lend_room) with `n` bytes
    /// read into it (0: none arrived); a completed frame is handled as any
    /// other. Timers due by `now` fire first.
    pub fn return_room(&mut self, room: crate::framing::FrameRoom, n: usize, now: Instant) {
        self.handle_timeout(now);
        if let Some(frame) = self.decoder.give_back(room, n) {
            if self.state != State::Closed {
                self.on_frame(frame);
            }
        }
    }

    /// Bytes of a partial frame held by the stream decoder.
    pub fn buffered_input(&self) -> usize {
        self.decoder.buffered()
    }

    /// Whether the runtime should keep reading: false once closed, and while
    /// the queued output is over its limit (the peer is not reading our answers).
    pub fn wants_input(&self) -> bool {
        self.state != State::Closed && self.out.queued() <= self.config.max_queued_output
    }

    // ----- outputs -----

    /// The next bytes to write. On byte streams, any chunk of the stream in
    /// order (small frames are batched, large payloads come as their own chunk
    /// without a copy); on message transports, exactly one frame.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.out.pop()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The instant at which `handle_timeout` must be called next, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = [
            self.outgoing.next_deadline(),
            self.incoming.next_deadline(),
            self.confirms.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min();
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        match self.state {
            State::Closed => return None,
            State::Handshaking => consider(self.handshake_deadline),
            State::Established => {
                if let Some((ping_at, dead_at)) = self.keepalive_times() {
                    consider(ping_at);
                    consider(dead_at);
                }
            }
        }
        next
    }

    // ----- inputs -----

    /// Feeds bytes read from a byte stream, split anywhere. Timers due by
    /// `now` fire first: an answer read after its call's deadline is late,
    /// whichever the runtime noticed first.
    pub fn handle_input(&mut self, mut input: &[u8], now: Instant) {
        self.handle_timeout(now);
        while !input.is_empty() && self.state != State::Closed {
            if self.awaiting_admission {
                return self.hold_input(input);
            }
            let run = self.decoder.whole_frames(input, self.frame_limit);
            if run > 0 {
                // Whole small frames: one block, each frame a slice of it.
                // Its own allocation, freed with its last frame: a decoder
                // between frames holds nothing.
                let block = Bytes::copy_from_slice(&input[..run]);
                input = &input[run..];
                let mut at = 0;
                while at < run && self.state != State::Closed {
                    if self.awaiting_admission {
                        self.hold_input(&block[at..run]);
                        break;
                    }
                    let header = block[at..at + LENGTH_PREFIX].try_into().expect("4 bytes");
                    let end = at + LENGTH_PREFIX + u32::from_be_bytes(header) as usize;
                    self.on_frame(block.slice(at + LENGTH_PREFIX..end));
                    at = end;
                }
                continue;
            }
            let pre_auth = self.state == State::Handshaking;
            match self.decoder.decode(input, self.frame_limit, pre_auth) {
                Ok((used, frame)) => {
                    input = &input[used..];
                    if let Some(frame) = frame {
                        self.on_frame(frame);
                    }
                }
                Err(e) => self.fail_by_peer(e.into()),
            }
        }
    }

    /// Feeds one frame from a message transport (a websocket message or
    /// datagram). Timers due by `now` fire first, as for `handle_input`.
    pub fn handle_frame(&mut self, frame: Bytes, now: Instant) {
        self.handle_timeout(now);
        if self.state == State::Closed {
            return;
        }
        if self.awaiting_admission {
            let held = self.held_frames.iter().map(Bytes::len).sum::<usize>();
            if held + frame.len() > self.hold_limit() {
                return self.fail_by_peer(ConnectionError::Protocol(HELD_TOO_MUCH.into()));
            }
            return self.held_frames.push_back(frame);
        }
        if frame.len() > self.frame_limit as usize {
            return self.handle_oversized_frame(frame.len() as u64, now);
        }
        self.on_frame(frame);
    }

    /// Keeps what arrives while our admission of the peer is decided,
    /// up to [`hold_limit`](Self::hold_limit).
    fn hold_input(&mut self, input: &[u8]) {
        if self.held_input.len() + input.len() > self.hold_limit() {
            return self.fail_by_peer(ConnectionError::Protocol(HELD_TOO_MUCH.into()));
        }
        self.held_input.extend_from_slice(input);
    }

    /// The most a peer may send behind its proof before it is admitted: one
    /// frame of our largest (a conforming client sends nothing until our
    /// proof; one that pipelines a call sends that call).
    fn hold_limit(&self) -> usize {
        self.config.max_frame as usize + LENGTH_PREFIX
    }

    /// A message transport's own decoder met a frame of `len` bytes over the
    /// limit it enforces, and dropped it unread (a websocket message cap):
    /// the same protocol violation as an oversized frame, answered
    /// `Reject{Protocol}` before the handshake completes, `Goodbye` after.
    pub fn handle_oversized_frame(&mut self, len: u64, now: Instant) {
        self.handle_timeout(now);
        if self.state == State::Closed {
            return;
        }
        let err = crate::error::FrameError::TooLarge {
            len,
            limit: self.frame_limit,
            pre_auth: self.state == State::Handshaking,
        };
        self.fail_by_peer(err.into());
    }

    /// The transport saw the peer break the protocol below the frames (a
    /// text websocket message, say), for `reason`: answered `Reject{Protocol}`
    /// before the handshake completes, `Goodbye` after, then closed.
    pub fn handle_protocol_violation(&mut self, reason: &str, now: Instant) {
        self.handle_timeout(now);
        self.fail_by_peer(ConnectionError::Protocol(reason.to_owned()));
    }

    /// Lets time pass: expires deadlines, sends keepalives, declares a silent
    /// peer dead, enforces the handshake timeout. Calling it early does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        let now = self.now;
        if self.state == State::Closed {
            return;
        }
        if self.state == State::Handshaking && now >= self.handshake_deadline {
            let timeout = self.config.handshake_timeout;
            self.send_control(&Message::Reject {
                code: RejectCode::HandshakeTimeout,
                reason: "handshake did not complete in time",
            });
            self.fail(ConnectionError::HandshakeTimeout(timeout));
            return;
        }
        if self.state == State::Established {
            if let Some((ping_at, dead_at)) = self.keepalive_times() {
                if now >= dead_at {
                    let silent = now.saturating_duration_since(self.last_rx);
                    self.fail(ConnectionError::PeerSilent(silent));
                    return;
                }
                if now >= ping_at {
                    self.send_control(&Message::Ping { seq: 0 });
                    self.last_keepalive = Some(now);
                }
            }
        }
        while let Some((id, ())) = self.outgoing.pop_expired(now) {
            if self.state == State::Established {
                self.send_control(&Message::Cancel { id });
            }
            self.events.push_back(Event::Response {
                id,
                result: Err(CallError::DeadlineExceeded),
            });
        }
        while let Some((id, ())) = self.incoming.pop_expired(now) {
            self.events.push_back(Event::Cancelled {
                id,
                reason: CancelReason::DeadlineExceeded,
            });
        }
        while let Some((seq, _)) = self.confirms.pop_expired(now) {
            self.events.push_back(Event::ConfirmFailed {
                seq,
                error: EchoError::Timeout(self.config.echo_timeout),
            });
        }
    }

    /// Tells the core the transport ended: end of stream, or an I/O error
    /// (`reason` says which). Every pending call fails with `Disconnected`.
    pub fn handle_transport_closed(&mut self, reason: &str, now: Instant) {
        self.advance(now);
        self.fail(ConnectionError::TransportClosed(reason.to_owned()));
    }

    /// The transport's TLS failed, or the peer spoke TLS where we did not
    /// (or the reverse); the connection fails with [`ConnectionError::Tls`].
    pub fn handle_tls_failure(&mut self, problem: crate::tls::TlsProblem, now: Instant) {
        self.advance(now);
        self.fail(ConnectionError::Tls(problem));
    }

    // ----- internals shared by the sibling modules -----

    fn advance(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    /// When the next keepalive ping is due and when the peer counts as dead.
    fn keepalive_times(&self) -> Option<(Instant, Instant)> {
        let k = self.config.keepalive?;
        let quiet_since = self
            .last_keepalive
            .map_or(self.last_rx, |t| t.max(self.last_rx));
        Some((
            quiet_since.checked_add(k.interval)?,
            self.last_rx.checked_add(k.timeout)?,
        ))
    }

    fn on_frame(&mut self, frame: Bytes) {
        self.stats.frames_in += 1;
        self.last_rx = self.now;
        let msg = match MessageRef::decode_ref(&frame) {
            Ok(msg) => msg,
            Err(DecodeError::UnreadableHello {
                min_version,
                max_version,
            }) if self.state == State::Handshaking => {
                self.on_version_range(min_version, max_version);
                if self.state != State::Closed {
                    self.fail_by_peer(ConnectionError::Decode(DecodeError::UnreadableHello {
                        min_version,
                        max_version,
                    }));
                }
                return;
            }
            Err(e) => return self.fail_by_peer(e.into()),
        };
        match self.state {
            State::Handshaking => self.on_handshake_message(msg, &frame),
            State::Established => self.on_message(msg, &frame),
            State::Closed => {}
        }
        let limit = self.config.max_queued_output.saturating_mul(2);
        if self.out.queued() > limit && self.state != State::Closed {
            let queued = self.out.queued();
            self.fail(ConnectionError::OutputOverflow { queued, limit });
        }
    }

    /// Queues a frame the core itself sends (no application payload); a
    /// failure to fit is impossible for these small frames, so it is dropped.
    pub(crate) fn send_control(&mut self, msg: &MessageHead<'_>) {
        let limit = self.frame_limit.max(PRE_AUTH_MAX_FRAME);
        if self.out.push(msg, None, limit).is_ok() {
            self.stats.frames_out += 1;
        }
    }

    /// Queues a frame, with its payload if it has one. `Err(len)` if it
    /// exceeds the frame limit; nothing is queued then.
    pub(crate) fn try_send(
        &mut self,
        msg: &MessageHead<'_>,
        payload: Option<&Bytes>,
    ) -> Result<(), usize> {
        self.out.push(msg, payload, self.frame_limit)?;
        self.stats.frames_out += 1;
        Ok(())
    }

    /// An incoming notify has been handled (or handed on): its place under
    /// the incoming limit is free again.
    pub(crate) fn notify_finished(&mut self) {
        self.notifies_running = self.notifies_running.saturating_sub(1);
    }

    /// Fails the connection because of something the peer did, telling the
    /// peer why first (`Reject` during the handshake, `Goodbye` after).
    pub(crate) fn fail_by_peer(&mut self, err: ConnectionError) {
        if self.state == State::Closed {
            return;
        }
        let reason = err.to_string();
        if self.state == State::Handshaking {
            self.send_control(&Message::Reject {
                code: RejectCode::Protocol,
                reason: &reason,
            });
        } else {
            self.send_control(&Message::Goodbye { reason: &reason });
        }
        self.fail(err);
    }

    /// Closes the connection with `err`: every pending call, incoming call and
    /// confirmed send is failed at once, then [`Event::Closed`] is emitted.
    pub(crate) fn fail(&mut self, err: ConnectionError) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.queued.clear();
        self.decoder = FrameDecoder::new();
        for (id, ()) in self.outgoing.drain() {
            self.events.push_back(Event::Response {
                id,
                result: Err(CallError::Disconnected(err.clone())),
            });
        }
        for (id, ()) in self.incoming.drain() {
            self.events.push_back(Event::Cancelled {
                id,
                reason: CancelReason::Disconnected,
            });
        }
        for (seq, _) in self.confirms.drain() {
            self.events.push_back(Event::ConfirmFailed {
                seq,
                error: EchoError::Disconnected(err.clone()),
            });
        }
        self.pings.drain().for_each(drop);
        self.events.push_back(Event::Closed(err.clone()));
        self.error = Some(err);
    }

    /// The sticky error, for commands on a closed connection.
    pub(crate) fn closed_error(&self) -> Option<ConnectionError> {
        match self.state {
            State::Closed => Some(
                self.error
                    .clone()
                    .unwrap_or_else(|| ConnectionError::LocallyClosed(String::new())),
            ),
            _ => None,
        }
    }
}
