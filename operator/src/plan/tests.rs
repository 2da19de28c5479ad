//! The planning contract: unit tests of each decision and property tests over generated
//! observed states (applying a plan's action and planning again finds nothing to do).

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use ringcache_core::slot::SLOT_COUNT;
use ringcache_core::status::NodeStatus;

use super::observed::{NodeObs, Observed, PodObs, PROGRESS_DEADLINE_SECONDS};
use super::*;

const NOW: i64 = 1_000_000;

fn pod(i: usize, ready: bool) -> PodObs {
    let name = format!("cache-{i}");
    PodObs {
        ip: Some(format!("198.18.0.{}", i + 1)),
        ready,
        zone: None,
        created: NOW - 10,
        not_ready_reason: None,
        window: None,
        outdated: false,
        node: if ready {
            NodeObs::Status(Box::new(NodeStatus {
                node_id: name.clone(),
                instance: format!("{name}-i1"),
                cluster_enabled: true,
                ..Default::default()
            }))
        } else {
            NodeObs::NotAsked
        },
        ordinal: i,
        name,
    }
}

fn cluster(n: usize, r: usize) -> Observed {
    Observed {
        replicas: n,
        replication_factor: r,
        pods: (0..n).map(|i| pod(i, true)).collect(),
        now: NOW,
        ..Default::default()
    }
}

/// What the nodes look like after `action` was applied to them.
fn apply(o: &mut Observed, action: &Action) {
    if let Action::ApplyTopology { topology, to, .. } = action {
        for p in o.pods.iter_mut().filter(|p| to.contains(&p.name)) {
            if let NodeObs::Status(s) = &mut p.node {
                s.epoch = topology.epoch;
                s.topology = Some(topology.clone());
            }
        }
    }
}

fn condition<'a>(h: &'a Health, t: &str) -> &'a Condition {
    h.conditions.iter().find(|c| c.type_ == t).unwrap()
}

#[test]
fn bootstrap_places_every_slot_once_all_pods_answer() {
    let mut o = cluster(3, 2);
    let p = plan(&o);
    let Action::ApplyTopology { topology, to, why } = &p.action else {
        panic!("expected a bootstrap, got {:?}", p.action)
    };
    assert_eq!(*why, ApplyReason::Bootstrap);
    assert_eq!(to, &["cache-0", "cache-1", "cache-2"]);
    assert_eq!(topology.epoch, 1);
    assert_eq!(topology.validate(), Ok(()));
    assert!(topology.slots.iter().all(|a| a.owners.len() == 2));
    assert_eq!(topology.node("cache-1").unwrap().resp_addr, "198.18.0.2:6379");
    assert_eq!(topology.node("cache-1").unwrap().instance, "cache-1-i1");
    assert_eq!(p.health.phase, Phase::Bootstrapping);
    assert_eq!(condition(&p.health, "Progressing").reason, "Bootstrap");
    apply(&mut o, &p.action);
    let p = plan(&o);
    assert_eq!(p.action, Action::None);
    assert!(p.health.ready);
    assert_eq!(p.health.phase, Phase::Running);
    assert_eq!(p.health.slots_covered, SLOT_COUNT);
    assert_eq!(p.health.epoch, 1);
    let primaries: usize = p.health.members.iter().map(|m| m.primary_slots).sum();
    assert_eq!(primaries, SLOT_COUNT);
    assert!(condition(&p.health, "Ready").status);
    assert!(!condition(&p.health, "Degraded").status);
}

#[test]
fn zones_get_distinct_copies() {
    let mut o = cluster(4, 2);
    for (i, p) in o.pods.iter_mut().enumerate() {
        p.zone = Some(format!("z{}", i % 2));
    }
    let Action::ApplyTopology { topology, .. } = plan(&o).action else {
        panic!("expected a bootstrap")
    };
    for a in &topology.slots {
        let zones: Vec<_> = a
            .owners
            .iter()
            .map(|id| topology.node(id).unwrap().zone.clone())
            .collect();
        assert_ne!(zones[0], zones[1], "slots {} share a zone", a.range);
    }
}

