//! The handover plan (DESIGN.md §6): how a controller carries a cluster from its current
//! topology to a new placement in steps, so that no slot is ever without a primary and
//! the new owners warm up before they serve.
//!
//! A plan is pure data computed from the two topologies and the stage list:
//! - [`Move`]s: the slots whose primary changes, grouped by (old primary → new
//!   primary); each is one handover on the new primary (`BeginHandover` with its first
//!   stage's slots, `AdvanceHandover` with each later stage's, `CompleteHandover`).
//! - [`Step`]s, each with its own topology and epoch (epochs grow by one per step):
//!   1. [`Step::Copy`]: with [`Warmup::CopyThenFlip`] every slot is owned by its old
//!      owners plus its new ones, as replicas, so replication copies the moving slots to
//!      the new owners (hottest keys first) and then streams every write; with
//!      [`Warmup::ReadThrough`] only the membership grows (a handover needs a topology
//!      that lists its new owner).
//!   2. [`Step::Flip`]`(k)` for each stage: the slots of stages `0..=k` have their new
//!      primary. After a copy the old owners stay on as replicas (nothing is lost if a
//!      stage is rolled back); without one the flipped slots get their final owners and
//!      the new primary reads missing keys through from the source, which retains them.
//!   3. [`Step::Final`]: exactly the target placement; old owners drop what they no
//!      longer hold.
//!
//! Stages are cumulative percentages of each move's slots (`[10, 25, 50, 100]`), so
//! every source takes part in every stage and each stage flips about its share of all
//! moving slots.

use std::collections::BTreeMap;

use crate::slot::{Slot, SLOT_COUNT};
use crate::slotset::SlotSet;
use crate::topology::{NodeInfo, Topology, TopologyError, LAST_SLOT};

/// How the new owners get the data of the slots they take over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warmup {
    /// Copy first (the new owner is an extra replica), then flip stage by stage; the
    /// new owner still reads through whatever the copy did not bring.
    CopyThenFlip,
    /// Flip without a copy: the new owner fills itself by read-through from the source.
    /// Only valid when the old primary does not stay a replica of its moved slots
    /// (replication would first empty them on the source).
    ReadThrough,
}

/// Slots moving from one primary to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The slots' primary before.
    pub source: String,
    /// The slots' primary after.
    pub target: String,
    /// Ascending.
    pub slots: Vec<Slot>,
}

impl Move {
    /// The id of this move's handover within a plan named `plan_id`.
    pub fn handover_id(&self, plan_id: &str) -> String {
        format!("{plan_id}-{}-to-{}", self.source, self.target)
    }
}

/// One step of a plan; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    Copy,
    /// Stages `0..=k` flipped.
    Flip(usize),
    Final,
}

/// Why no plan was made. Messages name the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("stages: must not be empty")]
    NoStages,
    #[error("stages[{index}]: {value} is not in 1..=100")]
    StageOutOfRange { index: usize, value: u32 },
    #[error("stages[{index}]: {value} is not greater than the stage before it")]
    StageNotIncreasing { index: usize, value: u32 },
    #[error("stages: the last stage is {last}, not 100")]
    LastStageNot100 { last: u32 },
    #[error("from: {0}")]
    From(TopologyError),
    #[error("to: {0}")]
    To(TopologyError),
    #[error("step {step:?}: {source}")]
    Step { step: Step, source: TopologyError },
    #[error("step {step:?}: the plan has {stages} stages")]
    NoSuchStage { step: Step, stages: usize },
}

/// Checks a stage list: cumulative percentages, strictly increasing, ending at 100.
pub fn check_stages(stages: &[u32]) -> Result<(), PlanError> {
    let Some(&last) = stages.last() else {
        return Err(PlanError::NoStages);
    };
    for (index, &value) in stages.iter().enumerate() {
        if !(1..=100).contains(&value) {
            return Err(PlanError::StageOutOfRange { index, value });
        }
        if index > 0 && value <= stages[index - 1] {
            return Err(PlanError::StageNotIncreasing { index, value });
        }
    }
    if last != 100 {
        return Err(PlanError::LastStageNot100 { last });
    }
    Ok(())
}

/// A plan from one topology to the next; see the module docs.
#[derive(Debug, Clone)]
pub struct HandoverPlan {
    from: Topology,
    to: Topology,
    warmup: Warmup,
    stages: Vec<u32>,
    moves: Vec<Move>,
    /// Every node of `from` and `to` (`to`'s description wins), by id.
    nodes: Vec<NodeInfo>,
}

