//! Rebalancing with hit-rate-gated warm-up (DESIGN.md §6): scale-out, scale-in, a
//! failed pod's return, and restoring the replication factor after a failover.
//!
//! **When.** The cluster's topology is not what placement makes of it for the *desired*
//! members: the wanted pods (ordinals below `spec.replicas`) that are Ready and answer,
//! once none is still starting. Placement is deterministic and placing its own output
//! again changes nothing, so "placement differs from the topology" is exactly "there is
//! something to move".
//!
//! **How.** A [`HandoverPlan`] (`ringcache_core::handover`, copy then flip) from the
//! current topology to the placement, recorded in the status ([`Rebalance`]), carried
//! out one step per reconcile:
//! 1. the copy step on every node of the plan; wait until every new owner has its copy
//!    (its primary sees it connected, acknowledging, and at most [`MAX_COPY_LAG`]
//!    records behind);
//! 2. per stage, `BeginHandover` (first stage) or `AdvanceHandover` on each new owner,
//!    then the stage's flip: old owners first, a short wait until the new owners
//!    applied what the old ones had acknowledged, then the new owners;
//! 3. the **gate**: the next stage starts when, over the current stage (at least
//!    `minStageSeconds`), the new owners' hit rate on moved slots reached
//!    `minHitRatio` × the cluster's hit rate before the rebalance; at
//!    `maxStageSeconds` short of it, `onTimeout` proceeds or holds;
//! 4. after the last stage, `CompleteHandover` everywhere, then the final topology.
//!
//! The step in progress is read from the nodes' epoch (every step has its own), so an
//! operator that dies anywhere resumes: a repeated `Begin`/`Advance`/`Complete` is
//! harmless, and a flip that reached only some nodes is finished by the catch-up.
//! A scale request during a rebalance is planned again at the next stage boundary:
//! the handovers so far are completed and a new rebalance starts from the topology
//! then in force. A failover takes precedence over a rebalance (which is dropped).

use ringcache_core::handover::{HandoverPlan, PlanError, Step, Warmup};
use ringcache_core::placement::next_topology;
use ringcache_core::status::NodeStatus;
use ringcache_core::topology::{NodeInfo, SlotRange, Topology};

use super::observed::{Observed, PodObs};
use super::{Action, HandoverCall};

/// Most records a new owner's copy may lag behind its primary to count as done.
pub const MAX_COPY_LAG: u64 = 1_000;

/// Why a rebalance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    ScaleOut,
    ScaleIn,
    /// Pods joined and left together (or a pod came back after a failure).
    Rebalance,
    /// Only copies are added (the replication factor after a failover).
    Restore,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ScaleOut => "ScaleOut",
            Reason::ScaleIn => "ScaleIn",
            Reason::Rebalance => "Rebalance",
            Reason::Restore => "Restore",
        }
    }

    pub fn parse(s: &str) -> Reason {
        match s {
            "ScaleOut" => Reason::ScaleOut,
            "ScaleIn" => Reason::ScaleIn,
            "Restore" => Reason::Restore,
            _ => Reason::Rebalance,
        }
    }
}

/// A rebalance in progress, as the status records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rebalance {
    /// Names its handovers (`<id>-<source>-to-<target>`).
    pub id: String,
    pub reason: Reason,
    pub from: Topology,
    pub to: Topology,
    pub stages: Vec<u32>,
    /// Unix seconds.
    pub started: i64,
    /// Stages flipped so far.
    pub stages_done: usize,
    /// Unix seconds the current stage (or the copy) began.
    pub stage_started: i64,
    /// The new owners' (hits, misses) on moved slots when the stage began.
    pub stage_start: (u64, u64),
    /// The cluster's hit rate before the rebalance.
    pub baseline: Option<f64>,
    /// The new owners' hit rate in the current stage.
    pub observed: Option<f64>,
    /// Held at `maxStageSeconds` (onTimeout: Hold).
    pub held: bool,
}

impl Rebalance {
    /// The handover plan this rebalance carries out.
    pub fn plan(&self) -> Result<HandoverPlan, PlanError> {
        HandoverPlan::new(&self.from, &self.to, &self.stages, Warmup::CopyThenFlip)
    }

    /// One line for `status.rebalance.progress` and `kubectl get`.
    pub fn progress(&self, plan: &HandoverPlan) -> String {
        let moving = plan.moving_slots().len();
        let flipped = if self.stages_done == 0 {
            0
        } else {
            plan.flipped_by(self.stages_done - 1).len()
        };
        if self.stages_done == 0 {
            format!("copying, {moving} slots to move")
        } else {
            format!(
                "stage {}/{}: {flipped}/{moving} slots",
                self.stages_done,
                self.stages.len()
            )
        }
    }
}

