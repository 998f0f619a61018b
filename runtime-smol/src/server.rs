//! [`Server`]: accepts peers on one URL; every connection gets a driver task.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rigwire_core::link::{AcceptFailures, Admission, Admitted, Ticket};
use rigwire_core::Config;
use rigwire_core::{Connection, Error, Link, Role};
use rigwire_twin::Refused;
use smol::Task;

use crate::client::nonce;
use crate::driver::{Hooks, Shared};
use crate::handler::Handlers;
use crate::peer::Peer;
use crate::transport::{Listener, Socket};

rigwire_twin::server!();

impl Server {
    /// Starts accepting on a task.
    ///
    /// # Errors
    /// None on smol at present (the blocking runtime's can fail to start its
    /// thread); the `Result` keeps the two runtimes' servers alike.
    pub fn start(self) -> Result<RunningServer, Error> {
        let (listener, url, config, handlers, hooks, admission) = self.parts();
        let inner = Arc::new(ServerInner {
            listener,
            config,
            handlers: Arc::new(handlers),
            hooks: Arc::new(hooks),
            connections: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            admission,
            sockets: Mutex::new(BTreeMap::new()),
            serving: Arc::new(Serving::default()),
            url: url.clone(),
        });
        let accept = smol::spawn(Arc::clone(&inner).accept_loop());
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

/// Counts a connection task out of [`Serving`] when dropped.
struct CountedOut(Arc<Serving>);

impl Drop for CountedOut {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::SeqCst);
        self.0.gone.notify(usize::MAX);
    }
}

/// The connection tasks of a server, counted apart from it so that the
/// last one can say it ended after letting go of the server.
#[derive(Default)]
struct Serving {
    count: AtomicUsize,
    /// A connection task ended.
    gone: event_listener::Event,
}

struct ServerInner {
    listener: Listener,
    config: Config,
    handlers: Arc<Handlers>,
    hooks: Arc<Hooks>,
    connections: Mutex<BTreeMap<u64, Peer>>,
    next_id: AtomicU64,
    admission: Arc<Mutex<Admission>>,
    /// Sockets of admitted connections, to close one that is evicted.
    sockets: Mutex<BTreeMap<Ticket, Arc<Socket>>>,
    /// Connection tasks still running.
    serving: Arc<Serving>,
    url: String,
}

impl ServerInner {
    async fn accept_loop(self: Arc<Self>) {
        let mut failures = AcceptFailures::default();
        loop {
            let socket = Arc::new(self.listener.accept(&mut failures).await);
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let admitted = self.admission().admit();
            if let Ok(Admitted {
                evicted: Some(oldest),
                ..
            }) = &admitted
            {
                self.evict(*oldest);
            }
            // A refused one is told why on a task of its own while there
            // is a place for it; else closed at once.
            let admitted = match admitted {
                Ok(admitted) => Ok(admitted.ticket),
                Err(refusal) => match Refused::to_tell(refusal, &self.admission, &self.url) {
                    Some(refused) => Err(refused),
                    None => continue,
                },
            };
            if let Ok(ticket) = admitted {
                let mut sockets = rigwire_twin::lock(&self.sockets);
                sockets.insert(ticket, Arc::clone(&socket));
            }
            self.serving.count.fetch_add(1, Ordering::SeqCst);
            smol::spawn(Arc::clone(&self).serve(id, socket, admitted)).detach();
        }
    }

    /// Its place went to a newcomer: closes the connection holding
    /// `ticket`, telling it why once it is past its opening (TLS, websocket).
    fn evict(&self, ticket: Ticket) {
        tracing::debug!(url = %self.url, "evicting the oldest connection still in the handshake");
        let peer = rigwire_twin::lock(&self.connections)
            .values()
            .find(|p| p.shared.lock().link.ticket() == Some(ticket))
            .cloned();
        if let Some(peer) = peer {
            // Its last words go out with a write that does not wait, then
            // the socket is shut: a crowd of strangers holds nothing longer.
            peer.shared.command(Link::evict);
            peer.shared.shutdown_transport();
            return;
        }
        let sockets = rigwire_twin::lock(&self.sockets);
        if let Some(socket) = sockets.get(&ticket) {
            socket.shutdown(std::net::Shutdown::Both);
        }
    }

    async fn serve(
        self: Arc<Self>,
        id: u64,
        socket: Arc<Socket>,
        admitted: Result<Ticket, Refused>,
    ) {
        // Counted out last, however the task ends: a task that died (a bug)
        // must not leave a shutdown waiting for it for ever.
        let _counted = CountedOut(Arc::clone(&self.serving));
        let established = self.serve_admitted(id, socket, &admitted).await;
        if let Ok(ticket) = admitted {
            rigwire_twin::lock(&self.sockets).remove(&ticket);
            self.admission().release(ticket, established);
        }
        // Without holding the server: once no task serves, nothing holds
        // the listener but the server itself (a restart can bind again).
        drop(self);
    }

