//! Idle server connections without a thread. A connection's thread costs
//! more resident memory than everything else it holds, and a lab server's
//! connections are idle most of the time. Once a connection has been idle
//! for [`PARK_AFTER`], its thread hands it to the server's [`Parker`] and
//! ends. One thread per server then watches every parked socket (epoll) and
//! the earliest timer of each link:
//!
//! * input that leaves the connection idle (a keepalive ping or pong, an
//!   answer to a call of ours) is read and fed here, and it stays parked;
//! * a timer that leaves it idle (a keepalive ping to send) is run here;
//! * anything else — a call to run, the socket full, the connection closing,
//!   a caller of ours waiting — gives it a thread again ([`Resume`]), which
//!   first does the work the link queued.
//!
//! Lock order: a connection's state, then the parker's table; the parker
//! never holds its table while it takes a connection's state.
//!
//! Parking needs epoll; elsewhere [`Parker::start`] declines and every
//! connection keeps its thread.
//!
//! [`PARK_AFTER`]: rigwire_core::link::PARK_AFTER

use std::sync::Arc;

use crate::driver::Shared;

/// Gives a parked connection a thread again: called with its id and what
/// to drive. Runs on the parker's thread; must not block.
pub(crate) type Resume = Box<dyn Fn(u64, Arc<Shared>) + Send + Sync>;

#[cfg(target_os = "linux")]
pub(crate) use epoll::Parker;

#[cfg(not(target_os = "linux"))]
pub(crate) use fallback::Parker;

#[cfg(target_os = "linux")]
mod epoll {
    use std::os::fd::{AsFd, OwnedFd};
    use std::sync::{Arc, Mutex};

    use crate::sync::lock;
    use std::thread::JoinHandle;
    use std::time::Instant;

    use rigwire_core::link::Parked;
    use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
    use rustix::event::{eventfd, EventfdFlags, Timespec};

    use super::Resume;
    use crate::driver::Shared;

    /// The key of the parker's own wake-up descriptor.
    const WAKE_KEY: u64 = u64::MAX;

    /// The server's parked connections, and the thread that watches them.
    /// Cheap to clone; every clone is the same parker.
    #[derive(Clone)]
    pub(crate) struct Parker {
        inner: Arc<Inner>,
    }

    struct Inner {
        epoll: OwnedFd,
        /// Written to wake the thread: a sooner timer, or stop.
        wake: OwnedFd,
        table: Mutex<Table>,
        resume: Resume,
        thread: Mutex<Option<JoinHandle<()>>>,
    }

    #[derive(Default)]
    struct Table {
        parked: Parked<Arc<Shared>>,
        stopping: bool,
    }

    impl Parker {
        /// Starts a parker and its thread; `None` if the system refuses
        /// (then connections keep their threads).
        pub(crate) fn start(resume: Resume) -> Option<Parker> {
            let epoll = epoll::create(CreateFlags::CLOEXEC).ok()?;
            let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).ok()?;
            epoll::add(&epoll, &wake, EventData::new_u64(WAKE_KEY), EventFlags::IN).ok()?;
            let parker = Parker {
                inner: Arc::new(Inner {
                    epoll,
                    wake,
                    table: Mutex::new(Table::default()),
                    resume,
                    thread: Mutex::new(None),
                }),
            };
            let inner = Arc::clone(&parker.inner);
            let thread = std::thread::Builder::new()
                .name("rigwire-parker".into())
                .spawn(move || inner.run())
                .ok()?;
            *lock(&parker.inner.thread) = Some(thread);
            Some(parker)
        }

        /// Takes connection `id`, idle, from its thread (which then ends);
        /// called with its state locked. `false` if the parker is stopping
        /// or cannot watch the socket: the thread keeps it.
        pub(crate) fn park(&self, id: u64, shared: &Arc<Shared>, wake_at: Option<Instant>) -> bool {
            let mut table = lock(&self.inner.table);
            if table.stopping || !self.inner.watch(id, shared) {
                return false;
            }
            if table.parked.insert(id, Arc::clone(shared), wake_at) {
                self.inner.wake_thread(); // sooner than the thread sleeps for
            }
            true
        }

