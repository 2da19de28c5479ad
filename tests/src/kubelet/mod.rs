//! A test kubelet: registers Nodes (one per zone), keeps them Ready with status heartbeats and Lease renewals
//! ([`heartbeat`]), binds unscheduled pods to them (there is no kube-scheduler: [`schedule::pick_node`] spreads pods
//! over the least-loaded eligible node), and runs each pod's containers as local processes (see [`pod`]).

pub mod env;
mod heartbeat;
pub mod network;
mod pod;
pub mod probe;
pub mod schedule;
pub mod time;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinSet;

use self::network::{IpAllocator, NetworkError, PodNetwork};
use crate::bins;

pub use pod::log_path;
pub use time::{rfc3339_micro_now, rfc3339_now};

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

struct WorkerEntry {
    tx: watch::Sender<PodUpdate>,
    resource_version: Option<String>,
    handle: tokio::task::AbortHandle,
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

/// Every 250 ms: list all pods, bind the unscheduled ones ([`schedule::pick_node`]), and start, update or stop a
/// [`pod::PodWorker`] for each pod bound to one of our nodes.
async fn sync_loop(ctx: Arc<Ctx>) {
    let mut sync = PodSync::new(ctx);
    loop {
        sync.reap_finished();
        match sync.all_pods.list(&ListParams::default()).await {
            Ok(list) => {
                sync.schedule(&list.items).await;
                sync.run_pods(list.items).await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "listing pods");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The sync loop's state: the pod workers by pod uid and the scheduler's turn.
struct PodSync {
    ctx: Arc<Ctx>,
    all_pods: Api<Pod>,
    nodes_api: Api<Node>,
    ours: Vec<String>,
    workers: HashMap<String, WorkerEntry>,
    set: JoinSet<()>,
    turn: usize,
}

impl PodSync {
    fn new(ctx: Arc<Ctx>) -> PodSync {
        PodSync {
            all_pods: Api::all(ctx.client.clone()),
            nodes_api: Api::all(ctx.client.clone()),
            ours: ctx.config.nodes.iter().map(|n| n.name.clone()).collect(),
            ctx,
            workers: HashMap::new(),
            set: JoinSet::new(),
            turn: 0,
        }
    }

    fn reap_finished(&mut self) {
        while self.set.try_join_next().is_some() {}
    }

    /// Our nodes as the API has them (taints, cordons and labels included).
    async fn our_nodes(&self) -> Vec<Node> {
        match self.nodes_api.list(&ListParams::default()).await {
            Ok(l) => l
                .items
                .into_iter()
                .filter(|n| n.metadata.name.as_ref().is_some_and(|x| self.ours.contains(x)))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "listing nodes");
                Vec::new()
            }
        }
    }

    /// Binds every pod that needs a node to the one [`schedule::pick_node`] chooses.
    async fn schedule(&mut self, pods: &[Pod]) {
        let unscheduled: Vec<&Pod> = pods
            .iter()
            .filter(|p| {
                p.spec.as_ref().is_some_and(|s| s.node_name.is_none()) && p.metadata.deletion_timestamp.is_none()
            })
            .collect();
        if unscheduled.is_empty() {
            return;
        }
        let nodes = self.our_nodes().await;
        let mut load = schedule::Load::of(pods, &self.ours);
        for p in unscheduled {
            let schedule::Pick::Node(target) = schedule::pick_node(p, &nodes, &load, self.turn.wrapping_add(1)) else {
                continue;
            };
            self.turn = self.turn.wrapping_add(1);
            if bind(&self.ctx.client, p, &target).await {
                load.add(&schedule::spread_group(p), &target);
            }
        }
    }

    /// Starts, updates or stops the worker of every pod bound to one of our nodes.
    async fn run_pods(&mut self, pods: Vec<Pod>) {
        let mut seen = HashSet::new();
        for p in pods {
            seen.insert(p.metadata.uid.clone().unwrap_or_default());
            let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
            if node.as_ref().is_some_and(|n| self.ours.contains(n)) {
                self.run_pod(p, node.unwrap_or_default()).await;
            }
        }
        self.workers.retain(|uid, w| {
            if seen.contains(uid) {
                return true;
            }
            let _ = w.tx.send(PodUpdate::Gone);
            false
        });
    }

    async fn run_pod(&mut self, p: Pod, node: String) {
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            p.metadata.namespace.as_deref().unwrap_or_default(),
        );
        if self.ctx.config.node_control.is_down(&node) {
            if let Some(w) = self.workers.remove(&uid) {
                let _ = w.tx.send(PodUpdate::NodeDown);
            }
            return;
        }
        if let Some(w) = self.workers.get_mut(&uid) {
            if w.handle.is_finished() {
                if p.metadata.deletion_timestamp.is_some() {
                    release_pod(&pods, &p).await;
                }
            } else if w.resource_version != p.metadata.resource_version {
                w.resource_version = p.metadata.resource_version.clone();
                let _ = w.tx.send(PodUpdate::Pod(Box::new(p)));
            }
            return;
        }
        if p.metadata.deletion_timestamp.is_some() {
            // Nothing runs for it here: release it.
            release_pod(&pods, &p).await;
            return;
        }
        if schedule::is_terminal(&p) {
            return;
        }
        let ip = match self.ctx.allocator.allocate() {
            Ok(ip) => ip,
            Err(e) => {
                tracing::error!(error = %e, "no pod address");
                return;
            }
        };
        let resource_version = p.metadata.resource_version.clone();
        let (tx, rx) = watch::channel(PodUpdate::Pod(Box::new(p.clone())));
        let worker = pod::PodWorker::new(self.ctx.clone(), p, rx, ip);
        let handle = self.set.spawn(worker.run());
        self.workers.insert(
            uid,
            WorkerEntry {
                tx,
                resource_version,
                handle,
            },
        );
    }
}

/// Creates the pod's `Binding` to `node`; whether it was accepted.
async fn bind(client: &kube::Client, p: &Pod, node: &str) -> bool {
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let name = p.metadata.name.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": { "name": name, "namespace": ns },
        "target": { "apiVersion": "v1", "kind": "Node", "name": node },
    });
    match pods
        .create_subresource::<Value, Value>("binding", &name, &PostParams::default(), &binding)
        .await
    {
        Ok(_) => {
            tracing::info!(pod = format!("{ns}/{name}"), node, "bound");
            true
        }
        Err(e) => {
            tracing::warn!(pod = format!("{ns}/{name}"), error = %e, "binding");
            false
        }
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
            let st = heartbeat::node_status("127.0.0.1", &version, &rfc3339_now());
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
        tasks.spawn(heartbeat::heartbeat(ctx.clone(), version));
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
