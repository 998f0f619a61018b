//! The bounded tables that track work in flight: our calls awaiting answers,
//! the peer's calls being handled, confirmed sends awaiting echoes and pings
//! awaiting pongs. One structure serves all four.
//!
//! A full table refuses new entries; it never grows past its capacity. Ordered
//! maps keep every traversal deterministic (no hash seeds in the core).

use std::collections::BTreeSet;
use std::time::Instant;

use crate::id_map::IdMap;

/// Why an entry was not inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InsertError {
    /// The table holds `capacity` entries already.
    #[error("the table is full")]
    Full,
    /// The key is already present.
    #[error("the id is already in the table")]
    Duplicate,
}

/// A bounded table of in-flight entries keyed by id, each with an optional deadline.
#[derive(Debug, Clone)]
pub struct CallTable<T> {
    entries: IdMap<(Option<Instant>, T)>,
    deadlines: BTreeSet<(Instant, u64)>,
    capacity: usize,
}

impl<T> CallTable<T> {
    /// An empty table holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        CallTable {
            entries: IdMap::default(),
            deadlines: BTreeSet::new(),
            capacity,
        }
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The most entries the table holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether `id` is present.
    pub fn contains(&self, id: u64) -> bool {
        self.entries.contains_key(id)
    }

    /// The entry for `id`.
    pub fn get(&self, id: u64) -> Option<&T> {
        self.entries.get(id).map(|(_, v)| v)
    }

    /// The entry for `id`, mutably.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut T> {
        self.entries.get_mut(id).map(|(_, v)| v)
    }

    /// The deadline of the entry for `id`, if it has one.
    pub fn deadline(&self, id: u64) -> Option<Instant> {
        self.entries.get(id).and_then(|(d, _)| *d)
    }

    /// Adds an entry.
    ///
    /// # Errors
    /// [`InsertError::Full`] at capacity, [`InsertError::Duplicate`] if `id` is present.
    pub fn insert(
        &mut self,
        id: u64,
        deadline: Option<Instant>,
        value: T,
    ) -> Result<(), InsertError> {
        if self.entries.contains_key(id) {
            return Err(InsertError::Duplicate);
        }
        if self.entries.len() >= self.capacity {
            return Err(InsertError::Full);
        }
        if let Some(at) = deadline {
            self.deadlines.insert((at, id));
        }
        self.entries.insert(id, (deadline, value));
        Ok(())
    }

    /// Removes and returns the entry for `id`.
    pub fn remove(&mut self, id: u64) -> Option<T> {
        let (deadline, value) = self.entries.remove(id)?;
        if let Some(at) = deadline {
            self.deadlines.remove(&(at, id));
        }
        Some(value)
    }

    /// The earliest deadline of any entry.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Removes and returns one entry whose deadline is at or before `now`,
    /// earliest first.
    pub fn pop_expired(&mut self, now: Instant) -> Option<(u64, T)> {
        let &(at, id) = self.deadlines.first()?;
        if at > now {
            return None;
        }
        self.deadlines.pop_first();
        self.entries.remove(id).map(|(_, v)| (id, v))
    }

    /// Removes every entry, in ascending id order.
    pub fn drain(&mut self) -> impl Iterator<Item = (u64, T)> {
        self.deadlines.clear();
        self.entries.take_all().map(|(id, (_, v))| (id, v))
    }

    /// Ids present, ascending.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.entries.keys()
    }
}
