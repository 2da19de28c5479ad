//! The hash type: field → value, with its own byte count so that memory accounting
//! stays exact without walking the value.
//!
//! Two forms, as in Redis: a small hash (at most `hash-max-listpack-entries` fields,
//! none longer than `hash-max-listpack-value` bytes, field or value) is *packed*:
//! its fields and values back to back in one buffer, in insertion order, each after
//! its length, and found by a scan (`OBJECT ENCODING` says `listpack`). A hash that
//! outgrows either limit becomes a *table* (`hashtable`) for good, as in Redis.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

/// Per-field overhead charged for a table field (two boxed slices and a table slot).
const HASH_FIELD_OVERHEAD: usize = 48;

/// Fixed charge for an empty table hash (the struct, its vector and table headers).
const HASH_BASE: usize = 64;

/// Fixed charge for a packed hash (the struct and its buffer's header).
const PACKED_BASE: usize = 40;

/// A hash field: name and value.
type Field = (Box<[u8]>, Box<[u8]>);

/// When a hash stays packed: Redis' `hash-max-listpack-entries` and
/// `hash-max-listpack-value` (store/encoding.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashLimits {
    pub entries: usize,
    pub value: usize,
}

impl Default for HashLimits {
    /// Redis 7.0's defaults.
    fn default() -> HashLimits {
        HashLimits {
            entries: 512,
            value: 64,
        }
    }
}

/// A Redis hash: field → value.
#[derive(Debug, Clone)]
pub struct Hash {
    repr: Repr,
}

impl Default for Hash {
    fn default() -> Hash {
        Hash {
            repr: Repr::Packed(Packed::default()),
        }
    }
}

#[derive(Debug, Clone)]
enum Repr {
    Packed(Packed),
    Table(Table),
}

impl Hash {
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Packed(p) => p.len,
            Repr::Table(t) => t.entries.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `OBJECT ENCODING`'s name for the form.
    pub fn encoding(&self) -> &'static str {
        match &self.repr {
            Repr::Packed(_) => "listpack",
            Repr::Table(_) => "hashtable",
        }
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        match &self.repr {
            Repr::Packed(p) => p.find(field).map(|f| &p.buf[f.value.0..f.value.1]),
            Repr::Table(t) => t.get(field),
        }
    }

    pub fn contains(&self, field: &[u8]) -> bool {
        self.get(field).is_some()
    }

    /// The field and value at position `i` (0..len), in no particular order; used to
    /// pick random fields.
    pub fn at(&self, i: usize) -> Option<(&[u8], &[u8])> {
        match &self.repr {
            Repr::Packed(p) => p.iter().nth(i),
            Repr::Table(t) => t.entries.get(i).map(|(k, v)| (&**k, &**v)),
        }
    }

    /// Sets a field; returns true when the field is new. A packed hash stays packed
    /// within Redis' default limits.
    pub fn insert(&mut self, field: &[u8], value: &[u8]) -> bool {
        self.insert_within(field, value, HashLimits::default())
    }

    /// Sets a field, turning a packed hash into a table when it would outgrow `limits`;
    /// returns true when the field is new.
    pub fn insert_within(&mut self, field: &[u8], value: &[u8], limits: HashLimits) -> bool {
        if let Repr::Packed(p) = &mut self.repr {
            let fits = field.len() <= limits.value && value.len() <= limits.value;
            if fits && (p.len < limits.entries || p.find(field).is_some()) {
                return p.insert(field, value);
            }
            let mut t = Table::default();
            for (f, v) in p.iter() {
                t.insert(f, v);
            }
            self.repr = Repr::Table(t);
        }
        match &mut self.repr {
            Repr::Table(t) => t.insert(field, value),
            Repr::Packed(_) => false,
        }
    }

    pub fn remove(&mut self, field: &[u8]) -> bool {
        match &mut self.repr {
            Repr::Packed(p) => p.remove(field),
            Repr::Table(t) => t.remove(field),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let (packed, table) = match &self.repr {
            Repr::Packed(p) => (Some(p.iter()), None),
            Repr::Table(t) => (None, Some(t.entries.iter().map(|(k, v)| (&**k, &**v)))),
        };
        packed.into_iter().flatten().chain(table.into_iter().flatten())
    }

    pub fn mem_size(&self) -> usize {
        match &self.repr {
            Repr::Packed(p) => PACKED_BASE + p.buf.len(),
            Repr::Table(t) => t.bytes + HASH_BASE,
        }
    }
}

