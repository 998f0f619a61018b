//! Drives one [`rigwire_core::Link`] on smol: waits for what the link's
//! interest names (readable, writable, its next instant), does that IO, and
//! feeds the outcome back. Every rule — what may be read, when calls wait for
//! room, when a closed connection gives up on its last frames — is the
//! link's; this file only moves bytes and wakes tasks.
//!
//! Two choices are the runtime's own, both to avoid task hand-offs (a
//! hand-off costs more than the call itself):
//!
//! * **Writes go out from whoever produced them**, as non-blocking writes
//!   under the state lock. What the kernel does not take stays in the link
//!   (counted against its output limit) and the driver task writes it once
//!   the socket is writable — so a caller's future can be dropped at any
//!   point without leaving half a frame on the wire.
//! * **Whoever is waiting reads.** One waiting caller watches the socket and
//!   reads, for itself and the others ([`Watcher`]); each of the others is
//!   woken by its own answer ([`CallWake`]). Reads are non-blocking attempts
//!   under a lock held for the attempt only. The driver task reads only
//!   while no caller is waiting (on the dialing side, only after
//!   [`LINGER`]), and what a watcher no longer polled left.
//! * **Calls made together leave together**: callers woken by answers from
//!   one read write their next calls in one write ([`Shared::write_soon`]).
//!
//! Waiting never spins: a caller refused for room listens for the link's
//! room edge, which fires only when written bytes made room or the
//! connection failed, and otherwise sleeps until its deadline.
//!
//! The state mutex is a plain `std` mutex, never held across an `.await`.

use std::collections::{HashMap, HashSet};
use std::net::Shutdown;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use event_listener::{Event, IntoNotification};
use rigwire_core::link::earliest;
pub(crate) use rigwire_core::link::READ_CHUNK;
use rigwire_core::link::{Admit, Alarm, Job, Link, NoRoomError};
use rigwire_core::Connection;
use rigwire_ws::{Flushed, Wire};
use smol::{future, Task, Timer};

use crate::handler::Handlers;
use crate::peer::Peer;
use crate::transport::Socket;

pub(crate) use rigwire_core::link::LINGER;

// A part of the driver, in a file of its own: what a connection runs for the
// application.
#[path = "jobs.rs"]
mod jobs;

/// Hooks an endpoint runs for each connection.
pub(crate) type Hooks = rigwire_core::link::Hooks<Peer>;

thread_local! {
    /// Each thread's read buffer, shared by every connection it reads.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; READ_CHUNK]);
}

pub(crate) struct State {
    pub(crate) link: Link,
    wire: Wire,
    /// The kernel took nothing last time: wait for the socket to be writable.
    write_blocked: bool,
    /// Handlers still running, by call id (notifies by a key of their own);
    /// dropping one cancels it.
    tasks: HashMap<u64, Task<()>>,
    /// The last key given to a notify's task.
    notify_key: u64,
    /// A waiting caller watches the socket for the others ([`Watcher`]).
    watched: bool,
    /// Reads that brought bytes; the driver task reads what a watcher
    /// that is no longer polled left, when this has not moved.
    reads: u64,
    /// Callers waiting for the answer to a call, by its id: woken one by
    /// one as answers come ([`CallWake`]), not all at every answer.
    call_wakers: HashMap<u64, Waker>,
    /// Calls whose waiters were woken with their answers and have not
    /// taken them yet: those tasks are about to run, and the calls they
    /// make then may leave together ([`Shared::write_soon`]).
    woken: HashSet<u64>,
    /// The link's progress when waiting callers were last woken.
    woken_at: u64,
    /// The driver task's timer. It runs the link's timers, calls' deadlines
    /// among them: a command that makes a sooner one wakes the driver to
    /// move it (`command_then`), so a caller needs no timer of its own.
    alarm: Alarm,
}

