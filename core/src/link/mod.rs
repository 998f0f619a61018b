//! One connection as a runtime drives it: the [`Connection`] plus everything
//! a runtime would otherwise decide for itself, so that every runtime (and
//! every binding built on one) decides it the same way.
//!
//! A [`Link`] owns:
//!
//! * the output between the protocol and the socket, with its accounting:
//!   bytes count as queued until the runtime reports them written
//!   ([`handle_written`](Link::handle_written)), so backpressure measures
//!   what really has not left;
//! * **call admission that never blocks**: a call whose frame fits under the
//!   queued-output limit enters the call table at once, whether or not the
//!   socket is writable. Over the limit the link says "no room"
//!   ([`Admit::NoRoom`]) and later raises a *room freed* edge
//!   ([`take_room_freed`](Link::take_room_freed)) once written bytes brought
//!   the output back under the limit, or the connection failed. A call
//!   beyond the calls the peer takes at once (its `max_incoming_calls`, which
//!   it would answer `Busy`) waits the same way for one to end
//!   ([`Admit::NoSlot`]), unless the peer has calls of its own in progress
//!   here (one may wait for this very call: waiting would deadlock). A call's deadline runs from the moment it was
//!   first made, so a caller that waits for room waits within it;
//! * the routing of answers, echoes and pongs to their waiters
//!   ([`Waiters`]), and who reads for them: the callers waiting, and the
//!   linger after the last left ([`Callers`]);
//! * the queue of work for the application ([`poll_job`](Link::poll_job)):
//!   handlers to start, cancels of running ones, hooks to run. A call the
//!   peer cancels before its handler was handed out never starts;
//! * **IO interest**: [`poll_interest`](Link::poll_interest) says whether to
//!   read, whether to write and when to wake. A runtime reads only when told
//!   (the peer is not reading our answers: stop reading its requests),
//!   writes only when told, and sleeps until `wake_at`;
//! * the end of a connection, gracefully: after it closes, its last frames
//!   (a goodbye or a reject saying why) leave; then the link is
//!   [written out](Link::is_written_out) and the runtime shuts down its
//!   writing side; it keeps reading, and discarding, until the peer ends its
//!   side; then the link is [`finished`](Link::is_finished) and the runtime
//!   closes the socket. The whole ending takes at most [`CLOSE_LINGER`].
//!
//! # Call order
//!
//! As for [`Connection`]: after every input or command, take the jobs
//! ([`poll_job`](Link::poll_job)) and the room edge, write what
//! [`output`](Link::output) holds if the interest says so, then wait for what
//! [`poll_interest`](Link::poll_interest) names. The link is the only queue
//! to look at: [`output`](Link::output) takes what the connection encoded
//! when it is asked for (so frames made between two writes leave as one
//! slice), and the interest and the accounting count both. Once the link is
//! closed: shut the transport's writing side
//! when [`take_shut_write`](Link::take_shut_write) says so, keep reading while the
//! interest says so, and close the socket when
//! [`is_finished`](Link::is_finished).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::Payload;
use crate::connection::{Connection, PeerInfo};
use crate::error::{CallError, ConnectionError, EchoError, RemoteError, ReplyError};
use crate::event::{Event, IncomingCall, IncomingNotify};
use crate::id_map::IdMap;
use crate::message::ErrorKind;

mod accept;
pub mod admission;
mod admit;
mod callers;
pub mod lobby;
mod outbox;
mod parked;
pub mod reconnect;
mod settings;
mod setup;
pub use accept::{AcceptFailures, AcceptPause};
pub use admission::{Admission, Admitted, Refusal, Ticket};
pub use admit::{Admit, NoRoomError};
pub use callers::{Alarm, Callers, Lend, PoolHolders, PoolShare, Stuck, MAX_LENT_THREADS};
pub use lobby::{Leaving, Lobby};
pub use outbox::Outbox;
pub use parked::Parked;
pub use reconnect::{is_permanent, Reconnect, Redial, SharedConnection, Want};
pub(crate) use settings::listening_warnings;
pub use settings::{after, earliest, Config, Connecting, Hooks, Waiters};
pub use setup::{ServerSetup, ServiceSetup};

/// How long a closed connection's last frames may take to leave before the
/// runtime closes the socket anyway: a peer that never reads does not keep
/// a connection (and its thread or task) forever.
pub const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// The longest a runtime's thread waits on a socket before it looks at the
/// link again, whatever the link's timers say: a command run by another
/// thread (a close, a drain) may set an earlier timer meanwhile, and a
/// thread blocked in the system's poll cannot be told. Without it, a
/// thread waiting to write to a peer that never reads, on a connection
/// with no timer (keepalive off), waited for good after its link closed.
pub const SOCKET_RECHECK: Duration = CLOSE_LINGER;

