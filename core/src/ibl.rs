//! The iblutil dialect: the wire format of `iblutil.io.net` (version 1.20.0),
//! so that a rigwire program can join an existing set of Python rigs. It sits
//! beside the native protocol and shares nothing with it on the wire.
//!
//! Every message is a JSON array `[event, *fields]`, with no framing: one
//! UDP datagram, or one TCP read, is one message. Every message received is
//! echoed back byte for byte *before* it is handled, and the sender counts a
//! message as delivered only once the echo has come back (within 1 s by
//! default). Errors are `[0, "Type: message", event]` and are never echoed.
//!
//! [`IblEndpoint`] is the echo rule as a sans-IO state machine for any address
//! type (a UDP peer, a TCP connection): feed it what arrives and what time it
//! is, send through it, and drain `poll_transmit`, `poll_event`, then sleep
//! until `poll_timeout` — the same call order as [`Connection`](crate::Connection).
//!
//! Where it differs from iblutil, on purpose: a failed or missing echo fails
//! that one send and leaves the endpoint usable (iblutil closes the
//! communicator); a second confirmed send to an address already waiting for
//! an echo is refused instead of silently replacing the first; and while an
//! echo is awaited, a datagram that is not the echo but is a valid message is
//! handled as a message rather than failing the send (iblutil takes *any*
//! datagram from that address for the echo); over TCP, a read that ends
//! inside a message waits for the rest ([`IblEndpoint::for_streams`]); and
//! a message over [`MAX_MESSAGE`] is refused before it is sent.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

/// iblutil's default port.
pub const DEFAULT_PORT: u16 = 11001;

/// How long a confirmed send waits for its echo unless told otherwise.
pub const DEFAULT_ECHO_TIMEOUT: Duration = Duration::from_secs(1);

/// The largest message, in bytes of JSON, that iblutil carries: one UDP
/// datagram over IPv4. A larger one is refused when sent, over TCP too,
/// where iblutil takes each read for a whole message and a larger one
/// would arrive in pieces.
pub const MAX_MESSAGE: usize = 65_507;

/// iblutil's `ExpMessage` values (powers of two since iblutil 1.11), and 0 for errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum IblEvent {
    /// `[0, "Type: message", event]`: a callback on the other side failed.
    Error,
    /// EXPINIT = 1.
    Init,
    /// EXPSTART = 2.
    Start,
    /// EXPEND = 4 (a normal stop).
    End,
    /// EXPCLEANUP = 8.
    Cleanup,
    /// EXPINTERRUPT = 16 (a stop with `immediately`).
    Interrupt,
    /// EXPSTATUS = 32.
    Status,
    /// EXPINFO = 64.
    Info,
    /// ALYX = 128.
    Alyx,
}

impl IblEvent {
    /// Every event, in code order.
    pub const ALL: [IblEvent; 9] = [
        IblEvent::Error,
        IblEvent::Init,
        IblEvent::Start,
        IblEvent::End,
        IblEvent::Cleanup,
        IblEvent::Interrupt,
        IblEvent::Status,
        IblEvent::Info,
        IblEvent::Alyx,
    ];

    /// The number on the wire.
    pub fn code(self) -> i64 {
        match self {
            IblEvent::Error => 0,
            IblEvent::Init => 1,
            IblEvent::Start => 2,
            IblEvent::End => 4,
            IblEvent::Cleanup => 8,
            IblEvent::Interrupt => 16,
            IblEvent::Status => 32,
            IblEvent::Info => 64,
            IblEvent::Alyx => 128,
        }
    }

    /// The event with this number, if there is one.
    pub fn from_code(code: i64) -> Option<IblEvent> {
        IblEvent::ALL.into_iter().find(|e| e.code() == code)
    }

