//! Frames: how messages are cut out of a byte stream and how they are queued
//! for the transport.
//!
//! On byte streams (TCP, Unix sockets) a frame is a 4-byte big-endian length
//! followed by that many bytes of message. On message transports (websocket,
//! UDP) one transport message is one frame, with no length.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::{write_head, MessageHead};

/// The largest frame either side accepts before the handshake has completed.
pub const PRE_AUTH_MAX_FRAME: u32 = 4096;

/// The default largest frame after the handshake: 16 MiB.
pub const DEFAULT_MAX_FRAME: u32 = 16 * 1024 * 1024;

/// Size of the length prefix on byte streams.
pub const LENGTH_PREFIX: usize = 4;

/// Payloads above this size leave the encoder as their own [`Bytes`] instead of
/// being copied next to their head: below it a copy is cheaper than a separate write.
const INLINE_PAYLOAD: usize = 2048;

/// The longest run of whole frames taken from one read into one shared
/// block. Bounded: a payload the application keeps holds its block, so a
/// kept one-byte argument holds at most this much.
pub(crate) const SHARED_RUN: usize = 1008;

/// How frames are delimited on the transport a connection runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A byte stream: each frame is prefixed with its length (4 bytes, big-endian).
    Stream,
    /// A message transport: one websocket message or datagram per frame.
    Message,
}

pub(crate) use decoder::FrameDecoder;
pub use decoder::FrameRoom;

// Public only to the harnesses (`testing`), which drive it directly.
#[cfg_attr(not(feature = "testing"), allow(unreachable_pub))]
pub(crate) mod decoder {
    use bytes::Bytes;

    use super::{LENGTH_PREFIX, SHARED_RUN};
    use crate::error::FrameError;

    /// Cuts frames out of a byte stream, however the stream is split into chunks.
    ///
    /// Memory is bounded by the limit passed to [`FrameDecoder::decode`]: a length
    /// over the limit is rejected as soon as its 4 header bytes are in, before any
    /// byte of its body is buffered, and the decoder never holds more than one
    /// partial frame.
    ///
    /// After authentication a frame's body is allocated whole when its header
    /// arrives (zeroed, which for a large frame the allocator gets from fresh
    /// pages at no cost), so that a runtime can read the rest of a large
    /// frame straight into it ([`room`](Self::room)): the frame is then never
    /// copied after the read.
    #[derive(Debug, Default)]
    pub struct FrameDecoder {
        header: [u8; LENGTH_PREFIX],
        header_len: usize,
        /// Body length of the frame being assembled, once its header is complete.
        body_len: Option<usize>,
        /// The body: its whole length once authenticated, else what arrived.
        body: Vec<u8>,
        /// Bytes of the body received so far.
        filled: usize,
        /// The body is out, lent to be read into ([`lend`](Self::lend)).
        lent: bool,
    }

    /// The rest of a frame's body, lent out to be read into directly; give
    /// it back with [`Link::return_room`](crate::Link::return_room).
    #[derive(Debug)]
    pub struct FrameRoom {
        body: Vec<u8>,
        filled: usize,
    }

    impl FrameRoom {
        /// Where the next bytes of the frame go.
        pub fn buf(&mut self) -> &mut [u8] {
            &mut self.body[self.filled..]
        }
    }

    impl FrameDecoder {
        /// A decoder at the start of a stream.
        pub fn new() -> Self {
            Self::default()
        }

        /// Consumes bytes from `input` up to the end of the next frame. Returns how
        /// many bytes were consumed and the frame, if one completed; call again with
        /// the rest of `input` until it is empty.
        ///
        /// # Errors
        /// [`FrameError::TooLarge`] when a header announces more than `limit` bytes;
        /// the decoder is then unusable (the stream cannot be resynchronised).
        pub fn decode(
            &mut self,
            input: &[u8],
            limit: u32,
            pre_auth: bool,
        ) -> Result<(usize, Option<Bytes>), FrameError> {
            let mut used = 0;
            let len = match self.body_len {
                Some(len) => len,
                None => {
                    let take = (LENGTH_PREFIX - self.header_len).min(input.len());
                    self.header[self.header_len..self.header_len + take]
                        .copy_from_slice(&input[..take]);
                    self.header_len += take;
                    used += take;
                    if self.header_len < LENGTH_PREFIX {
                        return Ok((used, None));
                    }
                    let len = u32::from_be_bytes(self.header);
                    if len > limit {
                        return Err(FrameError::TooLarge {
                            len: u64::from(len),
                            limit,
                            pre_auth,
                        });
                    }
                    let len = len as usize;
                    // Before authentication, room for what has arrived, not
                    // for what was announced: a stranger that announces
                    // 16 MiB and sends 4 bytes costs 4. After it, the whole
                    // frame at once (within the configured frame limit).
                    self.body = if pre_auth {
                        Vec::with_capacity(len.min(input.len() - used))
                    } else {
                        vec![0; len]
                    };
                    self.filled = 0;
                    self.body_len = Some(len);
                    len
                }
            };
            let take = (len - self.filled).min(input.len() - used);
            let bytes = &input[used..used + take];
            if self.body.len() == len {
                self.body[self.filled..self.filled + take].copy_from_slice(bytes);
            } else {
                self.body.extend_from_slice(bytes);
            }
            self.filled += take;
            used += take;
            Ok((used, self.complete()))
        }

