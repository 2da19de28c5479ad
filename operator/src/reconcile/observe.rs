//! Step 1: what the cluster looks like now, as the plain data of [`crate::plan`]: the
//! node pods (Ready, IP, zone of their Kubernetes node, why not ready), the Secrets
//! the spec names, and the `GetStatus` of every Ready node, asked concurrently.

use std::collections::HashMap;
use std::time::Instant;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::api::ListParams;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use ringcache_core::status::NodeStatus;

use super::children::{self, Names, TOKEN_KEY};
use super::{Context, Error, Sample};
use crate::crd::{CacheCluster, OnTimeout};
use crate::nodes;
use crate::plan::observed::{ordinal_of, NodeObs, Observed, PodObs, WarmupSettings, CONTROL_PORT};
use crate::plan::Rebalance;

/// The zone label of Kubernetes nodes.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// An observation and what the later steps need besides it.
#[derive(Debug, Clone)]
pub struct Observation {
    pub observed: Observed,
    /// The cluster's control token.
    pub token: String,
    /// Pod name → IP, for the nodes' control addresses.
    pub ips: HashMap<String, String>,
}

fn observe_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Observe { what, source }
}

/// Whether `e` is the apiserver's 404.
pub fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The control token from the `<cluster>-control` Secret, creating the Secret with a
/// random token when it does not exist yet.
async fn control_token(cc: &CacheCluster, ctx: &Context, names: &Names) -> Result<String, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let name = names.control_secret();
    let key_of = |s: &Secret| {
        s.data
            .as_ref()
            .and_then(|d| d.get(TOKEN_KEY))
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
    };
    match secrets.get(&name).await {
        Ok(s) => key_of(&s).ok_or(Error::ControlToken { name, key: TOKEN_KEY }),
        Err(e) if not_found(&e) => {
            let token = random_token();
            let secret = children::control_secret(cc, &token)?;
            secrets
                .create(&kube::api::PostParams::default(), &secret)
                .await
                .map_err(|source| Error::Apply {
                    what: format!("Secret {name}"),
                    source,
                })?;
            ctx.event(
                cc,
                EventType::Normal,
                "ControlTokenCreated",
                "CreateSecret",
                format!("created Secret {name}: the credential of the nodes' control port"),
            )
            .await;
            Ok(token)
        }
        Err(source) => Err(Error::Observe {
            what: format!("Secret {name}"),
            source,
        }),
    }
}

/// 32 random bytes as hex, from the operating system's generator.
fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The name of a Secret (or key) the spec needs that is missing, if any.
async fn missing_secret(cc: &CacheCluster, ctx: &Context, names: &Names) -> Result<Option<String>, Error> {
    let Some(r) = &cc.spec.auth.password_secret_ref else {
        return Ok(None);
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &names.namespace);
    match secrets.get(&r.name).await {
        Ok(s) if s.data.as_ref().is_some_and(|d| d.contains_key(&r.key)) => Ok(None),
        Ok(_) => Ok(Some(format!(
            "{} (spec.auth.passwordSecretRef) has no key {:?}",
            r.name, r.key
        ))),
        Err(e) if not_found(&e) => Ok(Some(format!("{} (spec.auth.passwordSecretRef)", r.name))),
        Err(source) => Err(Error::Observe {
            what: format!("Secret {}", r.name),
            source,
        }),
    }
}

fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn not_ready_reason(p: &Pod) -> Option<String> {
    let status = p.status.as_ref()?;
    let waiting = status
        .container_statuses
        .iter()
        .flatten()
        .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
    waiting.or_else(|| status.phase.clone())
}

