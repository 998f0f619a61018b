//! [`IblPeer`]: an `iblutil.io.net` communicator on smol, over UDP or plain
//! TCP (iblutil's `tcp://` and `ws://` are both plain TCP with no framing),
//! as a server bound locally or a client of one remote. The wire rules are
//! the core's [`rigwire_core::ibl`]; this is the socket loop around them.
//!
//! Every message received is echoed before anyone sees it. A confirmed send
//! waits for its echo (1 s by default); unlike iblutil, a failed echo fails
//! that send and the peer stays usable, and a lost TCP connection is
//! reported to whoever waits instead of passing silently.

use std::collections::{BTreeMap, VecDeque};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_listener::Event;
use rigwire_core::ibl::{
    IblEchoError, IblEndpoint, IblEndpointEvent, IblError, IblEvent, IblMessage, WritePacing,
    DEFAULT_ECHO_TIMEOUT, DEFAULT_PORT,
};
use rigwire_core::Error;
use serde_json::Value;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{future, Async, Task};

use crate::driver::sleep_until;
use crate::transport::accept_paced;
use rigwire_core::link::AcceptFailures;

/// Messages kept for [`IblPeer::next_message`] before the oldest are dropped.
const INBOX_LIMIT: usize = 1024;

/// Departed TCP peers whose reason is kept, to tell a later send why.
const LOST_KEPT: usize = 64;

/// The most bytes one datagram or read takes: a whole message
/// ([`rigwire_core::ibl::MAX_MESSAGE`]) and more.
const READ_BUF: usize = 64 * 1024;

/// One TCP connection: its stream, and one writer at a time, spaced.
struct TcpConn {
    stream: Async<TcpStream>,
    /// Held across a write (async), so that writes never interleave.
    writing: smol::lock::Mutex<WritePacing>,
}

/// Whether `url` is TCP, and its address, its host looked up:
/// `udp://host:port` or `tcp://host:port` (also `ws://`, which iblutil
/// treats as plain TCP); no scheme means UDP, no port means 11001.
async fn address_of(url: &str) -> Result<(bool, SocketAddr), Error> {
    let invalid = |why: &str| Error::InvalidUrl {
        url: url.to_owned(),
        reason: why.to_owned(),
    };
    let (scheme, rest) = url.split_once("://").unwrap_or(("udp", url));
    // Schemes are case-insensitive (RFC 3986), as rigwire's own URLs.
    let tcp = match scheme.to_ascii_lowercase().as_str() {
        "udp" => false,
        "tcp" | "ws" | "wss" => true,
        _ => {
            return Err(invalid(
                "iblutil speaks udp:// or tcp:// (ws:// is plain TCP too)",
            ))
        }
    };
    let rest = rest.trim_end_matches('/');
    let with_port = if rest
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        rest.to_owned()
    } else {
        format!("{rest}:{DEFAULT_PORT}")
    };
    // A name the resolver does not know is not a mistake in the URL.
    let unknown = |why: String| Error::Connect {
        url: url.to_owned(),
        reason: format!("looking up {with_port}: {why}"),
    };
    let addr = crate::transport::lookup(&with_port)
        .await
        .map_err(|e| unknown(e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| unknown("the host has no address".into()))?;
    Ok((tcp, addr))
}

enum Transport {
    Udp(Arc<Async<UdpSocket>>),
    /// TCP connections by peer address (one for a client, any number for a server).
    Tcp(Mutex<BTreeMap<SocketAddr, Arc<TcpConn>>>),
}

struct State {
    endpoint: IblEndpoint<SocketAddr>,
    inbox: VecDeque<(SocketAddr, IblMessage)>,
    /// Outcomes of confirmed sends, until their sender takes them.
    outcomes: BTreeMap<SocketAddr, Result<(), IblEchoError>>,
    /// The peer a server heard from last (where its replies go by default).
    last_peer: Option<SocketAddr>,
    /// TCP connections that ended, with why.
    lost: BTreeMap<SocketAddr, String>,
}

struct Inner {
    state: Mutex<State>,
    changed: Event,
    timer_wake: Event,
    transport: Transport,
    /// The client's one peer.
    remote: Option<SocketAddr>,
    url: String,
    tasks: Mutex<Vec<Task<()>>>,
}

/// One iblutil communicator. Cheap to clone; clones share the socket, which
/// closes when the last clone is dropped (or at [`close`](IblPeer::close)).
#[derive(Clone)]
pub struct IblPeer {
    inner: Arc<Inner>,
    _open: Arc<CloseOnDrop>,
    echo_timeout: Duration,
}