/// How long a runtime's stop waits for a connection's thread to end once its
/// link has finished. Past it the thread is running a handler that has not
/// returned (hung on its hardware, deaf to its cancel), and the stop leaves
/// it running rather than wait for good. Longer than [`SOCKET_RECHECK`], the
/// longest such a thread waits on a socket before it sees its link finished.
pub const THREAD_END_WAIT: Duration = Duration::from_secs(2);

/// How long after a caller last waited a client's background reader keeps
/// off the socket, so that a script's back-to-back calls each read their own
/// reply instead of having it handed across threads or tasks. Servers do not
/// linger: their callers are the exception.
pub const LINGER: Duration = Duration::from_millis(20);

/// Bytes a runtime reads per system call.
pub const READ_CHUNK: usize = 64 * 1024;

/// How long a handler may run on after its call was given up on before it
/// counts as stuck ([`Link::stuck_handlers`]): longer than a handler that
/// ignores its cancellation but is merely slow takes to finish the work in
/// hand, short enough that calls queued behind hung ones are refused
/// (`Busy`, saying why) within a second, not left to wait out their
/// deadlines.
pub const STUCK_AFTER: Duration = Duration::from_secs(1);

/// What a service that dials out tells its relay when it shuts down
/// gracefully (the reason of its [`Link::drain`]).
pub const SERVICE_GOODBYE: &str = "the service is shutting down";

/// How long a server's connection must have been [idle](Link::is_idle)
/// before a runtime that gives each connection a thread may park it: give
/// the thread back, and watch the socket and the link's timers from one
/// shared poller until the peer speaks (or a timer needs more than a ping).
/// A connection that is quiet for less keeps its thread, so traffic with
/// gaps shorter than this pays no hand-off; the first message after a
/// longer silence pays one thread start.
pub const PARK_AFTER: Duration = Duration::from_secs(1);

/// How long a loop waiting on the system (an accept loop, the parker) pauses
/// after a failure it cannot act on (out of file descriptors, say) before it
/// tries again: without the pause it would spin, logging.
pub const RETRY_AFTER: Duration = Duration::from_millis(10);

/// What the runtime should wait for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    /// Read from the transport when it is readable.
    pub read: bool,
    /// Write [`Link::output`] when the transport is writable.
    pub write: bool,
    /// Call [`Link::handle_timeout`] at this instant, if nothing happens first.
    pub wake_at: Option<Instant>,
}

impl Interest {
    /// Until when a thread blocked on the socket may wait, from `now`:
    /// [`wake_at`](Self::wake_at), but never past [`SOCKET_RECHECK`] (a
    /// timer another thread sets meanwhile cannot reach it there).
    pub fn socket_wait_until(&self, now: Instant) -> Instant {
        let recheck = after(now, SOCKET_RECHECK);
        self.wake_at.map_or(recheck, |at| at.min(recheck))
    }
}

/// Work the application does outside the link, in the order it arose.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Job {
    /// A server's peer has proven the secret ([`Link::set_ticket`] gates
    /// admission there): admit it ([`Link::admit_peer`]) or refuse it
    /// ([`Link::reject`]) before the handshake completes.
    Admit,
    /// The handshake completed.
    Connected,
    /// Start this call's handler; answer with [`Link::reply`].
    Call(IncomingCall),
    /// Run this notify's handler.
    Notify(IncomingNotify),
    /// The peer cancelled a call whose handler was started (or its deadline
    /// passed): the handler may stop, and its reply will be dropped.
    Cancel(u64),
    /// A confirmed message from the peer (already echoed).
    Message(Bytes),
    /// The peer reported an error not tied to a call (a notify it could
    /// not take). Each distinct report comes once per connection: a rig
    /// that broadcasts events to a script that does not listen for them
    /// hears so once, not once per event.
    PeerError(RemoteError),
    /// The connection closed; the last job.
    Closed(ConnectionError),
}

