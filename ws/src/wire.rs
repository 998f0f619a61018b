//! The byte side of one connection, the same for every runtime: websocket
//! framing around the stream when there is one, and the mapping between the
//! link's output (whole rigwire frames) and the bytes a socket took.
//!
//! The link keeps its output until it is reported written, so its
//! backpressure sees what really has not left. On plain streams the bytes
//! written are the link's own bytes. On websocket each frame is encoded into
//! one binary message first (at most [`ENCODE_AHEAD`] bytes ahead of the
//! socket), and a frame counts as written once its whole message has left.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::time::Instant;

use bytes::Bytes;
use rigwire_core::framing::FrameRoom;
use rigwire_core::Link;

use crate::{Violation, WsCodec};

/// Most encoded websocket bytes held ahead of the socket.
pub const ENCODE_AHEAD: usize = 256 * 1024;

/// Most slices handed to one vectored write.
pub const MAX_SLICES: usize = 64;

/// Where decoded input goes: a [`Link`], or one connection of a relay.
pub trait Sink {
    /// Whether the peer has authenticated (then larger websocket messages
    /// are accepted).
    fn authenticated(&mut self) -> bool;
    /// Bytes of the rigwire stream (tcp, unix).
    fn bytes(&mut self, bytes: &[u8], now: Instant);
    /// One websocket message: one rigwire frame.
    fn frame(&mut self, frame: Bytes, now: Instant);
    /// The peer sent a websocket message rigwire does not accept: a
    /// protocol violation, which the peer is told of before the end.
    fn violation(&mut self, violation: Violation, now: Instant);
    /// The transport ended, for this reason.
    fn closed(&mut self, reason: &str, now: Instant);
}

/// Output kept until it is reported written: a [`Link`]'s, or one relay
/// connection's.
pub trait Outbox {
    /// The bytes to write, in order (whole frames on message transports).
    fn output(&self) -> &VecDeque<Bytes>;
    /// `n` bytes from the front left.
    fn handle_written(&mut self, n: usize);
    /// Writing failed for this reason; nothing more will be written.
    fn handle_write_failed(&mut self, reason: &str);
    /// The connection has ended: once its output is out, a websocket says
    /// so with a Close frame.
    fn is_closed(&self) -> bool;
}

impl Sink for Link {
    fn authenticated(&mut self) -> bool {
        self.conn().is_established()
    }
    fn bytes(&mut self, bytes: &[u8], now: Instant) {
        self.handle_input(bytes, now);
    }
    fn frame(&mut self, frame: Bytes, now: Instant) {
        self.handle_frame(frame, now);
    }
    fn violation(&mut self, violation: Violation, now: Instant) {
        match violation {
            Violation::TooLarge(len) => self.handle_oversized_frame(len, now),
            other => self.handle_protocol_violation(&other.to_string(), now),
        }
    }
    fn closed(&mut self, reason: &str, now: Instant) {
        self.handle_transport_closed(reason, now);
    }
}

impl Outbox for Link {
    fn output(&self) -> &VecDeque<Bytes> {
        Link::output(self)
    }
    fn handle_written(&mut self, n: usize) {
        Link::handle_written(self, n);
    }
    fn handle_write_failed(&mut self, reason: &str) {
        Link::handle_write_failed(self, reason);
    }
    fn is_closed(&self) -> bool {
        Link::is_closed(self)
    }
}

/// How a [`Wire::flush`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Everything was written.
    Done,
    /// The socket takes no more now: wait until it is writable (or, on a
    /// blocking socket, the write timed out).
    Blocked,
    /// Writing failed; the outbox was told.
    Failed,
}

/// One encoded websocket message (or control answer) on its way out.
#[derive(Debug)]
struct Encoded {
    bytes: Bytes,
    /// Link bytes (whole frames) this message completes once written.
    credit: usize,
    /// Link frames it completes.
    frames: usize,
}

/// Framing and output mapping of one socket (the crate docs say how a runtime drives it).
#[derive(Debug)]
pub struct Wire {
    ws: Option<WsCodec>,
    encoded: VecDeque<Encoded>,
    encoded_bytes: usize,
    /// Frames at the front of the link's output already encoded.
    frames_encoded: usize,
    /// The websocket Close frame is queued (after the link's last frames).
    close_queued: bool,
}

