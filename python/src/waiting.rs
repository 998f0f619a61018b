//! Waits a Python user can end: with the GIL released, and Ctrl-C (or an
//! asyncio task's cancellation) heard within [`ASK_EVERY`].

use std::sync::{mpsc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;

/// How often a wait asks Python whether to go on.
const ASK_EVERY: Duration = Duration::from_millis(50);

/// Runs `wait` with the GIL released, handing it a `go_on` that runs
/// Python's signal handlers (Ctrl-C) and then the caller's own `go_on` (an
/// asyncio task's cancellation): an exception from either, raised here, or
/// a false from the caller's, raised as `rigwire.Cancelled`, ends the wait.
pub(crate) fn asking<T: Send>(
    py: Python<'_>,
    go_on: Option<Py<PyAny>>,
    wait: impl FnOnce(&dyn Fn() -> bool) -> Option<T> + Send,
) -> PyResult<T> {
    let interrupted = Mutex::new(None);
    let asked = |py: Python<'_>| -> PyResult<bool> {
        py.check_signals()?;
        match &go_on {
            Some(f) => f.call0(py)?.is_truthy(py),
            None => Ok(true),
        }
    };
    let ask = || {
        Python::attach(|py| match asked(py) {
            Ok(go_on) => go_on,
            Err(e) => {
                *interrupted.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                false
            }
        })
    };
    match py.detach(|| wait(&ask)) {
        Some(done) => Ok(done),
        None => {
            let e = interrupted.into_inner().unwrap_or_else(|p| p.into_inner());
            Err(e.unwrap_or_else(|| crate::errors::cancelled(py)))
        }
    }
}

/// Runs `work` (which blocks: connecting, say) on a thread of its own and
/// waits for it here, hearing Ctrl-C meanwhile: a script is not held for a
/// whole connect timeout by a rig that does not answer. Once interrupted,
/// `work` still ends on its thread, bounded by its own timeout, and what it
/// made is dropped (a connection made is closed).
pub(crate) fn interruptible<T: Send + 'static>(
    py: Python<'_>,
    work: impl FnOnce() -> T + Send + 'static,
) -> PyResult<T> {
    use pyo3::exceptions::PyRuntimeError;
    let (done, outcome) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("rigwire-wait".into())
        .spawn(move || {
            let _ = done.send(work());
        })
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start a thread: {e}")))?;
    let made = asking(py, None, move |go_on| loop {
        match outcome.recv_timeout(ASK_EVERY) {
            Ok(made) => return Some(Some(made)),
            Err(mpsc::RecvTimeoutError::Timeout) if go_on() => {}
            Err(mpsc::RecvTimeoutError::Timeout) => return None,
            // Its thread panicked (a bug, reported on stderr): said, not hung.
            Err(mpsc::RecvTimeoutError::Disconnected) => return Some(None),
        }
    })?;
    made.ok_or_else(|| PyRuntimeError::new_err("rigwire failed inside (see the panic above)"))
}

/// Runs `future` to its end on this thread with the GIL released, hearing
/// Ctrl-C meanwhile; once interrupted, the future is dropped (what it was
/// waiting for is given up).
pub(crate) fn on_smol<T: Send>(
    py: Python<'_>,
    future: impl std::future::Future<Output = T> + Send,
) -> PyResult<T> {
    asking(py, None, |go_on| {
        smol::block_on(smol::future::or(async { Some(future.await) }, async {
            loop {
                smol::Timer::after(ASK_EVERY).await;
                if !go_on() {
                    return None;
                }
            }
        }))
    })
}
