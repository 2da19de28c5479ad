//! Every handover of one node: those it receives (new-owner side), and the slots it
//! retains for handovers to others (source side).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use ringcache_core::slot::Slot;
use ringcache_core::slotset::SlotSet;
use ringcache_core::status::HandoverStatus;
use ringcache_core::view::View;

use super::{Handover, HandoverError, MAX_HANDOVERS, WRITTEN_MAX_BYTES, WRITTEN_MAX_KEYS};

/// Every slot of `slots` must have `source_id` or this node as primary in `view`.
fn check_owned(view: &View, slots: &SlotSet, source_id: &str) -> Result<(), HandoverError> {
    for slot in slots.iter() {
        let primary = view.slots.primary(slot).unwrap_or("");
        if primary != source_id && primary != view.me.id {
            return Err(HandoverError::NotOwned {
                slot,
                primary: primary.to_string(),
                source_id: source_id.to_string(),
            });
        }
    }
    Ok(())
}

/// The handovers of one node: those it receives (new-owner side) and the slots it
/// retains for others (source side).
#[derive(Debug)]
pub struct Handovers {
    /// Whether any handover is active (the command path's only check otherwise).
    pub(super) active: AtomicBool,
    list: RwLock<Vec<Arc<Handover>>>,
    retained: Mutex<HashMap<String, SlotSet>>,
    /// Bumped when retained slots are released, so cleanup runs again.
    retain_generation: AtomicU64,
    written_cap: (usize, usize),
}

impl Default for Handovers {
    fn default() -> Self {
        Handovers::new(WRITTEN_MAX_KEYS, WRITTEN_MAX_BYTES)
    }
}