#[test]
fn a_pod_not_ready_holds_the_bootstrap() {
    let mut o = cluster(3, 2);
    o.pods[2] = pod(2, false);
    let p = plan(&o);
    assert_eq!(p.action, Action::None);
    assert_eq!(p.health.phase, Phase::Pending);
    assert_eq!(condition(&p.health, "Progressing").reason, "PodsStarting");
    assert!(condition(&p.health, "Progressing").status);
    assert!(!condition(&p.health, "Degraded").status);
    // Past the deadline it is a fault, named.
    o.pods[2].created = NOW - PROGRESS_DEADLINE_SECONDS - 1;
    o.pods[2].not_ready_reason = Some("CrashLoopBackOff".into());
    let p = plan(&o);
    let c = condition(&p.health, "Progressing");
    assert_eq!((c.status, c.reason), (false, "ProgressDeadlineExceeded"));
    assert!(c.message.contains("cache-2 (CrashLoopBackOff)"), "{}", c.message);
    assert_eq!(condition(&p.health, "Degraded").reason, "PodsNotReady");
    // A missing pod (the StatefulSet has not made it yet) holds it too.
    let mut o = cluster(3, 2);
    o.pods.pop();
    assert_eq!(plan(&o).action, Action::None);
}

#[test]
fn a_missing_secret_is_degraded_and_blocks_the_bootstrap() {
    let mut o = cluster(3, 2);
    o.missing_secret = Some("cache-auth (spec.auth.passwordSecretRef)".into());
    let p = plan(&o);
    assert_eq!(p.action, Action::None);
    let c = condition(&p.health, "Degraded");
    assert_eq!((c.status, c.reason), (true, "SecretMissing"));
    assert!(c.message.contains("cache-auth"));
    assert_eq!(p.health.phase, Phase::Degraded);
}

#[test]
fn a_node_that_missed_the_epoch_catches_up_and_a_restarted_one_does_not_serve() {
    let mut o = cluster(3, 2);
    let boot = plan(&o).action;
    apply(&mut o, &boot);
    // cache-2 missed a newer epoch.
    let Action::ApplyTopology { mut topology, .. } = boot else {
        unreachable!()
    };
    topology.epoch = 2;
    let newer = Action::ApplyTopology {
        topology: topology.clone(),
        to: vec!["cache-0".into(), "cache-1".into()],
        why: ApplyReason::CatchUp,
    };
    apply(&mut o, &newer);
    let p = plan(&o);
    assert_eq!(
        p.action,
        Action::ApplyTopology {
            topology: topology.clone(),
            to: vec!["cache-2".into()],
            why: ApplyReason::CatchUp
        }
    );
    assert!(!p.health.ready);
    apply(&mut o, &p.action);
    assert!(plan(&o).health.ready);
    // cache-1 restarted: a new process, empty, without a topology.
    o.pods[1] = pod(1, true);
    if let NodeObs::Status(s) = &mut o.pods[1].node {
        s.instance = "cache-1-i2".into();
    }
    let p = plan(&o);
    assert!(
        matches!(&p.action, Action::Promote { lost, .. } if lost == &["cache-1"]),
        "not caught up but failed over: it is another, empty process: {:?}",
        p.action
    );
    assert!(!p.health.ready);
    assert!(!p.health.members[1].serving);
    assert!(p.health.slots_covered < SLOT_COUNT);
    assert_eq!(condition(&p.health, "Degraded").reason, "MembersLost");
}

#[test]
fn paused_changes_nothing() {
    let mut o = cluster(3, 2);
    o.paused = true;
    let p = plan(&o);
    assert_eq!(p.action, Action::None);
    assert_eq!(p.health.phase, Phase::Paused);
    assert_eq!(condition(&p.health, "Progressing").reason, "Paused");
}

#[test]
fn epochs_never_go_back() {
    // Every node restarted (none has a topology) after the cluster reached epoch 7.
    let mut o = cluster(2, 1);
    o.status_epoch = 7;
    let Action::ApplyTopology { topology, .. } = plan(&o).action else {
        panic!("expected a bootstrap")
    };
    assert_eq!(topology.epoch, 8);
}