impl HandoverPlan {
    /// Plans the way from `from` to `to` (whose epoch is ignored: the plan numbers its
    /// steps after `from.epoch`). Both must be valid topologies.
    pub fn new(from: &Topology, to: &Topology, stages: &[u32], warmup: Warmup) -> Result<Self, PlanError> {
        check_stages(stages)?;
        from.validate().map_err(PlanError::From)?;
        to.validate().map_err(PlanError::To)?;
        let old = from.to_slot_owners();
        let new = to.to_slot_owners();
        let mut grouped: BTreeMap<(String, String), Vec<Slot>> = BTreeMap::new();
        for (slot, (a, b)) in (0..=LAST_SLOT).zip(old.iter().zip(&new)) {
            if let (Some(source), Some(target)) = (a.first(), b.first()) {
                if source != target {
                    grouped.entry((source.clone(), target.clone())).or_default().push(slot);
                }
            }
        }
        let moves = grouped
            .into_iter()
            .map(|((source, target), slots)| Move { source, target, slots })
            .collect();
        let mut nodes: BTreeMap<String, NodeInfo> = BTreeMap::new();
        for n in from.nodes.iter().chain(&to.nodes) {
            nodes.insert(n.id.clone(), n.clone());
        }
        Ok(HandoverPlan {
            from: from.clone(),
            to: to.clone(),
            warmup,
            stages: stages.to_vec(),
            moves,
            nodes: nodes.into_values().collect(),
        })
    }

    pub fn from(&self) -> &Topology {
        &self.from
    }

    /// The target placement (with the epoch it was given; see [`Self::topology`]).
    pub fn to(&self) -> &Topology {
        &self.to
    }

    pub fn warmup(&self) -> Warmup {
        self.warmup
    }

    pub fn stages(&self) -> &[u32] {
        &self.stages
    }

    pub fn moves(&self) -> &[Move] {
        &self.moves
    }

    /// Every slot whose primary changes.
    pub fn moving_slots(&self) -> SlotSet {
        self.moves.iter().flat_map(|m| m.slots.iter().copied()).collect()
    }

    /// The new primaries (targets of some move), ascending and distinct.
    pub fn targets(&self) -> Vec<&str> {
        let mut t: Vec<&str> = self.moves.iter().map(|m| m.target.as_str()).collect();
        t.sort_unstable();
        t.dedup();
        t
    }

    /// Every step in order: `Copy`, `Flip(0)`, …, `Flip(n - 1)`, `Final`.
    pub fn steps(&self) -> Vec<Step> {
        std::iter::once(Step::Copy)
            .chain((0..self.stages.len()).map(Step::Flip))
            .chain(std::iter::once(Step::Final))
            .collect()
    }

    /// The epoch of `step`: `from.epoch + 1` for the copy, one more per step after it.
    pub fn epoch(&self, step: Step) -> u64 {
        let index = match step {
            Step::Copy => 0,
            Step::Flip(k) => 1 + k.min(self.stages.len()) as u64,
            Step::Final => 1 + self.stages.len() as u64,
        };
        self.from.epoch.saturating_add(1 + index)
    }

    /// How many of `mv`'s slots stages `0..=stage` flip.
    fn cut(&self, mv: &Move, stage: usize) -> usize {
        let pct = self.stages.get(stage).copied().unwrap_or(100) as usize;
        (mv.slots.len() * pct).div_ceil(100).min(mv.slots.len())
    }

