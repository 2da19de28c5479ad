//! Step 4: the status subresource, from the plan's health. A condition keeps its
//! `lastTransitionTime` while its status stays the same; an Event marks the cluster
//! becoming Ready or losing it, and each new fault reason.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition as KubeCondition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use ringcache_core::topology::{NodeInfo, SlotAssignment, SlotRange, Topology};

use super::children::{Names, MANAGER};
use super::observe::Observation;
use super::{Context, Error};
use crate::crd::{
    CacheCluster, CacheClusterStatus, FailoverStatus, HotKeyStatus, MemberStatus, MoveStatus, NodeRecord,
    Phase as CrdPhase, RebalanceStatus, TopologyRecord,
};
use crate::plan::health::{Phase, DEGRADED, READY};
use crate::plan::rebalance::{ranges_text, Reason, Rebalance};
use crate::plan::Plan;

/// A topology as the status records it.
pub fn topology_record(t: &Topology) -> TopologyRecord {
    TopologyRecord {
        epoch: t.epoch,
        nodes: t
            .nodes
            .iter()
            .map(|n| NodeRecord {
                id: n.id.clone(),
                instance: n.instance.clone(),
                resp_addr: n.resp_addr.clone(),
                control_addr: n.control_addr.clone(),
                replica_addr: n.replica_addr.clone(),
                zone: n.zone.clone(),
            })
            .collect(),
        slots: t
            .slots
            .iter()
            .map(|a| format!("{} {}", a.range, a.owners.join(",")))
            .collect(),
    }
}

fn range_of(text: &str) -> Option<SlotRange> {
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    Some(SlotRange::new(a.parse().ok()?, b.parse().ok()?))
}

