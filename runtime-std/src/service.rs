//! [`RemoteService`]: a service that dials out to a relay, registers its
//! names and serves the calls the relay forwards — from behind a firewall,
//! as rt-cloud's data and subject services do. When the relay goes away (a
//! restart, a network cut), a watcher thread reconnects with backoff and
//! registers again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rigwire_core::relay::REGISTER_METHOD;
use rigwire_core::Error;
use rigwire_core::{Config, Reconnect};

use crate::client::open;
use crate::handler::Handlers;
use crate::peer::Peer;
use crate::pool::Pool;
use crate::sync::{lock, sleep_until, stop_off};
use crate::transport::Url;

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
    pub fn connect(self, relay_url: &str) -> Result<RunningService, Error> {
        let endpoint = rigwire_core::Target::from(Url::parse(relay_url)?);
        let (names, config, policy, handlers) = self.setup.into_parts()?;
        let inner = Arc::new(ServiceInner {
            pool: Pool::new(config.handler_threads, "rigwire-service"),
            endpoint,
            policy,
            names,
            config,
            handlers: Arc::new(handlers),
            state: Mutex::new(Registration::default()),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
        });
        inner.register()?;
        let watcher = {
            let inner = Arc::clone(&inner);
            thread::Builder::new()
                .name("rigwire-service".into())
                .spawn(move || inner.keep_registered())
                .map_err(|e| Error::Connect {
                    url: relay_url.to_owned(),
                    reason: format!("cannot start the watcher thread: {e}"),
                })?
        };
        Ok(RunningService {
            inner,
            watcher: Some(watcher),
        })
    }
}

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
    pool: Arc<Pool>,
    state: Mutex<Registration>,
    changed: Condvar,
    stopping: AtomicBool,
}

impl ServiceInner {
    fn state(&self) -> std::sync::MutexGuard<'_, Registration> {
        lock(&self.state)
    }

    /// One connection to the relay, registered.
    fn register(&self) -> Result<(), Error> {
        let peer = open(
            &self.endpoint,
            &self.config,
            &self.handlers,
            Some(&self.pool),
            Duration::ZERO, // it serves: no caller of its own to linger for
        )?;
        match peer.call::<_, Vec<String>>(REGISTER_METHOD, &self.names) {
            Ok(names) => {
                tracing::info!(relay = %self.endpoint, ?names, "registered");
                let mut s = self.state();
                s.current = Some(peer);
                s.count += 1;
                self.changed.notify_all();
                Ok(())
            }
            Err(e) => {
                peer.close();
                Err(e)
            }
        }
    }

    /// Sleeps `wait` unless stopped first; returns whether to go on.
    fn pause(&self, wait: Duration) -> bool {
        let until = Some(rigwire_core::link::after(Instant::now(), wait));
        let stopping = || self.stopping.load(Ordering::SeqCst);
        !sleep_until(&self.changed, self.state(), until, |_| stopping()).1
    }

    /// Waits for the relay to go away, then reconnects and registers again.
    fn keep_registered(self: Arc<Self>) {
        loop {
            let Some(peer) = self.state().current.clone() else {
                return;
            };
            // Closing the service closes this peer too, which ends the wait.
            let why = peer.closed();
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            tracing::warn!(relay = %self.endpoint, "lost the relay: {why}; reconnecting");
            self.state().current = None;
            let (mut round, mut last) = (self.policy.start(), why);
            let registered = loop {
                let Some(wait) = round.next(&last, Instant::now()) else {
                    break false;
                };
                if !self.pause(wait) {
                    return;
                }
                match self.register() {
                    Ok(()) => break true,
                    Err(e) => {
                        tracing::warn!(relay = %self.endpoint, attempt = round.attempt(), "{e}");
                        last = e;
                    }
                }
            };
            if !registered {
                return tracing::error!(relay = %self.endpoint, "gave up reconnecting: {last}");
            }
        }
    }
}

/// A service registered at a relay. Dropping it (or [`close`](Self::close))
/// disconnects it and stops reconnecting.
#[must_use = "dropping a running service disconnects it from the relay: keep it while it should serve"]
pub struct RunningService {
    inner: Arc<ServiceInner>,
    watcher: Option<JoinHandle<()>>,
}

rigwire_twin::running_service!();

impl RunningService {
    /// Waits until the service has registered at least `count` times in all,
    /// for up to `timeout`; returns whether it has.
    pub fn wait_registrations(&self, count: u64, timeout: Duration) -> bool {
        let until = Some(rigwire_core::link::after(Instant::now(), timeout));
        let inner = &self.inner;
        sleep_until(&inner.changed, inner.state(), until, |s| s.count >= count).1
    }

    /// Disconnects from the relay at once (with a goodbye: calls in
    /// progress are lost) and stops reconnecting.
    pub fn close(mut self) {
        self.stop(None);
    }

    /// Stops reconnecting, lets calls in progress finish for up to `grace`
    /// (new ones are answered `Shutdown`), then says goodbye to the relay
    /// and waits for the connection to end.
    ///
    /// Called by one of the service's own handlers (a `quit` method), it
    /// returns at once and the service goes on a thread of its own: waiting
    /// here would wait for that very handler, a call in progress.
    pub fn shutdown(mut self, grace: Duration) {
        let own = self.inner.pool.runs_this_thread();
        stop_off(own, "service", move || self.stop(Some(grace)));
    }

    /// Stops reconnecting and ends the connection: drained within `grace`,
    /// or at once.
    fn stop(&mut self, grace: Option<Duration>) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        let current = {
            let mut s = self.inner.state();
            self.inner.changed.notify_all();
            s.current.take()
        };
        match (current, grace) {
            (Some(peer), Some(grace)) => {
                peer.shared
                    .drain(grace, rigwire_core::link::SERVICE_GOODBYE);
                peer.shared.wait_finished();
            }
            (Some(peer), None) => peer.close(),
            (None, _) => {}
        }
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        self.stop(None);
    }
}
