//! Hot keys: the keys that take the most operations over a sliding time window, kept in
//! bounded memory (a heavy-hitter sketch). Pure data: the node keeps one
//! [`HotKeySketch`] per worker thread, feeds it the first key of (a sample of) its
//! commands and merges them on read with [`top`].
//!
//! ## How
//! Time is cut into `buckets` buckets of `window_ms / buckets` each; the window is the
//! newest `buckets` of them (so it spans between `window_ms - bucket` and `window_ms`).
//! Each bucket is a Misra-Gries summary ([`FrequentItems`]) of at most `capacity`
//! counters; a bucket that falls out of the window is dropped whole, which is how old
//! counts age out. Reading sums every summary in the window (of every sketch given).
//!
//! ## Guarantees (the property tests below are their contract)
//! With `W` the number of records in the window and `Ŵ` the sum of the reported
//! estimates, for every key:
//! - an estimate never exceeds the key's true count in the window, and falls short of
//!   it by at most `(W - Ŵ) / (capacity + 1)` (at most `W / (capacity + 1)`);
//! - a key whose true count exceeds `W / k`, for any `k <= capacity`, is among the `k`
//!   highest estimates ([`top`] with `count = k`), whatever the order of ties.
//!
//! (Why the second: `k` keys ranked at or above key `a` and `a` itself have estimates
//! summing to at most `Ŵ <= W`, so `est(a) <= Ŵ / (k + 1)`; the error bound gives
//! `est(a) >= f(a) - (W - Ŵ) / (capacity + 1)`; both together contradict `f(a) > W / k`
//! when `capacity >= k`.) Sampling before the sketch (the node's 1-in-N) adds its own,
//! statistical, error on top of these.

use std::collections::VecDeque;

use hashbrown::HashMap;

/// A Misra-Gries summary: at most `capacity` counters; each estimate is at most the
/// key's true count and at least it minus `(total - sum of estimates) / (capacity + 1)`.
#[derive(Debug, Clone)]
pub struct FrequentItems {
    counters: HashMap<Box<[u8]>, u64>,
    capacity: usize,
    total: u64,
}

impl FrequentItems {
    /// An empty summary of at most `capacity` (at least 1) counters.
    pub fn new(capacity: usize) -> FrequentItems {
        let capacity = capacity.max(1);
        FrequentItems {
            counters: HashMap::with_capacity(capacity + 1),
            capacity,
            total: 0,
        }
    }

    /// Counts `n` occurrences of `key`.
    pub fn record(&mut self, key: &[u8], n: u64) {
        if n == 0 {
            return;
        }
        self.total += n;
        if let Some(c) = self.counters.get_mut(key) {
            *c += n;
            return;
        }
        let mut n = n;
        if self.counters.len() >= self.capacity {
            // Full: take `d` from every counter and from the newcomer (capacity + 1
            // keys lose `d` each, which is where the error bound comes from).
            let d = self.counters.values().copied().min().unwrap_or(0).min(n);
            self.counters.retain(|_, c| {
                *c -= d;
                *c > 0
            });
            n -= d;
        }
        if n > 0 && self.counters.len() < self.capacity {
            self.counters.insert(key.into(), n);
        }
    }

    /// Occurrences recorded, monitored or not.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The estimate of `key` (0 when not monitored).
    pub fn estimate(&self, key: &[u8]) -> u64 {
        self.counters.get(key).copied().unwrap_or(0)
    }

    /// The monitored keys and their estimates, in no order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u64)> {
        self.counters.iter().map(|(k, &c)| (&k[..], c))
    }

    /// Empties the summary, keeping its allocation.
    pub fn clear(&mut self) {
        self.counters.clear();
        self.total = 0;
    }
}

/// One time bucket of a [`HotKeySketch`].
#[derive(Debug, Clone)]
struct Bucket {
    /// `unix ms / bucket_ms` of the bucket's start.
    id: u64,
    items: FrequentItems,
}

/// Heavy hitters over a sliding window: a ring of per-bucket [`FrequentItems`].
#[derive(Debug, Clone)]
pub struct HotKeySketch {
    buckets: VecDeque<Bucket>,
    bucket_count: usize,
    bucket_ms: u64,
    capacity: usize,
    /// Id of the first bucket ever recorded into: before a full window has passed, the
    /// window only spans from there.
    first_id: Option<u64>,
}

impl HotKeySketch {
    /// A sketch over the last `window_ms` (at least 1 ms per bucket), in `buckets`
    /// buckets (at least 1) of at most `capacity` counters each.
    pub fn new(window_ms: u64, buckets: usize, capacity: usize) -> HotKeySketch {
        let bucket_count = buckets.max(1);
        HotKeySketch {
            buckets: VecDeque::with_capacity(bucket_count),
            bucket_count,
            bucket_ms: (window_ms / bucket_count as u64).max(1),
            capacity: capacity.max(1),
            first_id: None,
        }
    }

    /// Counts one occurrence of `key` at `now_ms` (unix ms). A clock that goes back
    /// counts into the newest bucket.
    pub fn record(&mut self, key: &[u8], now_ms: u64) {
        self.record_n(key, 1, now_ms);
    }

