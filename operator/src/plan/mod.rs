//! The operator's decisions: pure functions from what it observed (the CacheCluster's
//! settings, its pods, what each node's control port said) to what it does next at the
//! nodes and what the status says. No Kubernetes types, no I/O: the reconcile
//! (`crate::reconcile`) observes, calls [`plan`], applies the result and writes the
//! status, so everything here is tested without a cluster.
//!
//! One step per call: the reconcile applies it and plans again from a fresh
//! observation, so a step interrupted by an operator restart is simply planned again.
//!
//! - [`observed`]: the plain-data input.
//! - [`bootstrap`]: the first topology of a new cluster, and bringing back a node that
//!   missed an epoch.
//! - [`health`]: which members serve, slot coverage, the conditions and the phase.

pub mod bootstrap;
pub mod failover;
pub mod health;
pub mod observed;
pub mod rebalance;
pub mod rollout;

use ringcache_core::topology::{SlotRange, Topology};

pub use health::{Condition, Health, MemberHealth, Phase};
pub use observed::{NodeObs, Observed, PodObs};
pub use rebalance::Rebalance;

/// `BeginHandover` (or `AdvanceHandover`) on a new owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoverCall {
    /// The new owner (pod name).
    pub target: String,
    pub id: String,
    pub source: String,
    pub source_addr: String,
    pub slots: Vec<SlotRange>,
    /// Begin (the first stage) or advance.
    pub begin: bool,
}

/// What the operator does at the nodes next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Nothing: the nodes already have what the plan wants, or it waits.
    None,
    /// `ApplyTopology(topology)` on these pods (by name), in this order.
    ApplyTopology {
        topology: Topology,
        to: Vec<String>,
        why: ApplyReason,
    },
    /// A rebalance stage: the handover calls, then the flip on `first` (the old owners
    /// and bystanders), then on `then` (the new owners), then a wait until the new owners
    /// have their fences: a new owner answers -TRYAGAIN on a slot it took over from a
    /// replica copy until the old owner sent every write it acknowledged there.
    Stage {
        calls: Vec<HandoverCall>,
        topology: Topology,
        first: Vec<String>,
        then: Vec<String>,
    },
    /// The end of a rebalance: `CompleteHandover` of each (new owner, handover id), then
    /// the final topology on `to`.
    Finish {
        complete: Vec<(String, String)>,
        topology: Topology,
        to: Vec<String>,
    },
    /// A rebalance planned again at a stage boundary: its handovers are completed; the
    /// next reconcile starts a new one from the topology in force.
    Replan { complete: Vec<(String, String)> },
    /// Failover: `Promote` on each promoted pod for the slots it takes over (from the
    /// lost primaries), then `ApplyTopology` on `others`.
    Promote {
        topology: Topology,
        promoted: Vec<(String, Vec<SlotRange>)>,
        others: Vec<String>,
        lost: Vec<String>,
        /// Slots no copy of which survived (given to an empty primary).
        orphaned: usize,
    },
    /// A rolling update restarts this pod (it leads no slot any more): delete it, its
    /// StatefulSet brings it back on the new template.
    RestartPod { pod: String },
    /// The plan cannot go on: the reason (a condition reason) and a message.
    Blocked { reason: &'static str, message: String },
}

/// Why a topology is applied, for events and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyReason {
    /// The first topology of the cluster.
    Bootstrap,
    /// Members that did not have the cluster's current topology get it.
    CatchUp,
    /// A rebalance's copy step: the new owners become extra replicas.
    RebalanceCopy,
}

impl ApplyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyReason::Bootstrap => "Bootstrap",
            ApplyReason::CatchUp => "CatchUp",
            ApplyReason::RebalanceCopy => "RebalanceCopy",
        }
    }
}

/// One planning step: the action, the rebalance state to record, and the health the
/// status reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub action: Action,
    pub rebalance: Option<Rebalance>,
    pub health: Health,
    /// How many pods the StatefulSet must keep: `spec.replicas`, or more while pods
    /// above it still hold slots (a scale-in drains them first).
    pub pods_needed: usize,
}

/// The next step for the cluster `o` describes. Precedence: nothing while paused; the
/// first topology; a failover; a node that missed an epoch; the rebalance in progress
/// or a new one.
pub fn plan(o: &Observed) -> Plan {
    let cluster_hit_rate = health::rate(
        o.pods
            .iter()
            .filter_map(|p| p.window)
            .fold((0, 0), |(h, m), (dh, dm)| (h + dh, m + dm)),
    );
    let (action, rebalance, waiting) = match (o.paused, cluster_topology(o)) {
        (true, _) => (Action::None, o.rebalance.clone(), None),
        (false, None) => (bootstrap::bootstrap(o), None, None),
        (false, Some(t)) => {
            let lost = failover::lost(o, t);
            if !lost.is_empty() {
                let ids: Vec<String> = lost.iter().map(|(id, _)| id.clone()).collect();
                let epoch = bootstrap::highest_epoch(o).saturating_add(1);
                (failover::promote(o, t, &ids, epoch), None, None)
            } else if let Some(catch_up) = bootstrap::catch_up(o, t) {
                (catch_up, o.rebalance.clone(), None)
            } else {
                // A rolling update goes one pod at a time while the cluster is whole and
                // nothing else is in progress (a pod handed over is not rebalanced back
                // before its restart: the rollout's next step comes first).
                let resumed = o
                    .rebalance
                    .clone()
                    .map(|r| rebalance::resume(o, r))
                    .filter(|n| n.rebalance.is_some() || n.action != Action::None);
                let whole = || health::assess(o, &Action::None, None, None).ready;
                match resumed {
                    Some(n) => (n.action, n.rebalance, n.waiting),
                    None => match whole().then(|| rollout::next(o, t)).flatten() {
                        Some(step) => (step, None, None),
                        None => {
                            let n = rebalance::start(o, t, cluster_hit_rate);
                            (n.action, n.rebalance, n.waiting)
                        }
                    },
                }
            }
        }
    };
    let health = health::assess(o, &action, rebalance.as_ref(), waiting.as_deref());
    let pods_needed = pods_needed(o, rebalance.as_ref());
    Plan {
        action,
        rebalance,
        health,
        pods_needed,
    }
}

/// `spec.replicas`, or one above the highest ordinal that still holds slots.
fn pods_needed(o: &Observed, rebalance: Option<&Rebalance>) -> usize {
    let topologies = cluster_topology(o)
        .into_iter()
        .chain(rebalance.iter().flat_map(|r| [&r.from, &r.to]));
    topologies
        .flat_map(|t| t.nodes.iter())
        .filter_map(|n| observed::ordinal_of(&n.id))
        .map(|ordinal| ordinal + 1)
        .chain(std::iter::once(o.replicas))
        .max()
        .unwrap_or(o.replicas)
}

/// The cluster's topology: the newest one any node reports (epochs only grow, so it is
/// the last one the operator applied anywhere).
pub fn cluster_topology(o: &Observed) -> Option<&Topology> {
    o.pods
        .iter()
        .filter_map(|p| p.status())
        .filter_map(|s| s.topology.as_ref())
        .max_by_key(|t| t.epoch)
}

#[cfg(test)]
mod tests;
