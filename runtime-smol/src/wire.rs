//! The output of one relay connection between the core's relay and its
//! socket. A [`rigwire_core::Link`] keeps its own; the relay's connections
//! are plain core `Connection`s, so this keeps theirs the same way, in the
//! same [`Outbox`]: bytes count as queued until the socket took them, and the
//! relay stops reading from a connection whose output is over its limit.
//! Only [`WRITE_AHEAD`] bytes leave the `Connection` before the socket takes
//! them: the rest stays queued there, where the core relay sees it when it
//! decides whether a peer has room for a notify.

use std::collections::VecDeque;

use bytes::Bytes;
use rigwire_core::link::Outbox;
use rigwire_core::Connection;

/// Output taken from a relay connection ahead of the socket.
const WRITE_AHEAD: usize = 256 * 1024;

/// Bytes taken from a relay connection and not yet written.
#[derive(Debug, Default)]
pub(crate) struct RelayOutbox {
    out: Outbox,
    /// Writing failed; the reader reports the end with this reason.
    pub(crate) failed: Option<String>,
    /// The connection has ended (a websocket then sends its Close frame).
    closed: bool,
    /// [`take_shut_write`](Self::take_shut_write) has said so.
    write_shut: bool,
}

impl RelayOutbox {
    /// Takes up to [`WRITE_AHEAD`] bytes of what the connection queued
    /// (dropped if writing has failed); whether the connection has more.
    pub(crate) fn fill(&mut self, conn: &mut Connection) -> bool {
        self.out.fill_ahead(conn, WRITE_AHEAD);
        // Ended, and all of its output taken.
        self.closed = conn.is_closed() && conn.queued_output() == 0;
        if self.failed.is_some() {
            self.out.clear();
        }
        conn.queued_output() > 0
    }

    /// True once, when the connection has ended and its output is out (or
    /// given up): shut down the socket's writing side now, as a link's
    /// `take_shut_write` says for a runtime's connection.
    pub(crate) fn take_shut_write(&mut self) -> bool {
        let now = !self.write_shut && self.closed && self.out.is_empty();
        self.write_shut |= now;
        now
    }

    /// Whether to read from this connection: not while our answers to it
    /// are backed up (the link's rule, for a relay connection).
    pub(crate) fn wants_input(&self, conn: &Connection) -> bool {
        let queued = conn.queued_output() + self.out.bytes();
        !conn.is_closed() && queued <= conn.config().max_queued_output
    }
}

impl rigwire_ws::Outbox for RelayOutbox {
    fn output(&mut self) -> &VecDeque<Bytes> {
        self.out.chunks()
    }

    fn handle_written(&mut self, n: usize) {
        self.out.consume(n);
    }

    fn handle_write_failed(&mut self, reason: &str) {
        self.failed = Some(format!("write failed: {reason}"));
        self.out.clear();
    }

    fn is_closed(&self) -> bool {
        self.closed
    }
}