/// Stops the tasks (which hold `Inner`) once no `IblPeer` is left.
struct CloseOnDrop(Arc<Inner>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl std::fmt::Debug for IblPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IblPeer")
            .field("url", &self.inner.url)
            .finish()
    }
}

fn bind_failed(url: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| {
        Error::Ibl(IblError::Io {
            url: url.to_owned(),
            reason: rigwire_twin::why_not_bound(&e, false),
        })
    }
}

impl IblPeer {
    /// A server bound to `url` (port 0 picks a free port; see [`url`](Self::url)).
    ///
    /// # Errors
    /// `InvalidUrl`; `Connect` if the host cannot be looked up; `Ibl(Io)`
    /// if the address cannot be bound.
    pub async fn bind(url: &str) -> Result<IblPeer, Error> {
        let (tcp, addr) = address_of(url).await?;
        let fail = bind_failed(url);
        if tcp {
            let listener = Async::new(TcpListener::bind(addr).map_err(&fail)?).map_err(&fail)?;
            let local = listener.get_ref().local_addr().map_err(&fail)?;
            let peer = IblPeer::new(
                Transport::Tcp(Mutex::new(BTreeMap::new())),
                None,
                format!("tcp://{local}"),
            );
            let inner = Arc::clone(&peer.inner);
            let url = format!("tcp://{local}");
            peer.spawn(async move {
                // One failed accept (a peer gone before it was taken, out of
                // file descriptors) once ended the accepting for good.
                let mut failures = AcceptFailures::default();
                loop {
                    let accept = || listener.accept();
                    let (stream, from) = accept_paced(&mut failures, &url, accept).await;
                    let _ = stream.get_ref().set_nodelay(true);
                    inner.add_connection(from, stream);
                }
            });
            Ok(peer)
        } else {
            let socket = Async::new(UdpSocket::bind(addr).map_err(&fail)?).map_err(&fail)?;
            let local = socket.get_ref().local_addr().map_err(&fail)?;
            Ok(IblPeer::udp(socket, None, format!("udp://{local}")))
        }
    }

