//! The conformance tester's own end of a connection: raw frames over tcp,
//! tls, unix, ws or wss, so that it can send what a correct peer never would (a wrong
//! magic, an oversized length prefix, garbage) and see exactly what comes
//! back. It deliberately does not use a `Connection`: the implementation
//! under test is judged by the spec, not by our core.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rigwire_std::core::{Message, Url};
use rigwire_ws::rustls::{ClientConnection, ServerConnection, StreamOwned};
use rigwire_ws::{ClientTls, ServerTls};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::WebSocket;

/// The largest frame the tester accepts, and announces in its `Hello`.
pub const OUR_MAX_FRAME: u32 = 1 << 20;

/// A byte stream of either family, or TLS over tcp (either end).
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    TlsClient(Box<StreamOwned<ClientConnection, TcpStream>>),
    TlsServer(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Stream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::TlsClient(s) => s.sock.set_read_timeout(t),
            Stream::TlsServer(s) => s.sock.set_read_timeout(t),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::TlsClient(s) => s.read(buf),
            Stream::TlsServer(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::TlsClient(s) => s.write(buf),
            Stream::TlsServer(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::TlsClient(s) => s.flush(),
            Stream::TlsServer(s) => s.flush(),
            _ => Ok(()),
        }
    }
}

enum Kind {
    /// Length-prefixed frames; what arrived and is not yet a whole frame.
    Framed(Stream, Vec<u8>),
    Ws(Box<WebSocket<Stream>>),
}

/// What waiting for the peer's next frame gave.
#[derive(Debug, Clone)]
pub enum Got {
    /// A whole frame body.
    Frame(Bytes),
    /// The peer closed the connection (or reset it).
    Closed,
    /// Nothing arrived in time.
    Silent,
    /// A frame announced over the limit we told the peer.
    TooLarge(usize),
}

impl Got {
    /// The message, if this is a frame that decodes.
    pub fn message(&self) -> Option<Message> {
        match self {
            Got::Frame(body) => Message::decode(body).ok(),
            _ => None,
        }
    }

    /// For reports: what arrived, in a few words.
    pub fn describe(&self) -> String {
        match self {
            Got::Frame(body) => match Message::decode(body) {
                Ok(m) => describe(&m),
                Err(e) => format!("an undecodable frame ({e})"),
            },
            Got::Closed => "the connection closed".into(),
            Got::Silent => "nothing".into(),
            Got::TooLarge(n) => format!("a frame of {n} bytes, over our limit {OUR_MAX_FRAME}"),
        }
    }
}

/// A message in a few words, for reports.
pub fn describe(m: &Message) -> String {
    match m {
        Message::Reject { code, reason } => format!("Reject{{{code:?}, {reason:?}}}"),
        Message::Goodbye { reason } => format!("Goodbye{{{reason:?}}}"),
        Message::Error {
            id, kind, message, ..
        } => format!("Error{{id {id}, {kind:?}, {message:?}}}"),
        Message::Reply { id, codec, result } => {
            let shown = String::from_utf8_lossy(&result[..result.len().min(60)]).into_owned();
            format!("Reply{{id {id}, {codec:?}, {shown:?}}}")
        }
        Message::Call { id, method, .. } => format!("Call{{id {id}, {method:?}}}"),
        Message::Cancel { id } => format!("Cancel{{id {id}}}"),
        Message::Ping { seq } => format!("Ping{{{seq}}}"),
        Message::Pong { seq } => format!("Pong{{{seq}}}"),
        Message::Echo { seq, .. } => format!("Echo{{{seq}}}"),
        other => other.type_name().to_owned(),
    }
}

/// One connection to or from the implementation under test.
pub struct Wire {
    kind: Kind,
    /// A websocket Close frame arrived.
    ws_closed: bool,
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(OUR_MAX_FRAME as usize + 1))
        .max_frame_size(Some(OUR_MAX_FRAME as usize + 1))
}

impl Wire {
    /// Dials `url`, trusting a TLS server as `tls` says.
    pub fn connect(url: &Url, tls: Option<&ClientTls>) -> io::Result<Wire> {
        let stream = |addr: &str| -> io::Result<Stream> {
            let socket = tcp(addr)?;
            if !url.is_tls() {
                return Ok(Stream::Tcp(socket));
            }
            let tls = tls.ok_or_else(|| io::Error::other("TLS needs --pin or --ca"))?;
            let session = tls.session(url).map_err(io::Error::other)?;
            Ok(Stream::TlsClient(Box::new(StreamOwned::new(
                session, socket,
            ))))
        };
        let kind = match url {
            Url::Tcp { addr, .. } => Kind::Framed(stream(addr)?, Vec::new()),
            Url::Unix(path) => Kind::Framed(Stream::Unix(UnixStream::connect(path)?), Vec::new()),
            Url::Ws { addr, path, .. } => {
                let stream = stream(addr)?;
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                let request = format!("ws://{addr}{path}");
                let (ws, _) =
                    tungstenite::client::client_with_config(request, stream, Some(ws_config()))
                        .map_err(io::Error::other)?;
                Kind::Ws(Box::new(ws))
            }
        };
        Ok(Wire {
            kind,
            ws_closed: false,
        })
    }

