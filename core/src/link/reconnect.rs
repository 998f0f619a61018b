//! Reconnecting after a lost connection or a failed attempt: the backoff and
//! the rules for giving up, the same for a client and for a service that
//! dials out to a relay.

use std::time::{Duration, Instant};

use crate::error::{ConnectionError, Error};
use crate::message::{ErrorKind, RejectCode};

/// Reconnect with exponential backoff after the connection is lost. Calls in
/// flight when it is lost still fail with `Disconnected` (they may have run);
/// the next call reconnects first, within its own deadline if it has one.
/// (A peer gone since the last call counts as lost: see
/// [`Config::reads_before_calls`](super::Config::reads_before_calls).)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    /// Wait before the first retry (default 100 ms), doubled after each failure.
    pub initial: Duration,
    /// Longest wait between retries (default 5 s).
    pub max: Duration,
    /// Attempts before giving up (default 10).
    pub attempts: u32,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            attempts: 10,
        }
    }
}

impl Reconnect {
    /// The waits before each retry: `initial`, doubled each time up to `max`,
    /// `attempts` of them.
    pub fn delays(&self) -> impl Iterator<Item = Duration> {
        let max = self.max;
        std::iter::successors(Some(self.initial), move |wait| Some((*wait * 2).min(max)))
            .take(self.attempts as usize)
    }

    /// The same backoff, retrying for as long as it takes (a remote service
    /// waiting for its relay to come back).
    pub fn forever(self) -> Self {
        Reconnect {
            attempts: u32::MAX,
            ..self
        }
    }

    /// Starts a round of reconnecting under this policy.
    pub fn start(self) -> Redial {
        self.start_before(None)
    }

    /// Starts a round for a caller that must be done by `deadline` (a
    /// call's): it gives up once the next wait would end at or past it,
    /// and each attempt gets only the time left ([`Redial::time_left`]).
    pub fn start_before(self, deadline: Option<Instant>) -> Redial {
        Redial {
            delays: Box::new(self.delays()),
            attempt: 0,
            deadline,
        }
    }
}

/// One round of reconnecting: after each failure, how long to wait before
/// the next attempt, or that it is time to give up.
pub struct Redial {
    delays: Box<dyn Iterator<Item = Duration> + Send>,
    attempt: u32,
    deadline: Option<Instant>,
}

impl std::fmt::Debug for Redial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redial")
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl Redial {
    /// The wait before the next attempt after `failure` (the lost
    /// connection's error, or the last attempt's) at `now`, or `None` to
    /// give up: when the attempts are used up, when the wait would end at or
    /// past the round's deadline, or at once when retrying cannot help
    /// ([`is_permanent`]).
    pub fn next(&mut self, failure: &Error, now: Instant) -> Option<Duration> {
        if is_permanent(failure) {
            return None;
        }
        let wait = self.delays.next()?;
        if self.deadline.is_some_and(|d| super::after(now, wait) >= d) {
            return None;
        }
        self.attempt += 1;
        Some(wait)
    }

    /// What is left of the round's deadline at `now`, to bound the attempt
    /// about to be made ([`Config::cut_to`](crate::link::Config::cut_to)).
    pub fn time_left(&self, now: Instant) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(now))
    }

    /// Attempts made so far in this round (1 for the first retry).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// A client's connection as its callers share it: the one in use, whether
/// a caller is making it again, and whether the application closed the
/// client. The runtime holds it under its lock and makes the connection
/// without the lock, so that the other callers wait for it each within its
/// own deadline; a closed client stays closed, reconnect or not.
#[derive(Debug)]
pub struct SharedConnection<P> {
    peer: P,
    redialing: bool,
    closed: bool,
}

/// What a caller that wants the connection does next
/// ([`SharedConnection::want`]).
#[derive(Debug)]
pub enum Want<P> {
    /// Use this connection: live, or lost for good (its calls say why).
    Use(P),
    /// Make the connection again: run this round with the lock released,
    /// starting from the lost connection's error, then report it
    /// ([`SharedConnection::made`]).
    Redial(Redial, Error),
    /// Another caller is making it: wait to be woken (by the runtime, when
    /// it reports), no later than the caller's deadline, then ask again.
    Wait,
}

