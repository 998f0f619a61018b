//! [`RelayServer`]: the core's [`Relay`] state machine on smol sockets.
//!
//! Clients connect on one URL, remote services dial in on another (usually
//! `ws://`, so that they can reach the relay from behind a firewall), each
//! side with its own secret. The relay forwards `service.method` calls to the
//! service that registered `service` (see [`rigwire_core::relay`]).
//!
//! One task per connection reads its socket and feeds the relay; whatever
//! the relay then has to send — on that connection or, for a forwarded call,
//! on another — is written at once by the same task, without a hand-off. One
//! more task runs the relay's timers. The state lock is a plain `std` mutex,
//! never held across an `.await`.
//!
//! The relay runs on a thread of its own, with its own executor, so
//! [`start`](RelayServer::start) needs no executor of the caller's, and a
//! blocking program can run a relay too. The thread drives smol's reactor
//! when it can take it; the reactor is one per process, and most of the time
//! async-io's own helper thread holds it and wakes the relay's thread with a
//! futex: a hand-off per hop (`perf`/`strace` of `rigwire bench --only relay`,
//! `docs/performance.md`).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_listener::Event;
use rigwire_core::link::{AcceptFailures, Admission, Alarm, Ticket};
use rigwire_core::relay::{ConnId, PeerKind, PeerOutput, Relay, RelayConfig, RelayEvent};
use rigwire_core::{
    Error, HandlerError, IncomingCall, IncomingNotify, Payload, Registry, RejectCode, RemoteError,
    Url,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use smol::{future, Executor, Task, Timer};

use crate::client::nonce;
use crate::driver::{sleep_until, READ_CHUNK};
use crate::handler::run_typed;
use crate::transport::{Listener, Socket};
use rigwire_ws::{Flushed, Sink, Wire};

type OwnFuture = Pin<Box<dyn Future<Output = Result<Payload, HandlerError>> + Send>>;
type OwnFn = dyn Fn(Payload) -> OwnFuture + Send + Sync;

/// A bound relay being set up: expose its own names, then [`start`](Self::start).
pub struct RelayServer {
    clients: Listener,
    services: Listener,
    config: RelayConfig,
    own: Registry,
    own_fns: Vec<Arc<OwnFn>>,
}

impl std::fmt::Debug for RelayServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayServer")
            .field("clients", &self.clients_url())
            .field("services", &self.services_url())
            .finish()
    }
}

impl RelayServer {
    /// Binds the clients' URL and the services' URL (`tcp://`, `tls://`,
    /// `unix://`, `ws://` or `wss://`; port 0 picks a free port; TLS serves
    /// `config.tls`'s identity). `config.clients` and
    /// `config.services` hold each side's secret and limits.
    ///
    /// # Errors
    /// `InvalidUrl`, `Bind`, `Config`.
    pub fn bind(
        clients_url: &str,
        services_url: &str,
        config: RelayConfig,
    ) -> Result<RelayServer, Error> {
        config.clients.validate()?;
        config.services.validate()?;
        Ok(RelayServer {
            clients: Listener::bind(&Url::parse(clients_url)?, &config.tls)?,
            services: Listener::bind(&Url::parse(services_url)?, &config.tls)?,
            config,
            own: Registry::new(),
            own_fns: Vec::new(),
        })
    }

    /// The URL clients connect to, with the real port.
    pub fn clients_url(&self) -> String {
        self.clients.local_endpoint().to_string()
    }

    /// The SHA-256 fingerprint of the TLS certificate the relay serves on
    /// its `tls://` or `wss://` URLs; `None` without TLS.
    pub fn tls_fingerprint(&self) -> Option<String> {
        let fingerprint = self.clients.fingerprint().or(self.services.fingerprint());
        fingerprint.map(str::to_owned)
    }

    /// The URL services dial, with the real port.
    pub fn services_url(&self) -> String {
        self.services.local_endpoint().to_string()
    }