/// Observes `cc`.
pub async fn observe(cc: &CacheCluster, ctx: &Context) -> Result<Observation, Error> {
    let names = Names::of(cc)?;
    let token = control_token(cc, ctx, &names).await?;
    let missing_secret = missing_secret(cc, ctx, &names).await?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let list = pods
        .list(&ListParams::default().labels(&names.selector_string()))
        .await
        .map_err(observe_err("the node pods"))?;
    // The StatefulSet's current template revision: pods on another one are outdated.
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let revision = sets
        .get_opt(&names.statefulset())
        .await
        .map_err(observe_err(format!("StatefulSet {}", names.statefulset())))?
        .and_then(|s| s.status)
        .and_then(|s| s.update_revision);
    let mut zones: HashMap<String, Option<String>> = HashMap::new();
    let kube_nodes: Api<Node> = Api::all(ctx.client.clone());
    let mut pods_seen = Vec::new();
    for p in list.items {
        let name = p.name_any();
        let Some(ordinal) = ordinal_of(&name) else { continue };
        let node_name = p.spec.as_ref().and_then(|s| s.node_name.clone());
        let zone = match node_name {
            Some(n) => match zones.get(&n) {
                Some(z) => z.clone(),
                None => {
                    let z = match kube_nodes.get_opt(&n).await.map_err(observe_err(format!("Node {n}")))? {
                        Some(node) => node.labels().get(ZONE_LABEL).cloned(),
                        None => None,
                    };
                    zones.insert(n, z.clone());
                    z
                }
            },
            None => None,
        };
        pods_seen.push((p, name, ordinal, zone));
    }
    // Every Ready pod's node answers concurrently.
    let asks = pods_seen.iter().map(|(p, _, _, _)| {
        let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone());
        let ask = pod_ready(p) && ip.is_some();
        let token = token.clone();
        async move {
            match (ask, ip) {
                (true, Some(ip)) => match nodes::get_status(&format!("{ip}:{CONTROL_PORT}"), &token).await {
                    Ok(s) => NodeObs::Status(Box::new(s)),
                    Err(e) => NodeObs::Unreachable(e.to_string()),
                },
                _ => NodeObs::NotAsked,
            }
        }
    });
    let answers = futures::future::join_all(asks).await;
    let now = Instant::now();
    let mut out = Vec::new();
    let mut ips = HashMap::new();
    for ((p, name, ordinal, zone), node) in pods_seen.into_iter().zip(answers) {
        let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone());
        if let Some(ip) = &ip {
            ips.insert(name.clone(), ip.clone());
        }
        let window = match &node {
            NodeObs::Status(s) => sample(ctx, &names.namespace, &name, s, now),
            _ => None,
        };
        out.push(PodObs {
            ready: pod_ready(&p),
            ip,
            zone,
            created: p.metadata.creation_timestamp.as_ref().map_or(0, |t| t.0.as_second()),
            not_ready_reason: not_ready_reason(&p),
            window,
            outdated: revision.as_deref().is_some_and(|want| {
                p.labels()
                    .get("controller-revision-hash")
                    .is_some_and(|have| have != want)
            }),
            node,
            ordinal,
            name,
        });
    }
    out.sort_by_key(|p| p.ordinal);
    Ok(Observation {
        observed: Observed {
            replicas: usize::try_from(cc.spec.replicas).unwrap_or(0),
            replication_factor: usize::try_from(cc.spec.replication_factor).unwrap_or(1),
            paused: cc.spec.paused,
            pods: out,
            missing_secret,
            status_epoch: cc.status.as_ref().and_then(|s| s.epoch).unwrap_or(0),
            progress_deadline_seconds: ctx.progress_deadline_seconds,
            detection_seconds: i64::from(cc.spec.failover.detection_seconds.max(1)),
            warmup: WarmupSettings {
                stages: cc
                    .spec
                    .warmup
                    .stages
                    .iter()
                    .map(|&s| u32::try_from(s).unwrap_or(100))
                    .collect(),
                min_hit_ratio: cc.spec.warmup.min_hit_ratio,
                min_stage_seconds: i64::from(cc.spec.warmup.min_stage_seconds),
                max_stage_seconds: i64::from(cc.spec.warmup.max_stage_seconds),
                hold_on_timeout: cc.spec.warmup.on_timeout == OnTimeout::Hold,
            },
            rebalance: recorded_rebalance(cc),
            failing_for: ctx.monitor.failing(&names.namespace, &names.cluster),
            now: k8s_openapi::jiff::Timestamp::now().as_second(),
        },
        token,
        ips,
    })
}

/// The rebalance the status records, if any (one that no longer parses is dropped, with a
/// log line: the next reconcile plans from the nodes' topology).
fn recorded_rebalance(cc: &CacheCluster) -> Option<Rebalance> {
    let s = cc.status.as_ref()?.rebalance.as_ref()?;
    match super::status::rebalance_from_status(s) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(cluster = %cc.name_any(), error = %e, "status.rebalance does not parse; dropping it");
            None
        }
    }
}

/// Shortest window a hit rate is computed over.
const MIN_WINDOW: std::time::Duration = std::time::Duration::from_secs(5);

/// The (hits, misses) of the last window of at least [`MIN_WINDOW`] for this node
/// process, updating the sample when a new window closes.
fn sample(ctx: &Context, ns: &str, pod: &str, s: &NodeStatus, now: Instant) -> Option<(u64, u64)> {
    let (hits, misses) = s.hits_misses();
    let key = (ns.to_string(), pod.to_string(), s.instance.clone());
    let mut samples = ctx.samples.lock();
    match samples.get_mut(&key) {
        Some(prev) if now.duration_since(prev.at) >= MIN_WINDOW => {
            let window = (hits.saturating_sub(prev.hits), misses.saturating_sub(prev.misses));
            *prev = Sample {
                hits,
                misses,
                at: now,
                window: Some(window),
            };
            Some(window)
        }
        Some(prev) => prev.window,
        None => {
            // Forget the samples of processes that are gone from this pod.
            samples.retain(|(n, p, _), _| !(n == ns && p == pod));
            samples.insert(
                key,
                Sample {
                    hits,
                    misses,
                    at: now,
                    window: None,
                },
            );
            None
        }
    }
}
