//! [`Client`]: dials a peer and keeps a background thread that answers its
//! keepalives and its calls back to us while the application is busy.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use rigwire_core::link::{Redial, SharedConnection, Want};
use rigwire_core::{Error, Payload, Target};

use crate::driver::{Hooks, Shared, LINGER};
use crate::handler::Handlers;
use crate::peer::{Deferred, Peer, PendingCall, RawPendingCall, TryStarted};
use crate::pool::Pool;
use crate::sync::{lock, sleep};
use crate::transport;
use rigwire_core::Config;

/// A connection to one peer, made by dialing it. Blocking calls; many
/// threads may share one client. See [`Peer`] for what each call does.
pub struct Client {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    endpoint: Target,
    config: Config,
    handlers: Arc<Handlers>,
    pool: Arc<Pool>,
    current: Mutex<SharedConnection<Peer>>,
    /// Wakes callers waiting for a reconnect another caller is making.
    redialed: Condvar,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("url", &self.url()).finish()
    }
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        self.current().peer().close();
    }
}

impl ClientInner {
    fn current(&self) -> MutexGuard<'_, SharedConnection<Peer>> {
        lock(&self.current)
    }
}

pub(crate) use rigwire_twin::nonce;

/// Dials, runs the handshake, and returns once it has completed or failed.
/// `linger` is [`LINGER`](crate::driver::LINGER) for a script's client, zero
/// for a connection that mostly serves (a remote service).
pub(crate) fn open(
    target: &Target,
    config: &Config,
    handlers: &Arc<Handlers>,
    pool: Option<&Arc<Pool>>,
    linger: Duration,
) -> Result<Peer, Error> {
    let endpoint = &target.url;
    let attempt = config.connecting(Instant::now())?;
    if let Some(warning) = config.tls.unused_at(endpoint, false) {
        tracing::warn!("{warning}");
    }
    let transport = transport::connect(endpoint, config, &attempt)?;
    let begun = Instant::now();
    let registry = handlers.registry().clone();
    let conn = attempt.client_connection(&config.protocol, target, registry, nonce(), begun)?;
    let shared = Shared::new(
        conn,
        transport,
        Arc::clone(handlers),
        pool.cloned(),
        Arc::new(Hooks::default()),
        endpoint.to_string(),
        linger,
    )
    .map_err(|e| Error::Connect {
        url: endpoint.to_string(),
        reason: e.to_string(),
    })?;
    if pool.is_some() {
        let driver = Arc::clone(&shared);
        thread::Builder::new()
            .name("rigwire-client".into())
            .spawn(move || driver.drive())
            .map_err(|e| Error::Connect {
                url: endpoint.to_string(),
                reason: format!("cannot start a thread: {e}"),
            })?;
    }
    let outcome = shared.wait_for(Some(attempt.handshake_wait(begun)), |link| {
        link.handshake_outcome()
    });
    if outcome.is_none() {
        shared.shutdown_transport();
    }
    attempt.handshake_outcome(outcome, &endpoint.to_string())?;
    tracing::debug!(peer = %endpoint, "connected");
    Ok(Peer::new(shared))
}

impl Client {
    /// Connects to `url` (`tcp://host:port`, `unix:///path`, `ws://host:port/path`).
    /// A URL ending in `#NAME` reaches the service `NAME` registered at the
    /// relay there: each call, notify or batch of this client's goes to
    /// `NAME.method` (see [`Target`](rigwire_core::Target) for what stays
    /// the relay's: `confirmed_send`, and [`peer`](Self::peer)'s own calls; a
    /// ping times the service).
    ///
    /// # Errors
    /// `Connect` (refused, unreachable), `AuthFailed`, `VersionMismatch`,
    /// `Rejected` (server full or shutting down), `InvalidUrl`, `Config`.
    pub fn connect(url: &str, config: Config) -> Result<Client, Error> {
        Self::connect_with(url, config, Handlers::new())
    }