    /// Serves `name` on the relay itself, beside the forwarded names (a
    /// dotted name's first part can then not be registered by a service).
    ///
    /// # Errors
    /// [`Error::Registry`] for an empty, reserved or duplicate name.
    pub fn expose<A, R, F, Fut>(&mut self, name: &str, f: F) -> Result<&mut Self, Error>
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    {
        self.own.expose(name)?;
        let f = Arc::new(f);
        self.own_fns
            .push(Arc::new(move |args: Payload| -> OwnFuture {
                let f = Arc::clone(&f);
                Box::pin(async move { run_typed(args, |a| f(a)).await })
            }));
        Ok(self)
    }

    /// Starts accepting on both URLs, on a thread of the relay's own.
    ///
    /// # Errors
    /// [`Error::Config`] if a side's configuration is invalid; `Bind` if the
    /// relay's thread cannot be started.
    pub fn start(self) -> Result<RunningRelay, Error> {
        let clients_url = self.clients_url();
        let services_url = self.services_url();
        let relay = Relay::new(self.config.clone(), self.own)?;
        let executor = Arc::new(Executor::new());
        let (stop, stopped) = smol::channel::bounded::<()>(1);
        {
            let executor = Arc::clone(&executor);
            std::thread::Builder::new()
                .name("rigwire-relay".into())
                .spawn(move || {
                    // Runs until told to stop, or until the RunningRelay is gone.
                    smol::block_on(executor.run(async {
                        let _ = stopped.recv().await;
                    }));
                })
                .map_err(|e| Error::Bind {
                    url: clients_url.clone(),
                    reason: format!("cannot start the relay's thread: {e}"),
                })?;
        }
        let inner = Arc::new(Inner {
            executor: Arc::downgrade(&executor),
            state: Mutex::new(State {
                relay,
                io: BTreeMap::new(),
                alarm: Alarm::default(),
            }),
            timer_wake: Event::new(),
            gone: Event::new(),
            own: self.own_fns,
            openings: [(); 2].map(|()| {
                Mutex::new(Openings {
                    admission: Admission::new("relay", usize::MAX, self.config.max_handshaking),
                    evict: BTreeMap::new(),
                })
            }),
            config: self.config,
            stopping: AtomicBool::new(false),
        });
        // Only the accept tasks (and upgrades in progress) hold the listeners,
        // so that a stopped relay's ports are free at once for a restart.
        let clients = Arc::new(self.clients);
        let services = Arc::new(self.services);
        let tasks = vec![
            executor.spawn(Arc::clone(&inner).accept_loop(PeerKind::Client, Arc::clone(&clients))),
            executor
                .spawn(Arc::clone(&inner).accept_loop(PeerKind::Service, Arc::clone(&services))),
            executor.spawn(Arc::clone(&inner).timers()),
        ];
        // Only the relay's thread holds the executor: when it ends, every
        // task (and with them the state) is dropped.
        drop(executor);
        let fingerprint = clients
            .fingerprint()
            .or(services.fingerprint())
            .map(str::to_owned);
        match &fingerprint {
            Some(fingerprint) => tracing::info!(
                clients = %clients_url, services = %services_url, fingerprint, "relay listening"
            ),
            None => {
                tracing::info!(clients = %clients_url, services = %services_url, "relay listening")
            }
        }
        let (at_clients, at_services) = (clients.local_endpoint(), services.local_endpoint());
        for warning in inner.config.listening_warnings(at_clients, at_services) {
            tracing::warn!("{warning}");
        }
        Ok(RunningRelay {
            inner,
            tasks,
            _stop: stop,
            unix_files: [clients, services]
                .iter()
                .filter_map(|l| match l.local_endpoint() {
                    Url::Unix(path) => Some(path.clone()),
                    _ => None,
                })
                .collect(),
            clients_url,
            services_url,
            fingerprint,
        })
    }
}

/// The socket side of one relay connection.
struct ConnIo {
    socket: Arc<Socket>,
    wire: Wire,
    out: PeerOutput,
    /// The kernel took nothing last time: wait for the socket to be writable.
    write_blocked: bool,
    /// Wakes the connection's task: its socket stopped taking bytes.
    wake: Arc<Event>,
    label: String,
}

struct State {
    relay: Relay,
    io: BTreeMap<ConnId, ConnIo>,
    /// The timer task's timer; an earlier timer must wake the task.
    alarm: Alarm,
}