impl Handovers {
    pub fn new(written_max_keys: usize, written_max_bytes: usize) -> Handovers {
        Handovers {
            active: AtomicBool::new(false),
            list: RwLock::new(Vec::new()),
            retained: Mutex::new(HashMap::new()),
            retain_generation: AtomicU64::new(0),
            written_cap: (written_max_keys, written_max_bytes),
        }
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Starts handover `id` of `slots` from `source_id` at `source_addr`. `view` is the
    /// current topology (none: refused).
    pub fn begin(
        &self,
        id: &str,
        slots: SlotSet,
        source_id: &str,
        source_addr: &str,
        view: Option<&View>,
        now: u64,
    ) -> Result<Arc<Handover>, HandoverError> {
        let view = view.ok_or(HandoverError::NoTopology)?;
        if source_id == view.me.id {
            return Err(HandoverError::SourceIsSelf(source_id.into()));
        }
        check_owned(view, &slots, source_id)?;
        let mut list = self.list.write();
        if list.iter().any(|h| h.id == id) {
            return Err(HandoverError::AlreadyExists(id.into()));
        }
        if list.len() >= MAX_HANDOVERS {
            return Err(HandoverError::TooMany);
        }
        check_overlap(&list, &slots, id)?;
        let h = Arc::new(Handover::new(
            id.into(),
            slots,
            source_id.into(),
            source_addr.into(),
            now,
            self.written_cap,
        ));
        list.push(h.clone());
        self.active.store(true, Ordering::Release);
        Ok(h)
    }

    /// Adds `slots` to handover `id`.
    pub fn advance(&self, id: &str, slots: &SlotSet, view: Option<&View>) -> Result<Arc<Handover>, HandoverError> {
        // Write-locked so two concurrent advances cannot both claim a slot.
        let list = self.list.write();
        let h = list
            .iter()
            .find(|h| h.id == id)
            .cloned()
            .ok_or_else(|| HandoverError::NotFound(id.into()))?;
        let view = view.ok_or(HandoverError::NoTopology)?;
        check_owned(view, slots, &h.source_node_id)?;
        check_overlap(&list, slots, id)?;
        h.slots.write().union_with(slots);
        Ok(h)
    }

    /// Ends handover `id`; returns its final counters.
    pub fn complete(&self, id: &str) -> Result<HandoverStatus, HandoverError> {
        let mut list = self.list.write();
        let i = list
            .iter()
            .position(|h| h.id == id)
            .ok_or_else(|| HandoverError::NotFound(id.into()))?;
        let h = list.remove(i);
        self.active.store(!list.is_empty(), Ordering::Release);
        drop(list);
        h.written.lock().completed = true;
        h.pool.lock().clear();
        Ok(h.snapshot())
    }

    pub fn get(&self, id: &str) -> Option<Arc<Handover>> {
        self.list.read().iter().find(|h| h.id == id).cloned()
    }

    /// The active handover covering `slot`.
    pub fn for_slot(&self, slot: Slot) -> Option<Arc<Handover>> {
        self.list.read().iter().find(|h| h.contains(slot)).cloned()
    }

    pub fn snapshots(&self) -> Vec<HandoverStatus> {
        let mut v: Vec<HandoverStatus> = self.list.read().iter().map(|h| h.snapshot()).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Stops read-through of every handover (this node's keyspace was flushed).
    pub fn stop_all(&self) {
        for h in self.list.read().iter() {
            h.stop();
        }
    }

    /// Source side: keep `slots` (do not clean them up) for handover `id`.
    pub fn retain(&self, id: &str, slots: &SlotSet) {
        let mut r = self.retained.lock();
        if !r.contains_key(id) && r.len() >= MAX_HANDOVERS {
            return;
        }
        r.entry(id.to_string()).or_default().union_with(slots);
    }

    /// Source side: handover `id` no longer needs its slots here.
    pub fn release(&self, id: &str) -> bool {
        let removed = self.retained.lock().remove(id).is_some();
        if removed {
            self.retain_generation.fetch_add(1, Ordering::Relaxed);
        }
        removed
    }

    /// Source side: every retained slot.
    pub fn retained(&self) -> SlotSet {
        let mut all = SlotSet::empty();
        for set in self.retained.lock().values() {
            all.union_with(set);
        }
        all
    }

    pub fn retain_generation(&self) -> u64 {
        self.retain_generation.load(Ordering::Relaxed)
    }
}

fn check_overlap(list: &[Arc<Handover>], slots: &SlotSet, id: &str) -> Result<(), HandoverError> {
    for h in list.iter().filter(|h| h.id != id) {
        let theirs = h.slots.read();
        if let Some(slot) = slots.iter().find(|&s| theirs.contains(s)) {
            return Err(HandoverError::Overlap {
                slot,
                other: h.id.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ringcache_core::topology::{NodeInfo, SlotAssignment, SlotRange, Topology, LAST_SLOT};

    fn view(me: &str) -> View {
        let node = |id: &str| NodeInfo {
            id: id.into(),
            instance: format!("{id}-1"),
            resp_addr: "127.0.0.1:1".into(),
            control_addr: "127.0.0.1:2".into(),
            replica_addr: None,
            zone: None,
        };
        let topo = Topology {
            epoch: 1,
            nodes: vec![node("o"), node("n"), node("p")],
            slots: vec![
                SlotAssignment {
                    range: SlotRange::new(0, 99),
                    owners: vec!["o".into()],
                },
                SlotAssignment {
                    range: SlotRange::new(100, 199),
                    owners: vec!["n".into()],
                },
                SlotAssignment {
                    range: SlotRange::new(200, LAST_SLOT),
                    owners: vec!["p".into()],
                },
            ],
        };
        View::new(topo, me).unwrap()
    }

    fn set(ranges: &[(u16, u16)]) -> SlotSet {
        let mut s = SlotSet::empty();
        for &(a, b) in ranges {
            s.insert_range(SlotRange::new(a, b));
        }
        s
    }

    #[test]
    fn begin_advance_complete_and_preconditions() {
        let hs = Handovers::default();
        let v = view("n");
        assert_eq!(
            hs.begin("h", set(&[(0, 9)]), "o", "127.0.0.1:1", None, 5).unwrap_err(),
            HandoverError::NoTopology
        );
        assert!(matches!(
            hs.begin("h", set(&[(0, 9)]), "n", "127.0.0.1:1", Some(&v), 5),
            Err(HandoverError::SourceIsSelf(_))
        ));
        // Slot 250's primary is p, not the source o.
        assert!(matches!(
            hs.begin("h", set(&[(0, 9), (250, 250)]), "o", "127.0.0.1:1", Some(&v), 5),
            Err(HandoverError::NotOwned { slot: 250, .. })
        ));
        assert!(!hs.is_active());
        // Slots already primary here (flip applied before Begin) are fine too.
        let h = hs
            .begin("h", set(&[(0, 9), (150, 150)]), "o", "127.0.0.1:1", Some(&v), 5)
            .unwrap();
        assert!(hs.is_active());
        assert!(h.contains(5) && !h.contains(10));
        assert!(matches!(
            hs.begin("h", set(&[(20, 20)]), "o", "127.0.0.1:1", Some(&v), 5),
            Err(HandoverError::AlreadyExists(_))
        ));
        assert!(matches!(
            hs.begin("g", set(&[(9, 20)]), "o", "127.0.0.1:1", Some(&v), 5),
            Err(HandoverError::Overlap { slot: 9, .. })
        ));
        hs.advance("h", &set(&[(10, 19)]), Some(&v)).unwrap();
        assert!(hs.for_slot(15).is_some());
        assert!(matches!(
            hs.advance("nope", &set(&[(10, 19)]), Some(&v)),
            Err(HandoverError::NotFound(_))
        ));
        let snap = hs.get("h").unwrap().snapshot();
        assert_eq!(snap.slots, vec![SlotRange::new(0, 19), SlotRange::new(150, 150)]);
        assert_eq!(snap.started_ms, 5);
        let done = hs.complete("h").unwrap();
        assert_eq!(done.id, "h");
        assert!(!hs.is_active());
        assert!(hs.for_slot(5).is_none());
        assert!(matches!(hs.complete("h"), Err(HandoverError::NotFound(_))));
    }

    #[test]
    fn writes_block_fills_and_completion_stops_them() {
        let hs = Handovers::new(2, 1 << 20);
        let v = view("n");
        let h = hs.begin("h", set(&[(0, 9)]), "o", "o:1", Some(&v), 0).unwrap();
        assert!(h.fill_if_allowed(b"a", || {}));
        h.mark_written(b"a");
        assert!(!h.allows_read_through(b"a"));
        assert!(!h.fill_if_allowed(b"a", || panic!("must not fill a written key")));
        assert!(h.allows_read_through(b"b"));
        h.mark_written(b"b");
        h.mark_written(b"c");
        let snap = h.snapshot();
        assert!(snap.read_through_stopped);
        assert!(!h.allows_read_through(b"d"));
        let hs = Handovers::default();
        let h = hs.begin("h", set(&[(0, 9)]), "o", "o:1", Some(&v), 0).unwrap();
        hs.complete("h").unwrap();
        assert!(!h.fill_if_allowed(b"x", || panic!("completed")));
    }

    #[test]
    fn retained_slots_are_released_by_id() {
        let hs = Handovers::default();
        hs.retain("h", &set(&[(0, 3)]));
        hs.retain("g", &set(&[(10, 10)]));
        assert_eq!(hs.retained().len(), 5);
        let g = hs.retain_generation();
        assert!(hs.release("h"));
        assert!(!hs.release("h"));
        assert_eq!(hs.retained().len(), 1);
        assert_eq!(hs.retain_generation(), g + 1);
    }
}