impl<P: Clone> SharedConnection<P> {
    /// A client's first connection.
    pub fn new(peer: P) -> Self {
        SharedConnection {
            peer,
            redialing: false,
            closed: false,
        }
    }

    /// The connection in use.
    pub fn peer(&self) -> &P {
        &self.peer
    }

    /// [`want`](Self::want) for a caller that never waits (an event loop):
    /// the connection to use, or `None` when it is lost and would be made
    /// again (which waits: only a caller that may wait does that).
    ///
    /// # Errors
    /// `DeadlineExceeded` when it would be made again and the caller's
    /// `deadline` has passed by `now`.
    pub fn without_waiting(
        &self,
        lost: bool,
        policy: Option<Reconnect>,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Result<Option<P>, Error> {
        if !lost || policy.is_none() || self.closed {
            return Ok(Some(self.peer.clone()));
        }
        match deadline {
            Some(d) if now >= d => Err(Error::DeadlineExceeded),
            _ => Ok(None),
        }
    }

    /// For a caller whose connection is `lost` (its error, `None` while it
    /// is up) under `policy`, which must be done by `deadline`; `clock`
    /// gives the time, read only while another caller is making the
    /// connection (a live connection's calls read no clock here).
    ///
    /// # Errors
    /// `DeadlineExceeded` once the caller's deadline passes while another
    /// caller is making the connection.
    pub fn want(
        &mut self,
        lost: Option<Error>,
        policy: Option<Reconnect>,
        deadline: Option<Instant>,
        clock: impl FnOnce() -> Instant,
    ) -> Result<Want<P>, Error> {
        let (Some(last), Some(policy)) = (lost, policy.filter(|_| !self.closed)) else {
            return Ok(Want::Use(self.peer.clone()));
        };
        if !self.redialing {
            self.redialing = true;
            return Ok(Want::Redial(policy.start_before(deadline), last));
        }
        match deadline {
            Some(d) if clock() >= d => Err(Error::DeadlineExceeded),
            _ => Ok(Want::Wait),
        }
    }

    /// The round of [`Want::Redial`] ended with `made`: a new connection is
    /// the one in use from now on. Wake the waiting callers. The `bool`
    /// says to close the new connection at once: the client was closed
    /// while it was being made.
    ///
    /// # Errors
    /// The round's error.
    pub fn made(&mut self, made: Result<P, Error>) -> Result<(P, bool), Error> {
        self.redialing = false;
        let peer = made?;
        self.peer = peer.clone();
        Ok((peer, self.closed))
    }

    /// The caller making the connection stopped before its round ended (an
    /// async task dropped): another caller may make it. Wake the waiting
    /// callers.
    pub fn abandoned(&mut self) {
        self.redialing = false;
    }

    /// The application closes the client: no round starts from now on.
    /// Returns the connection to close.
    pub fn close(&mut self) -> &P {
        self.closed = true;
        &self.peer
    }
}

/// Whether retrying cannot help: the secrets differ, the versions do not
/// overlap, the peer found us in breach of the protocol, or our own
/// configuration or URL is wrong; or must not: this side closed the
/// connection itself (a closed client stays closed). A refused connection
/// (full, shutting down), an unreachable peer, a lost connection or a
/// refused registration (a relay may still hold our old connection) are
/// worth retrying.
pub fn is_permanent(failure: &Error) -> bool {
    match failure {
        Error::Disconnected(ConnectionError::LocallyClosed(_)) => true,
        Error::AuthFailed(_)
        | Error::VersionMismatch { .. }
        | Error::InvalidUrl { .. }
        | Error::Config(_) => true,
        Error::Rejected { code, .. } => matches!(
            code,
            RejectCode::AuthFailed
                | RejectCode::AuthRequired
                | RejectCode::VersionMismatch
                | RejectCode::Protocol
        ),
        Error::Remote(e) => matches!(e.kind, ErrorKind::Protocol),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let policy = Reconnect {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
            attempts: 5,
        };
        let ms: Vec<u128> = policy.delays().map(|d| d.as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 500, 500]);
        assert_eq!(policy.forever().delays().take(1000).count(), 1000);
    }
}
