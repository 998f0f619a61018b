//! The messages of wire protocol v1 and their postcard encoding.
//!
//! Every frame carries exactly one [`Message`]. The enum's variant order *is* the
//! wire format: postcard writes the variant index as a varint, then the fields in
//! declaration order (see `spec/PROTOCOL.md`). Never reorder or insert variants;
//! append only, and only with a new protocol version.
//!
//! Payloads (`args`, `result`, `payload`) are always the last field of their
//! variant. That lets the encoder write the small head of a frame and hand the
//! payload to the transport as a separate [`Bytes`] without copying it, and the
//! decoder slice payloads out of the received frame without copying them.

use bytes::{Bytes, BytesMut};
use serde::de::{Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::DecodeError;

/// The four bytes every `Hello` starts with; anything else is not a rigwire peer.
pub const MAGIC: [u8; 4] = *b"RGWR";

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// The longest peer name (in `Hello`) and method name, in bytes. A peer's
/// `Hello` with a longer name is a protocol violation; a call to a longer
/// method name is answered `NoSuchMethod`, since no such name can be exposed.
pub const MAX_NAME: usize = 255;

/// How a payload's bytes are encoded. Sent as a `u8`; unknown codes decode as
/// [`Codec::Other`] so that a newer peer's codec is reported, not a decode failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "u8", into = "u8")]
pub enum Codec {
    /// postcard (code 0): compact, typed Rust-to-Rust encoding. The default.
    Postcard,
    /// JSON (code 1): for the command line, scripts and other languages.
    Json,
    /// Bytes (code 2): the payload is one byte string, as is (files, images,
    /// arrays). JSON's partner: see [`Payload::encode_result`](crate::Payload::encode_result).
    Bytes,
    /// A codec this version does not know; handlers answer it with `BadArguments`.
    Other(u8),
}

impl From<u8> for Codec {
    fn from(code: u8) -> Self {
        match code {
            0 => Codec::Postcard,
            1 => Codec::Json,
            2 => Codec::Bytes,
            other => Codec::Other(other),
        }
    }
}

impl From<Codec> for u8 {
    fn from(codec: Codec) -> u8 {
        match codec {
            Codec::Postcard => 0,
            Codec::Json => 1,
            Codec::Bytes => 2,
            Codec::Other(code) => code,
        }
    }
}

/// Declares a wire enum carried as a `u32` code with a catch-all for unknown codes.
/// Fixed numbers, never renumbered: iblutil broke peers by renumbering an enum.
macro_rules! wire_code_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $code:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(from = "u32", into = "u32")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            /// A code this version does not know; kept so it can be reported.
            Other(u32),
        }

        impl From<u32> for $name {
            fn from(code: u32) -> Self {
                match code {
                    $($code => $name::$variant,)*
                    other => $name::Other(other),
                }
            }
        }

        impl From<$name> for u32 {
            fn from(value: $name) -> u32 {
                match value {
                    $($name::$variant => $code,)*
                    $name::Other(code) => code,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self {
                    $($name::$variant => f.write_str(stringify!($variant)),)*
                    $name::Other(code) => write!(f, "Other({code})"),
                }
            }
        }
    };
}

wire_code_enum! {
    /// What went wrong with a call, as carried by an `Error` frame.
    ErrorKind {
        /// The method is not exposed by the peer.
        NoSuchMethod = 1,
        /// The arguments could not be decoded, or the codec is not supported.
        BadArguments = 2,
        /// The handler ran and returned an error.
        Handler = 3,
        /// The handler panicked; the peer turned the panic into this error.
        Panicked = 4,
        /// The peer's in-flight table is full; retry later.
        Busy = 5,
        /// The call's deadline passed before an answer was produced.
        DeadlineExceeded = 6,
        /// The call was cancelled.
        Cancelled = 7,
        /// A frame would exceed the negotiated size limit.
        TooLarge = 8,
        /// The peer is shutting down and will not answer.
        Shutdown = 9,
        /// The peer saw something that violates the protocol.
        Protocol = 10,
        /// An error inside the peer's runtime, not the handler's fault.
        Internal = 11,
        /// A relay has no service of that name connected, or it went away.
        Unavailable = 12,
        /// The peer refused the request (a relay refusing a registration).
        Refused = 13,
    }
}