impl Wire {
    /// A plain byte stream, or a websocket when `ws` is given.
    pub fn new(ws: Option<WsCodec>) -> Wire {
        Wire {
            ws,
            encoded: VecDeque::new(),
            encoded_bytes: 0,
            frames_encoded: 0,
            close_queued: false,
        }
    }

    /// Whether frames travel as websocket messages.
    pub fn is_ws(&self) -> bool {
        self.ws.is_some()
    }

    /// Whether anything of the wire's own (a pong, a partly written
    /// message) waits to be written, besides the link's output.
    pub fn has_own_output(&self) -> bool {
        !self.encoded.is_empty()
    }

    /// Fills `slices` with what to write next, taken from `output` (the
    /// link's) and from what the wire holds; returns how many it filled
    /// (0 when there is nothing to write). No allocation on plain streams.
    ///
    /// # Errors
    /// On websocket, a frame over the codec's limits.
    pub fn slices<'a>(
        &'a mut self,
        output: &'a VecDeque<Bytes>,
        slices: &mut [IoSlice<'a>; MAX_SLICES],
    ) -> io::Result<usize> {
        let mut fill = |chunks: &mut dyn Iterator<Item = &'a [u8]>| {
            let mut n = 0;
            for (slot, chunk) in slices.iter_mut().zip(chunks) {
                *slot = IoSlice::new(chunk);
                n += 1;
            }
            n
        };
        let Some(codec) = &mut self.ws else {
            return Ok(fill(&mut output.iter().map(|c| &c[..])));
        };
        while self.encoded_bytes < ENCODE_AHEAD {
            let Some(frame) = output.get(self.frames_encoded) else {
                break;
            };
            codec.encode(frame.clone())?;
            let bytes = Bytes::from(codec.take_output());
            self.frames_encoded += 1;
            self.encoded_bytes += bytes.len();
            self.encoded.push_back(Encoded {
                bytes,
                credit: frame.len(),
                frames: 1,
            });
        }
        Ok(fill(&mut self.encoded.iter().map(|e| &e.bytes[..])))
    }

    /// `n` bytes of the last [`slices`](Self::slices) were written. Returns
    /// how many of the link's bytes that completes: pass it to the link's
    /// `handle_written`.
    pub fn written(&mut self, mut n: usize) -> usize {
        if self.ws.is_none() {
            return n;
        }
        let mut credit = 0;
        self.encoded_bytes -= n.min(self.encoded_bytes);
        while n > 0 {
            let Some(front) = self.encoded.front_mut() else {
                break;
            };
            if n >= front.bytes.len() {
                n -= front.bytes.len();
                credit += front.credit;
                self.frames_encoded -= front.frames;
                self.encoded.pop_front();
            } else {
                let _ = front.bytes.split_to(n);
                n = 0;
            }
        }
        credit
    }

    /// Gives back a frame's room the read went straight into
    /// ([`Link::lend_room`]) with what the read brought; `read` is the
    /// read's outcome, never a timeout (give the room back with 0 bytes
    /// then). An end of stream or a failure ends the link, as in
    /// [`feed`](Self::feed).
    pub fn feed_room(
        &mut self,
        link: &mut Link,
        room: FrameRoom,
        read: io::Result<usize>,
        now: Instant,
    ) {
        let n = *read.as_ref().unwrap_or(&0);
        link.return_room(room, n, now);
        if n == 0 {
            self.feed(link, read, &[], now);
        }
    }

    /// Feeds the outcome of one read to `sink`: `Ok(0)` is the end of the
    /// stream (but, with an empty `buf` on websocket, only collects frames
    /// the upgrade had buffered). Frames that arrive with a websocket close
    /// are delivered before it.
    pub fn feed(
        &mut self,
        sink: &mut impl Sink,
        read: io::Result<usize>,
        buf: &[u8],
        now: Instant,
    ) {
        let n = match read {
            Ok(0) if !buf.is_empty() || !self.is_ws() => {
                return sink.closed("the peer closed the connection", now);
            }
            Ok(n) => n,
            Err(e) => return sink.closed(&format!("read failed: {e}"), now),
        };
        let Some(codec) = &mut self.ws else {
            return sink.bytes(&buf[..n], now);
        };
        codec.push(&buf[..n]);
        let outcome = loop {
            match codec.next_frame() {
                Ok(Some(Some(frame))) => {
                    sink.frame(frame, now);
                    // Larger messages only once the peer has authenticated.
                    if codec.is_pre_auth() && sink.authenticated() {
                        codec.open_up();
                    }
                }
                Ok(Some(None)) => break Some("the peer closed the websocket".to_owned()),
                Ok(None) => break None,
                Err(e) => match Violation::of(&e) {
                    // The link answers it (a Reject or Goodbye) and closes.
                    Some(violation) => {
                        sink.violation(violation, now);
                        break None;
                    }
                    None => break Some(format!("websocket: {e}")),
                },
            }
        };
        let control = codec.take_output(); // pongs owed
        if !control.is_empty() {
            self.push(Bytes::from(control), 0, 0);
        }
        if let Some(reason) = outcome {
            sink.closed(&reason, now);
        }
    }

    /// Writes `outbox`'s output (and the wire's own) with `write`, one
    /// vectored write at a time, until all is written, the socket blocks
    /// (`WouldBlock` or `TimedOut`) or writing fails.
    pub fn flush(
        &mut self,
        outbox: &mut impl Outbox,
        mut write: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> Flushed {
        loop {
            if outbox.output().is_empty() && self.encoded.is_empty() && outbox.is_closed() {
                self.queue_close();
            }
            let output = outbox.output();
            let result = match output.len() {
                _ if self.ws.is_none() && output.is_empty() => return Flushed::Done,
                // One chunk on a plain stream, the common case: no slice table.
                1 if self.ws.is_none() => write(&[IoSlice::new(&output[0])]),
                _ => {
                    let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                    match self.slices(output, &mut slices) {
                        Ok(0) => return Flushed::Done,
                        Ok(n) => write(&slices[..n]),
                        Err(e) => Err(e),
                    }
                }
            };
            match result {
                Ok(0) => return self.fail(outbox, "the socket took no bytes".into()),
                // Once all is out, the next round queues a Close owed, or ends.
                Ok(n) => {
                    let done = self.written(n);
                    outbox.handle_written(done);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Flushed::Blocked
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(outbox, e.to_string()),
            }
        }
    }

    /// On a websocket whose connection ended, queues the Close frame once.
    fn queue_close(&mut self) {
        let Some(codec) = self.ws.as_mut().filter(|_| !self.close_queued) else {
            return;
        };
        self.close_queued = true;
        codec.close();
        let bytes = codec.take_output();
        if !bytes.is_empty() {
            self.push(Bytes::from(bytes), 0, 0);
        }
    }

    fn fail(&mut self, outbox: &mut impl Outbox, reason: String) -> Flushed {
        self.clear();
        outbox.handle_write_failed(&reason);
        Flushed::Failed
    }

    /// Forgets everything unwritten (the socket is gone).
    pub fn clear(&mut self) {
        self.encoded.clear();
        self.encoded_bytes = 0;
        self.frames_encoded = 0;
    }

    fn push(&mut self, bytes: Bytes, credit: usize, frames: usize) {
        self.encoded_bytes += bytes.len();
        self.encoded.push_back(Encoded {
            bytes,
            credit,
            frames,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_streams_write_the_output_itself() {
        let mut wire = Wire::new(None);
        let out: VecDeque<Bytes> = [Bytes::from_static(b"abc"), Bytes::from_static(b"de")].into();
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        assert_eq!(wire.slices(&out, &mut slices).unwrap(), 2);
        assert_eq!(wire.written(4), 4);
    }

    #[test]
    fn websocket_frames_count_as_written_once_their_whole_message_left() {
        // The server's messages are unmasked: a 2-byte header each.
        let (_, server) = crate::tests::upgraded("/data").unwrap();
        let mut wire = Wire::new(Some(server));
        let out: VecDeque<Bytes> =
            [Bytes::from_static(b"hello"), Bytes::from_static(b"rig")].into();
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let n = wire.slices(&out, &mut slices).unwrap();
        let total: usize = slices[..n].iter().map(|s| s.len()).sum();
        assert!(total > 8, "two messages with their headers");
        assert_eq!(wire.written(3), 0, "part of the first message");
        let first_rest = 5 + 2 - 3; // 2-byte header + 5 bytes, 3 written
        assert_eq!(wire.written(first_rest), 5);
        let rest: usize = total - 7;
        assert_eq!(wire.written(rest), 3);
        assert!(!wire.has_own_output());
    }
}
