//! Handlers: what runs when the peer calls an exposed name.
//!
//! Three shapes: typed (`Fn(A) -> Result<R, HandlerError>`), typed with the
//! call's context (to call the peer back, or see the deadline), and raw
//! payloads. A handler that panics is answered `Panicked`; the connection and
//! the server carry on.
//!
//! Where a handler runs: short handlers run on the thread that read the call
//! (no thread hand-off, which costs more than the call itself), long ones on
//! the bounded pool so that they stall nothing. By default each handler starts
//! on the pool and moves to the reading thread once it has shown itself fast
//! [`FAST_RUNS`] times in a row; one slow run sends it back to the pool (the
//! core's rule, [`Dispatch`]).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

#[cfg(doc)]
use rigwire_core::FAST_RUNS;
use rigwire_core::{handler_panicked, Dispatch, Error, HandlerError, Payload, RemoteError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::peer::Peer;

rigwire_twin::call_context!();

type RawFn = dyn Fn(&CallContext, Payload) -> Result<Payload, HandlerError> + Send + Sync;

/// One exposed handler as the table keeps it: the function and where it
/// runs. Opaque: the connection runs it.
pub struct HandlerEntry {
    f: Box<RawFn>,
    /// A [`Dispatch`] as its index, changeable after the handlers are shared.
    dispatch: AtomicU8,
    fast_runs: AtomicU32,
}

rigwire_twin::handlers!(
    Arc<HandlerEntry>,
    HandlerEntry::new(
        Box::new(|_ctx, args| {
            Payload::encode_result(args.codec, &rigwire_core::wall_clock(SystemTime::now()))
        }),
        Dispatch::Inline,
    )
);

impl Handlers {
    /// Exposes a typed handler. Arguments arrive in the caller's codec
    /// (postcard or JSON) and the result goes back in it.
    ///
    /// # Errors
    /// [`Error::Registry`] for an empty, reserved or duplicate name.
    pub fn expose<A, R, F>(&mut self, name: &str, f: F) -> Result<&mut Self, Error>
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(A) -> Result<R, HandlerError> + Send + Sync + 'static,
    {
        self.expose_with(name, move |_ctx, args| f(args))
    }

    /// Exposes a typed handler that also receives the call's [`CallContext`].
    ///
    /// # Errors
    /// As [`expose`](Self::expose).
    pub fn expose_with<A, R, F>(&mut self, name: &str, f: F) -> Result<&mut Self, Error>
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(&CallContext, A) -> Result<R, HandlerError> + Send + Sync + 'static,
    {
        self.expose_raw(name, move |ctx, args| {
            let value = f(ctx, args.decode_args()?)?;
            Payload::encode_result(args.codec, &value)
        })?;
        self.table
            .describe(name, &rigwire_core::rust_signature::<A, R>())?;
        Ok(self)
    }

    /// Exposes a handler of raw payloads; it should answer in `args.codec`.
    ///
    /// # Errors
    /// As [`expose`](Self::expose).
    pub fn expose_raw<F>(&mut self, name: &str, f: F) -> Result<&mut Self, Error>
    where
        F: Fn(&CallContext, Payload) -> Result<Payload, HandlerError> + Send + Sync + 'static,
    {
        self.table
            .insert(name, HandlerEntry::new(Box::new(f), Dispatch::Adaptive))?;
        Ok(self)
    }

    /// Sends calls and notifies to names nobody exposed to `f` (a raw
    /// handler; `ctx.method` is the name called, `ctx.id` 0 for a notify)
    /// instead of answering `NoSuchMethod`: a catch-all, for a console that
    /// shows whatever a peer sends. Introspection does not list it.
    ///
    /// # Errors
    /// [`Error::Registry`] if a catch-all is already set.
    pub fn expose_fallback_raw<F>(&mut self, f: F) -> Result<&mut Self, Error>
    where
        F: Fn(&CallContext, Payload) -> Result<Payload, HandlerError> + Send + Sync + 'static,
    {
        self.table
            .insert_fallback(HandlerEntry::new(Box::new(f), Dispatch::Adaptive))?;
        Ok(self)
    }

    /// Sets where the handler of `name` runs (see [`Dispatch`]).
    ///
    /// # Errors
    /// [`Error::Registry`] if `name` is not exposed.
    pub fn dispatch(&mut self, name: &str, dispatch: Dispatch) -> Result<&mut Self, Error> {
        let id = self.table.lookup(name)?;
        if let Some(entry) = self.table.get(id) {
            entry.dispatch.store(dispatch.as_u8(), Ordering::Relaxed);
        }
        Ok(self)
    }
}

impl HandlerEntry {
    fn new(f: Box<RawFn>, dispatch: Dispatch) -> Arc<HandlerEntry> {
        Arc::new(HandlerEntry {
            f,
            dispatch: AtomicU8::new(dispatch.as_u8()),
            fast_runs: AtomicU32::new(0),
        })
    }

    fn dispatch(&self) -> Dispatch {
        Dispatch::from_u8(self.dispatch.load(Ordering::Relaxed))
    }

    /// Whether the next call may run on the reading thread.
    pub(crate) fn runs_inline(&self) -> bool {
        self.dispatch()
            .runs_inline(self.fast_runs.load(Ordering::Relaxed))
    }

    /// Runs the handler, turning a panic into a `Panicked` error, and learns
    /// from how long it took.
    pub(crate) fn run(&self, ctx: &CallContext, args: Payload) -> Result<Payload, RemoteError> {
        let started = self.dispatch().learns().then(Instant::now);
        let outcome = catch_unwind(AssertUnwindSafe(|| (self.f)(ctx, args)));
        if let Some(started) = started {
            let took = started.elapsed();
            let _ = self
                .fast_runs
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(Dispatch::fast_runs_after(n, took))
                });
        }
        match outcome {
            Ok(result) => result.map_err(RemoteError::from),
            Err(panic) => {
                let err = handler_panicked(&ctx.method, &*panic);
                tracing::error!(method = %ctx.method, "{}", err.message);
                Err(err)
            }
        }
    }
}
