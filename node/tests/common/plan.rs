//! Carries out a `ringcache_core::handover::HandoverPlan` on in-process nodes, step by
//! step, in the order a controller must (the handover module's docs): the copy step on
//! every node; per stage, `BeginHandover`/`AdvanceHandover` on each move's target,
//! then the flip on every node but the targets, then on the targets, then a wait until
//! no target fences a slot any more (each has its sources' fence: every write they
//! acknowledged; until then it answers -TRYAGAIN for those slots); `CompleteHandover`;
//! the final step. Used by tests/handover.rs and
//! examples/handover_bench.rs, so neither spells out its own controller.

use std::time::Duration;

use ringcache_core::handover::{HandoverPlan, Step};
use ringcache_core::topology::Topology;
use ringcache_node::launch::NodeHandle;
use ringcache_proto::convert::ranges_to_pb;
use ringcache_proto::pb;

/// A plan and the running nodes it is about.
pub struct PlanDriver<'a> {
    pub plan: HandoverPlan,
    /// Handover ids are `<id>-<source>-to-<target>`.
    pub id: String,
    /// Every node of the plan's topologies.
    pub nodes: Vec<&'a NodeHandle>,
    rt: tokio::runtime::Runtime,
}

impl<'a> PlanDriver<'a> {
    pub fn new(plan: HandoverPlan, id: &str, nodes: Vec<&'a NodeHandle>) -> PlanDriver<'a> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime for the control clients");
        PlanDriver {
            plan,
            id: id.to_string(),
            nodes,
            rt,
        }
    }

    pub fn node(&self, id: &str) -> &'a NodeHandle {
        self.nodes
            .iter()
            .copied()
            .find(|n| n.state.cluster.node_id == id)
            .unwrap_or_else(|| panic!("node {id} is not in the plan's nodes"))
    }

    fn control(&self, id: &str) -> ringcache_proto::auth::Client {
        self.rt.block_on(super::control_client(self.node(id)))
    }

    /// The topology of `step`.
    pub fn topology(&self, step: Step) -> Topology {
        self.plan
            .topology(step)
            .unwrap_or_else(|e| panic!("the plan has a topology for {step:?}: {e}"))
    }

    /// Applies `step`'s topology on the nodes with the given ids.
    fn apply_on<'i>(&self, topology: &Topology, ids: impl IntoIterator<Item = &'i str>) {
        for id in ids {
            self.node(id)
                .state
                .cluster
                .apply(topology.clone())
                .unwrap_or_else(|e| panic!("epoch {} does not apply on {id}: {e:?}", topology.epoch));
        }
    }

    fn ids(&self) -> Vec<&str> {
        self.nodes.iter().map(|n| n.state.cluster.node_id.as_str()).collect()
    }

    /// The copy step (or, without a copy, the join step) on every node.
    pub fn copy(&self) {
        let t = self.topology(Step::Copy);
        self.apply_on(&t, self.ids());
    }

    /// Stage `k`: begins (k = 0) or advances each move's handover with the stage's
    /// slots, flips them (old owners first), and waits until the targets serve them
    /// (their fences arrived).
    pub fn stage(&self, k: usize) {
        for mv in self.plan.moves() {
            let slots = self.plan.stage_slots(mv, k);
            if slots.is_empty() {
                continue;
            }
            let ranges = ranges_to_pb(&ringcache_core::topology::ranges_from_slots(slots.iter().copied()));
            let mut control = self.control(&mv.target);
            let id = mv.handover_id(&self.id);
            if k == 0 {
                let source = self.node(&mv.source);
                self.rt
                    .block_on(control.begin_handover(pb::BeginHandoverRequest {
                        handover_id: id,
                        slots: ranges,
                        source_node_id: mv.source.clone(),
                        source_resp_addr: source.resp_addr.to_string(),
                    }))
                    .unwrap_or_else(|e| panic!("BeginHandover on {}: {e}", mv.target));
            } else {
                self.rt
                    .block_on(control.advance_handover(pb::AdvanceHandoverRequest {
                        handover_id: id,
                        slots: ranges,
                    }))
                    .unwrap_or_else(|e| panic!("AdvanceHandover on {}: {e}", mv.target));
            }
        }
        let flip = self.topology(Step::Flip(k));
        let targets = self.plan.targets();
        let others: Vec<&str> = self.ids().into_iter().filter(|id| !targets.contains(id)).collect();
        self.apply_on(&flip, others.iter().copied());
        self.apply_on(&flip, targets.iter().copied());
        for t in targets {
            super::wait_until(
                &format!("{t} has its sources' fences for stage {k}"),
                Duration::from_secs(30),
                || self.node(t).state.replication.status().fencing.is_empty(),
            );
        }
    }

    /// `GetStatus` of every target: their handovers' counters.
    pub fn handovers(&self) -> Vec<pb::HandoverStatus> {
        self.plan
            .targets()
            .into_iter()
            .flat_map(|t| {
                let mut control = self.control(t);
                self.rt
                    .block_on(control.get_status(pb::GetStatusRequest {}))
                    .unwrap_or_else(|e| panic!("GetStatus on {t}: {e}"))
                    .into_inner()
                    .handovers
            })
            .collect()
    }

    /// `CompleteHandover` of every move; their final counters.
    pub fn complete(&self) -> Vec<pb::HandoverStatus> {
        self.plan
            .moves()
            .iter()
            .map(|mv| {
                let mut control = self.control(&mv.target);
                self.rt
                    .block_on(control.complete_handover(pb::CompleteHandoverRequest {
                        handover_id: mv.handover_id(&self.id),
                    }))
                    .unwrap_or_else(|e| panic!("CompleteHandover on {}: {e}", mv.target))
                    .into_inner()
                    .handover
                    .expect("CompleteHandover returns the handover")
            })
            .collect()
    }

    /// The final step on every node: exactly the target placement.
    pub fn finish(&self) -> Topology {
        let t = self.topology(Step::Final);
        self.apply_on(&t, self.ids());
        t
    }
}
