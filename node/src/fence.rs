//! Fencing a change of primary, so that no write the former primary acknowledged is
//! missing on the new one (the handover's flip and a rolling update's hand-over,
//! DESIGN.md §6-7; not a failover, whose former primary is gone).
//!
//! When this node becomes primary of a slot that another node led in its previous view
//! while this node replicated it there, its copy may lack the last writes that node
//! acknowledged: replication is asynchronous, and the former primary ends its streams
//! when it sees the newer epoch. So the slot is *fenced* here: every keyed command on
//! it answers `-TRYAGAIN` until the former primary's *fence* arrived. The replication link to the former primary asks for it
//! (`RINGCACHE.SYNC ... FENCE <ranges>`); the former primary, once it no longer leads
//! those slots in the same epoch and every write it accepted for them has reached its
//! backlog ([`crate::cluster::ClusterState::writes_in_flight`]), streams its records of
//! them up to its current offset and then `RFENCE <offset> <ranges>`. Applied in order,
//! those records bring everything the former primary acknowledged; then the slots are
//! served. The keys they change also go to this node's backlog, for its own replicas
//! (which may have copied the slots before the fence). Nothing here waits on a clock: a source that never answers (it restarted or
//! left the topology) ends the fence only through the topology (its instance changes,
//! it leaves, or a `Promote` takes the slots), as for a failover.
//!
//! The former primary, for its part, *owes* the fence: until it sent it, it does not
//! replicate those slots from the new primary (a copy of the new primary's state before
//! the fence would replace the only complete one, which a fence by full copy, or a
//! handover's read-through, reads).
//!
//! [`Fences`] holds the fenced slots by former primary and the owed ones by new primary;
//! [`next_pending`] and [`next_owed`] are the pure decisions of what an applied topology
//! fences and owes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;
use ringcache_core::slot::{Slot, SLOT_COUNT};
use ringcache_core::slotset::SlotSet;
use ringcache_core::view::View;
use tokio::sync::watch;

/// Slots fenced until one former primary's fence arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The former primary's process instance: only that process's backlog holds the
    /// records to wait for.
    pub instance: String,
    pub slots: SlotSet,
}

/// The fences a node waits for, by former primary id.
pub type PendingMap = BTreeMap<String, Pending>;

/// What this node must wait for after its view goes from `old` to `new`, given what it
/// waited for before (`current`):
/// - a slot it keeps leading stays fenced while its former primary is still in `new`
///   with the same instance (else no fence can come: the slot is served as it is, as
///   after a failover);
/// - a slot it leads in `new` that another node led in `old` while this node was one of
///   its replicas there becomes fenced on that node, when that node is still in `new`
///   with the same instance.
///
/// Slots in `promoted` are never fenced (a `Promote`: their former primary is lost).
pub fn next_pending(current: &PendingMap, old: Option<&View>, new: &View, promoted: &SlotSet) -> PendingMap {
    let me = new.me.id.as_str();
    let alive = |id: &str, instance: &str| new.topology.node(id).is_some_and(|n| n.instance == instance);
    let mut out = PendingMap::new();
    for (source, p) in current {
        if !alive(source, &p.instance) {
            continue;
        }
        let slots: SlotSet = p
            .slots
            .iter()
            .filter(|&s| new.is_primary(s) && !promoted.contains(s))
            .collect();
        if !slots.is_empty() {
            out.insert(
                source.clone(),
                Pending {
                    instance: p.instance.clone(),
                    slots,
                },
            );
        }
    }
    let Some(old) = old else { return out };
    for slot in (0..SLOT_COUNT as u32).map(|s| s as Slot) {
        if !new.is_primary(slot) || !old.is_replica(slot) || promoted.contains(slot) {
            continue;
        }
        let Some(former) = old.slots.primary(slot) else {
            continue;
        };
        let Some(node) = new.topology.node(former).filter(|_| former != me) else {
            continue;
        };
        // Still in the topology, but a different process: its backlog is not the one
        // that held the writes, so there is nothing to wait for.
        if old.topology.node(former).map(|n| &n.instance) != Some(&node.instance) {
            continue;
        }
        let entry = out.entry(former.to_string()).or_insert_with(|| Pending {
            instance: node.instance.clone(),
            slots: SlotSet::empty(),
        });
        if entry.instance == node.instance {
            entry.slots.insert(slot);
        }
    }
    out
}

