//! Drives one [`rigwire_core::Link`] with blocking threads: waits for what
//! the link's interest names, does that IO, feeds the outcome back. Every
//! rule — what may be read, when calls wait for room, when a closed
//! connection gives up on its last frames — is the link's.
//!
//! How the threads are arranged, and why: on small machines waking a
//! sleeping thread costs more than a whole loopback round trip, so the hot
//! path must add no thread hand-off.
//!
//! * **The reader is a token.** The [`Reader`] lives in the state while
//!   nobody reads. A thread waiting for a result takes it and reads its own
//!   reply (leader/follower). The connection's background thread reads
//!   whenever no caller is waiting — on the dialing side only after no caller
//!   has waited for [`LINGER`]. Reads block with a timeout: the link's next
//!   instant, or the reader's own deadline. Nobody reads while the link wants
//!   no input (the peer is not reading our answers).
//! * **Writes never block.** Whoever changed the link writes its output at
//!   once with a non-blocking send, under the state lock, so calls made
//!   back to back leave together. What the kernel does not take stays in the
//!   link, counted against its output limit; the connection's writer thread
//!   (started the first time the socket is full) waits for the socket to
//!   become writable, bounded by the link's next instant, so keepalive and
//!   deadlines still fire while a peer does not read. A caller waiting for
//!   its reply while holding the reader does that wait itself, with the
//!   read (a large call's frame then leaves without a hand-off), and so
//!   does a [`LocalClient`]'s only thread.
//! * **A caller refused for room** waits on a condition variable for the
//!   link's room edge, within its own deadline.
//! * **Short handlers run where the call was read** (see [`crate::handler`]).
//!
//! The state lock is never held across a blocking read, a wait for the
//! socket or a handler.
//!
//! [`LocalClient`]: crate::LocalClient

use std::collections::BTreeMap;
use std::io;
use std::net::Shutdown;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use rigwire_core::framing::FrameRoom;
use rigwire_core::link::earliest;
use rigwire_core::link::{Admit, Job, NoRoomError, PoolShare, READ_CHUNK};
use rigwire_core::{Connection, Link};
use rigwire_ws::{Flushed, Wire};

use crate::handler::Handlers;
use crate::park::Parker;
use crate::peer::Peer;
use crate::pool::Pool;
use crate::sync::{lock, sleep, sleep_until};
use crate::transport::{Reader, Received, Socket};

pub(crate) use rigwire_core::link::LINGER;

// A part of the driver, in a file of its own: what a connection runs for the
// application.
#[path = "jobs.rs"]
mod jobs;

/// Hooks an endpoint runs for each connection.
pub(crate) type Hooks = rigwire_core::link::Hooks<Peer>;

pub(crate) struct State {
    pub(crate) link: Link,
    wire: Wire,
    reader: Option<Reader>,
    /// The kernel took nothing last time: someone waits for it to be writable.
    write_blocked: bool,
    writer_started: bool,
    /// Whether the writer thread sleeps, and until when (`None`: until woken).
    writer_sleeping: Option<Option<Instant>>,
    /// A waiting caller waits for the socket to take more itself (with its
    /// reply's read): the writer thread stands by meanwhile.
    fg_writing: bool,
    /// Threads asleep on `cond`.
    fg_sleepers: usize,
    /// Whether the background thread is asleep on `bg_cond` (waking it
    /// otherwise is a wasted system call on every message).
    bg_sleeping: bool,
    /// The link's progress when sleeping callers were last woken.
    woken_at: u64,
    /// This connection's handlers on the pool: threads held, jobs waiting.
    pool_share: PoolShare<PoolJob>,
    /// A server's connection: its id and the parker that takes it, idle,
    /// from its thread ([`crate::park`]).
    park: Option<(u64, Parker)>,
    /// In the parker's hands: no thread of its own.
    parked: bool,
    /// Who to tell when a call's answer is in, by call id (from the link's
    /// record of arrived answers, kept once a call was watched).
    watches: BTreeMap<u64, Wake>,
    /// Who to tell at the link's next room edge: starts refused for room
    /// by a caller that does not wait ([`try_admit`](Shared::try_admit)).
    room_watches: Vec<Wake>,
}

