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
//! * **Whoever is waiting reads.** A call waiting for its answer reads its own
//!   reply when the link wants input. Reads are non-blocking attempts under a
//!   lock held for the attempt only. The driver task reads only while no
//!   caller is waiting (on the dialing side, only after [`LINGER`]).
//!
//! Waiting never spins: a caller refused for room listens for the link's
//! room edge, which fires only when written bytes made room or the
//! connection failed, and otherwise sleeps until its deadline.
//!
//! The state mutex is a plain `std` mutex, never held across an `.await`.

use std::collections::HashMap;
use std::net::Shutdown;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use event_listener::Event;
use rigwire_core::link::earliest;
pub(crate) use rigwire_core::link::READ_CHUNK;
use rigwire_core::link::{Admit, Job, Link, NoRoomError};
use rigwire_core::{Connection, IncomingCall, Payload, RemoteError};
use rigwire_ws::{Flushed, Wire, WsCodec};
use smol::{future, Task, Timer};

use crate::handler::{CallContext, Handlers};
use crate::peer::Peer;
use crate::transport::Socket;

pub(crate) use rigwire_core::link::LINGER;

/// Hooks an endpoint runs for each connection.
pub(crate) type Hooks = rigwire_core::link::Hooks<Peer>;

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
    fg_waiters: usize,
    fg_last: Option<Instant>,
    /// The link's progress when waiting callers were last woken.
    woken_at: u64,
}

/// Everything one connection's tasks share.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes callers: a result arrived, the handshake completed, closed.
    changed: Event,
    /// Wakes callers waiting for room in the output (the link's edge).
    room: Event,
    /// Wakes the driver: the socket blocked, a caller left, closed.
    driver_wake: Event,
    /// Wakes whoever waits for the connection to end.
    closed: Event,
    /// The read buffer; locked only for one non-blocking read.
    reader: Mutex<Vec<u8>>,
    socket: Arc<Socket>,
    handlers: Arc<Handlers>,
    hooks: Arc<Hooks>,
    linger: std::time::Duration,
    /// For logs: where this connection goes or comes from.
    pub(crate) label: String,
}

