//! The keyspace: 16384 per-slot hash tables spread over lock-striped shards, with
//! exact memory accounting, eviction and expiry.
//!
//! Slot `s` lives in shard `s % SHARDS`, so consecutive slots (one slot range) spread
//! over all shards and every core. A command locks only the shard(s) of its keys; there
//! is no global lock on the hot path. Memory in use is counted in per-thread stripes.

mod arena;
pub mod bloom;
pub mod changes;
pub mod encoding;
pub mod entry;
pub mod eviction;
pub mod expiry;
mod hash;
mod held;
pub mod hyperloglog;
mod list;
mod memory;
pub mod object;
mod set;
mod shard;
mod table;
pub mod ttl_jitter;
mod watch;
pub mod zset;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, MutexGuard};

pub use arena::allow_huge_pages;
use arena::ViewSlot;
pub use bloom::{Bloom, BloomParams};
pub use changes::Changes;
pub use entry::{Entry, ValueRef};
pub use eviction::Policy;
pub use hash::{Hash, HashLimits};
pub use list::{List, LIST_MAX_ELEMENT};
pub use memory::{Memory, OutOfMemory};
pub use object::{DecodeError, Object, Stored};
use ringcache_core::slot::{Slot, SLOT_COUNT};
pub use set::{Set, SetMember, SET_MAX_INTSET_ENTRIES};
pub use shard::{Shard, SlotStats};
pub use ttl_jitter::TtlJitter;
pub use watch::Stamp;
pub use zset::ZSet;

/// Number of lock stripes. A power of two that divides `SLOT_COUNT`.
pub const SHARDS: usize = 256;
const SLOTS_PER_SHARD: usize = SLOT_COUNT / SHARDS;

/// Current unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The eviction clock: unix ms truncated to 32 bits (compared with wrapping arithmetic).
pub fn clock_of(now_ms: u64) -> u32 {
    now_ms as u32
}

/// Counters of store-initiated removals.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub evicted_keys: AtomicU64,
    pub expired_keys: AtomicU64,
}

/// Keys changed without a command of this node's clients — expired, evicted, or
/// written by replication — kept while `on` because someone must hear of them: client
/// tracking invalidates them (`tracking::spawn_forwarder` turns this on and drains it).
#[derive(Debug, Default)]
pub struct Removals {
    pub on: AtomicBool,
    keys: Mutex<Vec<Box<[u8]>>>,
}

impl Removals {
    fn on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Notes `key` (when on).
    pub fn record(&self, key: &[u8]) {
        if self.on() {
            self.keys.lock().push(key.into());
        }
    }

    fn extend(&self, keys: &mut Vec<Box<[u8]>>) {
        if !keys.is_empty() {
            self.keys.lock().append(keys);
        }
    }

    /// The keys removed since the last call.
    pub fn take(&self) -> Vec<Box<[u8]>> {
        std::mem::take(&mut *self.keys.lock())
    }
}

/// A shard's lock, and the address of its slot headers (fixed for the store's life) for
/// prefetching without the lock.
#[repr(align(128))]
struct Padded(Mutex<Shard>, usize);

/// The whole keyspace of one node.
pub struct Store {
    shards: Box<[Padded]>,
    hasher: hashbrown::DefaultHashBuilder,
    pub mem: Memory,
    pub stats: StoreStats,
    /// Redis' encoding parameters (CONFIG GET/SET).
    pub encodings: encoding::Encodings,
    /// Keys expired, evicted or replicated, for client tracking.
    pub removals: Removals,
    evict_cursor: AtomicUsize,
    /// The extra every relative TTL a command sets gets (`--ttl-jitter-percent`).
    pub ttl_jitter: TtlJitter,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("mem", &self.mem).finish()
    }
}

/// A locked shard: its mutex guard, or the shard a transaction on this thread holds
/// (`held.rs`).
pub enum ShardGuard<'a> {
    Locked(MutexGuard<'a, Shard>),
    Held(held::Held),
}

impl std::ops::Deref for ShardGuard<'_> {
    type Target = Shard;
    fn deref(&self) -> &Shard {
        match self {
            ShardGuard::Locked(g) => g,
            ShardGuard::Held(h) => h,
        }
    }
}

impl std::ops::DerefMut for ShardGuard<'_> {
    fn deref_mut(&mut self) -> &mut Shard {
        match self {
            ShardGuard::Locked(g) => g,
            ShardGuard::Held(h) => h,
        }
    }
}

