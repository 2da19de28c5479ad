//! Hot-key replica reads (`--hot-key-replica-reads N`): the proxy port spreads the reads
//! of a key this node sees at least N times a second over the key's copies, the
//! replicas included, so that one hot key loads R nodes instead of one.
//!
//! Which keys are hot comes from this node's hot-key sketch ([`crate::hotkeys`]), which
//! the command pipeline feeds with the keys it serves and the proxy with the keys it
//! forwards. Each proxy worker keeps the set of hot keys, read again from the sketch at
//! most every [`REFRESH_MS`]; the copy a read goes to is taken in turn.

use std::collections::HashSet;

use bytes::Bytes;

use crate::hotkeys::HotKeys;
use ringcache_core::status::HotKey;

/// How often a worker reads the hot keys again.
pub const REFRESH_MS: u64 = 500;

/// The keys hot enough to spread, from the sketch's hottest: those at or above
/// `min_ops` commands a second (none when `min_ops` is 0).
pub fn spread_keys(top: &[HotKey], min_ops: u64) -> HashSet<Bytes> {
    if min_ops == 0 {
        return HashSet::new();
    }
    top.iter()
        .filter(|k| k.ops_per_sec >= min_ops)
        .map(|k| Bytes::copy_from_slice(&k.key))
        .collect()
}

/// Which of a slot's `copies` (primary first) serves a spread read on its `turn`.
pub fn copy_for(turn: u64, copies: usize) -> usize {
    if copies == 0 {
        return 0;
    }
    (turn % copies as u64) as usize
}

/// One proxy worker's view of the hot keys.
#[derive(Debug, Default)]
pub struct HotSet {
    keys: HashSet<Bytes>,
    read_at: Option<u64>,
    turn: u64,
}

impl HotSet {
    /// Whether reads of `key` are spread (reading the sketch again when due).
    pub fn is_hot(&mut self, hotkeys: &HotKeys, key: &[u8], now_ms: u64) -> bool {
        let min_ops = hotkeys.config().replica_reads_min_ops;
        if min_ops == 0 || !hotkeys.enabled() {
            return false;
        }
        if self.read_at.is_none_or(|at| now_ms.saturating_sub(at) >= REFRESH_MS) {
            self.keys = spread_keys(&hotkeys.top_k(now_ms), min_ops);
            self.read_at = Some(now_ms);
        }
        self.keys.contains(key)
    }

    /// The copy (of `copies`) the next spread read goes to.
    pub fn next_copy(&mut self, copies: usize) -> usize {
        self.turn = self.turn.wrapping_add(1);
        copy_for(self.turn, copies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hot(key: &str, ops: u64) -> HotKey {
        HotKey {
            key: key.as_bytes().to_vec(),
            ops_per_sec: ops,
        }
    }

    #[test]
    fn only_keys_at_the_threshold_are_spread_and_zero_spreads_none() {
        let top = [hot("a", 5000), hot("b", 1000), hot("c", 999)];
        let keys = spread_keys(&top, 1000);
        assert!(keys.contains(&b"a"[..]) && keys.contains(&b"b"[..]));
        assert!(!keys.contains(&b"c"[..]));
        assert!(spread_keys(&top, 0).is_empty());
    }

    #[test]
    fn spread_reads_take_every_copy_in_turn() {
        let picks: Vec<usize> = (0..6).map(|t| copy_for(t, 3)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        assert_eq!(copy_for(7, 1), 0);
        assert_eq!(copy_for(7, 0), 0);
    }

    #[test]
    fn the_hot_set_follows_the_sketch() {
        let hotkeys = HotKeys::new(crate::hotkeys::HotKeysConfig {
            sample: 1,
            replica_reads_min_ops: 10,
            ..Default::default()
        });
        let mut set = HotSet::default();
        let now = 1_000_000;
        assert!(!set.is_hot(&hotkeys, b"k", now));
        for i in 0..5000u64 {
            hotkeys.record(b"k", now + i / 10);
        }
        // Read again only once the refresh time passed.
        assert!(!set.is_hot(&hotkeys, b"k", now + 100));
        assert!(set.is_hot(&hotkeys, b"k", now + REFRESH_MS));
        assert!(!set.is_hot(&hotkeys, b"cold", now + REFRESH_MS));
    }
}
