//! The kube side of the operator: one reconcile per CacheCluster, in four steps.
//!
//! 1. **observe** ([`observe`]): the pods, their Kubernetes nodes' zones, the Secrets
//!    the spec names, and every Ready node's `GetStatus` (with the control token).
//! 2. **plan** ([`crate::plan::plan`]): pure, from the observation.
//! 3. **apply** ([`apply`]): the owned objects (server-side apply, one field manager),
//!    then the plan's action at the nodes (`ApplyTopology`).
//! 4. **status** ([`status`]): conditions, phase, members, written to the status
//!    subresource.
//!
//! The controller owns the StatefulSet, Services, PodDisruptionBudget, NetworkPolicy
//! and control Secret (a change or deletion of any brings the cluster back to what the
//! spec says) and watches the node pods (readiness drives the plan). Every step the
//! operator takes is a Kubernetes Event on the CacheCluster.

pub mod apply;
pub mod children;
pub mod monitor;
pub mod observe;
pub mod status;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Api, Client, Resource, ResourceExt};
use parking_lot::Mutex;
use tracing::{debug, info, warn};

use crate::crd::CacheCluster;
use crate::metrics::Metrics;
use crate::plan::{self, Action};

/// How often a cluster is observed again when nothing else wakes it (hit rates and
/// node health change without Kubernetes events).
pub const RESYNC: Duration = Duration::from_secs(5);
/// How soon a cluster that is converging (bootstrapping, pods starting) is observed again.
pub const CONVERGING: Duration = Duration::from_secs(1);

/// Why a reconcile failed. Variant names are the `reason` label of
/// `ringcache_operator_reconcile_errors_total`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("building the children: {0}")]
    Children(#[from] children::ChildrenError),
    #[error("reading {what}: {source}")]
    Observe {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("applying {what}: {source}")]
    Apply {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("ApplyTopology on {pod}: {source}")]
    Topology {
        pod: String,
        #[source]
        source: crate::nodes::NodeError,
    },
    #[error("writing the status: {0}")]
    Status(#[source] kube::Error),
    #[error("the control Secret {name} has no key {key:?}")]
    ControlToken { name: String, key: &'static str },
}

impl Error {
    /// The metric label of this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Children(_) => "Children",
            Error::Observe { .. } => "Observe",
            Error::Apply { .. } => "Apply",
            Error::Topology { .. } => "Topology",
            Error::Status(_) => "Status",
            Error::ControlToken { .. } => "ControlToken",
        }
    }
}

/// A node's keyspace counters at the last sample, for windowed hit rates.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub hits: u64,
    pub misses: u64,
    pub at: Instant,
    /// The window ending at this sample: (hits, misses).
    pub window: Option<(u64, u64)>,
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Seconds pods may take to become Ready before the cluster stops progressing.
    pub progress_deadline_seconds: i64,
    /// Labels of the operator's own pods (the NetworkPolicy admits them to the control
    /// port); `None`: no NetworkPolicy.
    pub network_policy: Option<std::collections::BTreeMap<String, String>>,
    /// Per (namespace, pod, process instance): the last keyspace sample.
    pub samples: Mutex<HashMap<(String, String, String), Sample>>,
    /// The controller's cache of CacheClusters, once it runs (for /metrics).
    pub clusters: Mutex<Option<kube::runtime::reflector::Store<CacheCluster>>>,
    /// Heartbeats and health checks of every cluster's members.
    pub monitor: Arc<monitor::Monitor>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    /// Publishes an Event on `cc` (failures are logged: an event is never worth a
    /// failed reconcile).
    pub async fn event(&self, cc: &CacheCluster, type_: EventType, reason: &str, action: &str, note: String) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &cc.object_ref(&())).await {
            warn!(cluster = %cc.name_any(), reason, error = %e, "publishing an event failed");
        }
    }
}

/// One reconcile of `cc`: observe → plan → apply → status.
pub async fn reconcile(cc: Arc<CacheCluster>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&cc, &ctx).await;
    ctx.metrics
        .reconciled(started.elapsed(), result.as_ref().err().map(Error::reason));
    if let Err(e) = &result {
        // Visible where users look (`kubectl describe`, `kubectl get events`), e.g. a
        // verb the operator's RBAC lacks.
        ctx.event(&cc, EventType::Warning, "ReconcileFailed", e.reason(), e.to_string())
            .await;
    }
    result
}

