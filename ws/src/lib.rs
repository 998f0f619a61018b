//! # rigwire-ws: the byte layers without I/O: websocket and TLS
//!
//! tungstenite cannot split a websocket into halves that read and write at
//! once, and a runtime that owns its sockets wants no library doing I/O. So
//! this crate runs tungstenite over in-memory buffers: the runtime reads
//! bytes from its socket and hands them in, and writes out what comes back.
//! The HTTP upgrade works the same way ([`Handshake`]), then [`WsCodec`] turns
//! bytes into whole binary messages (one rigwire frame each) and back.
//!
//! [`tls`] runs rustls (also sans-IO) under the stream (`tls://`) or under
//! the websocket (`wss://`). [`Opening`] opens a connection's layers (the
//! TLS handshake, then the upgrade) and hands back its [`Wire`]: the byte
//! side of a connection for every runtime, plain streams or websocket
//! messages, with or without TLS, and which of the link's output bytes a
//! socket write completed.
//!
//! Limits: messages and frames are capped at the protocol's frame limit (plus
//! the websocket header), and tungstenite's write buffer is bounded.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

use std::io::{self, Read, Write};

mod opening;
pub mod tls;
mod wire;

#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub use opening::{client_opening, server_identity, Opening, OpeningError, Served};
pub use rustls;
pub use tls::{ClientTls, ServerTls};
pub use wire::{Flushed, Outbox, Sink, Wire, ENCODE_AHEAD, MAX_SLICES};

use bytes::{Bytes, BytesMut};
use rigwire_core::framing::PRE_AUTH_MAX_FRAME;
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::handshake::server::{Callback, ErrorResponse, Request, Response, ServerHandshake};
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

/// In-memory stream tungstenite runs over: reads drain `inbound`
/// (`WouldBlock` when empty), writes append to `outbound`.
#[derive(Debug, Default)]
struct Shim {
    inbound: BytesMut,
    outbound: Vec<u8>,
}

impl Read for Shim {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.inbound.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.inbound.len());
        buf[..n].copy_from_slice(&self.inbound.split_to(n));
        Ok(n)
    }
}

impl Write for Shim {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outbound.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn config(max_frame: u32) -> WebSocketConfig {
    limit(WebSocketConfig::default(), max_frame)
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
}

/// Messages and frames capped at a rigwire frame of `max_frame` bytes plus
/// the websocket header.
fn limit(config: WebSocketConfig, max_frame: u32) -> WebSocketConfig {
    let max = max_frame as usize + 64;
    config
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        .max_write_buffer_size(2 * max)
}

/// Only `path` is served; anything else gets a 404 with a reason.
#[derive(Debug, Clone)]
struct PathCheck(String);

impl Callback for PathCheck {
    fn on_request(self, request: &Request, response: Response) -> Result<Response, ErrorResponse> {
        if request.uri().path() == self.0 {
            return Ok(response);
        }
        let mut refused = ErrorResponse::new(Some(format!(
            "no rigwire endpoint at {}; this server's is at {}",
            request.uri().path(),
            self.0
        )));
        *refused.status_mut() = tungstenite::http::StatusCode::NOT_FOUND;
        Err(refused)
    }
}

enum Mid {
    Client(MidHandshake<ClientHandshake<Shim>>),
    Server(MidHandshake<ServerHandshake<Shim, PathCheck>>),
}

/// The HTTP upgrade in progress. Send [`take_output`](Self::take_output),
/// feed what the peer answers with [`feed`](Self::feed) until it returns the
/// codec.
pub struct Handshake {
    mid: Option<Mid>,
    output: Vec<u8>,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("pending_output", &self.output.len())
            .finish()
    }
}

/// A failed upgrade, with the reason.
pub type HandshakeFailure = String;

impl Handshake {
    /// Starts the client side of the upgrade to `url` (`ws://host:port/path`).
    ///
    /// # Errors
    /// The reason, if `url` is not a websocket URL tungstenite accepts.
    pub fn client(url: &str, max_frame: u32) -> Result<Handshake, HandshakeFailure> {
        let started =
            tungstenite::client::client_with_config(url, Shim::default(), Some(config(max_frame)));
        Self::from_client(started.map(|(ws, _)| ws))
    }

    /// Starts the server side of the upgrade, serving only `path`.
    pub fn server(path: &str, max_frame: u32) -> Result<Handshake, HandshakeFailure> {
        let started = tungstenite::accept_hdr_with_config(
            Shim::default(),
            PathCheck(path.to_owned()),
            Some(config(max_frame)),
        );
        match started {
            Ok(_) => Err("the upgrade completed before the request arrived".into()),
            Err(HandshakeError::Interrupted(mid)) => Ok(Self::pending(Mid::Server(mid))),
            Err(HandshakeError::Failure(e)) => Err(format!("websocket handshake failed: {e}")),
        }
    }

