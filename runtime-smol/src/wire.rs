//! The output of one relay connection between the core's relay and its
//! socket. A [`rigwire_core::Link`] keeps its own; the relay's connections
//! are plain core `Connection`s, so this keeps theirs the same way, in the
//! same [`Outbox`]: bytes count as queued until the socket took them, and the
//! relay stops reading from a connection whose output is over its limit.

use std::collections::VecDeque;

use bytes::Bytes;
use rigwire_core::link::Outbox;
use rigwire_core::Connection;

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
    /// Takes what the connection queued (dropped if writing has failed).
    pub(crate) fn fill(&mut self, conn: &mut Connection) {
        self.out.fill(conn);
        self.closed = conn.is_closed();
        if self.failed.is_some() {
            self.out.clear();
        }
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
        conn.wants_input() && self.out.bytes() <= conn.config().max_queued_output
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
