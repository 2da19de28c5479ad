//! The hash type: field → value, with its own byte count so that memory accounting
//! stays exact without walking the value.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

/// Per-field overhead charged for a hash field (two boxed slices and a table slot).
const HASH_FIELD_OVERHEAD: usize = 48;

/// Fixed charge for an empty hash (the struct, its vector and table headers).
const HASH_BASE: usize = 64;

/// A hash field: name and value.
type Field = (Box<[u8]>, Box<[u8]>);

/// A Redis hash: field → value.
///
/// Fields live in a dense vector indexed by a hash table of positions (removal swaps
/// the last field into the hole), so lookups are O(1) and a uniformly random field —
/// for HRANDFIELD — is one index away.
#[derive(Debug, Clone, Default)]
pub struct Hash {
    entries: Vec<Field>,
    index: HashTable<usize>,
    hasher: DefaultHashBuilder,
    bytes: usize,
}

impl Hash {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position(&self, field: &[u8]) -> Option<usize> {
        let entries = &self.entries;
        self.index
            .find(self.hasher.hash_one(field), |&i| &*entries[i].0 == field)
            .copied()
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        self.position(field).map(|i| &*self.entries[i].1)
    }

    pub fn contains(&self, field: &[u8]) -> bool {
        self.position(field).is_some()
    }

    /// The field and value at position `i` (0..len), in no particular order; used to
    /// pick random fields.
    pub fn at(&self, i: usize) -> Option<(&[u8], &[u8])> {
        self.entries.get(i).map(|(k, v)| (&**k, &**v))
    }

    /// Sets a field; returns true when the field is new.
    pub fn insert(&mut self, field: &[u8], value: &[u8]) -> bool {
        match self.position(field) {
            Some(i) => {
                let v = &mut self.entries[i].1;
                self.bytes = self.bytes - v.len() + value.len();
                *v = value.into();
                false
            }
            None => {
                let h = self.hasher.hash_one(field);
                self.entries.push((field.into(), value.into()));
                let (entries, hasher) = (&self.entries, &self.hasher);
                self.index
                    .insert_unique(h, entries.len() - 1, |&j| hasher.hash_one(&*entries[j].0));
                self.bytes += field.len() + value.len() + HASH_FIELD_OVERHEAD;
                true
            }
        }
    }

    pub fn remove(&mut self, field: &[u8]) -> bool {
        let h = self.hasher.hash_one(field);
        let entries = &self.entries;
        let Ok(found) = self.index.find_entry(h, |&i| &*entries[i].0 == field) else {
            return false;
        };
        let (i, _) = found.remove();
        let (f, v) = self.entries.swap_remove(i);
        self.bytes -= f.len() + v.len() + HASH_FIELD_OVERHEAD;
        if let Some((moved, _)) = self.entries.get(i) {
            // The former last field now lives at `i`.
            let last = self.entries.len();
            if let Some(pos) = self.index.find_mut(self.hasher.hash_one(&**moved), |&j| j == last) {
                *pos = i;
            }
        }
        self.shrink();
        true
    }

    /// Gives memory back after many removals.
    fn shrink(&mut self) {
        let len = self.entries.len();
        if self.entries.capacity() > 64 && len < self.entries.capacity() / 4 {
            self.entries.shrink_to(len * 2);
            let (entries, hasher) = (&self.entries, &self.hasher);
            self.index.shrink_to(len * 2, |&j| hasher.hash_one(&*entries[j].0));
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries.iter().map(|(k, v)| (&**k, &**v))
    }

    pub fn mem_size(&self) -> usize {
        self.bytes + HASH_BASE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any sequence of inserts and removes agrees with a plain map, and the byte
        /// charge always equals what the model's contents cost.
        #[test]
        fn hash_matches_a_model(ops in proptest::collection::vec((any::<bool>(), 0u8..40, 0usize..20), 0..400)) {
            let mut h = Hash::default();
            let mut model = std::collections::HashMap::<Vec<u8>, Vec<u8>>::new();
            for (insert, f, vlen) in ops {
                let field = vec![b'f'; usize::from(f)];
                if insert {
                    let value = vec![b'v'; vlen];
                    prop_assert_eq!(h.insert(&field, &value), model.insert(field, value).is_none());
                } else {
                    prop_assert_eq!(h.remove(&field), model.remove(&field).is_some());
                }
                prop_assert_eq!(h.len(), model.len());
            }
            let charge: usize = model.iter().map(|(f, v)| f.len() + v.len() + HASH_FIELD_OVERHEAD).sum();
            prop_assert_eq!(h.mem_size(), charge + HASH_BASE);
            for (f, v) in &model {
                prop_assert_eq!(h.get(f), Some(&v[..]));
            }
            prop_assert_eq!(h.iter().count(), model.len());
            for i in 0..h.len() {
                let (f, v) = h.at(i).expect("in range");
                prop_assert_eq!(model.get(f).map(|v| &v[..]), Some(v));
            }
        }
    }

    #[test]
    fn hash_accounting_is_exact_and_lookups_survive_swap_removal() {
        let mut h = Hash::default();
        let empty = h.mem_size();
        for i in 0..1000u32 {
            assert!(h.insert(format!("f{i}").as_bytes(), format!("v{i}").as_bytes()));
        }
        assert_eq!(h.len(), 1000);
        assert!(!h.insert(b"f7", b"a much longer value than before"));
        assert_eq!(h.get(b"f7"), Some(&b"a much longer value than before"[..]));
        assert!(!h.insert(b"f7", b"v7"));
        for i in (0..1000u32).step_by(2) {
            assert!(h.remove(format!("f{i}").as_bytes()));
            assert!(!h.remove(format!("f{i}").as_bytes()));
        }
        assert_eq!(h.len(), 500);
        for i in 0..1000u32 {
            let expected = format!("v{i}");
            let want = if i % 2 == 1 { Some(expected.as_bytes()) } else { None };
            assert_eq!(h.get(format!("f{i}").as_bytes()), want);
        }
        for i in 0..h.len() {
            let (f, v) = h.at(i).expect("in range");
            assert_eq!(h.get(f), Some(v));
        }
        assert!(h.at(h.len()).is_none());
        for i in (1..1000u32).step_by(2) {
            assert!(h.remove(format!("f{i}").as_bytes()));
        }
        assert!(h.is_empty());
        assert_eq!(h.mem_size(), empty);
        assert_eq!(h.iter().count(), 0);
    }
}