    fn from_client(
        started: Result<WebSocket<Shim>, HandshakeError<ClientHandshake<Shim>>>,
    ) -> Result<Handshake, HandshakeFailure> {
        match started {
            Ok(_) => Err("the upgrade completed before the response arrived".into()),
            Err(HandshakeError::Interrupted(mid)) => Ok(Self::pending(Mid::Client(mid))),
            Err(HandshakeError::Failure(e)) => Err(format!("websocket handshake failed: {e}")),
        }
    }

    fn pending(mut mid: Mid) -> Handshake {
        let output = match &mut mid {
            Mid::Client(m) => std::mem::take(&mut m.get_mut().get_mut().outbound),
            Mid::Server(m) => std::mem::take(&mut m.get_mut().get_mut().outbound),
        };
        Handshake {
            mid: Some(mid),
            output,
        }
    }

    /// Bytes to send to the peer now.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Hands in bytes from the peer. `Ok(Some(codec))` once the upgrade is
    /// done (send [`take_output`](Self::take_output) first, then keep using the
    /// codec); `Ok(None)` while more bytes are needed.
    ///
    /// # Errors
    /// The reason the upgrade failed (bad response, wrong path, ...). A server
    /// that refuses leaves its HTTP answer in `take_output`: send it, then close.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<WsCodec>, HandshakeFailure> {
        let mid = self
            .mid
            .take()
            .ok_or("the handshake has already finished")?;
        let serving = matches!(mid, Mid::Server(_));
        let result = match mid {
            Mid::Client(mut m) => {
                m.get_mut().get_mut().inbound.extend_from_slice(bytes);
                match m.handshake() {
                    Ok((ws, _)) => Ok(ws),
                    Err(HandshakeError::Interrupted(m)) => Err(Ok(Mid::Client(m))),
                    Err(HandshakeError::Failure(e)) => Err(Err(e)),
                }
            }
            Mid::Server(mut m) => {
                m.get_mut().get_mut().inbound.extend_from_slice(bytes);
                match m.handshake() {
                    Ok(ws) => Ok(ws),
                    Err(HandshakeError::Interrupted(m)) => Err(Ok(Mid::Server(m))),
                    Err(HandshakeError::Failure(e)) => Err(Err(e)),
                }
            }
        };
        match result {
            Ok(mut ws) => {
                self.output.append(&mut ws.get_mut().outbound);
                Ok(Some(WsCodec::new(ws)))
            }
            Err(Ok(mut mid)) => {
                let out = match &mut mid {
                    Mid::Client(m) => &mut m.get_mut().get_mut().outbound,
                    Mid::Server(m) => &mut m.get_mut().get_mut().outbound,
                };
                self.output.append(out);
                self.mid = Some(mid);
                Ok(None)
            }
            Err(Err(e)) => {
                // A refused upgrade still owes the peer its HTTP answer; the
                // failed machine took tungstenite's copy with it.
                let tungstenite::Error::Http(response) = &e else {
                    return Err(format!("websocket handshake failed: {e}"));
                };
                let body = response.body().as_deref().unwrap_or_default();
                let status = response.status();
                // The reason a rigwire server gives; of another server's
                // page (HTML, say), a line at most.
                let why = String::from_utf8_lossy(body);
                let why = why.lines().next().unwrap_or_default().trim();
                let why = match why.char_indices().nth(160) {
                    _ if why.is_empty() => String::new(),
                    Some((cut, _)) => format!(": {}…", &why[..cut]),
                    None => format!(": {why}"),
                };
                if !serving {
                    return Err(format!(
                        "the server refused the websocket upgrade ({status}){why}"
                    ));
                }
                let head = format!(
                    "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or(""),
                    body.len()
                );
                self.output.extend_from_slice(head.as_bytes());
                self.output.extend_from_slice(body);
                Err(format!("refused a websocket upgrade ({status}){why}"))
            }
        }
    }
}

/// What decoding produced.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Whole binary messages, one rigwire frame each.
    pub frames: Vec<Bytes>,
    /// The peer sent a close frame or the stream ended.
    pub closed: bool,
}

/// An upgraded websocket, as a codec: bytes in, frames out, and back.
pub struct WsCodec {
    ws: WebSocket<Shim>,
    /// The limit after authentication; until [`open_up`](Self::open_up),
    /// messages are capped at the protocol's pre-authentication frame size,
    /// so a stranger cannot make us buffer a large message.
    full_limit: Option<u32>,
    /// The peer broke the framing (a violation, a text message, bad
    /// framing): what it sends after is discarded, never decoded.
    /// tungstenite's reader is not to be called again after an error: it
    /// keeps the header it refused, and reading on breaks its buffer's
    /// invariant (a panic in a debug build, a false end of stream in release).
    broken: bool,
}