/// One connection with its output, waiters, jobs and interest: the whole of
/// what a runtime needs to drive it. See the [module docs](self).
#[derive(Debug)]
pub struct Link {
    conn: Connection,
    waiters: Waiters,
    callers: Callers,
    jobs: VecDeque<Job>,
    /// Incoming calls whose handler was handed out and has not replied;
    /// true once it started on a pool ([`start_handler`](Self::start_handler)).
    running: IdMap<bool>,
    /// Of those, the ones no longer wanted, with when they stopped being.
    cancelled: BTreeMap<u64, Instant>,
    /// Bytes taken from the connection and not yet written, in order.
    unsent: Outbox,
    /// Writing failed: nothing more will be written; reading reports the end.
    write_failed: Option<String>,
    /// The smallest command refused for room, waiting for the edge.
    room_wanted: Option<usize>,
    /// A call was refused a slot ([`Admit::NoSlot`]), waiting for the edge.
    slot_wanted: bool,
    /// The output is held back ([`Link::hold_output`]).
    held: bool,
    room_freed: bool,
    /// Room edges raised so far ([`room_edges`](Link::room_edges)).
    room_edges: u64,
    /// When a closed connection stops waiting for its last frames to leave.
    close_by: Option<Instant>,
    /// The transport reported its end (or the link gave up on it).
    transport_done: bool,
    /// [`take_shut_write`](Link::take_shut_write) has said so.
    write_shut: bool,
    /// Counts what waiting callers may be waiting for; see [`progress`](Link::progress).
    progress: u64,
    /// A graceful shutdown in progress: until when calls may finish, and
    /// the reason the peer is told.
    drain: Option<(Instant, String)>,
    /// A server's admission ticket.
    ticket: Option<crate::link::Ticket>,
    /// The application heard it established: authenticated and, on a
    /// server, admitted (`on_connect` ran; `on_disconnect` will).
    admitted: bool,
    /// The block the handshake's frames were encoded into is still kept.
    handshake_block: bool,
    /// When work for the application was last queued or running, or an
    /// answer last arrived ([`park_at`](Link::park_at)); keepalive traffic
    /// does not count.
    active_at: Option<Instant>,
    /// The peer's reports passed on as [`Job::PeerError`], by kind and
    /// message (at most [`REPORTS_KEPT`]).
    reported: Vec<(ErrorKind, String)>,
}

/// Distinct peer reports a link remembers, so as to pass each on once;
/// past that, reports pass on unremembered (a peer choosing the messages
/// must not grow the link).
const REPORTS_KEPT: usize = 64;

impl Link {
    /// Wraps a new connection (its `Hello` is already queued).
    pub fn new(conn: Connection) -> Link {
        let mut link = Link {
            conn,
            waiters: Waiters::default(),
            callers: Callers::default(),
            jobs: VecDeque::new(),
            running: IdMap::default(),
            cancelled: BTreeMap::new(),
            unsent: Outbox::default(),
            write_failed: None,
            room_wanted: None,
            slot_wanted: false,
            held: false,
            room_freed: false,
            room_edges: 0,
            close_by: None,
            transport_done: false,
            write_shut: false,
            progress: 0,
            drain: None,
            ticket: None,
            admitted: false,
            handshake_block: true,
            active_at: None,
            reported: Vec::new(),
        };
        link.settle();
        link
    }

    // ----- getters -----

    /// The connection, for its getters.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The connection, for commands the link does not wrap (`registry_mut`).
    /// Call [`settle`](Self::settle) after changing anything that produces
    /// output or events.
    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Results waiting for their callers.
    pub fn waiters(&mut self) -> &mut Waiters {
        &mut self.waiters
    }

    /// The callers waiting on this connection, who read for it.
    pub fn callers(&self) -> &Callers {
        &self.callers
    }

    /// The callers, to count one in or out.
    pub fn callers_mut(&mut self) -> &mut Callers {
        &mut self.callers
    }

    /// What the peer announced, once its `Hello` was accepted.
    pub fn peer(&self) -> Option<&PeerInfo> {
        self.conn.peer()
    }

    /// The name the peer announced in its handshake; empty before it.
    pub fn peer_name(&self) -> String {
        self.conn.peer_name()
    }

    /// Whether the handshake completed and the connection is not closed.
    pub fn is_connected(&self) -> bool {
        self.waiters.connected() && !self.conn.is_closed()
    }

    /// Whether the connection is closed (its last frames may still be leaving).
    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    /// Why the connection closed, as the application sees it; `None` while open.
    pub fn close_reason(&self) -> Option<crate::Error> {
        self.conn.error().cloned().map(crate::Error::from)
    }

    /// What a wait for the connection to close returns: its close reason, or
    /// `Disconnected(TransportClosed("closed"))` if it holds none (it is still
    /// open, or closed without an error).
    pub fn closed_error(&self) -> crate::Error {
        self.close_reason().unwrap_or_else(|| {
            crate::Error::Disconnected(crate::ConnectionError::TransportClosed("closed".into()))
        })
    }

    /// How a wait for the handshake ends: `Ok` once it completed, the
    /// connection's error once it closed, `None` meanwhile; a wait that runs
    /// out is told by [`Connecting::handshake_outcome`].
    pub fn handshake_outcome(&self) -> Option<Result<(), crate::Error>> {
        match self.close_reason() {
            Some(err) => Some(Err(err)),
            None => self.waiters.connected().then_some(Ok(())),
        }
    }

    /// The round trip of ping `seq` once its pong came, or the connection's
    /// error once it closed (the ping is then forgotten); `None` meanwhile.
    pub fn ping_outcome(&mut self, seq: u64) -> Option<Result<Duration, crate::Error>> {
        if let Some(rtt) = self.waiters.take_pong(seq) {
            return Some(Ok(rtt));
        }
        let err = self.close_reason()?;
        self.waiters.forget_pong(seq);
        Some(Err(err))
    }

