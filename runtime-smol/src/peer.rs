//! [`Peer`]: one connection, as async code uses it. Every call is a future;
//! dropping it cancels the call (the peer is sent `Cancel`). Deadlines are
//! kept by the connection's driver task whether or not anyone polls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rigwire_core::{Error, Payload};

use crate::driver::Shared;
use crate::pending::{PendingCall, RawPendingCall};

/// One connected peer. Cheap to clone; every clone is the same connection.
#[derive(Clone)]
pub struct Peer {
    pub(crate) shared: Arc<Shared>,
}

rigwire_twin::peer_state!([async] [.await]);

impl Peer {
    rigwire_twin::peer_calls!([async] [.await]);

    /// Calls `method` once for each payload, their frames written together
    /// (one system call where the socket takes them), and waits for every
    /// answer: the results in the order of `args`, each its own (a call
    /// that could not start fails alone). Each call has its own deadline from
    /// `timeout` (else the configured default). Dropping the future cancels
    /// the calls still in flight.
    pub async fn call_batch_raw(
        &self,
        method: &str,
        args: impl IntoIterator<Item = Payload>,
        timeout: Option<Duration>,
    ) -> Vec<Result<Payload, Error>> {
        let deadline = self.shared.lock().link.deadline(timeout, Instant::now());
        let mut started = Vec::new();
        for args in args {
            started.push(self.start_call(method, args, deadline).await);
        }
        self.shared.write_now();
        let mut results = Vec::with_capacity(started.len());
        for call in started {
            results.push(match call {
                Ok(call) => call.wait().await,
                Err(e) => Err(e),
            });
        }
        results
    }

    /// Starts a call with a raw payload and an optional deadline (else the
    /// default). Calls started by tasks that run in the same turn of the
    /// executor leave in one write.
    ///
    /// # Errors
    /// As [`start`](Self::start), without `Codec`.
    pub async fn start_raw(
        &self,
        method: &str,
        args: Payload,
        timeout: Option<Duration>,
    ) -> Result<RawPendingCall, Error> {
        let deadline = self.shared.lock().link.deadline(timeout, Instant::now());
        let call = self.start_call(method, args, deadline).await?;
        self.shared.write_soon().await;
        Ok(call)
    }

    /// Starts one call of `method` for each payload, their frames written
    /// together (one system call where the socket takes them): many small
    /// calls kept in flight cost a fraction of starting each alone. Each
    /// has its own deadline from `timeout` (else the configured default).
    ///
    /// # Errors
    /// As [`start`](Self::start), for the first call that cannot start; the
    /// calls of the batch already started are then cancelled.
    pub async fn start_batch(
        &self,
        method: &str,
        args: impl IntoIterator<Item = Payload>,
        timeout: Option<Duration>,
    ) -> Result<Vec<RawPendingCall>, Error> {
        // Made together: one clock reading fixes every deadline, and one
        // admission under one lock takes them all (a refusal for room
        // waits, then goes on from the call it stopped at).
        let deadline = self.shared.lock().link.deadline(timeout, Instant::now());
        let mut args = args.into_iter().peekable();
        let mut ids = Vec::new();
        let admitted = self
            .shared
            .admit((deadline, false), true, |link, now| {
                while let Some(a) = args.peek() {
                    ids.push(link.call(method, a.clone(), deadline, now)?);
                    args.next();
                }
                Ok(())
            })
            .await;
        self.shared.write_now();
        // On a refusal, dropping the calls already started cancels them.
        let calls: Vec<RawPendingCall> = ids
            .into_iter()
            .map(|id| RawPendingCall::new(&self.shared, id))
            .collect();
        admitted.map(|()| calls).map_err(Error::from)
    }

    /// Admits a call, its frame left for the next write; dropping the
    /// handle before the answer cancels it.
    async fn start_call(
        &self,
        method: &str,
        args: Payload,
        deadline: Option<Instant>,
    ) -> Result<RawPendingCall, Error> {
        let id = self
            .shared
            .admit((deadline, false), true, |link, now| {
                link.call(method, args.clone(), deadline, now)
            })
            .await?;
        Ok(RawPendingCall::new(&self.shared, id))
    }

    /// Sends a one-way notification with a raw payload, waiting for room
    /// while the peer is not reading (within the default deadline, if one
    /// is configured).
    ///
    /// # Errors
    /// `Disconnected`, `TooLarge`.
    pub async fn notify_raw(&self, method: &str, args: Payload) -> Result<(), Error> {
        self.notify_waiting(method, args, true).await
    }

    /// [`notify_raw`](Self::notify_raw), or `Busy` at once when `wait` is
    /// false and the peer's output is full (a broadcast does not wait for
    /// one peer that stopped reading).
    pub(crate) async fn notify_waiting(
        &self,
        method: &str,
        args: Payload,
        wait: bool,
    ) -> Result<(), Error> {
        let deadline = self.shared.lock().link.deadline(None, Instant::now());
        self.shared
            .admit((deadline, true), wait, |link, now| {
                link.notify(method, args.clone(), deadline, now)
            })
            .await
            .map_err(Error::from)
    }

    /// Measures one round trip.
    ///
    /// # Errors
    /// `Disconnected`, `Busy`.
    pub async fn ping(&self) -> Result<Duration, Error> {
        let seq = self.shared.command(|link, now| link.ping(now))?;
        let found = self
            .shared
            .wait_for((None, None, None), |link| link.ping_outcome(seq))
            .await;
        found.expect("waits without deadline end with a result")
    }

    /// Sends `payload` and waits until the peer echoes exactly these bytes.
    ///
    /// # Errors
    /// [`Error::Echo`] (`Mismatch`, `Timeout`: this send only) or `Disconnected`.
    pub async fn confirmed_send(&self, payload: impl Into<Bytes>) -> Result<(), Error> {
        let payload = payload.into();
        let deadline = self.shared.lock().link.deadline(None, Instant::now());
        let seq = self
            .shared
            .admit((deadline, true), true, |link, now| {
                link.confirmed_send(payload.clone(), deadline, now)
            })
            .await?;
        let found = self
            .shared
            .wait_for((None, None, None), |link| link.waiters().take_confirm(seq))
            .await;
        found
            .expect("the core always resolves a confirmed send")
            .map_err(Error::from)
    }

    /// Closes the connection: the peer is told goodbye; pending calls fail.
    pub fn close(&self) {
        self.shared
            .command(|link, now| link.close("closed by the application", now));
    }
}
