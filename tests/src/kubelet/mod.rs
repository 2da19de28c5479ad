//! A test kubelet: registers Nodes (one per zone), keeps them Ready with status heartbeats and Lease renewals,
//! binds unscheduled pods to them (there is no kube-scheduler: it spreads pods over the least-loaded eligible node),
//! and runs each pod's containers as local processes (see [`pod`]).

pub mod env;
pub mod network;
mod pod;
pub mod probe;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinSet;

use self::network::{IpAllocator, NetworkError, PodNetwork};
use crate::bins;

pub use pod::log_path;

/// Pod annotation prefix holding a container's pid: `ringcache.io/pid-<container>`.
pub const PID_ANNOTATION_PREFIX: &str = "ringcache.io/pid-";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const REGION: &str = "ringcache-test";

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("registering node {node}: {source}")]
    Register {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("building the Node object for {node}: {source}")]
    NodeObject {
        node: String,
        #[source]
        source: serde_json::Error,
    },
}

/// One Node the kubelet registers.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub zone: String,
}

/// Simulated node crashes, shared between the kubelet and tests.
#[derive(Debug, Clone, Default)]
pub struct NodeControl(Arc<RwLock<HashSet<String>>>);

impl NodeControl {
    /// Crashes `node`: its status heartbeats and lease renewals stop, its pods' processes are SIGKILLed and the
    /// kubelet stops managing them (no status, no restarts, no release of deleted pods) until
    /// [`NodeControl::recover`]. The node-lifecycle controller then treats it as it treats a dead node (Ready
    /// Unknown, `node.kubernetes.io/unreachable` taints, pods NotReady, taint-based eviction).
    pub fn fail(&self, node: &str) {
        if let Ok(mut g) = self.0.write() {
            g.insert(node.to_owned());
        }
    }

    /// Brings `node` back: heartbeats resume and its pods are started again (a kubelet restart).
    pub fn recover(&self, node: &str) {
        if let Ok(mut g) = self.0.write() {
            g.remove(node);
        }
    }

    pub fn is_down(&self, node: &str) -> bool {
        self.0.read().map(|g| g.contains(node)).unwrap_or(false)
    }
}

/// Where an image's "entrypoint" binary comes from.
#[derive(Debug, Clone)]
pub enum ImageSource {
    /// A fixed path.
    Path(PathBuf),
    /// A workspace binary, looked up in target/{release,debug} at container start (the newest wins).
    Workspace(String),
}

/// Image name (without tag) → local binary. Shared so tests can add mappings while the kubelet runs.
#[derive(Debug, Clone, Default)]
pub struct ImageMap(Arc<RwLock<HashMap<String, ImageSource>>>);

impl ImageMap {
    /// The project's images: `ringcache/node`, `ringcache/operator`, `ringcache/testpod`.
    pub fn with_defaults() -> ImageMap {
        let m = ImageMap::default();
        m.insert("ringcache/node", ImageSource::Workspace("ringcache-node".into()));
        m.insert(
            "ringcache/operator",
            ImageSource::Workspace("ringcache-operator".into()),
        );
        m.insert("ringcache/testpod", ImageSource::Workspace("testpod".into()));
        m
    }

    pub fn insert(&self, image: &str, source: ImageSource) {
        if let Ok(mut g) = self.0.write() {
            g.insert(image.to_owned(), source);
        }
    }

    /// Resolves `image` (exact, or without its tag/digest) to an existing binary.
    pub fn resolve(&self, image: &str) -> Option<PathBuf> {
        let g = self.0.read().ok()?;
        let src = g.get(image).or_else(|| g.get(pod_image_repo(image)))?;
        match src {
            ImageSource::Path(p) => p.is_file().then(|| p.clone()),
            ImageSource::Workspace(name) => bins::workspace_binary(name),
        }
    }
}

