//! [`LocalClient`]: a connection with no background threads, for scripts that
//! want none. Its calls read the transport themselves and serve the peer's
//! calls to us inline while they wait — what RPyC's serve/poll should have
//! been, without deadlocks (there is no second thread to deadlock with).

use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rigwire_core::Error;

use crate::client::open;
use crate::handler::Handlers;
use crate::peer::Peer;
use crate::transport::Url;
use rigwire_core::Config;

/// A single-threaded connection: nothing happens on it except inside its own
/// methods. Between calls nobody reads, so the peer's keepalive pings go
/// unanswered: call [`serve`](Self::serve) at least every keepalive timeout
/// when idle, or turn keepalive off on both sides.
#[derive(Debug)]
pub struct LocalClient {
    peer: Peer,
}

impl LocalClient {
    /// Connects to `url`; handler calls from the peer run on the calling thread.
    ///
    /// # Errors
    /// As [`Client::connect`](crate::Client::connect).
    pub fn connect_with(
        url: &str,
        config: Config,
        handlers: Handlers,
    ) -> Result<LocalClient, Error> {
        let endpoint = Url::parse(url)?.into();
        let peer = open(
            &endpoint,
            &config,
            &Arc::new(handlers),
            None,
            crate::driver::LINGER,
        )?;
        Ok(LocalClient { peer })
    }

    /// Connects to `url` exposing nothing.
    ///
    /// # Errors
    /// As [`Client::connect`](crate::Client::connect).
    pub fn connect(url: &str, config: Config) -> Result<LocalClient, Error> {
        Self::connect_with(url, config, Handlers::new())
    }

    /// Serves the peer (its calls, pings, keepalives) for `duration`, or until
    /// the connection closes.
    ///
    /// # Errors
    /// The connection's error if it closes.
    pub fn serve(&self, duration: Duration) -> Result<(), Error> {
        let until = rigwire_core::link::after(Instant::now(), duration);
        match self
            .peer
            .shared
            .wait_for(Some(until), |link| link.close_reason())
        {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

impl Deref for LocalClient {
    type Target = Peer;
    fn deref(&self) -> &Peer {
        &self.peer
    }
}

impl Drop for LocalClient {
    fn drop(&mut self) {
        self.peer.close();
    }
}
