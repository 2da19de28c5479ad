//! The `CacheCluster` custom resource (`ringcache.io/v1alpha1`): spec, status and the CRD
//! generated from them.
//!
//! Every spec field has a default, both for serde (an object read from the apiserver or a
//! test fixture) and in the schema (the apiserver fills it in on create), so what the
//! operator reads is what `kubectl get -o yaml` shows. Field descriptions are the doc
//! comments below. Rules the OpenAPI schema cannot express are CEL rules
//! (`x-kubernetes-validations`) whose messages start with the field they are about.
//!
//! `make crds` writes the YAML from [`crd_yaml`] to `crds/` and `charts/ringcache/crds/`;
//! `operator/tests/crd_drift.rs` fails when either copy differs.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of [`CacheCluster`].
pub const GROUP: &str = "ringcache.io";
/// API version of [`CacheCluster`].
pub const VERSION: &str = "v1alpha1";
/// Name of the CRD object (`<plural>.<group>`), also the file name under `crds/`.
pub const CRD_NAME: &str = "cacheclusters.ringcache.io";

/// Condition type: the cluster serves every slot with its configured copies.
pub const CONDITION_READY: &str = "Ready";
/// Condition type: the operator is bootstrapping, rebalancing or rolling the cluster.
pub const CONDITION_PROGRESSING: &str = "Progressing";
/// Condition type: some slots lack a primary or a replica, or pods are failing.
pub const CONDITION_DEGRADED: &str = "Degraded";

/// Desired state of a CacheCluster. Every field has a default.
// The printer columns repeat `type_ = ...`, which clippy takes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ringcache.io",
    version = "v1alpha1",
    kind = "CacheCluster",
    plural = "cacheclusters",
    singular = "cachecluster",
    namespaced,
    shortname = "rcc",
    category = "ringcache",
    status = "CacheClusterStatus",
    derive = "PartialEq",
    doc = "A CacheCluster is a sharded, replicated cache speaking the Redis protocol (Redis Cluster and a proxy port), run by the ringcache operator as a StatefulSet of ringcache-node pods.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Desired number of pods"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Pods that are ready and serve their slots"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Lifecycle phase"
    ),
    printcolumn(
        name = "Epoch",
        type_ = "integer",
        json_path = ".status.epoch",
        description = "Topology epoch applied to the nodes"
    ),
    printcolumn(
        name = "Hit rate",
        type_ = "string",
        json_path = ".status.hitRate",
        description = "Keyspace hit rate over the last observation window"
    ),
    printcolumn(
        name = "Progress",
        type_ = "string",
        json_path = ".status.rebalance.progress",
        description = "Progress of a rebalance (slots moving to new owners in warm-up stages)"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.replicationFactor <= self.replicas")
        .message("spec.replicationFactor: must not exceed spec.replicas")
        .field_path(".replicationFactor"),
    validation = Rule::new("self.minReplicasToAck < self.replicationFactor")
        .message("spec.minReplicasToAck: must be less than spec.replicationFactor (the primary is one of the copies)")
        .field_path(".minReplicasToAck")
)]
#[schemars(transform = reflow_descriptions)]
pub struct CacheClusterSpec {
    /// Number of ringcache-node pods. Each pod is a primary for a share of the 16384 slots
    /// and a replica for others. Changed by `kubectl scale` through the scale subresource;
    /// the operator moves slots to new pods in warm-up stages (see `warmup`).
    #[schemars(range(min = 1))]
    #[x_kube(validation = Rule::new("self >= 1").message("spec.replicas: must be at least 1"))]
    #[serde(default = "defaults::replicas")]
    pub replicas: i32,