    /// A client of the server at `url`.
    ///
    /// # Errors
    /// `InvalidUrl`; `Connect` if the host cannot be looked up or a TCP
    /// connection is refused.
    pub async fn connect(url: &str) -> Result<IblPeer, Error> {
        let (tcp, addr) = address_of(url).await?;
        let connect_failed = |e: std::io::Error| Error::Connect {
            url: url.to_owned(),
            reason: rigwire_twin::why_not_connected(&e, false),
        };
        if tcp {
            let stream = Async::<TcpStream>::connect(addr)
                .await
                .map_err(connect_failed)?;
            let _ = stream.get_ref().set_nodelay(true);
            let peer = IblPeer::new(
                Transport::Tcp(Mutex::new(BTreeMap::new())),
                Some(addr),
                format!("tcp://{addr}"),
            );
            peer.inner.add_connection(addr, stream);
            Ok(peer)
        } else {
            let local: SocketAddr = if addr.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            }
            .parse()
            .expect("a valid wildcard address");
            let socket = UdpSocket::bind(local).map_err(connect_failed)?;
            // Connected, as iblutil's client is: it hears only its server,
            // and learns at once when nothing listens there.
            socket.connect(addr).map_err(connect_failed)?;
            let socket = Async::new(socket).map_err(connect_failed)?;
            Ok(IblPeer::udp(socket, Some(addr), format!("udp://{addr}")))
        }
    }

    fn new(transport: Transport, remote: Option<SocketAddr>, url: String) -> IblPeer {
        let endpoint = match transport {
            Transport::Tcp(_) => IblEndpoint::for_streams(),
            Transport::Udp(_) => IblEndpoint::new(),
        };
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                endpoint,
                inbox: VecDeque::new(),
                outcomes: BTreeMap::new(),
                last_peer: remote,
                lost: BTreeMap::new(),
            }),
            changed: Event::new(),
            timer_wake: Event::new(),
            transport,
            remote,
            url,
            tasks: Mutex::new(Vec::new()),
        });
        let peer = IblPeer {
            _open: Arc::new(CloseOnDrop(Arc::clone(&inner))),
            inner,
            echo_timeout: DEFAULT_ECHO_TIMEOUT,
        };
        peer.spawn(Arc::clone(&peer.inner).timers());
        peer
    }

    fn udp(socket: Async<UdpSocket>, remote: Option<SocketAddr>, url: String) -> IblPeer {
        let socket = Arc::new(socket);
        let peer = IblPeer::new(Transport::Udp(Arc::clone(&socket)), remote, url);
        let inner = Arc::clone(&peer.inner);
        peer.spawn(async move {
            let mut buf = vec![0u8; READ_BUF];
            loop {
                match socket.recv_from(&mut buf).await {
                    // A client hears only its server, as iblutil's does.
                    Ok((_, from)) if inner.remote.is_some_and(|r| r.ip() != from.ip()) => {}
                    Ok((n, from)) => inner.input(from, &buf[..n]).await,
                    // A client's earlier send met an ICMP "port unreachable":
                    // its echo fails now, not at the echo timeout.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        if let Some(remote) = inner.remote {
                            inner
                                .lock()
                                .endpoint
                                .handle_unreachable(&remote, &e.to_string());
                            inner.deliver();
                        }
                    }
                    Err(e) => tracing::debug!(url = %inner.url, "receive failed: {e}"),
                }
            }
        });
        peer
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.inner.lock_tasks().push(smol::spawn(task));
    }

    /// Waits this long for each echo (default 1 s, as iblutil).
    pub fn with_echo_timeout(mut self, timeout: Duration) -> IblPeer {
        self.echo_timeout = timeout;
        self
    }

    /// For a server, the URL bound (with the real port); for a client, its server's.
    pub fn url(&self) -> String {
        self.inner.url.clone()
    }

    /// Where messages go by default: a client's server, or the peer a server
    /// heard from last.
    pub fn default_peer(&self) -> Option<SocketAddr> {
        self.inner.lock().last_peer
    }

    /// Sends `message` to `to` (or the default peer) and waits for its echo.
    ///
    /// # Errors
    /// `Ibl(Echo)` if the echo does not come back in time, differs, or the
    /// connection ends; `Ibl(NoPeer)` with nobody to send to.
    pub async fn confirmed_send(
        &self,
        to: Option<SocketAddr>,
        message: &IblMessage,
    ) -> Result<(), Error> {
        let to = self.destination(to)?;
        let refused = {
            let mut g = self.inner.lock();
            if let Some(reason) = g.lost.get(&to) {
                return Err(IblError::Disconnected {
                    peer: to.to_string(),
                    reason: reason.clone(),
                }
                .into());
            }
            g.outcomes.remove(&to);
            g.endpoint
                .confirmed_send(to, message, self.echo_timeout, Instant::now())
                .err()
        };
        if let Some(error) = refused {
            return Err(echo_error(to, error));
        }
        self.inner.timer_wake.notify(usize::MAX);
        self.inner.flush().await;
        loop {
            let listener = self.inner.changed.listen();
            if let Some(outcome) = self.inner.lock().outcomes.remove(&to) {
                return outcome.map_err(|e| echo_error(to, e));
            }
            listener.await;
        }
    }

    /// Sends `message` without waiting for an echo (as iblutil sends error reports).
    ///
    /// # Errors
    /// `Ibl(NoPeer)` with nobody to send to; `Ibl(Echo)` with
    /// [`IblEchoError::TooLarge`] for a message over iblutil's limit.
    pub async fn send(&self, to: Option<SocketAddr>, message: &IblMessage) -> Result<(), Error> {
        let to = self.destination(to)?;
        let refused = self.inner.lock().endpoint.send(to, message);
        refused.map_err(|e| echo_error(to, e))?;
        self.inner.flush().await;
        Ok(())
    }

    fn destination(&self, to: Option<SocketAddr>) -> Result<SocketAddr, Error> {
        to.or_else(|| self.default_peer()).ok_or_else(|| {
            IblError::NoPeer(format!(
                "{} has not heard from any peer yet",
                self.inner.url
            ))
            .into()
        })
    }

    /// `[1, data]`, confirmed. See [`confirmed_send`](Self::confirmed_send).
    ///
    /// # Errors
    /// As [`confirmed_send`](Self::confirmed_send).
    pub async fn init(&self, data: Value) -> Result<(), Error> {
        self.confirmed_send(None, &IblMessage::init(data)).await
    }

    /// `[2, exp_ref, data]`, confirmed.
    ///
    /// # Errors
    /// As [`confirmed_send`](Self::confirmed_send).
    pub async fn start(&self, exp_ref: &str, data: Value) -> Result<(), Error> {
        self.confirmed_send(None, &IblMessage::start(Some(exp_ref), data))
            .await
    }

    /// `[4, data]`, or `[16, data]` when `immediately`, confirmed.
    ///
    /// # Errors
    /// As [`confirmed_send`](Self::confirmed_send).
    pub async fn stop(&self, data: Value, immediately: bool) -> Result<(), Error> {
        self.confirmed_send(None, &IblMessage::stop(data, immediately))
            .await
    }

    /// `[8, data]`, confirmed.
    ///
    /// # Errors
    /// As [`confirmed_send`](Self::confirmed_send).
    pub async fn cleanup(&self, data: Value) -> Result<(), Error> {
        self.confirmed_send(None, &IblMessage::cleanup(data)).await
    }

    /// `[32, status]`, confirmed.
    ///
    /// # Errors
    /// As [`confirmed_send`](Self::confirmed_send).
    pub async fn status(&self, status: Value) -> Result<(), Error> {
        self.confirmed_send(None, &IblMessage::status(status)).await
    }

    /// `[64, status, data]`, confirmed.
    ///
    /// # Errors
    /// As [`confirmed_send`](Self::confirmed_send).
    pub async fn info(&self, status: Value, data: Value) -> Result<(), Error> {
        self.confirmed_send(None, &IblMessage::info(status, data))
            .await
    }

    /// The next message received (already echoed), waiting up to `timeout`.
    ///
    /// # Errors
    /// `Ibl(Timeout)`; `Ibl(Disconnected)` if a client's TCP connection ended.
    pub async fn next_message(&self, timeout: Duration) -> Result<(SocketAddr, IblMessage), Error> {
        self.take(timeout, "message", |_| true).await
    }

    /// The next message of `event` (others stay queued), waiting up to `timeout`.
    ///
    /// # Errors
    /// As [`next_message`](Self::next_message).
    pub async fn wait_event(
        &self,
        event: IblEvent,
        timeout: Duration,
    ) -> Result<(SocketAddr, IblMessage), Error> {
        self.take(timeout, &format!("{event} message"), |m| m.event == event)
            .await
    }

    /// The peer's answer to a step `event`: its next message of that event,
    /// or its error report for that event (`[0, "Type: msg", event]`), which
    /// becomes a `Remote` error of kind `Handler` with the report's text.
    ///
    /// # Errors
    /// As [`next_message`](Self::next_message), and the error report.
    pub async fn wait_answer(
        &self,
        event: IblEvent,
        timeout: Duration,
    ) -> Result<(SocketAddr, IblMessage), Error> {
        let (from, message) = self
            .take(timeout, &format!("answer to {event}"), |m| {
                m.event == event || m.error_report().is_some_and(|(_, e)| e == Some(event))
            })
            .await?;
        match message.error_report() {
            Some((text, _)) => Err(Error::Remote(rigwire_core::RemoteError::new(
                rigwire_core::ErrorKind::Handler,
                text,
            ))),
            None => Ok((from, message)),
        }
    }

    async fn take(
        &self,
        timeout: Duration,
        what: &str,
        wanted: impl Fn(&IblMessage) -> bool,
    ) -> Result<(SocketAddr, IblMessage), Error> {
        let until = rigwire_core::link::after(Instant::now(), timeout);
        loop {
            let listener = self.inner.changed.listen();
            {
                let mut g = self.inner.lock();
                if let Some(i) = g.inbox.iter().position(|(_, m)| wanted(m)) {
                    return Ok(g.inbox.remove(i).expect("found at this index"));
                }
                if let Some((peer, reason)) = self
                    .inner
                    .remote
                    .and_then(|r| g.lost.get(&r).map(|why| (r, why.clone())))
                {
                    return Err(IblError::Disconnected {
                        peer: peer.to_string(),
                        reason,
                    }
                    .into());
                }
            }
            if Instant::now() >= until {
                return Err(IblError::Timeout {
                    what: what.to_owned(),
                    waited: timeout,
                }
                .into());
            }
            future::or(listener, sleep_until(Some(until))).await;
        }
    }

    /// Stops the communicator's tasks and closes its sockets.
    pub fn close(&self) {
        self.inner.close();
    }
}