/// What this node owes after its view goes from `old` to `new`, given what it owed
/// before (`current`), by new primary (the mirror of [`next_pending`] on the former
/// primary):
/// - a slot stays owed while its new primary still leads it in `new`, with the same
///   instance;
/// - a slot this node led in `old` and whose primary in `new` is another node that was
///   one of its replicas in `old` becomes owed to that node, when that node keeps its
///   instance.
pub fn next_owed(current: &PendingMap, old: Option<&View>, new: &View) -> PendingMap {
    let me = new.me.id.as_str();
    let mut out = PendingMap::new();
    for (target, p) in current {
        let slots: SlotSet = p
            .slots
            .iter()
            .filter(|&s| new.slots.primary(s) == Some(target.as_str()))
            .collect();
        let alive = new.topology.node(target).is_some_and(|n| n.instance == p.instance);
        if alive && !slots.is_empty() {
            out.insert(
                target.clone(),
                Pending {
                    instance: p.instance.clone(),
                    slots,
                },
            );
        }
    }
    let Some(old) = old else { return out };
    for slot in (0..SLOT_COUNT as u32).map(|s| s as Slot) {
        if !old.is_primary(slot) {
            continue;
        }
        let Some(target) = new.slots.primary(slot).filter(|t| *t != me) else {
            continue;
        };
        if !old.slots.owners(slot).iter().skip(1).any(|o| o == target) {
            continue;
        }
        let (Some(before), Some(now)) = (old.topology.node(target), new.topology.node(target)) else {
            continue;
        };
        if before.instance != now.instance {
            continue;
        }
        let entry = out.entry(target.to_string()).or_insert_with(|| Pending {
            instance: now.instance.clone(),
            slots: SlotSet::empty(),
        });
        if entry.instance == now.instance {
            entry.slots.insert(slot);
        }
    }
    out
}

/// The slots this node leads but does not serve until their former primary's fence
/// arrived, and those whose fence it owes (see the module docs).
#[derive(Debug)]
pub struct Fences {
    /// Whether any slot is fenced: the command path's only check otherwise.
    any: AtomicBool,
    pending: RwLock<PendingMap>,
    /// Owed fences, by new primary.
    owed: RwLock<PendingMap>,
    /// Bumped on every change, so replication links follow it.
    changes: watch::Sender<u64>,
}

impl Default for Fences {
    fn default() -> Self {
        Fences {
            any: AtomicBool::new(false),
            pending: RwLock::new(PendingMap::new()),
            owed: RwLock::new(PendingMap::new()),
            changes: watch::Sender::new(0),
        }
    }
}

impl Fences {
    /// Whether commands on `slot` must wait for a fence.
    pub fn is_fenced(&self, slot: Slot) -> bool {
        self.any.load(Ordering::Acquire) && self.pending.read().values().any(|p| p.slots.contains(slot))
    }

    /// Every fenced slot.
    pub fn fenced(&self) -> SlotSet {
        let mut all = SlotSet::empty();
        for p in self.pending.read().values() {
            all.union_with(&p.slots);
        }
        all
    }

    /// Every fence waited for.
    pub fn snapshot(&self) -> PendingMap {
        self.pending.read().clone()
    }

    /// Replaces what is waited for (the cluster state does, as it installs a view).
    pub(crate) fn replace(&self, next: PendingMap) {
        let mut g = self.pending.write();
        if *g == next {
            return;
        }
        for (source, p) in &next {
            let before = g.get(source).map_or(0, |b| b.slots.len());
            if p.slots.len() > before {
                tracing::info!(source = %source, slots = p.slots.len(), "fencing slots until their former primary's fence");
            }
        }
        for (source, p) in g.iter() {
            if !next.contains_key(source) {
                tracing::warn!(source = %source, slots = p.slots.len(), "fence no longer awaited: the former primary left or restarted, or the slots moved on");
            }
        }
        self.any.store(!next.is_empty(), Ordering::Release);
        *g = next;
        drop(g);
        self.changes.send_modify(|n| *n += 1);
    }

    /// The fence of `source` (process `instance`) for `slots` arrived: they are served.
    /// Returns whether something was waiting for it.
    pub fn arrived(&self, source: &str, instance: &str, slots: &SlotSet) -> bool {
        let mut g = self.pending.write();
        let Some(p) = g.get_mut(source).filter(|p| p.instance == instance) else {
            return false;
        };
        let before = p.slots.len();
        p.slots.difference_with(slots);
        let changed = p.slots.len() != before;
        if p.slots.is_empty() {
            g.remove(source);
        }
        self.any.store(!g.is_empty(), Ordering::Release);
        drop(g);
        if changed {
            tracing::info!(source = %source, slots = before, "fence arrived: slots served");
            self.changes.send_modify(|n| *n += 1);
        }
        changed
    }

