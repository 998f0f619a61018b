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

    /// Threads the pool may run at once (a connection's share of them:
    /// [`PoolShare`](rigwire_core::link::PoolShare)).
    pub(crate) fn threads(&self) -> usize {
        self.max_threads
    }

    /// Queues a job; it runs on an idle thread, a new one, or the next free.
    pub(crate) fn submit(self: &Arc<Self>, job: impl FnOnce() + Send + 'static) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    /// Jobs that each wait until all of them have started: they finish only
    /// if the pool runs them side by side.
    #[test]
    fn a_burst_of_blocking_jobs_runs_in_parallel() {
        let pool = Pool::new(16, "test");
        // One idle thread first: the case that used to serialize a burst.
        let (tx, rx) = std::sync::mpsc::channel();
        let first = tx.clone();
        pool.submit(move || first.send(true).unwrap());
        assert!(rx.recv().unwrap());
        std::thread::sleep(Duration::from_millis(20)); // the thread is idle now
        let started = Arc::new((Mutex::new(0usize), Condvar::new()));
        let all_met = Arc::new(AtomicUsize::new(0));
        for _ in 0..16 {
            let (started, all_met, tx) = (Arc::clone(&started), Arc::clone(&all_met), tx.clone());
            pool.submit(move || {
                let (count, cond) = &*started;
                let mut n = count.lock().unwrap();
                *n += 1;
                cond.notify_all();
                let until = Instant::now() + Duration::from_secs(5);
                while *n < 16 && Instant::now() < until {
                    n = cond.wait_timeout(n, until - Instant::now()).unwrap().0;
                }
                if *n == 16 {
                    all_met.fetch_add(1, Ordering::SeqCst);
                }
                tx.send(true).unwrap();
            });
        }
        for _ in 0..16 {
            rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        assert_eq!(
            all_met.load(Ordering::SeqCst),
            16,
            "the burst did not run in parallel"
        );
    }
}
