//! The byte side of one connection, the same for every runtime: TLS and
//! websocket framing around the stream when there are, and the mapping
//! between the link's output (whole rigwire frames) and the bytes a socket
//! took.
//!
//! The link keeps its output until it is reported written, so its
//! backpressure sees what really has not left. On plain streams the bytes
//! written are the link's own bytes. Under websocket or TLS each frame is
//! encoded first (into one binary message, then TLS records; at most
//! [`ENCODE_AHEAD`] bytes ahead of the socket), and a frame counts as
//! written once all its encoded bytes have left.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::time::Instant;

use bytes::Bytes;
use rigwire_core::framing::FrameRoom;
use rigwire_core::relay::PeerOutput;
use rigwire_core::{Link, TlsProblem};

use crate::tls::{looks_like_tls, Tls};
use crate::{Violation, WsCodec};

/// Most encoded websocket bytes held ahead of the socket.
pub const ENCODE_AHEAD: usize = 256 * 1024;

/// Most plaintext encrypted at once: a larger message is encrypted as the
/// socket takes the pieces before it.
const TLS_PIECE: usize = 64 * 1024;

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
    /// TLS failed, or the peer spoke TLS where we did not (or the reverse).
    fn tls_failed(&mut self, problem: TlsProblem, now: Instant);
}

/// Output kept until it is reported written: a [`Link`]'s, or one relay
/// connection's.
pub trait Outbox {
    /// The bytes to write, in order (whole frames on message transports).
    fn output(&mut self) -> &VecDeque<Bytes>;
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
    fn tls_failed(&mut self, problem: TlsProblem, now: Instant) {
        self.handle_tls_failure(problem, now);
    }
}