    /// The event named like iblutil's enum (`EXPINIT`) or plainly (`init`),
    /// in any case, or given by its number.
    pub fn from_name(name: &str) -> Option<IblEvent> {
        if let Ok(code) = name.parse::<i64>() {
            return IblEvent::from_code(code);
        }
        let name = name.to_ascii_lowercase();
        let name = name.strip_prefix("exp").unwrap_or(&name);
        Some(match name {
            "error" => IblEvent::Error,
            "init" => IblEvent::Init,
            "start" => IblEvent::Start,
            "end" | "stop" => IblEvent::End,
            "cleanup" => IblEvent::Cleanup,
            "interrupt" => IblEvent::Interrupt,
            "status" => IblEvent::Status,
            "info" => IblEvent::Info,
            "alyx" => IblEvent::Alyx,
            _ => return None,
        })
    }
}

impl std::fmt::Display for IblEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            IblEvent::Error => "error",
            IblEvent::Init => "EXPINIT",
            IblEvent::Start => "EXPSTART",
            IblEvent::End => "EXPEND",
            IblEvent::Cleanup => "EXPCLEANUP",
            IblEvent::Interrupt => "EXPINTERRUPT",
            IblEvent::Status => "EXPSTATUS",
            IblEvent::Info => "EXPINFO",
            IblEvent::Alyx => "ALYX",
        };
        f.write_str(name)
    }
}

/// One iblutil message: an event and the fields after it, as iblutil's
/// `Service` methods lay them out (see `IblMessage::init` and its siblings).
#[derive(Debug, Clone, PartialEq)]
pub struct IblMessage {
    /// What the message is about.
    pub event: IblEvent,
    /// The array's elements after the event number.
    pub fields: Vec<Value>,
}

/// Why received bytes are not an iblutil message (they are still echoed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IblDecodeError {
    /// Not JSON at all.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an array of an event and at least one field.
    #[error("expected [event, field, ...], got {0}")]
    NotAMessage(String),
    /// The first element is not one of iblutil's event numbers.
    #[error("unknown event {0}")]
    UnknownEvent(String),
}

impl IblMessage {
    /// `[1, data]`: initialize.
    pub fn init(data: Value) -> Self {
        Self::with(IblEvent::Init, vec![data])
    }

    /// `[2, exp_ref, data]`: start the experiment `exp_ref` (iblutil does not
    /// validate the reference; neither does this).
    pub fn start(exp_ref: Option<&str>, data: Value) -> Self {
        let exp_ref = exp_ref.map_or(Value::Null, |r| Value::String(r.to_owned()));
        Self::with(IblEvent::Start, vec![exp_ref, data])
    }

    /// `[4, data]`, or `[16, data]` when stopping `immediately`.
    pub fn stop(data: Value, immediately: bool) -> Self {
        let event = if immediately {
            IblEvent::Interrupt
        } else {
            IblEvent::End
        };
        Self::with(event, vec![data])
    }

    /// `[8, data]`: clean up.
    pub fn cleanup(data: Value) -> Self {
        Self::with(IblEvent::Cleanup, vec![data])
    }

    /// `[32, status]`: a status report (iblutil's `ExpStatus` codes 0/10/20/30).
    pub fn status(status: Value) -> Self {
        Self::with(IblEvent::Status, vec![status])
    }

    /// `[64, status, data]`: information about the rig.
    pub fn info(status: Value, data: Value) -> Self {
        Self::with(IblEvent::Info, vec![status, data])
    }

    /// `[128, base_url, {user: token}]`, or `[128, null, {}]` to ask for a token.
    pub fn alyx(base_url: Option<&str>, token: Value) -> Self {
        let url = base_url.map_or(Value::Null, |u| Value::String(u.to_owned()));
        Self::with(IblEvent::Alyx, vec![url, token])
    }

    /// `[0, "Type: message", event]`: handling `event` failed (never echoed).
    pub fn error(kind: &str, message: &str, event: IblEvent) -> Self {
        Self::with(
            IblEvent::Error,
            vec![
                Value::String(format!("{kind}: {message}")),
                Value::from(event.code()),
            ],
        )
    }

    fn with(event: IblEvent, fields: Vec<Value>) -> Self {
        IblMessage { event, fields }
    }

    /// The `n`th field after the event, or null.
    pub fn field(&self, n: usize) -> &Value {
        self.fields.get(n).unwrap_or(&Value::Null)
    }