    /// Copies of each slot, the primary included (2 = a primary and one replica), on
    /// distinct pods and, where nodes have zones, distinct zones. At most `replicas`.
    /// Immutable after creation in v1alpha1: changing it is not supported yet.
    #[schemars(range(min = 1))]
    #[x_kube(
        validation = Rule::new("self == oldSelf")
            .message("spec.replicationFactor: is immutable after creation in v1alpha1 (changing it is not supported yet)")
    )]
    #[serde(default = "defaults::replication_factor")]
    pub replication_factor: i32,

    /// Container image of the cache nodes.
    #[schemars(length(min = 1))]
    #[serde(default = "defaults::image")]
    pub image: String,

    /// Pull policy for `image`: Always, IfNotPresent or Never.
    #[serde(default)]
    pub image_pull_policy: ImagePullPolicy,

    /// CPU and memory requests and limits of each node container. The memory limit also
    /// sets the default `maxmemory`.
    #[serde(default)]
    pub resources: ResourceRequirements,

    /// Memory each node may use for keys and values, as redis.conf writes it: bytes
    /// (`100000`) or with a unit (`64mb`, `2gb`; k/m/g are ×1000, kb/mb/gb ×1024). Unset:
    /// the operator passes 80 % of `resources.limits.memory` when a limit is set, else the
    /// node's own default applies (80 % of its cgroup memory limit, else 1gb).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9]+([kKmMgG][bB]?|[bB])?$"))]
    pub maxmemory: Option<String>,

    /// What a node evicts when it reaches `maxmemory`: `s3fifo` (S3-FIFO weighted by
    /// bytes), `allkeys-lru` (approximated LRU over all keys), `volatile-ttl` (keys with
    /// the nearest expiry first) or `noeviction` (writes fail with -OOM).
    #[serde(default)]
    pub maxmemory_policy: MaxmemoryPolicy,

    /// Acknowledged writes: a write's reply waits until this many replicas of its slot
    /// have it (`-NOREPLICAS` after a timeout). 0: asynchronous replication. Must be less
    /// than `replicationFactor`.
    #[schemars(range(min = 0))]
    #[serde(default)]
    pub min_replicas_to_ack: i32,

    /// Client authentication.
    #[serde(default)]
    pub auth: AuthSpec,

    /// How slots move to new owners on scale-out and scale-in: in stages, each gated on
    /// the new owners' hit rate.
    #[serde(default)]
    pub warmup: WarmupSpec,

    /// Detection of lost primaries.
    #[serde(default)]
    pub failover: FailoverSpec,

    /// The nodes' defences against cache stampede, avalanche, penetration and hot keys
    /// (the README's "Cache failure modes" sections say when to use each).
    #[serde(default)]
    pub protection: ProtectionSpec,

    /// Labels added to the node pods (the operator's own selector labels win).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,

    /// Annotations added to the node pods.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,

    /// Node selector of the node pods.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations of the node pods.
    #[serde(default)]
    pub tolerations: Vec<Toleration>,

    /// Affinity of the node pods. Unset: none (slot copies are spread over zones by the
    /// placement itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Topology spread constraints of the node pods.
    #[serde(default)]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,

    /// PriorityClass of the node pods. Unset: the cluster's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,

    /// Seconds a node pod gets between SIGTERM and SIGKILL, to finish the replies it owes.
    /// (In a rolling update the operator hands the pod's primaries to replicas before it
    /// deletes the pod.)
    #[schemars(range(min = 0))]
    #[serde(default = "defaults::termination_grace_period_seconds")]
    pub termination_grace_period_seconds: i64,

    /// The client Service in front of every node's proxy port.
    #[serde(default)]
    pub service: ServiceSpec,

    /// Stop reconciling: the operator leaves the cluster's pods and topology as they are
    /// (status phase Paused) until this is false again.
    #[serde(default)]
    pub paused: bool,
}

impl Default for CacheClusterSpec {
    fn default() -> Self {
        CacheClusterSpec {
            replicas: defaults::replicas(),
            replication_factor: defaults::replication_factor(),
            image: defaults::image(),
            image_pull_policy: ImagePullPolicy::default(),
            resources: ResourceRequirements::default(),
            maxmemory: None,
            maxmemory_policy: MaxmemoryPolicy::default(),
            min_replicas_to_ack: 0,
            auth: AuthSpec::default(),
            warmup: WarmupSpec::default(),
            failover: FailoverSpec::default(),
            protection: ProtectionSpec::default(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            affinity: None,
            topology_spread_constraints: Vec::new(),
            priority_class_name: None,
            termination_grace_period_seconds: defaults::termination_grace_period_seconds(),
            service: ServiceSpec::default(),
            paused: false,
        }
    }
}

/// Field defaults that are not the type's own `Default` (serde and the schema use them).
mod defaults {
    pub(super) fn replicas() -> i32 {
        3
    }
    pub(super) fn replication_factor() -> i32 {
        2
    }
    pub(super) fn image() -> String {
        "ringcache/node:0.1.0".to_owned()
    }
    pub(super) fn termination_grace_period_seconds() -> i64 {
        30
    }
    pub(super) fn password_key() -> String {
        "password".to_owned()
    }
    pub(super) fn stages() -> Vec<i32> {
        vec![10, 25, 50, 100]
    }
    pub(super) fn min_hit_ratio() -> f64 {
        0.95
    }
    pub(super) fn min_stage_seconds() -> i32 {
        10
    }
    pub(super) fn max_stage_seconds() -> i32 {
        300
    }
    pub(super) fn detection_seconds() -> i32 {
        2
    }
    pub(super) fn enabled() -> bool {
        true
    }
    pub(super) fn hot_keys_k() -> i32 {
        10
    }
    pub(super) fn hot_keys_window_seconds() -> i32 {
        10
    }
    pub(super) fn hot_keys_sample() -> i32 {
        32
    }
    pub(super) fn bloom_error_rate() -> f64 {
        0.01
    }
    pub(super) fn bloom_initial_size() -> i64 {
        100
    }
    pub(super) fn bloom_expansion() -> i32 {
        2
    }
}

/// Image pull policy of the node containers.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImagePullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

/// Eviction policy of the nodes (`--maxmemory-policy`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MaxmemoryPolicy {
    #[default]
    #[serde(rename = "s3fifo")]
    S3fifo,
    #[serde(rename = "allkeys-lru")]
    AllkeysLru,
    #[serde(rename = "volatile-ttl")]
    VolatileTtl,
    #[serde(rename = "noeviction")]
    Noeviction,
}