    /// Closed, and its last frames are out (or given up on): shut down the
    /// transport's writing side now, so the peer reads them and then the end
    /// of the stream. Keep reading (and discarding) until
    /// [`is_finished`](Self::is_finished): closing a socket with unread input
    /// resets it, and a reset can destroy the last frames before the peer
    /// reads them (a `Reject` saying why it was refused).
    pub fn is_written_out(&self) -> bool {
        self.conn.is_closed()
            && (self.unwritten() == 0 || self.write_failed.is_some() || self.transport_done)
    }

    /// True once, when the link becomes [written out](Self::is_written_out):
    /// shut down the transport's writing side now.
    pub fn take_shut_write(&mut self) -> bool {
        let now = !self.write_shut && self.is_written_out();
        self.write_shut |= now;
        now
    }

    /// Closed, and the transport is done with: the peer ended its side (or
    /// it failed), or [`CLOSE_LINGER`] passed since the close. Close the
    /// socket.
    pub fn is_finished(&self) -> bool {
        self.conn.is_closed() && self.transport_done
    }

    /// Bytes queued for the transport and not yet written, counting calls
    /// made before the handshake completed.
    pub fn queued_output(&self) -> usize {
        self.unwritten() + self.conn.queued_before_handshake()
    }

    /// Bytes encoded and not yet written: taken by [`output`](Self::output)
    /// or still in the connection.
    fn unwritten(&self) -> usize {
        self.unsent.bytes() + self.conn.queued_output()
    }

    /// A count that moves whenever something a waiting caller may be
    /// waiting for happened: a result was routed to [`waiters`](Self::waiters),
    /// the handshake completed, the connection closed. Wake waiting callers
    /// when it moved, and only then: waking them for nothing makes them
    /// wake each other in turn.
    pub fn progress(&self) -> u64 {
        self.progress
    }

    /// Whether the handler of incoming call `id` should stop: the peer
    /// cancelled it, its deadline passed or the connection closed.
    pub fn is_cancelled(&self, id: u64) -> bool {
        self.cancelled.contains_key(&id)
    }

    /// Whether the handler answering incoming call `id` may stop: its
    /// caller cancelled it, its `deadline` has passed at `now`, or the
    /// connection closed (nobody is left to read the answer).
    pub fn answer_unwanted(&self, id: u64, deadline: Option<Instant>, now: Instant) -> bool {
        deadline.is_some_and(|d| now >= d) || self.is_cancelled(id) || self.is_closed()
    }

    /// Whether a deadline-less wait on this link could last forever: without
    /// keepalive a silent peer is never detected.
    pub fn has_liveness(&self) -> bool {
        self.conn.config().keepalive.is_some()
    }

    /// The deadline of a command made now with `timeout`, or with the
    /// configured default when `timeout` is `None`.
    pub fn deadline(&self, timeout: Option<Duration>, now: Instant) -> Option<Instant> {
        self.conn.config().call_deadline(timeout, now)
    }

    // ----- outputs -----

    /// Whether to read from the transport: `poll_interest().read`, without
    /// computing the rest.
    pub fn wants_input(&self) -> bool {
        if self.conn.is_closed() {
            // Read, and discard, until the peer ends its side.
            return !self.transport_done;
        }
        !self.transport_done && self.unwritten() <= self.conn.config().max_queued_output
    }

    /// What to wait for next; see [`Interest`].
    pub fn poll_interest(&self) -> Interest {
        let held = self.held && !self.conn.is_closed();
        let writable = !held && self.unwritten() > 0 && self.write_failed.is_none();
        if self.conn.is_closed() {
            return Interest {
                read: !self.transport_done,
                write: writable && !self.transport_done,
                wake_at: if self.is_finished() {
                    None
                } else {
                    self.close_by
                },
            };
        }
        let drain_until = self.drain.as_ref().map(|(until, _)| *until);
        Interest {
            read: self.wants_input(),
            write: writable,
            wake_at: earliest(self.conn.poll_timeout(), drain_until),
        }
    }

    /// The bytes to write, in order: on byte streams any prefix may be
    /// written; on message transports each chunk is one frame. Report what
    /// left with [`handle_written`](Self::handle_written). Frames are taken
    /// from the connection here, when they are about to be written, not as
    /// each is made: on a byte stream the frames made since the last write
    /// are one chunk (one slice of a vectored write, not one each).
    pub fn output(&mut self) -> &VecDeque<Bytes> {
        /// What a held output shows.
        static HELD: VecDeque<Bytes> = VecDeque::new();
        if self.held && !self.conn.is_closed() {
            return &HELD;
        }
        self.unsent.fill(&mut self.conn);
        self.unsent.chunks()
    }

    /// Holds the output back until [`release_output`](Self::release_output):
    /// commands made meanwhile leave together, in one write. A command
    /// refused for room releases it (room comes only from writing), and a
    /// closed connection's output is never held.
    pub fn hold_output(&mut self) {
        self.held = true;
    }