    /// The bytes iblutil would send for this message: Python's `json.dumps`
    /// with its default `", "` and `": "` separators and ASCII escapes.
    pub fn encode(&self) -> Bytes {
        let mut array = Vec::with_capacity(self.fields.len() + 1);
        array.push(Value::from(self.event.code()));
        array.extend(self.fields.iter().cloned());
        Bytes::from(python_json(&Value::Array(array)))
    }

    /// Reads one received message. `NaN`, `Infinity` and `-Infinity`,
    /// which Python's `json.dumps` writes by default (so iblutil peers send
    /// them) and JSON has no word for, read as `null`.
    ///
    /// # Errors
    /// [`IblDecodeError`] for non-JSON, non-array or too short data, and for
    /// an unknown event number.
    pub fn decode(bytes: &[u8]) -> Result<IblMessage, IblDecodeError> {
        let value: Value = match serde_json::from_slice(bytes) {
            Ok(value) => value,
            Err(e) => python_constants(bytes, PythonConstant::Null)
                .and_then(|json| serde_json::from_slice(&json).ok())
                .ok_or_else(|| IblDecodeError::NotJson(e.to_string()))?,
        };
        let Value::Array(mut items) = value else {
            return Err(IblDecodeError::NotAMessage(short(bytes)));
        };
        if items.len() < 2 {
            return Err(IblDecodeError::NotAMessage(short(bytes)));
        }
        let fields = items.split_off(1);
        let code = &items[0];
        let event = code
            .as_i64()
            .and_then(IblEvent::from_code)
            .ok_or_else(|| IblDecodeError::UnknownEvent(code.to_string()))?;
        Ok(IblMessage { event, fields })
    }

    /// For an error message: what failed (`"Type: message"`) and for which event.
    pub fn error_report(&self) -> Option<(String, Option<IblEvent>)> {
        (self.event == IblEvent::Error).then(|| {
            let text = match self.field(0) {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (text, self.field(1).as_i64().and_then(IblEvent::from_code))
        })
    }
}

impl std::fmt::Display for IblMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.encode()))
    }
}

fn short(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
    if bytes.len() > 80 {
        format!("{text}...")
    } else {
        text
    }
}

/// `json.dumps` with Python's defaults: `", "` and `": "`, non-ASCII escaped.
/// Rewrites serde_json's compact form, outside strings and inside them.
fn python_json(value: &Value) -> Vec<u8> {
    let compact = value.to_string();
    let mut out = String::with_capacity(compact.len() + compact.len() / 4);
    let (mut in_string, mut escaped) = (false, false);
    for c in compact.chars() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            if c.is_ascii() {
                out.push(c);
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            continue;
        }
        out.push(c);
        match c {
            '"' => in_string = true,
            ',' | ':' => out.push(' '),
            _ => {}
        }
    }
    out.into_bytes()
}

/// What [`python_constants`] writes in place of `NaN`, `Infinity` and
/// `-Infinity`.
#[derive(Clone, Copy)]
enum PythonConstant {
    /// `null`: JSON has no word for them, and a missing value is what a
    /// NaN usually stands for.
    Null,
    /// A number of the same length, so that offsets stay where they were.
    SameLength,
}

/// `data` with the constants Python's `json.dumps` writes by default (and
/// iblutil sends) replaced outside strings; `None` if it has none.
fn python_constants(data: &[u8], with: PythonConstant) -> Option<Vec<u8>> {
    const CONSTANTS: [(&[u8], &[u8]); 3] = [
        (b"NaN", b"0.0"),
        (b"Infinity", b"0.000000"),
        (b"-Infinity", b"-0.000000"),
    ];
    let mut out: Option<Vec<u8>> = None;
    let (mut in_string, mut escaped, mut i) = (false, false, 0);
    while i < data.len() {
        let b = data[i];
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if let Some((word, same)) = CONSTANTS.iter().find(|(w, _)| data[i..].starts_with(w))
        {
            let out = out.get_or_insert_with(|| data[..i].to_vec());
            out.extend_from_slice(match with {
                PythonConstant::Null => b"null",
                PythonConstant::SameLength => same,
            });
            i += word.len();
            continue;
        }
        if let Some(out) = &mut out {
            out.push(b);
        }
        i += 1;
    }
    out
}