fn pod_image_repo(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

/// Test kubelet configuration.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub nodes: Vec<NodeConfig>,
    pub images: ImageMap,
    /// Pod dirs and container logs go under `<run_dir>/pods/<namespace>_<pod>/`.
    pub run_dir: PathBuf,
    /// `None`: [`PodNetwork::detect`].
    pub network: Option<PodNetwork>,
    /// Restart backoff: the first restart is immediate, then `initial`, doubling up to `max` (a real kubelet uses
    /// 10 s and 5 min; tests want it shorter).
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Extra environment for every container (e.g. `RUST_LOG`).
    pub extra_env: BTreeMap<String, String>,
    /// Hand each pod its ServiceAccount's token (TokenRequest) as a kubeconfig in `KUBECONFIG`.
    pub service_account_tokens: bool,
    /// Node status and lease renewal period (the controller-manager's node-monitor grace period is 4× this
    /// default, as with a real kubelet's 10 s / 40 s).
    pub heartbeat: Duration,
    /// Simulated node crashes.
    pub node_control: NodeControl,
}

impl KubeletConfig {
    /// Three nodes `worker-a`, `worker-b`, `worker-c` in zones `zone-a`, `zone-b`, `zone-c`.
    pub fn new(run_dir: PathBuf) -> KubeletConfig {
        let mut extra_env = BTreeMap::new();
        for k in ["RUST_LOG", "RUST_BACKTRACE"] {
            if let Ok(v) = std::env::var(k) {
                extra_env.insert(k.to_owned(), v);
            }
        }
        KubeletConfig {
            nodes: ["a", "b", "c"]
                .iter()
                .map(|s| NodeConfig {
                    name: format!("worker-{s}"),
                    zone: format!("zone-{s}"),
                })
                .collect(),
            images: ImageMap::with_defaults(),
            run_dir,
            network: None,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(20),
            extra_env,
            service_account_tokens: true,
            heartbeat: Duration::from_secs(4),
            node_control: NodeControl::default(),
        }
    }
}

/// What a pod worker learns from the sync loop.
#[derive(Debug, Clone)]
pub(crate) enum PodUpdate {
    Pod(Box<Pod>),
    /// The pod object is gone: kill the processes.
    Gone,
    /// The node crashed: kill the processes and touch nothing in the API.
    NodeDown,
}

pub(crate) struct Ctx {
    pub(crate) client: kube::Client,
    pub(crate) config: KubeletConfig,
    pub(crate) allocator: IpAllocator,
    pub(crate) server: String,
    pub(crate) ca_pem: String,
    pub(crate) host_ip: String,
}

/// UTC now as RFC 3339 with seconds (`metav1.Time`).
pub fn rfc3339_now() -> String {
    format_time(false)
}

/// UTC now as RFC 3339 with microseconds (`metav1.MicroTime`).
pub fn rfc3339_micro_now() -> String {
    format_time(true)
}

fn format_time(micros: bool) -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    let (h, m, s) = (sod / 3600, (sod % 3600) / 60, sod % 60);
    if micros {
        format!(
            "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:06}Z",
            d.subsec_micros()
        )
    } else {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    }
}

/// A running test kubelet. Dropping it (or [`Kubelet::shutdown`]) kills every pod process.
pub struct Kubelet {
    tasks: JoinSet<()>,
    images: ImageMap,
    node_control: NodeControl,
    network: PodNetwork,
    run_dir: PathBuf,
}

impl std::fmt::Debug for Kubelet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubelet")
            .field("network", &self.network)
            .field("run_dir", &self.run_dir)
            .finish()
    }
}

fn node_object(node: &NodeConfig) -> Result<Node, KubeletError> {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": {
                "kubernetes.io/hostname": node.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                ZONE_LABEL: node.zone,
                "topology.kubernetes.io/region": REGION,
                "ringcache.io/test-kubelet": "true",
            },
        },
        "spec": {},
    }))
    .map_err(|source| KubeletError::NodeObject {
        node: node.name.clone(),
        source,
    })
}

fn node_status(host_ip: &str, version: &str, since: &str) -> Value {
    let now = rfc3339_now();
    let cond = |t: &str, status: &str, reason: &str, msg: &str| {
        json!({
            "type": t, "status": status, "reason": reason, "message": msg,
            "lastHeartbeatTime": now, "lastTransitionTime": since,
        })
    };
    let resources = json!({ "cpu": "16", "memory": "64Gi", "pods": "250", "ephemeral-storage": "100Gi" });
    json!({
        "status": {
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "ringcache test kubelet is posting ready status"),
            ],
            "addresses": [{ "type": "InternalIP", "address": host_ip }],
            "capacity": resources,
            "allocatable": resources,
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": "", "osImage": "ringcache test kubelet",
                "containerRuntimeVersion": "ringcache-local://1",
                "kubeletVersion": version, "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
            },
        }
    })
}