/// What rebalancing wants now: the action and the rebalance state to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Next {
    pub action: Action,
    pub rebalance: Option<Rebalance>,
    /// Why it waits, when it does (a condition message).
    pub waiting: Option<String>,
}

fn next(action: Action, rebalance: Option<Rebalance>, waiting: Option<String>) -> Next {
    Next {
        action,
        rebalance,
        waiting,
    }
}

/// The pods that should be members now (Ready, answering, wanted), or `None` while a
/// wanted pod is still starting (wait for it rather than rebalance twice).
pub fn desired(o: &Observed) -> Option<Vec<&PodObs>> {
    let mut out = Vec::new();
    for p in o.wanted() {
        let healthy = p.ready && p.status().is_some() && p.ip.is_some();
        let failed = o.failing_for.get(&p.name).is_some_and(|&s| s >= o.detection_seconds)
            || o.now - p.created > o.progress_deadline_seconds;
        if healthy && !o.failing_for.contains_key(&p.name) {
            out.push(p);
        } else if !failed {
            return None;
        }
    }
    let missing = o.replicas.saturating_sub(o.wanted().count());
    (missing == 0).then_some(out)
}

/// Placement over the desired members, from `t`; `None` when it changes nothing.
fn target(o: &Observed, t: &Topology, members: &[&PodObs]) -> Option<Result<Topology, String>> {
    if members.is_empty() {
        return None;
    }
    let infos: Vec<NodeInfo> = members.iter().filter_map(|p| p.node_info()).collect();
    let ms: Vec<_> = members.iter().map(|p| p.member()).collect();
    match next_topology(Some(t), &infos, &ms, o.replication_factor) {
        // A node's description alone (its zone label) is no reason to move anything.
        Ok(to) => {
            let ids = |t: &Topology| {
                t.nodes
                    .iter()
                    .map(|n| (n.id.clone(), n.instance.clone()))
                    .collect::<Vec<_>>()
            };
            (to.slots != t.slots || ids(&to) != ids(t)).then_some(Ok(to))
        }
        Err(e) => Some(Err(e.to_string())),
    }
}

fn reason(from: &Topology, to: &Topology) -> Reason {
    let added = to.nodes.iter().any(|n| from.node(&n.id).is_none());
    let removed = from.nodes.iter().any(|n| to.node(&n.id).is_none());
    match (added, removed) {
        (true, false) => Reason::ScaleOut,
        (false, true) => Reason::ScaleIn,
        (true, true) => Reason::Rebalance,
        (false, false) => Reason::Restore,
    }
}

/// Starts a rebalance from `t` when placement over the desired members differs.
pub fn start(o: &Observed, t: &Topology, hit_rate: Option<f64>) -> Next {
    let Some(members) = desired(o) else {
        return next(Action::None, None, Some("waiting for the wanted pods to start".into()));
    };
    let to = match target(o, t, &members) {
        None => return next(Action::None, None, None),
        Some(Err(message)) => {
            return next(
                Action::Blocked {
                    reason: "PlacementFailed",
                    message,
                },
                None,
                None,
            )
        }
        Some(Ok(to)) => to,
    };
    let r = Rebalance {
        id: format!("r{}", t.epoch),
        reason: reason(t, &to),
        from: t.clone(),
        to,
        stages: o.warmup.stages.clone(),
        started: o.now,
        stages_done: 0,
        stage_started: o.now,
        stage_start: (0, 0),
        baseline: hit_rate,
        observed: None,
        held: false,
    };
    step(o, r, 0)
}

/// The highest epoch any node reports.
fn cluster_epoch(o: &Observed) -> u64 {
    o.pods
        .iter()
        .filter_map(PodObs::status)
        .map(|s| s.epoch)
        .max()
        .unwrap_or(0)
}

fn status_of<'a>(o: &'a Observed, id: &str) -> Option<&'a NodeStatus> {
    o.pods.iter().find(|p| p.name == id).and_then(PodObs::status)
}

/// The live pods among `ids` (those that answered), in order.
fn live(o: &Observed, ids: impl IntoIterator<Item = String>) -> Vec<String> {
    ids.into_iter().filter(|id| status_of(o, id).is_some()).collect()
}

