//! Hot-key detection on this node: the command pipeline offers the first key of every
//! keyed command it serves; a sample of them (1 in `sample`, drawn per thread) goes into
//! one of a few striped [`HotKeySketch`]es (the calling thread's stripe, so workers do
//! not contend), and readers (`RINGCACHE.HOTKEYS`, /metrics, `GetStatus`) merge the
//! stripes. The sketch and its guarantees are in [`ringcache_core::hotkeys`].
//!
//! Cost on the hot path: one thread-local random draw per keyed command; for a sampled
//! one, an uncontended lock of the thread's stripe and a hash-map update (a copy of the
//! key when it is new to the bucket). Keys longer than [`MAX_KEY_LEN`] are not tracked.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use ringcache_core::hotkeys::{HotKeySketch, Merge};
use ringcache_core::status::HotKey;

/// Time buckets per window: the window slides by a tenth of its length.
pub const BUCKETS: usize = 10;
/// Stripes (sketches); threads take them in turn.
const STRIPES: usize = 16;
/// Keys longer than this are not tracked (their copies would cost too much memory).
pub const MAX_KEY_LEN: usize = 512;

/// Hot-key settings (`--hotkeys*` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HotKeysConfig {
    pub enabled: bool,
    /// How many keys are reported by default (RINGCACHE.HOTKEYS, /metrics, GetStatus).
    pub k: usize,
    pub window_secs: u64,
    /// 1 in `sample` keyed commands is counted (1: every command).
    pub sample: u32,
    /// The proxy port spreads reads of keys with at least this many commands a second
    /// over their copies (0: never; `--hot-key-replica-reads`).
    pub replica_reads_min_ops: u64,
}

impl Default for HotKeysConfig {
    fn default() -> Self {
        HotKeysConfig {
            enabled: true,
            k: 10,
            window_secs: 10,
            sample: 32,
            replica_reads_min_ops: 0,
        }
    }
}

impl HotKeysConfig {
    /// Counters per bucket: 8 k (at least 32). The sketch needs at least k to report
    /// every key above 1/k of the traffic; more narrows each estimate's error
    /// (at most a 1/(capacity+1) share of the window's sampled commands).
    pub fn capacity(&self) -> usize {
        (self.k.saturating_mul(8)).max(32)
    }
}

#[repr(align(128))]
#[derive(Debug)]
struct Stripe(Mutex<HotKeySketch>);

/// Reads of hot keys the proxy port spread, by the copy that served them.
#[derive(Debug, Default)]
pub struct SpreadCounts {
    pub primary: std::sync::atomic::AtomicU64,
    pub replica: std::sync::atomic::AtomicU64,
}

/// This node's hot-key sketches.
#[derive(Debug)]
pub struct HotKeys {
    config: HotKeysConfig,
    /// Reads of hot keys the proxy port sent to each kind of copy
    /// (`--hot-key-replica-reads`).
    pub spread: SpreadCounts,
    /// A draw at or below this is sampled.
    threshold: u64,
    stripes: Box<[Stripe]>,
}