struct Inner {
    /// The relay thread's executor; weak, so that tasks holding `Inner` do
    /// not keep it alive.
    executor: Weak<Executor<'static>>,
    state: Mutex<State>,
    timer_wake: Event,
    /// A connection was forgotten.
    gone: Event,
    own: Vec<Arc<OwnFn>>,
    config: RelayConfig,
    stopping: AtomicBool,
    /// Connections still opening TLS or websocket, per listener (clients,
    /// services).
    openings: [Mutex<Openings>; 2],
}

/// The connections of one listener still in their TLS handshake or
/// websocket upgrade: they hold places of the pre-authentication budget
/// like the relay's own handshakes, and the oldest is evicted to make room.
struct Openings {
    admission: Admission,
    /// Each one's signal to give up.
    evict: BTreeMap<Ticket, Arc<Evict>>,
}

/// Set, and its event notified, when an opening connection is evicted.
#[derive(Default)]
struct Evict {
    done: AtomicBool,
    event: Event,
}

impl Evict {
    async fn wait(&self) {
        loop {
            if self.done.load(Ordering::SeqCst) {
                return;
            }
            let listener = self.event.listen();
            if self.done.load(Ordering::SeqCst) {
                return;
            }
            listener.await;
        }
    }
}

/// What the relay asked the runtime to run: a call or notify to its own names.
enum OwnJob {
    Call(ConnId, IncomingCall),
    Notify(ConnId, IncomingNotify),
}

/// Feeds one relay connection's input.
struct RelayInput<'a> {
    relay: &'a mut Relay,
    id: ConnId,
    /// Why writing failed, if it did: the better reason for the end.
    write_failed: Option<String>,
}

impl Sink for RelayInput<'_> {
    fn authenticated(&mut self) -> bool {
        self.relay
            .connection(self.id)
            .is_some_and(|c| c.is_established())
    }
    fn bytes(&mut self, bytes: &[u8], now: Instant) {
        self.relay.handle_input(self.id, bytes, now);
    }
    fn frame(&mut self, frame: Bytes, now: Instant) {
        self.relay.handle_frame(self.id, frame, now);
    }
    fn violation(&mut self, violation: rigwire_ws::Violation, now: Instant) {
        let len = match violation {
            rigwire_ws::Violation::TooLarge(len) => Some(len),
            _ => None,
        };
        self.relay
            .handle_violation(self.id, len, &violation.to_string(), now);
    }
    fn closed(&mut self, reason: &str, now: Instant) {
        let reason = self.write_failed.as_deref().unwrap_or(reason);
        self.relay.handle_transport_closed(self.id, reason, now);
    }
    fn tls_failed(&mut self, problem: rigwire_core::TlsProblem, now: Instant) {
        self.relay
            .handle_transport_closed(self.id, &problem.to_string(), now);
    }
}

impl ConnIo {
    /// Writes what `conn` queued until the socket blocks; shuts the socket
    /// once the connection is closed and its output is out.
    fn flush(&mut self, conn: &mut rigwire_core::Connection) {
        loop {
            let more = self.out.fill(conn);
            if self.write_blocked {
                break;
            }
            let socket = &self.socket;
            match self
                .wire
                .flush(&mut self.out, |slices| socket.try_write_vectored(slices))
            {
                Flushed::Blocked => {
                    self.write_blocked = true;
                    self.wake.notify(usize::MAX);
                    break;
                }
                Flushed::Failed => {
                    tracing::debug!(peer = %self.label, "{}", self.out.failure().unwrap_or(""));
                    break;
                }
                // All written: again while the connection holds more.
                Flushed::Done if more => {}
                Flushed::Done => break,
            }
        }
        if self.out.take_shut_write() {
            // The reader reads the peer's side to its end, then closes.
            self.socket.shutdown(std::net::Shutdown::Write);
        }
    }
}

