//! A connection refused for room or by a shutdown, while its peer is told
//! why: the place it holds among those being told
//! ([`Admission::may_tell`](rigwire_core::link::Admission::may_tell)).

use std::sync::{Arc, Mutex};

use rigwire_core::link::{Admission, Refusal};

/// A refused connection that is being told why, on a thread or task of
/// its own. It holds one of the places the admission keeps for that, and
/// gives it back when dropped, however the telling ends.
#[doc(hidden)]
pub struct Refused {
    /// What the peer is told.
    pub refusal: Refusal,
    admission: Arc<Mutex<Admission>>,
}

impl Refused {
    /// A place to tell the connection refused with `refusal` why, if one
    /// is free. `None` when as many are being told already: the caller
    /// closes it at once, unanswered (logged here, at debug: a crowd that
    /// finds the server at `url` full would otherwise write a line each).
    pub fn to_tell(
        refusal: Refusal,
        admission: &Arc<Mutex<Admission>>,
        url: &dyn std::fmt::Display,
    ) -> Option<Refused> {
        if crate::lock(admission).may_tell() {
            return Some(Refused {
                refusal,
                admission: Arc::clone(admission),
            });
        }
        tracing::debug!(
            %url,
            "closing a connection unanswered: {}; as many refused connections are being told why as strangers may be in the handshake",
            refusal.reason
        );
        None
    }
}

impl Refused {
    /// Logs the refusal of the connection at `label` (a warning) and
    /// queues its `Reject` on `conn`, before anything of `conn`'s has been
    /// sent: its `Hello` and the `Reject` then leave in one write. Sent
    /// apart, a client without a secret (whose handshake ends with our
    /// `Hello`) that read the first alone took itself as connected, and
    /// learnt otherwise at its first call.
    pub fn reject(&self, conn: &mut rigwire_core::Connection, label: &str) {
        tracing::warn!(peer = %label, "rejecting: {}", self.refusal.reason);
        conn.reject(self.refusal.code, &self.refusal.reason);
    }
}

impl Drop for Refused {
    fn drop(&mut self) {
        crate::lock(&self.admission).told();
    }
}
