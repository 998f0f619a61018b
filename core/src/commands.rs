//! Commands from the application: calls, notifies, replies, cancels, pings and
//! close. Each returns a typed error; none panics.

use std::time::{Duration, Instant};

use crate::codec::Payload;
use crate::connection::{Connection, Queued, State};
use crate::error::{CallError, ConnectionError, EchoError, RemoteError, ReplyError};
use crate::message::{Message, PayloadLen};

impl Connection {
    /// Calls `method` on the peer. Returns the call's id; its outcome arrives as
    /// [`Event::Response`](crate::Event::Response) with that id.
    ///
    /// `timeout` overrides [`ProtocolConfig::default_call_timeout`](crate::ProtocolConfig); with
    /// neither, the call waits as long as the peer is alive. On expiry the
    /// caller gets `DeadlineExceeded` and the peer a `Cancel`. Before the
    /// handshake completes the call is queued (it counts against the in-flight
    /// limit and its deadline runs).
    ///
    /// # Errors
    /// `Disconnected` when closed, `Busy` when `max_outgoing_calls` are in
    /// flight, `Backpressure` while the output queue is over its limit,
    /// `TooLarge` when the frame would exceed the frame limit.
    pub fn call(
        &mut self,
        method: &str,
        args: Payload,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<u64, CallError> {
        self.ready_for_work(now)?;
        let timeout = timeout.or(self.config.default_call_timeout);
        let deadline = timeout.and_then(|t| self.now.checked_add(t));
        let id = self.next_call_id;
        if self.outgoing.insert(id, deadline, ()).is_err() {
            return Err(CallError::Busy(format!(
                "{} calls in flight on this connection (limit {})",
                self.outgoing.len(),
                self.outgoing.capacity()
            )));
        }
        if self.state == State::Established {
            if let Err(len) = self.send_call(id, method, &args, deadline) {
                self.outgoing.remove(id);
                return Err(CallError::TooLarge {
                    len,
                    limit: self.frame_limit,
                });
            }
        } else {
            self.check_fits_before_handshake(method.len() + args.bytes.len())
                .inspect_err(|_| {
                    self.outgoing.remove(id);
                })?;
            self.queued.push_back(Queued::Call {
                id,
                method: method.to_owned(),
                args,
            });
        }
        self.next_call_id += 1;
        Ok(id)
    }

    /// Sends a one-way notification. The peer answers only if `method` is not
    /// exposed there, with an error that arrives as
    /// [`Event::PeerError`](crate::Event::PeerError).
    ///
    /// # Errors
    /// As [`call`](Self::call); `Busy` when too many notifies are queued before
    /// the handshake.
    pub fn notify(&mut self, method: &str, args: Payload, now: Instant) -> Result<(), CallError> {
        self.ready_for_work(now)?;
        if self.state == State::Established {
            let head = Message::Notify {
                method,
                codec: args.codec,
                args: PayloadLen(args.bytes.len()),
            };
            return self
                .try_send(&head, Some(&args.bytes))
                .map_err(|len| CallError::TooLarge {
                    len,
                    limit: self.frame_limit,
                });
        }
        self.check_fits_before_handshake(method.len() + args.bytes.len())?;
        if self.queued.len() >= self.outgoing.capacity() {
            return Err(CallError::Busy(format!(
                "{} messages queued before the handshake (limit {})",
                self.queued.len(),
                self.outgoing.capacity()
            )));
        }
        self.queued.push_back(Queued::Notify {
            method: method.to_owned(),
            args,
        });
        Ok(())
    }

    /// Answers the incoming call `id`: `Ok` sends a `Reply`, `Err` an `Error`
    /// carrying kind, message and detail.
    ///
    /// # Errors
    /// `NotPending` if the call was already answered, cancelled or expired
    /// (harmless); `TooLarge` if the result does not fit a frame, in which case
    /// the caller is sent a `TooLarge` error instead; `Disconnected` when closed.
    pub fn reply(
        &mut self,
        id: u64,
        result: Result<Payload, RemoteError>,
    ) -> Result<(), ReplyError> {
        if let Some(err) = self.closed_error() {
            return Err(ReplyError::Disconnected(err));
        }
        if self.incoming.remove(id).is_none() {
            return Err(ReplyError::NotPending(id));
        }
        match result {
            Ok(payload) => {
                let head = Message::Reply {
                    id,
                    codec: payload.codec,
                    result: PayloadLen(payload.bytes.len()),
                };
                if let Err(len) = self.try_send(&head, Some(&payload.bytes)) {
                    self.send_too_large(id, len);
                    return Err(ReplyError::TooLarge {
                        len,
                        limit: self.frame_limit,
                    });
                }
            }
            Err(err) => self.send_error(id, &err),
        }
        Ok(())
    }

    /// Takes incoming call `id` out of the table if its deadline has passed by
    /// now (`clock` is read only for a call that has one), as its timer
    /// would have, so that it gets no answer (spec §6.1) even when no timer
    /// has run since. Returns whether it did.
    pub(crate) fn expire_if_due(&mut self, id: u64, clock: impl FnOnce() -> Instant) -> bool {
        let due = self.incoming.deadline(id).is_some_and(|d| d <= clock());
        if due {
            self.incoming.remove(id);
        }
        due
    }

    /// Gives up on our call `id`: the peer is sent `Cancel` and no
    /// `Response` event will be emitted for it. Returns whether it was pending.
    pub fn cancel(&mut self, id: u64) -> bool {
        if self.outgoing.remove(id).is_none() {
            return false;
        }
        if self.state == State::Established {
            self.send_control(&Message::Cancel { id });
        }
        true
    }

    /// Sends an application ping; its answer arrives as
    /// [`Event::Pong`](crate::Event::Pong) with the round-trip time.
    ///
    /// # Errors
    /// `Disconnected` when closed; `Busy` when `max_pending_pings` await pongs.
    pub fn ping(&mut self, now: Instant) -> Result<u64, CallError> {
        self.ready_for_work(now)?;
        let seq = self.next_ping_seq;
        if self.pings.insert(seq, None, self.now).is_err() {
            return Err(CallError::Busy(format!(
                "{} pings await their pong (limit {})",
                self.pings.len(),
                self.pings.capacity()
            )));
        }
        self.next_ping_seq += 1;
        if self.state == State::Established {
            self.send_control(&Message::Ping { seq });
        } else {
            self.queued.push_back(Queued::Ping { seq });
        }
        Ok(seq)
    }

    /// Closes the connection: sends `Goodbye`, fails every pending call with
    /// `Disconnected`, and emits [`Event::Closed`](crate::Event::Closed). Drain
    /// `poll_transmit` afterwards so the goodbye reaches the peer.
    pub fn close(&mut self, reason: &str) {
        if self.state == State::Closed {
            return;
        }
        self.send_control(&Message::Goodbye { reason });
        self.fail(ConnectionError::LocallyClosed(reason.to_owned()));
    }

    /// Encodes and queues a `Call` with the time left until `deadline`.
    pub(crate) fn send_call(
        &mut self,
        id: u64,
        method: &str,
        args: &Payload,
        deadline: Option<Instant>,
    ) -> Result<(), usize> {
        let deadline_us = deadline.map(|d| {
            let left = d.saturating_duration_since(self.now).as_micros();
            // Zero means "already expired" on the wire; keep an unexpired call alive.
            u64::try_from(left).unwrap_or(u64::MAX).max(1)
        });
        let head = Message::Call {
            id,
            method,
            deadline_us,
            codec: args.codec,
            args: PayloadLen(args.bytes.len()),
        };
        self.try_send(&head, Some(&args.bytes))
    }

    /// The checks every new piece of work passes: not closed, not backed up.
    pub(crate) fn ready_for_work(&mut self, now: Instant) -> Result<(), NotReady> {
        if now > self.now {
            self.now = now;
        }
        if let Some(err) = self.closed_error() {
            return Err(NotReady::Closed(err));
        }
        let queued = self.out.queued();
        let limit = self.config.max_queued_output;
        if queued > limit {
            return Err(NotReady::Backpressure { queued, limit });
        }
        Ok(())
    }

    /// Before the handshake the negotiated limit is unknown; refuse what cannot
    /// fit even our own limit.
    fn check_fits_before_handshake(&self, len: usize) -> Result<(), CallError> {
        if len > self.config.max_frame as usize {
            return Err(CallError::TooLarge {
                len,
                limit: self.config.max_frame,
            });
        }
        Ok(())
    }
}

/// Why a connection takes no new work right now.
pub(crate) enum NotReady {
    Closed(ConnectionError),
    Backpressure { queued: usize, limit: usize },
}

impl From<NotReady> for CallError {
    fn from(why: NotReady) -> Self {
        match why {
            NotReady::Closed(err) => CallError::Disconnected(err),
            NotReady::Backpressure { queued, limit } => CallError::Backpressure { queued, limit },
        }
    }
}

impl From<NotReady> for EchoError {
    fn from(why: NotReady) -> Self {
        match why {
            NotReady::Closed(err) => EchoError::Disconnected(err),
            NotReady::Backpressure { queued, limit } => EchoError::Backpressure { queued, limit },
        }
    }
}

impl Connection {
    /// Refuses the connection: sends `Reject{code, reason}` and closes with
    /// [`ConnectionError::Rejected`]. For a server past its connection limit or
    /// shutting down; drain `poll_transmit` so the peer learns why.
    pub fn reject(&mut self, code: crate::message::RejectCode, reason: &str) {
        if self.state == State::Closed {
            return;
        }
        self.send_control(&Message::Reject { code, reason });
        self.fail(ConnectionError::Rejected {
            code,
            reason: format!("rejected locally: {reason}"),
        });
    }