        /// The length of the run of whole frames at the start of `input`
        /// (each within `limit`), when the decoder is between frames; 0
        /// otherwise, or past [`SHARED_RUN`] bytes. Such a run is taken
        /// in one block, its frames shared slices of it
        /// ([`Connection::handle_input`](crate::Connection::handle_input)):
        /// one allocation and one copy per read instead of per frame.
        pub fn whole_frames(&self, input: &[u8], limit: u32) -> usize {
            if self.header_len != 0 || self.body_len.is_some() {
                return 0;
            }
            let mut end = 0;
            while let Some(header) = input.get(end..end + LENGTH_PREFIX) {
                let len = u32::from_be_bytes(header.try_into().expect("4 bytes"));
                if len > limit {
                    break; // the decoder reports it
                }
                let next = end + LENGTH_PREFIX + len as usize;
                if next > input.len() || next > SHARED_RUN {
                    break;
                }
                end = next;
            }
            end
        }

        /// The frame, once its body is complete; the decoder is then ready
        /// for the next header.
        fn complete(&mut self) -> Option<Bytes> {
            let len = self.body_len?;
            if self.filled < len {
                return None;
            }
            self.header_len = 0;
            self.body_len = None;
            self.filled = 0;
            Some(Bytes::from(std::mem::take(&mut self.body)))
        }

        /// Lends out the part of an authenticated frame's body still to
        /// come, when at least `min` bytes are, to read into directly (the
        /// lock around the decoder need not be held while reading). `None`
        /// between frames, before authentication, or with less missing.
        /// Nothing may be decoded until the room is given back.
        pub fn lend(&mut self, min: usize) -> Option<FrameRoom> {
            let len = self.body_len?;
            if self.lent || self.body.len() != len || len - self.filled < min.max(1) {
                return None;
            }
            self.lent = true;
            Some(FrameRoom {
                body: std::mem::take(&mut self.body),
                filled: self.filled,
            })
        }

        /// Takes back a lent room with `n` bytes read into it: the frame, if
        /// that completed it. A room this decoder did not lend (it was reset
        /// meanwhile) is dropped.
        pub fn give_back(&mut self, room: FrameRoom, n: usize) -> Option<Bytes> {
            let len = self.body_len?;
            if !self.lent || room.filled != self.filled {
                return None;
            }
            self.lent = false;
            self.body = room.body;
            self.filled = (self.filled + n).min(len);
            self.complete()
        }

        /// Bytes reserved for the frame being assembled (for tests of memory use).
        #[cfg(test)]
        pub(crate) fn body_capacity(&self) -> usize {
            self.body.capacity()
        }

        /// Bytes of a partial frame held (header and body), for accounting.
        pub fn buffered(&self) -> usize {
            self.header_len + self.filled
        }
    }
}

/// Encoded frames waiting for the transport, in order.
///
/// Small frames are appended to one growing buffer so that many calls in flight
/// leave in one write; a large payload is queued as its own chunk, sharing the
/// application's memory, after the head that precedes it.
#[derive(Debug)]
pub(crate) struct OutQueue {
    framing: Framing,
    ready: VecDeque<Bytes>,
    pending: BytesMut,
    queued: usize,
}

impl OutQueue {
    pub(crate) fn new(framing: Framing) -> Self {
        OutQueue {
            framing,
            ready: VecDeque::new(),
            pending: BytesMut::new(),
            queued: 0,
        }
    }

    /// Gives back the block frames are encoded into, if nothing is queued:
    /// an idle connection need not keep it (the next frame takes a new one).
    pub(crate) fn release_block(&mut self) {
        if self.queued == 0 {
            self.pending = BytesMut::new();
        }
    }

    /// Bytes queued and not yet handed to the transport.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// Encodes one frame. Returns its size (without length prefix), or
    /// `Err(size)` when it exceeds `limit`, in which case nothing is queued.
    pub(crate) fn push(
        &mut self,
        head: &MessageHead<'_>,
        payload: Option<&Bytes>,
        limit: u32,
    ) -> Result<usize, usize> {
        // Frames share one block; once the transport has dropped the frames
        // written from it, `reserve` reuses the block instead of allocating.
        if self.pending.capacity() - self.pending.len() < 256 {
            self.pending.reserve(1024);
        }
        let start = self.pending.len();
        if self.framing == Framing::Stream {
            self.pending.put_u32(0);
        }
        let body_start = self.pending.len();
        write_head(head, &mut self.pending);
        let payload_len = payload.map_or(0, |p| p.len());
        let frame_len = self.pending.len() - body_start + payload_len;
        if frame_len > limit as usize {
            self.pending.truncate(start);
            return Err(frame_len);
        }
        if self.framing == Framing::Stream {
            // frame_len <= limit <= u32::MAX, checked above.
            self.pending[start..body_start].copy_from_slice(&(frame_len as u32).to_be_bytes());
        }
        self.queued += self.pending.len() - start + payload_len;
        match payload {
            Some(p) if self.framing == Framing::Stream && p.len() > INLINE_PAYLOAD => {
                self.ready.push_back(self.pending.split().freeze());
                self.ready.push_back(p.clone());
            }
            Some(p) => self.pending.extend_from_slice(p),
            None => {}
        }
        if self.framing == Framing::Message {
            self.ready.push_back(self.pending.split().freeze());
        }
        Ok(frame_len)
    }