impl MaxmemoryPolicy {
    /// The value `ringcache-node --maxmemory-policy` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            MaxmemoryPolicy::S3fifo => "s3fifo",
            MaxmemoryPolicy::AllkeysLru => "allkeys-lru",
            MaxmemoryPolicy::VolatileTtl => "volatile-ttl",
            MaxmemoryPolicy::Noeviction => "noeviction",
        }
    }
}

/// Client authentication.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = reflow_descriptions)]
pub struct AuthSpec {
    /// Secret key holding the password clients must give with AUTH or HELLO. It reaches
    /// the nodes as the environment variable RINGCACHE_REQUIREPASS (a secretKeyRef),
    /// never on a command line. Unset: no password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
}

/// A key of a Secret in the CacheCluster's namespace.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = reflow_descriptions)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1))]
    pub name: String,

    /// Key within the Secret.
    #[serde(default = "defaults::password_key")]
    #[schemars(length(min = 1))]
    pub key: String,
}

/// Staged slot handover with warm-up (scale-out, scale-in, rolling updates).
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.maxStageSeconds >= self.minStageSeconds")
    .message("spec.warmup.maxStageSeconds: must be at least spec.warmup.minStageSeconds")
    .field_path(".maxStageSeconds"))]
#[schemars(transform = reflow_descriptions)]
pub struct WarmupSpec {
    /// Cumulative share of the moving slots handed over at each stage, in percent:
    /// strictly increasing, each 1 to 100, ending at 100.
    #[schemars(length(min = 1, max = 100), inner(range(min = 1, max = 100)))]
    #[x_kube(
        validation = Rule::new("self.isSorted() && self.all(x, self.exists_one(y, y == x))")
            .message("spec.warmup.stages: must be strictly increasing"),
        validation = Rule::new("self.size() > 0 && self[self.size() - 1] == 100")
            .message("spec.warmup.stages: the last stage must be 100")
    )]
    #[serde(default = "defaults::stages")]
    pub stages: Vec<i32>,

    /// A stage is done when the new owners' hit rate on the slots handed over reaches
    /// this fraction of the hit rate before the change (for `minStageSeconds`). Greater
    /// than 0, at most 1.
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 1.0")
        .message("spec.warmup.minHitRatio: must be greater than 0 and at most 1"))]
    #[serde(default = "defaults::min_hit_ratio")]
    pub min_hit_ratio: f64,

    /// Seconds each stage lasts at least, and that the hit rate must hold for.
    #[schemars(range(min = 0))]
    #[serde(default = "defaults::min_stage_seconds")]
    pub min_stage_seconds: i32,

    /// Seconds after which a stage whose hit rate is still short is resolved by
    /// `onTimeout`. At least `minStageSeconds`.
    #[schemars(range(min = 1))]
    #[serde(default = "defaults::max_stage_seconds")]
    pub max_stage_seconds: i32,

    /// What happens at `maxStageSeconds`: Proceed (go to the next stage anyway) or Hold
    /// (stay, report it in status, until the hit rate recovers or the spec changes).
    #[serde(default)]
    pub on_timeout: OnTimeout,
}

impl Default for WarmupSpec {
    fn default() -> Self {
        WarmupSpec {
            stages: defaults::stages(),
            min_hit_ratio: defaults::min_hit_ratio(),
            min_stage_seconds: defaults::min_stage_seconds(),
            max_stage_seconds: defaults::max_stage_seconds(),
            on_timeout: OnTimeout::default(),
        }
    }
}

/// What a warm-up stage does when it reaches `maxStageSeconds`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnTimeout {
    #[default]
    Proceed,
    Hold,
}

/// Failure detection.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = reflow_descriptions)]
pub struct FailoverSpec {
    /// Seconds a member may fail the operator's heartbeats before it counts as lost and
    /// a replica of each of its primary slots is promoted. A member whose process
    /// changed (a restarted pod) counts as lost at once. Also the length of the write
    /// lease each heartbeat grants, so a primary the operator cannot reach refuses writes
    /// (-TRYAGAIN) after this long, before any replica is promoted in its place.
    #[schemars(range(min = 1))]
    #[serde(default = "defaults::detection_seconds")]
    pub detection_seconds: i32,
}

impl Default for FailoverSpec {
    fn default() -> Self {
        FailoverSpec {
            detection_seconds: defaults::detection_seconds(),
        }
    }
}

/// Defences against the ways a cache hurts the database behind it; each becomes the
/// node flag of the same name (`ringcache-node --help`).
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = reflow_descriptions)]
pub struct ProtectionSpec {
    /// Avalanche: every relative TTL a command sets gets a random extra of 0 to this
    /// many percent, so keys written together do not all expire together. 0 to 100; 0
    /// is off.
    #[schemars(range(min = 0, max = 100))]
    #[serde(default)]
    pub ttl_jitter_percent: i32,

