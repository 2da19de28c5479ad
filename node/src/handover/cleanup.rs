//! Dropping the keys of slots this node no longer holds: after a topology removes
//! slots from this node (it is neither their primary nor a replica), their keys are
//! removed in bounded batches on a thread of its own, except slots a handover retains
//! here as its source (until released). Checked every [`POLL`]; a slot given back
//! meanwhile is left alone.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::info;

use ringcache_core::slot::{Slot, SLOT_COUNT};
use ringcache_core::slotset::SlotSet;
use ringcache_core::view::View;

use super::Handovers;
use crate::cluster::ClusterState;
use crate::store::{now_ms, Store};

pub const POLL: Duration = Duration::from_millis(100);
/// Keys removed per shard-lock hold.
pub const BATCH: usize = 256;

/// Slots with keys that this node should not keep: not held in `view`, not retained.
pub fn slots_to_drop(view: &View, retained: &SlotSet, has_keys: impl Fn(Slot) -> bool) -> SlotSet {
    (0..SLOT_COUNT as u32)
        .map(|s| s as Slot)
        .filter(|&slot| !view.slots.owners(slot).contains(&view.me.id) && !retained.contains(slot) && has_keys(slot))
        .collect()
}

/// Removes up to [`BATCH`] keys of `slot`; returns how many were removed.
pub fn drop_batch(store: &Store, slot: Slot, now: u64) -> usize {
    let mut locked = store.lock(slot);
    let mut s = locked.slot();
    let mut keys: Vec<Vec<u8>> = Vec::with_capacity(BATCH.min(s.len()));
    s.for_each_key(now, |e| {
        if keys.len() < BATCH {
            keys.push(e.key().to_vec());
        }
    });
    if keys.is_empty() && !s.is_empty() {
        // Only expired keys are left: `remove` reclaims them too.
        s.for_each_key(0, |e| {
            if keys.len() < BATCH {
                keys.push(e.key().to_vec());
            }
        });
    }
    for k in &keys {
        s.remove(k, now);
    }
    keys.len()
}

/// One pass: drops every key of the slots to drop now. Returns keys removed.
pub fn run_once(store: &Store, cluster: &ClusterState, handovers: &Handovers, shutdown: &CancellationToken) -> usize {
    let Some(view) = cluster.view() else { return 0 };
    let retained = handovers.retained();
    let targets = slots_to_drop(&view, &retained, |s| !store.lock(s).slot().is_empty());
    drop(view);
    let mut removed = 0;
    for slot in targets.iter() {
        loop {
            if shutdown.is_cancelled() {
                return removed;
            }
            // Re-check: a newer topology or a retain may have given the slot back.
            let held = cluster.view().is_some_and(|v| v.slots.owners(slot).contains(&v.me.id));
            if held || handovers.retained().contains(slot) {
                break;
            }
            let n = drop_batch(store, slot, now_ms());
            removed += n;
            if n < BATCH {
                break;
            }
            std::thread::yield_now();
        }
    }
    removed
}

/// Starts the cleanup thread (does nothing outside cluster mode).
pub fn spawn(
    store: Arc<Store>,
    cluster: Arc<ClusterState>,
    handovers: Arc<Handovers>,
    shutdown: CancellationToken,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("handover-cleanup".into())
        .spawn(move || {
            if !cluster.enabled {
                return;
            }
            let mut seen: Option<(u64, u64)> = None;
            while !shutdown.is_cancelled() {
                let now_seen = (cluster.epoch(), handovers.retain_generation());
                if now_seen.0 > 0 && seen != Some(now_seen) {
                    seen = Some(now_seen);
                    let removed = run_once(&store, &cluster, &handovers, &shutdown);
                    if removed > 0 {
                        info!(
                            epoch = now_seen.0,
                            keys = removed,
                            "handover: dropped keys of slots this node no longer holds"
                        );
                    }
                }
                std::thread::sleep(POLL);
            }
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cluster::ClusterState;
    use crate::store::{Entry, Policy};
    use ringcache_core::slot::key_slot;
    use ringcache_core::topology::{NodeInfo, SlotAssignment, SlotRange, Topology, LAST_SLOT};

    #[test]
    fn drops_only_unheld_unretained_slots_in_batches() {
        let state = ClusterState::new(true, Some("me".into()));
        let k = b"somekey";
        let ks = key_slot(k);
        let topo = Topology {
            epoch: 1,
            nodes: vec![
                NodeInfo {
                    id: "me".into(),
                    instance: state.instance.clone(),
                    resp_addr: "127.0.0.1:1".into(),
                    control_addr: "127.0.0.1:2".into(),
                    replica_addr: None,
                    zone: None,
                },
                NodeInfo {
                    id: "other".into(),
                    instance: "i".into(),
                    resp_addr: "127.0.0.1:3".into(),
                    control_addr: "127.0.0.1:4".into(),
                    replica_addr: None,
                    zone: None,
                },
            ],
            slots: vec![
                SlotAssignment {
                    range: SlotRange::new(0, 0),
                    owners: vec!["other".into(), "me".into()],
                },
                SlotAssignment {
                    range: SlotRange::new(1, LAST_SLOT),
                    owners: vec!["other".into()],
                },
            ],
        };
        let view = state.apply(topo).unwrap();
        let mut retained = SlotSet::empty();
        retained.insert(5);
        let with_keys = |s: Slot| s == 0 || s == 5 || s == ks;
        let d = slots_to_drop(&view, &retained, with_keys);
        assert!(!d.contains(0), "replicated here");
        assert!(!d.contains(5), "retained");
        assert!(d.contains(ks));
        assert_eq!(d.len(), usize::from(ks != 0 && ks != 5));

        let store = Store::new(0, Policy::S3Fifo);
        let now = now_ms();
        // Keys of one slot: {tag} hashing.
        for i in 0..(BATCH + 10) {
            let key = format!("{{t}}{i}");
            store
                .lock(key_slot(b"t"))
                .slot()
                .insert(Entry::string(key.as_bytes(), b"v", 0, 0), now);
        }
        assert_eq!(drop_batch(&store, key_slot(b"t"), now), BATCH);
        assert_eq!(drop_batch(&store, key_slot(b"t"), now), 10);
        assert_eq!(store.dbsize(), 0);
        assert_eq!(store.mem.used(), 0);
    }
}
