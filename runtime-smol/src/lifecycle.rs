//! The standard rig service on smol: `exp.init`, `exp.start`, `exp.stop`,
//! `exp.cleanup`, `exp.status`, `exp.info` on the core's state machine, with
//! the rig's own work in async hooks.
//!
//! A step is atomic: it begins (refused if out of order, or while another
//! step's hook runs, naming that step), its hook runs, then it finishes —
//! applied if the hook succeeded, status unchanged if it failed, panicked or
//! was cancelled. Two concurrent `exp.init` run the hook once.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use rigwire_core::lifecycle::methods;
use rigwire_core::lifecycle::StepInProgress;
use rigwire_core::{Error, ExpRef, HandlerError, InitData, Lifecycle, Payload, StepRequest};

use crate::handler::{CallContext, Handlers};
use rigwire_twin::lock;

type Outcome = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>;
type Hook<A> = Arc<dyn Fn(CallContext, A) -> Outcome + Send + Sync>;

/// What a rig does at each step; every hook defaults to doing nothing.
#[derive(Default, Clone)]
struct Hooks {
    init: Option<Hook<InitData>>,
    start: Option<Hook<ExpRef>>,
    stop: Option<Hook<bool>>,
    cleanup: Option<Hook<()>>,
}

impl Hooks {
    fn run(&self, ctx: CallContext, request: StepRequest) -> Option<Outcome> {
        match request {
            StepRequest::Init(data) => self.init.as_ref().map(|f| f(ctx, data)),
            StepRequest::Start(exp_ref) => self.start.as_ref().map(|f| f(ctx, exp_ref)),
            StepRequest::Stop { immediately } => self.stop.as_ref().map(|f| f(ctx, immediately)),
            StepRequest::Cleanup => self.cleanup.as_ref().map(|f| f(ctx, ())),
        }
    }
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

    /// Runs on `exp.init` with the data it carried (nothing, `null` or an object).
    pub fn on_init<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(CallContext, InitData) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.hooks.init = Some(boxed(f));
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
        let hooks = Arc::new(self.hooks);
        for (method, signature) in methods::STEPS {
            let (lifecycle, hooks) = (Arc::clone(&lifecycle), Arc::clone(&hooks));
            handlers.expose_raw(method, move |ctx: CallContext, args: Payload| {
                let (lifecycle, hooks) = (Arc::clone(&lifecycle), Arc::clone(&hooks));
                async move {
                    let request = lock(&lifecycle).begin_call(method, &args)?;
                    let step = StepInProgress::new(|| lock(&lifecycle), &request);
                    let peer = ctx.peer.name();
                    if let Some(hook) = hooks.run(ctx, request.clone()) {
                        hook.await?;
                    }
                    let status = step.succeed();
                    tracing::info!(%peer, step = %request.step(), %status, "experiment step");
                    Payload::encode_result(args.codec, &status)
                }
            })?;
            handlers.describe(method, signature)?;
        }
        let l = Arc::clone(&lifecycle);
        handlers.expose(methods::STATUS, move |(): ()| {
            let status = lock(&l).status();
            async move { Ok(status) }
        })?;
        let l = Arc::clone(&lifecycle);
        handlers.expose(methods::INFO, move |(): ()| {
            let info = lock(&l).info();
            async move { Ok(info) }
        })?;
        Ok(lifecycle)
    }
}