    /// Stampede: GETs of keys matching these glob patterns coalesce (one client fills a
    /// missing key, the others wait for its SET) on connections that did not choose
    /// with RINGCACHE.COALESCE. At most 64 patterns of 1 to 256 characters, none with a
    /// comma.
    #[schemars(length(max = 64), inner(length(min = 1, max = 256)))]
    #[x_kube(validation = Rule::new("self.all(p, !p.contains(','))")
        .message("spec.protection.coalescePatterns: a pattern must not contain a comma"))]
    #[serde(default)]
    pub coalesce_patterns: Vec<String>,

    /// Stampede: a GET of a coalesced key that expires within this many milliseconds
    /// gets nil once (its client refreshes the key) while the others keep the value. 0
    /// is off.
    #[schemars(range(min = 0))]
    #[serde(default)]
    pub coalesce_early_ms: i64,

    /// Hot keys: detection and the proxy port's replica reads.
    #[serde(default)]
    pub hot_keys: HotKeysSpec,

    /// Penetration: how BF.ADD, BF.MADD and BF.INSERT make a Bloom filter they create.
    #[serde(default)]
    pub bloom: BloomSpec,
}

/// Hot-key detection and mitigation.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = reflow_descriptions)]
pub struct HotKeysSpec {
    /// Count a sample of keyed commands and report the hottest keys (in each member's
    /// status, RINGCACHE.HOTKEYS and /metrics).
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,

    /// How many hot keys are reported. 1 to 1000.
    #[schemars(range(min = 1, max = 1000))]
    #[serde(default = "defaults::hot_keys_k")]
    pub k: i32,

    /// Seconds over which rates are measured. 1 to 3600.
    #[schemars(range(min = 1, max = 3600))]
    #[serde(default = "defaults::hot_keys_window_seconds")]
    pub window_seconds: i32,

    /// Count 1 in this many keyed commands. 1 to 1000000.
    #[schemars(range(min = 1, max = 1000000))]
    #[serde(default = "defaults::hot_keys_sample")]
    pub sample: i32,

    /// The proxy port spreads reads of a key seen at least this many times a second
    /// over the key's copies, replicas included (which may answer a replication lag
    /// behind the latest write). 0 is off.
    #[schemars(range(min = 0))]
    #[serde(default)]
    pub replica_reads_min_ops: i64,
}

impl Default for HotKeysSpec {
    fn default() -> Self {
        HotKeysSpec {
            enabled: defaults::enabled(),
            k: defaults::hot_keys_k(),
            window_seconds: defaults::hot_keys_window_seconds(),
            sample: defaults::hot_keys_sample(),
            replica_reads_min_ops: 0,
        }
    }
}

/// Defaults of Bloom filters created by BF.ADD, BF.MADD and BF.INSERT (RedisBloom's
/// module arguments).
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = reflow_descriptions)]
pub struct BloomSpec {
    /// False-positive rate, greater than 0 and less than 1.
    #[x_kube(validation = Rule::new("self > 0.0 && self < 1.0")
        .message("spec.protection.bloom.errorRate: must be greater than 0 and less than 1"))]
    #[serde(default = "defaults::bloom_error_rate")]
    pub error_rate: f64,

    /// Items the first sub-filter holds. 1 to 2^30.
    #[schemars(range(min = 1, max = 1073741824))]
    #[serde(default = "defaults::bloom_initial_size")]
    pub initial_size: i64,

    /// Growth of each new sub-filter; 0 makes filters non-scaling. 0 to 32768.
    #[schemars(range(min = 0, max = 32768))]
    #[serde(default = "defaults::bloom_expansion")]
    pub expansion: i32,
}

impl Default for BloomSpec {
    fn default() -> Self {
        BloomSpec {
            error_rate: defaults::bloom_error_rate(),
            initial_size: defaults::bloom_initial_size(),
            expansion: defaults::bloom_expansion(),
        }
    }
}

/// The client Service.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = reflow_descriptions)]
pub struct ServiceSpec {
    /// Service type: ClusterIP, NodePort or LoadBalancer.
    #[serde(rename = "type")]
    #[serde(default)]
    pub type_: ServiceType,

    /// Annotations of the Service (for example a cloud load balancer's settings).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// Type of the client Service.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

/// Observed state, written by the operator.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = reflow_descriptions)]
pub struct CacheClusterStatus {
    /// The metadata.generation this status was computed from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Progressing and Degraded, with reasons.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    #[serde(default)]
    pub conditions: Vec<Condition>,

    /// Lifecycle phase: Pending, Bootstrapping, Running, Rebalancing, Degraded or Paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// Epoch of the topology last applied to the nodes (epochs only grow).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<i64>", range(min = 0))]
    pub epoch: Option<u64>,

