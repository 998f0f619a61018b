//! [`Peer`]: one connection, as the application uses it. A client wraps one;
//! a server hands one to every hook and handler, so a rig can call back the
//! script that called it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rigwire_core::{Codec, Error, Payload};

use crate::driver::Shared;

/// One connected peer. Cheap to clone; every clone is the same connection.
/// Calls block the calling thread until their answer, error or deadline;
/// many threads may call at once.
#[derive(Clone)]
pub struct Peer {
    pub(crate) shared: Arc<Shared>,
}

rigwire_twin::peer_state!([] []);

impl Peer {
    rigwire_twin::peer_calls!([] []);

    /// Starts a call with a raw payload and an optional deadline (else the default).
    /// The call runs while its [`RawPendingCall`] is kept: dropping that in
    /// flight cancels it, which the compiler points out.
    ///
    /// ```compile_fail
    /// #![deny(unused_must_use)]
    /// fn fire_and_forget(rig: &rigwire_std::Peer) -> Result<(), rigwire_std::Error> {
    ///     let args = rigwire_core::Payload::json(&10)?;
    ///     rig.start_raw("acquire", args, None)?; // cancelled as it is dropped
    ///     Ok(())
    /// }
    /// ```
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn start_raw(
        &self,
        method: &str,
        args: Payload,
        timeout: Option<Duration>,
    ) -> Result<RawPendingCall, Error> {
        self.start_at(method, args, timeout, Instant::now())
    }

