//! Every error the core reports. Connection errors are fatal and sticky; call,
//! reply and echo errors fail one operation and leave the connection up.

use std::fmt;
use std::time::Duration;

use thiserror::Error;

use crate::message::{ErrorKind, RejectCode};

/// A range of protocol versions one side speaks, for version-mismatch errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionRange {
    /// Lowest version spoken.
    pub min: u16,
    /// Highest version spoken.
    pub max: u16,
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "v{}", self.min)
        } else {
            write!(f, "v{}..=v{}", self.min, self.max)
        }
    }
}

/// Why authentication failed. Both sides always learn of a failure: the side
/// that detects it sends a `Reject` before closing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AuthFailure {
    /// The peer's proof did not verify: the two sides hold different secrets.
    #[error("the peer's proof did not verify: the shared secrets differ")]
    WrongSecret,
    /// The peer requires a shared secret and none is configured here.
    #[error("the peer requires a shared secret and none is configured here")]
    NoSecretConfigured,
    /// A secret is configured here but the peer has none.
    #[error("a shared secret is configured here but the peer has none")]
    PeerHasNoSecret,
    /// The peer rejected our proof or our lack of one.
    #[error("the peer rejected us: {0}")]
    RejectedByPeer(String),
}

/// A fatal connection error. Once one occurs the connection is closed, every
/// pending call has failed with it, and every later command returns it again.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The two sides' protocol version ranges do not overlap.
    #[error("protocol version mismatch: this side speaks {ours}, the peer speaks {theirs}")]
    VersionMismatch {
        /// Versions this side speaks.
        ours: VersionRange,
        /// Versions the peer speaks.
        theirs: VersionRange,
    },
    /// Authentication failed; see [`AuthFailure`].
    #[error("authentication failed: {0}")]
    AuthFailed(AuthFailure),
    /// The peer refused the connection for a reason other than authentication.
    #[error("rejected by the peer ({code}): {reason}")]
    Rejected {
        /// The peer's reason code.
        code: RejectCode,
        /// The peer's explanation.
        reason: String,
    },
    /// The handshake did not complete within the configured time.
    #[error("handshake did not complete within {0:?}")]
    HandshakeTimeout(Duration),
    /// Nothing arrived from the peer for longer than the keepalive bound.
    #[error("peer silent for {:.1} s: declared dead", .0.as_secs_f64())]
    PeerSilent(Duration),
    /// The peer closed the connection with `Goodbye`, giving this reason.
    #[error("the peer closed the connection ({0})")]
    PeerClosed(String),
    /// This side closed the connection.
    #[error("closed locally: {0}")]
    LocallyClosed(String),
    /// The transport ended (end of stream or an I/O error reported by the runtime).
    #[error("transport closed: {0}")]
    TransportClosed(String),
    /// A frame header announced more bytes than allowed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A frame did not decode as a message.
    #[error("undecodable frame: {0}")]
    Decode(#[from] DecodeError),
    /// The peer sent a valid message at a time or with content the protocol forbids.
    #[error("protocol violation by the peer: {0}")]
    Protocol(String),
    /// TLS failed, or one side spoke TLS and the other did not.
    #[error("{0}")]
    Tls(crate::tls::TlsProblem),
    /// The peer kept sending while not reading our answers, past the output limit.
    #[error(
        "output queue overflow: {queued} bytes queued, limit {limit}; the peer is not reading"
    )]
    OutputOverflow {
        /// Bytes waiting to be written.
        queued: usize,
        /// The configured limit.
        limit: usize,
    },
}

/// A frame-level error, detected from the length prefix alone.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A frame longer than the current limit; rejected before its body is buffered.
    #[error("frame of {len} bytes exceeds the {phase} limit of {limit} bytes{hint}", phase = if *.pre_auth { "pre-authentication" } else { "negotiated" }, hint = not_rigwire_hint(*.len, *.pre_auth))]
    TooLarge {
        /// The announced length.
        len: u64,
        /// The limit in force.
        limit: u32,
        /// Whether the handshake was still running.
        pre_auth: bool,
    },
}

/// What an oversized first frame says about the peer: a length prefix that
/// spells `GET ` or `HTTP` is HTTP (a websocket client at a plain endpoint,
/// or a websocket server a plain client reached).
fn not_rigwire_hint(len: u64, pre_auth: bool) -> &'static str {
    const GET: u64 = u32::from_be_bytes(*b"GET ") as u64;
    const HTTP: u64 = u32::from_be_bytes(*b"HTTP") as u64;
    match (pre_auth, len) {
        (false, _) => "",
        (true, GET) => " (it is an HTTP request: a ws:// client? This endpoint speaks rigwire without a websocket)",
        (true, HTTP) => " (the peer answered in HTTP: a websocket endpoint? Connect with ws://host:port/path, or wss:// under TLS)",
        (true, _) => " (is the peer speaking rigwire?)",
    }
}

