//! Eviction policies. All of them work by sampling, like Redis' approximated LRU: no
//! per-key list pointers, so eviction costs no memory per key.
//!
//! `s3fifo` (default) is S3-FIFO ("FIFO queues are all you need", SOSP '23) over
//! samples: new keys enter a small FIFO queue that holds ~10 % of the *bytes*; the
//! oldest sampled small-queue entry is promoted to the main queue if it was read since
//! insertion, else evicted and remembered in a ghost set (a returning key goes straight
//! to main). The main queue evicts its oldest sampled entry, giving read entries
//! another round (2-bit frequency, CLOCK-like). One-hit wonders and scans therefore
//! leave the main queue alone. Queue sizes are counted in bytes, so large values count
//! for what they cost.

use std::hash::BuildHasher;

use hashbrown::DefaultHashBuilder;

use super::arena::ViewSlot;
use super::entry::Entry;
use super::shard::Shard;
use super::{clock_of, Memory};

/// `maxmemory-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    S3Fifo = 0,
    AllKeysLru = 1,
    VolatileTtl = 2,
    NoEviction = 3,
}

impl Policy {
    pub fn from_u8(v: u8) -> Policy {
        match v {
            1 => Policy::AllKeysLru,
            2 => Policy::VolatileTtl,
            3 => Policy::NoEviction,
            _ => Policy::S3Fifo,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Policy::S3Fifo => "s3fifo",
            Policy::AllKeysLru => "allkeys-lru",
            Policy::VolatileTtl => "volatile-ttl",
            Policy::NoEviction => "noeviction",
        }
    }

    pub fn parse(s: &str) -> Option<Policy> {
        match s.to_ascii_lowercase().as_str() {
            "s3fifo" | "s3-fifo" => Some(Policy::S3Fifo),
            "allkeys-lru" => Some(Policy::AllKeysLru),
            "volatile-ttl" => Some(Policy::VolatileTtl),
            "noeviction" => Some(Policy::NoEviction),
            _ => None,
        }
    }
}

/// Entries looked at per eviction decision.
const SAMPLES: usize = 8;
/// Window of a large slot from which one sample is drawn.
const WINDOW: usize = 64;
/// Share of bytes the S3-FIFO small queue may hold, in percent.
const SMALL_PERCENT: usize = 10;

#[derive(Clone, Copy)]
struct Candidate {
    idx: usize,
    pos: usize,
    score: u64,
}

impl Shard {
    /// Best of `SAMPLES` random entries accepted by `filter`, by the largest `score`.
    fn sample(&mut self, filter: impl Fn(&Entry) -> bool, score: impl Fn(&Entry) -> u64) -> Option<Candidate> {
        let mut best: Option<Candidate> = None;
        let mut vs = ViewSlot::new();
        for _ in 0..SAMPLES * 2 {
            let (idx, pos) = self.random_position(WINDOW)?;
            let Some(h) = self.handle_at(idx, pos) else {
                continue;
            };
            let e = self.show(h, &mut vs);
            if !filter(e) {
                continue;
            }
            let s = score(e);
            if best.is_none_or(|b| s > b.score) {
                best = Some(Candidate { idx, pos, score: s });
            }
        }
        best
    }

    fn evict_at(&mut self, c: Candidate, mem: &Memory, hasher: &DefaultHashBuilder, ghost: bool) -> Option<usize> {
        let handle = self.handle_at(c.idx, c.pos)?;
        let mut vs = ViewSlot::new();
        let key: Vec<u8> = self.show(handle, &mut vs).key().to_vec();
        let h = hasher.hash_one(key.as_slice());
        let e = self.remove(c.idx, h, &key)?;
        if !self.watches.is_empty() {
            self.watches.changed(&key);
        }
        if self.record_removed {
            self.removed.push(key.as_slice().into());
        }
        let size = e.mem_size();
        mem.sub(size, !e.in_main());
        if ghost {
            self.remember_evicted(h);
        }
        Some(size)
    }

    /// Evicts one entry by `policy`; returns the bytes freed, or `None` when this shard
    /// has nothing the policy may evict.
    pub(super) fn evict_one(
        &mut self,
        policy: Policy,
        mem: &Memory,
        now: u64,
        hasher: &DefaultHashBuilder,
    ) -> Option<usize> {
        let clock = clock_of(now);
        let age = move |e: &Entry| u64::from(clock.wrapping_sub(e.clock()));
        match policy {
            Policy::NoEviction => None,
            Policy::AllKeysLru => {
                let c = self.sample(|_| true, age)?;
                self.evict_at(c, mem, hasher, false)
            }
            Policy::VolatileTtl => {
                let c = self.sample(
                    |e| e.expire_at().is_some(),
                    |e| u64::MAX - e.expire_at().unwrap_or(u64::MAX),
                )?;
                self.evict_at(c, mem, hasher, false)
            }
            Policy::S3Fifo => self.evict_s3fifo(mem, now, hasher),
        }
    }

    fn evict_s3fifo(&mut self, mem: &Memory, now: u64, hasher: &DefaultHashBuilder) -> Option<usize> {
        let clock = clock_of(now);
        let age = move |e: &Entry| u64::from(clock.wrapping_sub(e.clock()));
        // Promotions and second chances do not free memory; bound them per call.
        for _ in 0..16 {
            let small_over = mem.small() * 100 >= mem.used() * SMALL_PERCENT;
            let from_small = small_over;
            let c = match self.sample(move |e| e.in_main() != from_small, age) {
                Some(c) => c,
                // This queue has nothing here: take from the other one.
                None => self.sample(move |e| e.in_main() == from_small, age)?,
            };
            let mut vs = ViewSlot::new();
            let e = self.view_at(c.idx, c.pos, &mut vs)?;
            let in_small = !e.in_main();
            let freq = e.freq();
            if freq == 0 {
                return self.evict_at(c, mem, hasher, in_small);
            }
            if in_small {
                // Read while in the small queue: promote to main.
                let size = e.mem_size();
                e.set_in_main(true);
                e.set_freq(0);
                e.set_clock(clock);
                mem.sub(size, true);
                mem.add(size, false);
            } else {
                e.set_freq(freq - 1);
                e.set_clock(clock);
            }
        }
        // Everything sampled kept getting second chances: evict the oldest sample.
        let c = self.sample(|_| true, age)?;
        self.evict_at(c, mem, hasher, false)
    }
}