impl std::fmt::Debug for WsCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WsCodec")
    }
}

impl WsCodec {
    fn new(mut ws: WebSocket<Shim>) -> WsCodec {
        let full = ws
            .get_config()
            .max_frame_size
            .unwrap_or(0)
            .saturating_sub(64) as u32;
        ws.set_config(|c| *c = limit(*c, PRE_AUTH_MAX_FRAME));
        WsCodec {
            ws,
            full_limit: Some(full),
            broken: false,
        }
    }

    /// The peer has authenticated: messages up to the configured frame size
    /// are accepted from now on. Extra calls do nothing.
    pub fn open_up(&mut self) {
        if let Some(full) = self.full_limit.take() {
            self.ws.set_config(|c| *c = limit(*c, full));
        }
    }

    /// Whether [`open_up`](Self::open_up) is still to come.
    pub fn is_pre_auth(&self) -> bool {
        self.full_limit.is_some()
    }

    /// Hands in bytes from the peer (possibly none, to collect what the
    /// upgrade already buffered) and returns the whole messages they complete.
    /// Pings are answered by queueing pongs in [`take_output`](Self::take_output).
    ///
    /// # Errors
    /// A text message, an over-limit message, or broken framing.
    pub fn decode(&mut self, bytes: &[u8]) -> io::Result<Decoded> {
        self.push(bytes);
        let mut decoded = Decoded::default();
        while let Some(next) = self.next_frame()? {
            match next {
                Some(frame) => decoded.frames.push(frame),
                None => {
                    decoded.closed = true;
                    break;
                }
            }
        }
        Ok(decoded)
    }

    /// Hands in bytes from the peer without decoding them yet (none once
    /// the peer has broken the framing).
    pub fn push(&mut self, bytes: &[u8]) {
        if !self.broken {
            self.ws.get_mut().inbound.extend_from_slice(bytes);
        }
    }

    /// The next whole message from what was handed in: `Some(Some(frame))`,
    /// `Some(None)` when the peer closed, `None` when more bytes are needed.
    /// One at a time, so that a limit raised after one frame (the end of
    /// authentication) applies to the next.
    ///
    /// # Errors
    /// A text message, an over-limit message, or broken framing.
    pub fn next_frame(&mut self) -> io::Result<Option<Option<Bytes>>> {
        if self.broken {
            return Ok(None);
        }
        let next = self.read_next();
        if next.is_err() {
            self.broken = true;
            self.ws.get_mut().inbound.clear();
        }
        next
    }

    fn read_next(&mut self) -> io::Result<Option<Option<Bytes>>> {
        loop {
            match self.ws.read() {
                Ok(Message::Binary(data)) => return Ok(Some(Some(data))),
                Ok(Message::Close(_)) => return Ok(Some(None)),
                Ok(Message::Text(_)) => return Err(Violation::Text.into()),
                Ok(_) => {} // ping/pong: tungstenite queues the answer
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(None)
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Ok(Some(None))
                }
                Err(tungstenite::Error::Capacity(
                    tungstenite::error::CapacityError::MessageTooLong { size, .. },
                )) => return Err(Violation::TooLarge(size as u64).into()),
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
        }
    }

    /// Frames one rigwire frame as a binary message into the output.
    ///
    /// # Errors
    /// Only if the frame exceeds the configured limits.
    pub fn encode(&mut self, frame: Bytes) -> io::Result<()> {
        self.ws.write(Message::Binary(frame)).map_err(ws_io)?;
        match self.ws.flush() {
            Ok(()) => Ok(()),
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(ws_io(e)),
        }
    }

    /// Queues a websocket Close frame: the rigwire connection has ended and
    /// its last frames are queued before it (spec §1.1). Nothing after it is
    /// sent.
    pub fn close(&mut self) {
        // Already closing or closed: nothing more to say.
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }

    /// Bytes to send to the peer now (frames and control answers, in order).
    pub fn take_output(&mut self) -> Vec<u8> {
        let _ = self.ws.flush();
        std::mem::take(&mut self.ws.get_mut().outbound)
    }
}

/// A websocket message rigwire does not accept: a protocol violation the
/// rigwire connection answers (`Reject{Protocol}` or `Goodbye`, spec §1.1),
/// unlike broken websocket framing, which just ends the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// A message over the limit, of this many bytes; dropped unread.
    #[error("a websocket message of {0} bytes, over the frame limit")]
    TooLarge(u64),
    /// A text message; rigwire frames travel as binary messages only.
    #[error("a text websocket message; rigwire frames travel as binary messages")]
    Text,
}

impl From<Violation> for io::Error {
    fn from(v: Violation) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, v)
    }
}

