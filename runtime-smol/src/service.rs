//! [`RemoteService`]: a service that dials out to a relay, registers its
//! names and serves the calls the relay forwards — from behind a firewall,
//! as rt-cloud's data and subject services do. When the relay goes away (a
//! restart, a network cut), it reconnects with backoff and registers again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_listener::Event;
use rigwire_core::relay::REGISTER_METHOD;
use rigwire_core::{Config, Reconnect};
use rigwire_core::{Error, Url};
use smol::{future, Task};

use crate::client::open;
use crate::driver::sleep_until;
use crate::handler::Handlers;
use crate::peer::Peer;

rigwire_twin::remote_service!();

impl RemoteService {
    /// Dials the relay's services URL and registers. Once this returns, the
    /// service is reachable through the relay and stays so across relay
    /// restarts (re-registering each time) until closed.
    ///
    /// # Errors
    /// The first attempt's failure: `Connect`, `AuthFailed`, `Rejected`, or
    /// `Remote` with kind `Refused` when the relay refuses a name (taken, or
    /// not allowed), with its reason; `Config` (before dialing) for a name
    /// no relay takes (`NAME.method` routes by the first `.`).
    pub async fn connect(self, relay_url: &str) -> Result<RunningService, Error> {
        let endpoint = rigwire_core::Target::from(Url::parse(relay_url)?);
        let (names, config, policy, handlers) = self.setup.into_parts()?;
        let service = Arc::new(ServiceInner {
            endpoint,
            policy,
            names,
            config,
            handlers: Arc::new(handlers),
            state: Mutex::new(Registration::default()),
            changed: Event::new(),
            stop: Event::new(),
            stopping: AtomicBool::new(false),
        });
        let peer = service.register().await?;
        let task = smol::spawn(Arc::clone(&service).keep_registered(peer));
        Ok(RunningService {
            inner: service,
            task: Some(task),
        })
    }
}

/// The connection while registered, and how many registrations so far.
#[derive(Default)]
struct Registration {
    current: Option<Peer>,
    count: u64,
}

struct ServiceInner {
    endpoint: rigwire_core::Target,
    policy: Reconnect,
    names: Vec<String>,
    config: Config,
    handlers: Arc<Handlers>,
    state: Mutex<Registration>,
    changed: Event,
    stop: Event,
    stopping: AtomicBool,
}

impl ServiceInner {
    fn state(&self) -> std::sync::MutexGuard<'_, Registration> {
        rigwire_twin::lock(&self.state)
    }

    /// One connection to the relay, registered.
    async fn register(&self) -> Result<Peer, Error> {
        // It serves: no caller of its own to linger for.
        let peer = open(&self.endpoint, &self.config, &self.handlers, Duration::ZERO).await?;
        match peer
            .call::<_, Vec<String>>(REGISTER_METHOD, &self.names)
            .await
        {
            Ok(names) => {
                tracing::info!(relay = %self.endpoint, ?names, "registered");
                let mut state = self.state();
                state.current = Some(peer.clone());
                state.count += 1;
                drop(state);
                self.changed.notify(usize::MAX);
                Ok(peer)
            }
            Err(e) => {
                peer.close();
                Err(e)
            }
        }
    }

    /// Waits for the relay to go away, then reconnects and registers again.
    async fn keep_registered(self: Arc<Self>, mut peer: Peer) {
        loop {
            let stop = self.stop.listen();
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            let why = future::or(async { Some(peer.closed().await) }, async {
                stop.await;
                None
            })
            .await;
            let Some(why) = why else {
                return;
            };
            tracing::warn!(relay = %self.endpoint, "lost the relay: {why}; reconnecting");
            self.state().current = None;
            self.changed.notify(usize::MAX);
            let (mut again, mut round, mut last) = (None, self.policy.start(), why);
            while let Some(wait) = round.next(&last, Instant::now()) {
                let stop = self.stop.listen();
                if self.stopping.load(Ordering::SeqCst) {
                    return;
                }
                future::or(stop, async {
                    smol::Timer::after(wait).await;
                })
                .await;
                if self.stopping.load(Ordering::SeqCst) {
                    return;
                }
                match self.register().await {
                    Ok(p) => {
                        again = Some(p);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(relay = %self.endpoint, attempt = round.attempt(), "{e}");
                        last = e;
                    }
                }
            }
            match again {
                Some(p) => peer = p,
                None => {
                    return tracing::error!(relay = %self.endpoint, "gave up reconnecting: {last}")
                }
            }
        }
    }
}

/// A service registered at a relay. Dropping it (or [`close`](Self::close))
/// disconnects it and stops reconnecting.
#[must_use = "dropping a running service disconnects it from the relay: keep it while it should serve"]
pub struct RunningService {
    inner: Arc<ServiceInner>,
    task: Option<Task<()>>,
}

rigwire_twin::running_service!();

impl RunningService {
    /// Waits until the service has registered at least `count` times in all,
    /// for up to `timeout`; returns whether it has.
    pub async fn wait_registrations(&self, count: u64, timeout: Duration) -> bool {
        let until = rigwire_core::link::after(Instant::now(), timeout);
        loop {
            let listener = self.inner.changed.listen();
            if self.registrations() >= count {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            future::or(listener, sleep_until(Some(until))).await;
        }
    }

    /// Stops reconnecting, lets calls in progress finish for up to `grace`
    /// (new ones are answered `Shutdown`), then says goodbye to the relay;
    /// returns once the connection has closed. One of the service's own
    /// handlers spawns it (`smol::spawn(service.shutdown(grace)).detach()`):
    /// awaited there, it would wait for that very handler.
    pub async fn shutdown(self, grace: Duration) {
        self.end(|peer| async move {
            peer.shared
                .drain(grace, rigwire_core::link::SERVICE_GOODBYE);
            let until = rigwire_core::link::after(Instant::now(), grace);
            peer.shared.wait_closed_by(until).await;
        })
        .await;
    }

    /// Disconnects from the relay at once (with a goodbye: calls in
    /// progress are lost) and stops reconnecting.
    pub async fn close(self) {
        self.end(|peer| async move { peer.close() }).await;
    }

    /// Stops reconnecting, ends the connection there is with `ending`,
    /// then the task that kept it.
    async fn end<F: std::future::Future<Output = ()>>(mut self, ending: impl FnOnce(Peer) -> F) {
        if let Some(peer) = self.stop() {
            ending(peer).await;
        }
        if let Some(task) = self.task.take() {
            task.cancel().await;
        }
    }

    /// Stops reconnecting; the connection there is, to end.
    fn stop(&self) -> Option<Peer> {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.stop.notify(usize::MAX);
        self.inner.state().current.take()
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        if let Some(peer) = self.stop() {
            peer.close();
        }
    }
}
