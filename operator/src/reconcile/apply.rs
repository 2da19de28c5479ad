//! Step 3: the owned objects, by server-side apply with one field manager (what the
//! operator sets is forced; what others set elsewhere is left alone), then the plan's
//! action at the nodes.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use tracing::{info, warn};

use super::children::{self, Names, MANAGER};
use super::observe::Observation;
use super::{Context, Error};
use crate::crd::{CacheCluster, FailoverStatus};
use crate::nodes;
use crate::plan::observed::CONTROL_PORT;
use crate::plan::Action;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use ringcache_core::status::NodeStatus;
use ringcache_core::topology::Topology;
use std::time::Duration;

/// Server-side apply of `obj` (k8s-openapi objects serialize their apiVersion and kind).
async fn ssa<K>(api: &Api<K>, obj: &K) -> Result<(), Error>
where
    K: Resource + Serialize + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    <K as Resource>::DynamicType: Default,
{
    let name = obj.name_any();
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(obj))
        .await
        .map_err(|source| Error::Apply {
            what: format!("{} {name}", K::kind(&Default::default())),
            source,
        })?;
    Ok(())
}

/// Applies every owned object the spec asks for; the StatefulSet keeps `pods` pods.
pub async fn children(cc: &CacheCluster, ctx: &Context, pods: usize) -> Result<(), Error> {
    let names = Names::of(cc)?;
    let ns = names.namespace.as_str();
    let client = &ctx.client;
    ssa(
        &Api::<Service>::namespaced(client.clone(), ns),
        &children::headless_service(cc)?,
    )
    .await?;
    ssa(
        &Api::<Service>::namespaced(client.clone(), ns),
        &children::client_service(cc)?,
    )
    .await?;
    ssa(
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), ns),
        &children::pod_disruption_budget(cc)?,
    )
    .await?;
    if let Some(operator) = &ctx.network_policy {
        ssa(
            &Api::<NetworkPolicy>::namespaced(client.clone(), ns),
            &children::network_policy(cc, operator)?,
        )
        .await?;
    }
    let pods = i32::try_from(pods).unwrap_or(i32::MAX);
    ssa(
        &Api::<StatefulSet>::namespaced(client.clone(), ns),
        &children::statefulset(cc, pods)?,
    )
    .await?;
    Ok(())
}

/// The control address of pod `pod`: its current IP, else what the topology recorded.
fn control_addr(obs: &Observation, pod: &str, topology: Option<&Topology>) -> String {
    match obs.ips.get(pod) {
        Some(ip) => format!("{ip}:{CONTROL_PORT}"),
        None => topology
            .and_then(|t| t.node(pod))
            .map(|n| n.control_addr.clone())
            .unwrap_or_default(),
    }
}

fn topology_failed(pod: &str) -> impl FnOnce(nodes::NodeError) -> Error + '_ {
    move |source| Error::Topology {
        pod: pod.to_string(),
        source,
    }
}

/// Applies `topology` on `pods`, in order.
async fn apply_on(obs: &Observation, topology: &Topology, pods: &[String]) -> Result<(), Error> {
    for pod in pods {
        let addr = control_addr(obs, pod, Some(topology));
        let lease_ms = u64::try_from(obs.observed.detection_seconds.max(1)).unwrap_or(2) * 1000;
        nodes::apply_topology(&addr, &obs.token, topology, lease_ms)
            .await
            .map_err(topology_failed(pod))?;
    }
    Ok(())
}

/// Longest a stage waits for its new owners' fences before it reports itself flipped.
/// Correctness does not depend on it: a new owner answers -TRYAGAIN on a fenced slot
/// for as long as its fence is missing; past this the event says so.
const FENCE_WAIT: Duration = Duration::from_secs(10);

/// The pods of `pods` that report waiting for a fence. A pod that did not answer is
/// not waited for: if it is lost, the failover handles it.
fn still_fencing(pods: &[String], status: impl Fn(&str) -> Option<NodeStatus>) -> Vec<&str> {
    pods.iter()
        .map(String::as_str)
        .filter(|pod| status(pod).is_some_and(|s| !s.replication.fencing.is_empty()))
        .collect()
}