/// Bytes [`put_len`] takes for `n`.
fn len_bytes(n: usize) -> usize {
    (usize::BITS - n.leading_zeros()).max(1).div_ceil(7) as usize
}

fn put_len(buf: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

/// A length at `at`: (length, bytes it took). Malformed input reads as what is there.
fn get_len(buf: &[u8], at: usize) -> (usize, usize) {
    let (mut n, mut shift, mut i) = (0usize, 0u32, at);
    while let Some(&b) = buf.get(i) {
        n |= usize::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
        i += 1;
        if b & 0x80 == 0 || shift > 56 {
            break;
        }
        shift += 7;
    }
    (n, i - at)
}

/// Where one packed field is: the whole pair, and its value, as byte ranges.
struct Found {
    start: usize,
    end: usize,
    value: (usize, usize),
}

/// The packed form: `len(field) field len(value) value …` in insertion order. Its
/// buffer is kept exactly as long as its contents (the charge is what is allocated).
#[derive(Debug, Clone, Default)]
struct Packed {
    buf: Vec<u8>,
    len: usize,
}

impl Packed {
    /// The pairs with their byte ranges, in order.
    fn pairs(&self) -> impl Iterator<Item = (usize, (usize, usize), (usize, usize))> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            if at >= self.buf.len() {
                return None;
            }
            let start = at;
            let (flen, n) = get_len(&self.buf, at);
            let field = (at + n, (at + n + flen).min(self.buf.len()));
            let (vlen, m) = get_len(&self.buf, field.1);
            let value = (field.1 + m, (field.1 + m + vlen).min(self.buf.len()));
            at = value.1;
            Some((start, field, value))
        })
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.pairs().map(|(_, f, v)| (&self.buf[f.0..f.1], &self.buf[v.0..v.1]))
    }

    fn find(&self, field: &[u8]) -> Option<Found> {
        self.pairs()
            .find(|(_, f, _)| &self.buf[f.0..f.1] == field)
            .map(|(start, _, value)| Found {
                start,
                end: value.1,
                value,
            })
    }

    fn insert(&mut self, field: &[u8], value: &[u8]) -> bool {
        match self.find(field) {
            Some(found) => {
                // In place, so a replaced field keeps its position (as in Redis): the
                // buffer up to the old value's length, the new value, the rest.
                let value_at = found.value.0 - len_bytes(found.value.1 - found.value.0);
                let rest = &self.buf[found.end..];
                let mut buf = Vec::with_capacity(value_at + len_bytes(value.len()) + value.len() + rest.len());
                buf.extend_from_slice(&self.buf[..value_at]);
                put_len(&mut buf, value.len());
                buf.extend_from_slice(value);
                buf.extend_from_slice(rest);
                self.buf = buf;
                false
            }
            None => {
                self.buf
                    .reserve_exact(len_bytes(field.len()) + field.len() + len_bytes(value.len()) + value.len());
                put_len(&mut self.buf, field.len());
                self.buf.extend_from_slice(field);
                put_len(&mut self.buf, value.len());
                self.buf.extend_from_slice(value);
                self.len += 1;
                true
            }
        }
    }

    fn remove(&mut self, field: &[u8]) -> bool {
        let Some(found) = self.find(field) else {
            return false;
        };
        self.buf.drain(found.start..found.end);
        self.buf.shrink_to_fit();
        self.len -= 1;
        true
    }
}

/// The table form: fields in a dense vector indexed by a hash table of positions
/// (removal swaps the last field into the hole), so lookups are O(1) and a uniformly
/// random field — for HRANDFIELD — is one index away.
#[derive(Debug, Clone, Default)]
struct Table {
    entries: Vec<Field>,
    index: HashTable<usize>,
    hasher: DefaultHashBuilder,
    bytes: usize,
}