    /// Returns whether the connection was admitted as established.
    async fn serve_admitted(
        self: &Arc<Self>,
        id: u64,
        socket: Arc<Socket>,
        admitted: &Result<Ticket, Refused>,
    ) -> bool {
        let label = format!("{} #{id}", self.url);
        let conn = Connection::new(
            self.config.protocol.clone(),
            self.handlers.registry().clone(),
            Role::Server,
            self.listener.local_endpoint().framing(),
            nonce(),
            Instant::now(),
        );
        // Boxed across the opening (its handshake timer runs from here),
        // and the opening boxed too: an idle connection's task keeps the
        // room of its largest state, and these live only until the wire is open.
        let conn = match conn {
            Ok(c) => Box::new(c),
            Err(e) => {
                tracing::error!("invalid configuration: {e}");
                return false;
            }
        };
        let opening = Box::pin(self.listener.open(
            &socket,
            self.config.protocol.max_frame,
            self.config.protocol.handshake_timeout,
        ));
        let wire = match opening.await {
            Ok(wire) => wire,
            Err(e) => {
                tracing::warn!(peer = %label, "{e}");
                return false;
            }
        };
        let mut conn = {
            let boxed = conn; // its room freed here, not at the end of the task
            *boxed
        };
        if let Err(refused) = admitted {
            refused.reject(&mut conn, &label); // before our Hello leaves
        }
        let shared = Shared::new(
            conn,
            socket,
            wire,
            Arc::clone(&self.handlers),
            Arc::clone(&self.hooks),
            label.clone(),
            Duration::ZERO,
        );
        if let Ok(ticket) = admitted {
            shared.lock().link.set_ticket(*ticket);
            rigwire_twin::lock(&self.connections).insert(id, Peer::new(Arc::clone(&shared)));
        }
        Arc::clone(&shared).drive().await;
        rigwire_twin::lock(&self.connections).remove(&id);
        let established = shared.lock().link.is_admitted();
        established
    }

    fn admission(&self) -> MutexGuard<'_, Admission> {
        rigwire_twin::lock(&self.admission)
    }

    fn all_peers(&self) -> Vec<Peer> {
        rigwire_twin::lock(&self.connections)
            .values()
            .cloned()
            .collect()
    }
}

/// A server accepting connections. [`shutdown`](Self::shutdown) closes it
/// gracefully; dropping it stops accepting and says goodbye to every peer
/// at once (calls in progress are answered `Shutdown`), as `shutdown` with
/// no grace would, without waiting.
#[must_use = "dropping a running server shuts it down at once: keep it while it should serve"]
pub struct RunningServer {
    inner: Arc<ServerInner>,
    accept: Option<Task<()>>,
}

rigwire_twin::running_server!([async] [.await]);

impl RunningServer {
    /// Stops accepting, lets calls in progress finish for up to `grace`,
    /// answers the rest `Shutdown`, and says goodbye to every peer.
    ///
    /// One of this server's own handlers (a `quit` method) spawns it
    /// (`smol::spawn(running.shutdown(grace)).detach()`) and returns:
    /// awaited there, it would wait for that very handler, a call in
    /// progress, for the whole grace.
    pub async fn shutdown(mut self, grace: Duration) {
        // Newcomers during the grace are still accepted, and refused with
        // `Reject{Shutdown}` (spec §6.9), not left unanswered in the backlog.
        let goodbye = self.inner.admission().stop();
        let accept = self.accept.take();
        let peers = self.inner.all_peers();
        for peer in &peers {
            peer.shared.drain(grace, &goodbye);
        }
        let until = rigwire_core::link::after(Instant::now(), grace);
        for peer in &peers {
            peer.shared.wait_closed_by(until).await;
        }
        if let Some(accept) = accept {
            accept.cancel().await;
        }
        loop {
            let gone = self.inner.serving.gone.listen();
            if self.inner.serving.count.load(Ordering::SeqCst) == 0 {
                break;
            }
            gone.await;
        }
        self.inner.listener.cleanup();
        tracing::info!(url = %self.inner.url, "stopped");
    }

    /// Drops every connection at once without a goodbye, as a crashed rig would.
    pub async fn abort(mut self) {
        self.inner.admission().stop();
        if let Some(accept) = self.accept.take() {
            accept.cancel().await;
        }
        for peer in self.inner.all_peers() {
            peer.shared.shutdown_transport();
        }
        self.inner.listener.cleanup();
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if self.accept.is_none() {
            return; // shut down or aborted already
        }
        let goodbye = self.inner.admission().stop();
        for peer in self.inner.all_peers() {
            peer.shared
                .command(|link, now| link.shutdown(&goodbye, now));
        }
        self.inner.listener.cleanup();
    }
}