wire_code_enum! {
    /// Why a peer refuses a connection, as carried by a `Reject` frame.
    RejectCode {
        /// The proof did not verify: the shared secrets differ.
        AuthFailed = 1,
        /// One side requires a shared secret and the other has none.
        AuthRequired = 2,
        /// The two version ranges do not overlap.
        VersionMismatch = 3,
        /// The server has reached its connection limit.
        ConnectionLimit = 4,
        /// The peer broke the protocol during the handshake.
        Protocol = 5,
        /// The handshake did not finish in time.
        HandshakeTimeout = 6,
        /// The server is shutting down.
        Shutdown = 7,
    }
}

/// The first frame each side sends, at once and without waiting for the other.
///
/// The first three fields (`magic`, `min_version`, `max_version`) are frozen for
/// every protocol version, so any two versions can tell each other apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello<S = String> {
    /// Always [`MAGIC`].
    pub magic: [u8; 4],
    /// The lowest protocol version this side speaks.
    pub min_version: u16,
    /// The highest protocol version this side speaks.
    pub max_version: u16,
    /// A human-readable name for logs and error messages (a rig's name).
    pub name: S,
    /// 32 fresh random bytes supplied by the runtime; binds the proofs to this connection.
    pub nonce: [u8; 32],
    /// The largest frame this side accepts after the handshake.
    pub max_frame: u32,
    /// How many of the peer's calls this side runs at once before answering `Busy`.
    pub max_incoming_calls: u32,
    /// Whether this side has a shared secret and therefore demands a proof.
    pub secret_required: bool,
}

/// One protocol message. `S` is the string type and `P` the payload type, so the
/// same definition serves owned messages (`String`, [`Bytes`]), borrowed decoding
/// and head-only encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message<S = String, P = Bytes> {
    /// Opening frame of the handshake (index 0).
    Hello(Hello<S>),
    /// Proof of the shared secret: HMAC-SHA256 over the handshake transcript (1).
    Auth {
        /// The HMAC output.
        proof: [u8; 32],
    },
    /// Refusal of the connection, with a reason for humans; the sender closes (2).
    Reject {
        /// Machine-readable reason.
        code: RejectCode,
        /// Human-readable reason.
        reason: S,
    },
    /// Orderly close; the sender will send nothing more (3).
    Goodbye {
        /// Why the connection is closing.
        reason: S,
    },
    /// A request that expects exactly one `Reply` or `Error` (4).
    Call {
        /// Caller-chosen id, unique among the caller's calls in flight; never 0.
        id: u64,
        /// The exposed name to call.
        method: S,
        /// Time left for the call in microseconds, relative so clocks need not agree.
        deadline_us: Option<u64>,
        /// Encoding of `args`.
        codec: Codec,
        /// Encoded arguments.
        args: P,
    },
    /// The successful answer to a `Call` (5).
    Reply {
        /// The id of the call answered.
        id: u64,
        /// Encoding of `result`.
        codec: Codec,
        /// Encoded result.
        result: P,
    },
    /// The failed answer to a `Call`; id 0 reports a problem with a `Notify` (6).
    Error {
        /// The id of the call answered, or 0.
        id: u64,
        /// What went wrong.
        kind: ErrorKind,
        /// One line for humans.
        message: S,
        /// Optional cause chain or backtrace.
        detail: Option<S>,
    },
    /// A one-way message to an exposed name; no answer unless the name is unknown (7).
    Notify {
        /// The exposed name.
        method: S,
        /// Encoding of `args`.
        codec: Codec,
        /// Encoded arguments.
        args: P,
    },
    /// The caller gave up on a call; the callee may stop working on it (8).
    Cancel {
        /// The id of the call given up on.
        id: u64,
    },
    /// Liveness probe; answered with `Pong` of the same `seq` (9).
    Ping {
        /// Echoed back in the `Pong`.
        seq: u64,
    },
    /// Answer to a `Ping` (10).
    Pong {
        /// The `seq` of the `Ping` answered.
        seq: u64,
    },
    /// A message the receiver must echo back byte for byte (11).
    Confirm {
        /// Sender-chosen sequence number.
        seq: u64,
        /// The message.
        payload: P,
    },
    /// The echo of a `Confirm` (12).
    Echo {
        /// The `seq` of the `Confirm` echoed.
        seq: u64,
        /// The bytes received, unchanged.
        payload: P,
    },
}