    /// Counts `n` occurrences of `key` at `now_ms`.
    pub fn record_n(&mut self, key: &[u8], n: u64, now_ms: u64) {
        let id = now_ms / self.bucket_ms;
        let newest = self.buckets.back().map(|b| b.id);
        if newest.is_none_or(|newest| id > newest) {
            let oldest_kept = id.saturating_sub(self.bucket_count as u64 - 1);
            let mut reuse = None;
            while self.buckets.front().is_some_and(|b| b.id < oldest_kept) || self.buckets.len() >= self.bucket_count {
                reuse = self.buckets.pop_front();
            }
            let mut bucket = reuse.unwrap_or_else(|| Bucket {
                id,
                items: FrequentItems::new(self.capacity),
            });
            bucket.id = id;
            bucket.items.clear();
            self.buckets.push_back(bucket);
            self.first_id.get_or_insert(id);
        }
        if let Some(b) = self.buckets.back_mut() {
            b.items.record(key, n);
        }
    }

    /// The window's length.
    pub fn window_ms(&self) -> u64 {
        self.bucket_ms * self.bucket_count as u64
    }

    /// Id of the oldest bucket still in the window at `now_ms`.
    fn oldest_id(&self, now_ms: u64) -> u64 {
        (now_ms / self.bucket_ms).saturating_sub(self.bucket_count as u64 - 1)
    }

    /// The summaries in the window at `now_ms`.
    fn live(&self, now_ms: u64) -> impl Iterator<Item = &FrequentItems> {
        let oldest = self.oldest_id(now_ms);
        self.buckets.iter().filter(move |b| b.id >= oldest).map(|b| &b.items)
    }

    /// Occurrences recorded in the window at `now_ms`.
    pub fn total(&self, now_ms: u64) -> u64 {
        self.live(now_ms).map(FrequentItems::total).sum()
    }

    /// How much time the window at `now_ms` covers: from the start of its oldest bucket
    /// (or of the first bucket ever recorded, if later) to `now_ms`; at least 1 ms.
    pub fn span_ms(&self, now_ms: u64) -> u64 {
        let oldest = self
            .oldest_id(now_ms)
            .max(self.first_id.unwrap_or(u64::MAX).min(now_ms / self.bucket_ms));
        now_ms.saturating_sub(oldest * self.bucket_ms).max(1)
    }
}

/// What [`top`] reads from a set of sketches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopKeys {
    /// Keys and estimated counts, highest first (ties by key).
    pub keys: Vec<(Vec<u8>, u64)>,
    /// Occurrences recorded in the window (`W`).
    pub total: u64,
    /// Time the window covers, ms (the widest of the sketches').
    pub span_ms: u64,
}

/// Sums sketches (shards of one stream) one at a time, so a caller can lock each
/// shard only while it is added.
#[derive(Debug, Default)]
pub struct Merge {
    sums: HashMap<Vec<u8>, u64>,
    total: u64,
    span_ms: u64,
}

impl Merge {
    /// Adds the window of `sketch` at `now_ms`.
    pub fn add(&mut self, sketch: &HotKeySketch, now_ms: u64) {
        self.span_ms = self.span_ms.max(sketch.span_ms(now_ms));
        for items in sketch.live(now_ms) {
            self.total += items.total();
            for (k, c) in items.iter() {
                match self.sums.get_mut(k) {
                    Some(sum) => *sum += c,
                    None => {
                        self.sums.insert(k.to_vec(), c);
                    }
                }
            }
        }
    }

    /// The `count` keys with the highest summed estimates.
    pub fn top(self, count: usize) -> TopKeys {
        let mut keys: Vec<(Vec<u8>, u64)> = self.sums.into_iter().collect();
        keys.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        keys.truncate(count);
        TopKeys {
            keys,
            total: self.total,
            span_ms: self.span_ms.max(1),
        }
    }
}