    /// Refuses the peer as far as the handshake has got: [`reject`](Self::reject)
    /// while in it (the peer's connect reports the reason), a
    /// [`close`](Self::close) with the reason once it is over (a server
    /// without a secret decides admission only then).
    pub fn refuse(&mut self, code: crate::message::RejectCode, reason: &str) {
        match self.state {
            State::Established => self.close(reason),
            _ => self.reject(code, reason),
        }
    }

    /// Closes gracefully: every incoming call still pending is answered
    /// `Error{Shutdown, reason}` (so no caller is left waiting), then `Goodbye`
    /// is sent and the connection closes as with [`close`](Self::close).
    pub fn shutdown(&mut self, reason: &str) {
        if self.state == State::Closed {
            return;
        }
        let pending: Vec<u64> = self.incoming.ids().collect();
        for id in pending {
            self.incoming.remove(id);
            let err = RemoteError::new(crate::message::ErrorKind::Shutdown, reason);
            self.send_error(id, &err);
        }
        self.close(reason);
    }

    /// Whether the peer's call `id` still awaits our reply (not answered,
    /// cancelled or expired); a runtime checks it before starting a handler.
    pub fn is_incoming(&self, id: u64) -> bool {
        self.incoming.contains(id)
    }

    /// Ids of the peer's calls still awaiting our reply, ascending.
    pub fn incoming_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.incoming.ids()
    }
}
