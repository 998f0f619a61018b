//! Drives one [`rigwire_core::Connection`] with blocking threads.
//!
//! Why it is shaped like this: on small machines waking a sleeping thread costs
//! more than a whole loopback round trip, so the hot path must add no thread
//! hand-off. Three rules follow.
//!
//! * **The reader is a token.** The transport's read half lives in the state
//!   while nobody reads. A thread waiting for a result takes it and reads its
//!   own reply (leader/follower). The connection's background thread reads
//!   whenever no caller is waiting — on the dialing side only after no caller
//!   has waited for [`LINGER`], so that a script's back-to-back calls each
//!   read their own reply instead of having it handed across threads.
//! * **One writer at a time, nobody waits for it.** Output stays in the core's
//!   queue; whoever finds no write in progress drains and writes it, and loops
//!   until the queue is empty. Calls made meanwhile leave with that write
//!   (batching), and no thread ever waits on a write while holding the state.
//! * **Short handlers run where the call was read** (see [`crate::handler`]).
//!
//! Lock discipline: the state mutex is never held across a read, a write or a
//! handler.

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rigwire_core::runtime::{earliest, Waiters};
use rigwire_core::{Connection, ConnectionError, Event, IncomingCall, Payload, RemoteError};

use crate::handler::{CallContext, Handlers};
use crate::peer::Peer;
use crate::pool::Pool;
use crate::transport::{Reader, Received, Writer};

/// How long after a caller last waited a client's background thread keeps off
/// the socket, so that a script's back-to-back calls each read their own
/// reply. Servers do not linger: their callers are the exception.
pub(crate) const LINGER: Duration = Duration::from_millis(20);

/// Hooks an endpoint runs for each connection.
pub(crate) type Hooks = rigwire_core::runtime::Hooks<Peer>;

pub(crate) struct State {
    pub(crate) conn: Connection,
    reader: Option<Reader>,
    writing: bool,
    /// Set once a write fails. The peer has gone, but its last frames (a
    /// `Reject` or `Goodbye` saying why) may still be unread, so the
    /// connection ends when the reader reaches the end of the stream.
    write_failed: Option<String>,
    /// Results of our calls, by id: `None` while pending. Only calls someone
    /// may still wait for are here.
    /// Results callers wait for (answers, echoes, pongs, the handshake).
    pub(crate) waiters: Waiters,
    cancelled: HashSet<u64>,
    /// Threads inside `wait_for`.
    fg_waiters: usize,
    /// Threads asleep on `cond` (waiting for a result, the reader or the writer).
    fg_sleepers: usize,
    /// When a caller last finished waiting.
    fg_last: Option<Instant>,
    /// Whether the background thread is asleep on `bg_cond` (waking it
    /// otherwise is a wasted system call on every message).
    bg_sleeping: bool,
}

/// Work found while holding the state, done after releasing it.
enum Job {
    Call(IncomingCall),
    Notify(rigwire_core::IncomingNotify),
    Message(Bytes),
    Connected,
    Closed(ConnectionError),
}

/// Everything one connection's threads share.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes callers: a result, the reader or room in the output arrived.
    cond: Condvar,
    /// Wakes the background thread: the reader is free, or the connection closed.
    bg_cond: Condvar,
    /// See [`LINGER`]; zero on the accepting side.
    linger: Duration,
    writer: Mutex<Writer>,
    handlers: Arc<Handlers>,
    pool: Option<Arc<Pool>>,
    hooks: Arc<Hooks>,
    /// For logs: where this connection goes or comes from.
    pub(crate) label: String,
}