impl Inner {
    /// Takes a place in `side`'s opening budget, evicting the oldest
    /// opening connection when it is full.
    fn begin_opening(&self, side: PeerKind) -> (Option<Ticket>, Arc<Evict>) {
        let evict = Arc::new(Evict::default());
        let mut openings = rigwire_twin::lock(&self.openings[side as usize]);
        let Ok(admitted) = openings.admission.admit() else {
            return (None, evict); // stopping: the relay refuses it after the opening
        };
        if let Some(oldest) = admitted.evicted.and_then(|t| openings.evict.remove(&t)) {
            tracing::debug!(?side, "evicting the oldest connection still opening");
            oldest.done.store(true, Ordering::SeqCst);
            oldest.event.notify(usize::MAX);
        }
        openings.evict.insert(admitted.ticket, Arc::clone(&evict));
        (Some(admitted.ticket), evict)
    }

    /// Gives back the place [`begin_opening`](Self::begin_opening) took.
    fn end_opening(&self, side: PeerKind, ticket: Option<Ticket>) {
        let Some(ticket) = ticket else {
            return;
        };
        let mut openings = rigwire_twin::lock(&self.openings[side as usize]);
        openings.evict.remove(&ticket);
        openings.admission.release(ticket, false);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        rigwire_twin::lock(&self.state)
    }

