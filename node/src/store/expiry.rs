//! Active expiry: a background thread that reclaims expired keys nobody reads, so
//! their memory stays bounded, without taking the CPU or the shard locks away from
//! the commands.
//!
//! Work comes in steps: one shard lock held for at most [`STEP_BUCKETS`] table
//! buckets (tens of microseconds), the next step going on where the last one stopped.
//! Steps come in rounds of one step on each of `SHARDS / 8` shards. Like Redis'
//! active expire cycle, the thread keeps going while rounds find many expired keys
//! (over 10 % of those checked) and is time-bounded: it works at most 25 % of each
//! [`WINDOW`] and sleeps the rest, so a mass expiry (a million keys set with the same
//! TTL) is spread over time instead of taking a core and stalling commands. A quiet
//! keyspace costs one round per window.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{now_ms, Store, SHARDS};

/// Table buckets one step examines under one shard lock.
pub const STEP_BUCKETS: usize = 256;

/// The period over which the work share is counted.
pub const WINDOW: Duration = Duration::from_millis(25);

/// The most work per [`WINDOW`]: Redis' 25 % of the time.
pub const WORK_PER_WINDOW: Duration = Duration::from_micros(25_000 / 4);

/// Steps per round: between two decisions whether going on pays.
const ROUND: usize = SHARDS / 8;

/// Whether a round that checked `checked` keys and expired `expired` of them found
/// enough to go on at once (Redis' threshold: over 10 %).
fn worth_another_round(checked: usize, expired: usize) -> bool {
    checked > 0 && expired * 10 > checked
}

/// Starts the active expiry thread; it ends when `store` is the last reference.
pub fn spawn(store: Arc<Store>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let weak = Arc::downgrade(&store);
    drop(store);
    std::thread::Builder::new()
        .name("active-expiry".into())
        .spawn(move || loop {
            let window = Instant::now();
            let mut worked = Duration::ZERO;
            loop {
                let Some(store) = weak.upgrade() else { return };
                let started = Instant::now();
                let (checked, expired) = store.active_expire_round(ROUND, now_ms());
                drop(store);
                worked += started.elapsed();
                if worked >= WORK_PER_WINDOW || !worth_another_round(checked, expired) {
                    break;
                }
            }
            std::thread::sleep(WINDOW.saturating_sub(window.elapsed()));
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Entry, Policy};
    use ringcache_core::slot::key_slot;

    #[test]
    fn rounds_go_on_only_while_they_pay() {
        assert!(!worth_another_round(0, 0));
        assert!(!worth_another_round(100, 10));
        assert!(worth_another_round(100, 11));
    }

    /// One step holds its lock for a bounded amount of work even when one slot holds
    /// every key, and steps together still reclaim everything.
    #[test]
    fn a_step_is_bounded_and_steps_reclaim_a_large_slot() {
        let store = Store::new(0, Policy::S3Fifo);
        let now = now_ms();
        let n = 20_000;
        for i in 0..n {
            // One hash tag: one slot.
            let k = format!("{{tag}}:{i}");
            let e = Entry::string(k.as_bytes(), b"v", now + 10, 0);
            store.lock(key_slot(k.as_bytes())).slot().insert(e, now);
        }
        let later = now + 20;
        let (checked, expired) = store.active_expire_round(SHARDS, later);
        assert!(
            checked <= STEP_BUCKETS && expired <= STEP_BUCKETS,
            "{checked} {expired}"
        );
        assert!(expired > 0);
        let mut rounds = 1;
        while store.dbsize() > 0 {
            store.active_expire_round(SHARDS, later);
            rounds += 1;
            assert!(rounds < 10_000, "reclaims in bounded rounds");
        }
        assert!(rounds * STEP_BUCKETS >= n, "took {rounds} rounds");
        assert_eq!(store.mem.used(), 0);
        assert_eq!(
            store.stats.expired_keys.load(std::sync::atomic::Ordering::Relaxed),
            n as u64
        );
    }
}
