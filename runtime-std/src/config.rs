//! Configuration of a client or server: the protocol's settings plus the
//! runtime's own (timeouts, reconnect, threads, connection limit).

use std::path::Path;
use std::time::Duration;

use rigwire_core::{Error, Keepalive, Secret};

/// Reconnect with exponential backoff after the connection is lost. Calls in
/// flight when it is lost still fail with `Disconnected` (they may have run);
/// the next call reconnects first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    /// Wait before the first retry (default 100 ms), doubled after each failure.
    pub initial: Duration,
    /// Longest wait between retries (default 5 s).
    pub max: Duration,
    /// Attempts before giving up (default 10).
    pub attempts: u32,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            attempts: 10,
        }
    }
}

/// Settings for a [`Client`](crate::Client), [`Server`](crate::Server) or
/// [`LocalClient`](crate::LocalClient).
#[derive(Debug, Clone)]
pub struct Config {
    /// The protocol's settings: name, secret, limits, keepalive, default deadline.
    pub protocol: rigwire_core::Config,
    /// Time allowed to establish the transport (default 5 s).
    pub connect_timeout: Duration,
    /// Reconnect after a lost connection (clients only; default off).
    pub reconnect: Option<Reconnect>,
    /// Threads for handlers that may block (default 16).
    pub handler_threads: usize,
    /// Connections a server serves at once; more are rejected with a reason (default 256).
    pub max_connections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            protocol: rigwire_core::Config::default(),
            connect_timeout: Duration::from_secs(5),
            reconnect: None,
            handler_threads: 16,
            max_connections: 256,
        }
    }
}

impl Config {
    /// Defaults, with this endpoint's name (sent to the peer, shown in its logs).
    pub fn named(name: &str) -> Self {
        Config {
            protocol: rigwire_core::Config::named(name),
            ..Config::default()
        }
    }

    /// Requires this shared secret from the peer, and proves we hold it.
    ///
    /// # Errors
    /// [`Error::Config`] for an empty secret.
    pub fn secret(mut self, secret: impl Into<Vec<u8>>) -> Result<Self, Error> {
        self.protocol.secret = Some(Secret::new(secret)?);
        Ok(self)
    }

    /// Gives calls made without an explicit deadline this one.
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.protocol.default_call_timeout = Some(timeout);
        self
    }

    /// Sets keepalive (`None` turns liveness checking off).
    pub fn keepalive(mut self, keepalive: Option<Keepalive>) -> Self {
        self.protocol.keepalive = keepalive;
        self
    }

    /// Turns on reconnect with these settings.
    pub fn reconnect(mut self, reconnect: Reconnect) -> Self {
        self.reconnect = Some(reconnect);
        self
    }
}

/// Reads a shared secret from a file (a trailing newline is not part of it).
///
/// # Errors
/// [`Error::Config`] if the file cannot be read or holds an empty secret.
pub fn secret_from_file(path: &Path) -> Result<Secret, Error> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::Config(rigwire_core::ConfigError::SecretUnreadable(format!(
            "{}: {e}",
            path.display()
        )))
    })?;
    let trimmed = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
    Ok(Secret::new(trimmed.to_vec())?)
}