impl Shared {
    pub(crate) fn new(
        conn: Connection,
        socket: Arc<Socket>,
        ws: Option<WsCodec>,
        handlers: Arc<Handlers>,
        hooks: Arc<Hooks>,
        label: String,
        linger: std::time::Duration,
    ) -> Arc<Shared> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                link: Link::new(conn),
                wire: Wire::new(ws),
                write_blocked: false,
                tasks: HashMap::new(),
                notify_key: 0,
                fg_waiters: 0,
                fg_last: None,
                woken_at: 0,
            }),
            changed: Event::new(),
            room: Event::new(),
            driver_wake: Event::new(),
            closed: Event::new(),
            reader: Mutex::new(vec![0; READ_CHUNK]),
            socket,
            handlers,
            hooks,
            linger,
            label,
        });
        let mut g = shared.lock();
        if g.wire.is_ws() {
            // The upgrade may already have buffered the peer's first frames.
            let State { link, wire, .. } = &mut *g;
            wire.feed(link, Ok(0), &[], Instant::now());
        }
        let jobs = shared.pump(&mut g); // our Hello
        drop(g);
        shared.finish(jobs);
        shared
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a command on the link, writes what it queued and does what it caused.
    pub(crate) fn command<T>(self: &Arc<Self>, f: impl FnOnce(&mut Link, Instant) -> T) -> T {
        let mut g = self.lock();
        let out = f(&mut g.link, Instant::now());
        let jobs = self.pump(&mut g);
        drop(g);
        self.finish(jobs);
        out
    }

    /// Runs a command the link admits only while its output has room. When
    /// refused for room, waits for the link's room edge, within `deadline`,
    /// and tries again; the link itself answers with the deadline's error
    /// once it has passed. `wait` false answers `Busy` at once instead.
    pub(crate) async fn admit<T, E>(
        self: &Arc<Self>,
        deadline: Option<Instant>,
        wait: bool,
        mut f: impl FnMut(&mut Link, Instant) -> Result<T, Admit<E>>,
    ) -> Result<T, E>
    where
        E: NoRoomError,
    {
        loop {
            match self.command(&mut f) {
                Ok(out) => return Ok(out),
                Err(Admit::NoRoom { .. }) if wait => {}
                Err(refusal) => return Err(refusal.into_error()),
            }
            // Listen, then look again: an edge raised in between is not lost.
            let listener = self.room.listen();
            match self.command(&mut f) {
                Ok(out) => return Ok(out),
                Err(Admit::NoRoom { .. }) => {}
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

    /// Writes the output, takes the link's jobs and wakes callers waiting
    /// for room; returns the jobs to do with the state released.
    fn pump(&self, g: &mut State) -> Vec<Job> {
        self.flush(g);
        let mut jobs = Vec::new();
        while let Some(job) = g.link.poll_job() {
            match job {
                Job::Cancel(id) => {
                    if g.tasks.remove(&id).is_some() {
                        // Dropping the task dropped the handler's future.
                        g.link.handler_dropped(id);
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
    fn read_now(self: &Arc<Self>) -> bool {
        if !self.lock().link.poll_interest().read {
            return false;
        }
        let Ok(mut buf) = self.reader.try_lock() else {
            return false;
        };
        let read = self.socket.try_read(&mut buf);
        if matches!(&read, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted))
        {
            return false;
        }
        let now = Instant::now();
        let mut g = self.lock();
        let State { link, wire, .. } = &mut *g;
        wire.feed(link, read, &buf, now);
        link.handle_timeout(now);
        drop(buf);
        let jobs = self.pump(&mut g);
        drop(g);
        self.finish(jobs);
        true
    }

    /// Waits until `take` finds what it wants, reading the transport itself
    /// when the link wants input, until `deadline` (then `None`).
    /// `wake_hint` is a moment to look again (a call's own deadline); the
    /// link's other timers are the driver task's business. Cancel-safe.
    pub(crate) async fn wait_for<T>(
        self: &Arc<Self>,
        deadline: Option<Instant>,
        wake_hint: Option<Instant>,
        mut take: impl FnMut(&mut Link) -> Option<T>,
    ) -> Option<T> {
        let _waiting = WaiterGuard::enter(self);
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
        loop {
            if let Err(done) = check(self) {
                return done;
            }
            if self.read_now() {
                continue;
            }
            // Nothing to read: listen for news, then look once more before
            // sleeping so that nothing that arrived in between is missed.
            let listener = self.changed.listen();
            let (wake, read) = match check(self) {
                Err(done) => return done,
                Ok(found) => found,
            };
            let readable = future::or(
                async {
                    if !read {
                        future::pending::<()>().await;
                    }
                    let _ = self.socket.readable().await;
                    true
                },
                async {
                    future::or(listener, sleep_until(wake)).await;
                    false
                },
            )
            .await;
            if !readable {
                self.tick();
            }
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
        loop {
            let listener = self.driver_wake.listen();
            let (finished, interest, blocked, callers_active, recheck) = {
                let g = self.lock();
                let now = Instant::now();
                let linger_until = g.fg_last.map(|t| t + self.linger).filter(|t| *t > now);
                let callers_active = g.fg_waiters > 0 || linger_until.is_some();
                // While callers are active, look again when the linger ends:
                // a client's caller may leave without waking us.
                let recheck = callers_active.then(|| linger_until.unwrap_or(now + LINGER));
                (
                    g.link.is_finished(),
                    g.link.poll_interest(),
                    g.write_blocked,
                    callers_active,
                    recheck,
                )
            };
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
                        sleep_until(earliest(interest.wake_at, recheck)).await;
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
                    let jobs = self.pump(&mut g);
                    drop(g);
                    self.finish(jobs);
                }
                Wake::Timer => self.tick(),
                Wake::Woken => {}
            }
        }
        tracing::debug!(peer = %self.label, "driver finished");
    }

    fn run_job(self: &Arc<Self>, job: Job) {
        let peer = || Peer::new(Arc::clone(self));
        match job {
            Job::Call(call) => self.start_call(call),
            Job::Notify(n) => {
                let ctx = CallContext {
                    peer: peer(),
                    method: n.method,
                    deadline: None,
                    id: 0,
                };
                let method = ctx.method.clone();
                let fut = self.handlers.call(n.handler, ctx, n.args);
                let shared = Arc::clone(self);
                let mut g = self.lock();
                // Kept with the calls' tasks, so that it is dropped (and its
                // place freed) when the connection ends.
                g.notify_key = g.notify_key.wrapping_add(1);
                let key = NOTIFY_KEYS | g.notify_key;
                let task = smol::spawn(async move {
                    if let Err(e) = fut.await {
                        tracing::warn!(%method, "notify handler failed: {e}");
                    }
                    let mut g = shared.lock();
                    g.tasks.remove(&key);
                    g.link.notify_done();
                });
                g.tasks.insert(key, task);
            }
            Job::Message(payload) => {
                if let Some(hook) = &self.hooks.on_message {
                    run_hook(&self.label, "on_message", || hook(&peer(), payload));
                }
            }
            Job::Connected => {
                if let Err(refusal) = self.admit_established() {
                    tracing::warn!(peer = %self.label, "refusing: {}", refusal.reason);
                    self.command(|link, now| link.close(&refusal.reason, now));
                    return;
                }
                if let Some(hook) = &self.hooks.on_connect {
                    run_hook(&self.label, "on_connect", || hook(&peer()));
                }
            }
            Job::PeerError(err) => {
                tracing::warn!(peer = %self.label, "the peer reported: {err}");
            }
            Job::Closed(err) => {
                tracing::debug!(peer = %self.label, "connection closed: {err}");
                if let Some(hook) = &self.hooks.on_disconnect {
                    let err = err.into();
                    run_hook(&self.label, "on_disconnect", || hook(&peer(), &err));
                }
            }
            Job::Cancel(_) => {}
            _ => {}
        }
    }

    /// Polls a handler once right here: one that does not wait answers with
    /// no hand-off. One that waits becomes a task, dropped if the call is
    /// cancelled.
    fn start_call(self: &Arc<Self>, call: IncomingCall) {
        let ctx = CallContext {
            peer: Peer::new(Arc::clone(self)),
            method: call.method,
            deadline: call.deadline,
            id: call.id,
        };
        let id = call.id;
        let mut fut = self.handlers.call(call.handler, ctx, call.args);
        if let Poll::Ready(result) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            // Written by `finish`, with the rest of the batch.
            if let Err(e) = self.lock().link.reply(id, result, Instant::now()) {
                tracing::debug!(peer = %self.label, "reply to call {id} dropped: {e}");
            }
            return;
        }
        let shared = Arc::clone(self);
        // Under the lock, so that a cancel processed by another reader
        // either finds the task or is seen here.
        let mut g = self.lock();
        if g.link.is_cancelled(id) || !g.link.conn().is_incoming(id) {
            g.link.handler_dropped(id);
            return; // dropping `fut` cancels the handler
        }
        let task = smol::spawn(async move {
            let result = fut.await;
            shared.lock().tasks.remove(&id);
            shared.reply(id, result);
        });
        g.tasks.insert(id, task);
    }

    /// A server's admission of this connection now that it authenticated.
    fn admit_established(&self) -> Result<(), rigwire_core::link::Refusal> {
        let (Some(admit), Some(ticket)) = (&self.hooks.admit, self.lock().link.ticket()) else {
            return Ok(());
        };
        admit(ticket)?;
        self.lock().link.set_admitted();
        Ok(())
    }

    fn reply(self: &Arc<Self>, id: u64, result: Result<Payload, RemoteError>) {
        if let Err(e) = self.command(|link, now| link.reply(id, result, now)) {
            tracing::debug!(peer = %self.label, "reply to call {id} dropped: {e}");
        }
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

    /// Closes the transport at once, without a goodbye (as a crash would).
    pub(crate) fn shutdown_transport(&self) {
        self.socket.shutdown(Shutdown::Both);
    }
}

/// Keys of notify tasks in the task table: call ids never have the top bit.
const NOTIFY_KEYS: u64 = 1 << 63;

/// What woke the driver.
enum Wake {
    Readable,
    Writable,
    Timer,
    Woken,
}

/// Counts a caller as waiting while it is inside `wait_for`, however it leaves.
struct WaiterGuard<'a>(&'a Shared);

impl<'a> WaiterGuard<'a> {
    fn enter(shared: &'a Shared) -> Self {
        shared.lock().fg_waiters += 1;
        WaiterGuard(shared)
    }
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        let mut g = self.0.lock();
        g.fg_waiters -= 1;
        g.fg_last = Some(Instant::now());
        drop(g);
        // On the accepting side nobody else reads now.
        if self.0.linger.is_zero() {
            self.0.driver_wake.notify(usize::MAX);
        }
    }
}

fn run_hook(label: &str, name: &str, hook: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(hook)).is_err() {
        tracing::error!(peer = %label, "the {name} hook panicked");
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