thread_local! {
    /// xorshift64 state of this thread's sampling draws (0: not seeded yet).
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// The calling thread's stripe (threads take stripes in turn).
fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

/// The next pseudo-random draw of this thread (xorshift64; seeded once per thread).
#[inline]
fn draw() -> u64 {
    RNG.with(|c| {
        let mut x = c.get();
        if x == 0 {
            x = rand::random::<u64>() | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.set(x);
        x
    })
}

impl HotKeys {
    pub fn new(config: HotKeysConfig) -> HotKeys {
        let config = HotKeysConfig {
            k: config.k.max(1),
            window_secs: config.window_secs.max(1),
            sample: config.sample.max(1),
            ..config
        };
        let stripes = if config.enabled {
            let window_ms = config.window_secs.saturating_mul(1000);
            (0..STRIPES)
                .map(|_| Stripe(Mutex::new(HotKeySketch::new(window_ms, BUCKETS, config.capacity()))))
                .collect()
        } else {
            Box::default()
        };
        HotKeys {
            spread: SpreadCounts::default(),
            threshold: u64::MAX / u64::from(config.sample),
            config,
            stripes,
        }
    }

    /// Hot-key detection switched off: nothing is sampled or kept.
    pub fn disabled() -> HotKeys {
        HotKeys::new(HotKeysConfig {
            enabled: false,
            ..HotKeysConfig::default()
        })
    }

    pub fn config(&self) -> &HotKeysConfig {
        &self.config
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Whether the next keyed command is to be counted: call once per command, then
    /// [`HotKeys::record`] its key if so.
    #[inline]
    pub fn sample(&self) -> bool {
        self.config.enabled && (self.config.sample == 1 || draw() <= self.threshold)
    }

    /// Counts `key` (a sampled command's first key) at `now_ms` (unix ms).
    pub fn record(&self, key: &[u8], now_ms: u64) {
        if key.len() > MAX_KEY_LEN {
            return;
        }
        if let Some(stripe) = self.stripes.get(stripe_index()) {
            stripe.0.lock().record(key, now_ms);
        }
    }

    /// The `count` hottest keys at `now_ms`, hottest first, with their estimated
    /// commands per second (sampled counts scaled by the sampling rate, over the time
    /// the window covers). Empty when disabled.
    pub fn top(&self, now_ms: u64, count: usize) -> Vec<HotKey> {
        let mut merge = Merge::default();
        for stripe in self.stripes.iter() {
            merge.add(&stripe.0.lock(), now_ms);
        }
        let top = merge.top(count);
        let scale = f64::from(self.config.sample) * 1000.0 / top.span_ms as f64;
        top.keys
            .into_iter()
            .map(|(key, n)| HotKey {
                key,
                ops_per_sec: (n as f64 * scale).round() as u64,
            })
            .collect()
    }

    /// The configured `k` hottest keys at `now_ms`.
    pub fn top_k(&self, now_ms: u64) -> Vec<HotKey> {
        self.top(now_ms, self.config.k)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(sample: u32) -> HotKeysConfig {
        HotKeysConfig {
            enabled: true,
            k: 3,
            window_secs: 1,
            sample,
            replica_reads_min_ops: 0,
        }
    }

    #[test]
    fn counts_every_key_at_rate_one_and_scales_to_ops_per_second() {
        let hk = HotKeys::new(config(1));
        let t0 = 1_000_000;
        for i in 0..1000u64 {
            assert!(hk.sample());
            hk.record(b"hot", t0 + i);
            if i % 10 == 0 {
                hk.record(format!("cold{i}").as_bytes(), t0 + i);
            }
        }
        let top = hk.top_k(t0 + 1000);
        assert_eq!(top[0].key, b"hot");
        // 1000 in the 1 s the window covers.
        assert!((900..=1000).contains(&top[0].ops_per_sec), "{top:?}");
        assert!(top.len() <= 3);
    }

    #[test]
    fn samples_about_one_in_n_from_several_threads() {
        let hk = std::sync::Arc::new(HotKeys::new(config(8)));
        let t0 = 5_000_000;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let hk = hk.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        if hk.sample() {
                            hk.record(b"k", t0 + i / 20);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // 80 000 commands over 1 s, counted 1 in 8 then scaled back.
        let top = hk.top_k(t0 + 1000);
        assert_eq!(top.len(), 1);
        assert!((60_000..=100_000).contains(&top[0].ops_per_sec), "{top:?}");
    }

    #[test]
    fn disabled_and_long_keys_record_nothing() {
        let off = HotKeys::disabled();
        assert!(!off.sample());
        off.record(b"k", 1);
        assert!(off.top_k(1).is_empty());
        let on = HotKeys::new(config(1));
        on.record(&vec![b'x'; MAX_KEY_LEN + 1], 1);
        assert!(on.top_k(1).is_empty());
    }
}
