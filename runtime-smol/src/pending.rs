//! [`RawPendingCall`] and [`PendingCall`]: calls started and not yet
//! answered, so that one task can keep many in flight ([`Peer::start_batch`]).
//! Dropping one before its answer cancels the call.
//!
//! [`Peer::start_batch`]: crate::Peer::start_batch

use std::time::{Duration, Instant};

use rigwire_core::{Error, Payload};

use crate::driver::Shared;

rigwire_twin::raw_pending_call!(
    "A call in flight with raw payloads. Dropping it before its answer cancels the call (the peer is sent `Cancel`)."
);

impl RawPendingCall {
    /// Whether the result (or its failure) has arrived; never waits.
    pub fn is_ready(&self) -> bool {
        self.shared.lock().link.waiters().call_ready(self.id)
    }

    /// Waits for the result, however long the call's deadline allows.
    /// Dropping the future before it ends cancels the call.
    ///
    /// # Errors
    /// As [`Peer::call_raw`](crate::Peer::call_raw).
    pub async fn wait(mut self) -> Result<Payload, Error> {
        self.wait_until(None)
            .await
            .expect("waits without deadline end with a result")
    }

    /// Waits at most `timeout`; on [`Error::WaitTimeout`] (or if the future
    /// is dropped) the call stays in flight and can be waited on again.
    ///
    /// # Errors
    /// As [`Peer::call_raw`](crate::Peer::call_raw), plus `WaitTimeout`.
    pub async fn wait_timeout(&mut self, timeout: Duration) -> Result<Payload, Error> {
        self.wait_until(Some(timeout))
            .await
            .unwrap_or(Err(Error::WaitTimeout(timeout)))
    }

    async fn wait_until(&mut self, timeout: Option<Duration>) -> Option<Result<Payload, Error>> {
        let id = self.id;
        let until = match timeout {
            // An answer already here needs no clock (polling a window).
            Some(_) if self.shared.lock().link.waiters().call_ready(id) => None,
            Some(timeout) => Some(rigwire_core::link::after(Instant::now(), timeout)),
            None => None,
        };
        let found = self
            .shared
            .wait_for((until, None, Some(id)), |link| link.waiters().take_call(id))
            .await?;
        self.done = true;
        Some(found.map_err(Error::from))
    }
}

rigwire_twin::pending_call!([async] [.await]);
