//! The cluster topology: which nodes exist and which of them own each hash slot.
//!
//! Plain data plus pure functions. A [`Topology`] stores slot ownership as ranges
//! (`0-5460 → [a, b]`); a [`SlotMap`] is the compact per-slot index used on the hot
//! path; [`Topology::from_slot_owners`] / [`Topology::to_slot_owners`] convert between
//! ranges and one owner list per slot. `owners[0]` is the primary, the rest are replicas.

use crate::slot::{Slot, SLOT_COUNT};

/// The highest slot number.
pub const LAST_SLOT: Slot = (SLOT_COUNT - 1) as Slot;

/// One node (pod) of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Stable node id (survives restarts; e.g. derived from the pod name).
    pub id: String,
    /// Changes on every process start, so an emptied restart is never mistaken for the
    /// old node.
    pub instance: String,
    /// `host:port` of the RESP (client) listener.
    pub resp_addr: String,
    /// `host:port` of the gRPC control listener.
    pub control_addr: String,
    /// `host:port` of the replica listener, where `READONLY` is implied: clients see the
    /// node there as a replica of each primary whose slots it copies (see
    /// [`crate::roles`]). `None` when the node has none (clients then send `READONLY`
    /// on the RESP port).
    pub replica_addr: Option<String>,
    /// Failure domain (Kubernetes `topology.kubernetes.io/zone`), if known.
    pub zone: Option<String>,
}

/// An inclusive range of slots, `start..=end`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotRange {
    pub start: Slot,
    /// Inclusive.
    pub end: Slot,
}

impl SlotRange {
    pub fn new(start: Slot, end: Slot) -> Self {
        Self { start, end }
    }

    /// The whole keyspace, `0..=16383`.
    pub fn all() -> Self {
        Self::new(0, LAST_SLOT)
    }

    /// Number of slots in the range (0 if inverted).
    pub fn len(&self) -> usize {
        if self.end < self.start {
            0
        } else {
            usize::from(self.end - self.start) + 1
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, slot: Slot) -> bool {
        self.start <= slot && slot <= self.end
    }

    pub fn iter(&self) -> impl Iterator<Item = Slot> {
        self.start..=self.end
    }
}

impl std::fmt::Display for SlotRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// Merges an ascending sequence of slots into ranges (`[1,2,3,7] → [1-3, 7]`).
pub fn ranges_from_slots(slots: impl IntoIterator<Item = Slot>) -> Vec<SlotRange> {
    let mut out: Vec<SlotRange> = Vec::new();
    for slot in slots {
        match out.last_mut() {
            Some(last) if last.end.checked_add(1) == Some(slot) => last.end = slot,
            _ => out.push(SlotRange::new(slot, slot)),
        }
    }
    out
}

/// The owners of one slot range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotAssignment {
    pub range: SlotRange,
    /// Node ids; `owners[0]` is the primary, the rest are replicas.
    pub owners: Vec<String>,
}

/// Why a topology is invalid. Every message names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("nodes[{index}].{field}: must not be empty")]
    EmptyNodeField { index: usize, field: &'static str },
    #[error("nodes[{index}].id: duplicate node id {id:?}")]
    DuplicateNodeId { index: usize, id: String },
    #[error("slots[{index}].range: start {start} is after end {end}")]
    InvertedRange { index: usize, start: Slot, end: Slot },
    #[error("slots[{index}].range: end {end} is beyond the last slot {LAST_SLOT}")]
    RangeOutOfBounds { index: usize, end: Slot },
    #[error("slots[{index}].range: {range} overlaps slots[{other}].range")]
    Overlap {
        index: usize,
        other: usize,
        range: SlotRange,
    },
    #[error("slots: slots {missing} are not assigned")]
    Uncovered { missing: SlotRange },
    #[error("slots[{index}].owners: must not be empty")]
    NoOwners { index: usize },
    #[error("slots[{index}].owners: node {id:?} is listed twice")]
    DuplicateOwner { index: usize, id: String },
    #[error("slots[{index}].owners: unknown node id {id:?}")]
    UnknownOwner { index: usize, id: String },
    #[error("slot_owners: expected {SLOT_COUNT} per-slot owner lists, got {got}")]
    WrongSlotCount { got: usize },
}

