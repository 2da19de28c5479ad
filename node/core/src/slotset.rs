//! [`SlotSet`]: a set of hash slots as a 16384-bit bitmap.

use crate::slot::{Slot, SLOT_COUNT};
use crate::topology::{ranges_from_slots, SlotRange};

/// A set of hash slots (a bitmap).
#[derive(Clone, PartialEq, Eq)]
pub struct SlotSet(Box<[u64; SLOT_COUNT / 64]>);

impl std::fmt::Debug for SlotSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SlotSet({} slots)", self.len())
    }
}

impl Default for SlotSet {
    fn default() -> Self {
        SlotSet::empty()
    }
}

impl SlotSet {
    pub fn empty() -> SlotSet {
        SlotSet(Box::new([0; SLOT_COUNT / 64]))
    }

    pub fn all() -> SlotSet {
        SlotSet(Box::new([u64::MAX; SLOT_COUNT / 64]))
    }

    pub fn insert(&mut self, slot: Slot) {
        if let Some(w) = self.0.get_mut(usize::from(slot) / 64) {
            *w |= 1 << (slot % 64);
        }
    }

    /// Adds every slot of `range`.
    pub fn insert_range(&mut self, range: SlotRange) {
        for slot in range.iter() {
            self.insert(slot);
        }
    }

    /// Adds every slot of `other`.
    pub fn union_with(&mut self, other: &SlotSet) {
        for (w, o) in self.0.iter_mut().zip(other.0.iter()) {
            *w |= *o;
        }
    }

    pub fn remove(&mut self, slot: Slot) {
        if let Some(w) = self.0.get_mut(usize::from(slot) / 64) {
            *w &= !(1 << (slot % 64));
        }
    }

    /// Removes every slot of `other`.
    pub fn difference_with(&mut self, other: &SlotSet) {
        for (w, o) in self.0.iter_mut().zip(other.0.iter()) {
            *w &= !*o;
        }
    }

    /// Whether every slot of `self` is in `other`.
    pub fn is_subset(&self, other: &SlotSet) -> bool {
        self.0.iter().zip(other.0.iter()).all(|(w, o)| w & !o == 0)
    }

    pub fn contains(&self, slot: Slot) -> bool {
        self.0
            .get(usize::from(slot) / 64)
            .is_some_and(|w| w & (1 << (slot % 64)) != 0)
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// The slots in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = Slot> + '_ {
        (0..SLOT_COUNT as u32).map(|s| s as Slot).filter(|&s| self.contains(s))
    }

    /// The slots as merged ranges.
    pub fn ranges(&self) -> Vec<SlotRange> {
        ranges_from_slots(self.iter())
    }
}

impl FromIterator<Slot> for SlotSet {
    fn from_iter<I: IntoIterator<Item = Slot>>(iter: I) -> Self {
        let mut set = SlotSet::empty();
        for slot in iter {
            set.insert(slot);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_sets() {
        let mut s = SlotSet::empty();
        assert!(s.is_empty());
        s.insert(0);
        s.insert(16383);
        s.insert(64);
        assert!(s.contains(0) && s.contains(64) && s.contains(16383) && !s.contains(1));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 64, 16383]);
        assert_eq!(SlotSet::all().len(), SLOT_COUNT);
        let mut t: SlotSet = [1, 2, 3].into_iter().collect();
        t.insert_range(SlotRange::new(10, 12));
        t.union_with(&s);
        assert_eq!(t.len(), 9);
        assert_eq!(
            t.ranges(),
            vec![
                SlotRange::new(0, 3),
                SlotRange::new(10, 12),
                SlotRange::new(64, 64),
                SlotRange::new(16383, 16383)
            ]
        );
    }

    #[test]
    fn remove_difference_and_subset() {
        let mut a: SlotSet = [1, 2, 3, 100].into_iter().collect();
        let b: SlotSet = [2, 100].into_iter().collect();
        assert!(b.is_subset(&a) && !a.is_subset(&b));
        a.difference_with(&b);
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![1, 3]);
        a.remove(3);
        a.remove(3);
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![1]);
        assert!(SlotSet::empty().is_subset(&a));
    }
}