#[test]
fn hit_rates_come_from_the_window() {
    let mut o = cluster(2, 1);
    o.pods[0].window = Some((90, 10));
    o.pods[1].window = Some((0, 100));
    let h = plan(&o).health;
    assert_eq!(h.members[0].hit_rate, Some(0.9));
    assert_eq!(h.hit_rate, Some(0.45));
    assert_eq!(health::rate((0, 0)), None);
}

/// A cluster in any state a reconcile can meet: some pods missing or not ready, some
/// unreachable, nodes with no topology or with the current one or an older epoch.
fn observed() -> impl Strategy<Value = Observed> {
    (
        1usize..6,
        1usize..4,
        prop::collection::vec((any::<bool>(), 0u8..4, 0u8..3), 6),
        any::<bool>(),
    )
        .prop_map(|(n, r, pods, zones)| {
            let r = r.min(n);
            let mut o = cluster(n, r);
            // First bootstrap everyone, then disturb some nodes.
            let boot = plan(&o).action;
            apply(&mut o, &boot);
            for (i, p) in o.pods.iter_mut().enumerate() {
                let (ready, state, zone) = pods[i];
                if zones {
                    p.zone = Some(format!("z{zone}"));
                }
                match state {
                    0 => {}
                    1 => {
                        if let NodeObs::Status(s) = &mut p.node {
                            s.topology = None;
                            s.epoch = 0;
                        }
                    }
                    2 => p.node = NodeObs::Unreachable("connection refused".into()),
                    _ => {
                        if let NodeObs::Status(s) = &mut p.node {
                            s.epoch = s.epoch.saturating_sub(1);
                        }
                    }
                }
                if !ready {
                    p.ready = false;
                    p.node = NodeObs::NotAsked;
                }
            }
            o
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Applying what the plan says and planning again reaches, in a bounded number of
    /// steps (each topology valid, see `drive`), a state where there is nothing to do.
    #[test]
    fn prop_plan_then_apply_is_a_fixed_point(mut o in observed()) {
        drive(&mut o, 60);
        let again = plan(&o);
        prop_assert_eq!(again.action, Action::None);
        prop_assert!(again.rebalance.is_none());
    }

    /// The plan never lowers an epoch, and every topology it applies is valid and
    /// lists only pods that answered.
    #[test]
    fn prop_topologies_are_valid_and_newer(o in observed()) {
        if let Action::ApplyTopology { topology, to, why } = plan(&o).action {
            prop_assert_eq!(topology.validate(), Ok(()));
            prop_assert!(topology.epoch >= bootstrap::highest_epoch(&o) || why == ApplyReason::CatchUp);
            for name in &to {
                let p = o.pods.iter().find(|p| &p.name == name).unwrap();
                prop_assert!(p.ready && p.status().is_some());
            }
        }
    }

    /// Ready means every slot is served: conditions agree with the counts.
    #[test]
    fn prop_ready_means_covered(o in observed()) {
        let h = plan(&o).health;
        let ready = h.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        prop_assert_eq!(ready.status, h.ready);
        if h.ready {
            prop_assert_eq!(h.slots_covered, SLOT_COUNT);
            prop_assert!(h.members.iter().filter(|m| m.primary_slots > 0).all(|m| m.serving));
        }
    }
}

/// Simulates the nodes carrying out `action`: topologies applied, handovers begun and
/// completed, promotions; every replica stream is caught up.
fn carry_out(o: &mut Observed, action: &Action) {
    use ringcache_core::status::{HandoverStatus, PeerStatus};
    let set_topology = |o: &mut Observed, t: &ringcache_core::topology::Topology, to: &[String]| {
        for p in o.pods.iter_mut().filter(|p| to.contains(&p.name)) {
            if let NodeObs::Status(s) = &mut p.node {
                s.epoch = t.epoch;
                s.topology = Some(t.clone());
            }
        }
    };
    match action {
        Action::None | Action::Blocked { .. } => {}
        Action::RestartPod { pod } => {
            // Back on the new template as a new, empty process.
            if let Some(p) = o.pods.iter_mut().find(|p| &p.name == pod) {
                p.outdated = false;
                if let NodeObs::Status(s) = &mut p.node {
                    s.instance = format!("{}-restarted", s.instance);
                    s.topology = None;
                    s.epoch = 0;
                    s.handovers.clear();
                }
            }
        }
        Action::ApplyTopology { topology, to, .. } => set_topology(o, topology, to),
        Action::Stage {
            calls,
            topology,
            first,
            then,
            ..
        } => {
            for c in calls {
                if let Some(NodeObs::Status(s)) = o.pods.iter_mut().find(|p| p.name == c.target).map(|p| &mut p.node) {
                    if c.begin {
                        s.handovers.push(HandoverStatus {
                            id: c.id.clone(),
                            ..Default::default()
                        });
                    }
                }
            }
            set_topology(o, topology, first);
            set_topology(o, topology, then);
        }
        Action::Finish { complete, topology, to } => {
            for p in o.pods.iter_mut() {
                if let NodeObs::Status(s) = &mut p.node {
                    s.handovers.retain(|h| !complete.iter().any(|(_, id)| *id == h.id));
                }
            }
            set_topology(o, topology, to);
        }
        Action::Replan { complete } => {
            for p in o.pods.iter_mut() {
                if let NodeObs::Status(s) = &mut p.node {
                    s.handovers.retain(|h| !complete.iter().any(|(_, id)| *id == h.id));
                }
            }
        }
        Action::Promote {
            topology,
            promoted,
            others,
            ..
        } => {
            let mut to: Vec<String> = promoted.iter().map(|(p, _)| p.clone()).collect();
            to.extend(others.iter().cloned());
            set_topology(o, topology, &to);
        }
    }
    // Replication is instant here: every node sees every other caught up.
    let names: Vec<String> = o.pods.iter().map(|p| p.name.clone()).collect();
    for p in o.pods.iter_mut() {
        if let NodeObs::Status(s) = &mut p.node {
            s.replication.current_offset = 1;
            s.replication.peers = names
                .iter()
                .filter(|n| **n != p.name)
                .map(|n| PeerStatus {
                    replica_id: n.clone(),
                    acked_offset: 1,
                    lag_records: 0,
                    connected: true,
                })
                .collect();
        }
    }
}

/// Plans and carries out steps (10 s apart) until there is nothing to do; the actions.
fn drive(o: &mut Observed, max: usize) -> Vec<Action> {
    let mut done = Vec::new();
    for _ in 0..max {
        let p = plan(o);
        if p.action == Action::None && p.rebalance.is_none() {
            return done;
        }
        // Every step applies a valid topology in which every slot has a primary.
        if let Action::ApplyTopology { topology, .. }
        | Action::Stage { topology, .. }
        | Action::Finish { topology, .. }
        | Action::Promote { topology, .. } = &p.action
        {
            assert_eq!(topology.validate(), Ok(()), "{:?}", p.action);
        }
        carry_out(o, &p.action);
        o.rebalance = p.rebalance.clone();
        o.now += 11;
        done.push(p.action);
    }
    panic!("no fixed point after {max} steps; last plan {:?}", plan(o).action);
}

fn scaled(o: &mut Observed, n: usize) {
    o.replicas = n;
    while o.pods.len() < n {
        let i = o.pods.len();
        o.pods.push(pod(i, true));
    }
}

#[test]
fn scale_out_copies_flips_stage_by_stage_and_finishes_at_the_placement() {
    let mut o = cluster(3, 2);
    drive(&mut o, 5);
    scaled(&mut o, 5);
    let first = plan(&o);
    let Action::ApplyTopology { why, to, .. } = &first.action else {
        panic!("a copy step first: {:?}", first.action)
    };
    assert_eq!(*why, ApplyReason::RebalanceCopy);
    assert_eq!(to.len(), 5);
    let r = first.rebalance.clone().expect("a rebalance starts");
    assert_eq!(r.reason, rebalance::Reason::ScaleOut);
    assert_eq!(first.health.phase, Phase::Rebalancing);
    let actions = drive(&mut o, 30);
    let stages = actions.iter().filter(|a| matches!(a, Action::Stage { .. })).count();
    assert_eq!(stages, 4, "one flip per stage (10, 25, 50, 100)");
    assert!(matches!(actions.last(), Some(Action::Finish { .. })));
    // The end is exactly the placement over 5 members.
    let t = cluster_topology(&o).unwrap().clone();
    let p = plan(&o);
    assert!(p.health.ready, "{:?}", p.health.conditions);
    assert_eq!(p.health.phase, Phase::Running);
    assert_eq!(t.nodes.len(), 5);
    let primaries: Vec<usize> = p.health.members.iter().map(|m| m.primary_slots).collect();
    assert!(primaries.iter().all(|&n| n == 3276 || n == 3277), "{primaries:?}");
    assert_eq!(p.pods_needed, 5);
}

#[test]
fn a_stage_waits_for_the_hit_rate_and_holds_or_proceeds_at_the_timeout() {
    let mut o = cluster(3, 1);
    drive(&mut o, 5);
    scaled(&mut o, 4);
    o.pods[0].window = Some((90, 10));
    // Copy, then stage 1.
    for _ in 0..2 {
        let p = plan(&o);
        carry_out(&mut o, &p.action);
        o.rebalance = p.rebalance;
        o.now += 11;
    }
    let r = o.rebalance.clone().unwrap();
    assert_eq!(r.stages_done, 1);
    assert_eq!(r.baseline, Some(0.9));
    // The new owner misses half its reads of moved slots: below 0.95 × 0.9.
    for p in o.pods.iter_mut() {
        if let NodeObs::Status(s) = &mut p.node {
            for h in s.handovers.iter_mut() {
                h.local_hits = 50;
                h.misses = 50;
            }
        }
    }
    let p = plan(&o);
    assert_eq!(p.action, Action::None, "held below the gate");
    let c = condition(&p.health, "Progressing");
    assert!(c.message.contains("hit rate on moved slots 50.0 %"), "{}", c.message);
    assert_eq!(p.rebalance.as_ref().unwrap().observed, Some(0.5));
    // At maxStageSeconds: Hold stays, Proceed goes on.
    o.now = r.stage_started + o.warmup.max_stage_seconds;
    o.warmup.hold_on_timeout = true;
    let p = plan(&o);
    assert_eq!(p.action, Action::None);
    assert!(p.rebalance.as_ref().unwrap().held);
    assert_eq!(condition(&p.health, "Progressing").reason, "StageHeld");
    o.warmup.hold_on_timeout = false;
    assert!(matches!(plan(&o).action, Action::Stage { .. }));
    // Reads that recover pass the gate before the timeout.
    o.now = r.stage_started + o.warmup.min_stage_seconds;
    for p in o.pods.iter_mut() {
        if let NodeObs::Status(s) = &mut p.node {
            for h in s.handovers.iter_mut() {
                h.local_hits = 990;
            }
        }
    }
    assert!(matches!(plan(&o).action, Action::Stage { .. }));
}

#[test]
fn scale_in_drains_the_highest_ordinals_before_the_pods_go() {
    let mut o = cluster(5, 2);
    drive(&mut o, 5);
    o.replicas = 3;
    let p = plan(&o);
    assert_eq!(p.rebalance.as_ref().unwrap().reason, rebalance::Reason::ScaleIn);
    assert_eq!(p.pods_needed, 5, "pods 3 and 4 hold slots");
    drive(&mut o, 30);
    let t = cluster_topology(&o).unwrap();
    assert_eq!(t.nodes.len(), 3);
    assert!(t.node("cache-3").is_none() && t.node("cache-4").is_none());
    assert_eq!(plan(&o).pods_needed, 3);
}

#[test]
fn a_lost_primary_is_replaced_by_its_most_caught_up_replica_then_copies_are_restored() {
    let mut o = cluster(3, 2);
    drive(&mut o, 5);
    let t = cluster_topology(&o).unwrap().clone();
    let lost_primary_slots: Vec<u16> = (0..16384u16).filter(|&s| t.primary_of(s) == Some("cache-1")).collect();
    // cache-1 stops answering; the replicas applied different offsets from it.
    o.failing_for.insert("cache-1".into(), 1);
    assert!(
        matches!(plan(&o).action, Action::None),
        "not lost before detectionSeconds"
    );
    o.failing_for.insert("cache-1".into(), 2);
    o.pods[1].ready = false;
    o.pods[1].node = NodeObs::NotAsked;
    for (i, offset) in [(0usize, 500u64), (2, 700)] {
        if let NodeObs::Status(s) = &mut o.pods[i].node {
            s.replication.links = vec![ringcache_core::status::LinkStatus {
                primary_id: "cache-1".into(),
                applied_offset: offset,
                connected: false,
            }];
        }
    }
    let p = plan(&o);
    let Action::Promote {
        topology,
        promoted,
        lost,
        ..
    } = &p.action
    else {
        panic!("a failover: {:?}", p.action)
    };
    assert_eq!(lost, &["cache-1"]);
    assert_eq!(topology.epoch, t.epoch + 1);
    assert!(topology.node("cache-1").is_none());
    for s in lost_primary_slots {
        let owners = t.owners_of(s);
        // Each such slot's other copy is promoted (R = 2: one candidate per slot).
        assert_eq!(topology.primary_of(s), Some(owners[1].as_str()));
    }
    assert!(!promoted.is_empty());
    assert_eq!(condition(&p.health, "Degraded").reason, "MembersLost");
    carry_out(&mut o, &p.action);
    // Then the copies are restored over the two live pods.
    let p = plan(&o);
    assert_eq!(p.rebalance.as_ref().map(|r| r.reason), Some(rebalance::Reason::Restore));
    drive(&mut o, 30);
    let t = cluster_topology(&o).unwrap();
    assert!(t.slots.iter().all(|a| a.owners.len() == 2));
}

#[test]
fn the_most_caught_up_replica_wins_and_a_restarted_process_is_lost_at_once() {
    let mut o = cluster(3, 3);
    drive(&mut o, 5);
    let t = cluster_topology(&o).unwrap().clone();
    // cache-0 restarted: a new instance, no topology.
    if let NodeObs::Status(s) = &mut o.pods[0].node {
        s.instance = "cache-0-i2".into();
        s.topology = None;
        s.epoch = 0;
    }
    for (i, offset) in [(1usize, 10u64), (2, 20)] {
        if let NodeObs::Status(s) = &mut o.pods[i].node {
            s.replication.links = vec![ringcache_core::status::LinkStatus {
                primary_id: "cache-0".into(),
                applied_offset: offset,
                connected: false,
            }];
        }
    }
    let Action::Promote { topology, promoted, .. } = plan(&o).action else {
        panic!("a failover")
    };
    let s0 = (0..16384u16).find(|&s| t.primary_of(s) == Some("cache-0")).unwrap();
    assert_eq!(topology.primary_of(s0), Some("cache-2"), "the replica with offset 20");
    assert_eq!(promoted.len(), 1);
}

#[test]
fn a_scale_during_a_rebalance_is_planned_again_at_the_next_stage_boundary() {
    let mut o = cluster(3, 1);
    drive(&mut o, 5);
    scaled(&mut o, 4);
    for _ in 0..2 {
        let p = plan(&o);
        carry_out(&mut o, &p.action);
        o.rebalance = p.rebalance;
        o.now += 11;
    }
    assert_eq!(o.rebalance.as_ref().unwrap().stages_done, 1);
    scaled(&mut o, 5);
    let p = plan(&o);
    assert!(matches!(p.action, Action::Replan { .. }), "{:?}", p.action);
    carry_out(&mut o, &p.action);
    o.rebalance = p.rebalance;
    drive(&mut o, 40);
    assert_eq!(cluster_topology(&o).unwrap().nodes.len(), 5);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Any scale from n to m pods with replication factor r reaches, step by step (each
    /// step's topology valid, every slot with a primary), exactly the placement over m.
    #[test]
    fn prop_any_scale_reaches_the_placement(n in 1usize..5, m in 1usize..5, r in 1usize..3) {
        let r = r.min(n).min(m);
        let mut o = cluster(n, r);
        drive(&mut o, 5);
        if m > n {
            scaled(&mut o, m);
        } else {
            o.replicas = m;
        }
        drive(&mut o, 40);
        let t = cluster_topology(&o).unwrap().clone();
        let ids: Vec<String> = (0..m).map(|i| format!("cache-{i}")).collect();
        let mut got: Vec<String> = t.nodes.iter().map(|n| n.id.clone()).collect();
        got.sort();
        let mut want = ids.clone();
        want.sort();
        prop_assert_eq!(got, want);
        prop_assert!(t.slots.iter().all(|a| a.owners.len() == r));
        let p = plan(&o);
        prop_assert!(p.health.ready);
        prop_assert_eq!(p.pods_needed, m);
    }
}

#[test]
fn a_rolling_update_hands_primaries_over_then_restarts_one_pod_at_a_time() {
    let mut o = cluster(3, 2);
    drive(&mut o, 5);
    for p in o.pods.iter_mut() {
        p.outdated = true;
    }
    // The highest ordinal first: its primaries go to their replicas, it stays a replica.
    let p = plan(&o);
    let Action::Stage {
        calls,
        topology,
        first,
        then,
        ..
    } = &p.action
    else {
        panic!("a hand-over first: {:?}", p.action)
    };
    assert!(calls.is_empty());
    assert_eq!(first, &["cache-2"]);
    assert_eq!(then.len(), 2);
    assert!(topology.slots.iter().all(|a| a.owners[0] != "cache-2"));
    assert!(topology.slots.iter().all(|a| a.owners.len() == 2), "no copy is dropped");
    assert_eq!(condition(&p.health, "Progressing").reason, "RollingUpdate");
    carry_out(&mut o, &p.action);
    // Not while a new primary still waits for the pod's fence (its writes).
    if let NodeObs::Status(s) = &mut o.pods[0].node {
        s.replication.fencing = vec![ringcache_core::topology::SlotRange::new(0, 9)];
    }
    assert_eq!(plan(&o).action, Action::None);
    if let NodeObs::Status(s) = &mut o.pods[0].node {
        s.replication.fencing.clear();
    }
    assert_eq!(plan(&o).action, Action::RestartPod { pod: "cache-2".into() });
    // It comes back: a new, empty process on the new template.
    o.pods[2] = pod(2, true);
    if let NodeObs::Status(s) = &mut o.pods[2].node {
        s.instance = "cache-2-i2".into();
    }
    // Dropped from the topology, given its share back, then the next pod, and so on.
    let actions = drive(&mut o, 80);
    assert!(matches!(actions.first(), Some(Action::Promote { promoted, .. }) if promoted.is_empty()));
    let restarts: Vec<&str> = actions
        .iter()
        .filter_map(|a| match a {
            Action::RestartPod { pod } => Some(pod.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(restarts, ["cache-1", "cache-0"], "one at a time, highest ordinal first");
    let rejoins = actions.iter().filter(|a| matches!(a, Action::Finish { .. })).count();
    assert_eq!(rejoins, 3, "each restarted pod rejoins through a rebalance");
    // No pod was restarted while it still led slots.
    assert!(o.pods.iter().all(|p| !p.outdated));
    let p = plan(&o);
    assert!(p.health.ready);
    let t = cluster_topology(&o).unwrap();
    assert!(t
        .nodes
        .iter()
        .all(|n| n.instance.contains("restarted") || n.instance.ends_with("i2")));
}

#[test]
fn without_replicas_a_rolling_update_restarts_directly() {
    let mut o = cluster(2, 1);
    drive(&mut o, 5);
    o.pods[0].outdated = true;
    assert_eq!(plan(&o).action, Action::RestartPod { pod: "cache-0".into() });
    // Nothing rolls while the cluster is not whole.
    o.pods[1].ready = false;
    o.pods[1].node = NodeObs::NotAsked;
    assert!(!matches!(plan(&o).action, Action::RestartPod { .. }));
}