/// How bytes read end: between values (or in the whitespace after one),
/// inside a value cut short, or in something that is not JSON.
#[derive(PartialEq)]
enum Ending {
    Between,
    CutShort,
    NotJson,
}

/// Where each whole JSON value `data` holds back to back ends, and how
/// `data` ends. Python's constants count as numbers of the same length,
/// which end in the same places.
fn value_ends(data: &[u8]) -> (Vec<usize>, Ending) {
    let numbers = python_constants(data, PythonConstant::SameLength);
    let mut values = serde_json::Deserializer::from_slice(numbers.as_deref().unwrap_or(data))
        .into_iter::<serde::de::IgnoredAny>();
    let mut ends = Vec::new();
    loop {
        match values.next() {
            Some(Ok(_)) => ends.push(values.byte_offset()),
            None => return (ends, Ending::Between),
            Some(Err(e)) if e.is_eof() || ends_inside_python_constant(data) => {
                return (ends, Ending::CutShort)
            }
            Some(Err(_)) => return (ends, Ending::NotJson),
        }
    }
}

/// `data` cut into the JSON values it holds back to back, each with the
/// whitespace before it (the last also with any after it); one piece (all of
/// it) unless it is two or more whole values.
fn split_values(data: &[u8]) -> Vec<&[u8]> {
    let (mut ends, ending) = value_ends(data);
    if ends.len() < 2 || ending != Ending::Between {
        return vec![data];
    }
    ends.pop();
    let starts = std::iter::once(0).chain(ends.iter().copied());
    let stops = ends.iter().copied().chain(std::iter::once(data.len()));
    starts.zip(stops).map(|(a, b)| &data[a..b]).collect()
}

/// Where the unfinished value at the end of `data` (a read that stopped
/// inside a message) begins: after the last whole value. `data.len()` when
/// `data` ends between values, or holds something that is not JSON.
fn unfinished_from(data: &[u8]) -> usize {
    match value_ends(data) {
        (ends, Ending::CutShort) => ends.last().copied().unwrap_or(0),
        _ => data.len(),
    }
}

/// Whether `data` ends with the start of a constant of Python's (`Na`,
/// `Infin`), which JSON reads as a mistake rather than as cut short.
fn ends_inside_python_constant(data: &[u8]) -> bool {
    [b"NaN".as_slice(), b"Infinity"]
        .iter()
        .any(|word| (1..word.len()).any(|n| data.ends_with(&word[..n])))
}

/// The start of a message a stream's read ended inside, and how far it
/// has been read: enough to tell from each new byte alone whether a value
/// may have ended there, without parsing it all again.
#[derive(Debug, Default)]
struct Unfinished {
    bytes: Vec<u8>,
    /// Arrays and objects open.
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// A value has begun (past the whitespace before it).
    begun: bool,
    /// How many bytes were kept when they were last parsed.
    parsed_at: usize,
}

impl Unfinished {
    /// Appends `data`; whether a value may have ended in it, or what began
    /// cannot be JSON: then it is time to parse.
    fn read(&mut self, data: &[u8]) -> bool {
        let mut may_end = false;
        for &b in data {
            if self.in_string {
                match b {
                    _ if self.escaped => self.escaped = false,
                    b'\\' => self.escaped = true,
                    b'"' => {
                        self.in_string = false;
                        may_end |= self.depth == 0;
                    }
                    _ => {}
                }
                continue;
            }
            if !self.begun {
                if b.is_ascii_whitespace() {
                    continue;
                }
                self.begun = true;
                // Not how a JSON value (or Python's NaN, Infinity) begins.
                may_end |= !b"[{\"-0123456789tfnNI".contains(&b);
            }
            match b {
                b'"' => self.in_string = true,
                b'[' | b'{' => self.depth = self.depth.saturating_add(1),
                b']' | b'}' => {
                    self.depth = self.depth.saturating_sub(1);
                    may_end |= self.depth == 0;
                }
                _ => {}
            }
        }
        self.bytes.extend_from_slice(data);
        may_end
    }
}