/// Tells the caller of a call that no thread waits for that its answer is in
/// ([`RawPendingCall::on_ready`](crate::RawPendingCall::on_ready)).
pub(crate) type Wake = Box<dyn FnOnce() + Send>;

/// What a pump found for the application, to do with the state released.
struct Work {
    jobs: Vec<Job>,
    /// Watched calls whose answers are in, and starts refused for room
    /// that may try again.
    wakes: Vec<Wake>,
}

impl Work {
    fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.wakes.is_empty()
    }
}

/// How [`Shared::drive`] ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Driven {
    /// The connection is finished.
    Finished,
    /// The connection is idle and the parker has it: the thread may end.
    Parked,
}

type PoolJob = Box<dyn FnOnce() + Send>;

/// Everything one connection's threads share.
pub(crate) struct Shared {
    /// Itself, for the writer thread it may start.
    me: Weak<Shared>,
    state: Mutex<State>,
    /// Wakes callers: a result or the reader arrived.
    cond: Condvar,
    /// Wakes callers waiting for room in the output (the link's edge).
    room: Condvar,
    /// Wakes the background thread: the reader is free, or the connection closed.
    bg_cond: Condvar,
    /// Wakes the writer thread: the socket blocked, or the connection closed.
    writer_cond: Condvar,
    /// Wakes whoever waits for the connection to close ([`Peer::closed`]).
    closed_cond: Condvar,
    /// For sends, waits and shutdown; never locked.
    socket: Socket,
    handlers: Arc<Handlers>,
    /// Threads for handlers; `None` for a connection with no threads of its own.
    pool: Option<Arc<Pool>>,
    hooks: Arc<Hooks>,
    /// For logs: where this connection goes or comes from.
    pub(crate) label: String,
    /// The codec of typed calls ([`ProtocolConfig::call_codec`](rigwire_core::ProtocolConfig::call_codec)).
    pub(crate) call_codec: rigwire_core::Codec,
}

impl Shared {
    pub(crate) fn new(
        conn: Connection,
        (socket, wire): (Socket, Wire),
        handlers: Arc<Handlers>,
        pool: Option<Arc<Pool>>,
        hooks: Arc<Hooks>,
        label: String,
        linger: Duration,
    ) -> io::Result<Arc<Shared>> {
        let reader = Reader::new(&socket)?;
        let call_codec = conn.config().call_codec;
        let mut link = Link::new(conn);
        link.callers_mut().set_linger(linger);
        let shared = Arc::new_cyclic(|me| Shared {
            me: me.clone(),
            state: Mutex::new(State {
                link,
                wire,
                reader: Some(reader),
                write_blocked: false,
                writer_started: false,
                writer_sleeping: None,
                fg_writing: false,
                fg_sleepers: 0,
                bg_sleeping: false,
                woken_at: 0,
                pool_share: PoolShare::default(),
                park: None,
                parked: false,
                watches: BTreeMap::new(),
                room_watches: Vec::new(),
            }),
            cond: Condvar::new(),
            room: Condvar::new(),
            bg_cond: Condvar::new(),
            writer_cond: Condvar::new(),
            closed_cond: Condvar::new(),
            socket,
            handlers,
            pool,
            hooks,
            label,
            call_codec,
        });
        let mut g = shared.lock();
        {
            // The opening may already have brought the peer's first bytes.
            let State { link, wire, .. } = &mut *g;
            wire.start(link, Instant::now());
        }
        shared.settle(g); // our Hello
        Ok(shared)
    }

