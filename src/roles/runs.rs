//! A map from slots to a small value, stored as runs of consecutive slots sharing it:
//! what the acceptor keeps of slots whose values left memory (their ballots), and where
//! its log finds a slot's record (the record's offset). One entry per run, so a million
//! slots accepted in batches cost a few thousand entries.

use crate::messages::Slot;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Runs<T> {
    /// First slot of a run -> (end slot, exclusive; value). Runs never overlap.
    runs: BTreeMap<Slot, (Slot, T)>,
}

impl<T: Copy + Eq> Runs<T> {
    pub fn new() -> Self {
        Runs { runs: BTreeMap::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// How many slots the runs cover.
    pub fn slots(&self) -> u64 {
        self.runs.iter().map(|(first, (end, _))| end - first).sum()
    }

    /// Maps `[first, end)` to `value`, replacing whatever covered those slots.
    pub fn insert(&mut self, first: Slot, end: Slot, value: T) {
        if first >= end {
            return;
        }
        self.remove(first, end);
        match self.runs.range_mut(..first).next_back() {
            Some((_, (prev_end, v))) if *prev_end == first && *v == value => *prev_end = end,
            _ => {
                self.runs.insert(first, (end, value));
            }
        }
    }

    /// Unmaps `[first, end)`; returns the value of the last slot that was mapped.
    pub fn remove(&mut self, first: Slot, end: Slot) -> Option<T> {
        if self.runs.range(..end).next_back().is_none_or(|(_, (e, _))| *e <= first) {
            return None; // Nothing there: the common case of writing above every run.
        }
        let start = self.runs.range(..first).next_back().map_or(first, |(s, _)| *s);
        let hit: Vec<_> = self.runs.range(start..end).map(|(s, r)| (*s, *r)).collect();
        let mut last = None;
        for (s, (e, v)) in hit {
            if e <= first {
                continue;
            }
            self.runs.remove(&s);
            if s < first {
                self.runs.insert(s, (first, v));
            }
            if e > end {
                self.runs.insert(end, (e, v));
            }
            last = Some(v);
        }
        last
    }

    /// The value of `slot`, with the first slot of its run.
    pub fn get(&self, slot: Slot) -> Option<(Slot, T)> {
        let (first, (end, v)) = self.runs.range(..=slot).next_back()?;
        (slot < *end).then_some((*first, *v))
    }

    /// The mapped ranges `[first, end)` from `from` on, in order (the first one clipped).
    pub fn ranges_from(&self, from: Slot) -> impl Iterator<Item = (Slot, Slot, T)> + '_ {
        let before = self.runs.range(..from).next_back().filter(|(_, (end, _))| *end > from);
        let before = before.map(|(_, (end, v))| (from, *end, *v));
        before
            .into_iter()
            .chain(self.runs.range(from..).map(|(s, (e, v))| (*s, *e, *v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_split_and_replace() {
        let mut r = Runs::new();
        for slot in 0..10 {
            r.insert(slot, slot + 1, 'a');
        }
        assert_eq!(r.runs.len(), 1, "adjacent slots with one value make one run");
        r.insert(3, 5, 'b');
        assert_eq!(
            r.ranges_from(0).collect::<Vec<_>>(),
            vec![(0, 3, 'a'), (3, 5, 'b'), (5, 10, 'a')]
        );
        assert_eq!(r.get(4), Some((3, 'b')));
        assert_eq!(r.get(10), None);
        assert_eq!(r.remove(2, 6), Some('a'), "the value of slot 5");
        assert_eq!(r.ranges_from(1).collect::<Vec<_>>(), vec![(1, 2, 'a'), (6, 10, 'a')]);
        assert_eq!(r.slots(), 6);
        assert_eq!(r.remove(20, 30), None);
    }
}