    /// Slots (of 16384) that have a live primary.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 16384))]
    pub slots_covered: Option<i32>,

    /// Node pods that exist (the scale subresource's status.replicas).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,

    /// Node pods that are ready and serve their slots.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ready_replicas: Option<i32>,

    /// Label selector of the node pods, as a string (for the scale subresource, so an
    /// HorizontalPodAutoscaler can find the pods).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// Keyspace hit rate of the whole cluster over the last observation window, e.g.
    /// "97.3%".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hit_rate: Option<String>,

    /// One entry per node pod.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(default)]
    pub members: Vec<MemberStatus>,

    /// The rebalance in progress, if any: which slots move from which pod to which, the
    /// stage, and the hit rates the stage gate compares. The operator resumes it from
    /// here and from the nodes after a restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebalance: Option<RebalanceStatus>,

    /// The last failover: the lost pod, the slots whose primaries were promoted, and
    /// when it was detected and when its slots were writable again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverStatus>,
}

/// A rebalance: slots moving to new owners in warm-up stages (DESIGN.md §6).
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = reflow_descriptions)]
pub struct RebalanceStatus {
    /// Names its handovers: `<id>-<source>-to-<target>`.
    pub id: String,
    /// Why: ScaleOut, ScaleIn, Rejoin (pods back after a failure get their share) or
    /// Restore (the replication factor after a failover).
    pub reason: String,
    /// When it started.
    pub started: Time,
    /// Cumulative percent of the moving slots flipped at each stage (spec.warmup.stages
    /// when it started).
    pub stages: Vec<i32>,
    /// Stages flipped so far (0 while the new owners copy).
    #[schemars(range(min = 0))]
    pub stages_done: i32,
    /// When the current stage (or the copy) began.
    pub stage_started: Time,
    /// Reads of the moved slots on their new owners (hits, misses) when the stage began.
    #[schemars(with = "i64", range(min = 0))]
    pub stage_start_hits: u64,
    #[schemars(with = "i64", range(min = 0))]
    pub stage_start_misses: u64,
    /// The cluster's hit rate before the rebalance: the gate's baseline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_hit_rate: Option<f64>,
    /// The new owners' hit rate on moved slots in the current stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_hit_rate: Option<f64>,
    /// The stage reached maxStageSeconds short of the gate and onTimeout is Hold.
    #[serde(default)]
    pub held: bool,
    /// One line: the stage and how many slots have moved.
    pub progress: String,
    /// Which slots move from which pod to which.
    #[serde(default)]
    pub moves: Vec<MoveStatus>,
    /// The topology the rebalance started from.
    pub from: TopologyRecord,
    /// The topology it ends at.
    pub to: TopologyRecord,
}

/// Slots moving from one primary to another.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = reflow_descriptions)]
pub struct MoveStatus {
    pub source: String,
    pub target: String,
    /// The slots, as ranges: `0-99,200-300`.
    pub slots: String,
    #[schemars(range(min = 0, max = 16384))]
    pub count: i32,
}

/// A topology as the status records it.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = reflow_descriptions)]
pub struct TopologyRecord {
    #[schemars(with = "i64", range(min = 0))]
    pub epoch: u64,
    pub nodes: Vec<NodeRecord>,
    /// `<start>-<end> <owner>,<owner>…` per slot range, the primary first.
    pub slots: Vec<String>,
}

/// A node of a recorded topology.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = reflow_descriptions)]
pub struct NodeRecord {
    pub id: String,
    pub instance: String,
    pub resp_addr: String,
    pub control_addr: String,
    /// The replica address (`READONLY` implied), where the node has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

/// A failover.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = reflow_descriptions)]
pub struct FailoverStatus {
    /// The lost pods.
    pub pods: Vec<String>,
    /// Slots whose primary was lost and promoted.
    #[schemars(range(min = 0, max = 16384))]
    pub slots: i32,
    /// The replicas promoted, with how many slots each took over: `pod=n`.
    pub promoted: Vec<String>,
    /// The epoch of the promotion.
    #[schemars(with = "i64", range(min = 0))]
    pub epoch: u64,
    /// When the loss was detected.
    pub detected: Time,
    /// When the promoted primaries had the new topology (their slots writable again).
    pub writable: Time,
}

/// Lifecycle phase of a CacheCluster.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Bootstrapping,
    Running,
    Rebalancing,
    Degraded,
    Paused,
}

/// One node pod as the operator last saw it.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = reflow_descriptions)]
pub struct MemberStatus {
    /// Pod name.
    pub pod: String,

    /// Node id in the topology (the pod name unless the node reports otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,

    /// Process instance id; changes on every start, so a restarted, empty node is never
    /// taken for the old one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,

    /// Zone of the pod's Kubernetes node (topology.kubernetes.io/zone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,

    /// Slots this node is the primary of.
    #[schemars(range(min = 0, max = 16384))]
    #[serde(default)]
    pub primary_slots: i32,