/// What an [`IblEndpoint`] tells its runtime.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum IblEndpointEvent<A> {
    /// A message arrived (already echoed, unless it was an error report).
    Received {
        /// Who sent it.
        from: A,
        /// The message.
        message: IblMessage,
    },
    /// Bytes arrived that are not a message; they were echoed, as iblutil
    /// does, and nothing else happens.
    Malformed {
        /// Who sent them.
        from: A,
        /// Why they are not a message.
        error: IblDecodeError,
    },
    /// The echo of the confirmed send to `to` came back.
    Confirmed {
        /// The address it was sent to.
        to: A,
    },
    /// The confirmed send to `to` failed; the endpoint stays usable.
    EchoFailed {
        /// The address it was sent to.
        to: A,
        /// Why.
        error: IblEchoError,
    },
}

/// Why a confirmed send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IblEchoError {
    /// No echo within the timeout.
    #[error("no echo within {0:?}")]
    Timeout(Duration),
    /// What came back was not the bytes sent, nor a message.
    #[error("the echo differs from what was sent ({got} bytes back, {sent} sent)")]
    Mismatch {
        /// Bytes sent.
        sent: usize,
        /// Bytes received instead.
        got: usize,
    },
    /// A confirmed send to this address is still waiting for its echo.
    #[error("a confirmed send to this address is still waiting for its echo")]
    Busy,
    /// The transport to this address ended.
    #[error("the connection ended before the echo came back")]
    Disconnected,
    /// The message is larger than one message may be ([`MAX_MESSAGE`]);
    /// nothing was sent.
    #[error(
        "the message is {0} bytes of JSON, and iblutil carries at most {MAX_MESSAGE} in one \
         (a UDP datagram): send less, such as a file's path rather than its contents"
    )]
    TooLarge(usize),
    /// The address said nothing listens there (UDP's "port unreachable").
    #[error("nothing listens there ({0}): is the rig's iblutil server running, on that port?")]
    Unreachable(String),
}

/// What went wrong talking to an iblutil peer, as a runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IblError {
    /// A confirmed send to `to` was not confirmed.
    #[error("message to {to} not confirmed: {error}")]
    Echo {
        /// The peer's address.
        to: String,
        /// How the echo failed.
        error: IblEchoError,
    },
    /// Nothing (or not the awaited event) arrived in time.
    #[error("no {what} within {waited:?}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
    },
    /// The TCP connection to the peer ended.
    #[error("the connection to {peer} ended: {reason}")]
    Disconnected {
        /// The peer's address.
        peer: String,
        /// Why.
        reason: String,
    },
    /// No peer to send to: a server that has not heard from anyone yet.
    #[error("no peer to send to: {0}")]
    NoPeer(String),
    /// The socket failed.
    #[error("socket error on {url}: {reason}")]
    Io {
        /// The endpoint.
        url: String,
        /// The system's message.
        reason: String,
    },
}

struct AwaitedEcho {
    sent: Bytes,
    deadline: Instant,
    timeout: Duration,
}

/// Least time between two writes on one TCP connection to an iblutil peer.
/// iblutil takes each TCP read for one message, so an answer written right
/// behind an echo can reach it in the same read and be taken for a wrong
/// echo (which closes its communicator); spaced writes let its event loop
/// read them apart. A workaround, not a guarantee: a peer that stalls longer
/// still merges reads.
pub const TCP_WRITE_GAP: Duration = Duration::from_millis(10);

/// When the next write on one TCP connection to iblutil may go.
#[derive(Debug, Clone, Copy, Default)]
pub struct WritePacing {
    last: Option<Instant>,
}

impl WritePacing {
    /// The instant before which the next write must wait, if any.
    pub fn not_before(&self) -> Option<Instant> {
        self.last.and_then(|t| t.checked_add(TCP_WRITE_GAP))
    }