fn echo_error(to: SocketAddr, error: IblEchoError) -> Error {
    IblError::Echo {
        to: to.to_string(),
        error,
    }
    .into()
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        rigwire_twin::lock(&self.state)
    }

    fn lock_tasks(&self) -> MutexGuard<'_, Vec<Task<()>>> {
        rigwire_twin::lock(&self.tasks)
    }

    fn close(&self) {
        let tasks = std::mem::take(&mut *self.lock_tasks());
        drop(tasks); // dropping a task cancels it
        if let Transport::Tcp(conns) = &self.transport {
            for conn in rigwire_twin::lock(conns).values() {
                let _ = conn.stream.get_ref().shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// A datagram or TCP read from `from`: echoed first, then made visible.
    async fn input(&self, from: SocketAddr, data: &[u8]) {
        self.lock()
            .endpoint
            .handle_input(from, data, Instant::now());
        self.flush().await;
        self.deliver();
    }

    /// Writes what the endpoint queued, in order.
    async fn flush(&self) {
        loop {
            let Some((to, bytes)) = self.lock().endpoint.poll_transmit() else {
                return;
            };
            self.write(to, &bytes).await;
        }
    }

    async fn write(&self, to: SocketAddr, bytes: &Bytes) {
        let outcome = match &self.transport {
            Transport::Udp(socket) => socket.send_to(bytes, to).await.map(|_| ()),
            Transport::Tcp(conns) => {
                let conn = rigwire_twin::lock(conns).get(&to).cloned();
                match conn {
                    Some(conn) => {
                        let mut pacing = conn.writing.lock().await;
                        if let Some(at) = pacing.not_before() {
                            smol::Timer::at(at).await;
                        }
                        let written = (&conn.stream).write_all(bytes).await;
                        pacing.wrote(Instant::now());
                        written
                    }
                    None => Err(std::io::Error::new(
                        std::io::ErrorKind::NotConnected,
                        format!("no connection to {to}"),
                    )),
                }
            }
        };
        if let Err(e) = outcome {
            // A UDP peer that is not there is found by the echo timeout.
            tracing::debug!(url = %self.url, %to, "send failed: {e}");
        }
    }

    /// Routes the endpoint's events to their waiters.
    fn deliver(&self) {
        let mut g = self.lock();
        while let Some(event) = g.endpoint.poll_event() {
            match event {
                IblEndpointEvent::Received { from, message } => {
                    if let Some((kind, event)) = message.error_report() {
                        tracing::warn!(url = %self.url, %from, ?event, "the peer reported: {kind}");
                    }
                    if g.inbox.len() >= INBOX_LIMIT {
                        let (_, dropped) = g.inbox.pop_front().expect("inbox is full");
                        tracing::warn!(url = %self.url, "inbox full: dropped {dropped}");
                    }
                    g.last_peer = Some(from);
                    g.inbox.push_back((from, message));
                }
                IblEndpointEvent::Malformed { from, error } => {
                    tracing::warn!(url = %self.url, %from, "echoed, not a message: {error}")
                }
                IblEndpointEvent::Confirmed { to } => {
                    g.outcomes.insert(to, Ok(()));
                }
                IblEndpointEvent::EchoFailed { to, error } => {
                    g.outcomes.insert(to, Err(error));
                }
                _ => {}
            }
        }
        drop(g);
        self.changed.notify(usize::MAX);
    }

    /// Serves one TCP connection: each read is one message, as in iblutil.
    fn add_connection(self: &Arc<Self>, peer: SocketAddr, stream: Async<TcpStream>) {
        let conn = Arc::new(TcpConn {
            stream,
            writing: smol::lock::Mutex::new(WritePacing::default()),
        });
        self.set_connection(peer, Some(Arc::clone(&conn)));
        self.lock().lost.remove(&peer);
        let inner = Arc::clone(self);
        let task = smol::spawn(async move {
            let mut buf = vec![0u8; READ_BUF];
            let reason = loop {
                match (&conn.stream).read(&mut buf).await {
                    Ok(0) => break "the peer closed the connection".to_owned(),
                    Ok(n) => inner.input(peer, &buf[..n]).await,
                    Err(e) => break e.to_string(),
                }
            };
            tracing::info!(url = %inner.url, %peer, "connection ended: {reason}");
            inner.set_connection(peer, None);
            let mut g = inner.lock();
            g.endpoint.handle_disconnect(&peer);
            g.lost.insert(peer, reason);
            // Departed peers are remembered for a while, not forever.
            while g.lost.len() > LOST_KEPT {
                g.lost.pop_first();
            }
            drop(g);
            inner.deliver();
        });
        let mut tasks = self.lock_tasks();
        tasks.retain(|t| !t.is_finished()); // departed connections' tasks
        tasks.push(task);
    }

    /// Puts `stream` in the TCP connection table as `peer`'s, or removes `peer`'s.
    fn set_connection(&self, peer: SocketAddr, conn: Option<Arc<TcpConn>>) {
        if let Transport::Tcp(conns) = &self.transport {
            let mut conns = rigwire_twin::lock(conns);
            match conn {
                Some(conn) => conns.insert(peer, conn),
                None => conns.remove(&peer),
            };
        }
    }

    /// Fails echoes that are not back in time.
    async fn timers(self: Arc<Self>) {
        loop {
            let listener = self.timer_wake.listen();
            let at = self.lock().endpoint.poll_timeout();
            future::or(listener, sleep_until(at)).await;
            self.lock().endpoint.handle_timeout(Instant::now());
            self.deliver();
        }
    }
}