    /// Starts a call made at `now`.
    fn start_at(
        &self,
        method: &str,
        args: Payload,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<RawPendingCall, Error> {
        let id = self
            .shared
            .admit((timeout, now), true, |link, deadline, now| {
                link.call(method, args.clone(), deadline, now)
            })?;
        Ok(RawPendingCall::new(&self.shared, id))
    }

    /// Starts one call of `method` for each payload, their frames written
    /// together (one system call where the socket takes them): many small
    /// calls kept in flight cost a fraction of starting each alone. Each
    /// has its own deadline from `timeout` (else the configured default).
    ///
    /// # Errors
    /// As [`start`](Self::start), for the first call that cannot start; the
    /// calls of the batch already started are then cancelled.
    pub fn start_batch(
        &self,
        method: &str,
        args: impl IntoIterator<Item = Payload>,
        timeout: Option<Duration>,
    ) -> Result<Vec<RawPendingCall>, Error> {
        // Made together: one clock reading fixes every deadline, and one
        // admission under one lock takes them all (a refusal for room
        // waits, then goes on from the call it stopped at).
        let now = Instant::now();
        let mut args = args.into_iter().peekable();
        let mut ids = Vec::new();
        let admitted = self.shared.corked(|| {
            self.shared
                .admit((timeout, now), true, |link, deadline, now| {
                    while let Some(a) = args.peek() {
                        ids.push(link.call(method, a.clone(), deadline, now)?);
                        args.next();
                    }
                    Ok(())
                })
        });
        let calls = ids
            .into_iter()
            .map(|id| RawPendingCall::new(&self.shared, id));
        // On a refusal, dropping the calls already started cancels them.
        let calls: Vec<RawPendingCall> = calls.collect();
        admitted.map(|()| calls).map_err(Error::from)
    }

    /// Starts one call of `method` per payload as
    /// [`start_batch`](Self::start_batch) does, but never waits: for an
    /// event loop, which awaits room itself instead of holding a thread for
    /// it. Each call's deadline runs from `made` (when it was asked for),
    /// by `timeout` (else the configured default). The calls that fit
    /// (under the connection's output limit, and among the calls the peer
    /// takes at once) start, in order; if the rest do not
    /// ([`TryStarted::rest`]), `on_room` is called once there is room or a
    /// slot again, or the connection failed (with the state released,
    /// on the thread that saw it: it must hand the news on and return):
    /// try again then with the rest and the same `made`. It is not called
    /// at the deadline, which is the caller's to keep: a try after it
    /// fails with `DeadlineExceeded`. A [`LocalClient`](crate::LocalClient)
    /// has no thread of its own: room comes only while one of its methods
    /// waits.
    ///
    /// # Errors
    /// As [`start`](Self::start), for the first call that cannot start;
    /// the calls this try started are then cancelled.
    pub fn try_start_batch(
        &self,
        method: &str,
        args: Vec<Payload>,
        timeout: Option<Duration>,
        made: Instant,
        on_room: impl FnOnce() + Send + 'static,
    ) -> Result<TryStarted, Error> {
        let mut ids = Vec::new();
        let tried = self.shared.corked(|| {
            let on_room = Box::new(on_room);
            self.shared
                .try_admit((timeout, made), on_room, |link, deadline, now| {
                    for a in &args {
                        ids.push(link.call(method, a.clone(), deadline, now)?);
                    }
                    Ok(())
                })
        });
        let calls = ids.into_iter();
        // On a failure, dropping the calls already started cancels them.
        let calls = calls
            .map(|id| RawPendingCall::new(&self.shared, id))
            .collect();
        let rest = tried?.is_none().then_some(Deferred::Room);
        Ok(TryStarted { calls, rest })
    }

    /// Calls `method` once for each payload, their frames written together
    /// (one system call where the socket takes them), and waits for every
    /// answer: the results in the order of `args`, each its own (a call
    /// that could not start fails alone). Each call has its own deadline
    /// from `timeout` (else the configured default).
    pub fn call_batch_raw(
        &self,
        method: &str,
        args: impl IntoIterator<Item = Payload>,
        timeout: Option<Duration>,
    ) -> Vec<Result<Payload, Error>> {
        let now = Instant::now();
        let started: Vec<_> = self.shared.corked(|| {
            let start = |args| self.start_at(method, args, timeout, now);
            args.into_iter().map(start).collect()
        });
        let wait = |call: Result<RawPendingCall, Error>| call.and_then(RawPendingCall::wait);
        started.into_iter().map(wait).collect()
    }

    /// Sends a one-way notification with a raw payload, waiting for room
    /// while the peer is not reading (within the default deadline, if one
    /// is configured).
    ///
    /// # Errors
    /// `Disconnected`, `TooLarge`.
    pub fn notify_raw(&self, method: &str, args: Payload) -> Result<(), Error> {
        self.notify_waiting(method, args, true)
    }

    /// Sends a one-way notification as [`notify_raw`](Self::notify_raw)
    /// does, but never waits: `None` once it is sent; refused for room,
    /// [`Deferred::Room`], and `on_room` is called as
    /// [`try_start_batch`](Self::try_start_batch) says (try again then,
    /// with the same `made`, which fixes its deadline: the default one).
    ///
    /// # Errors
    /// As [`notify_raw`](Self::notify_raw); `DeadlineExceeded` once its
    /// deadline has passed.
    pub fn try_notify_raw(
        &self,
        method: &str,
        args: Payload,
        made: Instant,
        on_room: impl FnOnce() + Send + 'static,
    ) -> Result<Option<Deferred>, Error> {
        let sent =
            self.shared
                .try_admit((None, made), Box::new(on_room), |link, deadline, now| {
                    link.notify(method, args, deadline, now)
                })?;
        Ok(sent.is_none().then_some(Deferred::Room))
    }

    /// [`notify_raw`](Self::notify_raw), or `Busy` at once when `wait` is
    /// false and the peer's output is full (a broadcast does not wait for
    /// one peer that stopped reading).
    pub(crate) fn notify_waiting(
        &self,
        method: &str,
        args: Payload,
        wait: bool,
    ) -> Result<(), Error> {
        self.shared
            .admit((None, Instant::now()), wait, |link, deadline, now| {
                link.notify(method, args.clone(), deadline, now)
            })
            .map_err(Error::from)
    }

    /// Measures one round trip to the peer.
    ///
    /// # Errors
    /// `Disconnected` (including a peer that dies before answering), `Busy`.
    pub fn ping(&self) -> Result<Duration, Error> {
        let seq = self.shared.command(|link, now| link.ping(now))?;
        let found = self.shared.wait_for(None, |link| link.ping_outcome(seq));
        found.expect("waits without deadline end with a result")
    }

    /// Sends `payload` and waits until the peer echoes exactly these bytes
    /// (iblutil's confirmed send).
    ///
    /// # Errors
    /// [`Error::Echo`] with `Mismatch` or `Timeout` (this send only), or `Disconnected`.
    pub fn confirmed_send(&self, payload: impl Into<Bytes>) -> Result<(), Error> {
        let payload = payload.into();
        let seq = self
            .shared
            .admit((None, Instant::now()), true, |link, deadline, now| {
                link.confirmed_send(payload.clone(), deadline, now)
            })?;
        let found = self
            .shared
            .wait_for(None, |link| link.waiters().take_confirm(seq));
        found
            .expect("the core always resolves a confirmed send")
            .map_err(Error::from)
    }

    /// Closes the connection: the peer is told goodbye, every pending call
    /// fails with `Disconnected`.
    pub fn close(&self) {
        self.shared
            .command(|link, now| link.close("closed by the application", now));
    }

    /// Runs `wait`, which only waits for this peer on the handler's behalf
    /// (the handler's work is done elsewhere, such as on an event loop that
    /// awaits a call back to this peer), with the thread lent as a
    /// handler's is while it waits for its peer's answer itself: it then
    /// counts against neither its connection's share of the pool nor the
    /// pool, so the calls made to answer it find a thread. On any thread
    /// but one running a pooled handler of this peer's connection, it just
    /// runs `wait`. Only for a blocking runtime: an async handler holds
    /// no thread while it awaits.
    pub fn waiting_for<T>(&self, wait: impl FnOnce() -> T) -> T {
        let _lent = self.shared.lend_thread();
        wait()
    }
}

/// What a start that never waits did ([`Peer::try_start_batch`],
/// [`Client::try_start_batch`](crate::Client::try_start_batch)).
#[derive(Debug)]
pub struct TryStarted {
    /// The calls started, the first of the payloads given, in order.
    pub calls: Vec<RawPendingCall>,
    /// Why the others did not start, if some did not.
    pub rest: Option<Deferred>,
}

/// Why a start that never waits left calls unstarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Deferred {
    /// The connection's output is over its limit (the peer does not read),
    /// or as many calls await an answer as the peer takes at once: the
    /// start's `on_room` is called when that changes.
    Room,
    /// The connection is lost and the client reconnects: only a start that
    /// waits makes it again ([`Client::start_batch`](crate::Client::start_batch)),
    /// one per client at a time.
    Redial,
}

