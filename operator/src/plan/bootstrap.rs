//! The first topology of a cluster, and catching up nodes that missed one.
//!
//! - **Bootstrap.** When no node reports a topology and every wanted pod (ordinals
//!   below `spec.replicas`) is Ready and answered its control port, place all 16384
//!   slots over them (`ringcache_core::placement`: exact balance, `replicationFactor`
//!   copies on distinct pods, in distinct zones when there are enough zones) and apply
//!   that topology to every one of them, in one epoch above anything seen before.
//! - **Catch-up.** When a node of the cluster's topology (the newest any node reports)
//!   runs the same process it lists but reports an older epoch (an apply that did not
//!   reach it, e.g. the operator died in the middle), apply the topology to it again.
//!
//! A node whose process changed (a restarted, empty pod) or a pod the topology does not
//! list yet (a scale-out) is left to the failover and rebalance steps.

use ringcache_core::placement::next_topology;
use ringcache_core::topology::Topology;

use super::observed::{Observed, PodObs};
use super::{Action, ApplyReason};

/// The highest epoch anyone has seen: the status's and every node's.
pub fn highest_epoch(o: &Observed) -> u64 {
    o.pods
        .iter()
        .filter_map(PodObs::status)
        .map(|s| s.epoch)
        .chain(std::iter::once(o.status_epoch))
        .max()
        .unwrap_or(0)
}

/// The first topology, once every wanted pod answers.
pub fn bootstrap(o: &Observed) -> Action {
    let wanted: Vec<&PodObs> = o.wanted().collect();
    if o.replicas == 0 || wanted.len() < o.replicas || o.missing_secret.is_some() {
        return Action::None;
    }
    let infos: Option<Vec<_>> = wanted
        .iter()
        .map(|p| p.ready.then(|| p.node_info()).flatten())
        .collect();
    let Some(infos) = infos else {
        return Action::None;
    };
    let members: Vec<_> = wanted.iter().map(|p| p.member()).collect();
    match next_topology(None, &infos, &members, o.replication_factor) {
        Ok(mut topology) => {
            topology.epoch = highest_epoch(o).saturating_add(1);
            Action::ApplyTopology {
                to: wanted.iter().map(|p| p.name.clone()).collect(),
                topology,
                why: ApplyReason::Bootstrap,
            }
        }
        Err(e) => Action::Blocked {
            reason: "PlacementFailed",
            message: format!("placing the slots over {} pods: {e}", wanted.len()),
        },
    }
}

/// `t` again on the nodes that run the process it lists but missed its epoch.
pub fn catch_up(o: &Observed, t: &Topology) -> Option<Action> {
    let behind: Vec<String> = o
        .pods
        .iter()
        .filter(|p| p.ready)
        .filter_map(|p| {
            let listed = t.node(&p.name)?;
            let status = p.status()?;
            (status.instance == listed.instance && status.epoch < t.epoch).then(|| p.name.clone())
        })
        .collect();
    (!behind.is_empty()).then(|| Action::ApplyTopology {
        topology: t.clone(),
        to: behind,
        why: ApplyReason::CatchUp,
    })
}