/// Whether every new owner has its copy: for each (slot primary, new owner) pair of the
/// plan, the primary sees the new owner's stream connected, acknowledging, close behind.
pub fn copies_done(o: &Observed, plan: &HandoverPlan) -> Result<(), String> {
    let from = plan.from().to_slot_owners();
    let to = plan.to().to_slot_owners();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (a, b) in from.iter().zip(&to) {
        let Some(p) = a.first() else { continue };
        for n in b.iter().filter(|n| !a.contains(n)) {
            if !pairs.iter().any(|(x, y)| x == p && y == n) {
                pairs.push((p.clone(), n.clone()));
            }
        }
    }
    for (p, n) in pairs {
        let Some(ps) = status_of(o, &p) else {
            return Err(format!("{p} did not answer"));
        };
        let peer = ps.replication.peers.iter().find(|x| x.replica_id == n);
        let done = peer.is_some_and(|x| {
            x.connected && (ps.replication.current_offset == 0 || x.acked_offset > 0) && x.lag_records <= MAX_COPY_LAG
        });
        if !done {
            return Err(format!("{n} is still copying from {p}"));
        }
    }
    Ok(())
}

/// (hits, misses) of this rebalance's handovers on their new owners.
pub fn handover_reads(o: &Observed, r: &Rebalance, plan: &HandoverPlan) -> (u64, u64) {
    let mut hits = 0;
    let mut misses = 0;
    for mv in plan.moves() {
        let id = mv.handover_id(&r.id);
        if let Some(h) = status_of(o, &mv.target).and_then(|s| s.handovers.iter().find(|h| h.id == id)) {
            hits += h.local_hits + h.read_through_hits;
            misses += h.misses;
        }
    }
    (hits, misses)
}

/// The gate of the current stage: (passed, observed hit rate, why not).
fn gate(o: &Observed, r: &Rebalance, reads: (u64, u64)) -> (bool, Option<f64>, String) {
    let hits = reads.0.saturating_sub(r.stage_start.0);
    let misses = reads.1.saturating_sub(r.stage_start.1);
    let observed = (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64);
    let elapsed = o.now - r.stage_started;
    let want = r.baseline.map(|b| b * o.warmup.min_hit_ratio);
    if elapsed < o.warmup.min_stage_seconds {
        return (
            false,
            observed,
            format!(
                "stage {} for {elapsed} s of at least {} s",
                r.stages_done, o.warmup.min_stage_seconds
            ),
        );
    }
    match (observed, want) {
        (Some(seen), Some(want)) if seen < want => (
            false,
            observed,
            format!(
                "hit rate on moved slots {:.1} % < {:.1} % (minHitRatio × baseline)",
                seen * 100.0,
                want * 100.0
            ),
        ),
        // No reads of moved slots, or no baseline: nothing the gate could protect.
        _ => (true, observed, String::new()),
    }
}

/// The calls that begin (stage 0) or advance stage `k`.
fn handover_calls(plan: &HandoverPlan, r: &Rebalance, k: usize) -> Vec<HandoverCall> {
    plan.moves()
        .iter()
        .filter_map(|mv| {
            let slots = plan.stage_slots(mv, k);
            if slots.is_empty() {
                return None;
            }
            Some(HandoverCall {
                target: mv.target.clone(),
                id: mv.handover_id(&r.id),
                source: mv.source.clone(),
                source_addr: r.from.node(&mv.source).map(|n| n.resp_addr.clone()).unwrap_or_default(),
                slots: ringcache_core::topology::ranges_from_slots(slots.iter().copied()),
                begin: k == 0,
            })
        })
        .collect()
}

