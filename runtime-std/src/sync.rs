//! Condition variables as this runtime waits on them: by a deadline, and
//! poisoned or not (as [`lock`] takes a lock); and a stop that must not
//! wait for the thread it runs on ([`stop_off`]).

use std::sync::{Condvar, MutexGuard};
use std::time::Instant;

pub(crate) use rigwire_twin::lock;

/// Runs `stop` (of a server or service, `what`) here, or, when `own` (this
/// is one of its threads: a handler calling it, a `quit` method), on a
/// thread of its own: a stop waits for the calls in progress, and for its
/// threads, which would then be waiting for itself.
pub(crate) fn stop_off(own: bool, what: &str, stop: impl FnOnce() + Send + 'static) {
    if !own {
        return stop();
    }
    let spawned = std::thread::Builder::new()
        .name("rigwire-stop".into())
        .spawn(stop);
    if let Err(e) = spawned {
        tracing::error!("cannot start a thread to stop the {what}: {e}");
    }
}

/// Sleeps on `cond` until woken or `deadline` passes (never, for `None`);
/// the caller checks again what it waits for.
pub(crate) fn sleep<'a, T>(
    cond: &Condvar,
    g: MutexGuard<'a, T>,
    deadline: Option<Instant>,
) -> MutexGuard<'a, T> {
    match deadline {
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            cond.wait_timeout(g, left)
                .unwrap_or_else(|p| p.into_inner())
                .0
        }
        None => cond.wait(g).unwrap_or_else(|p| p.into_inner()),
    }
}

/// Sleeps on `cond` until `done` holds or `deadline` passes; returns the
/// guard and whether `done` held.
pub(crate) fn sleep_until<'a, T>(
    cond: &Condvar,
    mut g: MutexGuard<'a, T>,
    deadline: Option<Instant>,
    mut done: impl FnMut(&mut T) -> bool,
) -> (MutexGuard<'a, T>, bool) {
    loop {
        if done(&mut g) {
            return (g, true);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return (g, false);
        }
        g = sleep(cond, g, deadline);
    }
}

/// Runs `f` on every item at once, each on a thread of its own, and returns
/// the results in the items' order. The last item runs on this thread; an
/// item whose thread cannot be made runs here too, after the others have
/// started. A panic in `f` is this thread's panic.
pub(crate) fn all_at_once<I, T>(items: Vec<I>, f: impl Fn(I) -> T + Sync) -> Vec<T>
where
    I: Clone + Send,
    T: Send,
{
    let f = &f;
    std::thread::scope(|scope| {
        let mut items = items;
        let last = items.pop();
        let started: Vec<_> = items
            .into_iter()
            .map(|item| {
                let thread = std::thread::Builder::new().name("rigwire-group".into());
                let kept = item.clone();
                thread
                    .spawn_scoped(scope, move || f(item))
                    .map_err(|_| kept)
            })
            .collect();
        let last = last.map(f);
        let joined = started.into_iter().map(|started| match started {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            Err(item) => f(item),
        });
        joined.collect::<Vec<T>>().into_iter().chain(last).collect()
    })
}
