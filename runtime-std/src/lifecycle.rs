//! The standard rig service: the experiment lifecycle (`exp.init`,
//! `exp.start`, `exp.stop`, `exp.cleanup`, `exp.status`, `exp.info`) on the
//! core's state machine, with the rig's own work in hooks.
//!
//! A step is atomic: it begins (refused if out of order, or while another
//! step's hook runs, naming that step), its hook runs, then it finishes —
//! applied if the hook succeeded, status unchanged if it failed or panicked.
//! Two concurrent `exp.init` run the hook once; the other is refused.

use std::sync::{Arc, Mutex};

use rigwire_core::lifecycle::methods;
use rigwire_core::lifecycle::StepInProgress;
use rigwire_core::{Error, ExpRef, HandlerError, InitData, Lifecycle, Payload, StepRequest};

use crate::handler::{CallContext, Handlers};
use crate::sync::lock;
use rigwire_core::Dispatch;

type Outcome = Result<(), HandlerError>;
type InitHook = Box<dyn Fn(&CallContext, &InitData) -> Outcome + Send + Sync>;
type StartHook = Box<dyn Fn(&CallContext, &ExpRef) -> Outcome + Send + Sync>;
type StopHook = Box<dyn Fn(&CallContext, bool) -> Outcome + Send + Sync>;
type CleanupHook = Box<dyn Fn(&CallContext) -> Outcome + Send + Sync>;

/// What a rig does at each step; every hook defaults to doing nothing.
#[derive(Default)]
struct Hooks {
    init: Option<InitHook>,
    start: Option<StartHook>,
    stop: Option<StopHook>,
    cleanup: Option<CleanupHook>,
}

impl Hooks {
    fn run(&self, ctx: &CallContext, request: &StepRequest) -> Outcome {
        match request {
            StepRequest::Init(data) => self.init.as_ref().map_or(Ok(()), |f| f(ctx, data)),
            StepRequest::Start(exp_ref) => self.start.as_ref().map_or(Ok(()), |f| f(ctx, exp_ref)),
            StepRequest::Stop { immediately } => {
                self.stop.as_ref().map_or(Ok(()), |f| f(ctx, *immediately))
            }
            StepRequest::Cleanup => self.cleanup.as_ref().map_or(Ok(()), |f| f(ctx)),
        }
    }
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

    /// Runs on `exp.init` with the data it carried (nothing, `null` or an object).
    pub fn on_init(
        mut self,
        f: impl Fn(&CallContext, &InitData) -> Outcome + Send + Sync + 'static,
    ) -> Self {
        self.hooks.init = Some(Box::new(f));
        self
    }

    /// Runs on `exp.start` with the validated experiment reference.
    pub fn on_start(
        mut self,
        f: impl Fn(&CallContext, &ExpRef) -> Outcome + Send + Sync + 'static,
    ) -> Self {
        self.hooks.start = Some(Box::new(f));
        self
    }

    /// Runs on `exp.stop`; the flag says whether to interrupt at once.
    pub fn on_stop(
        mut self,
        f: impl Fn(&CallContext, bool) -> Outcome + Send + Sync + 'static,
    ) -> Self {
        self.hooks.stop = Some(Box::new(f));
        self
    }

    /// Runs on `exp.cleanup`.
    pub fn on_cleanup(
        mut self,
        f: impl Fn(&CallContext) -> Outcome + Send + Sync + 'static,
    ) -> Self {
        self.hooks.cleanup = Some(Box::new(f));
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
        for (method, signature) in methods::STEPS {
            let (lifecycle, hooks) = (Arc::clone(&lifecycle), Arc::clone(&hooks));
            handlers.expose_raw(method, move |ctx, args: Payload| {
                let request = lock(&lifecycle).begin_call(method, &args)?;
                let step = StepInProgress::new(|| lock(&lifecycle), &request);
                hooks.run(ctx, &request)?;
                let status = step.succeed();
                tracing::info!(peer = %ctx.peer.name(), step = %request.step(), %status, "experiment step");
                Payload::encode_result(args.codec, &status)
            })?;
            handlers.dispatch(method, Dispatch::Pool)?;
            handlers.describe(method, signature)?;
        }
        let l = Arc::clone(&lifecycle);
        handlers.expose(methods::STATUS, move |(): ()| Ok(lock(&l).status()))?;
        let l = Arc::clone(&lifecycle);
        handlers.expose(methods::INFO, move |(): ()| Ok(lock(&l).info()))?;
        Ok(lifecycle)
    }
}