/// A frame that is not exactly one valid message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A frame of zero bytes.
    #[error("empty frame")]
    Empty,
    /// A `Hello` that does not start with the rigwire magic.
    #[error("bad magic {0:02x?}: the peer is not speaking rigwire")]
    BadMagic([u8; 4]),
    /// A `Hello` from a version whose layout this side cannot read.
    #[error("unreadable Hello from a peer speaking v{min_version}..=v{max_version}")]
    UnreadableHello {
        /// Lowest version the peer speaks.
        min_version: u16,
        /// Highest version the peer speaks.
        max_version: u16,
    },
    /// Bytes left over after a complete message.
    #[error("{trailing} bytes after a complete {message} message")]
    TrailingBytes {
        /// The message that decoded.
        message: &'static str,
        /// How many bytes followed it.
        trailing: usize,
    },
    /// Anything else postcard could not decode (truncation, bad variant, bad UTF-8...).
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// An error carried across the wire in an `Error` frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{kind}: {message}")]
pub struct RemoteError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// One line for humans.
    pub message: String,
    /// Cause chain or backtrace, when the peer sent one.
    pub detail: Option<String>,
}

impl RemoteError {
    /// Builds a remote error with no detail.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RemoteError {
            kind,
            message: message.into(),
            detail: None,
        }
    }

    /// Adds a cause chain or backtrace.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// Why one call failed. The connection stays up unless the variant says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CallError {
    /// The peer answered with an error.
    #[error("remote error: {0}")]
    Remote(RemoteError),
    /// The deadline passed; the peer has been sent a `Cancel`.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// Too many calls in flight: this side's table is full, or the peer said
    /// `Busy`; through a link, a caller that does not wait found the output
    /// full or as many calls in flight as the peer takes at once.
    #[error("busy: {0}")]
    Busy(String),
    /// The connection is closed (or closed while the call was pending).
    #[error("disconnected: {0}")]
    Disconnected(ConnectionError),
    /// The call's frame would exceed the frame size limit.
    #[error("frame of {len} bytes exceeds the connection's limit of {limit} bytes (the smaller of the two sides' max_frame; raise it on both, or send less at once)")]
    TooLarge {
        /// Size of the frame that would have been sent.
        len: usize,
        /// The limit in force.
        limit: u32,
    },
    /// The output queue is over its limit: wait until the runtime has written more.
    #[error("output queue full ({queued} bytes queued, limit {limit}); retry after writing")]
    Backpressure {
        /// Bytes waiting to be written.
        queued: usize,
        /// The configured limit.
        limit: usize,
    },
}

/// Why a reply could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// No such incoming call is pending: it was answered, cancelled or expired.
    /// Harmless; the caller has already been told.
    #[error("call {0} is not pending (already answered, cancelled or expired)")]
    NotPending(u64),
    /// The result was too large; the caller was sent a `TooLarge` error instead.
    #[error("result frame of {len} bytes exceeds the limit of {limit} bytes; the caller got a TooLarge error")]
    TooLarge {
        /// Size of the frame that would have been sent.
        len: usize,
        /// The limit in force.
        limit: u32,
    },
    /// The connection is closed.
    #[error("disconnected: {0}")]
    Disconnected(ConnectionError),
}

/// Why a confirmed send failed. Only that send fails; the connection stays up.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EchoError {
    /// The peer echoed different bytes from those sent.
    #[error("echo mismatch: sent {sent} bytes, the peer echoed {echoed} different bytes")]
    Mismatch {
        /// Length sent.
        sent: usize,
        /// Length echoed.
        echoed: usize,
    },
    /// No echo arrived within the echo timeout.
    #[error("no echo within {0:?}")]
    Timeout(Duration),
    /// Too many confirmed sends are awaiting their echo.
    #[error("too many confirmed sends awaiting an echo (limit {0})")]
    TooMany(usize),
    /// The message would exceed the frame size limit.
    #[error("frame of {len} bytes exceeds the connection's limit of {limit} bytes (the smaller of the two sides' max_frame; raise it on both, or send less at once)")]
    TooLarge {
        /// Size of the frame that would have been sent.
        len: usize,
        /// The limit in force.
        limit: u32,
    },
    /// The output queue is over its limit.
    #[error("output queue full ({queued} bytes queued, limit {limit})")]
    Backpressure {
        /// Bytes waiting to be written.
        queued: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The connection is closed.
    #[error("disconnected: {0}")]
    Disconnected(ConnectionError),
}

