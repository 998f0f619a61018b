//! A bounded pool of threads for handlers that may block. Threads start on
//! demand up to the limit and end after a while without work; jobs beyond the
//! busy threads wait in order. The queue is bounded by the core's in-flight
//! limits, since every job is a call the core has admitted.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

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

    /// Queues a job; it runs on an idle thread, a new one, or the next free.
    pub(crate) fn submit(self: &Arc<Self>, job: impl FnOnce() + Send + 'static) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.jobs.push_back(Box::new(job));
        if q.idle > 0 {
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
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(job) = q.jobs.pop_front() {
                drop(q);
                job();
                q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                continue;
            }
            q.idle += 1;
            let (guard, timeout) = self
                .cond
                .wait_timeout(q, IDLE_EXIT)
                .unwrap_or_else(|p| p.into_inner());
            q = guard;
            q.idle -= 1;
            if timeout.timed_out() && q.jobs.is_empty() {
                q.threads -= 1;
                return;
            }
        }
    }
}
