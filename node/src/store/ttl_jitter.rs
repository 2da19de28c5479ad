//! TTL jitter against cache avalanches: keys written together with the same TTL would
//! all expire in the same instant and send their readers to the database at once.
//! With `--ttl-jitter-percent N`, every relative TTL a command sets (SET EX/PX, SETEX,
//! PSETEX, EXPIRE, PEXPIRE, GETEX EX/PX) gets a uniformly random extra of 0 to N % of
//! itself. Absolute times (EXAT, PXAT, EXPIREAT, PEXPIREAT) are kept as given, and
//! replicated records carry the primary's already-decided expiry time.
//!
//! [`TtlJitter::expire_at`] is the one decision every TTL-setting command goes
//! through.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use rand::Rng;

/// Largest accepted `--ttl-jitter-percent`.
pub const MAX_PERCENT: u8 = 100;

/// The node's TTL jitter setting and how many TTLs it changed.
#[derive(Debug, Default)]
pub struct TtlJitter {
    percent: AtomicU8,
    jittered: AtomicU64,
}

impl TtlJitter {
    /// Sets the jitter (0 turns it off); values above [`MAX_PERCENT`] count as it.
    pub fn set_percent(&self, percent: u8) {
        self.percent.store(percent.min(MAX_PERCENT), Ordering::Relaxed);
    }

    pub fn percent(&self) -> u8 {
        self.percent.load(Ordering::Relaxed)
    }

    /// Relative TTLs given a jitter so far (counted when decided, so including those
    /// of a conditional SET or EXPIRE that then did not apply).
    pub fn jittered(&self) -> u64 {
        self.jittered.load(Ordering::Relaxed)
    }

    /// When a key given `ttl_ms` from `now` (unix ms) expires: `now + ttl_ms`, plus a
    /// uniformly random 0..=percent % of `ttl_ms` when jitter is on. An absolute time is
    /// never passed here. The result stays at or below `i64::MAX`, Redis' limit, when
    /// `now + ttl_ms` does.
    pub fn expire_at(&self, now: u64, ttl_ms: u64) -> u64 {
        let at = now.saturating_add(ttl_ms);
        let percent = self.percent();
        if percent == 0 || ttl_ms == 0 {
            return at;
        }
        self.jittered.fetch_add(1, Ordering::Relaxed);
        let max_extra = extra_bound(ttl_ms, percent);
        let room = (i64::MAX as u64).saturating_sub(at);
        let extra = rand::thread_rng().gen_range(0..=max_extra.min(room));
        at + extra
    }
}

/// The largest extra for `ttl_ms` at `percent`.
fn extra_bound(ttl_ms: u64, percent: u8) -> u64 {
    let bound = u128::from(ttl_ms) * u128::from(percent) / 100;
    u64::try_from(bound).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_keeps_the_ttl_and_counts_nothing() {
        let j = TtlJitter::default();
        assert_eq!(j.expire_at(1_000, 5_000), 6_000);
        assert_eq!(j.jittered(), 0);
    }

    #[test]
    fn on_spreads_within_the_bound_and_counts() {
        let j = TtlJitter::default();
        j.set_percent(20);
        let (mut lo, mut hi) = (u64::MAX, 0);
        for _ in 0..2000 {
            let at = j.expire_at(1_000, 100_000);
            assert!((101_000..=121_000).contains(&at), "{at}");
            lo = lo.min(at);
            hi = hi.max(at);
        }
        assert!(lo < 103_000 && hi > 119_000, "spread {lo}..{hi}");
        assert_eq!(j.jittered(), 2000);
        // Near the limit the extra shrinks instead of overflowing.
        let near = i64::MAX as u64 - 10;
        assert!(j.expire_at(near - 1_000, 1_000) <= i64::MAX as u64);
        assert_eq!(extra_bound(u64::MAX, 100), u64::MAX);
        j.set_percent(250);
        assert_eq!(j.percent(), MAX_PERCENT);
    }
}
