//! A runtime's own arrangements for a connection, as rules written once:
//! who reads (the application's callers waiting on it, [`Callers`]), when
//! to look (the one timer a runtime keeps for it, [`Alarm`]), and how many
//! handler threads it may hold ([`PoolShare`]).

use std::time::{Duration, Instant};

use super::LINGER;

/// The application's callers waiting on one connection, as a runtime counts
/// them. While any waits, or within the linger after the last one left, a
/// caller reads for the connection (its answer and the others') and the
/// runtime's own reader keeps off the socket: a script's back-to-back calls
/// each read their own reply instead of having it handed across threads or
/// tasks.
#[derive(Debug, Clone, Default)]
pub struct Callers {
    waiting: usize,
    /// When the last waiting caller left.
    last_left: Option<Instant>,
    /// How long after the last left a caller is still expected back.
    linger: Duration,
}

impl Callers {
    /// Sets how long after the last caller left one is still expected back:
    /// [`LINGER`] for a script's client, zero for a connection that serves
    /// (its callers are the exception).
    pub fn set_linger(&mut self, linger: Duration) {
        self.linger = linger;
    }

    /// Whether callers linger: if not, the runtime's reader may read as
    /// soon as the last caller left.
    pub fn lingers(&self) -> bool {
        !self.linger.is_zero()
    }

    /// A caller starts waiting.
    pub fn enter(&mut self) {
        self.waiting += 1;
    }

    /// A caller stopped waiting. Returns `true` when it was the last: then
    /// say when with [`all_left`](Self::all_left), from which the linger
    /// runs (the clock is read only then).
    pub fn leave(&mut self) -> bool {
        self.waiting = self.waiting.saturating_sub(1);
        self.waiting == 0
    }

    /// The last waiting caller left at `now`.
    pub fn all_left(&mut self, now: Instant) {
        self.last_left = Some(now);
    }

    /// Callers waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Whether callers are active at `now` (waiting, or within the linger
    /// after the last left), and if so when the runtime's reader should look
    /// again: the linger's end, or [`LINGER`] from now while one waits (a
    /// caller may stop waiting without telling anyone). `None`: nobody reads
    /// for the connection; the runtime's reader does.
    pub fn active(&self, now: Instant) -> Option<Instant> {
        let linger_until = self.last_left.map(|t| t + self.linger).filter(|t| *t > now);
        linger_until.or_else(|| (self.waiting > 0).then(|| now + LINGER))
    }
}

/// The moment a runtime's one timer for a connection (or a relay) is set
/// for, moved only to fire sooner: a timer that fires early just makes the
/// runtime look again, while each move costs it (a new timer, a wake-up of
/// its reactor), and keepalive, the linger and calls' deadlines move with
/// every message.
#[derive(Debug, Clone, Copy, Default)]
pub struct Alarm {
    at: Option<Instant>,
}

impl Alarm {
    /// The runtime is about to wait and wants to wake at `want`: returns
    /// the moment to set its timer to when it must move (sooner than set,
    /// or not set), `None` to leave it as it is.
    pub fn arm(&mut self, want: Option<Instant>) -> Option<Instant> {
        let at = want.filter(|want| self.is_later_than(*want))?;
        self.at = Some(at);
        Some(at)
    }

    /// Whether `due` (a timer just made, a new call's deadline) comes before
    /// the alarm: then whoever waits on the alarm must be woken to move it.
    pub fn is_sooner(&self, due: Option<Instant>) -> bool {
        due.is_some_and(|due| self.is_later_than(due))
    }

    /// The timer fired: nothing is set until the next [`arm`](Self::arm).
    pub fn fired(&mut self) {
        self.at = None;
    }

    fn is_later_than(&self, t: Instant) -> bool {
        self.at.is_none_or(|at| t < at)
    }
}

