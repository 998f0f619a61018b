//! Transports chosen by URL: `tcp://host:port`, `tls://host:port`,
//! `unix:///path`, `ws://host:port/path`, `wss://host:port/path`. A connection is one socket: whichever thread holds
//! the [`Reader`] blocks in reads bounded by a timeout; writes never block
//! ([`Socket::try_send`]); a thread that must wait for room in the kernel's
//! buffer waits with [`Socket::wait`], bounded by a deadline.

use std::io::{self, IoSlice};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rigwire_core::link::Connecting;
pub use rigwire_core::Url;
use rigwire_core::{Config, Error, TlsSettings};
use rigwire_twin::Bound;
use rigwire_ws::{client_opening, Opening, OpeningError, Served, Wire};

/// A connected socket of either family, by its descriptor. Its handles
/// share that descriptor ([`share`](Self::share)): a connection costs one
/// file, not one per thread that reads, writes or closes it.
#[derive(Debug, Clone)]
pub(crate) struct Socket(Arc<OwnedFd>);

impl Socket {
    fn new(fd: impl Into<OwnedFd>) -> Socket {
        Socket(Arc::new(fd.into()))
    }

    /// Another handle on the same socket.
    pub(crate) fn share(&self) -> Socket {
        self.clone()
    }

    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        use rustix::net::sockopt::{set_socket_timeout, Timeout};
        Ok(set_socket_timeout(self, Timeout::Recv, t)?)
    }

    /// Blocks until some bytes arrive (0 at the end of the stream), the
    /// read timeout passes (`WouldBlock`) or the read fails.
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(rustix::io::read(self, buf)?)
    }

    /// Writes what the kernel takes now, without blocking (and without
    /// `SIGPIPE` on a closed peer); `WouldBlock` if it takes nothing.
    pub(crate) fn try_send(&self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        use rustix::net::{send, sendmsg, SendAncillaryBuffer, SendFlags};
        let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
        let sent = match slices {
            // One chunk is the common case, and `send` is the cheaper call.
            [one] => send(self, one, flags),
            _ => sendmsg(self, slices, &mut SendAncillaryBuffer::default(), flags),
        };
        sent.map_err(io::Error::from)
    }

    /// Writes all of `bytes`, waiting for room within `deadline`.
    fn send_all(&self, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.try_send(&[IoSlice::new(bytes)]) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    self.wait(false, true, Some(deadline))?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Waits until the socket is readable (if `read`) or writable (if
    /// `write`), or `deadline` passes. Returns (readable, writable); a
    /// closed or failed socket counts as both.
    pub(crate) fn wait(
        &self,
        read: bool,
        write: bool,
        deadline: Option<Instant>,
    ) -> io::Result<(bool, bool)> {
        use rustix::event::PollFlags;
        let mut events = PollFlags::empty();
        events.set(PollFlags::IN, read);
        events.set(PollFlags::OUT, write);
        let ready = poll_ready(&[(self.as_fd(), events)], deadline)?;
        let got = ready.first().copied().unwrap_or(PollFlags::empty());
        let broken = got.intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL);
        Ok((
            broken || got.contains(PollFlags::IN),
            broken || got.contains(PollFlags::OUT),
        ))
    }

    /// Shuts down one side or both; a thread blocked reading it wakes with
    /// end of stream. A socket already gone is no error.
    pub(crate) fn shutdown(&self, how: Shutdown) {
        use rustix::net::Shutdown as Side;
        let side = match how {
            Shutdown::Read => Side::Read,
            Shutdown::Write => Side::Write,
            Shutdown::Both => Side::Both,
        };
        let _ = rustix::net::shutdown(self, side);
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Polls `fds` for their events until one is ready or `deadline` passes;
/// returns what each got (nothing for all when interrupted).
fn poll_ready(
    fds: &[(BorrowedFd<'_>, rustix::event::PollFlags)],
    deadline: Option<Instant>,
) -> io::Result<Vec<rustix::event::PollFlags>> {
    use rustix::event::{poll, PollFd, Timespec};
    let timeout = deadline
        .map(|d| Timespec::try_from(d.saturating_duration_since(Instant::now())))
        .transpose()
        .map_err(|_| io::Error::other("timeout out of range"))?;
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|(fd, events)| PollFd::from_borrowed_fd(*fd, *events))
        .collect();
    match poll(&mut polled, timeout.as_ref()) {
        Ok(_) => Ok(polled.iter().map(PollFd::revents).collect()),
        Err(rustix::io::Errno::INTR) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// The receiving side of a connection: held by whichever thread reads.
#[derive(Debug)]
pub(crate) struct Reader {
    socket: Socket,
    buf: Vec<u8>,
    /// The read timeout currently set on the socket, to skip needless system calls.
    timeout: Option<Duration>,
}

/// The read buffer a connection starts with (and takes again after it was
/// parked, holding none); the first read that fills it grows it to
/// [`READ_CHUNK`].
///
/// [`READ_CHUNK`]: rigwire_core::link::READ_CHUNK
const SMALL_READ: usize = 2048;

/// What one read produced.
pub(crate) enum Received {
    /// `n` bytes are in [`Reader::buf`]; 0 is the end of the stream.
    Data(usize),
    /// Nothing arrived before the deadline.
    TimedOut,
    /// The read failed.
    Failed(io::Error),
}

impl Reader {
    /// A reader on `socket`.
    pub(crate) fn new(socket: &Socket) -> io::Result<Reader> {
        Ok(Reader {
            socket: socket.share(),
            buf: vec![0; SMALL_READ],
            timeout: None,
        })
    }

    /// The bytes of the last read.
    pub(crate) fn buf(&self) -> &[u8] {
        &self.buf
    }

    /// Blocks until data arrives, the transport closes, or `deadline` passes;
    /// reads into `room` when given (the rest of a large frame), else into
    /// its own buffer ([`buf`](Self::buf)).
    pub(crate) fn read(&mut self, deadline: Option<Instant>, room: Option<&mut [u8]>) -> Received {
        let wanted = deadline.map(|d| {
            d.saturating_duration_since(Instant::now())
                .max(Duration::from_micros(500))
        });
        // Re-arm only when the armed timeout would wake more than a
        // millisecond late, or far too early: the deadline that matters most
        // (keepalive) moves by microseconds with every message, and a
        // system call per read costs more than the read's own work.
        let slack = Duration::from_millis(1);
        let rearm = match (self.timeout, wanted) {
            (None, None) => false,
            (Some(cur), Some(want)) => cur > want + slack || cur < want / 2,
            _ => true,
        };
        if rearm {
            if let Err(e) = self.socket.set_read_timeout(wanted) {
                return Received::Failed(e);
            }
            self.timeout = wanted;
        }
        if let Some(room) = room {
            return match self.socket.read(room) {
                Ok(n) => Received::Data(n),
                Err(e) => Self::failed(e),
            };
        }
        self.unshrink();
        match self.socket.read(&mut self.buf) {
            Ok(n) => {
                // A full buffer: more is coming than an idle connection's
                // small one holds; read in large chunks from now on.
                if n == self.buf.len() && n < rigwire_core::link::READ_CHUNK {
                    self.buf.resize(rigwire_core::link::READ_CHUNK, 0);
                }
                Received::Data(n)
            }
            Err(e) => Self::failed(e),
        }
    }

    /// Reads what is there now, without waiting (for a parked connection's
    /// poller, which knows the socket is readable).
    pub(crate) fn try_read(&mut self) -> Received {
        use rustix::net::{recv, RecvFlags};
        self.unshrink();
        match recv(&self.socket, &mut self.buf[..], RecvFlags::DONTWAIT) {
            Ok((n, _)) => Received::Data(n),
            Err(e) => Self::failed(e.into()),
        }
    }

    /// Gives back the buffer: a parked connection holds none; the next
    /// read takes a small one again.
    pub(crate) fn shrink(&mut self) {
        self.buf = Vec::new();
    }

    fn unshrink(&mut self) {
        if self.buf.is_empty() {
            self.buf = vec![0; SMALL_READ];
        }
    }

    /// A timeout (or an interrupted read) is not a failure.
    fn failed(e: io::Error) -> Received {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {
                Received::TimedOut
            }
            _ => Received::Failed(e),
        }
    }
}

/// Opens a connection's layers (TLS, websocket) over a blocking socket:
/// send what the opening produces, feed it what arrives, until it hands
/// back the wire or `deadline` passes (one deadline for the whole opening:
/// a peer that trickles bytes must not earn a fresh timeout with each).
fn open(
    socket: &mut Socket,
    mut opening: Opening,
    deadline: Instant,
) -> Result<Wire, OpeningError> {
    let mut buf = vec![0u8; 4096];
    let mut input: &[u8] = &[];
    let late =
        || OpeningError::Io("the TLS or websocket handshake did not complete in time".into());
    loop {
        let fed = opening.feed(input);
        let out = opening.take_output();
        if !out.is_empty() {
            // Last words (an alert, an HTTP refusal) matter less than the failure.
            let sent = socket.send_all(&out, deadline);
            if fed.is_ok() {
                sent.map_err(|e| OpeningError::Io(e.to_string()))?;
            }
        }
        if let Some(wire) = fed? {
            socket
                .set_read_timeout(None)
                .map_err(|e| OpeningError::Io(e.to_string()))?;
            return Ok(wire);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(late());
        }
        socket
            .set_read_timeout(Some(left))
            .map_err(|e| OpeningError::Io(e.to_string()))?;
        let n = socket.read(&mut buf).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => late(),
            _ => OpeningError::Io(format!("handshake: {e}")),
        })?;
        if n == 0 {
            return Err(OpeningError::Io(
                "the peer closed the connection in the TLS or websocket handshake".into(),
            ));
        }
        input = &buf[..n];
    }
}

/// Connects to `endpoint` and opens its layers (TLS as `config` says,
/// websocket), by the attempt's deadline.
pub(crate) fn connect(
    endpoint: &Url,
    config: &Config,
    attempt: &Connecting,
) -> Result<(Socket, Wire), Error> {
    let fail = |reason: String| Error::Connect {
        url: endpoint.to_string(),
        reason,
    };
    let mut socket = match endpoint {
        Url::Unix(path) => Socket::new(
            UnixStream::connect(path)
                .map_err(|e| fail(rigwire_twin::why_not_connected(&e, true)))?,
        ),
        _ => Socket::new(dial_tcp(endpoint.addr().unwrap_or_default(), attempt).map_err(fail)?),
    };
    let opening = client_opening(endpoint, &config.tls, config.protocol.max_frame)?;
    let wire = open(&mut socket, opening, attempt.by()).map_err(|e| e.into_error(endpoint))?;
    Ok((socket, wire))
}

/// Dials each address `addr` resolves to in turn, all by the attempt's
/// deadline, the lookup of a name included.
fn dial_tcp(addr: &str, attempt: &Connecting) -> Result<TcpStream, String> {
    let mut last = None;
    let left = attempt.left(Instant::now());
    for sa in rigwire_twin::resolve_within(addr, left, rigwire_twin::system_lookup)? {
        let left = attempt.left(Instant::now());
        if left.is_zero() {
            return Err(attempt.ran_out(last.as_deref()));
        }
        match TcpStream::connect_timeout(&sa, left) {
            Ok(s) => {
                s.set_nodelay(true).map_err(|e| e.to_string())?;
                return Ok(s);
            }
            Err(e) => last = Some(rigwire_twin::why_not_connected(&e, false)),
        }
    }
    Err(last.unwrap_or_else(|| format!("{addr} resolved to no address")))
}

/// A bound listening socket, with the TLS identity it serves (`tls://`, `wss://`).
#[derive(Debug)]
pub(crate) struct Listener {
    socket: ListeningSocket,
    /// The URL bound (with the port the OS chose for port 0) and its TLS identity.
    served: Served,
}

#[derive(Debug)]
enum ListeningSocket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Binds `endpoint`, reading the TLS identity `tls` names when it
    /// asks for TLS. A stale Unix socket file is replaced only if nothing
    /// answers on it.
    pub(crate) fn bind(endpoint: &Url, tls: &TlsSettings) -> Result<Listener, Error> {
        let served = Served::new(endpoint, tls)?;
        Ok(match rigwire_twin::bind(endpoint)? {
            Bound::Unix(socket) => Listener {
                socket: ListeningSocket::Unix(socket),
                served,
            },
            Bound::Tcp(socket, addr) => Listener {
                socket: ListeningSocket::Tcp(socket),
                served: served.bound_at(addr),
            },
        })
    }

    /// The endpoint actually bound (with the port the OS chose for port 0).
    pub(crate) fn local_endpoint(&self) -> &Url {
        self.served.url()
    }

    /// The fingerprint of the TLS certificate served, if any.
    pub(crate) fn fingerprint(&self) -> Option<&str> {
        self.served.fingerprint()
    }

    /// Waits for the next connection; its layers are not yet open.
    pub(crate) fn accept(&self) -> io::Result<Socket> {
        match &self.socket {
            ListeningSocket::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nodelay(true)?;
                Ok(Socket::new(s))
            }
            ListeningSocket::Unix(l) => Ok(Socket::new(l.accept()?.0)),
        }
    }

    /// Whether accepted sockets open layers (TLS, websocket) before rigwire
    /// speaks; on a plain stream the server's Hello goes out at once.
    pub(crate) fn needs_opening(&self) -> bool {
        self.served.needs_opening()
    }

    /// Waits until a connection can be accepted (if `listen`) or one of
    /// `waiting` has sent something (or closed), or `deadline` passes.
    /// Returns whether the listener is ready, and which of `waiting` are.
    pub(crate) fn wait_any(
        &self,
        listen: bool,
        waiting: &[&Socket],
        deadline: Option<Instant>,
    ) -> io::Result<(bool, Vec<usize>)> {
        use rustix::event::PollFlags;
        let listener: BorrowedFd<'_> = match &self.socket {
            ListeningSocket::Tcp(l) => l.as_fd(),
            ListeningSocket::Unix(l) => l.as_fd(),
        };
        // Not listening: looked at for nothing, so never ready.
        let wanted = if listen {
            PollFlags::IN
        } else {
            PollFlags::empty()
        };
        let mut fds = vec![(listener, wanted)];
        fds.extend(waiting.iter().map(|s| (s.as_fd(), PollFlags::IN)));
        let ready = poll_ready(&fds, deadline)?;
        let spoke = (1..ready.len()).filter(|&i| !ready[i].is_empty());
        let listener_ready = listen && ready.first().is_some_and(|r| !r.is_empty());
        Ok((listener_ready, spoke.map(|i| i - 1).collect()))
    }

    /// Wakes a thread blocked in `accept` by connecting to ourselves.
    pub(crate) fn wake(&self) {
        match self.served.url() {
            Url::Unix(path) => {
                let _ = UnixStream::connect(path);
            }
            url => {
                let addr = url.addr().unwrap_or_default();
                let _ = TcpStream::connect_timeout(
                    &addr.parse().expect("a bound address parses"),
                    Duration::from_secs(1),
                );
            }
        }
    }

    /// Removes a Unix socket file after use.
    pub(crate) fn cleanup(&self) {
        if let Url::Unix(path) = self.served.url() {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Opens an accepted socket's layers (TLS, websocket), within `timeout`.
    pub(crate) fn open(
        &self,
        mut socket: Socket,
        max_frame: u32,
        timeout: Duration,
    ) -> Result<(Socket, Wire), OpeningError> {
        let opening = self.served.opening(max_frame)?;
        let wire = open(
            &mut socket,
            opening,
            rigwire_core::link::after(Instant::now(), timeout),
        )?;
        Ok((socket, wire))
    }
}