    /// A write went out at `now`.
    pub fn wrote(&mut self, now: Instant) {
        self.last = Some(now);
    }
}

/// `message` as sent, if it is small enough for iblutil to take whole.
fn encode_within_limit(message: &IblMessage) -> Result<Bytes, IblEchoError> {
    let encoded = message.encode();
    match encoded.len() {
        n if n > MAX_MESSAGE => Err(IblEchoError::TooLarge(n)),
        _ => Ok(encoded),
    }
}

/// The echo rule for any address type `A`, with no I/O.
pub struct IblEndpoint<A> {
    awaited: BTreeMap<A, AwaitedEcho>,
    transmits: VecDeque<(A, Bytes)>,
    events: VecDeque<IblEndpointEvent<A>>,
    /// Most addresses awaiting an echo at once (each costs one buffered message).
    max_awaited: usize,
    /// Over a stream (TCP): the start of a message whose read ended inside
    /// it, per address, until the rest arrives ([`IblEndpoint::for_streams`]).
    unfinished: Option<BTreeMap<A, Unfinished>>,
    /// How many times a stream's input was parsed for whole values.
    parses: u64,
}

impl<A> std::fmt::Debug for IblEndpoint<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IblEndpoint")
            .field("awaiting_echo", &self.awaited.len())
            .finish()
    }
}

impl<A: Ord + Clone> Default for IblEndpoint<A> {
    fn default() -> Self {
        IblEndpoint {
            awaited: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            max_awaited: 1024,
            unfinished: None,
            parses: 0,
        }
    }
}

impl<A: Ord + Clone> IblEndpoint<A> {
    /// An endpoint with nothing in flight, for datagrams (UDP): each input
    /// is whole messages.
    pub fn new() -> Self {
        Self::default()
    }

    /// An endpoint for streams (TCP), where a read may end inside a message
    /// (a large one, cut where the network cut it): that start is kept, up
    /// to [`MAX_MESSAGE`] bytes, and handled with the rest when it comes.
    /// iblutil takes such a piece for a message, and fails it.
    pub fn for_streams() -> Self {
        IblEndpoint {
            unfinished: Some(BTreeMap::new()),
            ..Self::default()
        }
    }

    /// How many times a stream's endpoint parsed what it had read for whole
    /// messages: a few per message however its reads cut it (the cost of a
    /// peer that sends a byte at a time).
    pub fn parses(&self) -> u64 {
        self.parses
    }

    /// Whether a confirmed send to `to` is waiting for its echo.
    pub fn awaiting_echo(&self, to: &A) -> bool {
        self.awaited.contains_key(to)
    }

    /// Sends `message` to `to` and waits up to `timeout` for its echo; the
    /// outcome comes as [`IblEndpointEvent::Confirmed`] or `EchoFailed`.
    ///
    /// # Errors
    /// Nothing is sent on an error: [`IblEchoError::Busy`] if a confirmed
    /// send to `to` is still waiting; [`IblEchoError::TooLarge`] for a
    /// message over [`MAX_MESSAGE`].
    pub fn confirmed_send(
        &mut self,
        to: A,
        message: &IblMessage,
        timeout: Duration,
        now: Instant,
    ) -> Result<(), IblEchoError> {
        if self.awaited.contains_key(&to) || self.awaited.len() >= self.max_awaited {
            return Err(IblEchoError::Busy);
        }
        let sent = encode_within_limit(message)?;
        self.awaited.insert(
            to.clone(),
            AwaitedEcho {
                sent: sent.clone(),
                deadline: crate::link::after(now, timeout),
                timeout,
            },
        );
        self.transmits.push_back((to, sent));
        Ok(())
    }

    /// Sends `message` without waiting for an echo (error reports are sent so).
    ///
    /// # Errors
    /// [`IblEchoError::TooLarge`] for a message over [`MAX_MESSAGE`]
    /// (nothing is sent).
    pub fn send(&mut self, to: A, message: &IblMessage) -> Result<(), IblEchoError> {
        self.transmits
            .push_back((to, encode_within_limit(message)?));
        Ok(())
    }