    /// Sends a websocket text message; `false` on a byte stream, which has
    /// no such thing.
    pub fn send_text(&mut self, text: &str) -> io::Result<bool> {
        match &mut self.kind {
            Kind::Framed(..) => Ok(false),
            Kind::Ws(ws) => ws
                .send(tungstenite::Message::text(text))
                .map(|()| true)
                .map_err(io::Error::other),
        }
    }

    /// Sends `body` as a binary websocket message in two fragments; `false`
    /// on a byte stream.
    pub fn send_fragmented(&mut self, body: &[u8]) -> io::Result<bool> {
        use tungstenite::protocol::frame::coding::{Data, OpCode};
        use tungstenite::protocol::frame::Frame;
        let Kind::Ws(ws) = &mut self.kind else {
            return Ok(false);
        };
        let (a, b) = body.split_at(body.len() / 2);
        let first = Frame::message(a.to_vec(), OpCode::Data(Data::Binary), false);
        let rest = Frame::message(b.to_vec(), OpCode::Data(Data::Continue), true);
        for frame in [first, rest] {
            ws.write(tungstenite::Message::Frame(frame))
                .map_err(io::Error::other)?;
        }
        ws.flush().map_err(io::Error::other)?;
        Ok(true)
    }

    /// Whether a websocket Close frame arrived.
    pub fn saw_ws_close(&self) -> bool {
        self.ws_closed
    }

    /// Sends one frame body (a length prefix or one binary message around it).
    pub fn send(&mut self, message: &Message) -> io::Result<()> {
        self.send_body(&message.encode())
    }

    /// Sends `body` as one frame, whatever it holds.
    pub fn send_body(&mut self, body: &[u8]) -> io::Result<()> {
        match &mut self.kind {
            Kind::Framed(s, _) => {
                let mut frame = (body.len() as u32).to_be_bytes().to_vec();
                frame.extend_from_slice(body);
                s.write_all(&frame)?;
                s.flush()
            }
            Kind::Ws(ws) => ws
                .send(tungstenite::Message::binary(body.to_vec()))
                .map_err(io::Error::other),
        }
    }

    /// Sends several frame bodies in one write (on websocket, one message
    /// each, flushed together).
    pub fn send_bodies(&mut self, bodies: &[Vec<u8>]) -> io::Result<()> {
        match &mut self.kind {
            Kind::Framed(s, _) => {
                let mut bytes = Vec::new();
                for body in bodies {
                    bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
                    bytes.extend_from_slice(body);
                }
                s.write_all(&bytes)?;
                s.flush()
            }
            Kind::Ws(ws) => {
                for body in bodies {
                    ws.write(tungstenite::Message::binary(body.clone()))
                        .map_err(io::Error::other)?;
                }
                ws.flush().map_err(io::Error::other)
            }
        }
    }

    /// Announces a frame of `len` bytes and sends `sent` of them: on byte
    /// streams a bare length prefix; on websocket, a whole binary message of
    /// `len` bytes (a websocket frame has no separate prefix).
    pub fn send_oversized(&mut self, len: u32, sent: usize) -> io::Result<()> {
        match &mut self.kind {
            Kind::Framed(s, _) => {
                let mut frame = len.to_be_bytes().to_vec();
                frame.resize(4 + sent, 0);
                s.write_all(&frame)?;
                s.flush()
            }
            Kind::Ws(_) => self.send_body(&vec![0; len as usize]),
        }
    }

