//! Drives one [`rigwire_core::Connection`] on smol: a thin loop over the
//! core's `handle_*` / `poll_*` calls, with `poll_timeout` mapped onto an
//! `async_io::Timer`.
//!
//! The same rules as the blocking runtime, for the same reason (a thread or
//! task hand-off costs more than the call itself):
//!
//! * **Writes go out from whoever produced them**, as non-blocking writes
//!   under the state lock. What the kernel does not take waits in a backlog
//!   that the connection's driver task writes once the socket is writable — so
//!   a caller's future can be dropped at any point without leaving half a
//!   frame on the wire.
//! * **Whoever is waiting reads.** A call waiting for its answer waits for the
//!   socket to be readable and reads its own reply, without a hand-off. Reads
//!   are non-blocking attempts under a lock held for the attempt only — never
//!   across an `.await`, because a future may be suspended and never polled
//!   again, and must not starve the others. The driver task waits for
//!   readability only while no caller is waiting (on the dialing side, only
//!   after [`LINGER`]).
//! * **Handlers are polled once where the call was read** (see [`crate::handler`]).
//!
//! The state mutex is a plain `std` mutex, never held across an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_listener::Event;
use rigwire_core::runtime::{earliest, Waiters};
use rigwire_core::{Connection, ConnectionError, IncomingCall, Payload, RemoteError};
use rigwire_ws::WsCodec;
use smol::{future, Task, Timer};

use crate::handler::{CallContext, Handlers};
use crate::peer::Peer;
use crate::transport::Socket;
use crate::wire::Wire;

/// How long after a caller last waited a client's driver keeps off the
/// socket, so that a script's back-to-back calls each read their own reply.
pub(crate) const LINGER: Duration = Duration::from_millis(20);

/// Bytes read per system call.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// Hooks an endpoint runs for each connection.
pub(crate) type Hooks = rigwire_core::runtime::Hooks<Peer>;

pub(crate) struct State {
    pub(crate) conn: Connection,
    wire: Wire,
    /// Results callers wait for (answers, echoes, pongs, the handshake).
    pub(crate) waiters: Waiters,
    /// Handlers still running, by call id; dropping one cancels it.
    tasks: HashMap<u64, Task<()>>,
    fg_waiters: usize,
    fg_last: Option<Instant>,
}

enum Job {
    Call(IncomingCall),
    Notify(rigwire_core::IncomingNotify),
    Message(Bytes),
    Connected,
    Closed(ConnectionError),
}

/// Everything one connection's tasks share.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes callers: a result arrived, the reader is free, output has room, closed.
    changed: Event,
    /// Wakes the driver: the backlog is blocked, a caller wants the reader, closed.
    driver_wake: Event,
    /// Wakes whoever waits for the connection to end.
    closed: Event,
    /// The read buffer; locked only for one non-blocking read.
    reader: Mutex<Vec<u8>>,
    socket: Arc<Socket>,
    handlers: Arc<Handlers>,
    hooks: Arc<Hooks>,
    linger: Duration,
    /// For logs: where this connection goes or comes from.
    pub(crate) label: String,
}