fn shard_of(slot: Slot) -> (usize, usize) {
    let s = usize::from(slot);
    (s % SHARDS, s / SHARDS)
}

impl Store {
    pub fn new(maxmemory: usize, policy: Policy) -> Store {
        let shards = (0..SHARDS)
            .map(|i| {
                let shard = Shard::new(SLOTS_PER_SHARD, i as u64);
                let headers_at = shard.headers_at();
                Padded(Mutex::new(shard), headers_at)
            })
            .collect();
        Store {
            shards,
            hasher: hashbrown::DefaultHashBuilder::default(),
            mem: Memory::new(maxmemory, policy),
            stats: StoreStats::default(),
            encodings: encoding::Encodings::default(),
            removals: Removals::default(),
            evict_cursor: AtomicUsize::new(0),
            ttl_jitter: TtlJitter::default(),
        }
    }

    /// Locks shard `i`, or hands out the shard a transaction on this thread holds.
    fn shard(&self, i: usize) -> ShardGuard<'_> {
        match held::take(self as *const Store as usize, i) {
            Some(h) => ShardGuard::Held(h),
            None => ShardGuard::Locked(self.shards[i].0.lock()),
        }
    }

    /// Runs `f` as one atomic step over the shards of `slots` (every shard when
    /// `None`): they are locked first, in ascending order, and locks of them inside `f`
    /// on this thread reuse them (EXEC; see `held.rs`). `f` must lock no other shard,
    /// or it could wait for a thread that waits for it.
    pub fn atomically<R>(&self, slots: Option<&[Slot]>, f: impl FnOnce() -> R) -> R {
        let mut ids: Vec<usize> = match slots {
            Some(slots) => slots.iter().map(|&s| shard_of(s).0).collect(),
            None => (0..SHARDS).collect(),
        };
        ids.sort_unstable();
        ids.dedup();
        let guards = ids.into_iter().map(|i| (i, self.shards[i].0.lock())).collect();
        held::hold(self as *const Store as usize, guards, f)
    }

    fn hash(&self, key: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key)
    }

    /// Starts loading, for every key of `keys`, what looking it up will read, so the
    /// cache misses of a batch of lookups overlap instead of following one another.
    /// Each stage runs for all keys before the next, which reads what it loaded.
    pub fn prefetch<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) {
        const CHUNK: usize = 32;
        let mut at = [(0usize, 0usize, 0u64); CHUNK];
        let mut n = 0;
        let mut keys = keys.peekable();
        while keys.peek().is_some() {
            for (dst, key) in at.iter_mut().zip(keys.by_ref()) {
                let (shard, idx) = shard_of(ringcache_core::slot::key_slot(key));
                *dst = (shard, idx, self.hash(key));
                n += 1;
                if n == CHUNK {
                    break;
                }
            }
            for &(shard, idx, _) in &at[..n] {
                shard::prefetch_header(self.shards[shard].1, idx);
            }
            for stage in 2..=3 {
                for &(shard, idx, h) in &at[..n] {
                    self.shard(shard).prefetch(idx, h, stage);
                }
            }
            n = 0;
        }
    }

    /// Locks the shard holding `slot`.
    pub fn lock(&self, slot: Slot) -> Locked<'_> {
        let (shard, idx) = shard_of(slot);
        Locked {
            guard: self.shard(shard),
            idx,
            store: self,
        }
    }

    /// Locks the shards of all `slots` (in ascending shard order, so concurrent
    /// multi-key commands cannot deadlock), for commands that must be atomic.
    pub fn lock_many(&self, slots: &[Slot]) -> LockedMany<'_> {
        let mut ids: Vec<usize> = slots.iter().map(|&s| shard_of(s).0).collect();
        ids.sort_unstable();
        ids.dedup();
        let guards = ids.into_iter().map(|i| (i, self.shard(i))).collect();
        LockedMany { guards, store: self }
    }

    /// Runs `f` on every shard in turn (one lock at a time).
    pub fn for_each_shard(&self, mut f: impl FnMut(&mut Shard)) {
        for i in 0..SHARDS {
            f(&mut self.shard(i));
        }
    }

    /// Locks shard number `i` (for background work and slot iteration).
    pub fn lock_shard(&self, i: usize) -> ShardGuard<'_> {
        self.shard(i % SHARDS)
    }

    /// Number of keys (including expired keys not yet reclaimed).
    pub fn dbsize(&self) -> usize {
        let mut n = 0;
        self.for_each_shard(|s| n += s.len());
        n
    }

    /// Keys and keys with a TTL.
    pub fn key_counts(&self) -> (usize, usize) {
        let (mut keys, mut volatile) = (0, 0);
        self.for_each_shard(|s| {
            keys += s.len();
            volatile += s.volatile();
        });
        (keys, volatile)
    }

    /// Sum of keyspace hits and misses over all slots.
    pub fn hits_misses(&self) -> (u64, u64) {
        let (mut h, mut m) = (0, 0);
        self.for_each_shard(|s| {
            let (a, b) = s.hits_misses();
            h += a;
            m += b;
        });
        (h, m)
    }

    /// Statistics of one slot.
    pub fn slot_stats(&self, slot: Slot) -> SlotStats {
        let (shard, idx) = shard_of(slot);
        self.shard(shard).slot_stats(idx)
    }

    /// Removes every key.
    pub fn flush(&self) {
        let now = now_ms();
        for i in 0..SHARDS {
            let (bytes, small) = self.shard(i).clear(now);
            self.mem.sub_both(bytes, small);
        }
    }

    /// Called before a command that may allocate: evicts until memory is under
    /// `maxmemory`, or reports `-OOM` when the policy forbids eviction or nothing is
    /// left to evict.
    pub fn ensure_memory(&self) -> Result<(), OutOfMemory> {
        let max = self.mem.max();
        if max == 0 || !self.mem.over(max) {
            return Ok(());
        }
        let policy = self.mem.policy();
        if policy == Policy::NoEviction {
            return Err(OutOfMemory);
        }
        let now = now_ms();
        let mut idle_shards = 0;
        while self.mem.used() > max {
            let i = self.evict_cursor.fetch_add(1, Ordering::Relaxed) % SHARDS;
            let mut shard = self.shard(i);
            shard.record_removed = self.removals.on();
            let mut freed_any = false;
            // A few evictions per lock keep lock traffic low under sustained pressure.
            for _ in 0..8 {
                match shard.evict_one(policy, &self.mem, now, &self.hasher) {
                    Some(_) => {
                        freed_any = true;
                        self.stats.evicted_keys.fetch_add(1, Ordering::Relaxed);
                        if self.mem.used() <= max {
                            break;
                        }
                    }
                    None => break,
                }
            }
            self.removals.extend(&mut shard.removed);
            drop(shard);
            if freed_any {
                idle_shards = 0;
            } else {
                idle_shards += 1;
                if idle_shards >= SHARDS {
                    return Err(OutOfMemory);
                }
            }
        }
        Ok(())
    }

    /// One round of active expiry: one bounded step ([`expiry::STEP_BUCKETS`] table
    /// buckets, one shard lock) on each of `shards_per_round` shards; returns (keys
    /// checked, keys expired).
    pub fn active_expire_round(&self, shards_per_round: usize, now: u64) -> (usize, usize) {
        let (mut checked, mut expired) = (0, 0);
        for _ in 0..shards_per_round {
            let i = self.evict_cursor.fetch_add(1, Ordering::Relaxed) % SHARDS;
            let mut shard = self.shard(i);
            shard.record_removed = self.removals.on();
            let (c, e, bytes, small) = shard.expire_step(now, expiry::STEP_BUCKETS);
            self.removals.extend(&mut shard.removed);
            drop(shard);
            self.mem.sub_both(bytes, small);
            checked += c;
            expired += e;
        }
        self.stats.expired_keys.fetch_add(expired as u64, Ordering::Relaxed);
        (checked, expired)
    }
}

