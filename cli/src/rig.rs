//! The demo rig that `rigwire serve` and `rigwire demo` run: `echo`, `add`,
//! `sleep`, and the experiment lifecycle on [`rigwire_std::core::Lifecycle`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rigwire_std::core::{ExpInfo, ExpRef, ExpStatus, Lifecycle, Step};
use rigwire_std::{CallContext, Dispatch, Error, HandlerError, Payload, Server};
use serde::{Deserialize, Serialize};

/// Arguments of `exp.stop`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StopArgs {
    /// Interrupt at once instead of stopping at the end of the trial.
    #[serde(default)]
    pub immediately: bool,
}

/// What the lifecycle calls report after each step.
#[derive(Debug, Serialize, Deserialize)]
pub struct StepDone {
    /// The rig's name.
    pub rig: String,
    /// The status after the step.
    pub status: ExpStatus,
}

/// Called on every step the rig takes, so the demo can show it calling back.
pub type StepHook = Arc<dyn Fn(&CallContext, Step, &ExpStatus) + Send + Sync>;

/// Exposes the demo rig's methods on `server`.
///
/// # Errors
/// [`Error::Registry`] if a name clashes with one already exposed.
pub fn expose_demo_rig(
    server: &mut Server,
    name: &str,
    on_step: Option<StepHook>,
) -> Result<(), Error> {
    server.expose_raw("echo", |_ctx, args: Payload| Ok(args))?;
    server.dispatch("echo", Dispatch::Inline)?;
    server.expose("add", |(a, b): (f64, f64)| Ok(a + b))?;
    server.expose_with("sleep", |ctx: &CallContext, seconds: f64| {
        if !(0.0..=3600.0).contains(&seconds) {
            return Err(HandlerError::with_kind(
                rigwire_std::ErrorKind::BadArguments,
                "sleep takes 0 to 3600 seconds",
            ));
        }
        // Sleep in slices so a cancelled call stops early.
        let until = std::time::Instant::now() + Duration::from_secs_f64(seconds);
        while std::time::Instant::now() < until {
            if ctx.is_cancelled() {
                return Err(HandlerError::with_kind(
                    rigwire_std::ErrorKind::Cancelled,
                    "sleep cancelled",
                ));
            }
            std::thread::sleep(Duration::from_millis(10).min(until - std::time::Instant::now()));
        }
        Ok(seconds)
    })?;
    server.dispatch("sleep", Dispatch::Pool)?;

    let lifecycle = Arc::new(Mutex::new(Lifecycle::new()));
    let rig = name.to_owned();
    let l = Arc::clone(&lifecycle);
    let step = Arc::new(
        move |step: Step, exp_ref: Option<ExpRef>, ctx: &CallContext| {
            let status = l
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .apply(step, exp_ref)
                .map_err(|e| HandlerError::new(e.to_string()))?;
            if let Some(hook) = &on_step {
                hook(ctx, step, &status);
            }
            Ok(StepDone {
                rig: rig.clone(),
                status,
            })
        },
    );
    let s = Arc::clone(&step);
    server.expose_with("exp.init", move |ctx: &CallContext, (): ()| {
        s(Step::Init, None, ctx)
    })?;
    let s = Arc::clone(&step);
    server.expose_with("exp.start", move |ctx: &CallContext, exp_ref: ExpRef| {
        s(Step::Start, Some(exp_ref), ctx)
    })?;
    let s = Arc::clone(&step);
    server.expose_with(
        "exp.stop",
        move |ctx: &CallContext, args: Option<StopArgs>| {
            let step = if args.unwrap_or_default().immediately {
                Step::Interrupt
            } else {
                Step::Stop
            };
            s(step, None, ctx)
        },
    )?;
    server.expose_with("exp.cleanup", move |ctx: &CallContext, (): ()| {
        step(Step::Cleanup, None, ctx)
    })?;
    let l = Arc::clone(&lifecycle);
    server.expose("exp.status", move |(): ()| {
        Ok(l.lock().unwrap_or_else(|p| p.into_inner()).status())
    })?;
    server.expose("exp.info", move |(): ()| -> Result<ExpInfo, HandlerError> {
        Ok(lifecycle.lock().unwrap_or_else(|p| p.into_inner()).info())
    })?;
    Ok(())
}