async fn heartbeat(ctx: Arc<Ctx>, version: String) {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), "kube-node-lease");
    let since = rfc3339_now();
    loop {
        for n in &ctx.config.nodes {
            if ctx.config.node_control.is_down(&n.name) {
                continue;
            }
            let st = node_status(&ctx.host_ip, &version, &since);
            if let Err(e) = nodes
                .patch_status(&n.name, &PatchParams::default(), &Patch::Merge(&st))
                .await
            {
                tracing::warn!(node = n.name, error = %e, "node status heartbeat");
            }
            let renew = json!({ "spec": { "renewTime": rfc3339_micro_now() } });
            match leases
                .patch(&n.name, &PatchParams::default(), &Patch::Merge(&renew))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    let lease = json!({
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": { "name": n.name, "namespace": "kube-node-lease" },
                        "spec": {
                            "holderIdentity": n.name,
                            "leaseDurationSeconds": (ctx.config.heartbeat.as_secs() * 4).max(1),
                            "renewTime": rfc3339_micro_now(),
                        }
                    });
                    match serde_json::from_value::<Lease>(lease) {
                        Ok(l) => {
                            if let Err(e) = leases.create(&PostParams::default(), &l).await {
                                tracing::warn!(node = n.name, error = %e, "creating node lease");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "building node lease"),
                    }
                }
                Err(e) => tracing::warn!(node = n.name, error = %e, "renewing node lease"),
            }
        }
        tokio::time::sleep(ctx.config.heartbeat).await;
    }
}

fn labels_match_expr(labels: &BTreeMap<String, String>, key: &str, op: &str, values: &[String]) -> bool {
    let v = labels.get(key);
    match op {
        "In" => v.is_some_and(|v| values.contains(v)),
        "NotIn" => v.is_none_or(|v| !values.contains(v)),
        "Exists" => v.is_some(),
        "DoesNotExist" => v.is_none(),
        _ => false,
    }
}

/// Whether `pod` may run on a node with `labels` (nodeSelector and required node affinity).
fn eligible(pod: &Pod, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        return false;
    }
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    for t in taints {
        if t.effect != "NoSchedule" && t.effect != "NoExecute" {
            continue;
        }
        let tolerated = spec.tolerations.iter().flatten().any(|tol| {
            let key_ok = match tol.key.as_deref() {
                None | Some("") => tol.operator.as_deref() == Some("Exists"),
                Some(k) => k == t.key,
            };
            let value_ok = match tol.operator.as_deref() {
                Some("Exists") => true,
                _ => tol.value.as_deref().unwrap_or("") == t.value.as_deref().unwrap_or(""),
            };
            let effect_ok = tol.effect.as_deref().is_none_or(|e| e.is_empty() || e == t.effect);
            key_ok && value_ok && effect_ok
        });
        if !tolerated {
            return false;
        }
    }
    if let Some(sel) = &spec.node_selector {
        if sel.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref());
    if let Some(req) = required {
        // Terms are ORed; expressions inside a term are ANDed.
        let any = req.node_selector_terms.iter().any(|t| {
            t.match_expressions
                .iter()
                .flatten()
                .all(|e| labels_match_expr(&labels, &e.key, &e.operator, e.values.as_deref().unwrap_or(&[])))
        });
        if !any {
            return false;
        }
    }
    true
}

/// The spreading group of a pod: its controller (a ReplicaSet, StatefulSet, Job…), or itself.
fn spread_group(p: &Pod) -> String {
    p.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.clone())
        .or_else(|| p.metadata.uid.clone())
        .unwrap_or_default()
}

struct WorkerEntry {
    tx: watch::Sender<PodUpdate>,
    resource_version: Option<String>,
    handle: tokio::task::AbortHandle,
}