    /// The slots of `mv` that stage `stage` flips (not those of earlier stages).
    pub fn stage_slots<'a>(&self, mv: &'a Move, stage: usize) -> &'a [Slot] {
        let start = if stage == 0 { 0 } else { self.cut(mv, stage - 1) };
        let end = self.cut(mv, stage);
        &mv.slots[start.min(end)..end]
    }

    /// Every slot flipped once stages `0..=stage` ran.
    pub fn flipped_by(&self, stage: usize) -> SlotSet {
        self.moves
            .iter()
            .flat_map(|m| m.slots[..self.cut(m, stage)].iter().copied())
            .collect()
    }

    /// The topology of `step`.
    pub fn topology(&self, step: Step) -> Result<Topology, PlanError> {
        let old = self.from.to_slot_owners();
        let new = self.to.to_slot_owners();
        let flipped = match step {
            Step::Copy | Step::Final => SlotSet::empty(),
            Step::Flip(k) if k < self.stages.len() => self.flipped_by(k),
            Step::Flip(_) => {
                return Err(PlanError::NoSuchStage {
                    step,
                    stages: self.stages.len(),
                })
            }
        };
        let (owners, nodes): (Vec<Vec<String>>, Vec<NodeInfo>) = match (step, self.warmup) {
            (Step::Final, _) => (new, self.to.nodes.clone()),
            (_, Warmup::CopyThenFlip) => {
                let owners = (0..SLOT_COUNT)
                    .map(|s| {
                        let union = union(&old[s], &new[s]);
                        if flipped.contains(s as Slot) {
                            lead_with(&union, &new[s][0])
                        } else {
                            union
                        }
                    })
                    .collect();
                (owners, self.nodes.clone())
            }
            (_, Warmup::ReadThrough) => {
                let owners = (0..SLOT_COUNT)
                    .map(|s| {
                        if flipped.contains(s as Slot) {
                            new[s].clone()
                        } else {
                            old[s].clone()
                        }
                    })
                    .collect();
                (owners, self.nodes.clone())
            }
        };
        Topology::from_slot_owners(self.epoch(step), nodes, owners).map_err(|source| PlanError::Step { step, source })
    }
}

/// `a` followed by the ids of `b` that `a` lacks.
fn union(a: &[String], b: &[String]) -> Vec<String> {
    let mut out = a.to_vec();
    out.extend(b.iter().filter(|id| !a.contains(id)).cloned());
    out
}

