//! Call admission, which never blocks: the checks a command passes before
//! it reaches the connection (open, deadline not passed, room under the
//! output limit), what a refusal says, and the *room freed* edge a refused
//! caller waits for.

use std::time::{Duration, Instant};

use crate::error::{CallError, ConnectionError, EchoError};
use crate::link::Link;

/// Room reserved for a frame's head beside its method name and payload, when
/// estimating whether a call fits under the output limit.
const FRAME_OVERHEAD: usize = 64;

/// Why a command could not be admitted now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit<E> {
    /// The output is over its limit: wait for [`Link::take_room_freed`]
    /// (within the command's deadline), then try again.
    NoRoom {
        /// Bytes queued and not yet written.
        queued: usize,
        /// The configured limit.
        limit: usize,
    },
    /// As many of our calls are in flight as the peer takes at once (its
    /// `max_incoming_calls`), or as this side's `max_outgoing_calls`
    /// allows: wait for [`Link::take_room_freed`], raised once one ends
    /// (within the call's deadline), then try again. Only calls are
    /// refused so.
    NoSlot {
        /// Our calls awaiting an answer.
        in_flight: usize,
        /// How many may be.
        limit: usize,
    },
    /// The command failed for good.
    Failed(E),
}

/// The error a command reports when it was refused for room (or a call
/// for a slot) and its caller does not wait ([`Admit::into_error`]).
pub trait NoRoomError {
    /// The error for "the output holds `queued` bytes, over `limit`".
    fn no_room(queued: usize, limit: usize) -> Self;
    /// The error for "`in_flight` calls await an answer, `limit` may".
    fn no_slot(in_flight: usize, limit: usize) -> Self;
}

impl NoRoomError for CallError {
    fn no_room(queued: usize, limit: usize) -> Self {
        CallError::Busy(format!(
            "output queue full ({queued} bytes not yet written, limit {limit})"
        ))
    }

    fn no_slot(in_flight: usize, limit: usize) -> Self {
        CallError::Busy(format!(
            "{in_flight} calls in flight to the peer, as many as it takes at once (limit {limit})"
        ))
    }
}

impl NoRoomError for EchoError {
    fn no_room(queued: usize, limit: usize) -> Self {
        EchoError::Backpressure { queued, limit }
    }

    /// Never asked: a confirmed send takes no call slot.
    fn no_slot(in_flight: usize, limit: usize) -> Self {
        EchoError::Backpressure {
            queued: in_flight,
            limit,
        }
    }
}

impl<E> Admit<E> {
    /// Whether the command may be admitted later: it was refused for room
    /// or for a slot, and the link's room edge says when to try again.
    pub fn waits(&self) -> bool {
        !matches!(self, Admit::Failed(_))
    }
}

impl<E: NoRoomError> Admit<E> {
    /// The error a caller that does not wait for room reports.
    pub fn into_error(self) -> E {
        match self {
            Admit::NoRoom { queued, limit } => E::no_room(queued, limit),
            Admit::NoSlot { in_flight, limit } => E::no_slot(in_flight, limit),
            Admit::Failed(e) => e,
        }
    }
}

impl Link {
    /// The checks a command passes before it reaches the connection.
    pub(super) fn admit(
        &mut self,
        len: usize,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Result<(), Refused> {
        if let Some(err) = self.conn.error() {
            return Err(Refused::Closed(err.clone()));
        }
        if deadline.is_some_and(|d| now >= d) {
            return Err(Refused::DeadlinePassed);
        }
        if !self.fits(len) {
            self.held = false;
            self.room_wanted = Some(self.room_wanted.map_or(len, |l| l.min(len)));
            return Err(Refused::NoRoom {
                queued: self.queued_output(),
                limit: self.conn.config().max_queued_output,
            });
        }
        Ok(())
    }

    /// Whether a command of `len` bytes fits under the output limit now. A
    /// frame larger than the limit fits an empty queue, alone.
    pub(super) fn fits(&self, len: usize) -> bool {
        let queued = self.queued_output();
        queued == 0 || queued + len + FRAME_OVERHEAD <= self.conn.config().max_queued_output
    }

    /// Raises the room edge for everyone waiting for room or a slot (they
    /// retry, and learn of a failure if that is why).
    pub(super) fn wake_room_waiters(&mut self) {
        let slot_wanted = std::mem::take(&mut self.slot_wanted);
        if self.room_wanted.take().is_some() || slot_wanted {
            self.room_freed = true;
            self.room_edges += 1;
        }
    }

    /// How many of our calls may await an answer at once: as many as the
    /// peer takes (it answers more `Busy`), within this side's own limit.
    fn call_slots(&self) -> usize {
        let ours = self.conn.config().max_outgoing_calls;
        let theirs = self.conn.peer().map_or(ours, |p| p.max_incoming_calls);
        ours.min(theirs) as usize
    }

    /// The slot check of a call, after [`admit`](Self::admit)'s. While
    /// the peer has calls of its own in progress here, one of them may be
    /// waiting for this very call (a call back that calls it again): held
    /// for a slot that only its own caller's answer frees, it would wait
    /// for good. Such a call goes, and a full peer answers `Busy`.
    pub(super) fn admit_call(&mut self) -> Result<(), Admit<CallError>> {
        let (in_flight, limit) = (self.conn.calls_in_flight(), self.call_slots());
        if in_flight < limit || self.conn.incoming_in_flight() > 0 {
            return Ok(());
        }
        self.held = false;
        self.slot_wanted = true;
        Err(Admit::NoSlot { in_flight, limit })
    }

    /// Raises the room edge once a call that was refused a slot may have
    /// one: another call ended.
    pub(super) fn check_slot_freed(&mut self) {
        if self.slot_wanted && self.conn.calls_in_flight() < self.call_slots() {
            self.wake_room_waiters();
        }
    }
}

/// Why [`Link::admit`] refused a command, before each command names it.
pub(super) enum Refused {
    Closed(ConnectionError),
    DeadlinePassed,
    NoRoom { queued: usize, limit: usize },
}

impl From<Refused> for Admit<CallError> {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Closed(e) => Admit::Failed(CallError::Disconnected(e)),
            Refused::DeadlinePassed => Admit::Failed(CallError::DeadlineExceeded),
            Refused::NoRoom { queued, limit } => Admit::NoRoom { queued, limit },
        }
    }
}

impl Refused {
    pub(super) fn into_echo(self, waited: Duration) -> Admit<EchoError> {
        match self {
            Refused::Closed(e) => Admit::Failed(EchoError::Disconnected(e)),
            Refused::DeadlinePassed => Admit::Failed(EchoError::Timeout(waited)),
            Refused::NoRoom { queued, limit } => Admit::NoRoom { queued, limit },
        }
    }
}
