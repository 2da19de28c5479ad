//! Failover (DESIGN.md §7): a member of the topology is **lost** when its node runs
//! another process than the topology lists (it restarted: empty) or when it has failed
//! the operator's health checks for `spec.failover.detectionSeconds` (deleted, hung,
//! unreachable). Its write lease, granted for that long from the send time of the last
//! heartbeat sent to it (the monitor only probes a failing member), has run out by
//! then, so it can no longer accept a write: it is fenced.
//!
//! For each slot whose primary is lost, the replica with the highest offset applied
//! from that primary becomes the primary, in one new epoch without the lost members:
//! `Promote` on every promoted node (it checks that it replicates those slots), then
//! `ApplyTopology` on the other live members. A slot left with no copy at all gets the
//! live member with the fewest primaries (empty: the data of that slot is lost, the
//! cache stays available). Restoring the replication factor, and the lost pod's return
//! as a new, empty process, are then rebalances (warm-up, see [`super::rebalance`]).

use std::collections::BTreeMap;

use ringcache_core::slot::Slot;
use ringcache_core::topology::{ranges_from_slots, SlotRange, Topology, LAST_SLOT};

use super::observed::{Observed, PodObs};
use super::Action;

/// The members of `t` that are lost, with why.
pub fn lost(o: &Observed, t: &Topology) -> Vec<(String, String)> {
    t.nodes
        .iter()
        .filter_map(|n| {
            let pod = o.pods.iter().find(|p| p.name == n.id);
            if let Some(s) = pod.and_then(PodObs::status) {
                if s.instance != n.instance {
                    return Some((n.id.clone(), "restarted (a new, empty process)".to_string()));
                }
            }
            let failing = o.failing_for.get(&n.id).copied()?;
            (failing >= o.detection_seconds).then(|| {
                (
                    n.id.clone(),
                    format!(
                        "failed health checks for {failing} s (detectionSeconds {})",
                        o.detection_seconds
                    ),
                )
            })
        })
        .collect()
}

/// The offset replica `replica` applied from `primary` (0 when unknown).
fn applied(o: &Observed, replica: &str, primary: &str) -> u64 {
    o.pods
        .iter()
        .find(|p| p.name == replica)
        .and_then(PodObs::status)
        .and_then(|s| s.replication.links.iter().find(|l| l.primary_id == primary))
        .map_or(0, |l| l.applied_offset)
}

/// The promotion for the lost members `lost` of `t`, at epoch `epoch`.
pub fn promote(o: &Observed, t: &Topology, lost: &[String], epoch: u64) -> Action {
    let owners = t.to_slot_owners();
    let live_ids: Vec<String> = t
        .nodes
        .iter()
        .map(|n| n.id.clone())
        .filter(|id| !lost.contains(id))
        .collect();
    if live_ids.is_empty() {
        return Action::Blocked {
            reason: "AllMembersLost",
            message: format!("every member of epoch {} is lost: {}", t.epoch, lost.join(", ")),
        };
    }
    let mut primaries: BTreeMap<String, usize> = live_ids.iter().map(|id| (id.clone(), 0)).collect();
    for o in &owners {
        if let Some(p) = o.first().filter(|p| !lost.contains(p)) {
            *primaries.entry(p.clone()).or_default() += 1;
        }
    }
    // Per promoted node: the slots it replicates and now leads.
    let mut promoted: BTreeMap<String, Vec<Slot>> = BTreeMap::new();
    let mut orphaned = 0;
    let new_owners: Vec<Vec<String>> = owners
        .iter()
        .enumerate()
        .map(|(slot, list)| {
            let slot = slot as Slot;
            let mut kept: Vec<String> = list.iter().filter(|id| !lost.contains(id)).cloned().collect();
            match list.first() {
                Some(p) if lost.contains(p) => {
                    if let Some(best) = kept
                        .iter()
                        .enumerate()
                        .max_by_key(|(i, id)| (applied(o, id, p), std::cmp::Reverse(*i)))
                        .map(|(i, _)| i)
                    {
                        let leader = kept.remove(best);
                        promoted.entry(leader.clone()).or_default().push(slot);
                        kept.insert(0, leader);
                    } else {
                        // No copy survived: an empty primary keeps the slot served.
                        orphaned += 1;
                        let leader = primaries
                            .iter()
                            .min_by_key(|(id, n)| (**n, (*id).clone()))
                            .map(|(id, _)| id.clone())
                            .unwrap_or_else(|| live_ids[0].clone());
                        *primaries.entry(leader.clone()).or_default() += 1;
                        kept.push(leader);
                    }
                }
                _ => {}
            }
            kept
        })
        .collect();
    let nodes = t.nodes.iter().filter(|n| !lost.contains(&n.id)).cloned().collect();
    let topology = match Topology::from_slot_owners(epoch, nodes, new_owners) {
        Ok(t) => t,
        Err(e) => {
            return Action::Blocked {
                reason: "PlanFailed",
                message: format!("promotion topology: {e}"),
            }
        }
    };
    let promoted: Vec<(String, Vec<SlotRange>)> = promoted
        .into_iter()
        .map(|(id, slots)| (id, ranges_from_slots(slots)))
        .collect();
    let others = live_ids
        .into_iter()
        .filter(|id| !promoted.iter().any(|(p, _)| p == id))
        .filter(|id| o.pods.iter().any(|p| &p.name == id && p.status().is_some()))
        .collect();
    Action::Promote {
        topology,
        promoted,
        others,
        lost: lost.to_vec(),
        orphaned,
    }
}

/// Slots in `ranges`.
pub fn count(ranges: &[SlotRange]) -> usize {
    ranges.iter().map(|r| r.len()).sum()
}

/// Whether `slot` is in `ranges`.
pub fn contains(ranges: &[SlotRange], slot: Slot) -> bool {
    slot <= LAST_SLOT && ranges.iter().any(|r| r.contains(slot))
}