    /// Runs `future` on the relay's thread (dropped if the relay has stopped).
    fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        if let Some(executor) = self.executor.upgrade() {
            executor.spawn(future).detach();
        }
    }

    /// After anything the relay did: writes what it queued on every touched
    /// connection, takes its events, and wakes the timer task if needed.
    fn settle(&self, g: &mut State) -> Vec<OwnJob> {
        let State {
            relay, io, alarm, ..
        } = g;
        while let Some(id) = relay.poll_touched() {
            let (Some(conn), Some(cio)) = (relay.connection(id), io.get_mut(&id)) else {
                continue;
            };
            cio.flush(conn);
        }
        let mut jobs = Vec::new();
        while let Some(event) = relay.poll_event() {
            match event {
                RelayEvent::Connected {
                    conn,
                    side,
                    peer_name,
                } => tracing::info!(?conn, ?side, peer = %peer_name, "connected"),
                RelayEvent::Registered { conn, names } => {
                    tracing::info!(?conn, ?names, "service registered")
                }
                RelayEvent::Call { conn, call } => jobs.push(OwnJob::Call(conn, call)),
                RelayEvent::Notify { conn, notify } => jobs.push(OwnJob::Notify(conn, notify)),
                RelayEvent::NotifiesDropped { conn, peer_name } => tracing::warn!(
                    ?conn,
                    peer = %peer_name,
                    "dropping notifies for a peer that does not read them (until it does)"
                ),
                // A crowd closed unanswered would write a line each.
                RelayEvent::Closed { conn, error } if relay.closes_unanswered(conn) => {
                    tracing::debug!(?conn, "closed unanswered: {error}")
                }
                RelayEvent::Closed { conn, error } => {
                    tracing::info!(?conn, "disconnected: {error}")
                }
                _ => {}
            }
        }
        if alarm.is_sooner(relay.poll_timeout()) {
            self.timer_wake.notify(usize::MAX);
        }
        jobs
    }

    /// Runs calls to the relay's own names: polled once here, a task if they wait.
    fn run(self: &Arc<Self>, jobs: Vec<OwnJob>) {
        for job in jobs {
            match job {
                OwnJob::Call(conn, call) => {
                    let Some(f) = self.own.get(call.handler.0 as usize).cloned() else {
                        continue;
                    };
                    let mut fut = f(call.args);
                    let id = call.id;
                    if let Poll::Ready(result) =
                        fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
                    {
                        self.reply(conn, id, result.map_err(RemoteError::from));
                        continue;
                    }
                    let inner = Arc::clone(self);
                    self.spawn(async move {
                        let result = fut.await.map_err(RemoteError::from);
                        inner.reply(conn, id, result);
                    });
                }
                OwnJob::Notify(conn, n) => {
                    let Some(f) = self.own.get(n.handler.0 as usize).cloned() else {
                        self.with_relay(|relay, _| relay.notify_done(conn));
                        continue;
                    };
                    let (method, fut, inner) = (n.method, f(n.args), Arc::clone(self));
                    self.spawn(async move {
                        if let Err(e) = fut.await {
                            tracing::warn!(%method, "notify handler failed: {e}");
                        }
                        // Its place under the sender's incoming limit is free.
                        inner.with_relay(|relay, _| relay.notify_done(conn));
                    });
                }
            }
        }
    }

    fn reply(self: &Arc<Self>, conn: ConnId, id: u64, result: Result<Payload, RemoteError>) {
        if let Err(e) = self.with_relay(|relay, _| relay.reply(conn, id, result)) {
            tracing::debug!(?conn, "reply to call {id} dropped: {e}");
        }
    }

    /// Runs `f` on the relay, then settles and runs what it caused.
    fn with_relay<T>(self: &Arc<Self>, f: impl FnOnce(&mut Relay, Instant) -> T) -> T {
        let mut g = self.lock();
        let out = f(&mut g.relay, Instant::now());
        let jobs = self.settle(&mut g);
        drop(g);
        self.run(jobs);
        out
    }

    async fn accept_loop(self: Arc<Self>, side: PeerKind, listener: Arc<Listener>) {
        let mut failures = AcceptFailures::default();
        loop {
            let socket = listener.accept(&mut failures).await;
            self.spawn(Arc::clone(&self).serve(side, socket, Arc::clone(&listener)));
        }
    }

    /// One connection: upgrade, join the relay, then read until it ends.
    async fn serve(self: Arc<Self>, side: PeerKind, socket: Socket, listener: Arc<Listener>) {
        let config = match side {
            PeerKind::Client => &self.config.clients,
            PeerKind::Service => &self.config.services,
        };
        let label = format!("{} ({side:?})", listener.local_endpoint());
        let (ticket, evict) = self.begin_opening(side);
        let opened = future::or(
            async {
                let opened = listener.open(&socket, config.max_frame, config.handshake_timeout);
                Some(opened.await)
            },
            async {
                evict.wait().await;
                None
            },
        )
        .await;
        self.end_opening(side, ticket);
        let mut wire = match opened {
            Some(Ok(wire)) => wire,
            Some(Err(e)) => return tracing::warn!(peer = %label, "{e}"),
            // One line per stranger would let a crowd of them flood the
            // log; the servers of both runtimes tell of evictions so too.
            None => {
                return tracing::debug!(peer = %label, "evicted: too many connections are in the handshake")
            }
        };
        let socket = Arc::new(socket);
        let wake = Arc::new(Event::new());
        let framing = listener.local_endpoint().framing();
        drop(listener);
        let id = {
            let mut g = self.lock();
            let now = Instant::now();
            let id = match g.relay.accept(side, framing, nonce(), now) {
                Ok(id) => id,
                Err(e) => return tracing::error!("invalid relay configuration: {e}"),
            };
            if self.stopping.load(Ordering::SeqCst) {
                let goodbye = g.relay.goodbye();
                g.relay.reject(id, RejectCode::Shutdown, &goodbye);
            }
            {
                // The opening may already have brought the peer's first bytes.
                let relay = &mut g.relay;
                let input = &mut RelayInput {
                    relay,
                    id,
                    write_failed: None,
                };
                wire.start(input, now);
            }
            g.io.insert(
                id,
                ConnIo {
                    socket: Arc::clone(&socket),
                    wire,
                    out: PeerOutput::default(),
                    write_blocked: false,
                    wake: Arc::clone(&wake),
                    label: label.clone(),
                },
            );
            let jobs = self.settle(&mut g);
            if g.relay.closes_unanswered(id) {
                // Its Hello and Reject went out with that write, if the
                // socket took them; it holds nothing longer.
                g.relay.remove(id);
                g.io.remove(&id);
                drop(g);
                self.gone.notify(usize::MAX);
                return;
            }
            drop(g);
            self.run(jobs);
            id
        };
        self.read_loop(id, &socket, &wake).await;
        let mut g = self.lock();
        g.relay.remove(id);
        g.io.remove(&id);
        drop(g);
        self.gone.notify(usize::MAX);
    }

    async fn read_loop(self: &Arc<Self>, id: ConnId, socket: &Socket, wake: &Event) {
        let mut buf = vec![0u8; READ_CHUNK];
        // The last read came back short, so the socket is empty: wait for
        // readiness rather than spend a system call finding that out.
        let mut emptied = false;
        loop {
            let listener = wake.listen();
            let (blocked, read, give_up) = {
                let mut g = self.lock();
                let State { relay, io, .. } = &mut *g;
                let (Some(conn), Some(cio)) = (relay.connection(id), io.get_mut(&id)) else {
                    return;
                };
                if conn.is_closed() {
                    cio.flush(conn);
                }
                if cio.out.is_finished(conn, Instant::now()) {
                    socket.shutdown(std::net::Shutdown::Both);
                    return;
                }
                (
                    cio.write_blocked,
                    cio.out.wants_input(conn),
                    cio.out.wake_at(),
                )
            };
            if read && !emptied {
                let read = socket.try_read(&mut buf);
                let would_block = matches!(&read, Err(e) if matches!(e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted));
                emptied = would_block || matches!(read, Ok(n) if n < buf.len());
                if !would_block {
                    let mut g = self.lock();
                    let now = Instant::now();
                    let State { relay, io, .. } = &mut *g;
                    if let Some(cio) = io.get_mut(&id) {
                        if matches!(read, Ok(0) | Err(_)) {
                            cio.out.handle_read_end();
                        }
                        let write_failed = cio.out.failure().map(str::to_owned);
                        let input = &mut RelayInput {
                            relay,
                            id,
                            write_failed,
                        };
                        cio.wire.feed(input, read, &buf, now);
                    }
                    let jobs = self.settle(&mut g);
                    drop(g);
                    self.run(jobs);
                    continue;
                }
            }
            let readable = async {
                if !read {
                    future::pending::<()>().await;
                }
                let _ = socket.readable().await;
                true
            };
            let writable = async {
                if !blocked {
                    future::pending::<()>().await;
                }
                let _ = socket.writable().await;
                let mut g = self.lock();
                let State { relay, io, .. } = &mut *g;
                if let (Some(conn), Some(cio)) = (relay.connection(id), io.get_mut(&id)) {
                    cio.write_blocked = false;
                    cio.flush(conn);
                }
                false
            };
            let woken = async {
                future::or(listener, sleep_until(give_up)).await;
                false
            };
            if future::or(future::or(readable, writable), woken).await {
                emptied = false;
            }
        }
    }

    /// Runs the relay's timers: keepalive, deadlines, handshakes.
    async fn timers(self: Arc<Self>) {
        // One timer, moved only to fire sooner (`State::alarm`).
        let mut timer = Timer::never();
        loop {
            let listener = self.timer_wake.listen();
            let arm = {
                let mut g = self.lock();
                let due = g.relay.poll_timeout();
                g.alarm.arm(due)
            };
            if let Some(at) = arm {
                timer.set_at(at);
            }
            let fired = future::or(
                async {
                    (&mut timer).await;
                    true
                },
                async {
                    listener.await;
                    false
                },
            )
            .await;
            if fired {
                self.lock().alarm.fired();
            }
            self.with_relay(|relay, now| relay.handle_timeout(now));
        }
    }
}