async fn reconcile_inner(cached: &CacheCluster, ctx: &Context) -> Result<Requeue, Error> {
    let names = children::Names::of(cached)?;
    // The controller's cache may not have this operator's own last status write yet
    // (a reconcile woken by the monitor or a requeue can run before its watch event):
    // planning from it would resume an older rebalance step, and applying a status
    // built from it would drop what that write recorded (lastFailover). Read it fresh.
    let api: Api<CacheCluster> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let Some(fresh) = api.get_opt(&names.cluster).await.map_err(|source| Error::Observe {
        what: format!("CacheCluster {}/{}", names.namespace, names.cluster),
        source,
    })?
    else {
        ctx.monitor.set(&names.namespace, &names.cluster, None);
        return Ok(Requeue::await_change());
    };
    let cc = &fresh;
    let observation = observe::observe(cc, ctx).await?;
    let plan = plan::plan(&observation.observed);
    debug!(cluster = %names.cluster, action = ?plan.action, phase = ?plan.health.phase, "planned");
    // The owned objects (a paused cluster keeps its objects as they are); the
    // StatefulSet keeps the pods that still hold slots during a scale-in.
    if !cc.spec.paused {
        apply::children(cc, ctx, plan.pods_needed).await?;
    }
    let acted = apply::action(cc, ctx, &observation, &plan.action).await;
    let failover = acted.as_ref().ok().cloned().flatten();
    status::write(cc, ctx, &observation, &plan, failover).await?;
    ctx.metrics.cluster(&names.namespace, &names.cluster, &plan.health);
    watch_members(ctx, cc, &names, &observation, &plan);
    acted?;
    let converging = !matches!(plan.action, Action::None) || !plan.health.ready || plan.rebalance.is_some();
    Ok(Requeue::requeue(if converging && !cc.spec.paused {
        CONVERGING
    } else {
        RESYNC
    }))
}

/// Tells the monitor which members to heartbeat: every member of the cluster's newest
/// topology (after this reconcile's action, the one it applied).
fn watch_members(
    ctx: &Context,
    cc: &CacheCluster,
    names: &children::Names,
    obs: &observe::Observation,
    p: &plan::Plan,
) {
    let topology = match &p.action {
        Action::ApplyTopology { topology, .. }
        | Action::Stage { topology, .. }
        | Action::Finish { topology, .. }
        | Action::Promote { topology, .. } => Some(topology),
        _ => plan::cluster_topology(&obs.observed),
    };
    let targets = topology.filter(|_| !cc.spec.paused).map(|t| monitor::Targets {
        token: obs.token.clone(),
        epoch: t.epoch,
        lease_ms: u64::try_from(cc.spec.failover.detection_seconds.max(1)).unwrap_or(2) * 1000,
        members: t.nodes.iter().map(|n| (n.id.clone(), n.control_addr.clone())).collect(),
    });
    ctx.monitor.set(&names.namespace, &names.cluster, targets);
}

/// After a failed reconcile: retry with a short delay (the controller backs off further
/// on its own when errors repeat).
pub fn error_policy(cc: Arc<CacheCluster>, error: &Error, ctx: Arc<Context>) -> Requeue {
    warn!(cluster = %cc.name_any(), reason = error.reason(), error = %error, "reconcile failed");
    let _ = ctx;
    Requeue::requeue(Duration::from_secs(2))
}

/// The CacheCluster a node pod belongs to (from its cluster label).
fn cluster_of_pod(pod: Pod) -> Option<ObjectRef<CacheCluster>> {
    let name = pod.labels().get(children::CLUSTER_LABEL)?.clone();
    let ns = pod.namespace()?;
    Some(ObjectRef::new(&name).within(&ns))
}

/// Runs the controller until `shutdown` completes. `namespace`: watch one namespace
/// only.
pub async fn run_controller(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let pods = watcher::Config::default().labels("app.kubernetes.io/name=ringcache-node");
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=ringcache-operator");
    let mut controller = Controller::new(api::<CacheCluster>(&client, namespace), watcher::Config::default())
        .owns(api::<StatefulSet>(&client, namespace), owned.clone())
        .owns(api::<Service>(&client, namespace), owned.clone())
        .owns(api::<PodDisruptionBudget>(&client, namespace), owned.clone())
        .owns(api::<Secret>(&client, namespace), owned.clone());
    if ctx.network_policy.is_some() {
        controller = controller.owns(api::<NetworkPolicy>(&client, namespace), owned);
    }
    let store = controller.store();
    *ctx.clusters.lock() = Some(store.clone());
    info!("CacheCluster controller started");
    use futures::StreamExt;
    let (wake_tx, wake_rx) = tokio::sync::mpsc::unbounded_channel();
    let monitor = tokio::spawn(monitor::run(ctx.monitor.clone(), store, wake_tx));
    controller
        .watches(api::<Pod>(&client, namespace), pods, cluster_of_pod)
        .reconcile_on(futures::stream::unfold(wake_rx, |mut rx| async move {
            rx.recv().await.map(|cluster| (cluster, rx))
        }))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "controller");
            }
        })
        .await;
    monitor.abort();
    info!("CacheCluster controller stopped");
}