impl Violation {
    /// The violation `e` reports, if it reports one.
    pub fn of(e: &io::Error) -> Option<Violation> {
        e.get_ref()?.downcast_ref::<Violation>().copied()
    }
}

fn ws_io(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs both handshakes against each other in memory.
    pub(crate) fn upgraded(path: &str) -> Result<(WsCodec, WsCodec), String> {
        let mut client = Handshake::client("ws://rig:1/data", 1 << 20)?;
        let mut server = Handshake::server(path, 1 << 20)?;
        let mut c = None;
        let mut s = None;
        for _ in 0..10 {
            let to_server = client.take_output();
            if s.is_none() {
                s = server.feed(&to_server)?;
            }
            let to_client = server.take_output();
            if c.is_none() && !to_client.is_empty() {
                c = client.feed(&to_client)?;
            }
            if let (Some(_), Some(_)) = (&c, &s) {
                return Ok((c.unwrap(), s.unwrap()));
            }
        }
        Err("no progress".into())
    }

    #[test]
    fn frames_cross_both_ways_after_an_in_memory_upgrade() {
        let (mut client, mut server) = upgraded("/data").unwrap();
        client.encode(Bytes::from_static(b"hello")).unwrap();
        client.encode(Bytes::from_static(b"")).unwrap();
        let wire = client.take_output();
        // Split anywhere: same frames.
        let (a, b) = wire.split_at(3);
        let mut frames = server.decode(a).unwrap().frames;
        frames.extend(server.decode(b).unwrap().frames);
        assert_eq!(frames, vec![Bytes::from_static(b"hello"), Bytes::new()]);
        server.encode(Bytes::from_static(b"back")).unwrap();
        assert_eq!(
            client.decode(&server.take_output()).unwrap().frames,
            vec![Bytes::from_static(b"back")]
        );
    }

    /// Spec §1.1: a text message and a message over the limit are
    /// protocol violations the connection answers; a closing side ends with
    /// a Close frame, after its last frames.
    #[test]
    fn text_and_oversized_messages_are_violations_and_close_ends_the_stream() {
        let (mut client, mut server) = upgraded("/data").unwrap();
        client.ws.write(Message::text("[1, 2]")).unwrap();
        client.ws.flush().unwrap();
        let err = server.decode(&client.take_output()).unwrap_err();
        assert_eq!(Violation::of(&err), Some(Violation::Text));

        let (mut client, mut server) = upgraded("/data").unwrap();
        // Before authentication the cap is the pre-handshake frame limit.
        client.encode(Bytes::from(vec![0; 5000])).unwrap();
        let err = server.decode(&client.take_output()).unwrap_err();
        assert!(
            matches!(Violation::of(&err), Some(Violation::TooLarge(n)) if n >= 5000),
            "{err}"
        );

        let (mut client, mut server) = upgraded("/data").unwrap();
        server.encode(Bytes::from_static(b"goodbye")).unwrap();
        server.close();
        let decoded = client.decode(&server.take_output()).unwrap();
        assert_eq!(decoded.frames, vec![Bytes::from_static(b"goodbye")]);
        assert!(decoded.closed);
        // Broken framing is not a violation of ours: it just ends the transport.
        let err = server.decode(&[0x8f, 0x80, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(Violation::of(&err), None);
    }

    #[test]
    fn a_wrong_path_is_refused_with_a_404_the_client_sees() {
        let err = upgraded("/other").unwrap_err();
        assert!(err.contains("404"), "{err}");
        let mut client = Handshake::client("ws://rig:1/data", 1 << 20).unwrap();
        let mut server = Handshake::server("/other", 1 << 20).unwrap();
        let refused = server.feed(&client.take_output()).unwrap_err();
        let why = "no rigwire endpoint at /data; this server's is at /other";
        assert_eq!(
            refused,
            format!("refused a websocket upgrade (404 Not Found): {why}")
        );
        let answer = server.take_output();
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 404 Not Found"));
        // The script that mistyped the path is told which one to use.
        let err = client.feed(&answer).unwrap_err();
        assert_eq!(
            err,
            format!("the server refused the websocket upgrade (404 Not Found): {why}")
        );
        // Another server's page is not copied into the error whole.
        let mut client = Handshake::client("ws://rig:1/data", 1 << 20).unwrap();
        client.take_output();
        let page = format!("<!doctype html>\n<body>{}</body>\n", "x".repeat(5000));
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{page}",
            page.len()
        );
        let err = client.feed(answer.as_bytes()).unwrap_err();
        assert!(
            err.starts_with("the server refused the websocket upgrade (200 OK)"),
            "{err}"
        );
        assert!(err.len() < 300 && !err.contains("<body>"), "{err}");
    }
}