/// A configuration the core refuses, with the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A relay's services port has no secret, so anyone could register a
    /// service and forge its answers; set one, or say `insecure_services`.
    #[error(
        "the relay's services have no shared secret: anyone could register a service and forge its answers; set one (RIGWIRE_SERVICE_SECRET or --service-secret-file), or pass --insecure-services"
    )]
    ServicesSecretRequired,
    /// `max_frame` is below the pre-authentication limit.
    #[error("max_frame {0} is below the minimum of 4096 bytes")]
    FrameLimitTooSmall(u32),
    /// A limit that must be positive is zero.
    #[error("{0} must be at least 1")]
    ZeroLimit(&'static str),
    /// The keepalive timeout does not exceed its interval.
    #[error("keepalive timeout {timeout:?} must exceed the interval {interval:?}")]
    KeepaliveTimeoutTooShort {
        /// The ping interval.
        interval: Duration,
        /// The silence bound.
        timeout: Duration,
    },
    /// The name does not fit the pre-authentication frame.
    #[error("name is {0} bytes; at most 255 are allowed")]
    NameTooLong(usize),
    /// The name is empty: peers, their logs and the control page would
    /// show this side as nothing.
    #[error("the name is empty: peers and their logs tell this side by its name; give it one")]
    EmptyName,
    /// The shared secret is shorter than [`MIN_SECRET_LEN`](crate::config::MIN_SECRET_LEN):
    /// short secrets can be guessed offline from a recorded handshake.
    #[error(
        "the shared secret has {len} bytes; it must have at least {min}: make a random one with `rigwire secret new FILE`"
    )]
    SecretTooShort {
        /// Its length.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// The secret is text that ends in a line break, as a file read whole
    /// does: `--secret-file` and `secret_file=` leave one trailing line
    /// break out, so this secret would differ from theirs.
    #[error(
        "the shared secret ends in a line break, as a file read whole does; rigwire reads a \
         secret file without it (--secret-file, secret_file=, secret_from_file), so the peers \
         would hold different secrets: trim it, or read the file that way"
    )]
    SecretEndsInLineBreak,
    /// The secret could not be read (path and reason).
    #[error("cannot read the secret: {0}")]
    SecretUnreadable(String),
    /// The output queue limit cannot hold one frame of the largest size.
    #[error("max_queued_output {queued} is smaller than max_frame {frame}")]
    OutputLimitTooSmall {
        /// The configured queue limit.
        queued: usize,
        /// The configured frame limit.
        frame: u32,
    },
    /// A name a service would register at a relay that no relay takes
    /// ([`relay::is_service_name`](crate::relay::is_service_name)).
    #[error(
        "'{}' is not a service name: 1 to 128 bytes, no '.' or control characters, not 'rigwire'",
        printable(.0, false)
    )]
    NotAServiceName(String),
}

/// Why a name could not be exposed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The name (or alias) is already exposed.
    #[error("'{0}' is already exposed")]
    Duplicate(String),
    /// Names starting with `rigwire.` belong to the protocol.
    #[error("'{0}' is reserved: names starting with 'rigwire.' belong to the protocol")]
    Reserved(String),
    /// Names are 1 to 255 bytes.
    #[error("method names must be 1 to 255 bytes, got {0}")]
    BadLength(usize),
    /// The name is not exposed (when aliasing or configuring it).
    #[error("'{0}' is not exposed")]
    NotExposed(String),
    /// The handler id was not issued by this registry.
    #[error("no handler with id {0}")]
    UnknownHandler(u32),
}

