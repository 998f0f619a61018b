//! The demo rig that `rigwire serve` and `rigwire demo` run: `echo`, `add`,
//! `sleep`, and the standard experiment lifecycle ([`RigService`]).

use std::time::{Duration, Instant};

use rigwire_std::core::ExpRef;
use rigwire_std::{
    CallContext, Dispatch, Error, ErrorKind, HandlerError, Handlers, Payload, RigService,
};

/// Runs when the rig starts an experiment (the demo uses it to call back).
pub type StartHook = Box<dyn Fn(&CallContext, &ExpRef) -> Result<(), HandlerError> + Send + Sync>;

/// Runs when a `sleep` call begins (the demo crashes a rig in the middle of one).
pub type SleepHook = Box<dyn Fn() + Send + Sync>;

/// What the demo adds to a rig; `rigwire serve` adds nothing.
#[derive(Default)]
pub struct DemoHooks {
    /// See [`StartHook`].
    pub on_start: Option<StartHook>,
    /// See [`SleepHook`].
    pub on_sleep: Option<SleepHook>,
}

/// Exposes the demo rig's methods in `server` (a server's or a remote service's handlers).
///
/// # Errors
/// [`Error::Registry`] if a name clashes with one already exposed.
pub fn expose_demo_rig(server: &mut Handlers, hooks: DemoHooks) -> Result<(), Error> {
    let DemoHooks { on_start, on_sleep } = hooks;
    server.expose_raw("echo", |_ctx, args: Payload| Ok(args))?;
    server.dispatch("echo", Dispatch::Inline)?;
    server.describe("echo", "any -> the same payload, in the same codec")?;
    server.expose("add", |(a, b): (f64, f64)| Ok(a + b))?;
    server.expose_with("sleep", move |ctx: &CallContext, seconds: f64| {
        if let Some(hook) = &on_sleep {
            hook();
        }
        if !(0.0..=3600.0).contains(&seconds) {
            return Err(HandlerError::with_kind(
                ErrorKind::BadArguments,
                "sleep takes 0 to 3600 seconds",
            ));
        }
        // Sleep in slices so that a cancelled call stops early.
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        while Instant::now() < until {
            if ctx.is_cancelled() {
                return Err(HandlerError::with_kind(
                    ErrorKind::Cancelled,
                    "sleep cancelled",
                ));
            }
            std::thread::sleep(Duration::from_millis(10).min(until - Instant::now()));
        }
        Ok(seconds)
    })?;
    server.dispatch("sleep", Dispatch::Pool)?;
    let mut service = RigService::new();
    if let Some(hook) = on_start {
        service = service.on_start(hook);
    }
    service.expose(server)?;
    Ok(())
}

/// The demo rig on rigwire-smol (`rigwire serve --runtime smol`): the same
/// `echo`, `add`, `sleep` and experiment lifecycle, as async handlers.
///
/// # Errors
/// [`Error::Registry`] if a name clashes with one already exposed.
pub fn expose_demo_rig_smol(server: &mut rigwire_smol::Handlers) -> Result<(), Error> {
    server.expose_raw("echo", |_ctx, args: Payload| async move { Ok(args) })?;
    server.describe("echo", "any -> the same payload, in the same codec")?;
    server.expose("add", |(a, b): (f64, f64)| async move { Ok(a + b) })?;
    // A cancelled call's future is dropped, which ends the sleep.
    server.expose("sleep", |seconds: f64| async move {
        if !(0.0..=3600.0).contains(&seconds) {
            return Err(HandlerError::with_kind(
                ErrorKind::BadArguments,
                "sleep takes 0 to 3600 seconds",
            ));
        }
        smol::Timer::after(Duration::from_secs_f64(seconds)).await;
        Ok(seconds)
    })?;
    rigwire_smol::RigService::new().expose(server)?;
    Ok(())
}
