//! One lock stripe: the per-slot tables of `SLOT_COUNT / SHARDS` slots, their
//! statistics, and the S3-FIFO ghost set of recently evicted keys.

use std::collections::VecDeque;

use hashbrown::{DefaultHashBuilder, HashSet};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::arena::{Arena, Handle, ViewSlot};
use super::entry::{key_of, Entry};
use super::table::HandleTable;
use super::watch::Watches;

/// Stage 1 of prefetching a lookup in slot `idx` of the shard whose
/// [`Shard::headers_at`] is `headers_at`: the slot's header. Only computes an address.
pub(super) fn prefetch_header(headers_at: usize, idx: usize) {
    let at = headers_at.wrapping_add(idx.wrapping_mul(std::mem::size_of::<SlotTable>()));
    super::arena::prefetch(at as *const u8);
}

/// What an insert replaced: the old entry's charged size, queue and expiry.
#[derive(Debug, Clone, Copy)]
pub(super) struct Replaced {
    pub(super) size: usize,
    pub(super) small: bool,
    pub(super) expire_at: Option<u64>,
    string: bool,
}

/// Statistics of one slot, as reported to the control plane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotStats {
    pub keys: usize,
    pub bytes: usize,
    pub hits: u64,
    pub misses: u64,
}

#[derive(Default)]
pub(super) struct SlotTable {
    table: HandleTable,
    bytes: usize,
    volatile: usize,
    hits: u64,
    misses: u64,
}

/// Fingerprints of keys evicted from the small queue; a key that comes back while
/// still remembered goes straight to the main queue (S3-FIFO).
struct Ghost {
    order: VecDeque<u32>,
    set: HashSet<u32>,
    capacity: usize,
}

impl Ghost {
    fn insert(&mut self, h: u64) {
        let fp = (h >> 32) as u32;
        if self.set.insert(fp) {
            self.order.push_back(fp);
            if self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    fn take(&mut self, h: u64) -> bool {
        if self.set.is_empty() {
            return false;
        }
        self.set.remove(&((h >> 32) as u32))
    }
}

/// A lock stripe of slot tables. The tables hold handles of blocks in the shard's
/// arena.
pub struct Shard {
    slots: Box<[SlotTable]>,
    arena: Arena,
    ghost: Ghost,
    pub(super) rng: SmallRng,
    expire_cursor: usize,
    /// Keys of this shard that clients WATCH.
    pub(super) watches: Watches,
    /// Whether expiry and eviction note the keys they remove in `removed` (the store
    /// collects them for client tracking).
    pub(super) record_removed: bool,
    pub(super) removed: Vec<Box<[u8]>>,
    /// The bucket of slot `expire_cursor` active expiry goes on from.
    expire_bucket: usize,
}

const GHOST_CAPACITY: usize = 1024;

impl Shard {
    pub(super) fn new(slots: usize, seed: u64) -> Shard {
        Shard {
            slots: (0..slots).map(|_| SlotTable::default()).collect(),
            arena: Arena::new(),
            ghost: Ghost {
                order: VecDeque::new(),
                set: HashSet::new(),
                capacity: GHOST_CAPACITY,
            },
            rng: SmallRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
            expire_cursor: 0,
            watches: Watches::default(),
            record_removed: false,
            removed: Vec::new(),
            expire_bucket: 0,
        }
    }

    #[cfg(test)]
    pub(super) fn arena_reserved(&self) -> usize {
        self.arena.reserved()
    }

    /// Keys in slot `idx`.
    pub(super) fn slot_len(&self, idx: usize) -> usize {
        self.slots[idx].table.len()
    }

    /// Address of the slot headers, which never move: a prefetch of slot `idx`'s
    /// header needs no lock (see [`prefetch_header`]).
    pub(super) fn headers_at(&self) -> usize {
        self.slots.as_ptr() as usize
    }

    /// Stage 2 of prefetching a lookup of hash `h` in slot `idx` (after
    /// [`prefetch_header`]): the home bucket; stage 3 (after that): the entry there. Each
    /// stage reads what the previous one loaded, so a batch runs a stage for all its
    /// keys before the next.
    pub(super) fn prefetch(&self, idx: usize, h: u64, stage: u8) {
        let Some(slot) = self.slots.get(idx) else { return };
        if stage == 2 {
            slot.table.prefetch(h);
        } else if let Some(handle) = slot.table.home_candidate(h) {
            self.arena.prefetch(handle);
        }
    }

    /// The handle of `key` (hash `h`) in slot `idx`.
    pub(super) fn find(&self, idx: usize, h: u64, key: &[u8]) -> Option<Handle> {
        let arena = &self.arena;
        let table = &self.slots[idx].table;
        table.get(table.find(h, |x| key_of(arena.get(x)) == key)?)
    }

    /// A read-only view of block `handle`.
    pub(super) fn show<'a>(&'a self, handle: Handle, vs: &'a mut ViewSlot) -> &'a Entry {
        vs.show(&self.arena, handle)
    }

    /// A mutable view of the entry with `handle` (hash `h`) in slot `idx`.
    pub(super) fn view<'a>(
        &'a mut self,
        idx: usize,
        h: u64,
        handle: Handle,
        vs: &'a mut ViewSlot,
    ) -> Option<&'a mut Entry> {
        let table = &mut self.slots[idx].table;
        let slot = table.get_mut(table.find(h, |x| x == handle)?)?;
        Some(vs.view(&mut self.arena, slot))
    }