impl Table {
    fn position(&self, field: &[u8]) -> Option<usize> {
        let entries = &self.entries;
        self.index
            .find(self.hasher.hash_one(field), |&i| &*entries[i].0 == field)
            .copied()
    }

    fn get(&self, field: &[u8]) -> Option<&[u8]> {
        self.position(field).map(|i| &*self.entries[i].1)
    }

    fn insert(&mut self, field: &[u8], value: &[u8]) -> bool {
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

    fn remove(&mut self, field: &[u8]) -> bool {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a hash of these contents is charged in its form.
    fn charge(h: &Hash, model: &std::collections::HashMap<Vec<u8>, Vec<u8>>) -> usize {
        let varint = |n: usize| {
            let mut v = Vec::new();
            put_len(&mut v, n);
            v.len()
        };
        match h.encoding() {
            "listpack" => {
                PACKED_BASE
                    + model
                        .iter()
                        .map(|(f, v)| varint(f.len()) + f.len() + varint(v.len()) + v.len())
                        .sum::<usize>()
            }
            _ => {
                HASH_BASE
                    + model
                        .iter()
                        .map(|(f, v)| f.len() + v.len() + HASH_FIELD_OVERHEAD)
                        .sum::<usize>()
            }
        }
    }

    proptest! {
        /// Any sequence of inserts and removes agrees with a plain map in either form,
        /// the byte charge always equals what the model's contents cost in the form the
        /// hash is in, and a hash is packed exactly while it never outgrew the limits.
        #[test]
        fn hash_matches_a_model(
            ops in proptest::collection::vec((any::<bool>(), 0u8..40, 0usize..200), 0..400),
            entries in 0usize..40,
            value in 0usize..150,
        ) {
            let limits = HashLimits { entries, value };
            let mut h = Hash::default();
            let mut model = std::collections::HashMap::<Vec<u8>, Vec<u8>>::new();
            let mut outgrew = false;
            for (insert, f, vlen) in ops {
                let field = vec![b'f'; usize::from(f)];
                if insert {
                    let v = vec![b'v'; vlen];
                    let new = !model.contains_key(&field);
                    outgrew |= field.len() > value || v.len() > value || (new && model.len() >= entries);
                    prop_assert_eq!(h.insert_within(&field, &v, limits), model.insert(field, v).is_none());
                } else {
                    prop_assert_eq!(h.remove(&field), model.remove(&field).is_some());
                }
                prop_assert_eq!(h.len(), model.len());
                prop_assert_eq!(h.encoding(), if outgrew { "hashtable" } else { "listpack" });
                prop_assert_eq!(h.mem_size(), charge(&h, &model));
            }
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
    fn a_packed_hash_keeps_insertion_order_and_replaced_fields_keep_their_place() {
        let mut h = Hash::default();
        for f in ["c", "a", "b"] {
            assert!(h.insert(f.as_bytes(), b"1"));
        }
        assert!(!h.insert(b"a", b"a longer value"));
        assert!(h.remove(b"c"));
        let order: Vec<(&[u8], &[u8])> = h.iter().collect();
        assert_eq!(order, vec![(&b"a"[..], &b"a longer value"[..]), (&b"b"[..], &b"1"[..])]);
        assert_eq!(h.encoding(), "listpack");
        // Two short fields cost their bytes and a length byte each, not a table's.
        assert_eq!(h.mem_size(), PACKED_BASE + (1 + 1 + 1 + 14) + (1 + 1 + 1 + 1));
    }

    #[test]
    fn hash_accounting_is_exact_and_lookups_survive_swap_removal() {
        let mut h = Hash::default();
        // A table from the first field on.
        let table = HashLimits { entries: 0, value: 0 };
        assert!(h.insert_within(b"f0", b"v0", table));
        assert!(h.remove(b"f0"));
        let empty = h.mem_size();
        assert_eq!(empty, HASH_BASE);
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