/// Epoch, nodes and slot ownership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Only grows; a node rejects a topology with an older epoch.
    pub epoch: u64,
    pub nodes: Vec<NodeInfo>,
    pub slots: Vec<SlotAssignment>,
}

/// The slots a node holds, as merged ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSlots {
    pub primary: Vec<SlotRange>,
    pub replica: Vec<SlotRange>,
}

/// What changed between two topologies, as merged ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MovedSlots {
    /// Slots whose primary changed.
    pub primary_changed: Vec<SlotRange>,
    /// Slots whose owner *set* changed (order ignored: a promotion alone is not here).
    pub owners_changed: Vec<SlotRange>,
    /// Number of (slot, node) copies in the new topology that the old one lacked, i.e.
    /// how many slot copies must be transferred.
    pub copies_added: usize,
}

impl MovedSlots {
    pub fn primary_changed_count(&self) -> usize {
        self.primary_changed.iter().map(SlotRange::len).sum()
    }

    pub fn owners_changed_count(&self) -> usize {
        self.owners_changed.iter().map(SlotRange::len).sum()
    }
}

impl Topology {
    /// Builds a topology from one owner list per slot (exactly [`SLOT_COUNT`] of them),
    /// merging adjacent slots with equal owners into ranges, and validates it.
    pub fn from_slot_owners(
        epoch: u64,
        nodes: Vec<NodeInfo>,
        slot_owners: Vec<Vec<String>>,
    ) -> Result<Self, TopologyError> {
        if slot_owners.len() != SLOT_COUNT {
            return Err(TopologyError::WrongSlotCount { got: slot_owners.len() });
        }
        let mut slots: Vec<SlotAssignment> = Vec::new();
        for (slot, owners) in (0..=LAST_SLOT).zip(slot_owners) {
            match slots.last_mut() {
                Some(last) if last.owners == owners => last.range.end = slot,
                _ => slots.push(SlotAssignment {
                    range: SlotRange::new(slot, slot),
                    owners,
                }),
            }
        }
        let topology = Self { epoch, nodes, slots };
        topology.validate()?;
        Ok(topology)
    }

    /// One owner list per slot (empty for slots no range covers).
    pub fn to_slot_owners(&self) -> Vec<Vec<String>> {
        let mut out = vec![Vec::new(); SLOT_COUNT];
        for assignment in &self.slots {
            for slot in assignment.range.iter() {
                if let Some(entry) = out.get_mut(usize::from(slot)) {
                    entry.clone_from(&assignment.owners);
                }
            }
        }
        out
    }

    /// Checks that node ids are unique and non-empty, ranges cover `0..=16383` exactly
    /// once, and every range has distinct, known owners.
    pub fn validate(&self) -> Result<(), TopologyError> {
        let mut ids = std::collections::HashSet::new();
        for (index, node) in self.nodes.iter().enumerate() {
            for (field, value) in [
                ("id", &node.id),
                ("instance", &node.instance),
                ("resp_addr", &node.resp_addr),
                ("control_addr", &node.control_addr),
            ] {
                if value.is_empty() {
                    return Err(TopologyError::EmptyNodeField { index, field });
                }
            }
            if node.replica_addr.as_deref() == Some("") {
                return Err(TopologyError::EmptyNodeField {
                    index,
                    field: "replica_addr",
                });
            }
            if !ids.insert(node.id.as_str()) {
                return Err(TopologyError::DuplicateNodeId {
                    index,
                    id: node.id.clone(),
                });
            }
        }
        for (index, assignment) in self.slots.iter().enumerate() {
            let SlotRange { start, end } = assignment.range;
            if start > end {
                return Err(TopologyError::InvertedRange { index, start, end });
            }
            if end > LAST_SLOT {
                return Err(TopologyError::RangeOutOfBounds { index, end });
            }
            if assignment.owners.is_empty() {
                return Err(TopologyError::NoOwners { index });
            }
            for (i, id) in assignment.owners.iter().enumerate() {
                if assignment.owners[..i].contains(id) {
                    return Err(TopologyError::DuplicateOwner { index, id: id.clone() });
                }
                if !ids.contains(id.as_str()) {
                    return Err(TopologyError::UnknownOwner { index, id: id.clone() });
                }
            }
        }
        // Coverage: walk the ranges in start order.
        let mut order: Vec<usize> = (0..self.slots.len()).collect();
        order.sort_by_key(|&i| (self.slots[i].range.start, i));
        let mut next: usize = 0; // first slot not yet covered
        let mut prev: Option<usize> = None;
        for index in order {
            let range = self.slots[index].range;
            let start = usize::from(range.start);
            if start < next {
                return Err(TopologyError::Overlap {
                    index,
                    other: prev.unwrap_or(index),
                    range,
                });
            }
            if start > next {
                return Err(TopologyError::Uncovered {
                    missing: SlotRange::new(next as Slot, range.start - 1),
                });
            }
            next = usize::from(range.end) + 1;
            prev = Some(index);
        }
        if next < SLOT_COUNT {
            return Err(TopologyError::Uncovered {
                missing: SlotRange::new(next as Slot, LAST_SLOT),
            });
        }
        Ok(())
    }