    /// One datagram (UDP) or one read (TCP) from `from`.
    ///
    /// iblutil takes each TCP read for one message, which breaks when two
    /// messages arrive in one read (an echo and the answer right behind it).
    /// Here a read that is several JSON values back to back is taken apart,
    /// and an awaited echo at its start is recognised; each piece is then
    /// handled (and echoed) on its own, so the bytes echoed are still exactly
    /// the bytes received. On a stream's endpoint ([`for_streams`]) a read
    /// that ends inside a message keeps that start for the next read.
    ///
    /// [`for_streams`]: IblEndpoint::for_streams
    pub fn handle_input(&mut self, from: A, data: &[u8], now: Instant) {
        let _ = now; // the echo rule needs no clock; kept for the call order
        let Some(unfinished) = &mut self.unfinished else {
            return self.handle_read(from, data);
        };
        let mut kept = unfinished.remove(&from).unwrap_or_default();
        // Parsed again only once a value may have ended, or what is kept
        // has doubled since (to find what is not JSON): a peer that sends
        // a message a byte at a time costs a few passes over it, not one
        // a byte.
        let may_end = kept.read(data);
        let grown = kept.bytes.len() >= 2 * kept.parsed_at;
        if !may_end && !grown && kept.bytes.len() <= MAX_MESSAGE {
            unfinished.insert(from, kept);
            return;
        }
        self.parses += 1;
        let data = kept.bytes;
        let (whole, rest) = data.split_at(unfinished_from(&data));
        if rest.len() <= MAX_MESSAGE {
            if !rest.is_empty() {
                let mut start = Unfinished::default();
                start.read(rest);
                start.parsed_at = rest.len();
                unfinished.insert(from.clone(), start);
            }
            if !whole.is_empty() {
                self.handle_read(from, whole);
            }
        } else {
            // Longer than any message can be: it is not one, and is
            // handled (echoed, reported) as it is.
            if !whole.is_empty() {
                self.handle_read(from.clone(), whole);
            }
            self.handle_one(from, rest);
        }
    }

    /// Whole messages from `from`: an awaited echo at their start, then
    /// each value on its own.
    fn handle_read(&mut self, from: A, data: &[u8]) {
        let mut data = data;
        if let Some(awaited) = self.awaited.get(&from) {
            let sent = awaited.sent.clone();
            if data.len() > sent.len() && data.starts_with(&sent) {
                self.handle_one(from.clone(), &sent);
                data = &data[sent.len()..];
            }
        }
        let pieces = split_values(data);
        if pieces.len() > 1 {
            for piece in pieces {
                self.handle_one(from.clone(), piece);
            }
        } else {
            self.handle_one(from, data);
        }
    }

    fn handle_one(&mut self, from: A, data: &[u8]) {
        if let Some(awaited) = self.awaited.get(&from) {
            if awaited.sent[..] == *data {
                self.awaited.remove(&from);
                self.events
                    .push_back(IblEndpointEvent::Confirmed { to: from });
                return;
            }
            if IblMessage::decode(data).is_err() {
                let sent = awaited.sent.len();
                self.awaited.remove(&from);
                self.events.push_back(IblEndpointEvent::EchoFailed {
                    to: from,
                    error: IblEchoError::Mismatch {
                        sent,
                        got: data.len(),
                    },
                });
                return;
            }
            // A message of the peer's own crossed our send: handle it as one.
        }
        // Echo before handling; error reports are never echoed (iblutil
        // tests the second character of the text for '0').
        if data.get(1) != Some(&b'0') {
            self.transmits
                .push_back((from.clone(), Bytes::copy_from_slice(data)));
        }
        // On a stream, what separates messages may arrive alone: echoed
        // (the echoed stream stays the stream received), not a message.
        if self.unfinished.is_some() && data.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let event = match IblMessage::decode(data) {
            Ok(message) => IblEndpointEvent::Received { from, message },
            Err(error) => IblEndpointEvent::Malformed { from, error },
        };
        self.events.push_back(event);
    }