/// The `count` keys with the highest estimates over the window at `now_ms`, summed over
/// every sketch in `sketches` (shards of one stream).
pub fn top<'a>(sketches: impl IntoIterator<Item = &'a HotKeySketch>, now_ms: u64, count: usize) -> TopKeys {
    let mut merge = Merge::default();
    for s in sketches {
        merge.add(s, now_ms);
    }
    merge.top(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A stream of (key, ms since start) records: a few heavy keys among many light
    /// ones, times non-decreasing.
    fn stream() -> impl Strategy<Value = Vec<(u16, u64)>> {
        prop::collection::vec((0u16..400, 0u8..4, 0u64..40), 1..3000).prop_map(|v| {
            let mut t = 0;
            v.into_iter()
                .map(|(k, heavy, dt)| {
                    t += dt;
                    // Half the records go to keys 0..3, the rest spread over 400 keys.
                    let key = if heavy < 2 { k % 4 } else { k };
                    (key, t)
                })
                .collect()
        })
    }

    fn key(k: u16) -> Vec<u8> {
        format!("key:{k}").into_bytes()
    }

    /// True counts of the records in the window of `sketch` at `now`.
    fn truth(sketch: &HotKeySketch, records: &[(u16, u64)], now: u64) -> HashMap<Vec<u8>, u64> {
        let oldest = sketch.oldest_id(now) * sketch.bucket_ms;
        let mut m = HashMap::new();
        for &(k, t) in records {
            if t >= oldest && t <= now {
                *m.entry(key(k)).or_insert(0) += 1;
            }
        }
        m
    }

    proptest! {
        #[test]
        fn estimates_are_bounded_and_heavy_keys_are_reported(
            records in stream(),
            capacity in 2usize..24,
            buckets in 1usize..8,
            window_ms in 50u64..3000,
            shards in 1usize..4,
        ) {
            let start = 1_700_000_000_000u64;
            let mut sketches = vec![HotKeySketch::new(window_ms, buckets, capacity); shards];
            for (i, &(k, t)) in records.iter().enumerate() {
                sketches[i % shards].record(&key(k), start + t);
            }
            let now = start + records.last().map_or(0, |r| r.1);
            let abs: Vec<(u16, u64)> = records.iter().map(|&(k, t)| (k, start + t)).collect();
            let truth = truth(&sketches[0], &abs, now);
            let w: u64 = truth.values().sum();
            let all = top(&sketches, now, usize::MAX);
            prop_assert_eq!(all.total, w);
            let sum_est: u64 = all.keys.iter().map(|(_, c)| c).sum();
            prop_assert!(sum_est <= w);
            let est: HashMap<&[u8], u64> = all.keys.iter().map(|(k, c)| (&k[..], *c)).collect();
            for (k, &f) in &truth {
                let e = est.get(&k[..]).copied().unwrap_or(0);
                prop_assert!(e <= f, "overestimate {} > {}", e, f);
                // f - e <= (W - Ŵ) / (capacity + 1)
                prop_assert!((f - e) * (capacity as u64 + 1) <= w - sum_est, "underestimate {} vs {}", e, f);
            }
            // A window after the last record, nothing of the stream is left.
            let gone = top(&sketches, now + sketches[0].window_ms(), usize::MAX);
            prop_assert!(gone.keys.is_empty() && gone.total == 0, "{:?}", gone);
            for k in 1..=capacity {
                let reported = top(&sketches, now, k);
                for (key, &f) in &truth {
                    if f * k as u64 > w {
                        prop_assert!(
                            reported.keys.iter().any(|(r, _)| r == key),
                            "{:?} ({} of {}) not in top {}", String::from_utf8_lossy(key), f, w, k
                        );
                    }
                }
            }
        }

        #[test]
        fn single_summary_keeps_its_bounds(
            keys in prop::collection::vec((0u8..50, 1u64..5), 1..2000),
            capacity in 1usize..16,
        ) {
            let mut s = FrequentItems::new(capacity);
            let mut truth: HashMap<u8, u64> = HashMap::new();
            for &(k, n) in &keys {
                s.record(&[k], n);
                *truth.entry(k).or_insert(0) += n;
            }
            let w = s.total();
            prop_assert_eq!(w, truth.values().sum::<u64>());
            prop_assert!(s.iter().count() <= capacity);
            let sum_est: u64 = s.iter().map(|(_, c)| c).sum();
            for (&k, &f) in &truth {
                let e = s.estimate(&[k]);
                prop_assert!(e <= f);
                prop_assert!((f - e) * (capacity as u64 + 1) <= w - sum_est);
            }
        }
    }

    #[test]
    fn old_buckets_age_out() {
        let start = 1_000_000u64;
        let mut s = HotKeySketch::new(1000, 10, 8);
        for i in 0..500 {
            s.record(b"old", start + i);
        }
        assert_eq!(top([&s], start + 500, 1).keys, vec![(b"old".to_vec(), 500)]);
        // Still inside the window 900 ms later (its bucket is the oldest one kept).
        assert_eq!(top([&s], start + 900, 1).keys[0].1, 500);
        // A window later, nothing of it is left, recorded into or not.
        let later = top([&s], start + 1000 + 500, 1);
        assert!(later.keys.is_empty(), "{later:?}");
        assert_eq!(later.total, 0);
        for i in 0..10 {
            s.record(b"new", start + 5000 + i);
        }
        let now = top([&s], start + 5010, 5);
        assert_eq!(now.keys, vec![(b"new".to_vec(), 10)]);
        assert_eq!(now.total, 10);
    }

    #[test]
    fn span_grows_to_the_window_then_stays() {
        let mut s = HotKeySketch::new(1000, 10, 8);
        s.record(b"a", 10_000);
        assert_eq!(s.span_ms(10_000), 1);
        assert_eq!(s.span_ms(10_450), 450);
        // Older than the window: spans from the oldest live bucket (10_600) only.
        assert_eq!(s.span_ms(11_550), 950);
        assert_eq!(s.window_ms(), 1000);
    }

    #[test]
    fn clock_going_back_counts_into_the_newest_bucket() {
        let mut s = HotKeySketch::new(1000, 10, 8);
        s.record(b"a", 10_500);
        s.record(b"a", 10_000);
        assert_eq!(top([&s], 10_500, 1).keys, vec![(b"a".to_vec(), 2)]);
    }
}