/// One connection's share of a pool of handler threads shared by a server's
/// connections: it may hold at most half the pool at once, so that one
/// peer's long handlers (an hour-long notify, say) never take every thread
/// from the others. Jobs over its share wait, in order, and run on the
/// thread that finishes one of its jobs.
///
/// A handler that calls its own peer back and waits for the answer does not
/// count against the share while it waits ([`waits_on_peer`](Self::waits_on_peer)):
/// the peer's calls made to answer it (a call back to us, and so on, as deep
/// as the two sides go) would otherwise wait for a thread that only their
/// answer frees, for good. A share may then hold more threads than its
/// limit; no new job starts until it is back under it.
///
/// A handler that never returns keeps its thread for good, cancelled or
/// not. Once every thread of the share runs a call given up on a while ago
/// ([`STUCK_AFTER`](super::STUCK_AFTER)), a new call is refused at once
/// ([`stuck`](Self::stuck)) rather than left to wait out its deadline
/// behind them, silent.
#[derive(Debug)]
pub struct PoolShare<J> {
    held: usize,
    /// Of `held`, the handlers waiting for their own peer's answer.
    lent: usize,
    waiting: std::collections::VecDeque<J>,
    /// Whether [`stuck`](Self::stuck) has refused a call since a thread
    /// was last given back: the rig's log says so once, not once a call.
    refusing: bool,
}

impl<J> Default for PoolShare<J> {
    fn default() -> Self {
        PoolShare {
            held: 0,
            lent: 0,
            waiting: std::collections::VecDeque::new(),
            refusing: false,
        }
    }
}

/// Why a call is refused rather than left to wait for its connection's
/// share of the pool ([`PoolShare::stuck`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    /// What the caller is answered (`Busy`) and the rig's log says.
    pub reason: String,
    /// Whether this is the first refusal since a thread was given back:
    /// the one to log.
    pub first: bool,
}

impl Stuck {
    /// The refusal for `threads` (whose calls: `whose`), first since
    /// `refusing` was last cleared (a thread came back), which it sets.
    fn refuse(refusing: &mut bool, threads: String, whose: &str) -> Stuck {
        let first = !std::mem::replace(refusing, true);
        Stuck {
            reason: format!(
                "not started: {threads} still runs a call given up on more than {} s ago{whose} \
                 (a handler that does not return when its call is cancelled keeps its thread)",
                super::STUCK_AFTER.as_secs_f64()
            ),
            first,
        }
    }
}

/// The whole pool's part of the stuck rule ([`PoolShare`] is one
/// connection's): which connections' jobs hold its threads, keyed by `K`
/// with a handle `H` to ask each ([`Link::stuck_handlers`](super::Link::stuck_handlers)),
/// and whether a refusal has been logged since a thread came back. Once
/// every thread runs a handler stuck on a call given up on, for whichever
/// connections (closed ones too), a connection's own share may be free and
/// its calls would still wait for a thread that never comes.
#[derive(Debug)]
pub struct PoolHolders<K, H> {
    holding: std::collections::BTreeMap<K, (H, usize)>,
    held: usize,
    refusing: bool,
    /// Threads whose handler waits for its own peer ([`PoolShare::waits_on_peer`]).
    lent: usize,
    /// A handler found every thread lent since none last was.
    lend_refused: bool,
}

/// Whether a waiting handler's thread was lent ([`PoolHolders::lend`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lend {
    /// Lent: the pool may start one more thread until it is answered.
    Lent,
    /// Every thread the pool lends is lent ([`MAX_LENT_THREADS`]): the
    /// handler keeps its place. `first` for the first refusal since no
    /// thread was lent, so that it is said once, not once per handler.
    Full {
        /// The first refusal of this crowd.
        first: bool,
    },
}

/// The most threads a pool lends, beyond its own, to handlers waiting for
/// their own peer's answer ([`PoolShare::waits_on_peer`]): as many as a
/// connection's calls in progress by default (`max_incoming_calls`), so a
/// pool never grows past this many threads however deep calls back go.
/// Beyond it a waiting handler keeps its place, and calls that would need
/// one wait for a thread.
pub const MAX_LENT_THREADS: usize = 256;

impl<K, H> Default for PoolHolders<K, H> {
    fn default() -> Self {
        PoolHolders {
            holding: std::collections::BTreeMap::new(),
            held: 0,
            refusing: false,
            lent: 0,
            lend_refused: false,
        }
    }
}

impl<K: Ord, H: Clone> PoolHolders<K, H> {
    /// A thread began a job of the connection `key` (`holder`: how to ask it).
    pub fn took(&mut self, key: K, holder: H) {
        self.holding.entry(key).or_insert((holder, 0)).1 += 1;
        self.held += 1;
    }