    /// The transport to `to` ended (a TCP connection): its awaited echo fails.
    pub fn handle_disconnect(&mut self, to: &A) {
        if let Some(unfinished) = &mut self.unfinished {
            unfinished.remove(to);
        }
        if self.awaited.remove(to).is_some() {
            self.events.push_back(IblEndpointEvent::EchoFailed {
                to: to.clone(),
                error: IblEchoError::Disconnected,
            });
        }
        self.transmits.retain(|(a, _)| a != to);
    }

    /// `to` said nothing listens there (`why`: a UDP socket's "connection
    /// refused", from an ICMP port unreachable): its awaited echo fails at
    /// once instead of at the echo timeout. Nothing else changes: a rig
    /// started later is reached by the next send.
    pub fn handle_unreachable(&mut self, to: &A, why: &str) {
        if self.awaited.remove(to).is_some() {
            self.events.push_back(IblEndpointEvent::EchoFailed {
                to: to.clone(),
                error: IblEchoError::Unreachable(why.to_owned()),
            });
        }
    }

    /// Lets time pass: echoes not back by their deadline fail.
    pub fn handle_timeout(&mut self, now: Instant) {
        let late: Vec<A> = self
            .awaited
            .iter()
            .filter(|(_, a)| a.deadline <= now)
            .map(|(to, _)| to.clone())
            .collect();
        for to in late {
            if let Some(a) = self.awaited.remove(&to) {
                self.events.push_back(IblEndpointEvent::EchoFailed {
                    to,
                    error: IblEchoError::Timeout(a.timeout),
                });
            }
        }
    }

    /// The next bytes to send, and where.
    pub fn poll_transmit(&mut self) -> Option<(A, Bytes)> {
        self.transmits.pop_front()
    }

    /// The next thing that happened.
    pub fn poll_event(&mut self) -> Option<IblEndpointEvent<A>> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.awaited.values().map(|a| a.deadline).min()
    }
}

/// What a rig answers to `message`, as a Python rig built on iblutil does:
/// for a lifecycle step, the same event back with its new status (which is
/// what iblutil's `Services` waits for from each rig); for a status or info
/// request, its status; for a step out of order, an error report
/// `[0, "RuntimeError: ...", event]`. `None` when nothing is owed (error
/// reports, Alyx tokens, which this rig does not hold).
pub fn rig_answer(
    lifecycle: &mut crate::lifecycle::Lifecycle,
    message: &IblMessage,
    rig_name: &str,
) -> Option<IblMessage> {
    use crate::lifecycle::Step;
    let step = match message.event {
        IblEvent::Init => Step::Init,
        IblEvent::Start => Step::Start,
        IblEvent::End => Step::Stop,
        IblEvent::Interrupt => Step::Interrupt,
        IblEvent::Cleanup => Step::Cleanup,
        IblEvent::Status => return Some(IblMessage::status(lifecycle.status().code().into())),
        IblEvent::Info => {
            let info = lifecycle.info();
            let exp_ref = info.exp_ref.map(|r| r.to_string());
            return Some(IblMessage::info(
                info.status.code().into(),
                serde_json::json!({ "name": rig_name, "exp_ref": exp_ref }),
            ));
        }
        _ => return None,
    };
    let exp_ref = message.field(0).as_str().map(str::to_owned);
    let status = match lifecycle.apply(step, exp_ref.as_deref().and_then(|r| r.parse().ok())) {
        Ok(status) => serde_json::json!({ "status": status.code() }),
        Err(e) => {
            return Some(IblMessage::error(
                "RuntimeError",
                &e.to_string(),
                message.event,
            ))
        }
    };
    Some(match message.event {
        IblEvent::Init => IblMessage::init(status),
        IblEvent::Start => IblMessage::start(exp_ref.as_deref(), status),
        IblEvent::Cleanup => IblMessage::cleanup(status),
        event => IblMessage::stop(status, event == IblEvent::Interrupt),
    })
}