    /// A mutable view of the entry at `pos` in slot `idx`'s iteration order.
    pub(super) fn view_at<'a>(&'a mut self, idx: usize, pos: usize, vs: &'a mut ViewSlot) -> Option<&'a mut Entry> {
        let table = &mut self.slots[idx].table;
        let bucket = table.buckets().nth(pos)?;
        let slot = table.get_mut(bucket)?;
        Some(vs.view(&mut self.arena, slot))
    }

    /// The handle at `pos` in slot `idx`'s iteration order.
    pub(super) fn handle_at(&self, idx: usize, pos: usize) -> Option<Handle> {
        self.slots[idx].table.iter().nth(pos)
    }

    /// Calls `f` for every entry of slot `idx` (expired included).
    pub(super) fn for_each_in_slot(&self, idx: usize, mut f: impl FnMut(&Entry)) {
        let mut vs = ViewSlot::new();
        for h in self.slots[idx].table.iter() {
            f(vs.show(&self.arena, h));
        }
    }

    /// Keys in this shard.
    pub fn len(&self) -> usize {
        self.slots.iter().map(|s| s.table.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys with a TTL in this shard.
    pub fn volatile(&self) -> usize {
        self.slots.iter().map(|s| s.volatile).sum()
    }

    pub fn hits_misses(&self) -> (u64, u64) {
        self.slots.iter().fold((0, 0), |(h, m), s| (h + s.hits, m + s.misses))
    }

    pub(super) fn slot_stats(&self, idx: usize) -> SlotStats {
        let s = &self.slots[idx];
        SlotStats {
            keys: s.table.len(),
            bytes: s.bytes,
            hits: s.hits,
            misses: s.misses,
        }
    }

    /// Calls `f(slot index within shard, entry)` for every entry (expired included).
    pub fn for_each_entry(&self, mut f: impl FnMut(usize, &Entry)) {
        let mut vs = ViewSlot::new();
        for (i, s) in self.slots.iter().enumerate() {
            for h in s.table.iter() {
                f(i, vs.show(&self.arena, h));
            }
        }
    }

    pub(super) fn count_access(&mut self, idx: usize, hit: bool) {
        let s = &mut self.slots[idx];
        if hit {
            s.hits += 1;
        } else {
            s.misses += 1;
        }
    }

    /// Inserts `e`, replacing any entry with the same key. A replacement keeps the old
    /// entry's queue and counts as an access; a new key enters the S3-FIFO small queue
    /// unless the ghost set remembers it. Returns (old entry, new size, new is small).
    /// Inserts `e` into slot `idx`, replacing the entry with the same key. Returns what
    /// was replaced, the new entry's charged size and whether it is in the small queue.
    pub(super) fn insert(
        &mut self,
        idx: usize,
        h: u64,
        mut e: Entry,
        hasher: &DefaultHashBuilder,
    ) -> (Option<Replaced>, usize, bool) {
        use std::hash::BuildHasher;
        if !self.watches.is_empty() {
            self.watches.changed(e.key());
        }
        let size = e.mem_size();
        let ttl = e.expire_at().is_some();
        let arena = &mut self.arena;
        let slot = &mut self.slots[idx];
        let found = slot.table.find(h, |x| key_of(arena.get(x)) == e.key());
        if let Some((bucket, existing)) = found.and_then(|b| Some((b, slot.table.get(b)?))) {
            let mut vs = ViewSlot::new();
            let replaced = {
                let old = vs.show(arena, existing);
                e.set_in_main(old.in_main());
                e.set_freq(old.freq().saturating_add(1));
                Replaced {
                    size: old.mem_size(),
                    small: !old.in_main(),
                    expire_at: old.expire_at(),
                    string: old.as_str().is_some(),
                }
            };
            drop(vs);
            let small = !e.in_main();
            // A value of the same size class is copied over the old block in place.
            if !(replaced.string && e.write_over(arena, existing)) {
                Entry::discard(arena, existing);
                let handle = e.into_arena(arena);
                if let Some(slot) = slot.table.get_mut(bucket) {
                    *slot = handle.to_le_bytes();
                }
            }
            slot.bytes = slot.bytes + size - replaced.size;
            if replaced.expire_at.is_some() {
                slot.volatile -= 1;
            }
            if ttl {
                slot.volatile += 1;
            }
            return (Some(replaced), size, small);
        }
        let main = self.ghost.take(h);
        e.set_in_main(main);
        e.set_freq(0);
        let handle = e.into_arena(&mut self.arena);
        let arena = &self.arena;
        let slot = &mut self.slots[idx];
        slot.table.insert(h, handle, |x| hasher.hash_one(key_of(arena.get(x))));
        slot.bytes += size;
        if ttl {
            slot.volatile += 1;
        }
        (None, size, !main)
    }

    pub(super) fn remove(&mut self, idx: usize, h: u64, key: &[u8]) -> Option<Entry> {
        let arena = &mut self.arena;
        let slot = &mut self.slots[idx];
        let bucket = slot.table.find(h, |x| key_of(arena.get(x)) == key)?;
        let handle = slot.table.remove_at(bucket)?;
        let e = Entry::take_from(arena, handle);
        slot.bytes -= e.mem_size();
        if e.expire_at().is_some() {
            slot.volatile -= 1;
        }
        Some(e)
    }

    /// Records an in-place change of an entry's size or TTL.
    pub(super) fn adjust(&mut self, idx: usize, delta: isize, had_ttl: bool, has_ttl: bool) {
        let slot = &mut self.slots[idx];
        slot.bytes = slot.bytes.saturating_add_signed(delta);
        match (had_ttl, has_ttl) {
            (false, true) => slot.volatile += 1,
            (true, false) => slot.volatile -= 1,
            _ => {}
        }
    }

    pub(super) fn remember_evicted(&mut self, h: u64) {
        self.ghost.insert(h);
    }

    /// Drops every key; returns (bytes freed, bytes freed from the small queue). A
    /// watched key that was there changed (or expired away, if its time had passed).
    pub(super) fn clear(&mut self, now: u64) -> (usize, usize) {
        let (mut bytes, mut small) = (0, 0);
        for s in self.slots.iter_mut() {
            for h in std::mem::take(&mut s.table).iter() {
                let e = Entry::take_from(&mut self.arena, h);
                if !self.watches.is_empty() {
                    if e.is_expired(now) {
                        self.watches.expired(e.key());
                    } else {
                        self.watches.changed(e.key());
                    }
                }
                let size = e.mem_size();
                bytes += size;
                if !e.in_main() {
                    small += size;
                }
            }
            s.bytes = 0;
            s.volatile = 0;
        }
        (bytes, small)
    }

    /// Clears the hit/miss counters of one slot (after it changes owner).
    pub fn reset_slot_counters(&mut self, idx: usize) {
        self.slots[idx].hits = 0;
        self.slots[idx].misses = 0;
    }

    /// A random (slot index, position) of a non-empty slot table, looking at no more
    /// than the first `window` entries of a large slot (iteration order is hash order,
    /// so this is still an unbiased pick among keys).
    pub(super) fn random_position(&mut self, window: usize) -> Option<(usize, usize)> {
        let n = self.slots.len();
        let start = self.rng.gen_range(0..n);
        for k in 0..n {
            let idx = (start + k) % n;
            let len = self.slots[idx].table.len();
            if len > 0 {
                let pos = self.rng.gen_range(0..len.min(window));
                return Some((idx, pos));
            }
        }
        None
    }

    /// One bounded step of active expiry: examines at most `budget` table buckets of
    /// the slots that hold keys with a TTL, going on from where the previous step
    /// stopped (a large slot takes several steps), and removes the expired keys it
    /// finds. Returns (keys checked, keys expired, bytes freed, of which small-queue
    /// bytes).
    pub(super) fn expire_step(&mut self, now: u64, budget: usize) -> (usize, usize, usize, usize) {
        let (mut checked, mut expired, mut bytes, mut small) = (0, 0, 0, 0);
        let n = self.slots.len();
        let mut examined = 0;
        // At most one pass over this shard's slots per step.
        for _ in 0..=n {
            if examined >= budget {
                break;
            }
            let idx = self.expire_cursor % n;
            let slot = &mut self.slots[idx];
            if slot.volatile == 0 {
                self.expire_cursor = self.expire_cursor.wrapping_add(1);
                self.expire_bucket = 0;
                continue;
            }
            let mut freed = 0;
            let mut volatile_gone = 0;
            let arena = &mut self.arena;
            let watches = &mut self.watches;
            let removed = &mut self.removed;
            let record = self.record_removed;
            let mut vs = ViewSlot::new();
            let (next, seen) = slot.table.retain_some(self.expire_bucket, budget - examined, |h| {
                checked += 1;
                let e = vs.show(arena, h);
                if !e.is_expired(now) {
                    return true;
                }
                if !watches.is_empty() {
                    watches.expired(e.key());
                }
                if record {
                    removed.push(e.key().into());
                }
                let size = e.mem_size();
                if !e.in_main() {
                    small += size;
                }
                Entry::discard(arena, h);
                freed += size;
                volatile_gone += 1;
                false
            });
            examined += seen.max(1);
            slot.bytes -= freed;
            slot.volatile -= volatile_gone;
            expired += volatile_gone;
            bytes += freed;
            match next {
                Some(bucket) => self.expire_bucket = bucket,
                None => {
                    self.expire_cursor = self.expire_cursor.wrapping_add(1);
                    self.expire_bucket = 0;
                }
            }
        }
        (checked, expired, bytes, small)
    }
}