    /// That job ended: its thread is given back.
    pub fn gave_back(&mut self, key: &K) {
        if let Some((_, n)) = self.holding.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.holding.remove(key);
            }
            self.held -= 1;
        }
        self.refusing = false;
    }

    /// A handler on one of the pool's threads waits for its own peer:
    /// whether its thread is lent (the pool may start one more), within
    /// [`MAX_LENT_THREADS`]. Given back by [`answered`](Self::answered).
    pub fn lend(&mut self) -> Lend {
        if self.lent < MAX_LENT_THREADS {
            self.lent += 1;
            return Lend::Lent;
        }
        Lend::Full {
            first: !std::mem::replace(&mut self.lend_refused, true),
        }
    }

    /// A lent thread's handler has its answer.
    pub fn answered(&mut self) {
        self.lent = self.lent.saturating_sub(1);
        if self.lent == 0 {
            self.lend_refused = false; // the crowd has gone
        }
    }

    /// How many threads the pool may run now: its own `threads` and those lent.
    pub fn threads(&self, threads: usize) -> usize {
        threads + self.lent
    }

    /// The connections to ask how many of their handlers are stuck, once
    /// every one of the pool's `threads` is held; `None` while one is free.
    pub fn when_full(&self, threads: usize) -> Option<Vec<H>> {
        (self.held >= threads).then(|| self.holding.values().map(|(h, _)| h.clone()).collect())
    }

    /// Whether a new call is refused (`Busy`, saying why), given the
    /// `stuck` handlers those connections count: when they fill all
    /// `threads`.
    pub fn stuck(&mut self, threads: usize, stuck: usize) -> Option<Stuck> {
        if stuck < threads {
            return None;
        }
        let threads = format!("every handler thread here ({threads})");
        Some(Stuck::refuse(
            &mut self.refusing,
            threads,
            ", for this connection or others",
        ))
    }
}

impl<J> PoolShare<J> {
    /// The most threads one connection may hold of a pool of `threads`.
    pub fn limit(threads: usize) -> usize {
        (threads / 2).max(1)
    }

    /// A job for the pool of `threads`: `Some(job)` to submit now (it holds
    /// a thread), `None` when the share is full (it waits its turn).
    pub fn admit(&mut self, job: J, threads: usize) -> Option<J> {
        if self.running() >= Self::limit(threads) {
            self.waiting.push_back(job);
            return None;
        }
        self.held += 1;
        Some(job)
    }

    /// A job of this connection finished on a pool thread: the next waiting
    /// one to run on that same thread, or `None` (the thread is given back;
    /// so it is while handlers that waited for their peer have taken the
    /// share over its limit again).
    pub fn finished(&mut self, threads: usize) -> Option<J> {
        if self.running() <= Self::limit(threads) {
            if let Some(next) = self.waiting.pop_front() {
                return Some(next);
            }
        }
        self.held = self.held.saturating_sub(1);
        self.refusing = false;
        None
    }

    /// A handler holding one of this share's threads (in a pool of
    /// `threads`) now waits for its own peer's answer: until
    /// [`answered`](Self::answered), its thread does not count against the
    /// share. Returns the waiting job that may start now, on a thread of
    /// its own (which it holds), if one waits.
    pub fn waits_on_peer(&mut self, threads: usize) -> Option<J> {
        self.lent += 1;
        if self.running() >= Self::limit(threads) {
            return None;
        }
        let next = self.waiting.pop_front()?;
        self.held += 1;
        Some(next)
    }

    /// The handler that [`waits_on_peer`](Self::waits_on_peer) has its
    /// answer (or gave up): its thread counts against the share again.
    pub fn answered(&mut self) {
        self.lent = self.lent.saturating_sub(1);
    }

    /// Threads of this share running handlers, not waiting for the peer.
    fn running(&self) -> usize {
        self.held.saturating_sub(self.lent)
    }

    /// Whether a new call should be answered `Busy` now instead of waiting
    /// for this share of a pool of `threads`: every thread the share may
    /// hold runs a handler stuck on a call given up on (`stuck`:
    /// [`Link::stuck_handlers`](super::Link::stuck_handlers)), so nothing
    /// says one will come back before the call's deadline. `None` while a
    /// thread is free or one runs a call still wanted (or given up on only
    /// just now).
    pub fn stuck(&mut self, threads: usize, stuck: usize) -> Option<Stuck> {
        let limit = Self::limit(threads);
        if self.running() < limit || stuck < self.held {
            return None;
        }
        let threads = format!("every handler thread this connection may hold ({limit})");
        Some(Stuck::refuse(&mut self.refusing, threads, ""))
    }

    /// Whether no job of this connection holds a thread or waits for one.
    pub fn is_idle(&self) -> bool {
        self.held == 0 && self.waiting.is_empty()
    }
}
