//! A slot's index: an open-addressing hash table of 32-bit arena handles.
//!
//! One byte allocation of `cap` little-endian handles followed by `cap` tag bytes
//! (alignment 1: mimalloc serves an aligned request that misses its fast path from a
//! larger size class), held as `cap` 5-byte buckets so that the boxed slice's length
//! is the capacity and the table header is 24 bytes. A tag is `0x80 | 7 hash bits`
//! for a used bucket, `EMPTY` or `TOMB`. Lookups probe linearly from the hash's home
//! bucket, comparing tags and calling the key comparison only on a tag match.
//!
//! The table grows at 13/16 load to the smallest allocation of 2^k or 1.5 × 2^k bytes
//! (each an allocator size class, filled with buckets) at most 5/8 full, so a slot of
//! 61 keys costs about 6.2 bytes per key (a `hashbrown` table of 4-byte items would
//! use 128 buckets of 5 bytes, 10.5 bytes per key, in a 768-byte block). Growing
//! leaves the old allocation's size class with holes that other slots' tables fill
//! only while they still grow into it; with the steps of 1.33× and 1.5× of these
//! sizes, the tables of 1M keys over 16384 slots (61 each) end up in the 384- and
//! 512-byte classes. No `unsafe` code.

/// A bucket never used since the last rebuild: probing stops here.
const EMPTY: u8 = 0;
/// A removed entry: probing continues past it; inserts may reuse it.
const TOMB: u8 = 1;
const MIN_CAP: usize = 8;

fn tag_of(hash: u64) -> u8 {
    0x80 | (hash >> 57) as u8
}

/// Bytes of the allocator size class for `bytes` (mimalloc: 8-byte steps up to 64,
/// then four classes per power of two).
#[cfg(test)]
fn size_class(bytes: usize) -> usize {
    if bytes <= 64 {
        return bytes.div_ceil(8) * 8;
    }
    let hi = usize::BITS - 1 - (bytes - 1).leading_zeros();
    let step = 1usize << (hi - 2);
    bytes.div_ceil(step) * step
}

/// Capacity for `n` keys: `MIN_CAP`, or the buckets of the smallest allocation of
/// 2^k or 1.5 × 2^k bytes that holds `n` keys at a load of at most 5/8.
fn capacity_for(n: usize) -> usize {
    if n * 8 <= MIN_CAP * 5 {
        return MIN_CAP;
    }
    let mut bytes = 32usize;
    loop {
        for size in [bytes / 2 * 3, bytes * 2] {
            let cap = size / 5;
            if n * 8 <= cap * 5 {
                return cap;
            }
        }
        bytes *= 2;
    }
}

#[derive(Default)]
pub(super) struct HandleTable {
    /// `cap` buckets of 5 bytes: as bytes, `cap` handles (4 bytes each), then `cap`
    /// tags.
    data: Box<[[u8; 5]]>,
    /// Used buckets (a slot's keys fit in 32 bits: so do its arena's handles).
    len: u32,
    tombs: u32,
}

impl HandleTable {
    /// Starts loading the tag and handle of `hash`'s home bucket (see `arena::prefetch`).
    pub(super) fn prefetch(&self, hash: u64) {
        if self.cap() == 0 {
            return;
        }
        let i = self.home(hash);
        if let Some(t) = self.bytes().get(self.cap() * 4 + i) {
            super::arena::prefetch(t);
        }
        if let Some(b) = self.bytes().get(i * 4) {
            super::arena::prefetch(b);
        }
    }

    /// The handle in `hash`'s home bucket when its tag matches: most likely the entry a
    /// lookup of `hash` will compare first.
    pub(super) fn home_candidate(&self, hash: u64) -> Option<u32> {
        if self.cap() == 0 {
            return None;
        }
        let i = self.home(hash);
        (self.tag(i) == tag_of(hash)).then(|| self.handle(i))
    }

    pub(super) fn len(&self) -> usize {
        self.len as usize
    }

    fn cap(&self) -> usize {
        self.data.len()
    }

    fn bytes(&self) -> &[u8] {
        self.data.as_flattened()
    }

    fn tag(&self, i: usize) -> u8 {
        self.bytes().get(self.cap() * 4 + i).copied().unwrap_or(EMPTY)
    }

    fn set_tag(&mut self, i: usize, t: u8) {
        let at = self.cap() * 4 + i;
        if let Some(b) = self.data.as_flattened_mut().get_mut(at) {
            *b = t;
        }
    }

    fn handle(&self, i: usize) -> u32 {
        let mut w = [0u8; 4];
        if let Some(b) = self.bytes().get(i * 4..i * 4 + 4) {
            w.copy_from_slice(b);
        }
        u32::from_le_bytes(w)
    }