    /// The compact per-slot index; fails if the topology is invalid.
    pub fn slot_map(&self) -> Result<SlotMap, TopologyError> {
        self.validate()?;
        Ok(SlotMap::from_assignments(&self.slots))
    }

    /// Owners of `slot` (`[primary, replicas…]`); empty if no range covers it.
    /// A scan over the ranges: use [`SlotMap`] on hot paths.
    pub fn owners_of(&self, slot: Slot) -> &[String] {
        self.slots
            .iter()
            .find(|a| a.range.contains(slot))
            .map_or(&[], |a| a.owners.as_slice())
    }

    /// The primary of `slot`, if any range covers it.
    pub fn primary_of(&self, slot: Slot) -> Option<&str> {
        self.owners_of(slot).first().map(String::as_str)
    }

    pub fn node(&self, id: &str) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The slots `node_id` holds as primary and as replica.
    pub fn slots_of(&self, node_id: &str) -> NodeSlots {
        let mut primary = Vec::new();
        let mut replica = Vec::new();
        for assignment in &self.slots {
            match assignment.owners.iter().position(|o| o == node_id) {
                Some(0) => primary.push(assignment.range),
                Some(_) => replica.push(assignment.range),
                None => {}
            }
        }
        NodeSlots {
            primary: merge_ranges(primary),
            replica: merge_ranges(replica),
        }
    }
}

/// Sorts ranges and merges adjacent or overlapping ones.
fn merge_ranges(mut ranges: Vec<SlotRange>) -> Vec<SlotRange> {
    ranges.sort();
    let mut out: Vec<SlotRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if usize::from(r.start) <= usize::from(last.end) + 1 => {
                last.end = last.end.max(r.end);
            }
            _ => out.push(r),
        }
    }
    out
}

/// Slots whose primary changed and slots whose owner set changed from `old` to `new`
/// (slots uncovered in one of them count as changed if covered in the other).
pub fn moved_slots(old: &Topology, new: &Topology) -> MovedSlots {
    let old_owners = old.to_slot_owners();
    let new_owners = new.to_slot_owners();
    let mut primary_changed = Vec::new();
    let mut owners_changed = Vec::new();
    let mut copies_added = 0;
    for (slot, (a, b)) in (0..=LAST_SLOT).zip(old_owners.iter().zip(&new_owners)) {
        if a.first() != b.first() {
            primary_changed.push(slot);
        }
        let added = b.iter().filter(|id| !a.contains(id)).count();
        copies_added += added;
        if added > 0 || a.iter().any(|id| !b.contains(id)) {
            owners_changed.push(slot);
        }
    }
    MovedSlots {
        primary_changed: ranges_from_slots(primary_changed),
        owners_changed: ranges_from_slots(owners_changed),
        copies_added,
    }
}

/// Compact per-slot lookup: a `u16` index per slot into a table of distinct owner
/// lists (a handful per node), so a lookup is two array reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMap {
    index: Box<[u16; SLOT_COUNT]>,
    owner_sets: Vec<Vec<String>>,
}