/// A payload slot that encodes only the payload's length prefix. The head of a
/// frame encoded with it, followed by the payload bytes, is byte-for-byte the
/// postcard encoding of the whole message (postcard writes bytes as varint
/// length then the bytes), which lets payloads skip the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PayloadLen(pub(crate) usize);

impl Serialize for PayloadLen {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        serializer.serialize_u64(self.0 as u64)
    }
}

/// A payload borrowed from the frame being decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawBytes<'a>(pub(crate) &'a [u8]);

impl<'de: 'a, 'a> Deserialize<'de> for RawBytes<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BorrowedBytes;
        impl<'de> Visitor<'de> for BorrowedBytes {
            type Value = &'de [u8];
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string borrowed from the frame")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(v)
            }
        }
        deserializer.deserialize_bytes(BorrowedBytes).map(RawBytes)
    }
}

/// A message as decoded in place: strings and payloads borrow the frame.
pub(crate) type MessageRef<'a> = Message<&'a str, RawBytes<'a>>;

/// A message ready for head-only encoding.
pub(crate) type MessageHead<'a> = Message<&'a str, PayloadLen>;

impl<S, P> Message<S, P> {
    /// Rebuilds the message with each string and payload converted; the one
    /// place that lists every variant's fields, so conversions cannot drift.
    pub(crate) fn convert<'a, S2, P2>(
        &'a self,
        mut s: impl FnMut(&'a S) -> S2,
        mut p: impl FnMut(&'a P) -> P2,
    ) -> Message<S2, P2> {
        match self {
            Message::Hello(h) => Message::Hello(Hello {
                magic: h.magic,
                min_version: h.min_version,
                max_version: h.max_version,
                name: s(&h.name),
                nonce: h.nonce,
                max_frame: h.max_frame,
                max_incoming_calls: h.max_incoming_calls,
                secret_required: h.secret_required,
            }),
            Message::Auth { proof } => Message::Auth { proof: *proof },
            Message::Reject { code, reason } => Message::Reject {
                code: *code,
                reason: s(reason),
            },
            Message::Goodbye { reason } => Message::Goodbye { reason: s(reason) },
            Message::Call {
                id,
                method,
                deadline_us,
                codec,
                args,
            } => Message::Call {
                id: *id,
                method: s(method),
                deadline_us: *deadline_us,
                codec: *codec,
                args: p(args),
            },
            Message::Reply { id, codec, result } => Message::Reply {
                id: *id,
                codec: *codec,
                result: p(result),
            },
            Message::Error {
                id,
                kind,
                message,
                detail,
            } => Message::Error {
                id: *id,
                kind: *kind,
                message: s(message),
                detail: detail.as_ref().map(s),
            },
            Message::Notify {
                method,
                codec,
                args,
            } => Message::Notify {
                method: s(method),
                codec: *codec,
                args: p(args),
            },
            Message::Cancel { id } => Message::Cancel { id: *id },
            Message::Ping { seq } => Message::Ping { seq: *seq },
            Message::Pong { seq } => Message::Pong { seq: *seq },
            Message::Confirm { seq, payload } => Message::Confirm {
                seq: *seq,
                payload: p(payload),
            },
            Message::Echo { seq, payload } => Message::Echo {
                seq: *seq,
                payload: p(payload),
            },
        }
    }

    /// The payload this message carries, if its variant has one.
    pub fn payload(&self) -> Option<&P> {
        match self {
            Message::Call { args, .. } | Message::Notify { args, .. } => Some(args),
            Message::Reply { result, .. } => Some(result),
            Message::Confirm { payload, .. } | Message::Echo { payload, .. } => Some(payload),
            _ => None,
        }
    }

    /// The variant's name, for error messages and logs.
    pub fn type_name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "Hello",
            Message::Auth { .. } => "Auth",
            Message::Reject { .. } => "Reject",
            Message::Goodbye { .. } => "Goodbye",
            Message::Call { .. } => "Call",
            Message::Reply { .. } => "Reply",
            Message::Error { .. } => "Error",
            Message::Notify { .. } => "Notify",
            Message::Cancel { .. } => "Cancel",
            Message::Ping { .. } => "Ping",
            Message::Pong { .. } => "Pong",
            Message::Confirm { .. } => "Confirm",
            Message::Echo { .. } => "Echo",
        }
    }
}

