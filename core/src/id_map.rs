//! A map from ids to values, kept in id order in a ring buffer. Calls,
//! confirmed sends and pings are numbered in order and mostly answered in
//! order, so an insert lands at the back and a removal at the front, both
//! without a search; out of order, an insert or removal shifts at most the
//! entries of its bounded table. Iteration is in ascending id order, as
//! the core's traversals must be deterministic.

use std::collections::VecDeque;

/// Values by `u64` id, in ascending id order.
#[derive(Debug, Clone)]
pub(crate) struct IdMap<T> {
    slots: VecDeque<(u64, T)>,
}

impl<T> Default for IdMap<T> {
    fn default() -> Self {
        IdMap {
            slots: VecDeque::new(),
        }
    }
}

impl<T> IdMap<T> {
    /// Where `id` is (`Ok`), or where it would go (`Err`); the ends first.
    fn position(&self, id: u64) -> Result<usize, usize> {
        let len = self.slots.len();
        match (self.slots.front(), self.slots.back()) {
            (None, _) | (_, None) => Err(0),
            (_, Some(&(last, _))) if id > last => Err(len),
            (_, Some(&(last, _))) if id == last => Ok(len - 1),
            (Some(&(first, _)), _) if id == first => Ok(0),
            (Some(&(first, _)), _) if id < first => Err(0),
            (Some(&(first, _)), _) => {
                // Ids in flight are mostly consecutive: where `id` would
                // stand if none were missing is usually where it is.
                let guess = (id - first) as usize;
                match self.slots.get(guess) {
                    Some(&(k, _)) if k == id => Ok(guess),
                    _ => self.slots.binary_search_by_key(&id, |(k, _)| *k),
                }
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub(crate) fn contains_key(&self, id: u64) -> bool {
        self.position(id).is_ok()
    }

    pub(crate) fn get(&self, id: u64) -> Option<&T> {
        let at = self.position(id).ok()?;
        self.slots.get(at).map(|(_, v)| v)
    }

    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut T> {
        let at = self.position(id).ok()?;
        self.slots.get_mut(at).map(|(_, v)| v)
    }

    /// Inserts or replaces; returns the value replaced.
    pub(crate) fn insert(&mut self, id: u64, value: T) -> Option<T> {
        match self.position(id) {
            Ok(at) => Some(std::mem::replace(&mut self.slots[at].1, value)),
            Err(at) if at == self.slots.len() => {
                self.slots.push_back((id, value));
                None
            }
            Err(at) => {
                self.slots.insert(at, (id, value));
                None
            }
        }
    }

    pub(crate) fn remove(&mut self, id: u64) -> Option<T> {
        let at = self.position(id).ok()?;
        if at == 0 {
            return self.slots.pop_front().map(|(_, v)| v);
        }
        self.slots.remove(at).map(|(_, v)| v)
    }

    /// Ids present, ascending.
    pub(crate) fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.iter().map(|(k, _)| *k)
    }

    /// Removes every entry, ascending.
    pub(crate) fn take_all(&mut self) -> impl Iterator<Item = (u64, T)> {
        std::mem::take(&mut self.slots).into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::IdMap;
    use std::collections::BTreeMap;

    /// Any order of inserts and removals leaves the same map as a BTreeMap.
    #[test]
    fn behaves_as_an_ordered_map() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut ours, mut model) = (IdMap::default(), BTreeMap::new());
        for step in 0..20_000u64 {
            let id = match next() % 4 {
                0 => next() % 64,
                _ => step / 2 + next() % 3,
            };
            if next() % 3 == 0 {
                assert_eq!(ours.remove(id), model.remove(&id));
            } else {
                assert_eq!(ours.insert(id, step), model.insert(id, step));
            }
            assert_eq!(ours.get(id), model.get(&id));
            assert_eq!(ours.len(), model.len());
        }
        assert!(ours.keys().eq(model.keys().copied()));
        assert!(ours.take_all().eq(model.into_iter()));
        assert!(ours.is_empty());
    }
}
