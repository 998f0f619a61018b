//! Which connections a server takes. Connections still in the handshake
//! (strangers, until they prove otherwise) have a budget of their own,
//! apart from the established ones: when it is full the *oldest* of them is
//! evicted, not the newcomer, so sockets that connect and say nothing can
//! never crowd out the lab's own machines. Established connections are
//! counted against the connection limit once they have authenticated. None
//! are taken once the server is shutting down. Each refusal carries the
//! `Reject` code and the reason the peer is told, worded once for every
//! server (both runtimes' servers and the relay). Telling a refused peer
//! why holds a thread or a task until it has read the answer, so refused
//! connections have a budget too ([`Admission::may_tell`]): beyond it they
//! are closed at once, and a crowd that finds the server full holds no
//! more than a crowd of strangers in the handshake does.

use std::collections::VecDeque;

use crate::message::RejectCode;

/// Why a connection is refused: the code and the reason sent in `Reject`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The `Reject` code.
    pub code: RejectCode,
    /// The reason, for the peer and the logs.
    pub reason: String,
}

/// One admitted connection, by the number [`Admission::admit`] gave it.
pub type Ticket = u64;

/// What [`Admission::admit`] decided for a new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The new connection's ticket.
    pub ticket: Ticket,
    /// The oldest connection still in the handshake, evicted to make room:
    /// close it at once (it proved nothing in all that time).
    pub evicted: Option<Ticket>,
}

/// The connections a server holds, against its two budgets.
#[derive(Debug, Clone)]
pub struct Admission {
    /// What is being admitted to, for reasons ("server", "relay").
    what: &'static str,
    limit: usize,
    handshake_limit: usize,
    /// Tickets still in the handshake, oldest first.
    handshaking: VecDeque<Ticket>,
    established: usize,
    next: Ticket,
    stopping: bool,
    /// Refused connections being told why ([`may_tell`](Self::may_tell)).
    telling: usize,
}

impl Admission {
    /// A server of kind `what` ("server", "relay") taking up to `limit`
    /// established connections and `handshake_limit` still in the handshake.
    pub fn new(what: &'static str, limit: usize, handshake_limit: usize) -> Admission {
        Admission {
            what,
            limit,
            handshake_limit: handshake_limit.max(1),
            handshaking: VecDeque::new(),
            established: 0,
            next: 1,
            stopping: false,
            telling: 0,
        }
    }

    /// Takes a place for telling a refused connection why: a thread or
    /// task that opens its layers (TLS, websocket), sends the `Reject` and
    /// lingers until its peer has read it. `false` when as many are being
    /// told as strangers may be in the handshake: close this one at once,
    /// unanswered (its peer sees the connection closed). Give the place
    /// back with [`told`](Self::told) when the telling ends, however it ends.
    pub fn may_tell(&mut self) -> bool {
        let room = self.telling < self.handshake_limit;
        self.telling += usize::from(room);
        room
    }

    /// A refused connection taken by [`may_tell`](Self::may_tell) has been
    /// told (or given up on): its place is free.
    pub fn told(&mut self) {
        self.telling = self.telling.saturating_sub(1);
    }

    /// Takes a new connection into the handshake budget, evicting the
    /// oldest one there if it is full. Call [`established`](Self::established)
    /// when its handshake completes and [`release`](Self::release) when it ends.
    ///
    /// # Errors
    /// A [`Refusal`] once shutting down, or when the authenticated
    /// connections are already at the limit (strangers in the handshake
    /// never count towards it).
    pub fn admit(&mut self) -> Result<Admitted, Refusal> {
        if self.stopping {
            return Err(self.shutting_down());
        }
        if self.established >= self.limit {
            return Err(self.full());
        }
        let evicted = if self.handshaking.len() >= self.handshake_limit {
            self.handshaking.pop_front()
        } else {
            None
        };
        let ticket = self.next;
        self.next += 1;
        self.handshaking.push_back(ticket);
        Ok(Admitted { ticket, evicted })
    }

    /// What the peers are told when the server shuts down (the reason of a
    /// drain, and of the refusals once stopping).
    pub fn goodbye(&self) -> String {
        format!("the {} is shutting down", self.what)
    }

    /// What a connection evicted from the handshake budget
    /// ([`Admitted::evicted`]) is told, where it can still be told.
    pub fn eviction() -> Refusal {
        Refusal {
            code: RejectCode::HandshakeTimeout,
            reason: "too many connections are in the handshake; the oldest is closed".into(),
        }
    }

    /// Closes `conn`, evicted from the handshake budget, telling its peer why
    /// ([`eviction`](Self::eviction)): for a connection held in the lobby or
    /// one with a link of its own ([`Link::evict`](super::Link::evict)) alike.
    pub(crate) fn evict(conn: &mut crate::connection::Connection) {
        let evicted = Admission::eviction();
        conn.reject(evicted.code, &evicted.reason);
    }