    /// The slots whose fence this node owes `target` (not replicated from it until sent).
    pub fn owed_to(&self, target: &str) -> SlotSet {
        self.owed
            .read()
            .get(target)
            .map_or_else(SlotSet::empty, |p| p.slots.clone())
    }

    /// Every fence owed.
    pub fn owed(&self) -> PendingMap {
        self.owed.read().clone()
    }

    /// Replaces what is owed (the cluster state does, as it installs a view).
    pub(crate) fn replace_owed(&self, next: PendingMap) {
        let mut g = self.owed.write();
        if *g != next {
            *g = next;
            drop(g);
            self.changes.send_modify(|n| *n += 1);
        }
    }

    /// This node sent `target` the fence of `slots`.
    pub fn sent(&self, target: &str, slots: &SlotSet) {
        let mut g = self.owed.write();
        let Some(p) = g.get_mut(target) else { return };
        let before = p.slots.len();
        p.slots.difference_with(slots);
        let changed = p.slots.len() != before;
        if p.slots.is_empty() {
            g.remove(target);
        }
        drop(g);
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
    }

    /// A receiver bumped on every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ringcache_core::topology::{NodeInfo, Topology};

    fn node(id: &str, instance: &str) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            instance: instance.into(),
            resp_addr: "127.0.0.1:1".into(),
            control_addr: "127.0.0.1:2".into(),
            replica_addr: None,
            zone: None,
        }
    }

    /// A view of `me` where slot 0 is owned by `s0`, slot 1 by `s1`, the rest by "o".
    fn view(me: &str, epoch: u64, nodes: &[(&str, &str)], s0: &[&str], s1: &[&str]) -> View {
        let owners = (0..SLOT_COUNT)
            .map(|s| {
                let ids: &[&str] = match s {
                    0 => s0,
                    1 => s1,
                    _ => &["o"],
                };
                ids.iter().map(|i| i.to_string()).collect()
            })
            .collect();
        let nodes = nodes.iter().map(|(id, inst)| node(id, inst)).collect();
        View::new(Topology::from_slot_owners(epoch, nodes, owners).unwrap(), me).unwrap()
    }

    const NODES: &[(&str, &str)] = &[("o", "o1"), ("d", "d1"), ("r", "r1")];

    fn slots(v: &[Slot]) -> SlotSet {
        v.iter().copied().collect()
    }

    #[test]
    fn a_replica_that_becomes_primary_waits_for_its_former_primary() {
        let old = view("d", 1, NODES, &["o", "d"], &["o"]);
        // Slot 0: d was o's replica and leads now. Slot 1: d had no copy (read-through).
        let new = view("d", 2, NODES, &["d", "o"], &["d"]);
        let p = next_pending(&PendingMap::new(), Some(&old), &new, &SlotSet::empty());
        assert_eq!(p.len(), 1);
        assert_eq!(p["o"].instance, "o1");
        assert_eq!(p["o"].slots, slots(&[0]));
        // Nothing changes on the next apply of an unrelated topology.
        let newer = view("d", 3, NODES, &["d", "o"], &["d", "r"]);
        assert_eq!(next_pending(&p, Some(&new), &newer, &SlotSet::empty()), p);
        // The old primary and a bystander wait for nothing.
        for me in ["o", "r"] {
            let (old, new) = (
                view(me, 1, NODES, &["o", "d", "r"], &["o"]),
                view(me, 2, NODES, &["d", "o", "r"], &["o"]),
            );
            assert!(next_pending(&PendingMap::new(), Some(&old), &new, &SlotSet::empty()).is_empty());
        }
        // No previous view: nothing to fence.
        assert!(next_pending(&PendingMap::new(), None, &new, &SlotSet::empty()).is_empty());
    }

    #[test]
    fn no_fence_after_a_promotion_or_from_a_source_that_left_or_restarted() {
        let old = view("d", 1, NODES, &["o", "d"], &["o", "d"]);
        let new = view("d", 2, NODES, &["d", "o"], &["d"]);
        let promoted = slots(&[1]);
        let p = next_pending(&PendingMap::new(), Some(&old), &new, &promoted);
        assert_eq!(p["o"].slots, slots(&[0]), "the promoted slot 1 is not fenced");
        // A later promotion of the fenced slot ends its fence.
        assert!(next_pending(&p, Some(&new), &new, &slots(&[0])).is_empty());
        // The former primary restarted (new instance) or left: nothing can come.
        let restarted = view("d", 3, &[("o", "o2"), ("d", "d1")], &["d", "o"], &["d"]);
        assert!(next_pending(&p, Some(&new), &restarted, &SlotSet::empty()).is_empty());
        let gone = View::new(
            Topology::from_slot_owners(
                3,
                vec![node("d", "d1"), node("r", "r1")],
                (0..SLOT_COUNT).map(|_| vec!["d".to_string()]).collect(),
            )
            .unwrap(),
            "d",
        )
        .unwrap();
        assert!(next_pending(&p, Some(&new), &gone, &SlotSet::empty()).is_empty());
        // Flipping in the same step as the former primary's restart: nothing to wait for.
        let flipped_restarted = view("d", 2, &[("o", "o2"), ("d", "d1"), ("r", "r1")], &["d", "o"], &["o"]);
        assert!(next_pending(&PendingMap::new(), Some(&old), &flipped_restarted, &SlotSet::empty()).is_empty());
        // A fenced slot that moves away again is no longer waited for here.
        let back = view("d", 3, NODES, &["o", "d"], &["d"]);
        assert!(next_pending(&p, Some(&new), &back, &SlotSet::empty()).is_empty());
    }

    #[test]
    fn the_former_primary_owes_what_the_new_one_waits_for() {
        let old = view("o", 1, NODES, &["o", "d"], &["o", "r"]);
        // Slot 0 goes to its replica d (owed to d); slot 1 to d, which had no copy.
        let new = view("o", 2, NODES, &["d", "o"], &["d", "o"]);
        let owed = next_owed(&PendingMap::new(), Some(&old), &new);
        assert_eq!(owed.len(), 1);
        assert_eq!(owed["d"].slots, slots(&[0]));
        // The mirror of what d waits for.
        let (d_old, d_new) = (
            view("d", 1, NODES, &["o", "d"], &["o", "r"]),
            view("d", 2, NODES, &["d", "o"], &["d", "o"]),
        );
        let pending = next_pending(&PendingMap::new(), Some(&d_old), &d_new, &SlotSet::empty());
        assert_eq!(pending["o"].slots, owed["d"].slots);
        // Kept while d leads it with the same process; dropped when d restarts or the
        // slot moves on.
        assert_eq!(next_owed(&owed, Some(&new), &new), owed);
        let restarted = view("o", 3, &[("o", "o1"), ("d", "d2"), ("r", "r1")], &["d", "o"], &["d"]);
        assert!(next_owed(&owed, Some(&new), &restarted).is_empty());
        let moved_on = view("o", 3, NODES, &["r", "o"], &["d"]);
        assert!(next_owed(&owed, Some(&new), &moved_on).is_empty());
        assert!(next_owed(&PendingMap::new(), None, &new).is_empty());
        // Sent: no longer owed.
        let f = Fences::default();
        f.replace_owed(owed);
        assert_eq!(f.owed_to("d"), slots(&[0]));
        f.sent("d", &slots(&[0]));
        assert!(f.owed_to("d").is_empty() && f.owed().is_empty());
    }

    #[test]
    fn fences_arrive_per_source_and_instance() {
        let f = Fences::default();
        assert!(!f.is_fenced(0));
        let mut changes = f.subscribe();
        let mut map = PendingMap::new();
        map.insert(
            "o".into(),
            Pending {
                instance: "o1".into(),
                slots: slots(&[0, 5]),
            },
        );
        f.replace(map.clone());
        assert!(changes.has_changed().unwrap());
        changes.borrow_and_update();
        assert!(f.is_fenced(5) && !f.is_fenced(1));
        assert!(!f.arrived("o", "o2", &slots(&[0])), "another process's fence");
        assert!(!f.arrived("x", "o1", &slots(&[0])));
        assert!(f.arrived("o", "o1", &slots(&[0])));
        assert!(!f.is_fenced(0) && f.is_fenced(5));
        assert!(changes.has_changed().unwrap());
        assert!(f.arrived("o", "o1", &slots(&[5, 7])));
        assert!(f.snapshot().is_empty() && !f.is_fenced(5) && f.fenced().is_empty());
    }
}