/// After the new owners flipped: waits (up to [`FENCE_WAIT`]) until none of `pods` waits
/// for a fence, i.e. each has every write its slots' former primaries acknowledged.
/// Returns the pods still waiting.
async fn await_fences(obs: &Observation, pods: &[String], topology: &Topology) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + FENCE_WAIT;
    loop {
        let mut statuses = std::collections::HashMap::new();
        for pod in pods {
            if let Ok(s) = nodes::get_status(&control_addr(obs, pod, Some(topology)), &obs.token).await {
                statuses.insert(pod.clone(), s);
            }
        }
        let waiting = still_fencing(pods, |p| statuses.get(p).cloned());
        if waiting.is_empty() || tokio::time::Instant::now() >= deadline {
            return waiting.into_iter().map(String::from).collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn complete_all(
    cc: &CacheCluster,
    ctx: &Context,
    obs: &Observation,
    complete: &[(String, String)],
) -> Result<(), Error> {
    let current = crate::plan::cluster_topology(&obs.observed);
    for (target, id) in complete {
        let addr = control_addr(obs, target, current);
        if let Err(e) = nodes::complete_handover(&addr, &obs.token, id).await {
            // A target that is gone has no handover to complete.
            if obs
                .observed
                .pods
                .iter()
                .any(|p| &p.name == target && p.status().is_some())
            {
                return Err(topology_failed(target)(e));
            }
        }
    }
    let _ = (cc, ctx);
    Ok(())
}

/// Carries out the plan's action at the nodes. A failure on one node stops the step
/// (the next reconcile plans again from what the nodes then report). Returns the record
/// of a failover it carried out.
pub async fn action(
    cc: &CacheCluster,
    ctx: &Context,
    obs: &Observation,
    action: &Action,
) -> Result<Option<FailoverStatus>, Error> {
    match action {
        Action::None => Ok(None),
        Action::Blocked { reason, message } => {
            ctx.event(cc, EventType::Warning, reason, "Plan", message.clone()).await;
            Ok(None)
        }
        Action::ApplyTopology { topology, to, why } => {
            if let Err(e) = apply_on(obs, topology, to).await {
                ctx.event(
                    cc,
                    EventType::Warning,
                    "ApplyTopologyFailed",
                    why.as_str(),
                    format!("epoch {}: {e}", topology.epoch),
                )
                .await;
                return Err(e);
            }
            info!(cluster = %cc.name_any(), epoch = topology.epoch, pods = %to.join(","), why = why.as_str(), "topology applied");
            ctx.event(
                cc,
                EventType::Normal,
                why.as_str(),
                "ApplyTopology",
                format!(
                    "epoch {} applied to {} ({} slot ranges over {} nodes)",
                    topology.epoch,
                    to.join(", "),
                    topology.slots.len(),
                    topology.nodes.len()
                ),
            )
            .await;
            Ok(None)
        }
        Action::Stage {
            calls,
            topology,
            first,
            then,
        } => {
            for call in calls {
                let addr = control_addr(obs, &call.target, Some(topology));
                nodes::handover(&addr, &obs.token, call)
                    .await
                    .map_err(topology_failed(&call.target))?;
            }
            apply_on(obs, topology, first).await?;
            apply_on(obs, topology, then).await?;
            let fencing = await_fences(obs, then, topology).await;
            let caught_up = fencing.is_empty();
            let slots: usize = calls
                .iter()
                .map(|c| c.slots.iter().map(|r| r.len()).sum::<usize>())
                .sum();
            let lagging = if caught_up {
                String::new()
            } else {
                format!(
                    "; {} still wait for the former primaries' writes (they answer TRYAGAIN on those slots until then)",
                    fencing.join(", ")
                )
            };
            if calls.is_empty() {
                // A rolling update's hand-over: no key moves, replicas lead.
                info!(cluster = %cc.name_any(), epoch = topology.epoch, pod = %first.join(","), caught_up, "primaries handed over");
                ctx.event(
                    cc,
                    EventType::Normal,
                    "PrimariesHandedOver",
                    "RollingUpdate",
                    format!(
                        "epoch {}: the replicas of {}'s primary slots lead them now{lagging}",
                        topology.epoch,
                        first.join(", ")
                    ),
                )
                .await;
            } else {
                info!(cluster = %cc.name_any(), epoch = topology.epoch, slots, caught_up, "rebalance stage flipped");
                ctx.event(
                    cc,
                    EventType::Normal,
                    "StageFlipped",
                    "Rebalance",
                    format!(
                        "epoch {}: {slots} more slots to their new owners ({}){lagging}",
                        topology.epoch,
                        then.join(", ")
                    ),
                )
                .await;
            }
            Ok(None)
        }
        Action::Finish { complete, topology, to } => {
            complete_all(cc, ctx, obs, complete).await?;
            apply_on(obs, topology, to).await?;
            ctx.event(
                cc,
                EventType::Normal,
                "RebalanceComplete",
                "Rebalance",
                format!("epoch {}: every slot with its new owners", topology.epoch),
            )
            .await;
            Ok(None)
        }
        Action::Replan { complete } => {
            complete_all(cc, ctx, obs, complete).await?;
            ctx.event(
                cc,
                EventType::Normal,
                "Replanned",
                "Rebalance",
                "the desired members changed during the rebalance: planning again from the current topology".into(),
            )
            .await;
            Ok(None)
        }
        Action::RestartPod { pod } => {
            let names = super::children::Names::of(cc)?;
            let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
            pods.delete(pod, &kube::api::DeleteParams::default())
                .await
                .map_err(|source| Error::Apply {
                    what: format!("Pod {pod} (deleting it for the rolling update)"),
                    source,
                })?;
            ctx.event(
                cc,
                EventType::Normal,
                "PodRestarted",
                "RollingUpdate",
                format!("{pod} restarts on the new pod template (its primaries were handed over)"),
            )
            .await;
            Ok(None)
        }
        Action::Promote {
            topology,
            promoted,
            others,
            lost,
            orphaned,
        } => {
            let detected = Time(k8s_openapi::jiff::Timestamp::now());
            for (pod, slots) in promoted {
                let addr = control_addr(obs, pod, Some(topology));
                nodes::promote(&addr, &obs.token, topology, slots)
                    .await
                    .map_err(topology_failed(pod))?;
            }
            let writable = Time(k8s_openapi::jiff::Timestamp::now());
            apply_on(obs, topology, others).await?;
            let counts: Vec<String> = promoted
                .iter()
                .map(|(p, r)| format!("{p}={}", r.iter().map(|x| x.len()).sum::<usize>()))
                .collect();
            let slots: usize = promoted
                .iter()
                .flat_map(|(_, r)| r.iter().map(|x| x.len()))
                .sum::<usize>()
                + orphaned;
            if promoted.is_empty() && *orphaned == 0 {
                // No primary lost (e.g. a pod a rolling update restarted after handing
                // its primaries over): not a failover, only fewer copies until the
                // rebalance that follows restores them.
                info!(cluster = %cc.name_any(), dropped = %lost.join(","), epoch = topology.epoch, "members dropped from the topology");
                ctx.event(
                    cc,
                    EventType::Normal,
                    "MembersDropped",
                    "Promote",
                    format!(
                        "epoch {}: {} left the topology (no primary slots); a rebalance restores the copies",
                        topology.epoch,
                        lost.join(", ")
                    ),
                )
                .await;
                return Ok(None);
            }
            warn!(cluster = %cc.name_any(), lost = %lost.join(","), promoted = %counts.join(","), epoch = topology.epoch, "failover");
            ctx.event(
                cc,
                EventType::Warning,
                "Failover",
                "Promote",
                format!(
                    "lost {}; epoch {}: promoted {}{}",
                    lost.join(", "),
                    topology.epoch,
                    if counts.is_empty() {
                        "nobody".to_string()
                    } else {
                        counts.join(", ")
                    },
                    if *orphaned > 0 {
                        format!("; {orphaned} slots had no copy left (served empty)")
                    } else {
                        String::new()
                    }
                ),
            )
            .await;
            Ok(Some(FailoverStatus {
                pods: lost.clone(),
                slots: i32::try_from(slots).unwrap_or(i32::MAX),
                promoted: counts,
                epoch: topology.epoch,
                detected,
                writable,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringcache_core::topology::SlotRange;

    #[test]
    fn a_pod_fences_until_it_reports_no_fenced_slot() {
        let pods: Vec<String> = ["a", "b", "c"].iter().map(|p| p.to_string()).collect();
        let status = |pod: &str| match pod {
            "a" => Some(NodeStatus::default()),
            "b" => {
                let mut s = NodeStatus::default();
                s.replication.fencing = vec![SlotRange::new(0, 9)];
                Some(s)
            }
            _ => None,
        };
        assert_eq!(
            still_fencing(&pods, status),
            vec!["b"],
            "c did not answer: not waited for"
        );
        assert!(still_fencing(&pods, |_| Some(NodeStatus::default())).is_empty());
    }
}