/// A running relay. [`shutdown`](Self::shutdown) closes it gracefully;
/// dropping it closes every connection at once, as [`abort`](Self::abort) does.
#[must_use = "dropping a running relay closes it at once: keep it while it should relay"]
pub struct RunningRelay {
    inner: Arc<Inner>,
    tasks: Vec<Task<()>>,
    /// Held only: dropping it ends the relay's thread.
    _stop: smol::channel::Sender<()>,
    /// Unix socket files to remove once stopped.
    unix_files: Vec<std::path::PathBuf>,
    clients_url: String,
    services_url: String,
    fingerprint: Option<String>,
}

impl std::fmt::Debug for RunningRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningRelay")
            .field("clients", &self.clients_url)
            .field("services", &self.services_url)
            .finish()
    }
}

impl RunningRelay {
    /// The URL clients connect to, with the real port.
    pub fn clients_url(&self) -> String {
        self.clients_url.clone()
    }

    /// The SHA-256 fingerprint of the TLS certificate served; `None` without TLS.
    pub fn tls_fingerprint(&self) -> Option<String> {
        self.fingerprint.clone()
    }

    /// The URL services dial, with the real port.
    pub fn services_url(&self) -> String {
        self.services_url.clone()
    }

    /// The names routed now, each with the name its service announced.
    pub fn routes(&self) -> Vec<(String, String)> {
        let mut g = self.inner.lock();
        let routes: Vec<(String, ConnId)> = g
            .relay
            .routes()
            .map(|(name, conn)| (name.to_owned(), conn))
            .collect();
        routes
            .into_iter()
            .map(|(name, conn)| {
                let peer = g
                    .relay
                    .connection(conn)
                    .map(|c| c.peer_name())
                    .unwrap_or_default();
                (name, peer)
            })
            .collect()
    }