/// The frozen prefix of a `Hello`, decodable whatever the peer's version.
#[derive(Deserialize)]
struct HelloPrefix {
    tag: u32,
    magic: [u8; 4],
    min_version: u16,
    max_version: u16,
}

impl<'a> MessageRef<'a> {
    /// Decodes one frame in place. A `Hello` may carry trailing bytes (later
    /// versions may extend it); any other message must use the whole frame.
    pub(crate) fn decode_ref(frame: &'a [u8]) -> Result<Self, DecodeError> {
        if frame.is_empty() {
            return Err(DecodeError::Empty);
        }
        let (msg, rest): (MessageRef<'a>, &[u8]) =
            postcard::take_from_bytes(frame).map_err(|e| decode_failure(frame, e))?;
        if !rest.is_empty() && !matches!(msg, Message::Hello(_)) {
            return Err(DecodeError::TrailingBytes {
                message: msg.type_name(),
                trailing: rest.len(),
            });
        }
        if let Message::Hello(h) = &msg {
            if h.magic != MAGIC {
                return Err(DecodeError::BadMagic(h.magic));
            }
        }
        Ok(msg)
    }

    /// Converts to an owned message whose payloads are slices of `frame`
    /// (no copy); `frame` must be the buffer this message was decoded from.
    pub(crate) fn to_owned_in(&self, frame: &Bytes) -> Message {
        self.convert(|s| (*s).to_owned(), |p| frame.slice_ref(p.0))
    }
}

/// Explains a postcard failure; a Hello from another version whose layout we
/// cannot read is still reported by its version range when the prefix decodes.
fn decode_failure(frame: &[u8], err: postcard::Error) -> DecodeError {
    if let Ok(prefix) = postcard::from_bytes::<HelloPrefix>(frame) {
        if prefix.tag == 0 {
            if prefix.magic != MAGIC {
                return DecodeError::BadMagic(prefix.magic);
            }
            return DecodeError::UnreadableHello {
                min_version: prefix.min_version,
                max_version: prefix.max_version,
            };
        }
    }
    DecodeError::Malformed(err.to_string())
}

impl Message {
    /// Decodes one frame body (without the stream length prefix). Payloads in
    /// the result share `frame`'s memory.
    ///
    /// # Errors
    /// [`DecodeError`] when the bytes are not exactly one valid message.
    pub fn decode(frame: &Bytes) -> Result<Message, DecodeError> {
        Ok(MessageRef::decode_ref(frame)?.to_owned_in(frame))
    }

    /// Encodes the message as one frame body (without the stream length prefix).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = head_to_vec(&self.convert(|s| s.as_str(), |p| PayloadLen(p.len())));
        if let Some(p) = self.payload() {
            out.extend_from_slice(p);
        }
        out
    }
}

/// A postcard output flavor that appends to a `BytesMut` with whole-slice copies.
struct BytesMutFlavor<'a>(&'a mut BytesMut);

impl postcard::ser_flavors::Flavor for BytesMutFlavor<'_> {
    type Output = ();
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.extend_from_slice(&[data]);
        Ok(())
    }
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends the postcard encoding of `head` to `out`. A frame's payload, if any,
/// must follow immediately.
pub(crate) fn write_head(head: &MessageHead<'_>, out: &mut BytesMut) {
    // Serializing into a growable buffer only fails for types postcard cannot
    // represent; every field here is a plain integer, string, array or option.
    postcard::serialize_with_flavor(head, BytesMutFlavor(out))
        .expect("message heads contain only postcard-representable fields");
}

/// Encodes `head` alone as a frame body.
pub(crate) fn head_to_vec(head: &MessageHead<'_>) -> Vec<u8> {
    let mut out = BytesMut::new();
    write_head(head, &mut out);
    out.to_vec()
}