/// `owners` with `primary` moved to the front.
fn lead_with(owners: &[String], primary: &str) -> Vec<String> {
    std::iter::once(primary.to_string())
        .chain(owners.iter().filter(|o| *o != primary).cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::placement::{next_topology, Member};
    use proptest::prelude::*;

    use crate::topology::test_node as node;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("n{i}")).collect()
    }

    fn placed(prev: Option<&Topology>, members: &[String], r: usize) -> Topology {
        let nodes: Vec<NodeInfo> = members.iter().map(|id| node(id)).collect();
        let ms: Vec<Member> = members.iter().map(Member::new).collect();
        next_topology(prev, &nodes, &ms, r).unwrap()
    }

    #[test]
    fn stages_are_checked_with_field_names() {
        assert_eq!(check_stages(&[10, 25, 50, 100]), Ok(()));
        assert_eq!(check_stages(&[]), Err(PlanError::NoStages));
        assert_eq!(
            check_stages(&[10, 10, 100]).unwrap_err().to_string(),
            "stages[1]: 10 is not greater than the stage before it"
        );
        assert_eq!(
            check_stages(&[0, 100]),
            Err(PlanError::StageOutOfRange { index: 0, value: 0 })
        );
        assert_eq!(check_stages(&[50, 90]), Err(PlanError::LastStageNot100 { last: 90 }));
    }

    #[test]
    fn scale_out_by_one_in_four_stages() {
        let t1 = placed(None, &ids(3), 2);
        let t2 = placed(Some(&t1), &ids(4), 2);
        let plan = HandoverPlan::new(&t1, &t2, &[10, 25, 50, 100], Warmup::CopyThenFlip).unwrap();
        assert_eq!(plan.targets(), vec!["n3"]);
        assert_eq!(plan.moves().len(), 3, "one move from each old member");
        let moving = plan.moving_slots().len();
        assert_eq!(moving, 4096);
        assert_eq!(
            plan.steps(),
            vec![
                Step::Copy,
                Step::Flip(0),
                Step::Flip(1),
                Step::Flip(2),
                Step::Flip(3),
                Step::Final
            ]
        );
        assert_eq!(plan.epoch(Step::Copy), t1.epoch + 1);
        assert_eq!(plan.epoch(Step::Final), t1.epoch + 6);
        // Stage 0 flips about a tenth of each move.
        let first = plan.flipped_by(0).len();
        assert!((410..=413).contains(&first), "{first}");
        let copy = plan.topology(Step::Copy).unwrap();
        for mv in plan.moves() {
            for &s in &mv.slots {
                assert_eq!(copy.primary_of(s), Some(mv.source.as_str()));
                assert!(copy.owners_of(s).contains(&mv.target));
            }
            assert_eq!(mv.handover_id("scale-7"), format!("scale-7-{}-to-n3", mv.source));
        }
        let last = plan.topology(Step::Flip(3)).unwrap();
        let fin = plan.topology(Step::Final).unwrap();
        assert_eq!(fin.slots, t2.slots);
        assert_eq!(fin.epoch, plan.epoch(Step::Final));
        for s in 0..=LAST_SLOT {
            assert_eq!(last.primary_of(s), t2.primary_of(s));
        }
        assert!(matches!(
            plan.topology(Step::Flip(4)),
            Err(PlanError::NoSuchStage { stages: 4, .. })
        ));
    }

    #[test]
    fn read_through_flips_to_the_final_owners_and_drops_the_source() {
        let t1 = placed(None, &ids(3), 1);
        let t2 = placed(Some(&t1), &ids(4), 1);
        let plan = HandoverPlan::new(&t1, &t2, &[100], Warmup::ReadThrough).unwrap();
        let join = plan.topology(Step::Copy).unwrap();
        assert_eq!(join.slots, t1.slots, "the join step changes no slot");
        assert_eq!(join.nodes.len(), 4);
        let flip = plan.topology(Step::Flip(0)).unwrap();
        assert_eq!(flip.slots, t2.slots);
        assert_eq!(flip.epoch, t1.epoch + 2);
    }

    /// A cluster of `before` members re-placed on `after` members (a scale in or out,
    /// or both), with replication factor `r`, and a stage list.
    /// (members before, members after: ids `n{shift}..n{shift + after}`, r, stages, copy).
    fn scenario() -> impl Strategy<Value = (usize, Vec<String>, usize, Vec<u32>, bool)> {
        (
            1usize..7,
            0usize..7,
            1usize..7,
            1usize..4,
            prop::collection::btree_set(1u32..100, 0..4),
            any::<bool>(),
        )
            .prop_map(|(before, shift, after, r, set, copy)| {
                let mut stages: Vec<u32> = set.into_iter().collect();
                stages.push(100);
                let after_ids = (shift..shift + after).map(|i| format!("n{i}")).collect();
                (before, after_ids, r, stages, copy)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        /// Every step is a valid topology with a newer epoch; every slot always has a
        /// primary that is its old or its new one; after a copy the primary of a flipped
        /// slot has held a copy since the copy step; flips only grow; the last flip has
        /// the target's primaries and the final step is the target.
        #[test]
        fn prop_every_step_is_safe((before, after_ids, r, stages, copy) in scenario()) {
            let t1 = placed(None, &ids(before), r);
            let t2 = placed(Some(&t1), &after_ids, r);
            let warmup = if copy { Warmup::CopyThenFlip } else { Warmup::ReadThrough };
            let plan = HandoverPlan::new(&t1, &t2, &stages, warmup).unwrap();
            let copy_topo = plan.topology(Step::Copy).unwrap();
            let mut epoch = t1.epoch;
            let mut prev_flipped = SlotSet::empty();
            for step in plan.steps() {
                let t = plan.topology(step).unwrap();
                prop_assert!(t.epoch > epoch);
                epoch = t.epoch;
                for s in 0..=LAST_SLOT {
                    let p = t.primary_of(s);
                    prop_assert!(p.is_some());
                    prop_assert!(p == t1.primary_of(s) || p == t2.primary_of(s), "slot {} step {:?}", s, step);
                    if copy {
                        prop_assert!(copy_topo.owners_of(s).iter().any(|o| Some(o.as_str()) == p));
                    }
                }
                if let Step::Flip(k) = step {
                    let flipped = plan.flipped_by(k);
                    prop_assert!(prev_flipped.iter().all(|s| flipped.contains(s)));
                    let share = (plan.moving_slots().len() * stages[k] as usize) / 100;
                    prop_assert!(flipped.len() >= share);
                    prev_flipped = flipped;
                }
            }
            let last = plan.topology(Step::Flip(stages.len() - 1)).unwrap();
            for s in 0..=LAST_SLOT {
                prop_assert_eq!(last.primary_of(s), t2.primary_of(s));
            }
            let fin = plan.topology(Step::Final).unwrap();
            prop_assert_eq!(&fin.slots, &t2.slots);
            prop_assert_eq!(&fin.nodes, &t2.nodes);
            // Each move's stage slots partition its slots.
            for mv in plan.moves() {
                let parts: Vec<Slot> = (0..stages.len()).flat_map(|k| plan.stage_slots(mv, k).to_vec()).collect();
                prop_assert_eq!(&parts, &mv.slots);
            }
        }
    }
}
