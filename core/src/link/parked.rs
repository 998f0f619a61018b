//! The table of parked connections a runtime keeps without a thread or
//! task each ([`PARK_AFTER`](super::PARK_AFTER)): each one's next timer, the
//! earliest first. The runtime owns the waiting (a poller, a thread); this
//! decides which connection is due and when to wake, with time passed in.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Instant;

/// Parked connections by id, each with what the runtime keeps for it (`T`)
/// and its link's next timer.
///
/// A timer moved sooner ([`poke`](Self::poke)) or a connection taken out
/// ([`take`](Self::take)) leaves its old timer behind in the queue; it is
/// recognised as stale and skipped when its instant comes, so every
/// operation is logarithmic and nothing is searched.
#[derive(Debug)]
pub struct Parked<T> {
    entries: BTreeMap<u64, (T, Option<Instant>)>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl<T> Default for Parked<T> {
    fn default() -> Self {
        Parked {
            entries: BTreeMap::new(),
            timers: BinaryHeap::new(),
        }
    }
}

impl<T> Parked<T> {
    /// Parks connection `id` with its next timer. Returns whether that timer
    /// is now the earliest: wake the waiting runtime, which sleeps for a
    /// later one.
    pub fn insert(&mut self, id: u64, value: T, wake_at: Option<Instant>) -> bool {
        self.entries.insert(id, (value, wake_at));
        let Some(at) = wake_at else {
            return false;
        };
        self.timers.push(Reverse((at, id)));
        self.timers
            .peek()
            .is_some_and(|Reverse(first)| first.1 == id)
    }

    /// Connection `id`'s link must be looked at by `at` (a command gave it a
    /// sooner timer, or closed it: `at` is then now). Returns whether its
    /// timer moved sooner: wake the waiting runtime. `false` also when `id`
    /// is not parked (whoever holds it looks anyway).
    pub fn poke(&mut self, id: u64, at: Instant) -> bool {
        let Some((_, wake_at)) = self.entries.get_mut(&id) else {
            return false;
        };
        if wake_at.is_some_and(|t| t <= at) {
            return false;
        }
        *wake_at = Some(at);
        self.timers.push(Reverse((at, id)));
        true
    }

    /// Takes connection `id` out (its socket spoke, or it is resumed).
    pub fn take(&mut self, id: u64) -> Option<T> {
        self.entries.remove(&id).map(|(value, _)| value)
    }

    /// Takes out every connection whose timer is due at `now`.
    pub fn take_due(&mut self, now: Instant) -> Vec<(u64, T)> {
        let mut due = Vec::new();
        while let Some(&Reverse((at, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.entries.get(&id).is_some_and(|(_, t)| *t == Some(at)) {
                let (value, _) = self.entries.remove(&id).expect("just seen");
                due.push((id, value));
            }
        }
        due
    }

    /// The earliest timer of a parked connection: when to wake at the latest.
    pub fn next_wake(&self) -> Option<Instant> {
        // A stale head only wakes the runtime early, to find nothing due.
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Takes out every parked connection.
    pub fn take_all(&mut self) -> Vec<(u64, T)> {
        self.timers.clear();
        std::mem::take(&mut self.entries)
            .into_iter()
            .map(|(id, (value, _))| (id, value))
            .collect()
    }
}