    /// Slots this node holds a replica of.
    #[schemars(range(min = 0, max = 16384))]
    #[serde(default)]
    pub replica_slots: i32,

    /// Whether the node is ready and serves its slots.
    #[serde(default)]
    pub ready: bool,

    /// Bytes used for keys and values.
    #[schemars(with = "i64", range(min = 0))]
    #[serde(default)]
    pub used_memory: u64,

    /// Keyspace hit rate of this node over the last observation window, 0 to 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hit_rate: Option<f64>,

    /// The node's hottest keys right now, hottest first (at most 3; the node's
    /// `RINGCACHE.HOTKEYS` command lists more). Empty when hot-key detection is off.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hot_keys: Vec<HotKeyStatus>,
}

/// A key many commands use, as one node measures it.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = reflow_descriptions)]
pub struct HotKeyStatus {
    /// The key (as UTF-8 text, invalid bytes replaced; cut after 100 characters).
    pub key: String,

    /// Estimated commands per second on the key over the node's window.
    #[schemars(range(min = 0))]
    pub ops_per_second: i64,
}

/// Doc comments wrap at the source's width; as descriptions (`kubectl explain`) each
/// paragraph is one line. Applied to this struct's own description and its fields' (not
/// to embedded Kubernetes types, whose descriptions keep their line breaks).
fn reflow_descriptions(schema: &mut schemars::Schema) {
    fn reflow(v: &mut serde_json::Value) {
        if let Some(serde_json::Value::String(d)) = v.get_mut("description") {
            *d = d
                .split("\n\n")
                .map(|para| para.split('\n').map(str::trim).collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join("\n\n");
        }
    }
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if let Some(serde_json::Value::Object(props)) = obj.get_mut("properties") {
        props.values_mut().for_each(reflow);
    }
    if let Some(d) = obj.get_mut("description") {
        let mut wrapper = serde_json::json!({ "description": d.take() });
        reflow(&mut wrapper);
        *d = wrapper["description"].take();
    }
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    #[error("serialising the {CRD_NAME} CustomResourceDefinition to YAML: {0}")]
    Yaml(#[from] serde_saphyr::SerializeError),
}

/// The CustomResourceDefinition of [`CacheCluster`].
pub fn crd() -> CustomResourceDefinition {
    CacheCluster::crd()
}

/// The first line of the generated YAML files.
pub const GENERATED_HEADER: &str =
    "# Generated by `make crds` (cargo run -p ringcache-operator -- crd) from operator/src/crd.rs; do not edit.\n";

/// The CRD as the YAML document `ringcache-operator crd` prints and `crds/` holds.
pub fn crd_yaml() -> Result<String, CrdError> {
    let body = serde_saphyr::to_string(&crd())?;
    Ok(format!("{GENERATED_HEADER}{body}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn spec_from(v: Value) -> CacheClusterSpec {
        serde_json::from_value(v).expect("spec deserialises")
    }

    #[test]
    fn empty_spec_deserialises_to_the_documented_defaults() {
        let s = spec_from(json!({}));
        assert_eq!(s.replicas, 3);
        assert_eq!(s.replication_factor, 2);
        assert_eq!(s.image, "ringcache/node:0.1.0");
        assert_eq!(s.image_pull_policy, ImagePullPolicy::IfNotPresent);
        assert_eq!(s.resources, ResourceRequirements::default());
        assert_eq!(s.maxmemory, None);
        assert_eq!(s.maxmemory_policy, MaxmemoryPolicy::S3fifo);
        assert_eq!(s.min_replicas_to_ack, 0);
        assert_eq!(s.auth.password_secret_ref, None);
        assert_eq!(s.warmup.stages, vec![10, 25, 50, 100]);
        assert_eq!(s.warmup.min_hit_ratio, 0.95);
        assert_eq!(s.warmup.min_stage_seconds, 10);
        assert_eq!(s.warmup.max_stage_seconds, 300);
        assert_eq!(s.warmup.on_timeout, OnTimeout::Proceed);
        assert_eq!(s.failover.detection_seconds, 2);
        assert!(s.labels.is_empty() && s.annotations.is_empty() && s.node_selector.is_empty());
        assert!(s.tolerations.is_empty() && s.topology_spread_constraints.is_empty());
        assert_eq!(s.affinity, None);
        assert_eq!(s.priority_class_name, None);
        assert_eq!(s.termination_grace_period_seconds, 30);
        assert_eq!(s.service.type_, ServiceType::ClusterIP);
        assert!(s.service.annotations.is_empty());
        assert!(!s.paused);
        assert_eq!(s, CacheClusterSpec::default());
    }

    #[test]
    fn partial_nested_objects_keep_their_other_defaults() {
        let s = spec_from(json!({
            "warmup": { "onTimeout": "Hold" },
            "auth": { "passwordSecretRef": { "name": "pw" } },
            "service": { "type": "LoadBalancer" },
            "maxmemoryPolicy": "allkeys-lru",
        }));
        assert_eq!(s.warmup.on_timeout, OnTimeout::Hold);
        assert_eq!(s.warmup.stages, vec![10, 25, 50, 100]);
        assert_eq!(s.warmup.max_stage_seconds, 300);
        let pw = s.auth.password_secret_ref.expect("secret ref");
        assert_eq!((pw.name.as_str(), pw.key.as_str()), ("pw", "password"));
        assert_eq!(s.service.type_, ServiceType::LoadBalancer);
        assert_eq!(s.maxmemory_policy.as_str(), "allkeys-lru");
    }

    #[test]
    fn enums_use_their_documented_spellings() {
        for (policy, name) in [
            (MaxmemoryPolicy::S3fifo, "s3fifo"),
            (MaxmemoryPolicy::AllkeysLru, "allkeys-lru"),
            (MaxmemoryPolicy::VolatileTtl, "volatile-ttl"),
            (MaxmemoryPolicy::Noeviction, "noeviction"),
        ] {
            assert_eq!(serde_json::to_value(policy).expect("serialise"), json!(name));
            assert_eq!(policy.as_str(), name);
        }
        assert!(serde_json::from_value::<MaxmemoryPolicy>(json!("lru")).is_err());
        assert_eq!(
            serde_json::to_value(ServiceType::ClusterIP).expect("serialise"),
            json!("ClusterIP")
        );
        assert_eq!(
            serde_json::to_value(Phase::Rebalancing).expect("serialise"),
            json!("Rebalancing")
        );
    }

    #[test]
    fn status_serialises_in_camel_case_and_omits_what_is_unknown() {
        let empty = serde_json::to_value(CacheClusterStatus::default()).expect("serialise");
        assert_eq!(empty, json!({}));
        let status = CacheClusterStatus {
            observed_generation: Some(4),
            phase: Some(Phase::Running),
            epoch: Some(u64::from(u32::MAX) + 1),
            ready_replicas: Some(3),
            hit_rate: Some("97.3%".into()),
            members: vec![MemberStatus {
                pod: "c-0".into(),
                primary_slots: 5462,
                used_memory: 1 << 33,
                hit_rate: Some(0.973),
                ..MemberStatus::default()
            }],
            ..CacheClusterStatus::default()
        };
        let v = serde_json::to_value(&status).expect("serialise");
        assert_eq!(v["observedGeneration"], json!(4));
        assert_eq!(v["readyReplicas"], json!(3));
        assert_eq!(v["epoch"], json!(4_294_967_296u64));
        assert_eq!(v["hitRate"], json!("97.3%"));
        assert_eq!(v["members"][0]["primarySlots"], json!(5462));
        assert_eq!(v["members"][0]["usedMemory"], json!(8_589_934_592u64));
        let back: CacheClusterStatus = serde_json::from_value(v).expect("deserialise");
        assert_eq!(back, status);
    }

    /// The openAPIV3Schema of the only version, as JSON.
    fn schema() -> Value {
        let crd = crd();
        assert_eq!(crd.spec.versions.len(), 1);
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("a schema");
        serde_json::to_value(schema).expect("schema to JSON")
    }

    fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
        let mut cur = v;
        for part in path.split('.') {
            cur = &cur["properties"][part];
        }
        assert!(!cur.is_null(), "no schema at {path}");
        cur
    }

    fn rules(v: &Value) -> Vec<(String, String, Option<String>)> {
        v["x-kubernetes-validations"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .map(|r| {
                        (
                            r["rule"].as_str().unwrap_or_default().to_owned(),
                            r["message"].as_str().unwrap_or_default().to_owned(),
                            r["fieldPath"].as_str().map(str::to_owned),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn schema_carries_each_cel_rule_with_a_message_naming_its_field() {
        let s = schema();
        let spec = rules(at(&s, "spec"));
        assert!(spec.contains(&(
            "self.replicationFactor <= self.replicas".into(),
            "spec.replicationFactor: must not exceed spec.replicas".into(),
            Some(".replicationFactor".into())
        )));
        assert!(spec
            .iter()
            .any(|(r, m, p)| r == "self.minReplicasToAck < self.replicationFactor"
                && m.starts_with("spec.minReplicasToAck: ")
                && p.as_deref() == Some(".minReplicasToAck")));
        assert_eq!(
            rules(at(&s, "spec.replicas")),
            vec![("self >= 1".into(), "spec.replicas: must be at least 1".into(), None)]
        );
        let rf = rules(at(&s, "spec.replicationFactor"));
        assert_eq!(rf.len(), 1);
        assert_eq!(rf[0].0, "self == oldSelf");
        assert!(
            rf[0].1.starts_with("spec.replicationFactor: is immutable"),
            "{}",
            rf[0].1
        );
        let stages = rules(at(&s, "spec.warmup.stages"));
        assert!(stages
            .iter()
            .any(|(r, m, _)| r.contains("isSorted()") && m == "spec.warmup.stages: must be strictly increasing"));
        assert!(stages
            .iter()
            .any(|(r, m, _)| r.contains("== 100") && m == "spec.warmup.stages: the last stage must be 100"));
        assert_eq!(
            rules(at(&s, "spec.warmup.minHitRatio")),
            vec![(
                "self > 0.0 && self <= 1.0".into(),
                "spec.warmup.minHitRatio: must be greater than 0 and at most 1".into(),
                None
            )]
        );
        assert_eq!(
            rules(at(&s, "spec.warmup")),
            vec![(
                "self.maxStageSeconds >= self.minStageSeconds".into(),
                "spec.warmup.maxStageSeconds: must be at least spec.warmup.minStageSeconds".into(),
                Some(".maxStageSeconds".into())
            )]
        );
    }

    #[test]
    fn every_cel_message_names_a_spec_field() {
        fn walk(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::Array(rs)) = m.get("x-kubernetes-validations") {
                        out.extend(rs.iter().map(|r| r["message"].as_str().unwrap_or_default().to_owned()));
                    }
                    m.values().for_each(|c| walk(c, out));
                }
                Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
                _ => {}
            }
        }
        let mut messages = Vec::new();
        walk(&schema(), &mut messages);
        assert_eq!(messages.len(), 10, "{messages:?}");
        for m in messages {
            assert!(m.starts_with("spec."), "{m}");
            assert!(!m.contains('\n'), "{m}");
        }
    }

    #[test]
    fn schema_defaults_match_the_serde_defaults() {
        let s = schema();
        let defaults = serde_json::to_value(CacheClusterSpec::default()).expect("serialise");
        let props = at(&s, "spec")["properties"].as_object().expect("spec properties");
        for (name, prop) in props {
            assert!(
                prop["description"].as_str().is_some_and(|d| !d.is_empty()),
                "spec.{name} has no description"
            );
            match defaults.get(name) {
                // Optional fields are absent unless set, and have no schema default.
                None => assert!(prop.get("default").is_none(), "spec.{name}"),
                Some(d) => assert_eq!(prop.get("default"), Some(d), "spec.{name}"),
            }
        }
        assert_eq!(props.len(), 22);
        assert_eq!(at(&s, "spec.replicas")["minimum"].as_f64(), Some(1.0));
        assert_eq!(at(&s, "spec.replicationFactor")["minimum"].as_f64(), Some(1.0));
        assert_eq!(at(&s, "spec.warmup.stages")["items"]["maximum"].as_f64(), Some(100.0));
        assert_eq!(at(&s, "spec.auth.passwordSecretRef.key")["default"], json!("password"));
        assert_eq!(
            at(&s, "spec.maxmemoryPolicy")["enum"],
            json!(["s3fifo", "allkeys-lru", "volatile-ttl", "noeviction"])
        );
        assert_eq!(
            at(&s, "spec.service.type")["enum"],
            json!(["ClusterIP", "NodePort", "LoadBalancer"])
        );
        assert_eq!(at(&s, "status.epoch")["format"], json!("int64"));
        assert_eq!(at(&s, "status.conditions")["x-kubernetes-list-type"], json!("map"));
        assert_eq!(
            at(&s, "status.phase")["enum"],
            // kube's schema for an Option<enum> also admits null.
            json!([
                "Pending",
                "Bootstrapping",
                "Running",
                "Rebalancing",
                "Degraded",
                "Paused",
                null
            ])
        );
    }

    #[test]
    fn names_subresources_and_columns() {
        let crd = crd();
        assert_eq!(crd.metadata.name.as_deref(), Some(CRD_NAME));
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["rcc".to_owned()]));
        assert_eq!(crd.spec.names.categories, Some(vec!["ringcache".to_owned()]));
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, VERSION);
        assert!(v.served && v.storage);
        let sub = v.subresources.as_ref().expect("subresources");
        assert!(sub.status.is_some());
        let scale = sub.scale.as_ref().expect("scale subresource");
        assert_eq!(scale.spec_replicas_path, ".spec.replicas");
        assert_eq!(scale.status_replicas_path, ".status.replicas");
        assert_eq!(scale.label_selector_path.as_deref(), Some(".status.selector"));
        let cols: Vec<(&str, &str)> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.as_str(), c.json_path.as_str()))
            .collect();
        assert_eq!(
            cols,
            vec![
                ("Replicas", ".spec.replicas"),
                ("Ready", ".status.readyReplicas"),
                ("Phase", ".status.phase"),
                ("Epoch", ".status.epoch"),
                ("Hit rate", ".status.hitRate"),
                ("Progress", ".status.rebalance.progress"),
                ("Age", ".metadata.creationTimestamp"),
            ]
        );
    }

    #[test]
    fn yaml_starts_with_the_header_and_round_trips() {
        let yaml = crd_yaml().expect("yaml");
        assert!(yaml.starts_with(GENERATED_HEADER));
        let back: CustomResourceDefinition = serde_saphyr::from_str(&yaml).expect("parse back");
        assert_eq!(back, crd());
    }
}