    /// `ticket`'s handshake completed: it moves to the established budget.
    ///
    /// # Errors
    /// A [`Refusal`] when the established connections are at the limit, or
    /// once shutting down (close it with that reason; then `release` it, as
    /// refused). A connection admitted before the shutdown began may have
    /// been still opening (TLS, websocket) when the server told its peers
    /// to go, and so never told: it is refused here, or it would keep the
    /// shutdown waiting for as long as its peer stays.
    pub fn established(&mut self, ticket: Ticket) -> Result<(), Refusal> {
        self.forget_handshake(ticket);
        if self.stopping {
            return Err(self.shutting_down());
        }
        if self.established >= self.limit {
            return Err(self.full());
        }
        self.established += 1;
        Ok(())
    }

    fn shutting_down(&self) -> Refusal {
        Refusal {
            code: RejectCode::Shutdown,
            reason: self.goodbye(),
        }
    }

    fn full(&self) -> Refusal {
        Refusal {
            code: RejectCode::ConnectionLimit,
            reason: format!(
                "the {} is full: {} connections (limit {})",
                self.what, self.established, self.limit
            ),
        }
    }

    /// `ticket` ended; `was_established` if [`established`](Self::established)
    /// accepted it.
    pub fn release(&mut self, ticket: Ticket, was_established: bool) {
        if was_established {
            self.established = self.established.saturating_sub(1);
        } else {
            self.forget_handshake(ticket);
        }
    }

    /// Refuses every newcomer from now on (the server is shutting down);
    /// returns what its peers are told ([`goodbye`](Self::goodbye)).
    pub fn stop(&mut self) -> String {
        self.stopping = true;
        self.goodbye()
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// Established connections.
    pub fn open(&self) -> usize {
        self.established
    }

    /// Connections still in the handshake.
    pub fn handshaking(&self) -> usize {
        self.handshaking.len()
    }

    fn forget_handshake(&mut self, ticket: Ticket) {
        if let Some(at) = self.handshaking.iter().position(|t| *t == ticket) {
            self.handshaking.remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strangers_in_the_handshake_evict_each_other_never_the_established() {
        let mut admission = Admission::new("server", 2, 3);
        let lab = admission.admit().unwrap().ticket;
        admission.established(lab).unwrap();
        // Silent sockets fill the handshake budget, then push each other out.
        let silent: Vec<_> = (0..3).map(|_| admission.admit().unwrap()).collect();
        assert!(silent.iter().all(|a| a.evicted.is_none()));
        let next = admission.admit().unwrap();
        assert_eq!(next.evicted, Some(silent[0].ticket), "the oldest goes");
        assert_eq!(admission.handshaking(), 3);
        assert_eq!(admission.open(), 1, "the lab's machine keeps its place");
        // A legitimate newcomer still gets in and authenticates.
        let second = admission.admit().unwrap();
        admission.established(second.ticket).unwrap();
        // The established budget is the limit for authenticated peers: a
        // newcomer is refused at once while it is full...
        let full = admission.admit().unwrap_err();
        assert_eq!(full.code, RejectCode::ConnectionLimit);
        assert_eq!(full.reason, "the server is full: 2 connections (limit 2)");
        // ...and one that was let in while there was room, but finds it
        // gone once authenticated, is refused then.
        admission.release(second.ticket, true);
        let third = admission.admit().unwrap();
        let fourth = admission.admit().unwrap();
        admission.established(third.ticket).unwrap();
        assert!(admission.established(fourth.ticket).is_err());
        admission.release(fourth.ticket, false);
        admission.release(lab, true);
        assert_eq!(admission.open(), 1);
        let late = admission.admit().unwrap().ticket;
        admission.stop();
        let closing = admission.admit().unwrap_err();
        assert_eq!(
            (closing.code, closing.reason.as_str()),
            (RejectCode::Shutdown, "the server is shutting down")
        );
        // Let in before the shutdown, authenticated after it began: refused
        // too, as nobody told it to go.
        let strangers = admission.handshaking();
        assert_eq!(admission.established(late), Err(closing));
        assert_eq!(admission.handshaking(), strangers - 1);
        admission.release(late, false);
    }

    #[test]
    fn refused_connections_are_told_why_within_the_handshake_budget() {
        let mut admission = Admission::new("server", 0, 2);
        let refused = admission.admit().unwrap_err();
        assert_eq!(refused.code, RejectCode::ConnectionLimit);
        // Two are told why at once; a third, meanwhile, is closed unanswered.
        assert!(admission.may_tell());
        assert!(admission.may_tell());
        assert!(
            !admission.may_tell(),
            "a crowd of refused peers holds no more"
        );
        admission.told();
        assert!(admission.may_tell(), "a place freed is taken again");
        admission.told();
        admission.told();
        admission.told(); // more than were taken: no underflow
        assert!(admission.may_tell());
    }
}