/// A locked shard, positioned on one slot.
pub struct Locked<'a> {
    guard: ShardGuard<'a>,
    idx: usize,
    store: &'a Store,
}

impl Locked<'_> {
    pub fn slot(&mut self) -> SlotRef<'_> {
        SlotRef {
            shard: &mut self.guard,
            idx: self.idx,
            store: self.store,
            view: ViewSlot::new(),
        }
    }
}

/// Several locked shards, for atomic multi-key commands.
pub struct LockedMany<'a> {
    guards: Vec<(usize, ShardGuard<'a>)>,
    store: &'a Store,
}

impl LockedMany<'_> {
    /// The view of `slot`; the slot must be one of those passed to `lock_many`.
    pub fn slot(&mut self, slot: Slot) -> Option<SlotRef<'_>> {
        let (shard, idx) = shard_of(slot);
        let store = self.store;
        self.guards
            .iter_mut()
            .find(|(i, _)| *i == shard)
            .map(move |(_, g)| SlotRef {
                shard: g,
                idx,
                store,
                view: ViewSlot::new(),
            })
    }
}

/// Operations on the keys of one slot, under its shard's lock. Every change keeps the
/// memory accounting, TTL counts and eviction metadata right.
pub struct SlotRef<'a> {
    shard: &'a mut Shard,
    idx: usize,
    store: &'a Store,
    /// Holds the view behind the `&mut Entry` last handed out.
    view: ViewSlot,
}

