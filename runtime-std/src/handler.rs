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
//! [`FAST_RUNS`] times in a row; one slow run sends it back to the pool.

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rigwire_core::{Error, ErrorKind, HandlerError, HandlerId, Payload, Registry, RemoteError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::peer::Peer;

/// Runs under this long count as fast.
pub const FAST_RUN: Duration = Duration::from_micros(500);

/// Consecutive fast runs after which an adaptive handler runs inline.
pub const FAST_RUNS: u32 = 3;

/// Where a handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dispatch {
    /// On the pool until proven fast, then on the reading thread (default).
    #[default]
    Adaptive,
    /// Always on the reading thread: lowest latency; the connection reads
    /// nothing else while it runs, so use it only for handlers that never block.
    Inline,
    /// Always on the pool: for handlers that block or run long.
    Pool,
}

/// What a handler knows about the call it is answering.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The caller, to call back over the same connection.
    pub peer: Peer,
    /// The name called (an alias, if one was used).
    pub method: String,
    /// When the caller stops waiting; pass the time left on when calling onward.
    pub deadline: Option<Instant>,
    /// The call's id on this connection.
    pub id: u64,
}

impl CallContext {
    /// Whether the caller has cancelled the call or its deadline has passed;
    /// a long handler may check it and stop early.
    pub fn is_cancelled(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d) || self.peer.shared.is_cancelled(self.id)
    }
}

type RawFn = dyn Fn(&CallContext, Payload) -> Result<Payload, HandlerError> + Send + Sync;

pub(crate) struct Entry {
    f: Box<RawFn>,
    /// A [`Dispatch`] as its index, changeable after the handlers are shared.
    dispatch: AtomicU8,
    fast_runs: AtomicU32,
}

const DISPATCHES: [Dispatch; 3] = [Dispatch::Adaptive, Dispatch::Inline, Dispatch::Pool];

/// The exposed names of one endpoint and their handlers; every table
/// answers the built-in `rigwire.clock` with this machine's wall clock.
#[derive(Clone)]
pub struct Handlers {
    registry: Registry,
    entries: Vec<Arc<Entry>>,
}

impl Default for Handlers {
    fn default() -> Self {
        let mut registry = Registry::new();
        registry.expose_clock();
        let clock: Box<RawFn> = Box::new(|_ctx, args| {
            Payload::encode_result(args.codec, &rigwire_core::wall_clock(SystemTime::now()))
        });
        let inline = DISPATCHES.iter().position(|d| *d == Dispatch::Inline);
        Handlers {
            registry,
            entries: vec![Arc::new(Entry {
                f: clock,
                dispatch: AtomicU8::new(inline.unwrap_or(0) as u8),
                fast_runs: AtomicU32::new(0),
            })],
        }
    }
}

impl fmt::Debug for Handlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handlers")
            .field("methods", &self.registry.methods())
            .finish()
    }
}

impl Handlers {
    /// No handlers: every call is answered `NoSuchMethod`.
    pub fn new() -> Self {
        Self::default()
    }

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
        self.describe(name, &rigwire_core::rust_signature::<A, R>())
    }

    /// Describes `name` for people, as `rigwire.methods` shows it in JSON:
    /// its argument and result types, such as `(f64, f64) -> f64`. Typed
    /// handlers are described from their Rust types; this overrides that.
    ///
    /// # Errors
    /// [`Error::Registry`] if `name` is not exposed.
    pub fn describe(&mut self, name: &str, signature: &str) -> Result<&mut Self, Error> {
        self.registry.describe(name, signature)?;
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
        self.registry.expose(name)?;
        self.push(Box::new(f));
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
        self.registry.expose_fallback()?;
        self.push(Box::new(f));
        Ok(self)
    }

    /// Adds the handler of the id the registry just gave out.
    fn push(&mut self, f: Box<RawFn>) {
        self.entries.push(Arc::new(Entry {
            f,
            dispatch: AtomicU8::new(0),
            fast_runs: AtomicU32::new(0),
        }));
    }

    /// Sets where the handler of `name` runs (see [`Dispatch`]).
    ///
    /// # Errors
    /// [`Error::Registry`] if `name` is not exposed.
    pub fn dispatch(&mut self, name: &str, dispatch: Dispatch) -> Result<&mut Self, Error> {
        let id = self.lookup(name)?;
        let index = DISPATCHES.iter().position(|d| *d == dispatch).unwrap_or(0);
        self.entries[id.0 as usize]
            .dispatch
            .store(index as u8, Ordering::Relaxed);
        Ok(self)
    }

    /// Makes `alias` reach the handler exposed as `name`.
    ///
    /// # Errors
    /// [`Error::Registry`] if `name` is not exposed or `alias` is taken.
    pub fn alias(&mut self, alias: &str, name: &str) -> Result<&mut Self, Error> {
        let id = self.lookup(name)?;
        self.registry.alias(alias, id)?;
        Ok(self)
    }

    fn lookup(&self, name: &str) -> Result<HandlerId, Error> {
        self.registry.lookup(name).ok_or_else(|| {
            Error::Registry(rigwire_core::RegistryError::NotExposed(name.to_owned()))
        })
    }

    /// The names exposed, for the core.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(crate) fn entry(&self, id: HandlerId) -> Option<&Arc<Entry>> {
        self.entries.get(id.0 as usize)
    }
}

impl Entry {
    /// Whether the next call may run on the reading thread.
    pub(crate) fn runs_inline(&self) -> bool {
        match DISPATCHES[usize::from(self.dispatch.load(Ordering::Relaxed)) % 3] {
            Dispatch::Inline => true,
            Dispatch::Pool => false,
            Dispatch::Adaptive => self.fast_runs.load(Ordering::Relaxed) >= FAST_RUNS,
        }
    }

    /// Runs the handler, turning a panic into a `Panicked` error, and learns
    /// from how long it took.
    pub(crate) fn run(&self, ctx: &CallContext, args: Payload) -> Result<Payload, RemoteError> {
        // Only adaptive handlers learn from their run times; the others skip the clock.
        let adaptive = self.dispatch.load(Ordering::Relaxed) == 0;
        let started = adaptive.then(Instant::now);
        let outcome = catch_unwind(AssertUnwindSafe(|| (self.f)(ctx, args)));
        if let Some(started) = started {
            if started.elapsed() <= FAST_RUN {
                let _ = self
                    .fast_runs
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                        Some(n.saturating_add(1))
                    });
            } else {
                self.fast_runs.store(0, Ordering::Relaxed);
            }
        }
        match outcome {
            Ok(result) => result.map_err(RemoteError::from),
            Err(panic) => {
                let what = panic_message(&*panic);
                tracing::error!(method = %ctx.method, "handler panicked: {what}");
                Err(RemoteError::new(
                    ErrorKind::Panicked,
                    format!("handler '{}' panicked: {what}", ctx.method),
                ))
            }
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_owned())
}