        /// A parked connection's link changed under a command (a sooner
        /// timer, or it closed: `at` is then now): look at it by `at`.
        pub(crate) fn poke(&self, id: u64, at: Instant) {
            // Not in the table: in the parker's hands, which looks anyway.
            if lock(&self.inner.table).parked.poke(id, at) {
                self.inner.wake_thread();
            }
        }

        /// Gives every parked connection its thread back and ends the
        /// parker's thread; later [`park`](Self::park)s are refused.
        pub(crate) fn stop(&self) {
            lock(&self.inner.table).stopping = true;
            self.inner.wake_thread();
            let thread = lock(&self.inner.thread).take();
            if let Some(thread) = thread {
                let _ = thread.join();
            }
        }
    }

    impl Inner {
        /// Arms (or re-arms) the socket of `id`: one readiness, then it is
        /// disarmed until armed again.
        fn watch(&self, id: u64, shared: &Shared) -> bool {
            let flags = EventFlags::IN | EventFlags::RDHUP | EventFlags::ONESHOT;
            let data = EventData::new_u64(id);
            let socket = shared.socket();
            epoll::modify(&self.epoll, socket.as_fd(), data, flags).is_ok()
                || epoll::add(&self.epoll, socket.as_fd(), data, flags).is_ok()
        }

        fn wake_thread(&self) {
            let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
        }

        /// The parker's thread: waits for a parked socket to be readable or
        /// a parked link's timer, and looks at that connection.
        fn run(self: Arc<Self>) {
            let mut events = Vec::with_capacity(256);
            loop {
                let next = {
                    let mut table = lock(&self.table);
                    if table.stopping {
                        let all = table.parked.take_all();
                        drop(table);
                        for (id, shared) in all {
                            (self.resume)(id, shared);
                        }
                        return;
                    }
                    let due = table.parked.take_due(Instant::now());
                    if !due.is_empty() {
                        drop(table);
                        for (id, shared) in due {
                            self.look(id, shared, false);
                        }
                        continue;
                    }
                    table.parked.next_wake()
                };
                let timeout = next
                    .map(|at| Timespec::try_from(at.saturating_duration_since(Instant::now())))
                    .and_then(Result::ok);
                events.clear();
                let waited = epoll::wait(
                    &self.epoll,
                    rustix::buffer::spare_capacity(&mut events),
                    timeout.as_ref(),
                );
                if let Err(e) = waited {
                    if e != rustix::io::Errno::INTR {
                        tracing::error!("the parker cannot wait for its sockets: {e}");
                        std::thread::sleep(rigwire_core::link::RETRY_AFTER);
                    }
                    continue;
                }
                for event in events.iter() {
                    let id = event.data.u64();
                    if id == WAKE_KEY {
                        let _ = rustix::io::read(&self.wake, &mut [0u8; 8]);
                    } else {
                        // Out of the table first: `look` takes the table again.
                        let taken = lock(&self.table).parked.take(id);
                        if let Some(shared) = taken {
                            self.look(id, shared, true);
                        }
                    }
                }
            }
        }

        /// Lets connection `id` (taken out of the table) read, if
        /// `readable`, and run its timers; it parks itself again (under its own lock, so
        /// that no command in between goes unseen) or gets a thread.
        fn look(&self, id: u64, shared: Arc<Shared>, readable: bool) {
            let stays = shared.parked_step(readable, |wake_at| {
                let mut table = lock(&self.table);
                if table.stopping || !self.watch(id, &shared) {
                    return false;
                }
                // Its timer is the earliest only if it moved sooner, and
                // this thread recomputes its sleep after the look anyway.
                table.parked.insert(id, Arc::clone(&shared), wake_at);
                true
            });
            if !stays {
                (self.resume)(id, shared);
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod fallback {
    use std::sync::Arc;
    use std::time::Instant;

    use super::Resume;
    use crate::driver::Shared;

    /// Without epoll nothing is parked: every connection keeps its thread.
    #[derive(Clone)]
    pub(crate) struct Parker;

    impl Parker {
        /// Declines: no parking on this system.
        pub(crate) fn start(_resume: Resume) -> Option<Parker> {
            None
        }
        pub(crate) fn park(&self, _: u64, _: &Arc<Shared>, _: Option<Instant>) -> bool {
            false
        }
        pub(crate) fn poke(&self, _: u64, _: Instant) {}
        pub(crate) fn stop(&self) {}
    }
}
