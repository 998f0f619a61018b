//! The output of one relay connection between the core's [`Relay`] and its
//! socket, as a [`Link`](crate::Link) keeps its own, in the same
//! [`Outbox`]: bytes count as queued until the socket took them, and the
//! relay stops reading from a connection whose output is over its limit.
//!
//! Only [`WRITE_AHEAD`] bytes leave the [`Connection`] before the socket
//! takes them: the rest stays queued there, where the relay sees it when it
//! decides whether a peer has room for a notify ([`notifies`](super::notifies)).
//!
//! [`Relay`]: super::Relay

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use crate::connection::Connection;
use crate::link::{after, Outbox, CLOSE_LINGER};

/// Output taken from a relay connection ahead of the socket.
pub const WRITE_AHEAD: usize = 256 * 1024;

/// Bytes taken from one relay connection and not yet written.
#[derive(Debug, Default)]
pub struct PeerOutput {
    out: Outbox,
    /// Writing failed; the reader reports the end with this reason.
    failed: Option<String>,
    /// The connection has ended and all of its output was taken.
    closed: bool,
    /// [`take_shut_write`](Self::take_shut_write) has said so.
    write_shut: bool,
    /// The peer ended its side of the transport, or reading failed.
    read_ended: bool,
    /// When a closed connection is given up on, whatever its peer does.
    close_by: Option<Instant>,
}

impl PeerOutput {
    /// Takes up to [`WRITE_AHEAD`] bytes of what the connection queued
    /// (dropped if writing has failed); whether the connection holds more.
    pub fn fill(&mut self, conn: &mut Connection) -> bool {
        self.out.fill_ahead(conn, WRITE_AHEAD);
        self.closed = conn.is_closed() && conn.queued_output() == 0;
        if self.failed.is_some() {
            self.out.clear();
        }
        conn.queued_output() > 0
    }

    /// True once, when the connection has ended and its output is out (or
    /// given up): shut down the socket's writing side now, as a link's
    /// `take_shut_write` says for a runtime's connection.
    pub fn take_shut_write(&mut self) -> bool {
        let now = !self.write_shut && self.closed && self.out.is_empty();
        self.write_shut |= now;
        now
    }

    /// Whether to read from this connection: not while our answers to it
    /// are backed up, here and in the connection (the link's rule); once it
    /// has closed, until the peer ends its side (what arrives is
    /// discarded: closing a socket with unread input resets it, and a
    /// reset can destroy our last frames before the peer reads them).
    pub fn wants_input(&self, conn: &Connection) -> bool {
        let queued = conn.queued_output() + self.out.bytes();
        !self.read_ended && (conn.is_closed() || queued <= conn.config().max_queued_output)
    }

    /// The peer ended its side of the transport (a read of nothing), or
    /// reading failed: nothing more is read.
    pub fn handle_read_end(&mut self) {
        self.read_ended = true;
    }

    /// Closed, and the socket is done with: the peer ended its side, or
    /// [`CLOSE_LINGER`] passed since the close was first seen here, so that
    /// a peer that never reads does not keep a closed connection for ever
    /// (a link's `is_finished`). Close the socket.
    pub fn is_finished(&mut self, conn: &Connection, now: Instant) -> bool {
        if !conn.is_closed() {
            return false;
        }
        let by = *self
            .close_by
            .get_or_insert_with(|| after(now, CLOSE_LINGER));
        self.read_ended || now >= by
    }

    /// When to look again at a closed connection: the end of its close
    /// linger ([`is_finished`](Self::is_finished)).
    pub fn wake_at(&self) -> Option<Instant> {
        self.close_by
    }

    /// Why writing failed, once it has.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The bytes to write, in order.
    pub fn output(&self) -> &VecDeque<Bytes> {
        self.out.chunks()
    }

    /// `n` bytes from the front were written.
    pub fn handle_written(&mut self, n: usize) {
        self.out.consume(n);
    }

    /// Writing failed for `reason`: what is held is dropped, and nothing
    /// more will be written.
    pub fn handle_write_failed(&mut self, reason: &str) {
        self.failed = Some(format!("write failed: {reason}"));
        self.out.clear();
    }

    /// Whether the connection has ended and all of its output was taken
    /// (a websocket then sends its Close frame once it is out).
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}