/// Everything one connection's tasks share.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes callers: a result arrived, the handshake completed, closed.
    changed: Event,
    /// Wakes one more waiting caller to watch the socket ([`Watcher`]).
    handoff: Event,
    /// Wakes callers waiting for room in the output (the link's edge).
    room: Event,
    /// Wakes the driver: the socket blocked, a caller left, closed.
    driver_wake: Event,
    /// Wakes whoever waits for the connection to end.
    closed: Event,
    /// Held for one non-blocking read and the feeding of what it brought,
    /// so that reads reach the link in order.
    reader: Mutex<()>,
    socket: Arc<Socket>,
    handlers: Arc<Handlers>,
    hooks: Arc<Hooks>,
    /// For logs: where this connection goes or comes from.
    pub(crate) label: String,
    /// The codec of typed calls ([`ProtocolConfig::call_codec`](rigwire_core::ProtocolConfig::call_codec)).
    pub(crate) call_codec: rigwire_core::Codec,
}

impl Shared {
    pub(crate) fn new(
        conn: Connection,
        socket: Arc<Socket>,
        wire: Wire,
        handlers: Arc<Handlers>,
        hooks: Arc<Hooks>,
        label: String,
        linger: Duration,
    ) -> Arc<Shared> {
        let call_codec = conn.config().call_codec;
        let mut link = Link::new(conn);
        link.callers_mut().set_linger(linger);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                link,
                wire,
                write_blocked: false,
                tasks: HashMap::new(),
                notify_key: 0,
                watched: false,
                reads: 0,
                call_wakers: HashMap::new(),
                woken: HashSet::new(),
                woken_at: 0,
                alarm: Alarm::default(),
            }),
            changed: Event::new(),
            handoff: Event::new(),
            room: Event::new(),
            driver_wake: Event::new(),
            closed: Event::new(),
            reader: Mutex::new(()),
            socket,
            handlers,
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
        shared.flush(&mut g); // our Hello
        let jobs = shared.pump(&mut g);
        drop(g);
        shared.finish(jobs);
        shared
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        rigwire_twin::lock(&self.state)
    }

    /// Runs a command on the link, writes what it queued and does what it caused.
    pub(crate) fn command<T>(self: &Arc<Self>, f: impl FnOnce(&mut Link, Instant) -> T) -> T {
        self.command_then(true, f)
    }

    /// Gives up on call `id` ([`Link::cancel`]).
    pub(crate) fn cancel_call(self: &Arc<Self>, id: u64) {
        self.command(|link, _| link.cancel(id));
    }

    /// As [`command`](Self::command); `write` false leaves what it queued
    /// to the next write (see [`write_soon`](Self::write_soon)).
    fn command_then<T>(
        self: &Arc<Self>,
        write: bool,
        f: impl FnOnce(&mut Link, Instant) -> T,
    ) -> T {
        let mut g = self.lock();
        let out = f(&mut g.link, Instant::now());
        // A timer sooner than the driver's (a new call's deadline, say)
        // wakes the driver to move its timer: nobody may wait for the call.
        // (What a read brings is seen by the driver at its next look, or
        // within the linger while a caller reads for it.)
        if g.alarm.is_sooner(g.link.poll_interest().wake_at) {
            self.driver_wake.notify(usize::MAX);
        }
        if write {
            self.flush(&mut g);
        }
        let jobs = self.pump(&mut g);
        drop(g);
        self.finish(jobs);
        out
    }

    /// Writes what the link holds. While other callers woken with their
    /// answers are about to run (a window refilled as answers arrive), it
    /// first lets them: the calls they make meanwhile leave in this one
    /// write. Otherwise (a lone call) it writes at once. Should this task
    /// not be polled again, the last of those callers to take its answer
    /// writes instead ([`WaiterGuard`]).
    pub(crate) async fn write_soon(self: &Arc<Self>) {
        if !self.lock().woken.is_empty() {
            future::yield_now().await;
        }
        self.write_now();
    }

    /// Writes what the link holds, now.
    pub(crate) fn write_now(self: &Arc<Self>) {
        let mut g = self.lock();
        self.flush(&mut g);
        let jobs = self.pump(&mut g);
        drop(g);
        self.finish(jobs);
    }

    /// Runs a command the link admits only while its output has room. When
    /// refused for room, waits for the link's room edge, within `deadline`,
    /// and tries again; the link itself answers with the deadline's error
    /// once it has passed. `wait` false answers `Busy` at once instead.
    /// `write` false leaves the first attempt's frame to be written later
    /// ([`write_soon`](Self::write_soon)); a refusal for room writes at once.
    pub(crate) async fn admit<T, E>(
        self: &Arc<Self>,
        (deadline, write): (Option<Instant>, bool),
        wait: bool,
        mut f: impl FnMut(&mut Link, Instant) -> Result<T, Admit<E>>,
    ) -> Result<T, E>
    where
        E: NoRoomError,
    {
        let mut write = write;
        loop {
            match self.command_then(std::mem::replace(&mut write, true), &mut f) {
                Ok(out) => return Ok(out),
                Err(refused) if wait && refused.waits() => {}
                Err(refusal) => return Err(refusal.into_error()),
            }
            // Listen, then look again: an edge raised in between is not lost.
            let listener = self.room.listen();
            match self.command(&mut f) {
                Ok(out) => return Ok(out),
                Err(refused) if refused.waits() => {}
                Err(refusal) => return Err(refusal.into_error()),
            }
            future::or(listener, sleep_until(deadline)).await;
        }
    }

    /// Writes the link's output until the socket blocks; shuts the socket
    /// once the link is finished.
    fn flush(&self, g: &mut State) {
        if !g.write_blocked {
            let State { link, wire, .. } = g;
            if wire.flush(link, |slices| self.socket.try_write_vectored(slices)) == Flushed::Blocked
            {
                g.write_blocked = true;
                self.driver_wake.notify(usize::MAX);
            }
        }
        if g.link.take_shut_write() {
            self.socket.shutdown(Shutdown::Write);
        }
        if g.link.is_finished() {
            self.socket.shutdown(Shutdown::Both);
        }
    }

    /// Takes the link's jobs (after a [`flush`](Self::flush), so that room
    /// made by the write is seen) and wakes callers waiting for room;
    /// returns the jobs to do with the state released.
    fn pump(&self, g: &mut State) -> Vec<Job> {
        let mut jobs = Vec::new();
        while let Some(job) = g.link.poll_job() {
            match job {
                Job::Cancel(id) => {
                    if g.tasks.remove(&id).is_some() {
                        // Dropping the task dropped the handler's future.
                        g.link.handler_dropped(id);
                        tracing::debug!(peer = %self.label, "call {id} cancelled: its handler stopped");
                    }
                }
                Job::Closed(_) => {
                    g.tasks.clear();
                    jobs.push(job);
                }
                job => jobs.push(job),
            }
        }
        if g.link.take_room_freed() {
            self.room.notify(usize::MAX);
        }
        // Callers are woken when something they may wait for happened, and
        // only then: woken for nothing, they would wake each other in turn.
        let progress = g.link.progress();
        if progress != g.woken_at {
            g.woken_at = progress;
            let State {
                link,
                call_wakers,
                woken,
                ..
            } = g;
            // Exactly the callers whose answers came (all, once closed).
            let mut wake = |(id, waker): (u64, Waker)| {
                woken.insert(id);
                waker.wake();
            };
            if link.is_closed() {
                link.waiters().drain_arrived();
                call_wakers.drain().for_each(&mut wake);
            } else {
                for id in link.waiters().drain_arrived() {
                    if let Some(waker) = call_wakers.remove(&id) {
                        wake((id, waker));
                    }
                }
            }
            self.changed.notify(usize::MAX);
        }
        jobs
    }

    /// Does the work found by `pump` and wakes whoever may proceed.
    fn finish(self: &Arc<Self>, jobs: Vec<Job>) {
        let closing = jobs.iter().any(|j| matches!(j, Job::Closed(_)));
        let calls = jobs.iter().any(|j| matches!(j, Job::Call(_)));
        for job in jobs {
            self.run_job(job);
        }
        if calls {
            // Replies of handlers that finished at once leave in one write.
            let mut g = self.lock();
            self.flush(&mut g);
            let more = self.pump(&mut g);
            drop(g);
            if !more.is_empty() {
                self.finish(more);
            }
        }
        if closing {
            self.driver_wake.notify(usize::MAX);
            self.closed.notify(usize::MAX);
        }
    }

    /// Reads whatever is there now, if the link wants input and nobody
    /// else is reading this instant, and does what it causes. Returns
    /// whether anything was read.
    pub(crate) fn read_now(self: &Arc<Self>) -> bool {
        if !self.lock().link.poll_interest().read {
            return false;
        }
        let Ok(reading) = self.reader.try_lock() else {
            return false;
        };
        let room = {
            let mut g = self.lock();
            let State { link, wire, .. } = &mut *g;
            wire.lend_room(link, READ_CHUNK)
        };
        let fed = match room {
            // The rest of a large frame is read straight into it.
            Some(mut room) => {
                let read = self.socket.try_read(room.buf());
                self.fed(read, |link, wire, read, now| match read {
                    Some(read) => wire.feed_room(link, room, read, now),
                    None => link.return_room(room, 0, now),
                })
            }
            // Other bytes go through this thread's buffer into the link,
            // which keeps what it needs: an idle connection holds none.
            None => READ_BUF.with_borrow_mut(|buf| {
                let read = self.socket.try_read(buf);
                self.fed(read, |link, wire, read, now| {
                    if let Some(read) = read {
                        wire.feed(link, read, buf, now);
                    }
                })
            }),
        };
        drop(reading);
        let Some(mut g) = fed else {
            return false;
        };
        self.flush(&mut g);
        let jobs = self.pump(&mut g);
        drop(g);
        self.finish(jobs);
        true
    }

    /// Hands a read's outcome to `feed` under the lock (`None`: nothing was
    /// there), then runs the timers; returns the lock if bytes (or the end)
    /// came.
    fn fed<'a>(
        &'a self,
        read: std::io::Result<usize>,
        feed: impl FnOnce(&mut Link, &mut Wire, Option<std::io::Result<usize>>, Instant),
    ) -> Option<MutexGuard<'a, State>> {
        let nothing = matches!(&read, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted));
        let now = Instant::now();
        let mut g = self.lock();
        let State { link, wire, .. } = &mut *g;
        if nothing {
            feed(link, wire, None, now);
            return None;
        }
        feed(link, wire, Some(read), now);
        link.handle_timeout(now);
        g.reads += 1;
        Some(g)
    }

    /// Waits until `take` finds what it wants, reading the transport itself
    /// when the link wants input, until `deadline` (then `None`).
    /// `wake_hint` is a moment to look again; the link's timers, calls'
    /// deadlines among them, are the driver task's business (its timer is
    /// moved sooner when a call is made: `command_then`). A wait for the
    /// answer to `call` is woken by that answer, not by every answer.
    /// Cancel-safe.
    ///
    /// One waiter at a time watches the socket and reads ([`Watcher`]);
    /// the others sleep until what it read concerns them. (All watching,
    /// every arrival would wake them all to try a read.) A watcher whose
    /// wait is no longer polled is covered by the driver task, which reads
    /// what nobody has read by its next look ([`LINGER`]). Only a wait's own
    /// moment runs the link's timers, which write: a caller woken for news
    /// must not write out what others left for one write.
    pub(crate) async fn wait_for<T>(
        self: &Arc<Self>,
        (deadline, wake_hint, call): (Option<Instant>, Option<Instant>, Option<u64>),
        mut take: impl FnMut(&mut Link) -> Option<T>,
    ) -> Option<T> {
        let _waiting = match WaiterGuard::enter(self, call, &mut take) {
            Ok(waiting) => waiting,
            Err(found) => return Some(found),
        };
        let mut watcher = None;
        let mut check = |shared: &Self| {
            let mut g = shared.lock();
            if let Some(found) = take(&mut g.link) {
                return Err(Some(found));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(None);
            }
            Ok((earliest(wake_hint, deadline), g.link.poll_interest().read))
        };
        // A read right after our call went out would find nothing yet.
        let mut try_read = false;
        loop {
            let (_, read) = match check(self) {
                Err(done) => return done,
                Ok(found) => found,
            };
            if read && watcher.is_none() {
                watcher = Watcher::take(self);
            }
            if try_read && watcher.is_some() && self.read_now() {
                continue;
            }
            // Listen for news, then look once more before sleeping, so that
            // nothing that arrived in between is missed.
            let listener = call.is_none().then(|| self.changed.listen());
            let handoff = self.handoff.listen();
            let (wake, read) = match check(self) {
                Err(done) => return done,
                Ok(found) => found,
            };
            let watching = read && watcher.is_some();
            let woke = future::or(
                async {
                    if !watching {
                        future::pending::<()>().await;
                    }
                    let _ = self.socket.readable().await;
                    Woke::Readable
                },
                future::or(
                    async {
                        match (listener, call) {
                            (Some(listener), _) => listener.await,
                            (None, Some(id)) => CallWake::new(self, id).await,
                            (None, None) => future::pending().await,
                        }
                        Woke::News
                    },
                    future::or(
                        async {
                            handoff.await;
                            Woke::News
                        },
                        async {
                            sleep_until(wake).await;
                            Woke::Timer
                        },
                    ),
                ),
            )
            .await;
            try_read = match woke {
                Woke::Readable => true,
                Woke::Timer => {
                    self.tick();
                    false
                }
                Woke::News => false,
            };
        }
    }

    /// Lets time pass without reading: expired deadlines resolve, timers fire.
    pub(crate) fn tick(self: &Arc<Self>) {
        self.command(|link, now| link.handle_timeout(now));
    }

    /// The connection's driver task: does what the link's interest names —
    /// reads when no caller is waiting, writes when the socket is writable
    /// again, runs the link's timers — until the link is finished.
    pub(crate) async fn drive(self: Arc<Self>) {
        // The reads counted at the last look while callers were active.
        let mut seen_reads = u64::MAX;
        // One timer for the task's life, moved only to fire sooner
        // (`State::alarm`).
        let mut timer = Timer::never();
        loop {
            let listener = self.driver_wake.listen();
            let (finished, interest, blocked, callers_active, arm, reads) = {
                let mut g = self.lock();
                // While callers read, look again when they may have left.
                let recheck = g.link.callers().active(Instant::now());
                let callers_active = recheck.is_some();
                let interest = g.link.poll_interest();
                let arm = g.alarm.arm(earliest(interest.wake_at, recheck));
                (
                    g.link.is_finished(),
                    interest,
                    g.write_blocked,
                    callers_active,
                    arm,
                    g.reads,
                )
            };
            if let Some(at) = arm {
                timer.set_at(at);
            }
            if finished {
                self.socket.shutdown(Shutdown::Both);
                break;
            }
            let read = interest.read && !callers_active;
            if read && self.read_now() {
                continue;
            }
            let readable = async {
                if !read {
                    future::pending::<()>().await;
                }
                let _ = self.socket.readable().await;
                Wake::Readable
            };
            let writable = async {
                if !(blocked && (interest.write || self.lock().wire.has_own_output())) {
                    future::pending::<()>().await;
                }
                let _ = self.socket.writable().await;
                Wake::Writable
            };
            let other = async {
                future::or(
                    async {
                        listener.await;
                        Wake::Woken
                    },
                    async {
                        (&mut timer).await;
                        Wake::Timer
                    },
                )
                .await
            };
            match future::or(future::or(readable, writable), other).await {
                Wake::Readable => {
                    self.read_now();
                }
                Wake::Writable => {
                    let mut g = self.lock();
                    g.write_blocked = false;
                    self.flush(&mut g);
                    let jobs = self.pump(&mut g);
                    drop(g);
                    self.finish(jobs);
                }
                Wake::Timer => {
                    self.lock().alarm.fired();
                    // Nothing read since the last look while callers wait:
                    // their watcher may be a wait no longer polled.
                    if callers_active && interest.read && reads == seen_reads {
                        self.read_now();
                    }
                    seen_reads = reads;
                    self.tick();
                }
                Wake::Woken => {}
            }
        }
        tracing::debug!(peer = %self.label, "driver finished");
    }

    /// Waits until the connection has closed; returns at once if it has.
    pub(crate) async fn wait_closed(&self) {
        loop {
            let listener = self.closed.listen();
            if self.lock().link.is_closed() {
                return;
            }
            listener.await;
        }
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

    /// Waits until the connection has closed: by the end of its drain's
    /// grace, `until`, a timer of the link's that this wait runs; then its
    /// driver ends once its last frames are out or the link gave up on them.
    pub(crate) async fn wait_closed_by(self: &Arc<Self>, until: Instant) {
        let closed = |link: &mut Link| link.is_closed().then_some(());
        self.wait_for((None, Some(until), None), closed).await;
    }

    /// Closes the transport at once, without a goodbye (as a crash would).
    pub(crate) fn shutdown_transport(&self) {
        self.socket.shutdown(Shutdown::Both);
    }
}