    /// Waits up to `within` for the next frame.
    pub fn recv(&mut self, within: Duration) -> Got {
        let until = Instant::now() + within;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Got::Silent;
            }
            let left = Some(left.max(Duration::from_millis(1)));
            match &mut self.kind {
                Kind::Framed(s, buf) => {
                    if buf.len() >= 4 {
                        let len =
                            u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
                        if len > OUR_MAX_FRAME as usize {
                            return Got::TooLarge(len);
                        }
                        if buf.len() >= 4 + len {
                            let body = Bytes::copy_from_slice(&buf[4..4 + len]);
                            buf.drain(..4 + len);
                            return Got::Frame(body);
                        }
                    }
                    if s.set_read_timeout(left).is_err() {
                        return Got::Closed;
                    }
                    let mut chunk = [0u8; 64 * 1024];
                    match s.read(&mut chunk) {
                        Ok(0) => return Got::Closed,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        Err(e) if timed_out(&e) => {}
                        Err(_) => return Got::Closed,
                    }
                }
                Kind::Ws(ws) => {
                    if ws.get_ref().set_read_timeout(left).is_err() {
                        return Got::Closed;
                    }
                    match ws.read() {
                        Ok(tungstenite::Message::Binary(b)) => return Got::Frame(b),
                        Ok(tungstenite::Message::Close(_)) => {
                            self.ws_closed = true;
                            return Got::Closed;
                        }
                        Ok(_) => {}
                        Err(tungstenite::Error::Io(e)) if timed_out(&e) => {}
                        Err(tungstenite::Error::Capacity(_)) => {
                            return Got::TooLarge(OUR_MAX_FRAME as usize + 1)
                        }
                        Err(_) => return Got::Closed,
                    }
                }
            }
        }
    }

    /// Waits up to `within` for the next frame that is not keepalive
    /// (answering the peer's keepalive pings, so that we stay alive).
    pub fn next(&mut self, within: Duration) -> Got {
        let until = Instant::now() + within;
        loop {
            let got = self.recv(until.saturating_duration_since(Instant::now()));
            match got.message() {
                Some(Message::Ping { seq: 0 }) => {
                    let _ = self.send(&Message::Pong { seq: 0 });
                }
                Some(Message::Pong { seq: 0 }) => {}
                _ => return got,
            }
        }
    }

    /// Waits up to `within` for the connection to close, answering keepalive;
    /// returns what arrived instead, if anything but keepalive did.
    pub fn expect_close(&mut self, within: Duration) -> Result<(), Got> {
        match self.next(within) {
            Got::Closed => Ok(()),
            other => Err(other),
        }
    }
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn tcp(addr: &str) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Where the tester listens for a client under test.
pub struct Listener {
    socket: ListeningSocket,
    /// The URL bound, with the real port.
    url: Url,
    tls: Option<ServerTls>,
}

enum ListeningSocket {
    Tcp(TcpListener),
    /// A Unix socket, removed when dropped.
    Unix(UnixListener),
}

impl Listener {
    /// Binds `url`, serving `tls` when it is `tls://` or `wss://`.
    pub fn bind(url: &Url, tls: Option<ServerTls>) -> io::Result<Listener> {
        if url.is_tls() && tls.is_none() {
            return Err(io::Error::other(format!("{url} needs --cert and --key")));
        }
        let (socket, url) = match url {
            Url::Unix(path) => {
                let _ = std::fs::remove_file(path);
                (
                    ListeningSocket::Unix(UnixListener::bind(path)?),
                    url.clone(),
                )
            }
            _ => {
                let socket = TcpListener::bind(url.addr().unwrap_or_default())?;
                let bound = socket.local_addr()?.to_string();
                (ListeningSocket::Tcp(socket), url.at(bound))
            }
        };
        Ok(Listener { socket, url, tls })
    }

    /// The URL listened on, with the real port.
    pub fn local_url(&self) -> String {
        self.url.to_string()
    }

    /// Accepts the next connection, waiting up to `within`.
    pub fn accept(&self, within: Duration) -> io::Result<Wire> {
        let until = Instant::now() + within;
        let set_nonblocking = |on: bool| match &self.socket {
            ListeningSocket::Tcp(l) => l.set_nonblocking(on),
            ListeningSocket::Unix(l) => l.set_nonblocking(on),
        };
        set_nonblocking(true)?;
        let stream = loop {
            let accepted = match &self.socket {
                ListeningSocket::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
                ListeningSocket::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
            };
            match accepted {
                Ok(s) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no client connected within {} s", within.as_secs()),
                    ))
                }
                Err(e) => return Err(e),
            }
        };
        set_nonblocking(false)?;
        if let Stream::Tcp(s) = &stream {
            s.set_nodelay(true)?;
            s.set_nonblocking(false)?;
        }
        let stream = match (stream, &self.tls) {
            (Stream::Tcp(socket), Some(tls)) => {
                let session = tls.session().map_err(io::Error::other)?;
                Stream::TlsServer(Box::new(StreamOwned::new(session, socket)))
            }
            (stream, _) => stream,
        };
        let kind = match (self.url.ws_path(), stream) {
            (Some(_), stream) => {
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                let ws = tungstenite::accept_with_config(stream, Some(ws_config()))
                    .map_err(io::Error::other)?;
                Kind::Ws(Box::new(ws))
            }
            (_, stream) => Kind::Framed(stream, Vec::new()),
        };
        Ok(Wire {
            kind,
            ws_closed: false,
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Url::Unix(path) = &self.url {
            let _ = std::fs::remove_file(path);
        }
    }
}