    /// Ends [`hold_output`](Self::hold_output): write the output now.
    pub fn release_output(&mut self) {
        self.held = false;
    }

    /// How many handlers started on a pool ([`start_handler`](Self::start_handler))
    /// still run, at `now`, calls given up on (by the caller, a deadline or
    /// the connection's end, which cancels them) at least [`STUCK_AFTER`]
    /// earlier: each holds its thread until it returns, and nothing says it
    /// will ([`PoolShare::stuck`], [`PoolHolders::stuck`]).
    pub fn stuck_handlers(&self, now: Instant) -> usize {
        self.cancelled
            .iter()
            .filter(|&(&id, &at)| {
                now.saturating_duration_since(at) >= STUCK_AFTER
                    && self.running.get(id) == Some(&true)
            })
            .count()
    }

    /// The next job for the application.
    pub fn poll_job(&mut self) -> Option<Job> {
        let job = self.jobs.pop_front()?;
        if let Job::Call(call) = &job {
            self.running.insert(call.id, false);
        }
        Some(job)
    }

    /// Whether room was freed (or the connection failed) since a command
    /// was refused with [`Admit::NoRoom`], or a call ended since one was
    /// refused with [`Admit::NoSlot`]: wake every caller waiting for room.
    /// True once per edge.
    pub fn take_room_freed(&mut self) -> bool {
        std::mem::take(&mut self.room_freed)
    }

    /// How many room edges were raised so far: a caller refused for room
    /// with no other thread to wake it drives the connection itself until
    /// this changes.
    pub fn room_edges(&self) -> u64 {
        self.room_edges
    }

    // ----- inputs -----