/// What woke the driver.
enum Wake {
    Readable,
    Writable,
    Timer,
    Woken,
}

/// The one caller watching the socket for the others; leaving the role
/// (or the wait, dropped) hands it to another waiting caller.
struct Watcher<'a>(&'a Shared);

impl<'a> Watcher<'a> {
    fn take(shared: &'a Shared) -> Option<Self> {
        let mut g = shared.lock();
        if g.watched {
            return None;
        }
        g.watched = true;
        Some(Watcher(shared))
    }
}

impl Drop for Watcher<'_> {
    fn drop(&mut self) {
        self.0.lock().watched = false;
        self.0.handoff.notify(1.additional());
    }
}

/// Resolves when the answer to call `id` is there or the connection has
/// closed; [`Shared::pump`] wakes it.
struct CallWake<'a> {
    shared: &'a Shared,
    id: u64,
}

impl<'a> CallWake<'a> {
    fn new(shared: &'a Shared, id: u64) -> Self {
        CallWake { shared, id }
    }
}

impl std::future::Future for CallWake<'_> {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut g = self.shared.lock();
        if g.link.is_closed() || g.link.waiters().call_ready(self.id) {
            g.call_wakers.remove(&self.id);
            return Poll::Ready(());
        }
        g.call_wakers.insert(self.id, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for CallWake<'_> {
    fn drop(&mut self) {
        self.shared.lock().call_wakers.remove(&self.id);
    }
}

