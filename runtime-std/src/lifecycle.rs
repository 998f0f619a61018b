//! The standard rig service: the experiment lifecycle (`exp.init`,
//! `exp.start`, `exp.stop`, `exp.cleanup`, `exp.status`, `exp.info`) on the
//! core's state machine, with the rig's own work in hooks. A step out of
//! order is refused before any hook runs; a hook that fails leaves the status
//! unchanged.

use std::sync::{Arc, Mutex};

use rigwire_core::lifecycle::methods;
use rigwire_core::{Error, ExpInfo, ExpRef, ExpStatus, Lifecycle, Step, StopArgs};

use crate::handler::{CallContext, Dispatch, Handlers};
use rigwire_core::HandlerError;

type Hook<A> = Box<dyn Fn(&CallContext, A) -> Result<(), HandlerError> + Send + Sync>;

type StartHook = Box<dyn Fn(&CallContext, &ExpRef) -> Result<(), HandlerError> + Send + Sync>;

/// What a rig does at each step; every hook defaults to doing nothing.
#[derive(Default)]
struct Hooks {
    init: Option<Hook<()>>,
    start: Option<StartHook>,
    stop: Option<Hook<bool>>,
    cleanup: Option<Hook<()>>,
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
    pub fn on_init(
        mut self,
        f: impl Fn(&CallContext) -> Result<(), HandlerError> + Send + Sync + 'static,
    ) -> Self {
        self.hooks.init = Some(Box::new(move |ctx, ()| f(ctx)));
        self
    }

    /// Runs on `exp.start` with the validated experiment reference.
    pub fn on_start(
        mut self,
        f: impl Fn(&CallContext, &ExpRef) -> Result<(), HandlerError> + Send + Sync + 'static,
    ) -> Self {
        self.hooks.start = Some(Box::new(f));
        self
    }

    /// Runs on `exp.stop`; the flag says whether to interrupt at once.
    pub fn on_stop(
        mut self,
        f: impl Fn(&CallContext, bool) -> Result<(), HandlerError> + Send + Sync + 'static,
    ) -> Self {
        self.hooks.stop = Some(Box::new(f));
        self
    }

    /// Runs on `exp.cleanup`.
    pub fn on_cleanup(
        mut self,
        f: impl Fn(&CallContext) -> Result<(), HandlerError> + Send + Sync + 'static,
    ) -> Self {
        self.hooks.cleanup = Some(Box::new(move |ctx, ()| f(ctx)));
        self
    }

    /// Exposes the `exp.*` methods on `handlers` (hooks run on the pool, as
    /// they may block); returns the state machine, which the rig may read.
    ///
    /// # Errors
    /// [`Error::Registry`] if an `exp.*` name is already exposed.
    pub fn expose(self, handlers: &mut Handlers) -> Result<Arc<Mutex<Lifecycle>>, Error> {
        let lifecycle = Arc::new(Mutex::new(Lifecycle::new()));
        let hooks = Arc::new(self.hooks);
        let step = {
            let lifecycle = Arc::clone(&lifecycle);
            Arc::new(
                move |step: Step,
                      ctx: &CallContext,
                      run: &dyn Fn() -> Result<(), HandlerError>,
                      exp_ref: Option<ExpRef>| {
                    let lock = || lifecycle.lock().unwrap_or_else(|p| p.into_inner());
                    lock()
                        .check(step)
                        .map_err(|e| HandlerError::new(e.to_string()))?;
                    run()?;
                    let status = lock()
                        .apply(step, exp_ref)
                        .map_err(|e| HandlerError::new(e.to_string()))?;
                    tracing::info!(peer = %ctx.peer.name(), %step, %status, "experiment step");
                    Ok::<ExpStatus, HandlerError>(status)
                },
            )
        };
        let (s, h) = (Arc::clone(&step), Arc::clone(&hooks));
        handlers.expose_with(methods::INIT, move |ctx: &CallContext, (): ()| {
            s(
                Step::Init,
                ctx,
                &|| h.init.as_ref().map_or(Ok(()), |f| f(ctx, ())),
                None,
            )
        })?;
        let (s, h) = (Arc::clone(&step), Arc::clone(&hooks));
        handlers.expose_with(methods::START, move |ctx: &CallContext, exp_ref: ExpRef| {
            let run = || h.start.as_ref().map_or(Ok(()), |f| f(ctx, &exp_ref));
            s(Step::Start, ctx, &run, Some(exp_ref.clone()))
        })?;
        let (s, h) = (Arc::clone(&step), Arc::clone(&hooks));
        handlers.expose_with(
            methods::STOP,
            move |ctx: &CallContext, args: Option<StopArgs>| {
                let immediately = args.unwrap_or_default().immediately;
                let which = if immediately {
                    Step::Interrupt
                } else {
                    Step::Stop
                };
                s(
                    which,
                    ctx,
                    &|| h.stop.as_ref().map_or(Ok(()), |f| f(ctx, immediately)),
                    None,
                )
            },
        )?;
        let (s, h) = (step, hooks);
        handlers.expose_with(methods::CLEANUP, move |ctx: &CallContext, (): ()| {
            s(
                Step::Cleanup,
                ctx,
                &|| h.cleanup.as_ref().map_or(Ok(()), |f| f(ctx, ())),
                None,
            )
        })?;
        let l = Arc::clone(&lifecycle);
        handlers.expose(methods::STATUS, move |(): ()| {
            Ok(l.lock().unwrap_or_else(|p| p.into_inner()).status())
        })?;
        let l = Arc::clone(&lifecycle);
        handlers.expose(
            methods::INFO,
            move |(): ()| -> Result<ExpInfo, HandlerError> {
                Ok(l.lock().unwrap_or_else(|p| p.into_inner()).info())
            },
        )?;
        for name in [
            methods::INIT,
            methods::START,
            methods::STOP,
            methods::CLEANUP,
        ] {
            handlers.dispatch(name, Dispatch::Pool)?;
        }
        Ok(lifecycle)
    }
}
