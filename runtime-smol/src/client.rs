//! [`Client`]: dials a peer; a driver task keeps the connection alive and
//! serves the peer's calls while the application is busy.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use event_listener::Event;
use rigwire_core::link::{Redial, SharedConnection, Want};
use rigwire_core::Config;
use rigwire_core::{Error, Target};

use crate::driver::{Hooks, Shared, LINGER};
use crate::handler::Handlers;
use crate::peer::Peer;
use crate::pending::{PendingCall, RawPendingCall};
use crate::transport;

pub(crate) use rigwire_twin::nonce;

/// A connection to one peer, made by dialing it. See [`Peer`] for each call.
pub struct Client {
    endpoint: Target,
    config: Config,
    handlers: Arc<Handlers>,
    current: Mutex<SharedConnection<Peer>>,
    /// Wakes callers waiting for a reconnect another caller is making.
    redialed: Event,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("url", &self.url()).finish()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.current().peer().close();
    }
}

/// Lets the other callers make the connection if the caller making it
/// stops (its task dropped) before its round ends.
struct Redialing<'a>(Option<&'a Client>);

impl Drop for Redialing<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.0 {
            client.current().abandoned();
            client.redialed.notify(usize::MAX);
        }
    }
}

/// Dials, runs the handshake, and returns once it has completed or failed.
/// `linger` is [`LINGER`] for a script's client, zero for a connection that
/// mostly serves (a remote service).
pub(crate) async fn open(
    target: &Target,
    config: &Config,
    handlers: &Arc<Handlers>,
    linger: Duration,
) -> Result<Peer, Error> {
    let endpoint = &target.url;
    let attempt = config.connecting(Instant::now())?;
    if let Some(warning) = config.tls.unused_at(endpoint, false) {
        tracing::warn!("{warning}");
    }
    let (socket, codec) = transport::connect(endpoint, config, &attempt).await?;
    let begun = Instant::now();
    let registry = handlers.registry().clone();
    let conn = attempt.client_connection(&config.protocol, target, registry, nonce(), begun)?;
    let shared = Shared::new(
        conn,
        Arc::new(socket),
        codec,
        Arc::clone(handlers),
        Arc::new(Hooks::default()),
        endpoint.to_string(),
        linger,
    );
    smol::spawn(Arc::clone(&shared).drive()).detach();
    let outcome = shared
        .wait_for((Some(attempt.handshake_wait(begun)), None, None), |link| {
            link.handshake_outcome()
        })
        .await;
    if outcome.is_none() {
        shared.shutdown_transport();
    }
    attempt.handshake_outcome(outcome, &endpoint.to_string())?;
    tracing::debug!(peer = %endpoint, "connected");
    Ok(Peer::new(shared))
}

impl Client {
    /// Connects to `url` (`tcp://host:port`, `unix:///path` or `ws://host:port/path`).
    /// A URL ending in `#NAME` reaches the service `NAME` registered at the
    /// relay there: each call, notify or batch of this client's goes to
    /// `NAME.method` (see [`Target`](rigwire_core::Target) for what stays
    /// the relay's: `confirmed_send`, and [`peer`](Self::peer)'s own calls; a
    /// ping times the service).
    ///
    /// # Errors
    /// `Connect`, `AuthFailed`, `VersionMismatch`, `Rejected`, `InvalidUrl`, `Config`.
    pub async fn connect(url: &str, config: Config) -> Result<Client, Error> {
        Self::connect_with(url, config, Handlers::new()).await
    }

