//! Rolling updates (a new image or settings): the StatefulSet has `updateStrategy:
//! OnDelete`, so a pod runs its old template until the operator deletes it. One pod at
//! a time, only while the cluster is Ready with nothing else in progress:
//!
//! 1. **Hand over.** If the pod is the primary of any slot that has a replica, a new
//!    epoch makes each such slot's first replica its primary and keeps the pod as a
//!    replica: the pod gets it first (it stops taking writes for those slots), then
//!    everyone else; the new primaries serve those slots once the pod's fence brought
//!    every write it acknowledged (ringcache-node's `fence` module). No key moves, so
//!    no hit rate is lost.
//! 2. **Restart.** The pod, now without primaries and with no member still waiting for
//!    a fence (the pod's writes would be lost with its process), is deleted; its StatefulSet brings it
//!    back on the new template as a new, empty process, which the failover step drops
//!    from the topology (nothing to promote) and a rebalance gives its share back
//!    through the warm-up.
//!
//! The highest ordinal goes first. A pod whose slots have no replica
//! (replicationFactor 1) is restarted directly: its keys are lost, as any restart of
//! such a cluster loses them.

use ringcache_core::topology::Topology;

use super::observed::{Observed, PodObs};
use super::Action;

/// The rollout step, when a member runs an outdated template and nothing else is going on.
pub fn next(o: &Observed, t: &Topology) -> Option<Action> {
    let pod = o
        .pods
        .iter()
        .filter(|p| p.outdated && t.node(&p.name).is_some())
        .max_by_key(|p| p.ordinal)?;
    let owners = t.to_slot_owners();
    let leads = owners
        .iter()
        .any(|list| list.first() == Some(&pod.name) && list.len() > 1);
    if !leads {
        let fencing = o
            .pods
            .iter()
            .any(|p| p.status().is_some_and(|s| !s.replication.fencing.is_empty()));
        if fencing {
            return Some(Action::None);
        }
        return Some(Action::RestartPod { pod: pod.name.clone() });
    }
    let handed: Vec<Vec<String>> = owners
        .iter()
        .map(|list| match list.split_first() {
            Some((p, rest)) if *p == pod.name && !rest.is_empty() => {
                let mut l = vec![rest[0].clone(), p.clone()];
                l.extend(rest[1..].iter().cloned());
                l
            }
            _ => list.clone(),
        })
        .collect();
    let epoch = super::bootstrap::highest_epoch(o).saturating_add(1);
    let topology = match Topology::from_slot_owners(epoch, t.nodes.clone(), handed) {
        Ok(t) => t,
        Err(e) => {
            return Some(Action::Blocked {
                reason: "PlanFailed",
                message: format!("handing over {}'s primaries: {e}", pod.name),
            })
        }
    };
    let others: Vec<String> = t
        .nodes
        .iter()
        .map(|n| n.id.clone())
        .filter(|id| *id != pod.name)
        .filter(|id| o.pods.iter().any(|p| &p.name == id && p.status().is_some()))
        .collect();
    Some(Action::Stage {
        calls: Vec::new(),
        topology,
        first: vec![pod.name.clone()],
        then: others,
    })
}

/// Pods still on an outdated template.
pub fn outdated(o: &Observed) -> Vec<&PodObs> {
    o.pods.iter().filter(|p| p.outdated).collect()
}