    /// Calls forwarded to services and not yet answered.
    pub fn forwarded_in_flight(&self) -> usize {
        self.inner.lock().relay.forwarded_in_flight()
    }

    /// Notifies not passed on since the relay started, because the peer
    /// they were for had its output over its limit (it does not read;
    /// spec §6.8).
    pub fn dropped_notifies(&self) -> u64 {
        self.inner.lock().relay.dropped_notifies()
    }

    /// Connections open now, clients and services together.
    pub fn connections(&self) -> usize {
        self.inner.lock().io.len()
    }

    /// Notifies every connected client (typed, in the clients' `call_codec`,
    /// postcard unless set); returns how many.
    ///
    /// # Errors
    /// [`Error::Codec`] if `args` does not encode.
    pub fn broadcast_clients<A: Serialize + ?Sized>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<usize, Error> {
        let args = Payload::encode_as(self.inner.config.clients.call_codec, args)?;
        Ok(self
            .inner
            .with_relay(|relay, now| relay.broadcast_clients(method, &args, now)))
    }

    /// Notifies the service registered as `name` (rt-cloud's
    /// `sendWebSocketMessage`; typed, in the services' `call_codec`); returns
    /// how many were reached (0 or 1).
    ///
    /// # Errors
    /// [`Error::Codec`] if `args` does not encode.
    pub fn broadcast_service<A: Serialize + ?Sized>(
        &self,
        name: &str,
        method: &str,
        args: &A,
    ) -> Result<usize, Error> {
        let args = Payload::encode_as(self.inner.config.services.call_codec, args)?;
        Ok(self
            .inner
            .with_relay(|relay, now| relay.broadcast_service(name, method, &args, now)))
    }

    /// Stops accepting, lets forwarded calls finish for up to `grace`, then
    /// says goodbye on every connection (calls still in flight are answered
    /// `Shutdown`) and waits briefly for the connections to close.
    pub async fn shutdown(mut self, grace: Duration) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        // The timer task keeps running until the end: goodbyes still need it.
        for task in self.tasks.drain(..2) {
            task.cancel().await;
        }
        // The relay closes every connection once its forwarded calls are
        // answered or the grace is over (a timer the timer task runs); each
        // connection then ends once its goodbye is out, or the link's close
        // linger gave up on a peer that does not read.
        self.inner
            .with_relay(|relay, now| relay.drain(grace, &relay.goodbye(), now));
        let until = rigwire_core::link::after(
            Instant::now(),
            grace.saturating_add(rigwire_core::link::CLOSE_LINGER),
        );
        loop {
            let listener = self.inner.gone.listen();
            if self.inner.lock().io.is_empty() || Instant::now() >= until {
                break;
            }
            future::or(listener, sleep_until(Some(until))).await;
        }
        for cio in self.inner.lock().io.values() {
            cio.socket.shutdown(std::net::Shutdown::Both);
        }
        self.cleanup();
        tracing::info!(clients = %self.clients_url, "relay stopped");
    }

    /// Drops every connection at once without a goodbye, as a crashed relay would.
    pub async fn abort(mut self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        for task in self.tasks.drain(..) {
            task.cancel().await;
        }
        for cio in self.inner.lock().io.values() {
            cio.socket.shutdown(std::net::Shutdown::Both);
        }
        self.cleanup();
    }

    fn cleanup(&self) {
        for path in &self.unix_files {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for RunningRelay {
    fn drop(&mut self) {
        if self.inner.stopping.swap(true, Ordering::SeqCst) {
            return; // shut down or aborted already
        }
        for cio in self.inner.lock().io.values() {
            cio.socket.shutdown(std::net::Shutdown::Both);
        }
        self.cleanup();
    }
}
