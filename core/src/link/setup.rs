//! What a server and a dial-out service are given before they start, the
//! same in every runtime: each runtime's `Server` and `RemoteService`
//! dereference to these, so their settings, hooks and handler tables are
//! set up one way, and what starting takes from them (the admission of
//! connections, the reconnect policy) is decided here.

use crate::error::ConfigError;
use crate::link::reconnect::Reconnect;
use crate::link::{Admission, Config, Hooks};

/// A server being set up, the same in every runtime: its settings, its
/// handler table `H` and its hooks for peers `P`. Each runtime's `Server`
/// dereferences to it, and it to its handler table, so `expose`, `alias` and
/// the rest are the table's own.
pub struct ServerSetup<H, P> {
    config: Config,
    handlers: H,
    hooks: Hooks<P>,
    /// The URL bound, with the port the system chose.
    url: String,
    /// The served TLS certificate's fingerprint.
    fingerprint: Option<String>,
}

impl<H, P> std::fmt::Debug for ServerSetup<H, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("url", &self.url).finish()
    }
}

impl<H, P> ServerSetup<H, P> {
    /// A server with `config` and `handlers`, and no hooks yet, bound by
    /// `bind` (given the settings, it answers the URL it bound, with the
    /// port the system chose, and the fingerprint of the TLS certificate it
    /// serves, if any).
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) if the protocol settings are
    /// invalid (limits out of range, a keepalive that cannot work); what
    /// `bind` fails with.
    pub fn bind<L>(
        config: Config,
        handlers: H,
        bind: impl FnOnce(&Config) -> Result<(L, String, Option<String>), crate::Error>,
    ) -> Result<(L, Self), crate::Error> {
        config.protocol.validate()?;
        let (listener, url, fingerprint) = bind(&config)?;
        let setup = ServerSetup {
            config,
            handlers,
            hooks: Hooks::default(),
            url,
            fingerprint,
        };
        Ok((listener, setup))
    }

    /// The URL actually listened on, with the real port.
    pub fn local_url(&self) -> String {
        self.url.clone()
    }

    /// The SHA-256 fingerprint of the TLS certificate served (`tls://`,
    /// `wss://`), for clients to pin; `None` without TLS.
    pub fn tls_fingerprint(&self) -> Option<String> {
        self.fingerprint.clone()
    }

    /// The handler table, to expose many names at once or share a prepared one.
    pub fn handlers_mut(&mut self) -> &mut H {
        &mut self.handlers
    }

    /// Runs `f` when a peer has connected (after authentication), on the
    /// connection's own thread or task: keep it quick.
    pub fn on_connect(&mut self, f: impl Fn(&P) + Send + Sync + 'static) -> &mut Self {
        self.hooks.on_connect = Some(Box::new(f));
        self
    }

    /// Runs `f` when a peer's connection has closed, with the reason: once
    /// for each peer `on_connect` ran for. A connection that closed before
    /// (a failed handshake, a stranger, a refusal) runs neither hook; the
    /// runtime logs it.
    pub fn on_disconnect(
        &mut self,
        f: impl Fn(&P, &crate::error::Error) + Send + Sync + 'static,
    ) -> &mut Self {
        self.hooks.on_disconnect = Some(Box::new(f));
        self
    }

    /// Runs `f` for every confirmed message a peer sends (already echoed).
    pub fn on_message(
        &mut self,
        f: impl Fn(&P, bytes::Bytes) + Send + Sync + 'static,
    ) -> &mut Self {
        self.hooks.on_message = Some(Box::new(f));
        self
    }

    /// What the server starts with: its settings, handlers and hooks, and
    /// its [`Admission`] of connections, empty.
    pub fn into_parts(self) -> (Config, H, Hooks<P>, Admission) {
        let admission = Admission::new(
            "server",
            self.config.max_connections,
            self.config.max_handshaking,
        );
        (self.config, self.handlers, self.hooks, admission)
    }
}

impl<H, P> std::ops::Deref for ServerSetup<H, P> {
    type Target = H;
    fn deref(&self) -> &H {
        &self.handlers
    }
}

impl<H, P> std::ops::DerefMut for ServerSetup<H, P> {
    fn deref_mut(&mut self) -> &mut H {
        &mut self.handlers
    }
}

/// A service to run behind a relay, being set up: the names it registers,
/// its settings and its handler table `H` (which it dereferences to).
pub struct ServiceSetup<H> {
    names: Vec<String>,
    config: Config,
    handlers: H,
}

impl<H> std::fmt::Debug for ServiceSetup<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteService")
            .field("names", &self.names)
            .finish()
    }
}

impl<H> ServiceSetup<H> {
    /// A service that will register `names` (callers then call
    /// `name.method`) and answer with `handlers`. `config.reconnect` sets
    /// the backoff after the relay is lost; without it the service retries
    /// with the default backoff. Either way it retries until closed.
    pub fn new(names: &[&str], config: Config, handlers: H) -> Self {
        ServiceSetup {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            config,
            handlers,
        }
    }

    /// The names it registers.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The handler table (exposed names, dispatch).
    pub fn handlers_mut(&mut self) -> &mut H {
        &mut self.handlers
    }

    /// What the service starts with: its names, its settings for one
    /// connection to the relay (no reconnect of its own), the reconnect
    /// policy it keeps registered by (never giving up), and its handlers.
    ///
    /// # Errors
    /// [`ConfigError::NotAServiceName`] for a name no relay registers, said
    /// before dialing (a relay that is down would hide it).
    pub fn into_parts(self) -> Result<(Vec<String>, Config, Reconnect, H), ConfigError> {
        if let Some(bad) = self
            .names
            .iter()
            .find(|n| !crate::relay::is_service_name(n))
        {
            return Err(ConfigError::NotAServiceName(bad.clone()));
        }
        let policy = self.config.reconnect.unwrap_or_default().forever();
        let config = Config {
            reconnect: None,
            ..self.config
        };
        Ok((self.names, config, policy, self.handlers))
    }
}

impl<H> std::ops::Deref for ServiceSetup<H> {
    type Target = H;
    fn deref(&self) -> &H {
        &self.handlers
    }
}

impl<H> std::ops::DerefMut for ServiceSetup<H> {
    fn deref_mut(&mut self) -> &mut H {
        &mut self.handlers
    }
}