    /// Lets `parker` take this connection (server id `id`) from its thread
    /// once it has been idle for [`PARK_AFTER`](rigwire_core::link::PARK_AFTER).
    pub(crate) fn parks_with(&self, id: u64, parker: Parker) {
        self.lock().park = Some((id, parker));
    }

    /// The connection's socket, for the parker to watch.
    pub(crate) fn socket(&self) -> &Socket {
        &self.socket
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Runs a command on the link, writes what it queued and does what it caused.
    pub(crate) fn command<T>(self: &Arc<Self>, f: impl FnOnce(&mut Link, Instant) -> T) -> T {
        let mut g = self.lock();
        let out = f(&mut g.link, Instant::now());
        self.settle(g);
        out
    }

    /// Runs a command the link admits only while its output has room. Its
    /// deadline is fixed at `now` (when the command was made), from
    /// `timeout` (or the configured default),
    /// and handed to `f`. When refused for room, waits for the link's room
    /// edge within that deadline and tries again; the link answers with the
    /// deadline's error once it has passed. `wait` false answers `Busy` at
    /// once instead.
    pub(crate) fn admit<T, E: NoRoomError>(
        self: &Arc<Self>,
        (timeout, now): (Option<Duration>, Instant),
        wait: bool,
        mut f: impl FnMut(&mut Link, Option<Instant>, Instant) -> Result<T, Admit<E>>,
    ) -> Result<T, E> {
        let mut g = self.lock();
        let deadline = g.link.deadline(timeout, now);
        let mut now = Some(now);
        let out = loop {
            let at = now.take().unwrap_or_else(Instant::now);
            match f(&mut g.link, deadline, at) {
                Err(refused) if wait && refused.waits() => {}
                other => break other,
            }
            g = self.wait_room(g, deadline);
        };
        self.settle(g);
        out.map_err(Admit::into_error)
    }

    /// A caller refused for room (or a slot) waits for the link's room
    /// edge, or `deadline`. Out of line: the hot path of a call never
    /// takes it.
    #[cold]
    #[inline(never)]
    fn wait_room<'a>(
        self: &'a Arc<Self>,
        mut g: MutexGuard<'a, State>,
        deadline: Option<Instant>,
    ) -> MutexGuard<'a, State> {
        let seen = g.link.room_edges();
        // Room comes only from writing: what the link held back (a batch,
        // released by the refusal) goes out before the wait.
        self.flush(&mut g);
        if self.pool.is_some() {
            // The edge is raised under this lock, so none is missed
            // between the refusal and the wait.
            return sleep(&self.room, g, deadline);
        }
        // No thread of ours reads or writes: this caller does, until the
        // edge (a slot frees only as answers are read).
        drop(g);
        self.wait_for(deadline, |link| (link.room_edges() != seen).then_some(()));
        self.lock()
    }

    /// [`admit`](Self::admit) for a caller that never waits (an event
    /// loop): one try, its deadline fixed at `made`. Refused for room (or
    /// a slot), it answers `None`, and `on_room` is called at the link's
    /// next room edge (room or a slot freed, or the connection failed): try
    /// again then, with the same `made`. The deadline is the caller's to
    /// keep; a try after it is refused with the deadline's error.
    pub(crate) fn try_admit<T, E>(
        self: &Arc<Self>,
        (timeout, made): (Option<Duration>, Instant),
        on_room: Wake,
        f: impl FnOnce(&mut Link, Option<Instant>, Instant) -> Result<T, Admit<E>>,
    ) -> Result<Option<T>, E> {
        let mut g = self.lock();
        let deadline = g.link.deadline(timeout, made);
        let out = match f(&mut g.link, deadline, Instant::now()) {
            Ok(done) => Ok(Some(done)),
            Err(Admit::Failed(e)) => Err(e),
            Err(_) => {
                // The edge is raised under this lock: none is missed.
                g.room_watches.push(on_room);
                Ok(None)
            }
        };
        self.settle(g);
        out
    }

    /// Runs `f` with the link's output held back ([`Link::hold_output`]),
    /// then writes what it queued at once: calls started back to back leave
    /// in one system call.
    pub(crate) fn corked<T>(self: &Arc<Self>, f: impl FnOnce() -> T) -> T {
        /// Releases the output and writes it when the batch ends, even by a panic.
        struct Release<'a>(&'a Arc<Shared>);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.command(|link, _| link.release_output());
            }
        }
        self.lock().link.hold_output();
        let _release = Release(self);
        f()
    }

    /// Pumps ([`pump`](Self::pump)), then does the jobs with the state released.
    fn settle(self: &Arc<Self>, mut g: MutexGuard<'_, State>) {
        let work = self.pump(&mut g);
        drop(g);
        self.run_work(work, false);
    }

    /// Writes the link's output until the socket blocks, takes the link's
    /// jobs and the watches of calls answered, wakes whoever may proceed;
    /// returns that work, to do with the state released.
    fn pump(&self, g: &mut State) -> Work {
        self.flush(g);
        let mut jobs = Vec::new();
        while let Some(job) = g.link.poll_job() {
            match job {
                // A cancelled handler learns it from `CallContext::is_cancelled`.
                Job::Cancel(_) => {}
                Job::Closed(_) => {
                    self.closed_cond.notify_all();
                    jobs.push(job);
                }
                job => jobs.push(job),
            }
        }
        let mut wakes = Vec::new();
        if g.link.take_room_freed() {
            self.room.notify_all();
            wakes.append(&mut g.room_watches);
        }
        if g.link.waiters().records_arrivals() {
            let State { link, watches, .. } = g;
            let arrived = link.waiters().drain_arrived();
            wakes.extend(arrived.filter_map(|id| watches.remove(&id)));
        }
        self.wake(g, false);
        Work { jobs, wakes }
    }

    /// Does what a pump found: tells the watchers of answered calls, then
    /// runs the jobs ([`run_jobs`](Self::run_jobs)).
    fn run_work(self: &Arc<Self>, work: Work, on_reading_thread: bool) {
        for wake in work.wakes {
            wake();
        }
        self.run_jobs(work.jobs, on_reading_thread);
    }

    /// Calls `wake` once the answer to call `id` is in: at once (here, with
    /// the state released) if it is, else on the thread that routes it.
    pub(crate) fn watch(&self, id: u64, wake: Wake) {
        let mut g = self.lock();
        if g.link.waiters().call_ready(id) {
            drop(g);
            return wake();
        }
        if !g.link.waiters().records_arrivals() {
            // The record starts with this look; every pump empties it.
            g.link.waiters().drain_arrived();
        }
        g.watches.insert(id, wake);
        // Its deadline is kept by the writer thread, woken if it sleeps
        // past it (a read in progress may end later). One waiting for a
        // full socket looks again only by `SOCKET_RECHECK`: the background
        // thread, if it idles (the link wants no input), keeps it then.
        let due = g.link.poll_interest().wake_at;
        match g.writer_sleeping {
            _ if !g.writer_started => self.start_writer(&mut g),
            Some(until) if due.is_some_and(|d| until.is_none_or(|u| d < u)) => {
                self.writer_cond.notify_one();
            }
            None if g.bg_sleeping => self.bg_cond.notify_one(),
            _ => {}
        }
    }

    /// Gives up on call `id` ([`Link::cancel`]); whoever watched it is not told.
    pub(crate) fn cancel_call(self: &Arc<Self>, id: u64) {
        let mut g = self.lock();
        g.watches.remove(&id);
        g.link.cancel(id);
        self.settle(g);
    }

    /// Non-blocking writes of the link's output; when the socket is full,
    /// hands the wait for it to the writer thread. Shuts the socket once
    /// the link is finished.
    fn flush(&self, g: &mut State) {
        if !g.write_blocked {
            let State { link, wire, .. } = g;
            match wire.flush(link, |slices| self.socket.try_send(slices)) {
                Flushed::Done => {}
                Flushed::Blocked => {
                    g.write_blocked = true;
                    self.start_writer(g);
                }
                Flushed::Failed => tracing::debug!(peer = %self.label, "write failed"),
            }
        }
        if g.link.take_shut_write() {
            self.socket.shutdown(Shutdown::Write);
        }
        if g.link.is_finished() {
            self.socket.shutdown(Shutdown::Both);
        }
    }

    /// Makes sure someone waits for the socket to become writable (or
    /// keeps the deadlines of watched calls): the writer thread (started on
    /// first need), or — with no threads of our own — the caller's own wait.
    fn start_writer(&self, g: &mut State) {
        if self.pool.is_none() || g.writer_started {
            return; // woken by `wake`
        }
        g.writer_started = true;
        let Some(shared) = self.me.upgrade() else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("rigwire-writer".into())
            .spawn(move || shared.write_loop());
        if let Err(e) = spawned {
            tracing::error!(peer = %self.label, "cannot start a writer thread: {e}");
            g.link
                .handle_write_failed("no thread to wait for the socket");
        }
    }

    /// The writer thread: while the socket is full, waits for it to be
    /// writable (bounded by the link's next instant, whose timers it runs),
    /// then writes; ends with the link. While the socket takes what comes,
    /// it sleeps; by the link's next instant while calls are watched
    /// ([`watch`](Self::watch)), whose deadlines nobody waiting for them
    /// keeps: a read in progress wakes by the instant it began with.
    fn write_loop(self: Arc<Self>) {
        let mut g = self.lock();
        loop {
            // Its work ends with the last frames (`flush` shuts the writing
            // side); the ending is the reader's.
            if g.link.is_written_out() {
                break;
            }
            if !g.write_blocked || g.fg_writing {
                let until = match g.watches.is_empty() {
                    true => None,
                    false => g.link.poll_interest().wake_at,
                };
                g.writer_sleeping = Some(until);
                g = sleep(&self.writer_cond, g, until);
                g.writer_sleeping = None;
                if until.is_some() {
                    g.link.handle_timeout(Instant::now());
                    self.settle(g);
                    g = self.lock();
                }
                continue;
            }
            let wake_at = g.link.poll_interest().socket_wait_until(Instant::now());
            drop(g);
            let ready = self.socket.wait(false, true, Some(wake_at));
            g = self.lock();
            if !matches!(ready, Ok((_, false))) {
                g.write_blocked = false;
            }
            g.link.handle_timeout(Instant::now());
            self.settle(g);
            g = self.lock();
        }
    }

    /// Waits until `take` finds what it wants, reading the transport itself
    /// whenever nobody else is and the link wants input, until `deadline`.
    pub(crate) fn wait_for<T>(
        self: &Arc<Self>,
        deadline: Option<Instant>,
        mut take: impl FnMut(&mut Link) -> Option<T>,
    ) -> Option<T> {
        // Dropped after the state's guard: it takes the lock itself.
        let _lent = self.lend_thread();
        let mut g = self.lock();
        g.link.callers_mut().enter();
        let found = loop {
            if let Some(found) = take(&mut g.link) {
                break Some(found);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break None;
            }
            let read = g.reader.is_some() && g.link.wants_input();
            // With the socket full, a caller holding the reader waits for it
            // to take more (and for its reply) itself: handing the writes to
            // the writer thread would cost a wake-up each way.
            g = if g.write_blocked && g.reader.is_some() {
                self.socket_step(g, deadline)
            } else if read {
                self.read_step(g, deadline)
            } else {
                self.idle_step(g, deadline, false)
            };
        };
        if g.link.callers_mut().leave() {
            g.link.callers_mut().all_left(Instant::now());
        }
        // The reader may be free now for another caller or the background thread.
        self.wake(&mut g, true);
        found
    }

    /// Wakes whoever may now proceed: sleeping callers when a result came
    /// (or the reader was handed back, `reader_back`), the background thread
    /// when the connection closed or, on the accepting side, when it may read
    /// again, and the writer thread when the socket blocked or the connection
    /// closed. Nobody is woken for nothing: sleepers woken for nothing would
    /// wake each other in turn.
    fn wake(&self, g: &mut State, reader_back: bool) {
        let progress = g.link.progress();
        if g.fg_sleepers > 0 && (reader_back || progress != g.woken_at) {
            self.cond.notify_all();
        }
        g.woken_at = progress;
        let closed = g.link.is_closed();
        if g.bg_sleeping {
            let callers = g.link.callers();
            let reader_free_on_server = callers.waiting() == 0
                && !callers.lingers()
                && g.reader.is_some()
                && g.link.wants_input();
            if closed || reader_free_on_server {
                self.bg_cond.notify_one();
            }
        }
        if g.writer_sleeping.is_some() && ((g.write_blocked && !g.fg_writing) || closed) {
            self.writer_cond.notify_one();
        }
        if let (true, Some((id, parker))) = (g.parked, &g.park) {
            // A command changed a parked link: the parker looks by its next
            // timer (now, if it closed).
            let at = match closed {
                true => Some(Instant::now()),
                false => g.link.poll_interest().wake_at,
            };
            if let Some(at) = at {
                parker.poke(*id, at);
            }
        }
    }

    /// The connection's background thread: reads whenever no caller is
    /// reading and the link wants input, until the connection closes.
    /// `inline` jobs run here.
    pub(crate) fn drive(self: &Arc<Self>) -> Driven {
        let mut g = self.lock();
        loop {
            // Closing always happens inside a step, which has already run the
            // resulting work (the disconnect hook among it). What is left to
            // write is the writer thread's; reading goes on, discarding, until
            // the peer ends its side or the link's close linger ends.
            if g.link.is_finished() {
                break;
            }
            let now = Instant::now();
            // While callers read, look again when they may have left.
            let recheck = g.link.callers().active(now);
            let callers_active = recheck.is_some();
            let read = g.reader.is_some() && g.link.wants_input();
            let mut park_at = self.parkable(&g).then(|| g.link.park_at()).flatten();
            if park_at.is_some_and(|at| at <= now) {
                if self.park(&mut g) {
                    return Driven::Parked;
                }
                park_at = None; // refused (the server is stopping)
            }
            g = if !callers_active && g.write_blocked && g.reader.is_some() {
                // Waits for the socket to take more, reading meanwhile if
                // the link wants input: no hand-off to the writer thread.
                self.socket_step(g, None)
            } else if read && !callers_active {
                self.read_step(g, park_at)
            } else {
                self.idle_step(g, recheck, true)
            };
        }
        self.settle(g);
        Driven::Finished
    }

    /// Whether this server connection could be parked as far as our own
    /// threads go (none busy with it, no call of ours watched nor start
    /// waiting for room: the parker tells nobody); the link says whether it
    /// is idle.
    fn parkable(&self, g: &State) -> bool {
        g.park.is_some()
            && g.link.callers().waiting() == 0
            && g.watches.is_empty()
            && g.room_watches.is_empty()
            && !g.write_blocked
            && g.pool_share.is_idle()
            && g.reader.is_some()
    }

    /// Hands the connection to the parker (its thread may then end);
    /// `false` if the parker would not take it.
    fn park(self: &Arc<Self>, g: &mut State) -> bool {
        let Some((id, parker)) = g.park.clone() else {
            return false;
        };
        g.parked = parker.park(id, self, g.link.poll_interest().wake_at);
        set_aside(g);
        g.parked
    }

    /// The parker's look at this parked connection: reads what arrived (if
    /// `readable`) and runs due timers, writes what that queued (a pong, a
    /// ping); if the connection is still quiet, `repark` takes it again
    /// (with its next timer) and this returns `true`. Otherwise it needs a
    /// thread: [`resume`](Self::resume).
    pub(crate) fn parked_step(
        self: &Arc<Self>,
        readable: bool,
        repark: impl FnOnce(Option<Instant>) -> bool,
    ) -> bool {
        let mut g = self.lock();
        if readable {
            self.read_ready(&mut g);
        }
        g.link.handle_timeout(Instant::now());
        self.flush(&mut g);
        let idle = self.parkable(&g) && g.link.is_idle();
        g.parked = idle && repark(g.link.poll_interest().wake_at);
        set_aside(&mut g);
        g.parked
    }

    /// Reads what the socket holds now, without waiting, if nobody else
    /// is reading: an end of stream that sat unread (nobody reads in the
    /// linger after a call) closes the link before a call is written to a
    /// connection that is gone.
    pub(crate) fn read_pending(self: &Arc<Self>) {
        let mut g = self.lock();
        if !g.parked && g.link.wants_input() && self.read_ready(&mut g) {
            self.settle(g);
        }
    }

    /// One read that does not wait, fed to the link; whether bytes (or the
    /// end) arrived. None while another thread holds the reader.
    fn read_ready(&self, g: &mut State) -> bool {
        let Some(mut reader) = g.reader.take() else {
            return false;
        };
        let received = reader.try_read();
        let arrived = !matches!(received, Received::TimedOut);
        if arrived {
            self.feed(g, &received, &reader, None);
        }
        g.reader = Some(reader);
        arrived
    }

    /// A thread again for a connection the parker had: does the work its
    /// link queued meanwhile, then drives it.
    pub(crate) fn resume(self: &Arc<Self>) -> Driven {
        let mut g = self.lock();
        g.parked = false;
        self.settle(g);
        self.drive()
    }

    /// Holds the reader: one read bounded by the link's next instant and
    /// `deadline`, then feeds the link, writes and does the resulting work
    /// with the state released.
    fn read_step<'a>(
        self: &'a Arc<Self>,
        mut g: MutexGuard<'a, State>,
        deadline: Option<Instant>,
    ) -> MutexGuard<'a, State> {
        let mut reader = g.reader.take().expect("caller checked the reader is here");
        let wake = earliest(g.link.poll_interest().wake_at, deadline);
        // The rest of a large frame is read straight into it.
        let mut room = {
            let State { link, wire, .. } = &mut *g;
            wire.lend_room(link, READ_CHUNK)
        };
        drop(g);
        let received = reader.read(wake, room.as_mut().map(FrameRoom::buf));
        let mut g = self.lock();
        self.feed(&mut g, &received, &reader, room);
        g.reader = Some(reader);
        self.wake(&mut g, true);
        let work = self.pump(&mut g);
        drop(g);
        let calls = work.jobs.iter().any(|j| matches!(j, Job::Call(_)));
        self.run_work(work, true);
        let mut g = self.lock();
        if calls {
            // The replies of handlers that ran inline, in one write.
            self.settle(g);
            g = self.lock();
        }
        g
    }

    /// Feeds the outcome of one read to the link (into the frame's `room`,
    /// if it was read there), then its timers.
    fn feed(&self, g: &mut State, received: &Received, reader: &Reader, room: Option<FrameRoom>) {
        let now = Instant::now();
        let State { link, wire, .. } = g;
        let read = match received {
            Received::Data(n) => Some(Ok(*n)),
            Received::TimedOut => None,
            Received::Failed(e) => Some(Err(io::Error::new(e.kind(), e.to_string()))),
        };
        match (room, read) {
            (Some(room), Some(read)) => wire.feed_room(link, room, read, now),
            (Some(room), None) => link.return_room(room, 0, now),
            (None, Some(read)) => wire.feed(link, read, reader.buf(), now),
            (None, None) => {}
        }
        link.handle_timeout(now);
    }

    /// With no threads of our own and the socket full: waits for it to be
    /// writable (and readable, if the link wants input) within `deadline`.
    fn socket_step<'a>(
        self: &'a Arc<Self>,
        g: MutexGuard<'a, State>,
        deadline: Option<Instant>,
    ) -> MutexGuard<'a, State> {
        let interest = g.link.poll_interest();
        let read = interest.read && g.reader.is_some();
        let wake = earliest(Some(interest.socket_wait_until(Instant::now())), deadline);
        let mut g = g;
        g.fg_writing = true;
        drop(g);
        let ready = self.socket.wait(read, true, wake);
        let mut g = self.lock();
        g.fg_writing = false;
        if !matches!(ready, Ok((_, false))) {
            g.write_blocked = false;
        }
        // Data is there: this read returns at once; unless another caller,
        // woken with this one, took the reader while the lock was free.
        if read && matches!(ready, Ok((true, _))) && g.reader.is_some() {
            return self.read_step(g, deadline);
        }
        g.link.handle_timeout(Instant::now());
        self.settle(g);
        self.lock()
    }

    /// Sleeps until woken or a timer is due (someone else holds the reader,
    /// the link wants no input, or the background thread keeps off it).
    fn idle_step<'a>(
        self: &'a Arc<Self>,
        mut g: MutexGuard<'a, State>,
        deadline: Option<Instant>,
        background: bool,
    ) -> MutexGuard<'a, State> {
        let wake = earliest(g.link.poll_interest().wake_at, deadline);
        let cond = if background {
            &self.bg_cond
        } else {
            &self.cond
        };
        if background {
            g.bg_sleeping = true;
        } else {
            g.fg_sleepers += 1;
        }
        let mut g = sleep(cond, g, wake);
        if background {
            g.bg_sleeping = false;
        } else {
            g.fg_sleepers -= 1;
        }
        g.link.handle_timeout(Instant::now());
        let work = self.pump(&mut g);
        if work.is_empty() {
            return g;
        }
        drop(g);
        self.run_work(work, false);
        self.lock()
    }

    /// Blocks until the connection has closed (at once if it has); reads
    /// nothing itself, so it takes no part in the connection's traffic.
    pub(crate) fn wait_closed(&self) {
        drop(sleep_until(&self.closed_cond, self.lock(), None, |s| {
            s.link.is_closed()
        }));
    }

    /// Tells the peer to go within `grace` ([`Link::drain`]: calls in
    /// progress may finish, new ones are answered `Shutdown`, then
    /// `goodbye`); a closed connection needs no telling.
    pub(crate) fn drain(self: &Arc<Self>, grace: Duration, goodbye: &str) {
        self.command(|link, now| {
            if !link.is_closed() {
                link.drain(grace, goodbye, now);
            }
        });
    }

    /// Waits until the connection has finished: closed, its last frames
    /// out or given up on. Runs its timers meanwhile (the grace of a
    /// drain, the close linger), so it does not depend on the connection's
    /// own thread, which may be blocked on a socket a deaf peer does not
    /// drain (it looks again only every `SOCKET_RECHECK`). Finishing shuts
    /// the socket, which wakes that thread.
    pub(crate) fn wait_finished(self: &Arc<Self>) {
        self.wait_for(None, |link| link.is_finished().then_some(()));
    }

    /// Lets time pass without reading: expired deadlines resolve, timers fire.
    pub(crate) fn tick(self: &Arc<Self>) {
        self.command(|link, now| link.handle_timeout(now));
    }

    /// Closes the transport at once; never waits for anything.
    pub(crate) fn shutdown_transport(&self) {
        self.socket.shutdown(Shutdown::Both);
    }
}

/// A parked connection gives back the buffers its traffic grew (its read
/// buffer, its output block); it takes small ones again when it next reads
/// or writes.
fn set_aside(g: &mut State) {
    if g.parked {
        if let Some(reader) = &mut g.reader {
            reader.shrink();
        }
        g.link.release_idle_buffers();
    }
}
