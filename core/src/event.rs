//! What a connection tells the application, drained with
//! [`Connection::poll_event`](crate::Connection::poll_event).

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::Payload;
use crate::dispatch::HandlerId;
use crate::error::{CallError, ConnectionError, EchoError, RemoteError};

/// Something the application must act on or may want to know.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The handshake completed; calls flow both ways from now on.
    Connected {
        /// The name the peer sent in its `Hello`.
        peer_name: String,
        /// The negotiated protocol version.
        version: u16,
    },
    /// A server that gates admission
    /// ([`Connection::gate_admission`](crate::Connection::gate_admission)):
    /// the peer has proven the secret; answer with
    /// [`Connection::admit`](crate::Connection::admit) or
    /// [`Connection::reject`](crate::Connection::reject).
    AdmissionWanted,
    /// The peer called an exposed method. Answer it with
    /// [`Connection::reply`](crate::Connection::reply), exactly once.
    Call(IncomingCall),
    /// The peer sent a notification to an exposed method. Nothing to answer.
    Notify(IncomingNotify),
    /// One of our calls finished: answered, failed remotely, expired or disconnected.
    Response {
        /// The id [`Connection::call`](crate::Connection::call) returned.
        id: u64,
        /// The result, or why there is none.
        result: Result<Payload, CallError>,
    },
    /// An incoming call no longer needs an answer; its handler may stop.
    /// A later `reply` to it returns `NotPending` and sends nothing.
    Cancelled {
        /// The incoming call's id.
        id: u64,
        /// Why.
        reason: CancelReason,
    },
    /// The peer sent a confirmed message; the core has already echoed it.
    Message {
        /// The peer's sequence number.
        seq: u64,
        /// The message.
        payload: Bytes,
    },
    /// The peer echoed our confirmed send exactly.
    Confirmed {
        /// The sequence number `confirmed_send` returned.
        seq: u64,
    },
    /// A confirmed send failed; the connection is unaffected unless the error says so.
    ConfirmFailed {
        /// The sequence number `confirmed_send` returned.
        seq: u64,
        /// Why.
        error: EchoError,
    },
    /// The answer to an application ping.
    Pong {
        /// The sequence number `ping` returned.
        seq: u64,
        /// Time from sending the ping to receiving this pong.
        rtt: Duration,
    },
    /// The peer reported an error not tied to a call (a notify to an unknown name).
    PeerError(RemoteError),
    /// The connection is closed; the last event. Drain `poll_transmit`, then
    /// close the transport.
    Closed(ConnectionError),
}

/// An incoming call, as delivered to the application.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingCall {
    /// The caller's id; pass it to `reply`.
    pub id: u64,
    /// The name called (the alias, if one was used).
    pub method: String,
    /// The handler the name reaches.
    pub handler: HandlerId,
    /// The arguments.
    pub args: Payload,
    /// When the caller stops waiting, if it set a deadline. Forward the
    /// remaining time when calling onward.
    pub deadline: Option<Instant>,
}

/// An incoming notification.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingNotify {
    /// The name notified.
    pub method: String,
    /// The handler the name reaches.
    pub handler: HandlerId,
    /// The arguments.
    pub args: Payload,
}

/// Why an incoming call was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// The caller sent `Cancel`.
    PeerCancelled,
    /// The caller's deadline passed.
    DeadlineExceeded,
    /// The connection closed.
    Disconnected,
}

/// Counters of things that are not errors but worth seeing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames received.
    pub frames_in: u64,
    /// Frames queued for sending.
    pub frames_out: u64,
    /// Replies or errors for calls not in flight (late answers after a deadline).
    pub unknown_replies: u64,
    /// Cancels for calls not in flight.
    pub unknown_cancels: u64,
    /// Echoes for confirmed sends not pending.
    pub unknown_echoes: u64,
    /// Pongs for pings not pending.
    pub unknown_pongs: u64,
    /// Incoming calls answered `Busy` because the table was full.
    pub busy_rejections: u64,
    /// Incoming calls and notifies to names not exposed.
    pub no_such_method: u64,
    /// Notifies queued before the handshake that exceeded the negotiated frame limit.
    pub dropped_notifies: u64,
}