/// The step of rebalance `r` given the cluster's state. `reads_now`: the handover reads
/// for a fresh stage window.
fn step(o: &Observed, mut r: Rebalance, epoch: u64) -> Next {
    let plan = match r.plan() {
        Ok(p) => p,
        Err(e) => {
            return next(
                Action::Blocked {
                    reason: "PlanFailed",
                    message: format!("rebalance {}: {e}", r.id),
                },
                None,
                None,
            )
        }
    };
    let all_nodes = || -> Vec<String> {
        let mut ids: Vec<String> = plan.from().nodes.iter().map(|n| n.id.clone()).collect();
        ids.extend(
            plan.to()
                .nodes
                .iter()
                .map(|n| n.id.clone())
                .filter(|id| plan.from().node(id).is_none()),
        );
        ids
    };
    let reads = handover_reads(o, &r, &plan);
    let stages = plan.stages().len();
    let topology = |step: Step| plan.topology(step);
    let copy_epoch = plan.epoch(Step::Copy);
    if epoch < copy_epoch {
        return match topology(Step::Copy) {
            Ok(t) => next(
                Action::ApplyTopology {
                    topology: t,
                    to: live(o, all_nodes()),
                    why: super::ApplyReason::RebalanceCopy,
                },
                Some(r),
                None,
            ),
            Err(e) => blocked(&r, e),
        };
    }
    // Which flips the nodes have.
    let done = if epoch == copy_epoch {
        0
    } else if epoch < plan.epoch(Step::Final) {
        (epoch - copy_epoch) as usize
    } else if epoch == plan.epoch(Step::Final) {
        // Finished.
        return next(Action::None, None, None);
    } else {
        // The cluster moved on (a failover): this rebalance no longer applies.
        return next(Action::None, None, None);
    };
    if done != r.stages_done {
        // The status lags the nodes (the operator stopped after a flip): start the
        // stage's window now.
        r.stages_done = done;
        r.stage_started = o.now;
        r.stage_start = reads;
        r.held = false;
    }
    if done == 0 {
        return match copies_done(o, &plan) {
            Err(why) => next(Action::None, Some(r), Some(why)),
            Ok(()) => stage(o, r, &plan, 0, reads),
        };
    }
    let (passed, observed, why) = gate(o, &r, reads);
    r.observed = observed;
    let elapsed = o.now - r.stage_started;
    let timed_out = elapsed >= o.warmup.max_stage_seconds;
    // Short of the gate: wait, unless the stage timed out and onTimeout proceeds.
    if !passed && (!timed_out || o.warmup.hold_on_timeout) {
        r.held = timed_out;
        let why = if timed_out {
            format!("{why}; held at maxStageSeconds (onTimeout: Hold)")
        } else {
            why
        };
        return next(Action::None, Some(r), Some(why));
    }
    if done == stages {
        // Every stage flipped: complete the handovers, then the final topology.
        return match topology(Step::Final) {
            Ok(t) => {
                let complete = plan
                    .moves()
                    .iter()
                    .map(|mv| (mv.target.clone(), mv.handover_id(&r.id)))
                    .collect();
                // Pods the final topology drops (a scale-in) keep the previous one
                // until they go: a node refuses a topology that does not list it.
                let members = t.nodes.iter().map(|n| n.id.clone()).collect::<Vec<_>>();
                next(
                    Action::Finish {
                        complete,
                        to: live(o, members),
                        topology: t,
                    },
                    Some(r),
                    None,
                )
            }
            Err(e) => blocked(&r, e),
        };
    }
    // Planned again at a stage boundary when the desired members changed meanwhile.
    if let Some(members) = desired(o) {
        let wanted: Vec<&str> = members.iter().map(|p| p.name.as_str()).collect();
        let to: Vec<&str> = plan.to().nodes.iter().map(|n| n.id.as_str()).collect();
        if !members.is_empty() && wanted != to {
            let complete = plan
                .moves()
                .iter()
                .map(|mv| (mv.target.clone(), mv.handover_id(&r.id)))
                .collect();
            return next(Action::Replan { complete }, None, None);
        }
    }
    stage(o, r, &plan, done, reads)
}

/// Begin/advance and flip stage `k`.
fn stage(o: &Observed, mut r: Rebalance, plan: &HandoverPlan, k: usize, reads: (u64, u64)) -> Next {
    let flip = match plan.topology(Step::Flip(k)) {
        Ok(t) => t,
        Err(e) => return blocked(&r, e),
    };
    let targets: Vec<String> = plan.targets().into_iter().map(String::from).collect();
    let everyone: Vec<String> = flip.nodes.iter().map(|n| n.id.clone()).collect();
    let first = live(o, everyone.iter().filter(|id| !targets.contains(id)).cloned());
    let then = live(o, targets.iter().cloned());
    let calls = handover_calls(plan, &r, k);
    r.stages_done = k + 1;
    r.stage_started = o.now;
    r.stage_start = reads;
    r.held = false;
    r.observed = None;
    next(
        Action::Stage {
            calls,
            topology: flip,
            first,
            then,
        },
        Some(r),
        None,
    )
}

fn blocked(r: &Rebalance, e: PlanError) -> Next {
    next(
        Action::Blocked {
            reason: "PlanFailed",
            message: format!("rebalance {}: {e}", r.id),
        },
        None,
        None,
    )
}

/// The step of the rebalance in progress.
pub fn resume(o: &Observed, r: Rebalance) -> Next {
    step(o, r, cluster_epoch(o))
}

/// Slots as `0-99,200-300`.
pub fn ranges_text(ranges: &[SlotRange]) -> String {
    ranges.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}