/// What ended a caller's sleep.
enum Woke {
    /// The socket has data.
    Readable,
    /// Something a caller may wait for happened.
    News,
    /// The wait's own moment came.
    Timer,
}

/// Counts a caller as waiting while it is inside `wait_for`, however it
/// leaves; a caller woken with its answer also leaves the set of those
/// (see [`Shared::write_soon`]).
struct WaiterGuard<'a>(&'a Arc<Shared>, Option<u64>);

impl<'a> WaiterGuard<'a> {
    /// Counts a waiting caller in, unless what it waits for is already
    /// there (`Err`: taken at once).
    fn enter<T>(
        shared: &'a Arc<Shared>,
        call: Option<u64>,
        take: &mut impl FnMut(&mut Link) -> Option<T>,
    ) -> Result<Self, T> {
        let mut g = shared.lock();
        if let Some(found) = take(&mut g.link) {
            return Err(found);
        }
        g.link.callers_mut().enter();
        Ok(WaiterGuard(shared, call))
    }
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        let mut g = self.0.lock();
        if g.link.callers_mut().leave() {
            g.link.callers_mut().all_left(Instant::now());
        }
        let lingers = g.link.callers().lingers();
        // The last caller woken with its answer writes what the others
        // left for one write (see `write_soon`).
        let last_woken = self
            .1
            .is_some_and(|id| g.woken.remove(&id) && g.woken.is_empty());
        drop(g);
        if last_woken {
            self.0.write_now();
        }
        // On the accepting side nobody else reads now.
        if !lingers {
            self.0.driver_wake.notify(usize::MAX);
        }
    }
}

/// Sleeps until `at`, or forever if there is nothing to wait for.
pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => {
            Timer::at(at).await;
        }
        None => future::pending::<()>().await,
    }
}
