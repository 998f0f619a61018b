//! Which connections a server takes: up to its connection limit, and none
//! once it is shutting down. Each refusal carries the `Reject` code and the
//! reason the peer is told, worded once for every server (both runtimes'
//! servers and the relay).

use crate::message::RejectCode;

/// Why a connection is refused: the code and the reason sent in `Reject`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The `Reject` code.
    pub code: RejectCode,
    /// The reason, for the peer and the logs.
    pub reason: String,
}

/// The connections a server holds, against its limit.
#[derive(Debug, Clone)]
pub struct Admission {
    /// What is being admitted to, for reasons ("server", "relay").
    what: &'static str,
    limit: usize,
    open: usize,
    stopping: bool,
}

impl Admission {
    /// A server of kind `what` ("server", "relay") taking up to `limit`
    /// connections at once.
    pub fn new(what: &'static str, limit: usize) -> Admission {
        Admission {
            what,
            limit,
            open: 0,
            stopping: false,
        }
    }

    /// Decides on a new connection: `Ok` counts it as open (call
    /// [`release`](Self::release) when it ends); `Err` says why it is
    /// refused (reject it with that code and reason, then drop it).
    ///
    /// # Errors
    /// A [`Refusal`]: shutting down, or the limit is reached.
    pub fn admit(&mut self) -> Result<(), Refusal> {
        if self.stopping {
            return Err(Refusal {
                code: RejectCode::Shutdown,
                reason: format!("the {} is shutting down", self.what),
            });
        }
        if self.open >= self.limit {
            return Err(Refusal {
                code: RejectCode::ConnectionLimit,
                reason: format!(
                    "the {} is full: {} connections (limit {})",
                    self.what, self.open, self.limit
                ),
            });
        }
        self.open += 1;
        Ok(())
    }

    /// An admitted connection ended.
    pub fn release(&mut self) {
        self.open = self.open.saturating_sub(1);
    }

    /// From now on every connection is refused with `Shutdown`.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// Connections admitted and not yet released.
    pub fn open(&self) -> usize {
        self.open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_and_shutdown_refuse_with_their_reasons() {
        let mut admission = Admission::new("server", 2);
        assert!(admission.admit().is_ok());
        assert!(admission.admit().is_ok());
        let full = admission.admit().unwrap_err();
        assert_eq!(full.code, RejectCode::ConnectionLimit);
        assert_eq!(full.reason, "the server is full: 2 connections (limit 2)");
        admission.release();
        assert!(admission.admit().is_ok());
        admission.stop();
        let closing = admission.admit().unwrap_err();
        assert_eq!(
            (closing.code, closing.reason.as_str()),
            (RejectCode::Shutdown, "the server is shutting down")
        );
        assert_eq!(admission.open(), 2);
    }
}
