//! How a primary ships a collection write as the change itself rather than the whole
//! value: every stored collection carries a change count, and the count of the state
//! its replicas last received.
//!
//! A write command that is deterministic given the value it finds (LPUSH, LTRIM, HSET,
//! ZADD, …) bumps the count once when it changes the collection. After it ran, the
//! replication step (replication/mod.rs) ships the command itself when the replicas'
//! copy is exactly one change behind (`shipped == count - 1`, and the command found
//! the collection at that count), and the whole value otherwise. A replica applies a
//! shipped command only to the count it was taken from, so a command is never applied
//! twice (a full copy read after the command ran already has it) nor to another value.
//!
//! Counts are unique across collections of a process: each new collection starts at a
//! fresh base (a multiple of 2^20 above the start time), so a key deleted and created
//! again never reaches a count its previous value had.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// A collection's change count and what its replicas last received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    /// Bumped once per write that changed the collection.
    pub count: u64,
    /// The count whose whole state, or whose change, was last shipped to replicas;
    /// [`Changes::NOT_SHIPPED`] for a value never shipped from this node (a new value,
    /// or one this node received as a replica).
    pub shipped: u64,
}

/// Counts one collection may take before they reach the next collection's base.
const STEP: u64 = 1 << 20;

fn next_base() -> u64 {
    static NEXT: OnceLock<AtomicU64> = OnceLock::new();
    // Start above earlier runs of this process' node (a replica may hold values made
    // by a primary that started earlier): the start time in ms, scaled.
    NEXT.get_or_init(|| AtomicU64::new(super::now_ms().saturating_mul(STEP)))
        .fetch_add(STEP, Ordering::Relaxed)
}

impl Changes {
    pub const NOT_SHIPPED: u64 = u64::MAX;

    /// The counts of a collection made here.
    pub fn fresh() -> Changes {
        Changes {
            count: next_base(),
            shipped: Changes::NOT_SHIPPED,
        }
    }

    /// The counts of a collection received from a primary at `count`: not shipped from
    /// here.
    pub fn received(count: u64) -> Changes {
        Changes {
            count,
            shipped: Changes::NOT_SHIPPED,
        }
    }

    /// One more change.
    pub fn bump(&mut self) {
        self.count = self.count.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_collections_never_share_counts() {
        let a = Changes::fresh();
        let b = Changes::fresh();
        assert!(b.count >= a.count + STEP);
        assert_eq!(a.shipped, Changes::NOT_SHIPPED);
        let mut c = a;
        for _ in 0..1000 {
            c.bump();
        }
        assert!(c.count < b.count);
    }
}