/// Peer-supplied text made safe to print: control characters (newlines
/// included, which could forge log lines, and terminal escapes) are escaped
/// as `\n`, `\u{1b}` and so on. `keep_lines` keeps newlines and tabs, for
/// multi-line details such as a remote backtrace.
pub fn printable(text: &str, keep_lines: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && !(keep_lines && (c == '\n' || c == '\t')) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The one error a runtime's user sees, whichever runtime: every way a
/// connect, call, notify, ping or confirmed send can fail, by what happened.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport could not be set up (refused, unreachable, bad address).
    #[error("could not connect to {url}: {reason}")]
    Connect {
        /// Where we tried to connect.
        url: String,
        /// What the operating system or the handshake said.
        reason: String,
    },
    /// A listening address could not be bound.
    #[error("could not listen on {url}: {reason}")]
    Bind {
        /// The address.
        url: String,
        /// What the operating system said.
        reason: String,
    },
    /// The URL is not one rigwire understands.
    #[error("invalid URL '{url}': {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Authentication failed (wrong or missing shared secret).
    #[error("authentication failed: {0}")]
    AuthFailed(AuthFailure),
    /// The peers speak no common protocol version.
    #[error("protocol version mismatch: this side speaks {ours}, the peer speaks {theirs}")]
    VersionMismatch {
        /// Versions this side speaks.
        ours: VersionRange,
        /// Versions the peer speaks.
        theirs: VersionRange,
    },
    /// TLS could not be set up or failed: an untrusted or wrong
    /// certificate, or one side speaking TLS and the other not.
    #[error("TLS failed: {0}")]
    Tls(crate::tls::TlsProblem),
    /// The peer refused the connection (full, shutting down...).
    #[error("rejected by the peer ({code}): {reason}")]
    Rejected {
        /// The peer's reason code.
        code: RejectCode,
        /// The peer's explanation.
        reason: String,
    },
    /// The peer answered with an error.
    #[error("remote error: {0}")]
    Remote(RemoteError),
    /// The call's deadline passed; the peer was told to cancel.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// A wait gave up before the result arrived; the call is still pending.
    #[error("no result within {0:?}; the call is still pending")]
    WaitTimeout(Duration),
    /// The connection is gone: closed, dead peer, transport lost.
    #[error("disconnected: {0}")]
    Disconnected(ConnectionError),
    /// Too many calls in flight, here or at the peer.
    #[error("busy: {0}")]
    Busy(String),
    /// A frame would exceed the frame size limit.
    #[error("frame of {len} bytes exceeds the connection's limit of {limit} bytes (the smaller of the two sides' max_frame; raise it on both, or send less at once)")]
    TooLarge {
        /// Size of the frame.
        len: usize,
        /// The limit in force.
        limit: u32,
    },
    /// Arguments or a result could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(#[from] crate::codec::CodecError),
    /// A confirmed send failed.
    #[error("confirmed send failed: {0}")]
    Echo(EchoError),
    /// Talking to an iblutil peer failed (see [`IblError`](crate::ibl::IblError)).
    #[error(transparent)]
    Ibl(#[from] crate::ibl::IblError),
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// A name could not be exposed.
    #[error("cannot expose: {0}")]
    Registry(#[from] RegistryError),
}

impl Error {
    /// Why, for a line that already says the connection ended (a log's
    /// "disconnected: …", a hook's reason): a closed connection's cause
    /// without the `disconnected: ` this error's own text begins with;
    /// any other error as it reads.
    pub fn reason(&self) -> String {
        match self {
            Error::Disconnected(why) => why.to_string(),
            other => other.to_string(),
        }
    }

    /// Whether the call ran out of time, wherever its deadline was: its own
    /// ([`Error::DeadlineExceeded`]), or a shorter one the peer held it to
    /// (a relay's cap: [`Error::Remote`] of kind `DeadlineExceeded`, whose
    /// message says whose limit it was). The one way to ask.
    pub fn is_deadline_exceeded(&self) -> bool {
        match self {
            Error::DeadlineExceeded => true,
            Error::Remote(e) => e.kind == crate::message::ErrorKind::DeadlineExceeded,
            _ => false,
        }
    }

    /// This error's words for one who knows what was asked: a call of
    /// `method` with deadline `timeout` (`None`: not known here). Only the
    /// caller's own [`Error::DeadlineExceeded`] reads differently: it names
    /// the call and how long it had, where its own text says only
    /// "deadline exceeded" (a script makes many calls). Any other error
    /// reads as it displays.
    pub fn describe_call(&self, method: &str, timeout: Option<Duration>) -> String {
        match (self, timeout) {
            (Error::DeadlineExceeded, Some(t)) => format!(
                "deadline exceeded: no answer to '{method}' within {} s (the peer was told to cancel it)",
                t.as_secs_f64()
            ),
            (Error::DeadlineExceeded, None) => format!(
                "deadline exceeded: no answer to '{method}' within its deadline (the peer was told to cancel it)"
            ),
            (other, _) => other.to_string(),
        }
    }
}

impl From<ConnectionError> for Error {
    fn from(err: ConnectionError) -> Self {
        match err {
            ConnectionError::AuthFailed(why) => Error::AuthFailed(why),
            ConnectionError::VersionMismatch { ours, theirs } => {
                Error::VersionMismatch { ours, theirs }
            }
            ConnectionError::Rejected { code, reason } => Error::Rejected { code, reason },
            ConnectionError::Tls(problem) => Error::Tls(problem),
            other => Error::Disconnected(other),
        }
    }
}

impl From<CallError> for Error {
    fn from(err: CallError) -> Self {
        match err {
            CallError::Remote(e) => Error::Remote(e),
            CallError::DeadlineExceeded => Error::DeadlineExceeded,
            CallError::Busy(why) => Error::Busy(why),
            CallError::Disconnected(e) => e.into(),
            CallError::TooLarge { len, limit } => Error::TooLarge { len, limit },
            CallError::Backpressure { queued, limit } => Error::Busy(format!(
                "output queue full ({queued} bytes queued, limit {limit})"
            )),
        }
    }
}

impl From<EchoError> for Error {
    fn from(err: EchoError) -> Self {
        match err {
            EchoError::Disconnected(e) => e.into(),
            other => Error::Echo(other),
        }
    }
}
