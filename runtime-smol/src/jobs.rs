//! What a connection runs for the application: its handlers (polled once
//! where the call was read, a task if they wait), its hooks and a server's
//! admission of a peer that authenticated (those two written once for both
//! runtimes, `rigwire_twin::hooks_jobs`). A part of [`crate::driver`] (its
//! child module, in a file of its own).

use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use rigwire_core::link::Job;
use rigwire_core::{IncomingCall, Payload, RemoteError};

use super::{Shared, State};
use crate::handler::{CallContext, HandlerFuture};
use crate::peer::Peer;

/// Keys of notify tasks in the task table: call ids never have the top bit.
const NOTIFY_KEYS: u64 = 1 << 63;

impl Shared {
    rigwire_twin::hooks_jobs!();

    /// Does what the link asked of the application: a handler, a hook, the
    /// admission of a peer that authenticated.
    pub(super) fn run_job(self: &Arc<Self>, job: Job) {
        match job {
            Job::Call(call) => self.start_call(call),
            Job::Notify(n) => {
                let ctx = CallContext {
                    peer: Peer::new(Arc::clone(self)),
                    method: n.method,
                    deadline: None,
                    id: 0,
                };
                let method = ctx.method.clone();
                let fut = self.handlers.call(n.handler, ctx, n.args);
                let key = |g: &mut State| {
                    g.notify_key = g.notify_key.wrapping_add(1);
                    Some(NOTIFY_KEYS | g.notify_key)
                };
                self.run_handler(fut, key, move |shared, result, _| {
                    if let Err(e) = result {
                        tracing::warn!(%method, "notify handler failed: {e}");
                    }
                    shared.lock().link.notify_done();
                });
            }
            job => self.hear(job),
        }
    }

    /// Starts a call's handler ([`run_handler`](Self::run_handler)); a
    /// call cancelled before its handler had to wait never becomes a task.
    fn start_call(self: &Arc<Self>, call: IncomingCall) {
        let ctx = CallContext {
            peer: Peer::new(Arc::clone(self)),
            method: call.method,
            deadline: call.deadline,
            id: call.id,
        };
        let (id, deadline) = (call.id, call.deadline);
        let fut = self.handlers.call(call.handler, ctx, call.args);
        let key = move |g: &mut State| {
            let wanted = g.link.start_handler(id, deadline, Instant::now());
            wanted.then_some(id)
        };
        self.run_handler(fut, key, move |shared, result, inline| {
            let replied = match inline {
                // Written by `finish`, with the rest of the batch.
                true => shared.lock().link.reply(id, result, Instant::now),
                false => shared.command(|link, now| link.reply(id, result, || now)),
            };
            if let Err(e) = replied {
                tracing::debug!(peer = %shared.label, "reply to call {id} dropped: {e}");
            }
        });
    }

    /// Runs a handler: polled once right here, so that one that does not
    /// wait is done with no hand-off (and before anything read with it, a
    /// close, can drop it); one that waits becomes a task kept in the task
    /// table under the key `key` gives it (dropped, so cancelled, with its
    /// call or the connection; `None`: not started). `done` takes the
    /// result, told whether it came at once.
    fn run_handler<D>(
        self: &Arc<Self>,
        mut fut: HandlerFuture,
        key: impl FnOnce(&mut State) -> Option<u64>,
        done: D,
    ) where
        D: FnOnce(&Arc<Shared>, Result<Payload, RemoteError>, bool) + Send + 'static,
    {
        if let Poll::Ready(result) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            return done(self, result, true);
        }
        // Under the lock, so that a cancel processed by another reader
        // either finds the task or is seen by `key`.
        let mut g = self.lock();
        let Some(key) = key(&mut g) else {
            return; // dropping `fut` cancels the handler
        };
        let shared = Arc::clone(self);
        let task = smol::spawn(async move {
            let result = fut.await;
            shared.lock().tasks.remove(&key);
            done(&shared, result, false);
        });
        g.tasks.insert(key, task);
    }
}
