//! The standard rig service on smol: `exp.init`, `exp.start`, `exp.stop`,
//! `exp.cleanup`, `exp.status`, `exp.info` on the core's state machine, with
//! the rig's own work in async hooks. A step out of order is refused before
//! any hook runs; a hook that fails leaves the status unchanged.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use rigwire_core::lifecycle::methods;
use rigwire_core::{Error, ExpInfo, ExpRef, ExpStatus, HandlerError, Lifecycle, Step, StopArgs};

use crate::handler::{CallContext, Handlers};

type HookFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>;
type Hook<A> = Arc<dyn Fn(CallContext, A) -> HookFuture + Send + Sync>;

/// What a rig does at each step; every hook defaults to doing nothing.
#[derive(Default, Clone)]
struct Hooks {
    init: Option<Hook<()>>,
    start: Option<Hook<ExpRef>>,
    stop: Option<Hook<bool>>,
    cleanup: Option<Hook<()>>,
}

fn boxed<A, F, Fut>(f: F) -> Hook<A>
where
    F: Fn(CallContext, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    Arc::new(move |ctx, a| Box::pin(f(ctx, a)))
}

/// Builds the lifecycle service: chain `on_*` calls, then [`expose`](Self::expose).
#[derive(Default)]
pub struct RigService {
    hooks: Hooks,
}

impl RigService {
    /// A service with no hooks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs on `exp.init`.
    pub fn on_init<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(CallContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.hooks.init = Some(boxed(move |ctx, ()| f(ctx)));
        self
    }

    /// Runs on `exp.start` with the validated experiment reference.
    pub fn on_start<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(CallContext, ExpRef) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.hooks.start = Some(boxed(f));
        self
    }

    /// Runs on `exp.stop`; the flag says whether to interrupt at once.
    pub fn on_stop<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(CallContext, bool) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.hooks.stop = Some(boxed(f));
        self
    }

    /// Runs on `exp.cleanup`.
    pub fn on_cleanup<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(CallContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.hooks.cleanup = Some(boxed(move |ctx, ()| f(ctx)));
        self
    }

    /// Exposes the `exp.*` methods on `handlers`; returns the state machine.
    ///
    /// # Errors
    /// [`Error::Registry`] if an `exp.*` name is already exposed.
    pub fn expose(self, handlers: &mut Handlers) -> Result<Arc<Mutex<Lifecycle>>, Error> {
        let lifecycle = Arc::new(Mutex::new(Lifecycle::new()));
        let hooks = self.hooks;
        fn step<A: Send + 'static>(
            lifecycle: &Arc<Mutex<Lifecycle>>,
            which: Step,
            hook: Option<Hook<A>>,
            ctx: CallContext,
            arg: A,
            exp_ref: Option<ExpRef>,
        ) -> impl Future<Output = Result<ExpStatus, HandlerError>> + Send + 'static {
            let lifecycle = Arc::clone(lifecycle);
            async move {
                let lock = || lifecycle.lock().unwrap_or_else(|p| p.into_inner());
                lock()
                    .check(which)
                    .map_err(|e| HandlerError::new(e.to_string()))?;
                if let Some(hook) = hook {
                    hook(ctx, arg).await?;
                }
                let status = lock()
                    .apply(which, exp_ref)
                    .map_err(|e| HandlerError::new(e.to_string()))?;
                tracing::info!(%which, %status, "experiment step");
                Ok(status)
            }
        }
        let (l, h) = (Arc::clone(&lifecycle), hooks.clone());
        handlers.expose_with(methods::INIT, move |ctx: CallContext, (): ()| {
            step(&l, Step::Init, h.init.clone(), ctx, (), None)
        })?;
        let (l, h) = (Arc::clone(&lifecycle), hooks.clone());
        handlers.expose_with(methods::START, move |ctx: CallContext, exp_ref: ExpRef| {
            step(
                &l,
                Step::Start,
                h.start.clone(),
                ctx,
                exp_ref.clone(),
                Some(exp_ref),
            )
        })?;
        let (l, h) = (Arc::clone(&lifecycle), hooks.clone());
        handlers.expose_with(
            methods::STOP,
            move |ctx: CallContext, args: Option<StopArgs>| {
                let immediately = args.unwrap_or_default().immediately;
                let which = if immediately {
                    Step::Interrupt
                } else {
                    Step::Stop
                };
                step(&l, which, h.stop.clone(), ctx, immediately, None)
            },
        )?;
        let (l, h) = (Arc::clone(&lifecycle), hooks);
        handlers.expose_with(methods::CLEANUP, move |ctx: CallContext, (): ()| {
            step(&l, Step::Cleanup, h.cleanup.clone(), ctx, (), None)
        })?;
        let l = Arc::clone(&lifecycle);
        handlers.expose(methods::STATUS, move |(): ()| {
            let status = l.lock().unwrap_or_else(|p| p.into_inner()).status();
            async move { Ok(status) }
        })?;
        let l = Arc::clone(&lifecycle);
        handlers.expose(methods::INFO, move |(): ()| {
            let info: ExpInfo = l.lock().unwrap_or_else(|p| p.into_inner()).info();
            async move { Ok(info) }
        })?;
        Ok(lifecycle)
    }
}
