//! The node-side safety check of a failover promotion (DESIGN.md §7). The controller
//! picks the replica to promote (the one with the highest applied offset, read with
//! GetStatus) and sends it a new topology with `Promote`; the node refuses a promotion
//! that would make it serve slots it does not hold, so a mistaken controller cannot
//! turn a failover into data loss. Pure: no I/O.

use crate::slot::Slot;
use crate::topology::Topology;
use crate::view::View;

/// Why a promotion is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromoteError {
    #[error("this node has no topology yet, so it replicates nothing it could be promoted for")]
    NoTopology,
    #[error("topology.epoch: {offered} is not newer than the current epoch {current}")]
    NotNewer { offered: u64, current: u64 },
    #[error("slots: slot {slot} is not replicated by this node in the current topology (it would be served empty)")]
    NotAReplica { slot: Slot },
    #[error("topology: slot {slot} is listed for promotion but its primary in the new topology is {primary:?}, not this node")]
    NotPrimaryInNewTopology { slot: Slot, primary: Option<String> },
}

/// Checks that promoting this node for `slots` with `new` is safe: `new` is newer
/// than the current epoch, this node currently replicates every slot in `slots`, and
/// `new` makes it their primary.
pub fn check_promotion(
    current: Option<&View>,
    new: &Topology,
    slots: impl IntoIterator<Item = Slot>,
) -> Result<(), PromoteError> {
    let view = current.ok_or(PromoteError::NoTopology)?;
    if new.epoch <= view.topology.epoch {
        return Err(PromoteError::NotNewer {
            offered: new.epoch,
            current: view.topology.epoch,
        });
    }
    for slot in slots {
        if !view.is_replica(slot) {
            return Err(PromoteError::NotAReplica { slot });
        }
        let primary = new.primary_of(slot);
        if primary != Some(view.me.id.as_str()) {
            return Err(PromoteError::NotPrimaryInNewTopology {
                slot,
                primary: primary.map(str::to_string),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::topology::{SlotAssignment, SlotRange};

    use crate::topology::test_node as node;

    fn topo(epoch: u64, owners_low: [&str; 2], owners_high: [&str; 2]) -> Topology {
        Topology {
            epoch,
            nodes: vec![node("a"), node("b")],
            slots: vec![
                SlotAssignment {
                    range: SlotRange::new(0, 8191),
                    owners: owners_low.map(String::from).to_vec(),
                },
                SlotAssignment {
                    range: SlotRange::new(8192, 16383),
                    owners: owners_high.map(String::from).to_vec(),
                },
            ],
        }
    }

    #[test]
    fn promotion_needs_a_replica_a_newer_epoch_and_the_new_primary_role() {
        let view = View::new(topo(3, ["a", "b"], ["b", "a"]), "b").unwrap();
        let failover = topo(4, ["b", "a"], ["b", "a"]);
        assert_eq!(check_promotion(Some(&view), &failover, [0, 100, 8191]), Ok(()));
        assert_eq!(check_promotion(None, &failover, [0]), Err(PromoteError::NoTopology));
        assert_eq!(
            check_promotion(Some(&view), &topo(3, ["b", "a"], ["b", "a"]), [0]),
            Err(PromoteError::NotNewer { offered: 3, current: 3 })
        );
        // Slot 9000 is already primary here, not replicated: nothing to promote.
        assert_eq!(
            check_promotion(Some(&view), &failover, [9000]),
            Err(PromoteError::NotAReplica { slot: 9000 })
        );
        let wrong = topo(4, ["a", "b"], ["b", "a"]);
        assert_eq!(
            check_promotion(Some(&view), &wrong, [5]),
            Err(PromoteError::NotPrimaryInNewTopology {
                slot: 5,
                primary: Some("a".into())
            })
        );
    }
}