impl SlotMap {
    /// Builds the index from ranges; later ranges win on overlap, uncovered slots map to
    /// an empty owner list. Use [`Topology::slot_map`] to build from a validated topology.
    pub fn from_assignments(assignments: &[SlotAssignment]) -> Self {
        let mut owner_sets: Vec<Vec<String>> = vec![Vec::new()];
        let mut seen: std::collections::HashMap<&[String], u16> = std::collections::HashMap::new();
        let mut index = Box::new([0u16; SLOT_COUNT]);
        for assignment in assignments {
            let set = match seen.get(assignment.owners.as_slice()) {
                Some(&set) => set,
                None => {
                    // Only pathological, heavily overlapping inputs could exceed u16; their
                    // extra sets read as unassigned.
                    let set = u16::try_from(owner_sets.len()).unwrap_or(0);
                    seen.insert(&assignment.owners, set);
                    owner_sets.push(assignment.owners.clone());
                    set
                }
            };
            for slot in assignment.range.iter() {
                if let Some(entry) = index.get_mut(usize::from(slot)) {
                    *entry = set;
                }
            }
        }
        Self { index, owner_sets }
    }

    /// Owners of `slot`, `[primary, replicas…]`; empty if unassigned or out of range.
    pub fn owners(&self, slot: Slot) -> &[String] {
        self.index
            .get(usize::from(slot))
            .and_then(|&set| self.owner_sets.get(usize::from(set)))
            .map_or(&[], Vec::as_slice)
    }

    pub fn primary(&self, slot: Slot) -> Option<&str> {
        self.owners(slot).first().map(String::as_str)
    }
}