    /// Connects and exposes `handlers` to the peer, which may call them back.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_with(
        url: &str,
        config: Config,
        handlers: Handlers,
    ) -> Result<Client, Error> {
        let endpoint = Target::parse(url)?;
        let handlers = Arc::new(handlers);
        let peer = open(&endpoint, &config, &handlers, LINGER).await?;
        Ok(Client {
            endpoint,
            config,
            handlers,
            current: Mutex::new(SharedConnection::new(peer)),
            redialed: Event::new(),
        })
    }

    /// The current connection; if it was lost and reconnect is on, a new one
    /// (with backoff). Calls in flight when it was lost are never retried.
    ///
    /// # Errors
    /// The connection's error if it is lost and cannot be re-established.
    pub async fn peer(&self) -> Result<Peer, Error> {
        self.peer_by(None).await
    }

    /// The connection for a call with `timeout` (else the configured
    /// default): one made again only within the call's deadline.
    async fn peer_within(&self, timeout: Option<Duration>) -> Result<Peer, Error> {
        let deadline = self.config.reconnect_deadline(timeout, Instant::now);
        self.peer_by(deadline).await
    }

    /// [`peer`](Self::peer), giving up on reconnecting by `deadline` with
    /// the last attempt's error. One caller reconnects at a time; the others
    /// wait for it within their own deadlines (else `DeadlineExceeded`).
    async fn peer_by(&self, deadline: Option<Instant>) -> Result<Peer, Error> {
        if self.config.reads_before_calls() {
            // Not under the lock: what the read brings may run.
            let peer = self.current().peer().clone();
            peer.shared.read_now();
        }
        loop {
            let (want, woken) = {
                let mut current = self.current();
                let lost = current.peer().close_reason();
                let want = current.want(lost, self.config.reconnect, deadline, Instant::now)?;
                // Listening under the lock: no wake-up between is missed.
                let woken = matches!(want, Want::Wait).then(|| self.redialed.listen());
                (want, woken)
            };
            let (round, last) = match (want, woken) {
                (Want::Use(peer), _) => return Ok(peer),
                (Want::Redial(round, last), _) => (round, last),
                (Want::Wait, woken) => {
                    let woken = async {
                        if let Some(woken) = woken {
                            woken.await;
                        }
                    };
                    match deadline {
                        None => woken.await,
                        Some(d) => {
                            smol::future::or(woken, async {
                                smol::Timer::at(d).await;
                            })
                            .await
                        }
                    }
                    continue;
                }
            };
            let mut guard = Redialing(Some(self));
            let made = self.redial(round, last).await;
            guard.0 = None;
            let made = self.current().made(made);
            self.redialed.notify(usize::MAX);
            let (peer, closed_meanwhile) = made?;
            if closed_meanwhile {
                peer.close();
            }
            return Ok(peer);
        }
    }

    /// One round of reconnecting, after the connection failed with `last`.
    async fn redial(&self, mut round: Redial, mut last: Error) -> Result<Peer, Error> {
        while let Some(wait) = round.next(&last, Instant::now()) {
            smol::Timer::after(wait).await;
            let config = self.config.cut_to(round.time_left(Instant::now()));
            match open(&self.endpoint, &config, &self.handlers, LINGER).await {
                Ok(peer) => {
                    tracing::info!(peer = %self.endpoint, attempt = round.attempt(), "reconnected");
                    return Ok(peer);
                }
                Err(e) => {
                    tracing::warn!(peer = %self.endpoint, attempt = round.attempt(), "reconnect failed: {e}");
                    last = e;
                }
            }
        }
        Err(last)
    }

    fn current(&self) -> MutexGuard<'_, SharedConnection<Peer>> {
        rigwire_twin::lock(&self.current)
    }

    /// Why its connection closed, if it has; `None` while it is up. A
    /// reconnecting client makes it again at its next call, not here.
    pub fn close_reason(&self) -> Option<Error> {
        self.current().peer().close_reason()
    }

    /// The codec its typed calls go out in ([`Config::call_codec`]).
    pub fn call_codec(&self) -> rigwire_core::Codec {
        self.config.protocol.call_codec
    }

    /// The URL this client dials, with the `#NAME` of the service behind
    /// the relay there that it calls, if it names one.
    pub fn url(&self) -> String {
        self.endpoint.to_string()
    }

    /// Where it dials, and the relayed service its calls go to.
    fn target(&self) -> &Target {
        &self.endpoint
    }

    rigwire_twin::client_calls!([async] [.await]);

    /// Closes the connection (see [`Peer::close`]); the client stays
    /// closed, reconnect or not.
    pub async fn close(&self) {
        self.current().close().close();
    }
}