    /// Bytes read from a byte stream.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        self.conn.handle_input(bytes, now);
        self.settle();
    }

    /// Lends out the rest of a large frame being received, when the link
    /// wants input ([`Connection::lend_room`]): read it straight into the
    /// room, then [`return_room`](Self::return_room).
    pub fn lend_room(&mut self, min: usize) -> Option<crate::framing::FrameRoom> {
        if !self.wants_input() {
            return None;
        }
        self.conn.lend_room(min)
    }

    /// Gives back a lent room with `n` bytes read into it
    /// ([`Connection::return_room`]).
    pub fn return_room(&mut self, room: crate::framing::FrameRoom, n: usize, now: Instant) {
        self.conn.return_room(room, n, now);
        self.settle();
    }

    /// One frame from a message transport.
    pub fn handle_frame(&mut self, frame: Bytes, now: Instant) {
        self.conn.handle_frame(frame, now);
        self.settle();
    }

    /// A message transport dropped a frame of `len` bytes over its limit
    /// ([`Connection::handle_oversized_frame`]).
    pub fn handle_oversized_frame(&mut self, len: u64, now: Instant) {
        self.conn.handle_oversized_frame(len, now);
        self.settle();
    }

    /// The transport saw the peer break the protocol below the frames
    /// ([`Connection::handle_protocol_violation`]).
    pub fn handle_protocol_violation(&mut self, reason: &str, now: Instant) {
        self.conn.handle_protocol_violation(reason, now);
        self.settle();
    }

    /// Time passed: deadlines, keepalive, the close linger. Extra calls are
    /// harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.conn.handle_timeout(now);
        self.settle();
        if self.close_by.is_some_and(|t| now >= t) {
            // The peer did not take our last frames, or did not end its
            // side, in time: give up on it.
            self.transport_done = true;
            self.unsent.clear();
        }
    }

    /// The transport ended (end of stream, or a read error saying why).
    /// A write failure seen earlier is the better reason, and is used.
    pub fn handle_transport_closed(&mut self, reason: &str, now: Instant) {
        self.transport_done = true;
        let reason = self
            .write_failed
            .clone()
            .unwrap_or_else(|| reason.to_owned());
        self.conn.handle_transport_closed(&reason, now);
        self.settle();
    }

    /// The transport's TLS failed (or one side spoke TLS and the other did
    /// not): the connection ends with that problem, and so does the transport.
    pub fn handle_tls_failure(&mut self, problem: crate::tls::TlsProblem, now: Instant) {
        self.transport_done = true;
        self.conn.handle_tls_failure(problem, now);
        self.settle();
    }

    /// `n` bytes from the front of [`output`](Self::output) were written. On
    /// message transports report whole frames only.
    pub fn handle_written(&mut self, n: usize) {
        self.unsent.consume(n);
        if self.handshake_block && self.unwritten() == 0 && self.conn.is_established() {
            // The handshake's frames have left: most connections then idle,
            // and need not keep the block they were encoded into.
            self.handshake_block = false;
            self.conn.release_idle_buffers();
        }
        if let Some(len) = self.room_wanted {
            if self.fits(len) {
                self.wake_room_waiters();
            }
        }
    }

    /// Writing failed: nothing more is written. The connection ends when the
    /// reader reaches the end of the stream (the peer's last frames, saying
    /// why, may still be unread), or at once if it is already closed.
    pub fn handle_write_failed(&mut self, reason: &str) {
        if self.write_failed.is_none() {
            self.write_failed = Some(format!("write failed: {reason}"));
        }
        self.unsent.clear();
        self.wake_room_waiters();
    }

    // ----- commands -----

    /// Calls `method` on the peer, with `deadline` fixed when the caller
    /// first asked (see [`deadline`](Self::deadline)). The answer is routed
    /// to [`Waiters::take_call`].
    ///
    /// # Errors
    /// [`Admit::NoRoom`] while the output is over its limit (unless the
    /// output is empty: a frame larger than the limit still goes, alone);
    /// [`Admit::NoSlot`] while as many calls await an answer as the peer
    /// takes at once (or our `max_outgoing_calls`); `Failed` with
    /// `DeadlineExceeded` if `deadline` has passed, or what
    /// [`Connection::call`] refuses.
    pub fn call(
        &mut self,
        method: &str,
        args: Payload,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Result<u64, Admit<CallError>> {
        self.admit(method.len() + args.bytes.len(), deadline, now)?;
        self.admit_call()?;
        let timeout = deadline.map(|d| d.saturating_duration_since(now));
        let id = self
            .conn
            .call(method, args, timeout, now)
            .map_err(Admit::Failed)?;
        self.waiters.expect_call(id);
        self.settle();
        Ok(id)
    }

    /// Sends a one-way notification, admitted like a call.
    ///
    /// # Errors
    /// As [`call`](Self::call).
    pub fn notify(
        &mut self,
        method: &str,
        args: Payload,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Result<(), Admit<CallError>> {
        self.admit(method.len() + args.bytes.len(), deadline, now)?;
        self.conn.notify(method, args, now).map_err(Admit::Failed)?;
        self.settle();
        Ok(())
    }

    /// Sends `payload` for the peer to echo; the outcome is routed to
    /// [`Waiters::take_confirm`].
    ///
    /// # Errors
    /// As [`call`](Self::call), with echo errors.
    pub fn confirmed_send(
        &mut self,
        payload: Bytes,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Result<u64, Admit<EchoError>> {
        let echo_timeout = self.conn.config().echo_timeout;
        self.admit(payload.len(), deadline, now)
            .map_err(|r| r.into_echo(echo_timeout))?;
        let seq = self
            .conn
            .confirmed_send(payload, now)
            .map_err(Admit::Failed)?;
        self.waiters.expect_confirm(seq);
        self.settle();
        Ok(seq)
    }

    /// Sends a ping; its round trip is routed to [`Waiters::take_pong`].
    /// Pings are small and never wait for room.
    ///
    /// # Errors
    /// `Disconnected`, or `Busy` when too many pings await their pong.
    pub fn ping(&mut self, now: Instant) -> Result<u64, CallError> {
        let seq = self.conn.ping(now)?;
        self.waiters.expect_pong(seq);
        self.settle();
        Ok(seq)
    }

    /// Gives up on our call `id` (the peer is sent `Cancel`); nobody waits
    /// for it any more.
    pub fn cancel(&mut self, id: u64) -> bool {
        self.waiters.forget_call(id);
        let was = self.conn.cancel(id);
        self.settle();
        was
    }

    /// Answers incoming call `id`; its handler is done. Replies are never
    /// refused for room: their number is bounded by the incoming-call limit.
    /// A call whose deadline has passed gets no answer (spec §6.1), even if
    /// no timer has run since to take it out of the table; `clock` gives the
    /// time, and is read only for a call that has a deadline.
    ///
    /// # Errors
    /// As [`Connection::reply`]; `NotPending` for a cancelled or expired
    /// call is harmless.
    pub fn reply(
        &mut self,
        id: u64,
        result: Result<Payload, RemoteError>,
        clock: impl FnOnce() -> Instant,
    ) -> Result<(), ReplyError> {
        self.running.remove(id);
        if self.cancelled.remove(&id).is_some() {
            // A cancelled call's handler finished: its slot is free now, and
            // its answer goes nowhere.
            self.conn.abandoned = self.conn.abandoned.saturating_sub(1);
            return Err(ReplyError::NotPending(id));
        }
        if self.conn.expire_if_due(id, clock) {
            return Err(ReplyError::NotPending(id));
        }
        let out = self.conn.reply(id, result);
        self.settle();
        out
    }

    /// Whether the handler of incoming call `id` (taken with
    /// [`poll_job`](Self::poll_job)) should start now. A handler that had to
    /// wait (for a thread of a pool, behind the connection's other handlers)
    /// may no longer be wanted: its caller cancelled it, its `deadline`
    /// passed at `now`, or the connection closed. Such a call is dropped
    /// here, its slot freed at once, and its handler must not run: else
    /// handlers nobody waits for would hold the pool, each to its end, and
    /// keep every later call waiting behind them.
    pub fn start_handler(&mut self, id: u64, deadline: Option<Instant>, now: Instant) -> bool {
        if !self.answer_unwanted(id, deadline, now) && self.conn.is_incoming(id) {
            if let Some(started) = self.running.get_mut(id) {
                *started = true;
            }
            return true;
        }
        self.handler_dropped(id);
        self.conn.expire_if_due(id, || now);
        false
    }

    /// The handler of incoming call `id` stopped without replying (it was
    /// cancelled and dropped): nothing is tracked for it any more.
    pub fn handler_dropped(&mut self, id: u64) {
        self.running.remove(id);
        if self.cancelled.remove(&id).is_some() {
            self.conn.abandoned = self.conn.abandoned.saturating_sub(1);
        }
    }

    /// A notify's handler finished (or was dropped): its place under the
    /// incoming limit is free again.
    pub fn notify_done(&mut self) {
        self.conn.notify_finished();
    }

    /// Closes with a goodbye; pending calls fail with `Disconnected`.
    pub fn close(&mut self, reason: &str, now: Instant) {
        self.conn.handle_timeout(now);
        self.conn.close(reason);
        self.settle_at(now);
    }

    /// Closes gracefully: pending incoming calls are answered `Shutdown`.
    pub fn shutdown(&mut self, reason: &str, now: Instant) {
        self.conn.handle_timeout(now);
        self.conn.shutdown(reason);
        self.settle_at(now);
    }

    /// Shuts down gracefully: calls already running may finish for up to
    /// `grace`; calls that arrive meanwhile are answered `Shutdown` at once;
    /// then (or as soon as none is running) the connection closes as with
    /// [`shutdown`](Self::shutdown). The grace is a timer in
    /// [`poll_interest`](Self::poll_interest): nothing polls for it.
    pub fn drain(&mut self, grace: Duration, reason: &str, now: Instant) {
        let until = after(now, grace);
        self.drain = Some((until, reason.to_owned()));
        self.conn.handle_timeout(now);
        self.settle_at(now);
    }

    /// Records this connection's place in a server's [`Admission`].
    pub fn set_ticket(&mut self, ticket: Ticket) {
        self.ticket = Some(ticket);
        // With a secret, admission is decided before our proof goes out
        // (`Job::Admit`): a peer refused then learns it in the handshake.
        self.conn.gate_admission();
    }

    /// Admits the peer a [`Job::Admit`] asked about
    /// ([`set_admitted`](Self::set_admitted) too): our proof goes out and
    /// the handshake completes.
    pub fn admit_peer(&mut self, now: Instant) {
        self.admitted = true;
        self.conn.handle_timeout(now);
        self.conn.admit();
        self.settle_at(now);
    }

    /// This connection's admission ticket, if a server gave it one.
    pub fn ticket(&self) -> Option<Ticket> {
        self.ticket
    }

    /// The application heard this connection established: authenticated
    /// and, on a server, admitted (its ticket then counts against the
    /// connection limit until released). Its `on_connect` hook runs, and
    /// so will its `on_disconnect`: a connection that never got this far
    /// (a failed handshake, a refusal) runs neither.
    pub fn set_admitted(&mut self) {
        self.admitted = true;
    }

    /// Whether [`set_admitted`](Self::set_admitted) was called.
    pub fn is_admitted(&self) -> bool {
        self.admitted
    }

    /// Whether nothing is under way: authenticated and open, no frame half
    /// received, no work for the application queued or running, no output
    /// left to write, no shutdown in progress. Calls of ours still waiting
    /// for answers do not count: their answers and deadlines arrive as input
    /// and timers. An idle connection may be parked ([`PARK_AFTER`]).
    pub fn is_idle(&self) -> bool {
        self.is_connected()
            && self.conn.buffered_input() == 0
            && self.jobs.is_empty()
            && self.running.is_empty()
            && self.queued_output() == 0
            && self.drain.is_none()
    }

    /// When this link may be parked: [`PARK_AFTER`] after work for the
    /// application or an answer last came, while it is
    /// [idle](Self::is_idle); `None` while it is not.
    pub fn park_at(&self) -> Option<Instant> {
        if !self.is_idle() {
            return None;
        }
        self.active_at?.checked_add(PARK_AFTER)
    }

    /// Gives back buffers an idle connection does not need
    /// ([`Connection::release_idle_buffers`]); for a runtime parking it.
    pub fn release_idle_buffers(&mut self) {
        self.conn.release_idle_buffers();
    }

    /// Whether a graceful shutdown ([`drain`](Self::drain)) is under way.
    pub fn is_draining(&self) -> bool {
        self.drain.is_some()
    }

    /// Refuses the connection with a reason the peer is sent.
    pub fn reject(&mut self, code: crate::message::RejectCode, reason: &str, now: Instant) {
        self.conn.handle_timeout(now);
        self.conn.reject(code, reason);
        self.settle_at(now);
    }

    /// A server's refusal of its peer, as far as the handshake has got
    /// ([`Connection::refuse`]): a `Reject` in it, a goodbye after.
    pub fn refuse(&mut self, refusal: &Refusal, now: Instant) {
        self.conn.handle_timeout(now);
        self.conn.refuse(refusal.code, &refusal.reason);
        self.settle_at(now);
    }

    /// Closes the connection, evicted from the handshake budget to make room
    /// for a newcomer ([`Admitted::evicted`]), telling the peer why.
    pub fn evict(&mut self, now: Instant) {
        self.conn.handle_timeout(now);
        Admission::evict(&mut self.conn);
        self.settle_at(now);
    }

    /// Takes the connection's output and events into the link. Inputs and
    /// commands do this themselves; call it after using
    /// [`conn_mut`](Self::conn_mut).
    pub fn settle(&mut self) {
        let now = self.conn_now();
        self.settle_at(now);
    }

    // ----- internals -----

    /// The latest instant the connection has seen (it never goes back).
    fn conn_now(&self) -> Instant {
        self.conn.now
    }

    fn settle_at(&mut self, now: Instant) {
        let progress = self.progress;
        loop {
            if self.write_failed.is_some() || self.transport_done {
                self.unsent.fill(&mut self.conn);
                self.unsent.clear(); // nobody will read these
            }
            let mut again = false;
            while let Some(event) = self.conn.poll_event() {
                let Some(event) = self.waiters.route(event) else {
                    self.progress += 1; // a result for a waiter
                    continue;
                };
                match event {
                    Event::Connected { .. } => {
                        self.progress += 1;
                        self.jobs.push_back(Job::Connected);
                    }
                    Event::AdmissionWanted => {
                        self.progress += 1;
                        self.jobs.push_back(Job::Admit);
                    }
                    Event::Call(call) => match &self.drain {
                        Some((_, reason)) => {
                            let err = RemoteError::new(ErrorKind::Shutdown, reason.as_str());
                            let _ = self.conn.reply(call.id, Err(err));
                            again = true;
                        }
                        // The id of a cancelled call whose handler still
                        // runs: its late answer must not reach this one.
                        None if self.cancelled.contains_key(&call.id) => {
                            let err = RemoteError::new(
                                ErrorKind::Busy,
                                format!(
                                    "call id {} is still in use by a cancelled call's handler",
                                    call.id
                                ),
                            );
                            let _ = self.conn.reply(call.id, Err(err));
                            again = true;
                        }
                        None => self.jobs.push_back(Job::Call(call)),
                    },
                    Event::Notify(n) => self.jobs.push_back(Job::Notify(n)),
                    Event::Cancelled { id, .. } => self.on_cancelled(id, now),
                    Event::Message { payload, .. } => self.jobs.push_back(Job::Message(payload)),
                    Event::PeerError(err) => self.on_peer_error(err),
                    Event::Closed(err) => {
                        self.progress += 1;
                        self.drain = None;
                        self.close_by = now.checked_add(CLOSE_LINGER);
                        self.wake_room_waiters();
                        self.jobs.push_back(Job::Closed(err));
                    }
                    _ => {}
                }
            }
            again |= self.check_drain(now);
            if !again {
                self.check_slot_freed();
                if self.progress != progress || !self.jobs.is_empty() || !self.running.is_empty() {
                    self.active_at = Some(now);
                }
                return;
            }
        }
    }

    /// During a drain: once no call from before it is pending, or the
    /// grace is over, the connection shuts down. Returns whether it did.
    fn check_drain(&mut self, now: Instant) -> bool {
        let Some((until, reason)) = &self.drain else {
            return false;
        };
        if self.conn.incoming_in_flight() > 0 && now < *until {
            return false;
        }
        let reason = reason.clone();
        self.drain = None;
        self.conn.shutdown(&reason);
        true
    }

    /// A peer's report not tied to a call: passed on unless this one was already.
    fn on_peer_error(&mut self, err: RemoteError) {
        let key = (err.kind, err.message.clone());
        if self.reported.contains(&key) {
            return;
        }
        if self.reported.len() < REPORTS_KEPT {
            self.reported.push(key);
        }
        self.jobs.push_back(Job::PeerError(err));
    }

    /// A call no longer wanted: never started if its job is still queued,
    /// else its running handler is told.
    fn on_cancelled(&mut self, id: u64, now: Instant) {
        let queued = self
            .jobs
            .iter()
            .position(|j| matches!(j, Job::Call(c) if c.id == id));
        if let Some(at) = queued {
            self.jobs.remove(at);
        } else if self.running.contains_key(id) && !self.cancelled.contains_key(&id) {
            self.cancelled.insert(id, now);
            // Its handler still runs: the slot stays taken until it ends.
            self.conn.abandoned += 1;
            self.jobs.push_back(Job::Cancel(id));
        }
    }
}
