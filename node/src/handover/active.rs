//! One handover on the new owner: its slots, the keys written here since it began
//! (never read through), its read counters and its pooled connections to the source.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use ringcache_core::slot::Slot;
use ringcache_core::slotset::SlotSet;
use ringcache_core::status::HandoverStatus;

use super::written::{Mark, WrittenKeys};

/// One handover, on the new owner.
#[derive(Debug)]
pub struct Handover {
    pub id: String,
    pub source_node_id: String,
    pub source_addr: String,
    pub started_ms: u64,
    pub(super) slots: RwLock<SlotSet>,
    /// Written keys; its lock also orders fills against completion and marks.
    pub(super) written: Mutex<Written>,
    pub(super) local_hits: AtomicU64,
    pub(super) read_through_hits: AtomicU64,
    pub(super) misses: AtomicU64,
    errors: AtomicU64,
    /// Idle connections to the source.
    pub(crate) pool: Mutex<Vec<std::net::TcpStream>>,
}

#[derive(Debug)]
pub(super) struct Written {
    pub(super) keys: WrittenKeys,
    pub(super) completed: bool,
}

impl Handover {
    pub(super) fn new(
        id: String,
        slots: SlotSet,
        source_node_id: String,
        source_addr: String,
        now: u64,
        cap: (usize, usize),
    ) -> Self {
        Handover {
            id,
            source_node_id,
            source_addr,
            started_ms: now,
            slots: RwLock::new(slots),
            written: Mutex::new(Written {
                keys: WrittenKeys::new(cap.0, cap.1),
                completed: false,
            }),
            local_hits: AtomicU64::new(0),
            read_through_hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            pool: Mutex::new(Vec::new()),
        }
    }

    pub fn contains(&self, slot: Slot) -> bool {
        self.slots.read().contains(slot)
    }

    pub fn slots(&self) -> SlotSet {
        self.slots.read().clone()
    }

    /// Whether `key` may be read through now.
    pub fn allows_read_through(&self, key: &[u8]) -> bool {
        let w = self.written.lock();
        !w.completed && w.keys.allows_read_through(key)
    }

    /// Records a write or deletion of `key` on this node.
    pub fn mark_written(&self, key: &[u8]) {
        let mut w = self.written.lock();
        if !w.completed && w.keys.mark(key) == Mark::Full {
            tracing::debug!(handover = %self.id, "handover: written-keys set full, read-through stopped");
        }
    }

    /// Runs `fill` (which inserts a fetched record) only if `key` may still be read
    /// through, under the written-set lock so a concurrent write's mark or the
    /// completion is ordered before or after it. The caller holds the key's shard lock.
    pub fn fill_if_allowed(&self, key: &[u8], fill: impl FnOnce()) -> bool {
        let w = self.written.lock();
        if w.completed || !w.keys.allows_read_through(key) {
            return false;
        }
        fill();
        true
    }

    /// Stops read-through (flush on this node).
    pub fn stop(&self) {
        self.written.lock().keys.set_full();
    }

    pub(crate) fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HandoverStatus {
        let (written_keys, stopped) = {
            let w = self.written.lock();
            (w.keys.len() as u64, w.keys.is_full())
        };
        HandoverStatus {
            id: self.id.clone(),
            slots: self.slots.read().ranges(),
            source_node_id: self.source_node_id.clone(),
            source_addr: self.source_addr.clone(),
            started_ms: self.started_ms,
            local_hits: self.local_hits.load(Ordering::Relaxed),
            read_through_hits: self.read_through_hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            read_through_errors: self.errors.load(Ordering::Relaxed),
            written_keys,
            read_through_stopped: stopped,
        }
    }
}