    /// The next chunk for the transport: on streams any run of bytes in order,
    /// on message transports exactly one frame.
    pub(crate) fn pop(&mut self) -> Option<Bytes> {
        let chunk = match self.ready.pop_front() {
            Some(chunk) => chunk,
            None if !self.pending.is_empty() => self.pending.split().freeze(),
            None => return None,
        };
        self.queued -= chunk.len();
        Some(chunk)
    }
}

#[cfg(test)]
mod decoder_tests {
    use super::FrameDecoder;

    #[test]
    fn the_rest_of_a_frame_is_read_straight_into_a_lent_room() {
        let mut decoder = FrameDecoder::new();
        // Before authentication nothing is lent.
        decoder
            .decode(&1000u32.to_be_bytes(), 1 << 20, true)
            .unwrap();
        assert!(decoder.lend(1).is_none());
        let mut decoder = FrameDecoder::new();
        let mut stream = 1000u32.to_be_bytes().to_vec();
        stream.extend((0..1000u32).map(|i| i as u8));
        let (used, frame) = decoder.decode(&stream[..300], 1 << 20, false).unwrap();
        assert_eq!((used, frame), (300, None));
        assert!(decoder.lend(800).is_none(), "only 704 bytes are missing");
        let mut room = decoder.lend(1).unwrap();
        assert_eq!(room.buf().len(), 704);
        assert!(decoder.lend(1).is_none(), "lent once at a time");
        room.buf()[..200].copy_from_slice(&stream[300..500]);
        assert!(decoder.give_back(room, 200).is_none());
        let mut room = decoder.lend(1).unwrap();
        room.buf().copy_from_slice(&stream[500..]);
        let frame = decoder.give_back(room, 504).unwrap();
        assert_eq!(&frame[..], &stream[4..]);
        // Ready for the next frame, which arrives as usual.
        let (_, frame) = decoder.decode(&[0, 0, 0, 2, 9, 9], 1 << 20, false).unwrap();
        assert_eq!(&frame.unwrap()[..], &[9, 9]);
    }

    #[test]
    fn a_room_given_back_to_a_decoder_that_did_not_lend_it_is_dropped() {
        let mut decoder = FrameDecoder::new();
        decoder
            .decode(&100u32.to_be_bytes(), 1 << 20, false)
            .unwrap();
        let room = decoder.lend(1).unwrap();
        // The connection was reset meanwhile: a fresh decoder.
        let mut decoder = FrameDecoder::new();
        assert!(decoder.give_back(room, 100).is_none());
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn before_authentication_an_announced_length_costs_nothing_until_its_bytes_arrive() {
        let mut decoder = FrameDecoder::new();
        let header = (16u32 << 20).to_be_bytes();
        let (used, frame) = decoder.decode(&header, 16 << 20, true).unwrap();
        assert_eq!((used, frame), (4, None));
        assert!(
            decoder.body_capacity() < 1024,
            "reserved {}",
            decoder.body_capacity()
        );
        decoder.decode(&[7u8; 100], 16 << 20, true).unwrap();
        assert!(decoder.body_capacity() < 64 * 1024);
    }

    #[test]
    fn after_authentication_a_frame_gets_its_room_at_once_within_the_limit() {
        let mut decoder = FrameDecoder::new();
        let header = (1u32 << 20).to_be_bytes();
        decoder.decode(&header, 16 << 20, false).unwrap();
        let reserved = decoder.body_capacity();
        assert!(reserved >= 1 << 20, "reserved {reserved}");
        // Filled without growing again: no copy of what arrived.
        let (mut fed, chunk) = (0, vec![7u8; 64 * 1024]);
        let mut frame = None;
        while frame.is_none() {
            let (used, f) = decoder.decode(&chunk, 16 << 20, false).unwrap();
            assert!(decoder.body_capacity() == reserved || f.is_some());
            (fed, frame) = (fed + used, f);
        }
        assert_eq!((fed, frame.unwrap().len()), (1 << 20, 1 << 20));
        // Over the limit is refused before anything is reserved.
        let mut decoder = FrameDecoder::new();
        assert!(decoder
            .decode(&(32u32 << 20).to_be_bytes(), 16 << 20, false)
            .is_err());
        assert!(decoder.body_capacity() < 1024);
    }
}
