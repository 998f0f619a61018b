//! The byte side of one connection, shared by the connection driver and the
//! relay: websocket framing around the stream when there is one, and the
//! output backlog between a core connection and a non-blocking socket.
//!
//! Output is taken out of the core only up to [`BACKLOG_LIMIT`]: what stays
//! in the core is what its backpressure accounting (and `wants_input`) sees.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::time::Instant;

use bytes::Bytes;
use rigwire_core::Connection;
use rigwire_ws::WsCodec;

use crate::transport::Socket;

/// Most bytes held outside the core's output queue at once.
const BACKLOG_LIMIT: usize = 256 * 1024;

/// Where decoded input goes: one connection, or one connection of the relay.
pub(crate) trait Input {
    /// Bytes of the rigwire stream (tcp, unix).
    fn bytes(&mut self, bytes: &[u8], now: Instant);
    /// One websocket message: one rigwire frame.
    fn frame(&mut self, frame: Bytes, now: Instant);
    /// The transport ended, for this reason.
    fn closed(&mut self, reason: &str, now: Instant);
}

impl Input for Connection {
    fn bytes(&mut self, bytes: &[u8], now: Instant) {
        self.handle_input(bytes, now);
    }
    fn frame(&mut self, frame: Bytes, now: Instant) {
        self.handle_frame(frame, now);
    }
    fn closed(&mut self, reason: &str, now: Instant) {
        self.handle_transport_closed(reason, now);
    }
}

/// Framing and output backlog of one socket.
pub(crate) struct Wire {
    /// Websocket framing around the byte stream, on `ws://` connections.
    ws: Option<WsCodec>,
    /// Bytes taken from the core that the kernel has not taken yet, in order.
    backlog: VecDeque<Bytes>,
    backlog_bytes: usize,
    /// The kernel took nothing last time: wait for the socket to be writable.
    pub(crate) write_blocked: bool,
    /// Writing failed; the reader reports the end (the peer's last frames may
    /// still be unread).
    write_failed: Option<String>,
}

impl Wire {
    pub(crate) fn new(ws: Option<WsCodec>) -> Wire {
        Wire {
            ws,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            write_blocked: false,
            write_failed: None,
        }
    }

    /// Whether this is a websocket (whose upgrade may have buffered frames).
    pub(crate) fn is_ws(&self) -> bool {
        self.ws.is_some()
    }

    /// Nothing is left to write, in the backlog or in the core.
    pub(crate) fn drained(&self, conn: &Connection) -> bool {
        self.backlog.is_empty() && conn.queued_output() == 0
    }

    /// Moves the core's output into the backlog and writes what the kernel
    /// takes now. Returns `true` if the socket just stopped taking bytes
    /// (someone must wait for it to be writable, clear `write_blocked` and
    /// flush again).
    pub(crate) fn flush(&mut self, conn: &mut Connection, socket: &Socket, label: &str) -> bool {
        let mut became_blocked = false;
        loop {
            while self.backlog_bytes < BACKLOG_LIMIT {
                let Some(chunk) = conn.poll_transmit() else {
                    break;
                };
                let chunk = match &mut self.ws {
                    None => chunk,
                    Some(codec) => {
                        // One core frame, one binary message.
                        if let Err(e) = codec.encode(chunk) {
                            self.write_failed = Some(format!("websocket: {e}"));
                            break;
                        }
                        Bytes::from(codec.take_output())
                    }
                };
                self.backlog_bytes += chunk.len();
                self.backlog.push_back(chunk);
            }
            if let Some(codec) = &mut self.ws {
                let control = codec.take_output(); // pongs owed after reads
                if !control.is_empty() {
                    self.backlog_bytes += control.len();
                    self.backlog.push_back(Bytes::from(control));
                }
            }
            if self.backlog.is_empty() || self.write_blocked || self.write_failed.is_some() {
                break;
            }
            let slices: Vec<IoSlice<'_>> = self
                .backlog
                .iter()
                .take(64)
                .map(|b| IoSlice::new(b))
                .collect();
            match socket.try_write_vectored(&slices) {
                Ok(written) => self.consume(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.write_blocked = true;
                    became_blocked = true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(peer = %label, "write failed: {e}");
                    self.write_failed = Some(format!("write failed: {e}"));
                }
            }
        }
        if self.write_failed.is_some() {
            // Nobody will read these.
            self.backlog.clear();
            self.backlog_bytes = 0;
            while conn.poll_transmit().is_some() {}
        }
        became_blocked
    }

    fn consume(&mut self, mut written: usize) {
        self.backlog_bytes -= written;
        while written > 0 {
            let front = self
                .backlog
                .front_mut()
                .expect("wrote from a non-empty backlog");
            if written >= front.len() {
                written -= front.len();
                self.backlog.pop_front();
            } else {
                let _ = front.split_to(written);
                written = 0;
            }
        }
    }

    /// Feeds one read (or its failure) to `input`. On websocket, `Ok(0)` with
    /// an empty `buf` only collects frames the codec already holds.
    pub(crate) fn feed(
        &mut self,
        input: &mut impl Input,
        read: io::Result<usize>,
        buf: &[u8],
        now: Instant,
    ) {
        let eof = |wire: &mut Wire, input: &mut dyn FnMut(&str)| {
            let why = wire
                .write_failed
                .take()
                .unwrap_or_else(|| "the peer closed the connection".into());
            input(&why);
        };
        match (read, &mut self.ws) {
            (Ok(0), None) => eof(self, &mut |why| input.closed(why, now)),
            (Ok(n), None) => input.bytes(&buf[..n], now),
            (Ok(n), Some(codec)) => match codec.decode(&buf[..n]) {
                Ok(decoded) => {
                    for frame in decoded.frames {
                        input.frame(frame, now);
                    }
                    if decoded.closed || (n == 0 && !buf.is_empty()) {
                        eof(self, &mut |why| input.closed(why, now));
                    }
                }
                Err(e) => input.closed(&format!("websocket: {e}"), now),
            },
            (Err(e), _) => input.closed(&format!("read failed: {e}"), now),
        }
    }
}
