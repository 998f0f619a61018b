//! [`Server`]: accepts peers on one URL, runs each connection on its own
//! thread (which reads, and runs short handlers), long handlers on a shared
//! bounded pool, and shuts down gracefully. A socket gets its thread only
//! once its peer has spoken: until then the accept thread holds it, within
//! the handshake budget and timeout, so silent strangers cost no thread
//! (one refused for room is told why on a thread, but no more at once than
//! that budget, [`Refused`]); and a connection idle for a while gives its
//! thread back to the parker ([`crate::park`]) until its peer speaks again.

use std::collections::BTreeMap;
use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rigwire_core::link::{
    earliest, AcceptFailures, Admission, Admitted, Leaving, Lobby, Ticket, THREAD_END_WAIT,
};
use rigwire_core::{Connection, Error, Link, Role};

use crate::client::nonce;
use crate::driver::{Driven, Hooks, Shared};
use crate::handler::Handlers;
use crate::park::Parker;
use crate::peer::Peer;
use crate::pool::Pool;
use crate::sync::{lock, stop_off};
use crate::transport::{Listener, Socket};
use rigwire_core::Config;
use rigwire_twin::{accept_failed, accepted, Refused};

rigwire_twin::server!();

impl Server {
    /// Starts accepting on a background thread.
    ///
    /// # Errors
    /// [`Error::Bind`] if the accept thread cannot be started.
    pub fn start(self) -> Result<RunningServer, Error> {
        let (listener, url, config, handlers, hooks, admission) = self.parts();
        let inner = Arc::new_cyclic(|me: &std::sync::Weak<ServerInner>| ServerInner {
            parker: {
                let server = me.clone();
                Parker::start(Box::new(move |id, shared| {
                    if let Some(server) = server.upgrade() {
                        server.resume(id, shared);
                    }
                }))
            },
            pool: Pool::new(config.handler_threads, "rigwire-server"),
            listener,
            config,
            handlers: Arc::new(handlers),
            hooks: Arc::new(hooks),
            connections: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            admission,
            url: url.clone(),
        });
        let acceptor = Arc::clone(&inner);
        let accept = thread::Builder::new()
            .name("rigwire-accept".into())
            .spawn(move || acceptor.accept_loop())
            .map_err(|e| Error::Bind {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let listener = &inner.listener;
        rigwire_twin::log_listening!(
            listener.local_endpoint(),
            listener.fingerprint(),
            &inner.config,
        );
        Ok(RunningServer {
            inner,
            accept: Some(accept),
        })
    }
}

/// Sends what a connection let go unheard has left to say (a `Reject`
/// saying why), without waiting for the socket; dropping it closes it.
fn say_last_words(mut leaving: Leaving<Socket>) {
    for chunk in leaving.last_words() {
        if leaving.socket.try_send(&[IoSlice::new(&chunk)]).is_err() {
            return;
        }
    }
}

struct Conn {
    peer: Option<Peer>,
    thread: Option<JoinHandle<()>>,
    /// Its place in the admission (none if refused).
    ticket: Option<Ticket>,
    /// A handle on its socket, to close it if it is evicted mid-handshake.
    killer: Option<Socket>,
}

struct ServerInner {
    listener: Listener,
    config: Config,
    handlers: Arc<Handlers>,
    hooks: Arc<Hooks>,
    pool: Arc<Pool>,
    connections: Mutex<BTreeMap<u64, Conn>>,
    next_id: AtomicU64,
    /// The accept loop ends: set after the grace of a shutdown, during which
    /// newcomers are still accepted, to be told `Reject{Shutdown}`.
    closed: AtomicBool,
    admission: Arc<Mutex<Admission>>,
    url: String,
    /// Takes idle connections from their threads; `None` where the system
    /// has no epoll (they keep their threads).
    parker: Option<Parker>,
}

impl ServerInner {
    /// Accepts connections. A new socket gets no thread of its own until
    /// its peer has said something: until then it waits here, polled with
    /// the others, for at most the handshake timeout (and is evicted first
    /// when strangers crowd the handshake budget). Our `Hello` goes out at
    /// once all the same, so a peer that waits for it is not kept waiting.
    fn accept_loop(self: &Arc<Self>) {
        let mut lobby: Lobby<Socket> = Lobby::default();
        let mut failures = AcceptFailures::default();
        loop {
            let now = Instant::now();
            for silent in lobby.expire(now) {
                // Silent for the whole handshake timeout: told so, and closed.
                self.admission().release(silent.ticket, false);
                say_last_words(silent);
            }
            let paused_until = failures.paused_until(now);
            let sockets: Vec<&Socket> = lobby.sockets().collect();
            let wake = earliest(lobby.next_deadline(), paused_until);
            let waited = self
                .listener
                .wait_any(paused_until.is_none(), &sockets, wake);
            let (incoming, spoke) = match waited {
                Ok(ready) => ready,
                Err(e) => {
                    // Paced as a failed accept: the system refused the wait.
                    let why = format!("waiting for connections: {e}");
                    let until = accept_failed(&mut failures, why, &self.url, Instant::now());
                    thread::sleep(until.saturating_duration_since(Instant::now()));
                    continue;
                }
            };
            for w in lobby.spoke(spoke) {
                self.spawn_connection(w.id, w.socket, Ok(w.ticket), w.conn);
            }
            if !incoming {
                continue;
            }
            let socket = match self.listener.accept() {
                Ok(s) => s,
                Err(e) => {
                    if self.closed.load(Ordering::SeqCst) {
                        return;
                    }
                    accept_failed(&mut failures, e, &self.url, Instant::now());
                    continue;
                }
            };
            accepted(&mut failures, &self.url, Instant::now());
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let admitted = self.admission().admit();
            let Admitted { ticket, evicted } = match admitted {
                Ok(admitted) => admitted,
                Err(refusal) => {
                    // Told why on a thread of its own, briefly, while
                    // there is a place for it; else closed at once.
                    if let Some(refused) = Refused::to_tell(refusal, &self.admission, &self.url) {
                        self.spawn_connection(id, socket, Err(refused), None);
                    }
                    continue;
                }
            };
            if let Some(oldest) = evicted {
                self.evict(oldest, &mut lobby);
            }
            let conn = self.say_hello(&socket);
            // After the connection's own start, so that its handshake timer
            // has run out too when this one does.
            let until =
                rigwire_core::link::after(Instant::now(), self.config.protocol.handshake_timeout);
            lobby.hold(id, ticket, socket, conn, until);
        }
    }

    /// Its place went to a newcomer: closes the connection holding `ticket`,
    /// whatever it is doing.
    fn evict(&self, ticket: Ticket, lobby: &mut Lobby<Socket>) {
        tracing::debug!(url = %self.url, "evicting the oldest connection still in the handshake");
        if let Some(evicted) = lobby.evict(ticket) {
            return say_last_words(evicted);
        }
        let (peer, killer) = {
            let conns = lock(&self.connections);
            match conns.values().find(|c| c.ticket == Some(ticket)) {
                Some(c) => (c.peer.clone(), c.killer.clone()),
                None => return,
            }
        };
        // Told why once past its opening (TLS, websocket), as on smol: its
        // last words go out with a write that does not wait; then the
        // socket is shut, so a crowd of strangers holds nothing longer.
        if let Some(peer) = peer {
            peer.shared.command(Link::evict);
        }
        if let Some(k) = killer {
            k.shutdown(std::net::Shutdown::Both);
        }
    }

    /// On a plain stream, starts the connection and sends its `Hello` at
    /// once (a websocket waits for the peer's upgrade request first).
    fn say_hello(&self, socket: &Socket) -> Option<Connection> {
        if self.listener.needs_opening() {
            return None;
        }
        let mut conn = self.new_connection().ok()?;
        let hello = conn.poll_transmit()?;
        // A fresh socket takes a few dozen bytes at once; if not, it is dropped.
        match socket.try_send(&[IoSlice::new(&hello)]) {
            Ok(n) if n == hello.len() => Some(conn),
            _ => None,
        }
    }

    fn new_connection(&self) -> Result<Connection, rigwire_core::ConfigError> {
        Connection::new(
            self.config.protocol.clone(),
            self.handlers.registry().clone(),
            Role::Server,
            self.listener.local_endpoint().framing(),
            nonce(),
            Instant::now(),
        )
    }

    /// Gives a connection that has spoken (or is refused) a thread of its
    /// own; one that cannot have one is closed, its place freed.
    fn spawn_connection(
        self: &Arc<Self>,
        id: u64,
        socket: Socket,
        admitted: Result<Ticket, Refused>,
        conn: Option<Connection>,
    ) {
        let server = Arc::clone(self);
        let ticket = admitted.as_ref().ok().copied();
        let killer = Some(socket.share());
        let mut conns = lock(&self.connections);
        let spawned = thread::Builder::new()
            .name("rigwire-conn".into())
            .spawn(move || server.serve_connection(id, socket, admitted, conn));
        match spawned {
            Ok(thread) => {
                conns.insert(
                    id,
                    Conn {
                        peer: None,
                        thread: Some(thread),
                        ticket,
                        killer,
                    },
                );
            }
            Err(e) => {
                drop(conns);
                tracing::error!("cannot start a connection thread: {e}");
                self.forget(id, ticket, false);
            }
        }
    }

    fn serve_connection(
        self: Arc<Self>,
        id: u64,
        socket: Socket,
        admitted: Result<Ticket, Refused>,
        conn: Option<Connection>,
    ) {
        let label = format!("{} #{id}", self.url);
        let halves = match self.listener.open(
            socket,
            self.config.protocol.max_frame,
            self.config.protocol.handshake_timeout,
        ) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(peer = %label, "{e}");
                self.forget(id, admitted.ok(), false);
                return;
            }
        };
        let mut conn = match conn.map(Ok).unwrap_or_else(|| self.new_connection()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("invalid configuration: {e}");
                self.forget(id, admitted.ok(), false);
                return;
            }
        };
        if let Err(refused) = &admitted {
            refused.reject(&mut conn, &label); // before our Hello leaves
        }
        let shared = Shared::new(
            conn,
            halves,
            Arc::clone(&self.handlers),
            Some(Arc::clone(&self.pool)),
            Arc::clone(&self.hooks),
            label.clone(),
            Duration::ZERO,
        );
        let shared = match shared {
            Ok(shared) => shared,
            Err(e) => {
                tracing::warn!(peer = %label, "{e}");
                self.forget(id, admitted.ok(), false);
                return;
            }
        };
        let ticket = match admitted {
            Ok(ticket) => ticket,
            Err(_refused) => {
                // Until the peer has read why (see `Link::is_written_out`);
                // its place among those told why is held until then.
                shared.drive();
                self.forget(id, None, false);
                return;
            }
        };
        shared.lock().link.set_ticket(ticket);
        if let Some(parker) = &self.parker {
            shared.parks_with(id, parker.clone());
        }
        if let Some(c) = lock(&self.connections).get_mut(&id) {
            c.peer = Some(Peer::new(Arc::clone(&shared)));
        }
        let driven = shared.drive();
        self.driven(id, &shared, driven);
    }

    /// A connection's thread has ended its drive: the connection is
    /// finished (its place is freed), or parked.
    fn driven(&self, id: u64, shared: &Shared, driven: Driven) {
        match driven {
            Driven::Finished => {
                let (ticket, established) = {
                    let g = shared.lock();
                    (g.link.ticket(), g.link.is_admitted())
                };
                self.forget(id, ticket, established);
            }
            Driven::Parked => {
                // Detached: an ended thread nobody joins would keep its stack.
                // Only this thread's handle: the parker may already have
                // given the connection a new thread, which stop must join.
                let mut conns = lock(&self.connections);
                let me = thread::current().id();
                if let Some(c) = conns.get_mut(&id) {
                    if c.thread.as_ref().is_some_and(|t| t.thread().id() == me) {
                        c.thread.take();
                    }
                }
            }
        }
    }

    /// Gives parked connection `id` a thread again (on the parker's thread).
    fn resume(self: Arc<Self>, id: u64, shared: Arc<Shared>) {
        let mut conns = lock(&self.connections);
        let server = Arc::clone(&self);
        let resumed = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name("rigwire-conn".into())
            .spawn(move || {
                let driven = resumed.resume();
                server.driven(id, &resumed, driven);
            });
        match spawned {
            Ok(thread) => {
                if let Some(c) = conns.get_mut(&id) {
                    c.thread = Some(thread); // the one that parked it has ended
                }
            }
            Err(e) => {
                drop(conns);
                tracing::error!(peer = %shared.label, "cannot resume a connection: {e}");
                shared.shutdown_transport();
                shared.command(|link, now| {
                    link.handle_transport_closed("no thread to serve the connection", now)
                });
                self.driven(id, &shared, Driven::Finished);
            }
        }
    }

    /// A connection ended; it frees its place in the admission.
    fn forget(&self, id: u64, ticket: Option<Ticket>, established: bool) {
        let stopping = {
            let mut admission = self.admission();
            if let Some(ticket) = ticket {
                admission.release(ticket, established);
            }
            admission.is_stopping()
        };
        let mut conns = lock(&self.connections);
        if !stopping {
            conns.remove(&id);
        } else if let Some(c) = conns.get_mut(&id) {
            c.peer = None; // shutdown joins the thread
        }
    }

    fn admission(&self) -> MutexGuard<'_, Admission> {
        lock(&self.admission)
    }

    /// Tells every connection with a core to go within `grace`, and waits
    /// until each has finished.
    fn drain_all(&self, grace: Duration, goodbye: &str) {
        let peers = self.all_peers();
        for peer in &peers {
            peer.shared.drain(grace, goodbye);
        }
        for peer in &peers {
            peer.shared.wait_finished();
        }
    }

    /// Shuts the sockets of connections still opening (no core yet).
    fn shut_opening(&self) {
        let conns = lock(&self.connections);
        let opening = conns.values().filter(|c| c.peer.is_none());
        for socket in opening.filter_map(|c| c.killer.as_ref()) {
            socket.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Every connection with a core, handshaking or not.
    fn all_peers(&self) -> Vec<Peer> {
        let conns = lock(&self.connections);
        conns.values().filter_map(|c| c.peer.clone()).collect()
    }
}

/// A server accepting connections. Dropping it shuts it down at once, so
/// a server started and not kept serves nothing, which the compiler points out:
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn serve(server: rigwire_std::Server) -> Result<(), rigwire_std::Error> {
///     server.start()?; // shut down as it is dropped
///     Ok(())
/// }
/// ```
#[must_use = "dropping a running server shuts it down at once: keep it while it should serve"]
pub struct RunningServer {
    inner: Arc<ServerInner>,
    accept: Option<JoinHandle<()>>,
}

rigwire_twin::running_server!([] []);

impl RunningServer {
    /// Stops accepting, lets calls in progress finish for up to `grace`,
    /// answers the rest `Shutdown`, says goodbye to every peer (their pending
    /// calls to us fail, ours to them fail), and waits for every thread;
    /// a thread still in a handler that does not return (one run on its
    /// connection's thread, hung on its hardware) only for
    /// [`THREAD_END_WAIT`](rigwire_core::link::THREAD_END_WAIT), then it is
    /// left running, and the log says so.
    ///
    /// Called by one of this server's own handlers or hooks (a `quit`
    /// method), it returns at once and the server stops on a thread of its
    /// own: waiting here would wait for that very handler, a call in
    /// progress, for the whole grace (and join its own thread).
    pub fn shutdown(mut self, grace: Duration) {
        self.stop(grace);
    }

    /// Drops every connection at once without a goodbye, as a crashed or
    /// killed rig would; peers see the transport end. For tests and demos of
    /// failure handling.
    pub fn abort(mut self) {
        self.inner.admission().stop();
        for peer in self.inner.all_peers() {
            peer.shared.shutdown_transport();
        }
        self.stop(Duration::ZERO);
    }

    fn stop(&mut self, grace: Duration) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        let inner = Arc::clone(&self.inner);
        let own = inner.runs_this_thread();
        stop_off(own, "server", move || inner.stop(accept, grace));
    }
}

impl ServerInner {
    /// Whether the current thread is one of this server's: a connection's
    /// (handlers run there, inline) or its pool's.
    fn runs_this_thread(&self) -> bool {
        let me = thread::current().id();
        let conns = lock(&self.connections);
        let mut threads = conns.values().filter_map(|c| c.thread.as_ref());
        self.pool.runs_this_thread() || threads.any(|t| t.thread().id() == me)
    }

    fn stop(&self, accept: JoinHandle<()>, grace: Duration) {
        // Newcomers during the grace are still accepted, and refused with
        // `Reject{Shutdown}` (spec §6.9), not left unanswered in the backlog.
        let goodbye = self.admission().stop();
        self.drain_all(grace, &goodbye);
        self.closed.store(true, Ordering::SeqCst);
        self.listener.wake();
        let _ = accept.join();
        // Once nothing more is accepted: the connections admitted while the
        // others were told to go (registered after they were listed) are
        // told now, or their threads would serve them on, kept alive by
        // their peers' keepalive, while this waits to join them.
        self.shut_opening();
        self.drain_all(Duration::ZERO, &goodbye);
        // Parked connections get their threads back, to finish on them.
        if let Some(parker) = &self.parker {
            parker.stop();
        }
        let threads: Vec<JoinHandle<()>> = {
            let mut conns = lock(&self.connections);
            conns.values_mut().filter_map(|c| c.thread.take()).collect()
        };
        // Every link has finished: a thread that has not ended within a
        // short while runs a handler that does not return. Looked at every
        // few milliseconds, not joined: joining it would wait for good.
        let until = rigwire_core::link::after(Instant::now(), THREAD_END_WAIT);
        let mut left = 0;
        for t in threads {
            while !t.is_finished() && Instant::now() < until {
                thread::sleep(Duration::from_millis(10));
            }
            match t.is_finished() {
                true => drop(t.join()),
                false => left += 1, // dropped: it runs on, detached
            }
        }
        self.listener.cleanup();
        match left {
            0 => tracing::info!(url = %self.url, "stopped"),
            n => tracing::warn!(
                url = %self.url,
                "stopped, leaving {n} connection thread(s) in a handler that has not returned"
            ),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop(Duration::ZERO);
    }
}