impl Outbox for Link {
    fn output(&mut self) -> &VecDeque<Bytes> {
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

impl Outbox for PeerOutput {
    fn output(&mut self) -> &VecDeque<Bytes> {
        PeerOutput::output(self)
    }
    fn handle_written(&mut self, n: usize) {
        PeerOutput::handle_written(self, n);
    }
    fn handle_write_failed(&mut self, reason: &str) {
        PeerOutput::handle_write_failed(self, reason);
    }
    fn is_closed(&self) -> bool {
        PeerOutput::is_closed(self)
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
    /// Boxed: a TLS session is large, and most wires have none.
    pub(crate) tls: Option<Box<Tls>>,
    /// Plaintext that arrived with the end of the opening, for [`start`](Wire::start).
    pending: Vec<u8>,
    /// On a plain stream, what it means if the peer's first bytes are TLS.
    tls_mismatch: Option<TlsProblem>,
    encoded: VecDeque<Encoded>,
    encoded_bytes: usize,
    /// Frames at the front of the link's output already encoded.
    frames_encoded: usize,
    /// The next frame's message (websocket-encoded, or the frame itself)
    /// while TLS encrypts it piece by piece: what is left of it, and the
    /// frame's length (credited once the last piece is written).
    partial: Option<(Bytes, usize)>,
    /// The websocket Close frame is queued (after the link's last frames).
    close_queued: bool,
}

impl Wire {
    /// A plain byte stream, or a websocket when `ws` is given (no TLS; an
    /// [`Opening`](crate::Opening) makes the wire of any URL).
    pub fn new(ws: Option<WsCodec>) -> Wire {
        Self::opened(ws, None, Vec::new(), None)
    }

    pub(crate) fn opened(
        ws: Option<WsCodec>,
        tls: Option<Box<Tls>>,
        pending: Vec<u8>,
        tls_mismatch: Option<TlsProblem>,
    ) -> Wire {
        Wire {
            ws,
            tls,
            pending,
            tls_mismatch,
            encoded: VecDeque::new(),
            encoded_bytes: 0,
            frames_encoded: 0,
            partial: None,
            close_queued: false,
        }
    }

    /// Whether frames travel as websocket messages.
    pub fn is_ws(&self) -> bool {
        self.ws.is_some()
    }

    /// Whether the stream runs inside TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether frames are encoded before they are written (websocket or
    /// TLS), rather than written as the link's own bytes.
    fn is_layered(&self) -> bool {
        self.ws.is_some() || self.tls.is_some()
    }

    /// Room in the link's frame to read straight into
    /// ([`Link::lend_room`]), unless the socket's bytes must be decrypted first.
    pub fn lend_room(&self, link: &mut Link, max: usize) -> Option<FrameRoom> {
        if self.tls.is_some() {
            return None;
        }
        link.lend_room(max)
    }

    /// Delivers what arrived with the end of the opening (and frames the
    /// websocket upgrade buffered): call once, when the connection starts.
    pub fn start(&mut self, sink: &mut impl Sink, now: Instant) {
        let pending = std::mem::take(&mut self.pending);
        if self.ws.is_some() || !pending.is_empty() {
            self.deliver(sink, &pending, now);
        }
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
        if !self.is_layered() {
            return Ok(fill(&mut output.iter().map(|c| &c[..])));
        }
        while self.encoded_bytes < ENCODE_AHEAD {
            let (mut message, credit) = match self.partial.take() {
                Some(partial) => partial,
                None => {
                    let Some(frame) = output.get(self.frames_encoded) else {
                        break;
                    };
                    let message = match &mut self.ws {
                        Some(codec) => {
                            codec.encode(frame.clone())?;
                            Bytes::from(codec.take_output())
                        }
                        None => frame.clone(),
                    };
                    (message, frame.len())
                }
            };
            // TLS encrypts a large message a piece at a time, so that what
            // waits for the socket stays small (and its buffers warm).
            let bytes = match &mut self.tls {
                Some(tls) => {
                    let piece = message.split_to(message.len().min(TLS_PIECE));
                    Bytes::from(tls.encrypt(&piece))
                }
                None => std::mem::take(&mut message),
            };
            let done = message.is_empty();
            if done {
                self.frames_encoded += 1;
            } else {
                self.partial = Some((message, credit));
            }
            self.encoded_bytes += bytes.len();
            self.encoded.push_back(Encoded {
                bytes,
                credit: if done { credit } else { 0 },
                frames: usize::from(done),
            });
        }
        Ok(fill(&mut self.encoded.iter().map(|e| &e.bytes[..])))
    }

    /// `n` bytes of the last [`slices`](Self::slices) were written. Returns
    /// how many of the link's bytes that completes: pass it to the link's
    /// `handle_written`.
    pub fn written(&mut self, mut n: usize) -> usize {
        if !self.is_layered() {
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
    /// stream. Frames that arrive with a websocket close are delivered
    /// before it.
    pub fn feed(
        &mut self,
        sink: &mut impl Sink,
        read: io::Result<usize>,
        buf: &[u8],
        now: Instant,
    ) {
        let input = match read {
            Ok(0) => return sink.closed("the peer closed the connection", now),
            Ok(n) => &buf[..n],
            Err(e) => return sink.closed(&format!("read failed: {e}"), now),
        };
        // Only the first bytes of a plain stream are checked.
        if self.tls_mismatch.is_some() {
            if let Some(problem) = self.tls_mismatch.take().filter(|_| looks_like_tls(input)) {
                return sink.tls_failed(problem, now);
            }
        }
        let Wire { tls, ws, .. } = self;
        let Some(tls) = tls else {
            return self.deliver(sink, input, now);
        };
        // Plaintext goes from rustls's buffer straight on: to the link, or
        // into the websocket decoder.
        let decrypted = tls.decrypt(input, |plain| match ws {
            Some(codec) => codec.push(plain),
            None => sink.bytes(plain, now),
        });
        let (records, peer_closed) = (tls.take_output(), tls.peer_closed());
        self.push(Bytes::from(records)); // alerts, key updates
        if let Err(problem) = decrypted {
            return sink.tls_failed(problem, now);
        }
        if self.ws.is_some() {
            self.deliver(sink, &[], now);
        }
        if peer_closed {
            sink.closed("the peer ended the TLS session", now);
        }
    }

    /// Hands plaintext of the rigwire stream, or of the websocket, to `sink`.
    fn deliver(&mut self, sink: &mut impl Sink, bytes: &[u8], now: Instant) {
        let Some(codec) = &mut self.ws else {
            if !bytes.is_empty() {
                sink.bytes(bytes, now);
            }
            return;
        };
        codec.push(bytes);
        let outcome = loop {
            // Larger messages only once the peer has authenticated: in the
            // message before, or since (a server admits it after reading
            // its proof, by a command).
            if codec.is_pre_auth() && sink.authenticated() {
                codec.open_up();
            }
            match codec.next_frame() {
                Ok(Some(Some(frame))) => sink.frame(frame, now),
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
        self.push_plain(&control);
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
                _ if !self.is_layered() && output.is_empty() => return Flushed::Done,
                // One chunk on a plain stream, the common case: no slice table.
                1 if !self.is_layered() => write(&[IoSlice::new(&output[0])]),
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

    /// Once the connection has ended, queues the websocket Close frame and
    /// TLS's close_notify, once.
    fn queue_close(&mut self) {
        if self.close_queued || !self.is_layered() {
            return;
        }
        self.close_queued = true;
        if let Some(codec) = &mut self.ws {
            codec.close();
            let bytes = codec.take_output();
            self.push_plain(&bytes);
        }
        if let Some(tls) = &mut self.tls {
            let notify = tls.close();
            self.push(Bytes::from(notify));
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
        self.partial = None;
    }

    /// Queues bytes of the wire's own (websocket control frames), encrypted
    /// when under TLS.
    fn push_plain(&mut self, plain: &[u8]) {
        match &mut self.tls {
            Some(tls) => {
                let records = tls.encrypt(plain);
                self.push(Bytes::from(records));
            }
            None => self.push(Bytes::copy_from_slice(plain)),
        }
    }

    /// Queues bytes ready for the socket that complete none of the link's frames.
    fn push(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.encoded_bytes += bytes.len();
        self.encoded.push_back(Encoded {
            bytes,
            credit: 0,
            frames: 0,
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
