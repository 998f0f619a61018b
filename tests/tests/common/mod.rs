//! What the cross-runtime and relay tests share: a probe for handlers that
//! must start and then see their cancel, and quick keepalive settings.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rigwire_core::Keepalive;

/// What a `watch` handler reports: it started, and it was cancelled.
#[derive(Default)]
pub struct Probe {
    pub started: AtomicBool,
    pub cancelled: AtomicBool,
}

/// Marks its probe cancelled when dropped (with the future holding it).
pub struct CancelledOnDrop(Arc<Probe>);

impl Drop for CancelledOnDrop {
    fn drop(&mut self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
    }
}

impl Probe {
    /// Records the start; the guard records the cancel.
    pub fn start(self: &Arc<Self>) -> CancelledOnDrop {
        self.started.store(true, Ordering::SeqCst);
        CancelledOnDrop(Arc::clone(self))
    }
}

/// Keepalive that declares a silent peer dead after 0.4 s.
pub fn quick() -> Option<Keepalive> {
    Some(Keepalive {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(400),
    })
}

/// Waits up to 10 s for `flag`; returns whether it was set.
pub fn wait_flag(flag: &AtomicBool) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if flag.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}