/// A recorded topology back (an error names the line that does not parse).
pub fn topology_from_record(r: &TopologyRecord) -> Result<Topology, String> {
    let slots = r
        .slots
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let bad = || format!("slots[{i}]: {line:?} is not `<start>-<end> <owner>,…`");
            let (range, owners) = line.split_once(' ').ok_or_else(bad)?;
            Ok(SlotAssignment {
                range: range_of(range).ok_or_else(bad)?,
                owners: owners.split(',').map(str::to_string).collect(),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let t = Topology {
        epoch: r.epoch,
        nodes: r
            .nodes
            .iter()
            .map(|n| NodeInfo {
                id: n.id.clone(),
                instance: n.instance.clone(),
                resp_addr: n.resp_addr.clone(),
                control_addr: n.control_addr.clone(),
                replica_addr: n.replica_addr.clone(),
                zone: n.zone.clone(),
            })
            .collect(),
        slots,
    };
    t.validate().map_err(|e| e.to_string())?;
    Ok(t)
}

fn time_of(secs: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap_or_default())
}

/// The status of a rebalance.
pub fn rebalance_status(r: &Rebalance) -> RebalanceStatus {
    let plan = r.plan().ok();
    RebalanceStatus {
        id: r.id.clone(),
        reason: r.reason.as_str().to_string(),
        started: time_of(r.started),
        stages: r.stages.iter().map(|&s| i32::try_from(s).unwrap_or(100)).collect(),
        stages_done: i32::try_from(r.stages_done).unwrap_or(0),
        stage_started: time_of(r.stage_started),
        stage_start_hits: r.stage_start.0,
        stage_start_misses: r.stage_start.1,
        baseline_hit_rate: r.baseline,
        observed_hit_rate: r.observed,
        held: r.held,
        progress: plan.as_ref().map(|p| r.progress(p)).unwrap_or_default(),
        moves: plan
            .as_ref()
            .map(|p| {
                p.moves()
                    .iter()
                    .map(|m| MoveStatus {
                        source: m.source.clone(),
                        target: m.target.clone(),
                        slots: ranges_text(&ringcache_core::topology::ranges_from_slots(m.slots.iter().copied())),
                        count: i32::try_from(m.slots.len()).unwrap_or(0),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        from: topology_record(&r.from),
        to: topology_record(&r.to),
    }
}

/// A recorded rebalance back.
pub fn rebalance_from_status(s: &RebalanceStatus) -> Result<Rebalance, String> {
    Ok(Rebalance {
        id: s.id.clone(),
        reason: Reason::parse(&s.reason),
        from: topology_from_record(&s.from).map_err(|e| format!("status.rebalance.from.{e}"))?,
        to: topology_from_record(&s.to).map_err(|e| format!("status.rebalance.to.{e}"))?,
        stages: s.stages.iter().map(|&x| u32::try_from(x).unwrap_or(100)).collect(),
        started: s.started.0.as_second(),
        stages_done: usize::try_from(s.stages_done).unwrap_or(0),
        stage_started: s.stage_started.0.as_second(),
        stage_start: (s.stage_start_hits, s.stage_start_misses),
        baseline: s.baseline_hit_rate,
        observed: s.observed_hit_rate,
        held: s.held,
    })
}

/// The status for `health`, keeping unchanged conditions' transition times from `old`.
pub fn status_of(
    names: &Names,
    generation: Option<i64>,
    plan: &Plan,
    pods: usize,
    old: Option<&CacheClusterStatus>,
    failover: Option<FailoverStatus>,
    now: Time,
) -> CacheClusterStatus {
    let health = &plan.health;
    let conditions = health
        .conditions
        .iter()
        .map(|c| {
            let status = if c.status { "True" } else { "False" };
            let previous = old.and_then(|o| o.conditions.iter().find(|p| p.type_ == c.type_));
            let since = match previous {
                Some(p) if p.status == status => p.last_transition_time.clone(),
                _ => now.clone(),
            };
            KubeCondition {
                type_: c.type_.to_string(),
                status: status.to_string(),
                reason: c.reason.to_string(),
                message: c.message.clone(),
                last_transition_time: since,
                observed_generation: generation,
            }
        })
        .collect();
    CacheClusterStatus {
        observed_generation: generation,
        conditions,
        phase: Some(match health.phase {
            Phase::Pending => CrdPhase::Pending,
            Phase::Bootstrapping => CrdPhase::Bootstrapping,
            Phase::Running => CrdPhase::Running,
            Phase::Rebalancing => CrdPhase::Rebalancing,
            Phase::Degraded => CrdPhase::Degraded,
            Phase::Paused => CrdPhase::Paused,
        }),
        epoch: Some(health.epoch),
        slots_covered: Some(i32::try_from(health.slots_covered).unwrap_or(i32::MAX)),
        replicas: Some(i32::try_from(pods).unwrap_or(i32::MAX)),
        ready_replicas: Some(i32::try_from(health.ready_replicas).unwrap_or(i32::MAX)),
        selector: Some(names.selector_string()),
        hit_rate: health.hit_rate.map(|r| format!("{:.1}%", r * 100.0)),
        members: health
            .members
            .iter()
            .map(|m| MemberStatus {
                pod: m.pod.clone(),
                node_id: m.node_id.clone(),
                instance: m.instance.clone(),
                zone: m.zone.clone(),
                primary_slots: i32::try_from(m.primary_slots).unwrap_or(i32::MAX),
                replica_slots: i32::try_from(m.replica_slots).unwrap_or(i32::MAX),
                ready: m.serving,
                used_memory: m.used_memory,
                hit_rate: m.hit_rate,
                hot_keys: m
                    .hot_keys
                    .iter()
                    .map(|(key, ops)| HotKeyStatus {
                        key: key.clone(),
                        ops_per_second: i64::try_from(*ops).unwrap_or(i64::MAX),
                    })
                    .collect(),
            })
            .collect(),
        rebalance: plan.rebalance.as_ref().map(rebalance_status),
        last_failover: failover.or_else(|| old.and_then(|o| o.last_failover.clone())),
    }
}

fn condition<'a>(s: Option<&'a CacheClusterStatus>, type_: &str) -> Option<&'a KubeCondition> {
    s?.conditions.iter().find(|c| c.type_ == type_)
}

/// Writes the status of `cc` and publishes the Events its changes call for.
pub async fn write(
    cc: &CacheCluster,
    ctx: &Context,
    obs: &Observation,
    plan: &Plan,
    failover: Option<FailoverStatus>,
) -> Result<(), Error> {
    let names = Names::of(cc)?;
    let health = &plan.health;
    let old = cc.status.as_ref();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = status_of(
        &names,
        cc.metadata.generation,
        plan,
        obs.observed.pods.len(),
        old,
        failover,
        now,
    );
    let was_ready = condition(old, READY).is_some_and(|c| c.status == "True");
    let old_degraded = condition(old, DEGRADED)
        .filter(|c| c.status == "True")
        .map(|c| c.reason.clone());
    let new_degraded = condition(Some(&status), DEGRADED)
        .filter(|c| c.status == "True")
        .map(|c| (c.reason.clone(), c.message.clone()));
    if old != Some(&status) {
        let api: Api<CacheCluster> = Api::namespaced(ctx.client.clone(), &names.namespace);
        let body = serde_json::json!({
            "apiVersion": "ringcache.io/v1alpha1",
            "kind": "CacheCluster",
            "status": status,
        });
        api.patch_status(
            &cc.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(Error::Status)?;
    }
    if health.ready && !was_ready {
        ctx.event(
            cc,
            EventType::Normal,
            "Ready",
            "Observe",
            format!("all 16384 slots served at epoch {}", health.epoch),
        )
        .await;
    }
    if !health.ready && was_ready {
        ctx.event(
            cc,
            EventType::Warning,
            "NotReady",
            "Observe",
            format!(
                "{} of 16384 slots have a serving primary; {} of {} pods serve",
                health.slots_covered,
                health.members.iter().filter(|m| m.serving).count(),
                health.members.len()
            ),
        )
        .await;
    }
    if let Some((reason, message)) = new_degraded {
        if old_degraded.as_deref() != Some(reason.as_str()) {
            ctx.event(cc, EventType::Warning, &reason, "Observe", message).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::plan::health::{Condition, Health, MemberHealth};

    fn plan(ready: bool) -> Plan {
        Plan {
            action: crate::plan::Action::None,
            rebalance: None,
            health: health(ready),
            pods_needed: 2,
        }
    }

    fn health(ready: bool) -> Health {
        Health {
            phase: if ready { Phase::Running } else { Phase::Degraded },
            ready,
            epoch: 3,
            slots_covered: if ready { 16384 } else { 100 },
            ready_replicas: 2,
            members: vec![MemberHealth {
                pod: "c-0".into(),
                node_id: Some("c-0".into()),
                instance: Some("i".into()),
                zone: None,
                primary_slots: 8192,
                replica_slots: 8192,
                serving: ready,
                used_memory: 10,
                hit_rate: Some(0.973),
                hot_keys: vec![("feed:home".into(), 12_000)],
            }],
            hit_rate: Some(0.973),
            conditions: vec![Condition {
                type_: READY,
                status: ready,
                reason: if ready { "AllSlotsServed" } else { "NotAllSlotsServed" },
                message: String::new(),
            }],
        }
    }

    #[test]
    fn transition_times_move_only_when_a_condition_flips() {
        let names = Names {
            cluster: "c".into(),
            namespace: "ns".into(),
        };
        let t0 = Time(k8s_openapi::jiff::Timestamp::from_second(1_000).unwrap_or_default());
        let t1 = Time(k8s_openapi::jiff::Timestamp::from_second(2_000).unwrap_or_default());
        let first = status_of(&names, Some(4), &plan(false), 2, None, None, t0.clone());
        assert_eq!(first.hit_rate.as_deref(), Some("97.3%"));
        assert_eq!(
            first.members[0].hot_keys,
            [HotKeyStatus {
                key: "feed:home".into(),
                ops_per_second: 12_000
            }]
        );
        assert_eq!(first.phase, Some(CrdPhase::Degraded));
        assert_eq!(
            first.selector.as_deref(),
            Some("app.kubernetes.io/instance=c,app.kubernetes.io/name=ringcache-node")
        );
        let same = status_of(&names, Some(4), &plan(false), 2, Some(&first), None, t1.clone());
        assert_eq!(same.conditions[0].last_transition_time, t0);
        let flipped = status_of(&names, Some(5), &plan(true), 2, Some(&first), None, t1.clone());
        assert_eq!(flipped.conditions[0].last_transition_time, t1);
        assert_eq!(flipped.conditions[0].observed_generation, Some(5));
        assert_eq!(flipped.members[0].primary_slots, 8192);
    }

    #[test]
    fn topologies_and_rebalances_round_trip_through_the_status() {
        use ringcache_core::placement::{next_topology, Member};
        let node = |i: usize| NodeInfo {
            id: format!("c-{i}"),
            instance: format!("i{i}"),
            resp_addr: format!("198.18.0.{i}:6379"),
            control_addr: format!("198.18.0.{i}:7379"),
            replica_addr: None,
            zone: Some(format!("z{i}")),
        };
        let nodes: Vec<NodeInfo> = (0..4).map(node).collect();
        let members: Vec<Member> = nodes.iter().map(Member::from).collect();
        let from = next_topology(None, &nodes[..3], &members[..3], 2).unwrap();
        let to = next_topology(Some(&from), &nodes, &members, 2).unwrap();
        assert_eq!(topology_from_record(&topology_record(&from)).unwrap(), from);
        let r = Rebalance {
            id: "r1".into(),
            reason: Reason::ScaleOut,
            from: from.clone(),
            to,
            stages: vec![10, 100],
            started: 1_000,
            stages_done: 1,
            stage_started: 1_010,
            stage_start: (5, 1),
            baseline: Some(0.9),
            observed: Some(0.85),
            held: false,
        };
        let st = rebalance_status(&r);
        assert_eq!(
            st.progress,
            format!("stage 1/2: {}/4096 slots", r.plan().unwrap().flipped_by(0).len())
        );
        assert_eq!(st.moves.len(), 3);
        assert_eq!(st.moves.iter().map(|m| m.count).sum::<i32>(), 4096);
        assert_eq!(rebalance_from_status(&st).unwrap(), r);
        let mut bad = topology_record(&from);
        bad.slots[0] = "oops".into();
        assert!(topology_from_record(&bad).unwrap_err().starts_with("slots[0]"));
    }
}
