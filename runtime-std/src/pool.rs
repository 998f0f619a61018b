//! A bounded pool of threads for handlers that may block. Threads start on
//! demand up to the limit and end after a while without work; jobs beyond the
//! busy threads wait in order. The queue is bounded by the core's in-flight
//! limits, since every job is a call the core has admitted.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use rigwire_core::link::{PoolHolders, Stuck};

use crate::sync::{lock, sleep};

type Job = Box<dyn FnOnce() + Send>;

/// A connection whose jobs the pool runs, asked when every thread is busy.
pub(crate) trait Holder: Send + Sync {
    /// How many of its handlers run calls given up on a while ago at `now`
    /// ([`Link::stuck_handlers`](rigwire_core::Link::stuck_handlers)).
    fn stuck(&self, now: Instant) -> usize;
}

thread_local! {
    /// The pool whose thread this is (its address), if any.
    static POOL: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How long an idle pool thread waits for work before it ends.
const IDLE_EXIT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Queue {
    jobs: VecDeque<(Job, Weak<dyn Holder>)>,
    threads: usize,
    idle: usize,
    /// The connections holding threads, by address.
    holding: PoolHolders<usize, Weak<dyn Holder>>,
}

/// A bounded handler pool, shared by every connection of a server or client.
pub(crate) struct Pool {
    queue: Mutex<Queue>,
    cond: Condvar,
    max_threads: usize,
    name: String,
}

impl Pool {
    pub(crate) fn new(max_threads: usize, name: &str) -> Arc<Pool> {
        Arc::new(Pool {
            queue: Mutex::new(Queue::default()),
            cond: Condvar::new(),
            max_threads: max_threads.max(1),
            name: name.to_owned(),
        })
    }

    /// Threads the pool may run at once (a connection's share of them:
    /// [`PoolShare`](rigwire_core::link::PoolShare)).
    pub(crate) fn threads(&self) -> usize {
        self.max_threads
    }

    /// Whether a new call should be refused rather than wait for a thread:
    /// every thread runs a handler stuck on a call given up on, for
    /// whichever connection (closed ones too), so none may come back.
    /// The connection asking must not be locked.
    pub(crate) fn stuck(&self, now: Instant) -> Option<Stuck> {
        // Asked without the queue's lock: each holder takes its own.
        let (holders, threads) = {
            let q = lock(&self.queue);
            let threads = q.holding.threads(self.max_threads);
            (q.holding.when_full(threads)?, threads)
        };
        let held = holders.iter().filter_map(Weak::upgrade);
        let stuck = held.map(|h| h.stuck(now)).sum();
        lock(&self.queue).holding.stuck(threads, stuck)
    }

    /// Queues a job of connection `holder`; it runs on an idle thread, a
    /// new one, or the next free.
    pub(crate) fn submit(
        self: &Arc<Self>,
        job: impl FnOnce() + Send + 'static,
        holder: Weak<dyn Holder>,
    ) {
        let mut q = lock(&self.queue);
        q.jobs.push_back((Box::new(job), holder));
        // Idle threads only count while there are fewer waiting jobs than
        // them: one woken thread takes one job, and until it has, `idle`
        // still counts it (a burst must start threads, not queue behind it).
        if q.jobs.len() <= q.idle {
            self.cond.notify_one();
        } else if q.threads < q.holding.threads(self.max_threads) {
            q.threads += 1;
            let pool = Arc::clone(self);
            let spawned = std::thread::Builder::new()
                .name(format!("{}-handler", self.name))
                .spawn(move || pool.work());
            if spawned.is_err() {
                q.threads -= 1;
                tracing::error!("could not start a handler thread; the job waits for a busy one");
            }
        }
    }

    /// The handler on this thread waits for its own peer: whether the pool
    /// lends its thread meanwhile ([`PoolHolders::lend`]).
    pub(crate) fn lend(&self) -> rigwire_core::link::Lend {
        lock(&self.queue).holding.lend()
    }

    /// The handler on a lent thread has its answer.
    pub(crate) fn answered(&self) {
        lock(&self.queue).holding.answered();
    }

    /// Whether the current thread is one of this pool's.
    pub(crate) fn runs_this_thread(&self) -> bool {
        POOL.with(|pool| pool.get() == self as *const Pool as usize)
    }

    fn work(&self) {
        POOL.with(|pool| pool.set(self as *const Pool as usize));
        let mut q = lock(&self.queue);
        loop {
            if let Some((job, holder)) = q.jobs.pop_front() {
                let key = holder.as_ptr().cast::<()>() as usize;
                q.holding.took(key, holder);
                drop(q);
                job();
                q = lock(&self.queue);
                q.holding.gave_back(&key);
                continue;
            }
            q.idle += 1;
            let until = Instant::now() + IDLE_EXIT;
            q = sleep(&self.cond, q, Some(until));
            q.idle -= 1;
            if Instant::now() >= until && q.jobs.is_empty() {
                q.threads -= 1;
                return;
            }
        }
    }
}
