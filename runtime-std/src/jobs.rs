//! What a connection runs for the application: its handlers (on the thread
//! that read the call, or on the pool within the connection's share of it),
//! its hooks and a server's admission of a peer that authenticated (those
//! two written once for both runtimes, `rigwire_twin::hooks_jobs`). A part
//! of [`crate::driver`] (its child module, in a file of its own).

use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

use rigwire_core::link::{Job, Lend};
use rigwire_core::{IncomingCall, Payload, RemoteError};

use super::{PoolJob, Shared};
use crate::handler::CallContext;
use crate::peer::Peer;
use crate::pool::Holder;

thread_local! {
    /// The connection whose pooled handler this thread runs (its address),
    /// and whether that handler now waits for its peer's answer.
    static SERVING: Cell<(usize, bool)> = const { Cell::new((0, false)) };
}

/// A pooled handler waiting for its own peer: its thread counts against
/// neither the connection's share nor the pool until this is dropped.
pub(crate) struct Lent<'a>(&'a Arc<Shared>);

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        self.0.lock().pool_share.answered();
        if let Some(pool) = &self.0.pool {
            pool.answered();
        }
        SERVING.with(|s| s.set((Arc::as_ptr(self.0) as usize, false)));
    }
}

impl Shared {
    rigwire_twin::hooks_jobs!();

    /// When this thread runs a pooled handler of this connection, which is
    /// about to wait for this connection's peer (a call back to it): lends
    /// its thread for the wait (the core's [`PoolShare::waits_on_peer`]),
    /// starting a job of this connection that waited for it, if any.
    ///
    /// [`PoolShare::waits_on_peer`]: rigwire_core::link::PoolShare::waits_on_peer
    pub(crate) fn lend_thread(self: &Arc<Self>) -> Option<Lent<'_>> {
        let pool = self.pool.as_ref()?;
        let me = Arc::as_ptr(self) as usize;
        if SERVING.with(Cell::get) != (me, false) {
            return None;
        }
        if let Lend::Full { first } = pool.lend() {
            let limit = rigwire_core::link::MAX_LENT_THREADS;
            let why = "calls (and calls back) that need a thread wait for one";
            match first {
                true => tracing::warn!(
                    peer = %self.label,
                    "handlers waiting (for their peer's answers, or an event loop's) hold \
                     every thread the pool lends ({limit}): {why} (said once, until every \
                     lent thread is back)"
                ),
                false => tracing::debug!(peer = %self.label, "every lent thread taken: {why}"),
            }
            return None;
        }
        SERVING.with(|s| s.set((me, true)));
        let next = self.lock().pool_share.waits_on_peer(pool.threads());
        if let Some(job) = next {
            self.submit_pooled(job);
        }
        Some(Lent(self))
    }

    /// Does what the link asked of the application: handlers (inline
    /// here when `on_reading_thread` and the handler is quick, else on the
    /// pool), hooks, the admission of a peer that authenticated.
    pub(super) fn run_jobs(self: &Arc<Self>, jobs: Vec<Job>, on_reading_thread: bool) {
        for job in jobs {
            match job {
                Job::Call(call) => self.dispatch(call, on_reading_thread),
                Job::Notify(n) => {
                    let Some(entry) = self.handlers.get(n.handler).cloned() else {
                        continue;
                    };
                    let ctx = CallContext {
                        peer: Peer::new(Arc::clone(self)),
                        method: n.method,
                        deadline: None,
                        id: 0,
                    };
                    let shared = Arc::clone(self);
                    self.spawn_or_run(on_reading_thread && entry.runs_inline(), move || {
                        if let Err(e) = entry.run(&ctx, n.args) {
                            tracing::warn!(method = %ctx.method, "notify handler failed: {e}");
                        }
                        shared.lock().link.notify_done();
                    });
                }
                job => self.hear(job),
            }
        }
    }

    fn dispatch(self: &Arc<Self>, call: IncomingCall, on_reading_thread: bool) {
        let Some(entry) = self.handlers.get(call.handler).cloned() else {
            let err = RemoteError::new(
                rigwire_core::ErrorKind::Internal,
                "handler table out of step with the registry",
            );
            self.reply(call.id, Err(err), true);
            return;
        };
        let inline = on_reading_thread && entry.runs_inline();
        let shared = Arc::clone(self);
        let (id, deadline) = (call.id, call.deadline);
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
            Some(pool) => {
                let now = Instant::now();
                let stuck = {
                    let g = &mut *self.lock();
                    let stuck = g.link.stuck_handlers(now);
                    g.pool_share.stuck(pool.threads(), stuck)
                };
                let stuck = stuck.or_else(|| pool.stuck(now));
                if let Some(stuck) = stuck {
                    if stuck.first {
                        tracing::warn!(peer = %self.label, "{}", stuck.reason);
                    }
                    let busy = RemoteError::new(rigwire_core::ErrorKind::Busy, stuck.reason);
                    return self.reply(id, Err(busy), true);
                }
                // It may wait for a thread past its caller's interest.
                let shared = Arc::clone(self);
                self.to_pool(Box::new(move || {
                    // A command: a call dropped here may be what a drain waits for.
                    if shared.command(|link, now| link.start_handler(id, deadline, now)) {
                        run(true)
                    }
                }))
            }
            None => run(true),
        }
    }

    fn spawn_or_run(self: &Arc<Self>, inline: bool, job: impl FnOnce() + Send + 'static) {
        match &self.pool {
            Some(_) if !inline => self.to_pool(Box::new(job)),
            _ => job(),
        }
    }

    /// Runs `job` on the pool within this connection's share of it; beyond
    /// the share it waits for one of this connection's own jobs to end.
    fn to_pool(self: &Arc<Self>, job: PoolJob) {
        let Some(pool) = &self.pool else {
            return job();
        };
        let Some(job) = self.lock().pool_share.admit(job, pool.threads()) else {
            return; // it waits for this connection's share
        };
        self.submit_pooled(job);
    }

    /// Hands a job that holds a thread of this connection's share to the pool.
    fn submit_pooled(self: &Arc<Self>, job: PoolJob) {
        let Some(pool) = &self.pool else {
            return job();
        };
        let shared = Arc::clone(self);
        let holder: std::sync::Weak<dyn Holder> = Arc::downgrade(self) as _;
        pool.submit(move || shared.run_pooled(job), holder);
    }

    /// Runs a pooled job, then this connection's next waiting one, if any,
    /// on the same thread.
    fn run_pooled(self: Arc<Self>, mut job: PoolJob) {
        let threads = self.pool.as_ref().map_or(1, |p| p.threads());
        SERVING.with(|s| s.set((Arc::as_ptr(&self) as usize, false)));
        loop {
            job();
            match self.lock().pool_share.finished(threads) {
                Some(next) => job = next,
                None => break,
            }
        }
        SERVING.with(|s| s.set((0, false)));
    }

    /// Answers call `id`; `flush` false leaves the writing to the caller.
    fn reply(self: &Arc<Self>, id: u64, result: Result<Payload, RemoteError>, flush: bool) {
        let outcome = if flush {
            self.command(|link, now| link.reply(id, result, || now))
        } else {
            self.lock().link.reply(id, result, Instant::now)
        };
        if let Err(e) = outcome {
            tracing::debug!(peer = %self.label, "reply to call {id} dropped: {e}");
        }
    }
}

impl Holder for Shared {
    fn stuck(&self, now: Instant) -> usize {
        self.lock().link.stuck_handlers(now)
    }
}
