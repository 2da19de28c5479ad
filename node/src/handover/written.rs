//! The bounded set of keys written or deleted on the new owner since a handover
//! began: such keys are never read through from the source (the source's copy may be
//! older). When the set is full the handover stops reading through altogether, since
//! a write it could not record might otherwise be undone by a read-through.

use std::collections::HashSet;

use bytes::Bytes;

/// Per-key bookkeeping overhead counted against the byte cap.
const KEY_OVERHEAD: usize = 48;

/// What [`WrittenKeys::mark`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Recorded (or already recorded).
    Recorded,
    /// The set is full: read-through must stop for this handover.
    Full,
}

/// A set of keys bounded by count and by bytes.
#[derive(Debug)]
pub struct WrittenKeys {
    keys: HashSet<Bytes>,
    bytes: usize,
    max_keys: usize,
    max_bytes: usize,
    full: bool,
}

impl WrittenKeys {
    pub fn new(max_keys: usize, max_bytes: usize) -> WrittenKeys {
        WrittenKeys {
            keys: HashSet::new(),
            bytes: 0,
            max_keys,
            max_bytes,
            full: false,
        }
    }

    /// Records `key`. Once full, stays full (and frees its memory: nothing may be
    /// read through any more, so the set is not needed).
    pub fn mark(&mut self, key: &[u8]) -> Mark {
        if self.full {
            return Mark::Full;
        }
        if self.keys.contains(key) {
            return Mark::Recorded;
        }
        let cost = key.len() + KEY_OVERHEAD;
        if self.keys.len() >= self.max_keys || self.bytes + cost > self.max_bytes {
            self.full = true;
            self.keys = HashSet::new();
            self.bytes = 0;
            return Mark::Full;
        }
        self.bytes += cost;
        self.keys.insert(Bytes::copy_from_slice(key));
        Mark::Recorded
    }

    /// Whether `key` may still be read through: the set is not full and does not hold it.
    pub fn allows_read_through(&self, key: &[u8]) -> bool {
        !self.full && !self.keys.contains(key)
    }

    pub fn is_full(&self) -> bool {
        self.full
    }

    /// Stops read-through (e.g. after a flush on the new owner).
    pub fn set_full(&mut self) {
        self.full = true;
        self.keys = HashSet::new();
        self.bytes = 0;
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_block_read_through_and_the_cap_stops_it_entirely() {
        let mut w = WrittenKeys::new(2, 1 << 20);
        assert!(w.allows_read_through(b"a"));
        assert_eq!(w.mark(b"a"), Mark::Recorded);
        assert_eq!(w.mark(b"a"), Mark::Recorded, "re-marking is free");
        assert!(!w.allows_read_through(b"a"));
        assert!(w.allows_read_through(b"b"));
        assert_eq!(w.mark(b"b"), Mark::Recorded);
        assert_eq!(w.len(), 2);
        assert_eq!(w.mark(b"c"), Mark::Full);
        assert!(w.is_full());
        assert!(!w.allows_read_through(b"zzz"), "a full set allows nothing");
        assert_eq!(w.mark(b"a"), Mark::Full);
        assert!(w.is_empty(), "memory is released once full");
    }

    #[test]
    fn byte_cap_counts_key_lengths() {
        let mut w = WrittenKeys::new(1000, 2 * (10 + KEY_OVERHEAD));
        assert_eq!(w.mark(&[1u8; 10]), Mark::Recorded);
        assert_eq!(w.mark(&[2u8; 10]), Mark::Recorded);
        assert_eq!(w.mark(&[3u8; 1]), Mark::Full);
        let mut w = WrittenKeys::new(10, 1 << 20);
        w.set_full();
        assert!(!w.allows_read_through(b"x"));
    }
}