impl SlotRef<'_> {
    /// The handle of the live entry for `key` (an expired one is removed first).
    fn live(&mut self, key: &[u8], h: u64, now: u64) -> Option<arena::Handle> {
        let handle = self.shard.find(self.idx, h, key)?;
        let mut vs = ViewSlot::new();
        if self.shard.show(handle, &mut vs).is_expired(now) {
            drop(vs);
            self.expire(key, h);
            return None;
        }
        Some(handle)
    }

    /// The live entry for `key` (an expired one is removed first). No statistics.
    /// The entry must not be moved out of the reference (`mem::replace`/`swap`).
    pub fn get(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        let h = self.store.hash(key);
        let handle = self.live(key, h, now)?;
        self.shard.view(self.idx, h, handle, &mut self.view)
    }

    fn expire(&mut self, key: &[u8], h: u64) {
        self.view.check();
        if let Some(e) = self.shard.remove(self.idx, h, key) {
            if !self.shard.watches.is_empty() {
                self.shard.watches.expired(key);
            }
            self.store.mem.sub(e.mem_size(), !e.in_main());
            self.store.removals.record(key);
            self.store.stats.expired_keys.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A lookup that counts a hit or a miss in the keyspace statistics but is no access
    /// for the eviction policy: Redis' read with `LOOKUP_NOTOUCH` (EXISTS, TTL, TYPE).
    pub fn read_untouched(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        let idx = self.idx;
        let h = self.store.hash(key);
        let handle = self.live(key, h, now);
        self.shard.count_access(idx, handle.is_some());
        self.shard.view(idx, h, handle?, &mut self.view)
    }

    /// A read lookup as Redis counts it: a hit or a miss in the keyspace statistics,
    /// and an access for the eviction policy.
    pub fn read(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        let policy = self.store.mem.policy();
        let e = self.read_untouched(key, now)?;
        match policy {
            Policy::S3Fifo => e.set_freq(e.freq().saturating_add(1)),
            // The access time: eviction reads it under allkeys-lru, OBJECT IDLETIME under
            // every policy but s3fifo.
            Policy::AllKeysLru | Policy::VolatileTtl | Policy::NoEviction => e.set_clock(clock_of(now)),
        }
        Some(e)
    }

    /// Inserts or replaces an entry; true if it replaced a live one (a replaced expired
    /// entry counts as expired).
    pub fn insert(&mut self, mut e: Entry, now: u64) -> bool {
        self.view.check();
        let h = self.store.hash(e.key());
        e.set_clock(clock_of(now));
        let (old, size, small) = self.shard.insert(self.idx, h, e, &self.store.hasher);
        self.store.mem.add(size, small);
        let Some(old) = old else { return false };
        self.store.mem.sub(old.size, old.small);
        if old.expire_at.is_some_and(|t| t <= now) {
            // Replacing a key that had already expired: it counts as expired, as if
            // a lookup had removed it first.
            self.store.stats.expired_keys.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Removes `key`; returns the entry if it was live.
    pub fn remove(&mut self, key: &[u8], now: u64) -> Option<Entry> {
        self.view.check();
        let h = self.store.hash(key);
        let e = self.shard.remove(self.idx, h, key)?;
        self.store.mem.sub(e.mem_size(), !e.in_main());
        if e.is_expired(now) {
            if !self.shard.watches.is_empty() {
                self.shard.watches.expired(key);
            }
            self.store.removals.record(key);
            self.store.stats.expired_keys.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if !self.shard.watches.is_empty() {
            self.shard.watches.changed(key);
        }
        Some(e)
    }

    /// Changes a live entry in place (object values, TTL), keeping accounting right.
    pub fn modify<R>(&mut self, key: &[u8], now: u64, f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
        self.modify_if(key, now, |e| (f(e), true))
    }

    /// [`SlotRef::modify`] for a change that may turn out to be none: `f` says whether
    /// it changed the value (a WATCH of the key sees only real changes, as in Redis).
    pub fn modify_if<R>(&mut self, key: &[u8], now: u64, f: impl FnOnce(&mut Entry) -> (R, bool)) -> Option<R> {
        let idx = self.idx;
        let store = self.store;
        let e = self.get(key, now)?;
        let before = e.mem_size();
        let had_ttl = e.expire_at().is_some();
        let small = !e.in_main();
        let (r, changed) = f(e);
        if changed {
            // Replication ships a collection write as the change when this is the
            // one change it made (store/changes.rs).
            if let Some(c) = e.changes_mut() {
                c.bump();
            }
        }
        let after = e.mem_size();
        let has_ttl = e.expire_at().is_some();
        store.mem.add(after, small);
        store.mem.sub(before, small);
        self.shard
            .adjust(idx, after as isize - before as isize, had_ttl, has_ttl);
        if changed && !self.shard.watches.is_empty() {
            self.shard.watches.changed(key);
        }
        Some(r)
    }

    /// Whether `key` is here but past its expiry time (not yet reclaimed).
    fn expired_present(&self, key: &[u8], now: u64) -> bool {
        let h = self.store.hash(key);
        let Some(handle) = self.shard.find(self.idx, h, key) else {
            return false;
        };
        let mut vs = ViewSlot::new();
        self.shard.show(handle, &mut vs).is_expired(now)
    }

    /// Starts a client's WATCH of `key` (see [`watch`]).
    pub fn watch(&mut self, key: &[u8], now: u64) -> Stamp {
        let expired = self.expired_present(key, now);
        self.shard.watches.watch(key, expired)
    }

    /// Ends a client's WATCH of `key`.
    pub fn unwatch(&mut self, key: &[u8]) {
        self.shard.watches.unwatch(key);
    }

    /// Whether `key` changed since the client's WATCH took `stamp`.
    pub fn watch_dirty(&self, key: &[u8], stamp: &Stamp, now: u64) -> bool {
        self.shard.watches.is_dirty(key, stamp, self.expired_present(key, now))
    }

    /// Number of keys in this slot.
    pub fn len(&self) -> usize {
        self.shard.slot_len(self.idx)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` for every live key of this slot.
    pub fn for_each_key(&self, now: u64, mut f: impl FnMut(&Entry)) {
        self.shard.for_each_in_slot(self.idx, |e| {
            if !e.is_expired(now) {
                f(e);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringcache_core::slot::key_slot;

    fn set(store: &Store, key: &[u8], val: &[u8]) {
        let now = now_ms();
        store
            .lock(key_slot(key))
            .slot()
            .insert(Entry::string(key, val, 0, 0), now);
    }

    #[test]
    fn accounting_returns_to_zero() {
        let store = Store::new(0, Policy::S3Fifo);
        for i in 0..1000u32 {
            set(&store, format!("k{i}").as_bytes(), &[1u8; 64]);
        }
        assert_eq!(store.dbsize(), 1000);
        assert!(store.mem.used() > 1000 * 64);
        for i in 0..1000u32 {
            let key = format!("k{i}");
            store
                .lock(key_slot(key.as_bytes()))
                .slot()
                .remove(key.as_bytes(), now_ms());
        }
        assert_eq!(store.mem.used(), 0);
        assert_eq!(store.mem.small(), 0);
        assert_eq!(store.dbsize(), 0);
    }

    #[test]
    fn eviction_keeps_memory_under_the_limit_for_every_policy() {
        for policy in [Policy::S3Fifo, Policy::AllKeysLru] {
            let store = Store::new(200_000, policy);
            for i in 0..10_000u32 {
                store.ensure_memory().expect("evictable");
                set(&store, format!("key:{i}").as_bytes(), &[0u8; 100]);
            }
            store.ensure_memory().expect("evictable");
            assert!(store.mem.used() <= 200_000, "{policy:?}: {}", store.mem.used());
            assert!(store.stats.evicted_keys.load(Ordering::Relaxed) > 5_000);
            assert!(store.dbsize() > 1000, "{policy:?} evicted too much: {}", store.dbsize());
        }
    }

    #[test]
    fn a_limit_above_the_counter_slack_is_enforced_exactly_from_many_threads() {
        // 3 MiB: above the approximate total's slack, so the cheap check decides until
        // usage comes near the limit; writers on 4 threads use 4 counter stripes.
        let max = 3 * 1024 * 1024;
        let store = Store::new(max, Policy::AllKeysLru);
        std::thread::scope(|s| {
            for t in 0..4u32 {
                let store = &store;
                s.spawn(move || {
                    for i in 0..20_000u32 {
                        store.ensure_memory().expect("evictable");
                        set(store, format!("t{t}:{i}").as_bytes(), &[7u8; 200]);
                    }
                });
            }
        });
        store.ensure_memory().expect("evictable");
        assert!(store.mem.used() <= max, "{} > {max}", store.mem.used());
        assert!(store.mem.used() > max / 2, "evicted far too much: {}", store.mem.used());
        let charged: usize = (0..SLOT_COUNT as u16).map(|slot| store.slot_stats(slot).bytes).sum();
        assert_eq!(store.mem.used(), charged, "stripes sum to the shards' own byte counts");
    }

    #[test]
    fn replacing_a_value_in_place_or_elsewhere_keeps_values_and_accounting_exact() {
        let store = Store::new(0, Policy::S3Fifo);
        let now = now_ms();
        let get = |k: &[u8]| {
            let mut locked = store.lock(key_slot(k));
            let mut slot = locked.slot();
            slot.get(k, now).and_then(|e| e.as_str().map(<[u8]>::to_vec))
        };
        set(&store, b"k", &[1u8; 64]);
        let one = store.mem.used();
        // Same size class (64 and 63 bytes): written over the old block.
        set(&store, b"k", &[2u8; 63]);
        assert_eq!(get(b"k"), Some(vec![2u8; 63]));
        assert_eq!(store.mem.used(), one);
        // Larger, then a hash, then a string again: new blocks, the old ones freed.
        set(&store, b"k", &[3u8; 500]);
        assert_eq!(get(b"k"), Some(vec![3u8; 500]));
        let mut h = Hash::default();
        h.insert(b"f", b"v");
        store
            .lock(key_slot(b"k"))
            .slot()
            .insert(Entry::object(b"k", Object::Hash(h), 0, 0), now);
        assert_eq!(get(b"k"), None, "a hash is not a string");
        set(&store, b"k", &[4u8; 64]);
        assert_eq!(get(b"k"), Some(vec![4u8; 64]));
        assert_eq!(store.mem.used(), one);
        assert_eq!(store.dbsize(), 1);
        // Replacing an expired key counts it as expired.
        let e = Entry::string(b"k", b"x", now - 1, 0);
        store.lock(key_slot(b"k")).slot().insert(e, now);
        assert!(!store
            .lock(key_slot(b"k"))
            .slot()
            .insert(Entry::string(b"k", b"y", 0, 0), now));
        assert_eq!(store.stats.expired_keys.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn noeviction_reports_oom() {
        let store = Store::new(10_000, Policy::NoEviction);
        for i in 0..200u32 {
            set(&store, format!("key:{i}").as_bytes(), &[0u8; 100]);
        }
        assert_eq!(store.ensure_memory(), Err(OutOfMemory));
    }

    #[test]
    fn volatile_ttl_evicts_only_keys_with_a_ttl() {
        let store = Store::new(50_000, Policy::VolatileTtl);
        let now = now_ms();
        for i in 0..400u32 {
            let key = format!("v{i}");
            let e = Entry::string(key.as_bytes(), &[0u8; 100], now + 1_000_000 + u64::from(i), 0);
            store.lock(key_slot(key.as_bytes())).slot().insert(e, now);
        }
        set(&store, b"persistent", b"x");
        store.ensure_memory().expect("volatile keys can go");
        assert!(store.mem.used() <= 50_000);
        assert!(store
            .lock(key_slot(b"persistent"))
            .slot()
            .get(b"persistent", now)
            .is_some());
    }

    #[test]
    fn s3fifo_keeps_frequently_read_keys() {
        let store = Store::new(300_000, Policy::S3Fifo);
        let now = now_ms();
        for i in 0..100u32 {
            set(&store, format!("hot{i}").as_bytes(), &[0u8; 100]);
        }
        for round in 0..20u32 {
            for i in 0..100u32 {
                let k = format!("hot{i}");
                store.lock(key_slot(k.as_bytes())).slot().read(k.as_bytes(), now);
            }
            for i in 0..500u32 {
                store.ensure_memory().expect("evictable");
                set(&store, format!("scan{round}:{i}").as_bytes(), &[0u8; 100]);
            }
        }
        let hot_left = (0..100u32)
            .filter(|i| {
                let k = format!("hot{i}");
                store
                    .lock(key_slot(k.as_bytes()))
                    .slot()
                    .get(k.as_bytes(), now)
                    .is_some()
            })
            .count();
        assert!(hot_left >= 90, "only {hot_left} of 100 hot keys survived a scan");
    }

    fn arena_bytes(store: &Store) -> usize {
        let mut n = 0;
        store.for_each_shard(|s| n += s.arena_reserved());
        n
    }

    #[derive(Debug, Clone)]
    enum Op {
        Set { key: u8, len: usize, ttl: bool },
        SetExpired { key: u8 },
        Hset { key: u8, field: u8, len: usize },
        Del { key: u8 },
        Expire { key: u8, clear: bool },
        Get { key: u8 },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        // Lengths cross the size classes and the small/large boundary of the arena.
        let len = prop_oneof![0usize..200, 1000usize..1100, Just(5000usize)];
        prop_oneof![
            (0u8..24, len.clone(), any::<bool>()).prop_map(|(key, len, ttl)| Op::Set { key, len, ttl }),
            (0u8..24).prop_map(|key| Op::SetExpired { key }),
            (0u8..24, 0u8..4, len).prop_map(|(key, field, len)| Op::Hset { key, field, len }),
            (0u8..24).prop_map(|key| Op::Del { key }),
            (0u8..24, any::<bool>()).prop_map(|(key, clear)| Op::Expire { key, clear }),
            (0u8..24).prop_map(|key| Op::Get { key }),
        ]
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Val {
        Str(Vec<u8>),
        Hash(std::collections::BTreeMap<u8, usize>),
        Other(&'static str),
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]
        /// Random inserts, overwrites, TTL changes, object updates and deletes agree with
        /// a map, memory accounting always equals the sum of the live entries' charges,
        /// and deleting everything returns accounting and arena memory to zero.
        #[test]
        fn store_matches_a_model(ops in proptest::collection::vec(op(), 0..300)) {
            use std::collections::HashMap;
            let store = Store::new(0, Policy::S3Fifo);
            let now = now_ms();
            let far = now + 1_000_000_000;
            let mut model: HashMap<Vec<u8>, (Val, Option<u64>)> = HashMap::new();
            let name = |k: u8| format!("key:{k}").into_bytes();
            let mut n_ops = 0usize;
            for op in ops {
                match op {
                    Op::Set { key, len, ttl } => {
                        let k = name(key);
                        let v = vec![key; len];
                        let exp = ttl.then_some(far + u64::from(key));
                        let e = Entry::string(&k, &v, exp.unwrap_or(0), 0);
                        store.lock(key_slot(&k)).slot().insert(e, now);
                        model.insert(k, (Val::Str(v), exp));
                    }
                    Op::SetExpired { key } => {
                        let k = name(key);
                        let e = Entry::string(&k, b"old", 1, 0);
                        store.lock(key_slot(&k)).slot().insert(e, now);
                        model.remove(&k);
                    }
                    Op::Hset { key, field, len } => {
                        let k = name(key);
                        let mut locked = store.lock(key_slot(&k));
                        let mut slot = locked.slot();
                        let value = vec![field; len];
                        match model.get_mut(&k) {
                            Some((Val::Hash(m), _)) => {
                                let done = slot.modify(&k, now, |e| match e.as_object_mut() {
                                    Some(Object::Hash(h)) => h.insert(&[field], &value),
                                    _ => false,
                                });
                                proptest::prop_assert_eq!(done, Some(!m.contains_key(&field)));
                                m.insert(field, len);
                            }
                            _ => {
                                let mut h = Hash::default();
                                h.insert(&[field], &value);
                                slot.insert(Entry::object(&k, Object::Hash(h), 0, 0), now);
                                model.insert(k, (Val::Hash([(field, len)].into()), None));
                            }
                        }
                    }
                    Op::Del { key } => {
                        let k = name(key);
                        let got = store.lock(key_slot(&k)).slot().remove(&k, now);
                        let want = model.remove(&k);
                        proptest::prop_assert_eq!(got.map(|e| e.key().to_vec()), want.map(|_| k.clone()));
                    }
                    Op::Expire { key, clear } => {
                        let k = name(key);
                        let at = (!clear).then_some(far + 7);
                        let r = store.lock(key_slot(&k)).slot().modify(&k, now, |e| e.set_expire_at(at));
                        proptest::prop_assert_eq!(r.is_some(), model.contains_key(&k));
                        if let Some((_, exp)) = model.get_mut(&k) {
                            *exp = at;
                        }
                    }
                    Op::Get { key } => {
                        let k = name(key);
                        let mut locked = store.lock(key_slot(&k));
                        let mut slot = locked.slot();
                        let got = slot.read(&k, now).map(|e| {
                            let v = match e.value() {
                                ValueRef::Str(s) => Val::Str(s.to_vec()),
                                ValueRef::Obj(Object::Hash(h)) => Val::Hash(
                                    h.iter().map(|(f, v)| (f[0], v.len())).collect(),
                                ),
                                ValueRef::Obj(o) => Val::Other(o.type_name()),
                            };
                            (e.key().to_vec(), v, e.expire_at())
                        });
                        let want = model.get(&k).map(|(v, exp)| (k.clone(), v.clone(), *exp));
                        proptest::prop_assert_eq!(got, want);
                    }
                }
                // Accounting equals the charges of the stored entries (expired ones too).
                n_ops += 1;
                if !n_ops.is_multiple_of(8) {
                    continue;
                }
                let mut charged = 0;
                store.for_each_shard(|s| s.for_each_entry(|_, e| charged += e.mem_size()));
                proptest::prop_assert_eq!(store.mem.used(), charged);
                let mut sizes = 0;
                store.for_each_shard(|s| {
                    for i in 0..SLOTS_PER_SHARD {
                        sizes += s.slot_stats(i).bytes;
                    }
                });
                proptest::prop_assert_eq!(sizes, charged);
            }
            let (live, volatile) = store.key_counts();
            proptest::prop_assert!(live >= model.len());
            proptest::prop_assert_eq!(
                volatile,
                {
                    let mut n = 0;
                    store.for_each_shard(|s| s.for_each_entry(|_, e| n += usize::from(e.expire_at().is_some())));
                    n
                }
            );
            for key in 0u8..24 {
                let k = name(key);
                store.lock(key_slot(&k)).slot().remove(&k, now);
            }
            proptest::prop_assert_eq!(store.dbsize(), 0);
            proptest::prop_assert_eq!(store.mem.used(), 0);
            proptest::prop_assert_eq!(store.mem.small(), 0);
            proptest::prop_assert_eq!(arena_bytes(&store), 0);
        }
    }

    #[test]
    fn ttl_can_be_added_to_a_stored_key_and_flush_frees_everything() {
        let store = Store::new(0, Policy::S3Fifo);
        let now = now_ms();
        for i in 0..2000u32 {
            set(&store, format!("k{i}").as_bytes(), &[3u8; 64]);
        }
        let before = store.mem.used();
        for i in 0..2000u32 {
            let k = format!("k{i}");
            let r = store
                .lock(key_slot(k.as_bytes()))
                .slot()
                .modify(k.as_bytes(), now, |e| e.set_expire_at(Some(now + 100_000)));
            assert_eq!(r, Some(()));
        }
        assert_eq!(store.key_counts(), (2000, 2000));
        assert!(store.mem.used() > before);
        for i in 0..2000u32 {
            let k = format!("k{i}");
            let mut locked = store.lock(key_slot(k.as_bytes()));
            let mut slot = locked.slot();
            let e = slot.get(k.as_bytes(), now).expect("present");
            assert_eq!(e.expire_at(), Some(now + 100_000));
            assert_eq!(e.as_str(), Some(&[3u8; 64][..]));
            assert_eq!(e.key(), k.as_bytes());
        }
        // Expired in the past: active expiry reclaims them all.
        for i in 0..2000u32 {
            let k = format!("k{i}");
            store
                .lock(key_slot(k.as_bytes()))
                .slot()
                .modify(k.as_bytes(), now, |e| e.set_expire_at(Some(1)));
        }
        let mut rounds = 0;
        while store.dbsize() > 0 && rounds < 10_000 {
            store.active_expire_round(SHARDS, now);
            rounds += 1;
        }
        assert_eq!(store.dbsize(), 0);
        assert_eq!(store.mem.used(), 0);
        assert_eq!(arena_bytes(&store), 0);
        for i in 0..500u32 {
            set(&store, format!("k{i}").as_bytes(), &[3u8; 64]);
        }
        let mut h = Hash::default();
        h.insert(b"f", b"v");
        store
            .lock(key_slot(b"h"))
            .slot()
            .insert(Entry::object(b"h", Object::Hash(h), 0, 0), now);
        store.flush();
        assert_eq!(store.dbsize(), 0);
        assert_eq!(store.mem.used(), 0);
        assert_eq!(store.mem.small(), 0);
        assert_eq!(arena_bytes(&store), 0);
    }
}
