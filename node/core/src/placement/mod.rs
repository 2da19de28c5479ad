//! Placement: a pure function from (current owners, members, weights, zones, R) to the
//! owners of every slot.
//!
//! # Rules
//! * **Quotas.** Every member gets `floor` or `ceil` of its exact weighted share of the
//!   16384 primaries (largest-remainder apportionment). Which members get the `ceil`
//!   when shares have a fractional part: first those currently holding more than their
//!   `floor` (so fewer slots move), then the larger remainder, then the smaller id.
//!   Copies (primary + replicas, `R × 16384` in all) are apportioned the same way,
//!   except that no member — and, when zones are enforced, no zone — can hold more than
//!   one copy of a slot: a share above 16384 is capped and the rest is re-spread by
//!   weight ("water-filling"). So with uneven zones, balance bends exactly as far as
//!   the zones force it and no further. [`quotas`] returns the targets; a placement
//!   meets them exactly.
//! * **Copies.** Each slot gets `min(R, members)` copies on distinct members.
//! * **Zones.** Members without a zone each count as a zone of their own. When there are
//!   at least `min(R, members)` zones, no two copies of a slot share a zone; otherwise
//!   zones are ignored (only distinct members).
//! * **Minimum movement, primaries.** A member keeps its current primaries up to its
//!   quota, giving up its highest-numbered ones (moved slots stay contiguous). A slot
//!   that lost its primary promotes one of its current replicas when that replica is
//!   under quota (the data is already there), else goes to an under-quota member,
//!   members that must gain copies anyway first. So exactly `Σ max(0, current − quota)`
//!   slots plus those of removed members change primary.
//! * **Minimum movement, replicas.** With the primaries fixed, replicas are chosen by a
//!   min-cost flow over classes of interchangeable slots (same primary zone, same
//!   existing replicas): keeping a copy costs 0, creating one costs 1. So the fewest
//!   copies are made subject to quotas and zones. In a fresh cluster each member's
//!   replicas are spread evenly over the other members, so a failure or a removal
//!   spreads its load and its slots can be promoted in place.
//! * **Deterministic.** Members are sorted by id; there is no randomness.

mod flow;
mod primaries;
mod quotas;
mod replicas;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use crate::slot::SLOT_COUNT;
use crate::topology::{NodeInfo, Topology, TopologyError};
use quotas::Prepared;

const S: usize = SLOT_COUNT;

/// A node taking part in placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// Relative capacity; `1` for equal shares. Must be at least 1.
    pub weight: u32,
    /// Failure domain; `None` counts as a zone of its own.
    pub zone: Option<String>,
}

impl Member {
    /// A member with weight 1 and no zone.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            weight: 1,
            zone: None,
        }
    }

    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    pub fn with_zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = Some(zone.into());
        self
    }
}

impl From<&NodeInfo> for Member {
    /// Weight 1, the node's zone.
    fn from(node: &NodeInfo) -> Self {
        Self {
            id: node.id.clone(),
            weight: 1,
            zone: node.zone.clone(),
        }
    }
}

/// Owners per slot (`SLOT_COUNT` entries, `[primary, replicas…]`).
pub type SlotOwners = Vec<Vec<String>>;

/// Input of [`place`].
#[derive(Debug, Clone, Copy)]
pub struct PlacementInput<'a> {
    /// Current owners per slot (`SLOT_COUNT` entries), `None` for a fresh cluster.
    /// Ids that are not members are treated as gone; empty lists as unassigned slots.
    pub current: Option<&'a [Vec<String>]>,
    pub members: &'a [Member],
    /// Wanted copies per slot (primary included); capped to the member count.
    pub replication_factor: usize,
}

/// Why no placement was computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("members: at least one member is required")]
    NoMembers,
    #[error("replication_factor: must be at least 1")]
    ReplicationFactorZero,
    #[error("members[{index}].id: must not be empty")]
    EmptyMemberId { index: usize },
    #[error("members[{index}].id: duplicate member id {id:?}")]
    DuplicateMember { index: usize, id: String },
    #[error("members[{index}].weight: must be at least 1 (member {id:?})")]
    ZeroWeight { index: usize, id: String },
    #[error("current: expected {SLOT_COUNT} per-slot owner lists, got {got}")]
    CurrentWrongLength { got: usize },
    #[error("nodes: no NodeInfo for member {id:?}")]
    MissingNodeInfo { id: String },
    #[error("no placement satisfies the zone and quota constraints")]
    Infeasible,
    #[error("resulting topology: {0}")]
    Topology(#[from] TopologyError),
}

/// Per-member targets that a placement meets exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    /// `min(R, members)`.
    pub replication_factor: usize,
    /// Whether copies of a slot must be in distinct zones.
    pub zones_enforced: bool,
    /// Primary slots per member id.
    pub primaries: BTreeMap<String, usize>,
    /// Copies (primary + replica) per member id.
    pub copies: BTreeMap<String, usize>,
}

/// The quotas [`place`] will meet for `input`.
pub fn quotas(input: &PlacementInput<'_>) -> Result<Quotas, PlacementError> {
    let p = Prepared::new(input)?;
    Ok(Quotas {
        replication_factor: p.r,
        zones_enforced: p.zones_enforced,
        primaries: p.ids.iter().cloned().zip(p.pq.iter().copied()).collect(),
        copies: p.ids.iter().cloned().zip(p.cq.iter().copied()).collect(),
    })
}

/// Computes the owners of every slot. See the module docs for the rules.
pub fn place(input: &PlacementInput<'_>) -> Result<SlotOwners, PlacementError> {
    let p = Prepared::new(input)?;
    let primary = p.place_primaries()?;
    let replicas = p.place_replicas(primary)?;
    Ok(replicas
        .primary
        .iter()
        .zip(&replicas.reps)
        .map(|(&first, rest)| {
            std::iter::once(first)
                .chain(rest.iter().copied())
                .map(|i| p.ids[i].clone())
                .collect()
        })
        .collect())
}

/// The next topology: places `members` starting from `current` (which need not be
/// valid: unassigned slots are simply placed) with epoch `current.epoch + 1` (or 1).
/// `nodes` must hold a [`NodeInfo`] for every member; other nodes are left out.
pub fn next_topology(
    current: Option<&Topology>,
    nodes: &[NodeInfo],
    members: &[Member],
    replication_factor: usize,
) -> Result<Topology, PlacementError> {
    let current_owners = current.map(Topology::to_slot_owners);
    let owners = place(&PlacementInput {
        current: current_owners.as_deref(),
        members,
        replication_factor,
    })?;
    let mut ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
    ids.sort_unstable();
    let topo_nodes = ids
        .into_iter()
        .map(|id| {
            nodes
                .iter()
                .find(|n| n.id == id)
                .cloned()
                .ok_or_else(|| PlacementError::MissingNodeInfo { id: id.to_string() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let epoch = current.map_or(1, |t| t.epoch.saturating_add(1));
    Ok(Topology::from_slot_owners(epoch, topo_nodes, owners)?)
}
