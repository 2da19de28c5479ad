//! WATCH bookkeeping of one shard: for every key some client watches, how often it was
//! changed and how often it expired away since the shard started counting. A client
//! keeps the [`Stamp`] it read at WATCH and compares at EXEC, under the same shard lock
//! the changes take, so a change either happens before EXEC's check or waits for EXEC
//! to finish (Redis' optimistic check-and-set, with no per-client lists to walk).
//!
//! What counts as a change follows Redis 7.0 (multi.c): every write of the key, its
//! eviction and a flush that finds it; an expiry deletion is counted apart because it
//! is no change for a client that watched the key when it had already expired.

use hashbrown::HashMap;

/// Counters of one watched key.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    /// Clients watching the key; the entry goes when the last one stops.
    clients: u32,
    changes: u64,
    expirations: u64,
}

/// What a client read when it started watching a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    changes: u64,
    expirations: u64,
    /// The key was there but already expired at WATCH time (Redis' `wk->expired`).
    expired_at_watch: bool,
}

impl Stamp {
    /// Whether the key changed for the client holding this stamp, given the counters
    /// now and whether the key is, now, present but expired.
    fn is_dirty(&self, now: Counters, expired_now: bool) -> bool {
        if now.changes != self.changes {
            return true;
        }
        // An expiry (deleted, or still there but past its time) of a key that was live
        // at WATCH is a change; of a key already expired at WATCH it is not.
        !self.expired_at_watch && (now.expirations != self.expirations || expired_now)
    }
}

/// The watched keys of one shard.
#[derive(Debug, Default)]
pub struct Watches {
    keys: HashMap<Box<[u8]>, Counters>,
}

impl Watches {
    /// Whether nobody watches a key of this shard (the check every write makes).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Starts one client's watch of `key`; `expired` tells whether the key is present
    /// but already expired.
    pub fn watch(&mut self, key: &[u8], expired: bool) -> Stamp {
        let c = self.keys.entry_ref(key).or_default();
        c.clients += 1;
        Stamp {
            changes: c.changes,
            expirations: c.expirations,
            expired_at_watch: expired,
        }
    }

    /// Ends one client's watch of `key`.
    pub fn unwatch(&mut self, key: &[u8]) {
        if let Some(c) = self.keys.get_mut(key) {
            c.clients -= 1;
            if c.clients == 0 {
                self.keys.remove(key);
            }
        }
    }

    /// Whether `key` changed since `stamp` was taken; `expired_now`: the key is present
    /// but past its expiry time.
    pub fn is_dirty(&self, key: &[u8], stamp: &Stamp, expired_now: bool) -> bool {
        // A key nobody watches any more was unwatched by a flush of the client itself;
        // treat it as changed.
        self.keys.get(key).is_none_or(|c| stamp.is_dirty(*c, expired_now))
    }

    /// `key` was written, deleted or evicted.
    #[inline]
    pub fn changed(&mut self, key: &[u8]) {
        if let Some(c) = self.keys.get_mut(key) {
            c.changes += 1;
        }
    }

    /// `key` was deleted because it expired.
    #[inline]
    pub fn expired(&mut self, key: &[u8]) {
        if let Some(c) = self.keys.get_mut(key) {
            c.expirations += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_after_watch_is_seen_and_one_before_is_not() {
        let mut w = Watches::default();
        w.changed(b"k");
        let s = w.watch(b"k", false);
        assert!(!w.is_dirty(b"k", &s, false));
        w.changed(b"other");
        assert!(!w.is_dirty(b"k", &s, false));
        w.changed(b"k");
        assert!(w.is_dirty(b"k", &s, false));
        w.unwatch(b"k");
        assert!(w.is_empty());
    }

    #[test]
    fn expiry_is_a_change_only_for_a_key_live_at_watch() {
        let mut w = Watches::default();
        let live = w.watch(b"k", false);
        let already_expired = w.watch(b"k", true);
        assert!(w.is_dirty(b"k", &live, true), "expired since WATCH, not yet deleted");
        assert!(!w.is_dirty(b"k", &already_expired, true));
        w.expired(b"k");
        assert!(w.is_dirty(b"k", &live, false));
        assert!(!w.is_dirty(b"k", &already_expired, false));
        w.changed(b"k");
        assert!(w.is_dirty(b"k", &already_expired, false));
    }

    #[test]
    fn watches_are_counted_per_client() {
        let mut w = Watches::default();
        let a = w.watch(b"k", false);
        let _b = w.watch(b"k", false);
        w.unwatch(b"k");
        assert!(!w.is_empty());
        assert!(!w.is_dirty(b"k", &a, false));
        w.unwatch(b"k");
        assert!(w.is_empty());
        w.unwatch(b"k");
        assert!(w.is_empty());
    }
}