    fn set_handle(&mut self, i: usize, h: u32) {
        if let Some(b) = self.data.as_flattened_mut().get_mut(i * 4..i * 4 + 4) {
            b.copy_from_slice(&h.to_le_bytes());
        }
    }

    fn home(&self, hash: u64) -> usize {
        (((hash & 0xffff_ffff) * self.cap() as u64) >> 32) as usize
    }

    fn next(&self, i: usize) -> usize {
        if i + 1 == self.cap() {
            0
        } else {
            i + 1
        }
    }

    /// The bucket holding the handle with `hash` accepted by `eq`.
    pub(super) fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let t = tag_of(hash);
        let mut i = self.home(hash);
        for _ in 0..self.cap() {
            match self.tag(i) {
                EMPTY => return None,
                x if x == t && eq(self.handle(i)) => return Some(i),
                _ => {}
            }
            i = self.next(i);
        }
        None
    }

    pub(super) fn get(&self, bucket: usize) -> Option<u32> {
        (bucket < self.cap() && self.tag(bucket) & 0x80 != 0).then(|| self.handle(bucket))
    }

    /// The stored (little-endian) handle of a used bucket.
    pub(super) fn get_mut(&mut self, bucket: usize) -> Option<&mut [u8; 4]> {
        if bucket < self.cap() && self.tag(bucket) & 0x80 != 0 {
            self.data
                .as_flattened_mut()
                .get_mut(bucket * 4..bucket * 4 + 4)?
                .try_into()
                .ok()
        } else {
            None
        }
    }

    /// Adds a handle whose key is not in the table. `rehash` gives any stored
    /// handle's hash, for growing.
    pub(super) fn insert(&mut self, hash: u64, handle: u32, rehash: impl Fn(u32) -> u64) {
        if (self.len() + self.tombs as usize + 1) * 16 > self.cap() * 13 {
            self.rebuild(capacity_for(self.len() + 1), rehash);
        }
        let mut i = self.home(hash);
        for _ in 0..self.cap() {
            match self.tag(i) {
                EMPTY => break,
                TOMB => {
                    self.tombs -= 1;
                    break;
                }
                _ => i = self.next(i),
            }
        }
        self.set_tag(i, tag_of(hash));
        self.set_handle(i, handle);
        self.len += 1;
    }

    fn rebuild(&mut self, cap: usize, rehash: impl Fn(u32) -> u64) {
        let old = std::mem::replace(
            self,
            HandleTable {
                data: vec![[0u8; 5]; cap].into_boxed_slice(),
                len: 0,
                tombs: 0,
            },
        );
        for h in old.iter() {
            let hash = rehash(h);
            let mut i = self.home(hash);
            while self.tag(i) != EMPTY {
                i = self.next(i);
            }
            self.set_tag(i, tag_of(hash));
            self.set_handle(i, h);
            self.len += 1;
        }
    }

    /// Removes the handle in `bucket`; returns it.
    pub(super) fn remove_at(&mut self, bucket: usize) -> Option<u32> {
        let h = self.get(bucket)?;
        self.len -= 1;
        if self.tag(self.next(bucket)) == EMPTY {
            // Nothing probes past this bucket: it and the tombstones before it become
            // empty.
            self.set_tag(bucket, EMPTY);
            let mut i = bucket;
            for _ in 0..self.cap() {
                i = if i == 0 { self.cap() - 1 } else { i - 1 };
                if self.tag(i) != TOMB {
                    break;
                }
                self.set_tag(i, EMPTY);
                self.tombs -= 1;
            }
        } else {
            self.set_tag(bucket, TOMB);
            self.tombs += 1;
        }
        if self.len == 0 {
            *self = HandleTable::default();
        }
        Some(h)
    }

    /// Used buckets, in bucket order.
    pub(super) fn buckets(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.cap()).filter(|&i| self.tag(i) & 0x80 != 0)
    }

    /// Stored handles, in bucket order.
    pub(super) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.buckets().map(|i| self.handle(i))
    }

    /// Keeps the handles for which `keep` is true, looking at most `max` buckets from
    /// bucket `start` on, so a large table can be gone through a little at a time. Returns the bucket to
    /// go on from (`None`: the end of the table was reached, or it emptied) and the
    /// number of buckets examined. Between calls the table may have grown or shrunk;
    /// a caller resuming from a stale bucket then examines some handles twice or not
    /// at all, which is all right for work that is repeated anyway (active expiry).
    pub(super) fn retain_some(
        &mut self,
        start: usize,
        max: usize,
        mut keep: impl FnMut(u32) -> bool,
    ) -> (Option<usize>, usize) {
        let end = start.saturating_add(max).min(self.cap());
        for i in start..end {
            if self.tag(i) & 0x80 != 0 && !keep(self.handle(i)) {
                self.remove_at(i);
                if self.cap() == 0 {
                    return (None, i + 1 - start);
                }
            }
        }
        ((end < self.cap()).then_some(end), end.saturating_sub(start))
    }

    /// Bytes allocated (for tests).
    #[cfg(test)]
    fn allocated(&self) -> usize {
        self.bytes().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn hash(h: u32) -> u64 {
        // Weak on purpose for small ranges: collisions and long probe runs.
        u64::from(h % 97).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(h / 97)
    }

    #[test]
    fn home_candidate_names_the_first_probe_of_a_present_key() {
        let mut t = HandleTable::default();
        assert_eq!(t.home_candidate(hash(7)), None);
        t.prefetch(hash(7));
        t.insert(hash(7), 7, hash);
        assert_eq!(t.home_candidate(hash(7)), Some(7));
        t.prefetch(hash(7));
        for h in 100..140 {
            t.insert(hash(h), h, hash);
        }
        // Any answer is a hint; it must be a stored handle whose tag matched.
        for h in 100..140 {
            if let Some(x) = t.home_candidate(hash(h)) {
                assert!(x == 7 || (100..140).contains(&x));
            }
        }
    }

    #[test]
    fn capacities_fill_size_classes() {
        assert_eq!(size_class(40), 40);
        assert_eq!(size_class(450), 512);
        assert_eq!(size_class(384), 384);
        assert_eq!(capacity_for(1), 8);
        assert_eq!(capacity_for(62), 102);
        let mut last = 0;
        for n in 1..5000 {
            let c = capacity_for(n);
            assert!(c >= last, "{n} -> {c}");
            last = c;
            assert!(c * 13 >= n * 16, "{n} -> {c}");
            assert!(n <= 5 || c * 5 >= n * 8, "{n} -> {c}");
            let class = size_class(c * 5);
            assert!(class - c * 5 < 5, "{n} -> {c}");
            assert!(
                c == MIN_CAP || class.is_power_of_two() || (class / 3).is_power_of_two(),
                "{n} -> {c}"
            );
        }
        let mut t = HandleTable::default();
        for h in 0..61 {
            t.insert(hash(h), h, hash);
        }
        assert!(t.allocated() <= 384, "{}", t.allocated());
        assert_eq!(t.allocated(), t.cap() * 5);
        // A slot's table header: 24 bytes (see `shard::SlotTable`).
        assert_eq!(std::mem::size_of::<HandleTable>(), 24);
    }

    proptest! {
        /// Random inserts and removes agree with a set; every stored handle is found.
        #[test]
        fn table_matches_a_set(ops in proptest::collection::vec((any::<bool>(), 0u32..300), 0..2000)) {
            let mut t = HandleTable::default();
            let mut model = HashSet::new();
            for (insert, h) in ops {
                let found = t.find(hash(h), |x| x == h);
                prop_assert_eq!(found.is_some(), model.contains(&h));
                match (insert, found) {
                    (true, None) => {
                        t.insert(hash(h), h, hash);
                        model.insert(h);
                    }
                    (false, Some(b)) => {
                        prop_assert_eq!(t.remove_at(b), Some(h));
                        model.remove(&h);
                    }
                    _ => {}
                }
                prop_assert_eq!(t.len(), model.len());
                prop_assert!((t.len() + t.tombs as usize) * 16 <= t.cap() * 13 || t.cap() == 0);
            }
            let mut all: Vec<u32> = t.iter().collect();
            all.sort_unstable();
            let mut want: Vec<u32> = model.iter().copied().collect();
            want.sort_unstable();
            prop_assert_eq!(all, want);
            for &h in &model {
                let b = t.find(hash(h), |x| x == h);
                prop_assert_eq!(b.and_then(|b| t.get(b)), Some(h));
            }
            // A few buckets at a time, as active expiry goes.
            let mut at = Some(0);
            while let Some(bucket) = at {
                at = t.retain_some(bucket, 7, |h| h % 2 == 0).0;
            }
            prop_assert_eq!(t.len(), model.iter().filter(|&&h| h % 2 == 0).count());
            for &h in &model {
                prop_assert_eq!(t.find(hash(h), |x| x == h).is_some(), h % 2 == 0);
            }
            t.retain_some(0, usize::MAX, |_| false);
            prop_assert_eq!(t.len(), 0);
            prop_assert_eq!(t.cap(), 0);
        }
    }
}