rigwire_twin::raw_pending_call!(
    "A call in flight with raw payloads. Dropping it without waiting cancels the call (the peer is sent `Cancel`)."
);

impl RawPendingCall {
    /// Whether the result (or its failure) has arrived; never blocks.
    pub fn is_ready(&self) -> bool {
        self.shared.tick();
        self.shared.lock().link.waiters().call_ready(self.id)
    }

    /// Calls `wake` once the result (or its failure: the deadline, a lost
    /// connection) is in, so that an event loop can await many calls with
    /// no thread waiting for each; [`wait_timeout`](Self::wait_timeout)
    /// then takes it without waiting. `wake` runs once, on the thread that
    /// took the answer in (a connection's reader), or here at once if the
    /// result is in already; it must hand the news on and return, for that
    /// thread holds up the connection's reading meanwhile. A call cancelled
    /// (or dropped) first never calls it; a second `on_ready` replaces the
    /// first. A server's connection with a watched call keeps its thread
    /// (it is not parked). A [`LocalClient`](crate::LocalClient) has no
    /// thread of its own: its answers come in only while one of its
    /// methods waits (its [`serve`](crate::LocalClient::serve), say).
    pub fn on_ready(&self, wake: impl FnOnce() + Send + 'static) {
        if self.done {
            return wake();
        }
        self.shared.watch(self.id, Box::new(wake));
    }

    /// Waits for the result, however long the call's deadline allows.
    ///
    /// # Errors
    /// As [`Peer::call_raw`].
    pub fn wait(mut self) -> Result<Payload, Error> {
        self.wait_until(None)
            .expect("waits without deadline end with a result")
    }

    /// Waits at most `timeout`; on [`Error::WaitTimeout`] the call stays in
    /// flight and the handle can be waited on again.
    ///
    /// # Errors
    /// As [`Peer::call_raw`], plus `WaitTimeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Payload, Error> {
        // An answer already here needs no clock (polling a window of calls).
        if let Some(found) = self.shared.lock().link.waiters().take_call(self.id) {
            self.done = true;
            return found.map_err(Error::from);
        }
        self.wait_until(Some(rigwire_core::link::after(Instant::now(), timeout)))
            .unwrap_or(Err(Error::WaitTimeout(timeout)))
    }

    fn wait_until(&mut self, deadline: Option<Instant>) -> Option<Result<Payload, Error>> {
        let id = self.id;
        let found = self
            .shared
            .wait_for(deadline, |link| link.waiters().take_call(id))?;
        self.done = true;
        Some(found.map_err(Error::from))
    }
}

rigwire_twin::pending_call!([] []);

/// Encodes JSON text as a payload, for the command line and scripts.
///
/// # Errors
/// [`Error::Codec`] if `json` is not valid JSON.
pub fn json_payload(json: &str) -> Result<Payload, Error> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| Error::Codec(rigwire_core::CodecError::Json(e.to_string())))?;
    Ok(Payload::encode_as(Codec::Json, &value)?)
}