/// A member with addresses derived from its id, for this crate's unit tests.
#[cfg(test)]
pub(crate) fn test_node(id: &str) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        instance: format!("{id}-1"),
        resp_addr: format!("{id}:6379"),
        control_addr: format!("{id}:7379"),
        replica_addr: None,
        zone: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use super::test_node as node;

    fn owners(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn three_way() -> Topology {
        Topology {
            epoch: 1,
            nodes: vec![node("a"), node("b"), node("c")],
            slots: vec![
                SlotAssignment {
                    range: SlotRange::new(0, 5460),
                    owners: owners(&["a", "b"]),
                },
                SlotAssignment {
                    range: SlotRange::new(5461, 10922),
                    owners: owners(&["b", "c"]),
                },
                SlotAssignment {
                    range: SlotRange::new(10923, 16383),
                    owners: owners(&["c", "a"]),
                },
            ],
        }
    }

    #[test]
    fn valid_topology_and_lookups() {
        let t = three_way();
        assert_eq!(t.validate(), Ok(()));
        assert_eq!(t.owners_of(0), &owners(&["a", "b"])[..]);
        assert_eq!(t.primary_of(5461), Some("b"));
        assert_eq!(t.primary_of(16383), Some("c"));
        let map = t.slot_map().unwrap();
        for slot in 0..=LAST_SLOT {
            assert_eq!(map.owners(slot), t.owners_of(slot));
        }
        assert_eq!(map.primary(10922), Some("b"));
        let a = t.slots_of("a");
        assert_eq!(a.primary, vec![SlotRange::new(0, 5460)]);
        assert_eq!(a.replica, vec![SlotRange::new(10923, 16383)]);
        assert_eq!(t.slots_of("zz"), NodeSlots::default());
    }

    #[test]
    fn slot_owner_round_trip_merges_ranges() {
        let t = three_way();
        let per_slot = t.to_slot_owners();
        assert_eq!(per_slot.len(), SLOT_COUNT);
        let back = Topology::from_slot_owners(1, t.nodes.clone(), per_slot).unwrap();
        assert_eq!(back, t);
        assert_eq!(
            Topology::from_slot_owners(1, t.nodes.clone(), vec![owners(&["a"])]),
            Err(TopologyError::WrongSlotCount { got: 1 })
        );
    }

    #[test]
    fn validation_names_the_problem() {
        let mut t = three_way();
        t.slots[1].range = SlotRange::new(5000, 10922);
        assert!(matches!(
            t.validate(),
            Err(TopologyError::Overlap { index: 1, other: 0, .. })
        ));

        let mut t = three_way();
        t.slots[1].range = SlotRange::new(5462, 10922);
        assert_eq!(
            t.validate(),
            Err(TopologyError::Uncovered {
                missing: SlotRange::new(5461, 5461)
            })
        );

        let mut t = three_way();
        t.slots.pop();
        assert_eq!(
            t.validate(),
            Err(TopologyError::Uncovered {
                missing: SlotRange::new(10923, 16383)
            })
        );

        let mut t = three_way();
        t.slots[2].range.end = 16384;
        assert_eq!(
            t.validate(),
            Err(TopologyError::RangeOutOfBounds { index: 2, end: 16384 })
        );

        let mut t = three_way();
        t.slots[0].range = SlotRange::new(10, 0);
        assert!(matches!(
            t.validate(),
            Err(TopologyError::InvertedRange { index: 0, .. })
        ));

        let mut t = three_way();
        t.slots[0].owners.clear();
        assert_eq!(t.validate(), Err(TopologyError::NoOwners { index: 0 }));

        let mut t = three_way();
        t.slots[0].owners = owners(&["a", "a"]);
        let err = t.validate().unwrap_err();
        assert_eq!(
            err,
            TopologyError::DuplicateOwner {
                index: 0,
                id: "a".into()
            }
        );
        assert!(err.to_string().starts_with("slots[0].owners"));

        let mut t = three_way();
        t.slots[2].owners = owners(&["c", "x"]);
        assert_eq!(
            t.validate(),
            Err(TopologyError::UnknownOwner {
                index: 2,
                id: "x".into()
            })
        );

        let mut t = three_way();
        t.nodes.push(node("a"));
        assert_eq!(
            t.validate(),
            Err(TopologyError::DuplicateNodeId {
                index: 3,
                id: "a".into()
            })
        );

        let mut t = three_way();
        t.nodes[1].resp_addr.clear();
        let err = t.validate().unwrap_err();
        assert_eq!(err.to_string(), "nodes[1].resp_addr: must not be empty");
    }

    #[test]
    fn unordered_ranges_are_valid() {
        let mut t = three_way();
        t.slots.reverse();
        assert_eq!(t.validate(), Ok(()));
        assert_eq!(t.primary_of(0), Some("a"));
    }

    #[test]
    fn moved_slots_distinguishes_promotion_from_transfer() {
        let old = three_way();
        let mut new = three_way();
        new.epoch = 2;
        // Promote b on 0..=99 (no data moves), move 100..=199 to d (one new copy each).
        new.nodes.push(node("d"));
        new.slots[0].range = SlotRange::new(200, 5460);
        new.slots.insert(
            0,
            SlotAssignment {
                range: SlotRange::new(0, 99),
                owners: owners(&["b", "a"]),
            },
        );
        new.slots.insert(
            1,
            SlotAssignment {
                range: SlotRange::new(100, 199),
                owners: owners(&["d", "b"]),
            },
        );
        assert_eq!(new.validate(), Ok(()));
        let moved = moved_slots(&old, &new);
        assert_eq!(moved.primary_changed, vec![SlotRange::new(0, 199)]);
        assert_eq!(moved.owners_changed, vec![SlotRange::new(100, 199)]);
        assert_eq!(moved.primary_changed_count(), 200);
        assert_eq!(moved.owners_changed_count(), 100);
        assert_eq!(moved.copies_added, 100);
        assert_eq!(moved_slots(&old, &old), MovedSlots::default());
    }

    #[test]
    fn ranges_helpers() {
        assert_eq!(
            ranges_from_slots([1, 2, 3, 7, 8, 10]),
            vec![SlotRange::new(1, 3), SlotRange::new(7, 8), SlotRange::new(10, 10)]
        );
        assert_eq!(SlotRange::all().len(), SLOT_COUNT);
        assert_eq!(SlotRange::new(5, 4).len(), 0);
        assert_eq!(SlotRange::new(3, 9).to_string(), "3-9");
        assert_eq!(SlotRange::new(3, 3).to_string(), "3");
    }
}
