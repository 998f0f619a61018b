//! A bounded pool of threads for handlers that may block. Threads start on
//! demand up to the limit and end after a while without work; jobs beyond the
//! busy threads wait in order. The queue is bounded by the core's in-flight
//! limits, since every job is a call the core has admitted.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::sync::{lock, sleep};

type Job = Box<dyn FnOnce() + Send>;

/// How long an idle pool thread waits for work before it ends.
const IDLE_EXIT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
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

    /// Queues a job; it runs on an idle thread, a new one, or the next free.
    pub(crate) fn submit(self: &Arc<Self>, job: impl FnOnce() + Send + 'static) {
        let mut q = lock(&self.queue);
        q.jobs.push_back(Box::new(job));
        // Idle threads only count while there are fewer waiting jobs than
        // them: one woken thread takes one job, and until it has, `idle`
        // still counts it (a burst must start threads, not queue behind it).
        if q.jobs.len() <= q.idle {
            self.cond.notify_one();
        } else if q.threads < self.max_threads {
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

    fn work(&self) {
        let mut q = lock(&self.queue);
        loop {
            if let Some(job) = q.jobs.pop_front() {
                drop(q);
                job();
                q = lock(&self.queue);
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