    /// Connects and exposes `handlers` to the peer, which may call them back.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub fn connect_with(url: &str, config: Config, handlers: Handlers) -> Result<Client, Error> {
        let endpoint = Target::parse(url)?;
        let handlers = Arc::new(handlers);
        let pool = Pool::new(config.handler_threads, "rigwire-client");
        let peer = open(&endpoint, &config, &handlers, Some(&pool), LINGER)?;
        Ok(Client {
            inner: Arc::new(ClientInner {
                endpoint,
                config,
                handlers,
                pool,
                current: Mutex::new(SharedConnection::new(peer)),
                redialed: Condvar::new(),
            }),
        })
    }

    /// The current connection; if it was lost and reconnect is on, a new one
    /// (with backoff). Without reconnect, a lost connection stays lost.
    ///
    /// # Errors
    /// The connection's error if it is lost and cannot be re-established.
    pub fn peer(&self) -> Result<Peer, Error> {
        self.peer_by(None)
    }

    /// The connection for a call with `timeout` (else the configured
    /// default): one made again only within the call's deadline.
    fn peer_within(&self, timeout: Option<Duration>) -> Result<Peer, Error> {
        let deadline = self.inner.config.reconnect_deadline(timeout, Instant::now);
        self.peer_by(deadline)
    }

    /// [`peer`](Self::peer), giving up on reconnecting by `deadline` with
    /// the last attempt's error. One caller reconnects at a time; the others
    /// wait for it within their own deadlines (else `DeadlineExceeded`).
    fn peer_by(&self, deadline: Option<Instant>) -> Result<Peer, Error> {
        let inner = &self.inner;
        self.notice_lost();
        let mut current = inner.current();
        loop {
            let lost = current.peer().close_reason();
            let (round, last) =
                match current.want(lost, inner.config.reconnect, deadline, Instant::now)? {
                    Want::Use(peer) => return Ok(peer),
                    Want::Redial(round, last) => (round, last),
                    Want::Wait => {
                        current = sleep(&inner.redialed, current, deadline);
                        continue;
                    }
                };
            drop(current);
            let made = self.redial(round, last);
            let made = inner.current().made(made);
            inner.redialed.notify_all();
            let (peer, closed_meanwhile) = made?;
            if closed_meanwhile {
                peer.close();
            }
            return Ok(peer);
        }
    }

    /// With reconnect on, reads what the connection in use holds, without
    /// waiting: an end of stream that sat unread is noticed before a call
    /// goes to a connection that is gone, rather than to a new one.
    fn notice_lost(&self) {
        if self.inner.config.reads_before_calls() {
            // Not under the lock: what the read brings may run.
            let peer = self.inner.current().peer().clone();
            peer.shared.read_pending();
        }
    }

    /// See [`Peer::try_start_batch`]. A lost connection that reconnect
    /// would make again is not made here, since that waits: the calls are
    /// then [`Deferred::Redial`].
    ///
    /// # Errors
    /// As the [`Peer`]'s; `DeadlineExceeded` when the connection is lost
    /// and the calls' deadline has passed.
    pub fn try_start_batch(
        &self,
        method: &str,
        args: Vec<Payload>,
        timeout: Option<Duration>,
        made: Instant,
        on_room: impl FnOnce() + Send + 'static,
    ) -> Result<TryStarted, Error> {
        let Some(peer) = self.peer_now(timeout, made)? else {
            let rest = Some(Deferred::Redial);
            return Ok(TryStarted {
                calls: Vec::new(),
                rest,
            });
        };
        let method = self.target().method(method);
        peer.try_start_batch(&method, args, timeout, made, on_room)
    }

    /// See [`Peer::try_notify_raw`]; a lost connection that reconnect
    /// would make again is [`Deferred::Redial`], as for
    /// [`try_start_batch`](Self::try_start_batch).
    ///
    /// # Errors
    /// As the [`Peer`]'s; `DeadlineExceeded` when the connection is lost
    /// and the notification's deadline has passed.
    pub fn try_notify_raw(
        &self,
        method: &str,
        args: Payload,
        made: Instant,
        on_room: impl FnOnce() + Send + 'static,
    ) -> Result<Option<Deferred>, Error> {
        match self.peer_now(None, made)? {
            Some(peer) => peer.try_notify_raw(&self.target().method(method), args, made, on_room),
            None => Ok(Some(Deferred::Redial)),
        }
    }

    /// The connection for a command made at `made` with `timeout` that
    /// never waits ([`SharedConnection::without_waiting`]).
    fn peer_now(&self, timeout: Option<Duration>, made: Instant) -> Result<Option<Peer>, Error> {
        self.notice_lost();
        let config = &self.inner.config;
        let deadline = config.reconnect_deadline(timeout, || made);
        let current = self.inner.current();
        let lost = current.peer().close_reason().is_some();
        current.without_waiting(lost, config.reconnect, deadline, Instant::now())
    }

    /// One round of reconnecting, after the connection failed with `last`.
    fn redial(&self, mut round: Redial, mut last: Error) -> Result<Peer, Error> {
        let inner = &self.inner;
        while let Some(wait) = round.next(&last, Instant::now()) {
            thread::sleep(wait);
            let config = inner.config.cut_to(round.time_left(Instant::now()));
            match open(
                &inner.endpoint,
                &config,
                &inner.handlers,
                Some(&inner.pool),
                LINGER,
            ) {
                Ok(peer) => {
                    let attempt = round.attempt();
                    tracing::info!(peer = %inner.endpoint, attempt, "reconnected");
                    return Ok(peer);
                }
                Err(e) => {
                    let attempt = round.attempt();
                    tracing::warn!(peer = %inner.endpoint, attempt, "reconnect failed: {e}");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Why its connection closed, if it has; `None` while it is up. A
    /// reconnecting client makes it again at its next call, not here.
    pub fn close_reason(&self) -> Option<Error> {
        self.inner.current().peer().close_reason()
    }

    /// The codec its typed calls go out in ([`Config::call_codec`]).
    pub fn call_codec(&self) -> rigwire_core::Codec {
        self.inner.config.protocol.call_codec
    }

    /// The URL this client dials, with the `#NAME` of the service behind
    /// the relay there that it calls, if it names one.
    pub fn url(&self) -> String {
        self.inner.endpoint.to_string()
    }

    /// Where it dials, and the relayed service its calls go to.
    fn target(&self) -> &Target {
        &self.inner.endpoint
    }

    rigwire_twin::client_calls!([] []);

    /// Closes the connection (see [`Peer::close`]); the client stays closed,
    /// reconnect or not.
    pub fn close(&self) {
        self.inner.current().close().close();
    }
}