impl Shared {
    pub(crate) fn new(
        conn: Connection,
        (reader, writer): (Reader, Writer),
        handlers: Arc<Handlers>,
        pool: Option<Arc<Pool>>,
        hooks: Arc<Hooks>,
        label: String,
        linger: Duration,
    ) -> Arc<Shared> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                conn,
                reader: Some(reader),
                writing: false,
                write_failed: None,
                waiters: Waiters::default(),
                cancelled: HashSet::new(),
                fg_waiters: 0,
                fg_sleepers: 0,
                fg_last: None,
                bg_sleeping: false,
            }),
            cond: Condvar::new(),
            bg_cond: Condvar::new(),
            linger,
            writer: Mutex::new(writer),
            handlers,
            pool,
            hooks,
            label,
        });
        shared.flush(); // our Hello
        shared
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a command on the core, then sends what it queued and does what it
    /// caused. Commands refused for backpressure wait for the writer instead.
    pub(crate) fn command<T>(
        self: &Arc<Self>,
        mut f: impl FnMut(&mut State, Instant) -> T,
        backpressured: impl Fn(&T) -> bool,
    ) -> T {
        let mut g = self.lock();
        let out = loop {
            let out = f(&mut g, Instant::now());
            if !backpressured(&out) {
                break out;
            }
            // The writer wakes sleepers after every write; wait for room.
            g.fg_sleepers += 1;
            g = self
                .cond
                .wait_timeout(g, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
            g.fg_sleepers -= 1;
        };
        let jobs = collect_jobs(&mut g);
        self.wake(&g);
        drop(g);
        self.flush();
        self.run_jobs(jobs, false);
        out
    }

    /// Writes everything the core has queued, unless another thread is
    /// writing (it will pick ours up). Shuts the socket once the connection
    /// has closed and its last frames are out.
    pub(crate) fn flush(self: &Arc<Self>) {
        let mut g = self.lock();
        if g.writing {
            return;
        }
        loop {
            // One chunk is the common case: no Vec for it.
            let Some(first) = g.conn.poll_transmit() else {
                if g.conn.is_closed() {
                    self.writer
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .shutdown();
                }
                return;
            };
            let mut rest = Vec::new();
            while let Some(chunk) = g.conn.poll_transmit() {
                rest.push(chunk);
            }
            if g.write_failed.is_some() {
                continue; // nobody will read these; the reader reports the end
            }
            g.writing = true;
            drop(g);
            let result = {
                let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
                if rest.is_empty() {
                    writer.send(std::slice::from_ref(&first))
                } else {
                    rest.insert(0, first);
                    writer.send(&rest)
                }
            };
            g = self.lock();
            g.writing = false;
            self.wake(&g);
            if let Err(e) = result {
                tracing::debug!(peer = %self.label, "write failed: {e}");
                g.write_failed = Some(format!("write failed: {e}"));
            }
        }
    }

    /// Waits until `take` finds what it wants, reading the transport itself
    /// whenever nobody else is, until `deadline`.
    pub(crate) fn wait_for<T>(
        self: &Arc<Self>,
        deadline: Option<Instant>,
        mut take: impl FnMut(&mut State) -> Option<T>,
    ) -> Option<T> {
        let mut g = self.lock();
        g.fg_waiters += 1;
        let found = loop {
            if let Some(found) = take(&mut g) {
                break Some(found);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break None;
            }
            g = match g.reader.is_some() {
                true => self.read_step(g, deadline),
                false => self.idle_step(g, deadline, false),
            };
        };
        g.fg_waiters -= 1;
        g.fg_last = Some(Instant::now());
        self.wake(&g);
        found
    }

    /// Wakes whoever may now proceed: sleeping callers (a result, the reader
    /// or room may be there), and the background thread when the connection
    /// closed or, on the accepting side, when no caller holds it off.
    fn wake(&self, g: &State) {
        if g.fg_sleepers > 0 {
            self.cond.notify_all();
        }
        let reader_free_on_server =
            g.fg_waiters == 0 && self.linger.is_zero() && g.reader.is_some();
        if g.bg_sleeping && (g.conn.is_closed() || reader_free_on_server) {
            self.bg_cond.notify_one();
        }
    }

    /// The connection's background thread: reads whenever no caller is
    /// reading, until the connection closes. `inline` jobs run here.
    pub(crate) fn drive(self: &Arc<Self>) {
        let mut g = self.lock();
        loop {
            // Closing always happens inside a step, which has already run the
            // resulting work (the disconnect hook among it).
            if g.conn.is_closed() {
                break;
            }
            let now = Instant::now();
            let linger_until = g.fg_last.map(|t| t + self.linger).filter(|t| *t > now);
            let callers_active = g.fg_waiters > 0 || linger_until.is_some();
            g = if g.reader.is_some() && !callers_active {
                self.read_step(g, None)
            } else {
                // Re-check at least every LINGER: a caller may leave without
                // waking us, and our timers may have been computed before
                // its commands changed them.
                let recheck = linger_until.unwrap_or(now + LINGER);
                self.idle_step(g, Some(recheck), true)
            };
        }
        drop(g);
        self.flush();
    }

    /// Holds the reader: one read, then feeds the core, sends its output and
    /// does the resulting work with the state released.
    fn read_step<'a>(
        self: &'a Arc<Self>,
        mut g: MutexGuard<'a, State>,
        deadline: Option<Instant>,
    ) -> MutexGuard<'a, State> {
        let mut reader = g.reader.take().expect("caller checked the reader is here");
        let wake = earliest(g.conn.poll_timeout(), deadline);
        drop(g);
        let received = reader.read(wake);
        let timed_out = matches!(received, Ok(Received::TimedOut));
        let now = Instant::now();
        let mut g = self.lock();
        match received {
            Ok(Received::Bytes(bytes)) => g.conn.handle_input(bytes, now),
            Ok(Received::Frames(frames)) => {
                for frame in frames {
                    g.conn.handle_frame(frame, now);
                }
            }
            Ok(Received::TimedOut) => {}
            Ok(Received::Closed) => {
                let why = g
                    .write_failed
                    .take()
                    .unwrap_or_else(|| "the peer closed the connection".into());
                g.conn.handle_transport_closed(&why, now);
            }
            Err(e) => g
                .conn
                .handle_transport_closed(&format!("read failed: {e}"), now),
        }
        g.reader = Some(reader);
        // After data, `handle_input`/`handle_frame` have run the timers already.
        if timed_out {
            g.conn.handle_timeout(now);
        }
        let jobs = collect_jobs(&mut g);
        self.wake(&g);
        drop(g);
        self.flush();
        self.run_jobs(jobs, true);
        self.flush(); // the replies of handlers that ran inline, in one write
        self.lock()
    }

    /// Sleeps until woken or a timer is due (someone else holds the reader,
    /// or the background thread is keeping off it).
    fn idle_step<'a>(
        self: &'a Arc<Self>,
        mut g: MutexGuard<'a, State>,
        deadline: Option<Instant>,
        background: bool,
    ) -> MutexGuard<'a, State> {
        let wake = earliest(g.conn.poll_timeout(), deadline);
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
        let mut g = match wake {
            Some(at) => {
                let wait = at.saturating_duration_since(Instant::now());
                cond.wait_timeout(g, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
            None => cond.wait(g).unwrap_or_else(|p| p.into_inner()),
        };
        if background {
            g.bg_sleeping = false;
        } else {
            g.fg_sleepers -= 1;
        }
        g.conn.handle_timeout(Instant::now());
        let jobs = collect_jobs(&mut g);
        if jobs.is_empty() && g.conn.queued_output() == 0 {
            return g;
        }
        self.wake(&g);
        drop(g);
        self.flush();
        self.run_jobs(jobs, false);
        self.lock()
    }

    fn run_jobs(self: &Arc<Self>, jobs: Vec<Job>, on_reading_thread: bool) {
        for job in jobs {
            match job {
                Job::Call(call) => self.dispatch(call, on_reading_thread),
                Job::Notify(n) => {
                    let Some(entry) = self.handlers.entry(n.handler).cloned() else {
                        continue;
                    };
                    let ctx = CallContext {
                        peer: Peer::new(Arc::clone(self)),
                        method: n.method,
                        deadline: None,
                        id: 0,
                    };
                    self.spawn_or_run(on_reading_thread && entry.runs_inline(), move || {
                        if let Err(e) = entry.run(&ctx, n.args) {
                            tracing::warn!(method = %ctx.method, "notify handler failed: {e}");
                        }
                    });
                }
                Job::Message(payload) => {
                    if let Some(hook) = &self.hooks.on_message {
                        self.run_hook("on_message", || hook(&Peer::new(Arc::clone(self)), payload));
                    }
                }
                Job::Connected => {
                    if let Some(hook) = &self.hooks.on_connect {
                        self.run_hook("on_connect", || hook(&Peer::new(Arc::clone(self))));
                    }
                }
                Job::Closed(err) => {
                    tracing::debug!(peer = %self.label, "connection closed: {err}");
                    if let Some(hook) = &self.hooks.on_disconnect {
                        let err = err.into();
                        self.run_hook("on_disconnect", || hook(&Peer::new(Arc::clone(self)), &err));
                    }
                }
            }
        }
    }

    /// Runs an application hook; a panic in it is logged, never fatal to the
    /// connection's thread.
    fn run_hook(&self, name: &str, hook: impl FnOnce()) {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(hook)).is_err() {
            tracing::error!(peer = %self.label, "the {name} hook panicked");
        }
    }

    fn dispatch(self: &Arc<Self>, call: IncomingCall, on_reading_thread: bool) {
        let Some(entry) = self.handlers.entry(call.handler).cloned() else {
            let err = RemoteError::new(
                rigwire_core::ErrorKind::Internal,
                "handler table out of step with the registry",
            );
            self.reply(call.id, Err(err), true);
            return;
        };
        let inline = on_reading_thread && entry.runs_inline();
        let shared = Arc::clone(self);
        let run = move |flush: bool| {
            let ctx = CallContext {
                peer: Peer::new(Arc::clone(&shared)),
                method: call.method,
                deadline: call.deadline,
                id: call.id,
            };
            let result = entry.run(&ctx, call.args);
            shared.reply(call.id, result, flush);
        };
        match &self.pool {
            // The reading thread writes once after the whole batch it read
            // (as a raw echo server would), not once per reply.
            _ if inline => run(false),
            Some(pool) => pool.submit(move || run(true)),
            None => run(true),
        }
    }

    fn spawn_or_run(&self, inline: bool, job: impl FnOnce() + Send + 'static) {
        match &self.pool {
            Some(pool) if !inline => pool.submit(job),
            _ => job(),
        }
    }

    /// Answers call `id`; `flush` false leaves the writing to the caller.
    fn reply(self: &Arc<Self>, id: u64, result: Result<Payload, RemoteError>, flush: bool) {
        let outcome = if flush {
            self.command(
                |s, _| {
                    s.cancelled.remove(&id);
                    s.conn.reply(id, result.clone())
                },
                |_| false,
            )
        } else {
            let mut g = self.lock();
            g.cancelled.remove(&id);
            g.conn.reply(id, result)
        };
        if let Err(e) = outcome {
            tracing::debug!(peer = %self.label, "reply to call {id} dropped: {e}");
        }
    }

    /// Lets time pass without reading: expired deadlines resolve, timers fire.
    pub(crate) fn tick(self: &Arc<Self>) {
        let mut g = self.lock();
        g.conn.handle_timeout(Instant::now());
        let jobs = collect_jobs(&mut g);
        drop(g);
        self.flush();
        self.run_jobs(jobs, false);
    }

    pub(crate) fn is_cancelled(&self, id: u64) -> bool {
        self.lock().cancelled.contains(&id)
    }

    /// Closes the transport at once (the reading thread wakes up).
    pub(crate) fn shutdown_transport(&self) {
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .shutdown();
    }
}

/// Drains the core's events: results go to their waiters, the rest
/// becomes work to do outside the lock.
fn collect_jobs(s: &mut State) -> Vec<Job> {
    let mut jobs = Vec::new();
    while let Some(event) = s.conn.poll_event() {
        let Some(event) = s.waiters.route(event) else {
            continue;
        };
        match event {
            Event::Connected { .. } => jobs.push(Job::Connected),
            Event::Call(call) => jobs.push(Job::Call(call)),
            Event::Notify(n) => jobs.push(Job::Notify(n)),
            Event::Cancelled { id, .. } => {
                s.cancelled.insert(id);
            }
            Event::Message { payload, .. } => jobs.push(Job::Message(payload)),
            Event::PeerError(err) => tracing::warn!("the peer reported: {err}"),
            Event::Closed(err) => {
                s.cancelled.clear();
                jobs.push(Job::Closed(err));
            }
            _ => {}
        }
    }
    jobs
}
