//! [`View`]: a validated topology with its per-slot index and one node's place in it,
//! the form in which a node reads ownership on its hot path.

use crate::slot::{Slot, SLOT_COUNT};
use crate::slotset::SlotSet;
use crate::topology::{NodeInfo, SlotMap, Topology, TopologyError};

/// Why a topology cannot be a node's view.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("invalid topology: {0}")]
    Invalid(#[from] TopologyError),
    #[error("topology does not list this node (id {id})")]
    NotAMember { id: String },
}

/// Who serves a command on a slot, by a node's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// This node (as primary, or as a replica for a replica read).
    Here,
    /// Another node, the slot's primary.
    Elsewhere(&'a NodeInfo),
    /// Nobody: the slot has no primary.
    Nobody,
}

/// A topology with its per-slot index and this node's place in it.
#[derive(Debug)]
pub struct View {
    pub topology: Topology,
    pub slots: SlotMap,
    pub me: NodeInfo,
}

impl View {
    /// Validates `topology` (once) and finds node `me_id` in it.
    pub fn new(topology: Topology, me_id: &str) -> Result<View, ViewError> {
        topology.validate()?;
        let me = topology
            .node(me_id)
            .cloned()
            .ok_or_else(|| ViewError::NotAMember { id: me_id.to_string() })?;
        let slots = SlotMap::from_assignments(&topology.slots);
        Ok(View { topology, slots, me })
    }

    /// The node owning `slot` as primary, if any.
    pub fn primary(&self, slot: Slot) -> Option<&NodeInfo> {
        let id = self.slots.primary(slot)?;
        self.topology.node(id)
    }

    pub fn is_primary(&self, slot: Slot) -> bool {
        self.slots.primary(slot) == Some(self.me.id.as_str())
    }

    pub fn is_replica(&self, slot: Slot) -> bool {
        self.slots.owners(slot).iter().skip(1).any(|o| *o == self.me.id)
    }

    /// Who serves a command on `slot`: this node when it is the primary, or a replica
    /// and `replica_read` (a `READONLY` connection's read); else the primary.
    pub fn owner(&self, slot: Slot, replica_read: bool) -> Owner<'_> {
        if self.is_primary(slot) || (replica_read && self.is_replica(slot)) {
            return Owner::Here;
        }
        match self.primary(slot) {
            Some(node) => Owner::Elsewhere(node),
            None => Owner::Nobody,
        }
    }

    /// Slots whose primary is `primary` and whose replicas include `replica`.
    pub fn replicated_slots(&self, primary: &str, replica: &str) -> SlotSet {
        (0..SLOT_COUNT as u32)
            .map(|s| s as Slot)
            .filter(|&slot| {
                let owners = self.slots.owners(slot);
                owners.first().map(String::as_str) == Some(primary) && owners.iter().skip(1).any(|o| o == replica)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::topology::{SlotAssignment, SlotRange};

    use crate::topology::test_node as node;

    #[test]
    fn roles_and_replicated_slots() {
        let t = Topology {
            epoch: 1,
            nodes: vec![node("a"), node("b")],
            slots: vec![
                SlotAssignment {
                    range: SlotRange::new(0, 99),
                    owners: vec!["a".into(), "b".into()],
                },
                SlotAssignment {
                    range: SlotRange::new(100, 16383),
                    owners: vec!["b".into()],
                },
            ],
        };
        let v = View::new(t.clone(), "b").unwrap();
        assert!(v.is_replica(5) && !v.is_primary(5) && v.is_primary(100));
        assert_eq!(v.owner(100, false), Owner::Here);
        assert_eq!(v.owner(5, true), Owner::Here);
        assert!(matches!(v.owner(5, false), Owner::Elsewhere(n) if n.id == "a"));
        assert_eq!(v.primary(5).map(|n| n.id.as_str()), Some("a"));
        assert_eq!(v.replicated_slots("a", "b").ranges(), vec![SlotRange::new(0, 99)]);
        assert!(v.replicated_slots("b", "a").is_empty());
        assert_eq!(
            View::new(t.clone(), "z").unwrap_err(),
            ViewError::NotAMember { id: "z".into() }
        );
        let mut bad = t;
        bad.slots.pop();
        assert!(matches!(View::new(bad, "a"), Err(ViewError::Invalid(_))));
    }
}