fn is_terminal(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

async fn release_pod(pods: &Api<Pod>, p: &Pod) {
    let name = p.metadata.name.clone().unwrap_or_default();
    let dp = kube::api::DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(kube::api::Preconditions {
            uid: p.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    if let Err(e) = pods.delete(&name, &dp).await {
        tracing::debug!(pod = name, error = %e, "releasing pod");
    }
}

async fn sync_loop(ctx: Arc<Ctx>) {
    let all_pods: Api<Pod> = Api::all(ctx.client.clone());
    let nodes_api: Api<Node> = Api::all(ctx.client.clone());
    let ours: Vec<String> = ctx.config.nodes.iter().map(|n| n.name.clone()).collect();
    let mut workers: HashMap<String, WorkerEntry> = HashMap::new();
    let mut set: JoinSet<()> = JoinSet::new();
    let mut rr: usize = 0;
    loop {
        while set.try_join_next().is_some() {}
        let list = match all_pods.list(&ListParams::default()).await {
            Ok(l) => l.items,
            Err(e) => {
                tracing::warn!(error = %e, "listing pods");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Load per node, overall and per spreading group (pods of one controller), like the default scheduler's
        // spreading of a workload's replicas over hosts.
        let mut load: HashMap<String, usize> = ours.iter().map(|n| (n.clone(), 0)).collect();
        let mut group_load: HashMap<(String, String), usize> = HashMap::new();
        for p in &list {
            if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_ref()) {
                if !is_terminal(p) && p.metadata.deletion_timestamp.is_none() {
                    if let Some(l) = load.get_mut(n) {
                        *l += 1;
                    }
                    *group_load.entry((spread_group(p), n.clone())).or_insert(0) += 1;
                }
            }
        }
        let unscheduled = list
            .iter()
            .any(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_none()) && p.metadata.deletion_timestamp.is_none());
        let node_objs: Vec<Node> = if unscheduled {
            match nodes_api.list(&ListParams::default()).await {
                Ok(l) => l
                    .items
                    .into_iter()
                    .filter(|n| n.metadata.name.as_ref().is_some_and(|x| ours.contains(x)))
                    .collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "listing nodes");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };

        let mut seen = std::collections::HashSet::new();
        for p in list {
            let uid = p.metadata.uid.clone().unwrap_or_default();
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            let name = p.metadata.name.clone().unwrap_or_default();
            seen.insert(uid.clone());
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
            let node_name = p.spec.as_ref().and_then(|s| s.node_name.clone());
            let Some(node_name) = node_name else {
                if p.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let scheduler = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.scheduler_name.clone())
                    .unwrap_or_else(|| "default-scheduler".into());
                if scheduler != "default-scheduler" {
                    continue;
                }
                let mut candidates: Vec<&Node> = node_objs.iter().filter(|n| eligible(&p, n)).collect();
                if candidates.is_empty() {
                    continue;
                }
                let group = spread_group(&p);
                let score = |n: &Node| {
                    let nm = n.metadata.name.clone().unwrap_or_default();
                    let g = group_load.get(&(group.clone(), nm.clone())).copied().unwrap_or(0);
                    (g, load.get(&nm).copied().unwrap_or(0))
                };
                candidates.sort_by_key(|n| score(n));
                let best = candidates.first().map(|n| score(n));
                let tied: Vec<&&Node> = candidates.iter().filter(|n| Some(score(n)) == best).collect();
                rr = rr.wrapping_add(1);
                let Some(target) = tied.get(rr % tied.len().max(1)).and_then(|n| n.metadata.name.clone()) else {
                    continue;
                };
                let binding = json!({
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": { "name": name, "namespace": ns },
                    "target": { "apiVersion": "v1", "kind": "Node", "name": target },
                });
                match pods
                    .create_subresource::<Value, Value>("binding", &name, &PostParams::default(), &binding)
                    .await
                {
                    Ok(_) => {
                        tracing::info!(pod = format!("{ns}/{name}"), node = target, "bound");
                        if let Some(l) = load.get_mut(&target) {
                            *l += 1;
                        }
                        *group_load.entry((group.clone(), target.clone())).or_insert(0) += 1;
                    }
                    Err(e) => tracing::warn!(pod = format!("{ns}/{name}"), error = %e, "binding"),
                }
                continue;
            };
            if !ours.contains(&node_name) {
                continue;
            }
            if ctx.config.node_control.is_down(&node_name) {
                if let Some(w) = workers.remove(&uid) {
                    let _ = w.tx.send(PodUpdate::NodeDown);
                }
                continue;
            }
            if let Some(w) = workers.get_mut(&uid) {
                if w.handle.is_finished() {
                    if p.metadata.deletion_timestamp.is_some() {
                        release_pod(&pods, &p).await;
                    }
                } else if w.resource_version != p.metadata.resource_version {
                    w.resource_version = p.metadata.resource_version.clone();
                    let _ = w.tx.send(PodUpdate::Pod(Box::new(p)));
                }
                continue;
            }
            if p.metadata.deletion_timestamp.is_some() {
                // Nothing runs for it here: release it.
                release_pod(&pods, &p).await;
                continue;
            }
            if is_terminal(&p) {
                continue;
            }
            let ip = match ctx.allocator.allocate() {
                Ok(ip) => ip,
                Err(e) => {
                    tracing::error!(error = %e, "no pod address");
                    continue;
                }
            };
            let rv = p.metadata.resource_version.clone();
            let (tx, rx) = watch::channel(PodUpdate::Pod(Box::new(p.clone())));
            let worker = pod::PodWorker::new(ctx.clone(), p, rx, ip);
            let handle = set.spawn(worker.run());
            workers.insert(
                uid,
                WorkerEntry {
                    tx,
                    resource_version: rv,
                    handle,
                },
            );
        }
        workers.retain(|uid, w| {
            if seen.contains(uid) {
                return true;
            }
            let _ = w.tx.send(PodUpdate::Gone);
            false
        });
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

impl Kubelet {
    /// Registers the nodes and starts the heartbeat and pod sync loops on the current tokio runtime.
    /// `server` and `ca_pem` go into the kubeconfigs handed to pods.
    pub async fn start(
        client: kube::Client,
        server: String,
        ca_pem: String,
        config: KubeletConfig,
    ) -> Result<Kubelet, KubeletError> {
        let network = match config.network {
            Some(n) => n,
            None => tokio::task::spawn_blocking(PodNetwork::detect)
                .await
                .unwrap_or(Ok(PodNetwork::Loopback))?,
        };
        let version = client
            .apiserver_version()
            .await
            .map(|v| v.git_version)
            .unwrap_or_else(|_| "v0.0.0".into());
        let nodes: Api<Node> = Api::all(client.clone());
        for n in &config.nodes {
            let obj = node_object(n)?;
            match nodes.create(&PostParams::default(), &obj).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(source) => {
                    return Err(KubeletError::Register {
                        node: n.name.clone(),
                        source,
                    })
                }
            }
            let st = node_status("127.0.0.1", &version, &rfc3339_now());
            nodes
                .patch_status(&n.name, &PatchParams::default(), &Patch::Merge(&st))
                .await
                .map_err(|source| KubeletError::Register {
                    node: n.name.clone(),
                    source,
                })?;
        }
        let images = config.images.clone();
        let node_control = config.node_control.clone();
        let run_dir = config.run_dir.clone();
        let ctx = Arc::new(Ctx {
            client,
            allocator: IpAllocator::new(network),
            config,
            server,
            ca_pem,
            host_ip: "127.0.0.1".into(),
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(heartbeat(ctx.clone(), version));
        tasks.spawn(sync_loop(ctx));
        tracing::info!(?network, "test kubelet running");
        Ok(Kubelet {
            tasks,
            images,
            node_control,
            network,
            run_dir,
        })
    }

    /// The image map; tests may add their own images at any time.
    pub fn images(&self) -> &ImageMap {
        &self.images
    }

    /// Simulated node crashes.
    pub fn node_control(&self) -> &NodeControl {
        &self.node_control
    }

    pub fn network(&self) -> PodNetwork {
        self.network
    }

    pub fn run_dir(&self) -> &std::path::Path {
        &self.run_dir
    }

    /// Stops the loops and kills every pod process.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}
