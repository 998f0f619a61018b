//! Python's exit and the threads rigwire runs Python code on (handlers,
//! hooks, the log's forwarder). CPython ends a thread that takes the GIL
//! once the interpreter has begun to finalize, by unwinding it; on a thread
//! of ours that unwinding passes PyO3's hold of the GIL, which then aborts
//! the whole process ("Fatal Python error: PyGILState_Release"). A script
//! that ended while a peer's call ran its handler died that way, every time.
//!
//! So the package's `atexit` callback, which runs before finalizing begins,
//! closes a gate ([`close`]): no thread of ours enters Python after it, and
//! the callback waits ([`wait_left`]) for those inside to leave.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// Threads of ours running Python code now, or about to.
static INSIDE: AtomicUsize = AtomicUsize::new(0);
/// Python is exiting: no thread of ours enters it any more.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// How often [`wait_left`] looks again, and hears Ctrl-C.
const LOOK_EVERY: Duration = Duration::from_millis(20);

/// Runs `f` with the GIL on a thread of ours, unless Python is exiting
/// (or gone): `None` then, and `f` does not run.
pub(crate) fn attach<R>(f: impl FnOnce(Python<'_>) -> R) -> Option<R> {
    /// Counts the thread out, however `f` ends.
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            INSIDE.fetch_sub(1, Ordering::SeqCst);
        }
    }
    // Counted in before the gate is read: `wait_left`, which reads them the
    // other way round, either sees this thread or this thread sees the gate.
    INSIDE.fetch_add(1, Ordering::SeqCst);
    let _leave = Leave;
    if CLOSED.load(Ordering::SeqCst) {
        return None;
    }
    Python::try_attach(f)
}

/// Closes the gate: from now on no thread of ours enters Python (a call
/// that arrives is answered that the rig's Python is exiting). Returns how
/// many are inside it now.
#[pyfunction]
pub(crate) fn close() -> usize {
    CLOSED.store(true, Ordering::SeqCst);
    INSIDE.load(Ordering::SeqCst)
}

/// Waits, with the GIL released, until no thread of ours runs Python code
/// or `timeout` seconds have passed; returns how many still do. Ctrl-C
/// ends the wait with `KeyboardInterrupt`.
#[pyfunction]
pub(crate) fn wait_left(py: Python<'_>, timeout: f64) -> PyResult<usize> {
    let until = Duration::try_from_secs_f64(timeout)
        .ok()
        .and_then(|t| Instant::now().checked_add(t));
    loop {
        let inside = INSIDE.load(Ordering::SeqCst);
        if inside == 0 || until.is_some_and(|u| Instant::now() >= u) {
            return Ok(inside);
        }
        py.detach(|| std::thread::sleep(LOOK_EVERY));
        py.check_signals()?;
    }
}