impl Shared {
    pub(crate) fn new(
        conn: Connection,
        socket: Socket,
        ws: Option<WsCodec>,
        handlers: Arc<Handlers>,
        hooks: Arc<Hooks>,
        label: String,
        linger: Duration,
    ) -> Arc<Shared> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                conn,
                wire: Wire::new(ws),
                waiters: Waiters::default(),
                tasks: HashMap::new(),
                fg_waiters: 0,
                fg_last: None,
            }),
            changed: Event::new(),
            driver_wake: Event::new(),
            closed: Event::new(),
            reader: Mutex::new(vec![0; READ_CHUNK]),
            socket: Arc::new(socket),
            handlers,
            hooks,
            linger,
            label,
        });
        let mut g = shared.lock();
        if g.wire.is_ws() {
            // The upgrade may already have buffered the peer's first frames.
            shared.feed(&mut g, Ok(0), &[], Instant::now());
        }
        shared.flush(&mut g); // our Hello
        drop(g);
        shared
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a command on the core, sends what it queued and does what it caused.
    pub(crate) fn command<T>(self: &Arc<Self>, f: impl FnOnce(&mut State, Instant) -> T) -> T {
        let mut g = self.lock();
        let out = f(&mut g, Instant::now());
        let jobs = self.pump(&mut g);
        drop(g);
        self.finish(jobs);
        out
    }

    /// As [`command`](Self::command), but waits for room while the output is
    /// backed up (`backpressured` says so) instead of failing.
    pub(crate) async fn command_waiting<T>(
        self: &Arc<Self>,
        mut f: impl FnMut(&mut State, Instant) -> T,
        backpressured: impl Fn(&T) -> bool,
    ) -> T {
        loop {
            let listener = self.changed.listen();
            let out = self.command(&mut f);
            if !backpressured(&out) {
                return out;
            }
            future::or(listener, async {
                Timer::after(Duration::from_millis(100)).await;
            })
            .await;
        }
    }

    /// Writes the core's output (see [`Wire::flush`]); shuts the socket once
    /// closed and drained.
    fn flush(&self, g: &mut State) {
        if g.wire.flush(&mut g.conn, &self.socket, &self.label) {
            self.driver_wake.notify(usize::MAX);
        }
        if g.conn.is_closed() && g.wire.drained(&g.conn) {
            self.socket.shutdown();
        }
    }

    /// Drains events (results to their waiters) and output; returns the work to do.
    fn pump(&self, g: &mut State) -> Vec<Job> {
        let mut jobs = Vec::new();
        while let Some(event) = g.conn.poll_event() {
            use rigwire_core::Event as E;
            let Some(event) = g.waiters.route(event) else {
                continue;
            };
            match event {
                E::Connected { .. } => jobs.push(Job::Connected),
                E::Call(call) => jobs.push(Job::Call(call)),
                E::Notify(n) => jobs.push(Job::Notify(n)),
                E::Cancelled { id, .. } => {
                    g.tasks.remove(&id); // dropping the task drops the handler's future
                }
                E::Message { payload, .. } => jobs.push(Job::Message(payload)),
                E::PeerError(err) => tracing::warn!(peer = %self.label, "the peer reported: {err}"),
                E::Closed(err) => {
                    g.tasks.clear();
                    jobs.push(Job::Closed(err));
                }
                _ => {}
            }
        }
        self.flush(g);
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
        }
        self.changed.notify(usize::MAX);
        if closing {
            self.driver_wake.notify(usize::MAX);
            self.closed.notify(usize::MAX);
        }
    }

    /// Feeds one read (or its failure) to the core, then its timers.
    fn feed(&self, g: &mut State, read: std::io::Result<usize>, buf: &[u8], now: Instant) {
        g.wire.feed(&mut g.conn, read, buf, now);
        g.conn.handle_timeout(now);
    }

    /// Reads whatever is there now, if nobody else is reading this instant,
    /// and does what it causes. Returns whether anything was read.
    fn read_now(self: &Arc<Self>) -> bool {
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
        self.feed(&mut g, read, &buf, now);
        drop(buf);
        let jobs = self.pump(&mut g);
        drop(g);
        self.finish(jobs);
        true
    }

    /// Waits until `take` finds what it wants, reading the transport itself
    /// when there is something to read, until `deadline` (then `None`).
    /// `wake_hint` is a moment to look again (a call's own deadline); the
    /// core's other timers are the driver task's business. Cancel-safe.
    pub(crate) async fn wait_for<T>(
        self: &Arc<Self>,
        deadline: Option<Instant>,
        wake_hint: Option<Instant>,
        mut take: impl FnMut(&mut State) -> Option<T>,
    ) -> Option<T> {
        let _waiting = WaiterGuard::enter(self);
        let mut check = |shared: &Self| {
            let mut g = shared.lock();
            if let Some(found) = take(&mut g) {
                return Err(Some(found));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(None);
            }
            Ok(earliest(wake_hint, deadline))
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
            let wake = match check(self) {
                Err(done) => return done,
                Ok(wake) => wake,
            };
            let readable = future::or(
                async {
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
        self.command(|s, now| s.conn.handle_timeout(now));
    }

    /// The connection's driver task: reads when no caller is waiting,
    /// writes the backlog when the socket is writable, and runs the core's
    /// timers even if nobody polls anything, until the connection closes.
    pub(crate) async fn drive(self: Arc<Self>) {
        loop {
            let listener = self.driver_wake.listen();
            let (closed, blocked, wake, callers_active) = {
                let g = self.lock();
                let now = Instant::now();
                let linger_until = g.fg_last.map(|t| t + self.linger).filter(|t| *t > now);
                let callers_active = g.fg_waiters > 0 || linger_until.is_some();
                // While callers are active, re-check at least every LINGER: a
                // client's caller may leave without waking us.
                let recheck = callers_active.then(|| linger_until.unwrap_or(now + LINGER));
                (
                    g.conn.is_closed() && g.wire.drained(&g.conn),
                    g.wire.write_blocked,
                    earliest(g.conn.poll_timeout(), recheck),
                    callers_active,
                )
            };
            if closed {
                break;
            }
            if blocked {
                // A closed connection's last frames get one second to leave;
                // a peer that never reads does not keep this task forever.
                let give_up = self
                    .lock()
                    .conn
                    .is_closed()
                    .then(|| Instant::now() + Duration::from_secs(1));
                let writable = future::or(async { self.socket.writable().await.is_ok() }, async {
                    future::or(listener, sleep_until(give_up)).await;
                    false
                })
                .await;
                let mut g = self.lock();
                if writable {
                    g.wire.write_blocked = false;
                } else if give_up.is_some_and(|t| Instant::now() >= t) {
                    self.socket.shutdown();
                    break;
                }
                let jobs = self.pump(&mut g);
                drop(g);
                self.finish(jobs);
                continue;
            }
            if callers_active {
                future::or(listener, sleep_until(wake)).await;
            } else {
                if self.read_now() {
                    continue;
                }
                let readable = future::or(
                    async {
                        let _ = self.socket.readable().await;
                        true
                    },
                    async {
                        future::or(listener, sleep_until(wake)).await;
                        false
                    },
                )
                .await;
                if readable && self.read_now() {
                    continue;
                }
            }
            self.tick();
        }
        tracing::debug!(peer = %self.label, "driver finished");
    }

    fn run_job(self: &Arc<Self>, job: Job) {
        let peer = || Peer::new(Arc::clone(self));
        match job {
            Job::Call(call) => {
                // The peer may have cancelled it in the same read.
                if !self.lock().conn.is_incoming(call.id) {
                    return;
                }
                let ctx = CallContext {
                    peer: peer(),
                    method: call.method,
                    deadline: call.deadline,
                    id: call.id,
                };
                let mut fut = self.handlers.call(call.handler, ctx, call.args);
                // Polled once right here: a handler that does not wait answers
                // with no hand-off. The task polls it again with a real waker.
                if let Poll::Ready(result) =
                    fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
                {
                    // Written by `finish`, with the rest of the batch.
                    if let Err(e) = self.lock().conn.reply(call.id, result) {
                        tracing::debug!(peer = %self.label, "reply to call {} dropped: {e}", call.id);
                    }
                    return;
                }
                let shared = Arc::clone(self);
                let id = call.id;
                // Under the lock, so that a `Cancelled` processed by another
                // reader either finds the task or is seen here.
                let mut g = self.lock();
                if !g.conn.is_incoming(id) {
                    return; // dropping `fut` cancels the handler
                }
                let task = smol::spawn(async move {
                    let result = fut.await;
                    shared.reply(id, result);
                    shared.lock().tasks.remove(&id);
                });
                g.tasks.insert(id, task);
            }
            Job::Notify(n) => {
                let ctx = CallContext {
                    peer: peer(),
                    method: n.method,
                    deadline: None,
                    id: 0,
                };
                let method = ctx.method.clone();
                let fut = self.handlers.call(n.handler, ctx, n.args);
                smol::spawn(async move {
                    if let Err(e) = fut.await {
                        tracing::warn!(%method, "notify handler failed: {e}");
                    }
                })
                .detach();
            }
            Job::Message(payload) => {
                if let Some(hook) = &self.hooks.on_message {
                    run_hook(&self.label, "on_message", || hook(&peer(), payload));
                }
            }
            Job::Connected => {
                if let Some(hook) = &self.hooks.on_connect {
                    run_hook(&self.label, "on_connect", || hook(&peer()));
                }
            }
            Job::Closed(err) => {
                tracing::debug!(peer = %self.label, "connection closed: {err}");
                if let Some(hook) = &self.hooks.on_disconnect {
                    let err = err.into();
                    run_hook(&self.label, "on_disconnect", || hook(&peer(), &err));
                }
            }
        }
    }

    fn reply(self: &Arc<Self>, id: u64, result: Result<Payload, RemoteError>) {
        if let Err(e) = self.command(|s, _| s.conn.reply(id, result)) {
            tracing::debug!(peer = %self.label, "reply to call {id} dropped: {e}");
        }
    }

    /// Waits until the connection has closed; returns at once if it has.
    pub(crate) async fn wait_closed(&self) {
        loop {
            let listener = self.closed.listen();
            if self.lock().conn.is_closed() {
                return;
            }
            listener.await;
        }
    }

    /// Closes the transport at once, without a goodbye (as a crash would).
    pub(crate) fn shutdown_transport(&self) {
        self.socket.shutdown();
    }
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
        // The reader may be free now, and on the accepting side nobody else reads.
        self.0.changed.notify(usize::MAX);
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
