//! Async handlers: what runs when the peer calls an exposed name.
//!
//! A handler is polled once where the call was read: a handler that finishes
//! without waiting answers with no task hand-off at all. One that waits
//! becomes a task, and that task is dropped (the handler's future with it) if
//! the caller cancels or its deadline passes. A panicking handler is
//! answered `Panicked`; the connection carries on.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use rigwire_core::{
    handler_panicked, Error, ErrorKind, HandlerError, HandlerId, Payload, RemoteError,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use smol::future::FutureExt;

use crate::peer::Peer;

rigwire_twin::call_context!();

/// A handler's future, boxed.
pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = Result<Payload, RemoteError>> + Send>>;

type RawFn = dyn Fn(CallContext, Payload) -> Pin<Box<dyn Future<Output = Result<Payload, HandlerError>> + Send>>
    + Send
    + Sync;

rigwire_twin::handlers!(
    Arc<RawFn>,
    Arc::new(|_ctx, args: Payload| {
        let now = rigwire_core::wall_clock(std::time::SystemTime::now());
        Box::pin(async move { Payload::encode_result(args.codec, &now) })
    })
);

impl Handlers {
    /// Exposes a typed async handler; arguments and result travel in the caller's codec.
    ///
    /// # Errors
    /// [`Error::Registry`] for an empty, reserved or duplicate name.
    pub fn expose<A, R, F, Fut>(&mut self, name: &str, f: F) -> Result<&mut Self, Error>
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    {
        self.expose_with(name, move |_ctx: CallContext, args: A| f(args))
    }

    /// Exposes a typed async handler that also receives the call's [`CallContext`].
    ///
    /// # Errors
    /// As [`expose`](Self::expose).
    pub fn expose_with<A, R, F, Fut>(&mut self, name: &str, f: F) -> Result<&mut Self, Error>
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(CallContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    {
        let f = Arc::new(f);
        self.expose_raw(name, move |ctx: CallContext, args: Payload| {
            let f = Arc::clone(&f);
            async move { run_typed(args, |decoded| f(ctx, decoded)).await }
        })?;
        self.table
            .describe(name, &rigwire_core::rust_signature::<A, R>())?;
        Ok(self)
    }

    /// Exposes an async handler of raw payloads; it should answer in `args.codec`.
    ///
    /// # Errors
    /// As [`expose`](Self::expose).
    pub fn expose_raw<F, Fut>(&mut self, name: &str, f: F) -> Result<&mut Self, Error>
    where
        F: Fn(CallContext, Payload) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Payload, HandlerError>> + Send + 'static,
    {
        self.table
            .insert(name, Arc::new(move |ctx, args| Box::pin(f(ctx, args))))?;
        Ok(self)
    }

    /// Sends calls and notifies to names nobody exposed to `f` (a raw async
    /// handler; `ctx.method` is the name called, `ctx.id` 0 for a notify)
    /// instead of answering `NoSuchMethod`: a catch-all, for a console that
    /// shows whatever a peer sends. Introspection does not list it.
    ///
    /// # Errors
    /// [`Error::Registry`] if a catch-all is already set.
    pub fn expose_fallback_raw<F, Fut>(&mut self, f: F) -> Result<&mut Self, Error>
    where
        F: Fn(CallContext, Payload) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Payload, HandlerError>> + Send + 'static,
    {
        self.table
            .insert_fallback(Arc::new(move |ctx, args| Box::pin(f(ctx, args))))?;
        Ok(self)
    }

    /// The handler's future for one call: panics become `Panicked`, errors
    /// become remote errors.
    pub(crate) fn call(&self, id: HandlerId, ctx: CallContext, args: Payload) -> HandlerFuture {
        let Some(f) = self.table.get(id).cloned() else {
            let err = RemoteError::new(
                ErrorKind::Internal,
                "handler table out of step with the registry",
            );
            return Box::pin(async move { Err(err) });
        };
        let method = ctx.method.clone();
        Box::pin(async move {
            match AssertUnwindSafe(f(ctx, args)).catch_unwind().await {
                Ok(result) => result.map_err(RemoteError::from),
                Err(panic) => {
                    let err = handler_panicked(&method, &*panic);
                    tracing::error!(%method, "{}", err.message);
                    Err(err)
                }
            }
        })
    }
}

/// Decodes `args` as `A`, runs `f` and encodes its result in the caller's codec.
pub(crate) async fn run_typed<A, R, Fut>(
    args: Payload,
    f: impl FnOnce(A) -> Fut,
) -> Result<Payload, HandlerError>
where
    A: DeserializeOwned,
    R: Serialize,
    Fut: Future<Output = Result<R, HandlerError>>,
{
    let value = f(args.decode_args()?).await?;
    Payload::encode_result(args.codec, &value)
}
