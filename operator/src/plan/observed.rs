//! What the reconcile observed about one CacheCluster, as plain data.

use ringcache_core::placement::Member;
use ringcache_core::status::NodeStatus;
use ringcache_core::topology::NodeInfo;

/// The RESP port every node listens on (in its pod).
pub const RESP_PORT: u16 = 6379;
/// The proxy port (cluster-unaware clients).
pub const PROXY_PORT: u16 = 6380;
/// The replica port: reads of the slots a node copies, `READONLY` implied (clients
/// see it as the node's replicas in CLUSTER SLOTS, SHARDS and NODES).
pub const REPLICA_PORT: u16 = 6381;
/// The gRPC control port.
pub const CONTROL_PORT: u16 = 7379;
/// The admin HTTP port (`/metrics`, `/healthz`, `/readyz`).
pub const ADMIN_PORT: u16 = 9121;

/// The default of [`Observed::progress_deadline_seconds`].
pub const PROGRESS_DEADLINE_SECONDS: i64 = 300;

/// One CacheCluster as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// `spec.replicas`.
    pub replicas: usize,
    /// `spec.replicationFactor`.
    pub replication_factor: usize,
    /// `spec.paused`.
    pub paused: bool,
    /// The node pods that exist (any ordinal), in ordinal order.
    pub pods: Vec<PodObs>,
    /// A Secret the spec needs that does not exist (name and what for), if any.
    pub missing_secret: Option<String>,
    /// `status.epoch`: the newest epoch the operator recorded.
    pub status_epoch: u64,
    /// Unix seconds now.
    pub now: i64,
    /// Seconds pods may take to become Ready before the cluster stops counting as
    /// progressing (as a Deployment's `progressDeadlineSeconds`).
    pub progress_deadline_seconds: i64,
    /// `spec.failover.detectionSeconds`: a member failing its health checks this long is
    /// lost (its lease, as long as this, has run out by then).
    pub detection_seconds: i64,
    /// `spec.warmup`.
    pub warmup: WarmupSettings,
    /// The rebalance in progress (from the status), if any.
    pub rebalance: Option<super::rebalance::Rebalance>,
    /// Per topology member (node id = pod name): seconds its node has failed the
    /// operator's health checks (heartbeats) in a row. Members that answer, or were
    /// never checked, are absent.
    pub failing_for: std::collections::BTreeMap<String, i64>,
}

/// `spec.warmup`, as the plan uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct WarmupSettings {
    /// Cumulative percent of the moving slots per stage.
    pub stages: Vec<u32>,
    /// A stage passes at this fraction of the baseline hit rate.
    pub min_hit_ratio: f64,
    pub min_stage_seconds: i64,
    pub max_stage_seconds: i64,
    /// At `max_stage_seconds` short of the gate: hold (true) or proceed (false).
    pub hold_on_timeout: bool,
}

impl Default for WarmupSettings {
    fn default() -> Self {
        WarmupSettings {
            stages: vec![10, 25, 50, 100],
            min_hit_ratio: 0.95,
            min_stage_seconds: 10,
            max_stage_seconds: 300,
            hold_on_timeout: false,
        }
    }
}

/// One node pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodObs {
    pub name: String,
    /// StatefulSet ordinal (the number after the last `-`).
    pub ordinal: usize,
    /// The pod's IP, once it has one.
    pub ip: Option<String>,
    /// The pod's Ready condition.
    pub ready: bool,
    /// `topology.kubernetes.io/zone` of the pod's Kubernetes node.
    pub zone: Option<String>,
    /// Unix seconds the pod was created.
    pub created: i64,
    /// Why the pod is not ready, when Kubernetes says (a container's waiting reason).
    pub not_ready_reason: Option<String>,
    /// Keyspace (hits, misses) over the last observation window, when there is one.
    pub window: Option<(u64, u64)>,
    /// It runs an older pod template than its StatefulSet's (a rolling update is due).
    pub outdated: bool,
    /// What its control port said.
    pub node: NodeObs,
}

/// The answer of a node's control port.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeObs {
    /// Not asked (the pod is not Ready or has no IP).
    NotAsked,
    /// Asked, no usable answer: the error, for status and events.
    Unreachable(String),
    /// Its `GetStatus`.
    Status(Box<NodeStatus>),
}

impl PodObs {
    /// The node's status, when it answered.
    pub fn status(&self) -> Option<&NodeStatus> {
        match &self.node {
            NodeObs::Status(s) => Some(s),
            _ => None,
        }
    }

    /// How a topology names this pod's node: its pod name as id, the process instance
    /// it reported, its pod IP's ports, its zone. `None` until it answered.
    pub fn node_info(&self) -> Option<NodeInfo> {
        let status = self.status()?;
        let ip = self.ip.as_deref()?;
        Some(NodeInfo {
            id: self.name.clone(),
            instance: status.instance.clone(),
            resp_addr: format!("{ip}:{RESP_PORT}"),
            control_addr: format!("{ip}:{CONTROL_PORT}"),
            replica_addr: Some(format!("{ip}:{REPLICA_PORT}")),
            zone: self.zone.clone(),
        })
    }

    /// The pod as a placement member (weight 1, its zone).
    pub fn member(&self) -> Member {
        Member {
            id: self.name.clone(),
            weight: 1,
            zone: self.zone.clone(),
        }
    }
}

impl Default for Observed {
    fn default() -> Self {
        Observed {
            replicas: 0,
            replication_factor: 1,
            paused: false,
            pods: Vec::new(),
            missing_secret: None,
            status_epoch: 0,
            now: 0,
            progress_deadline_seconds: PROGRESS_DEADLINE_SECONDS,
            detection_seconds: 2,
            warmup: WarmupSettings::default(),
            rebalance: None,
            failing_for: Default::default(),
        }
    }
}

impl Observed {
    /// The pods that should be members: ordinals below `spec.replicas`.
    pub fn wanted(&self) -> impl Iterator<Item = &PodObs> {
        self.pods.iter().filter(move |p| p.ordinal < self.replicas)
    }
}

/// The ordinal of a StatefulSet pod name (`<set>-<n>`).
pub fn ordinal_of(pod_name: &str) -> Option<usize> {
    pod_name.rsplit_once('-')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_come_from_the_name() {
        assert_eq!(ordinal_of("cache-12"), Some(12));
        assert_eq!(ordinal_of("my-cache-0"), Some(0));
        assert_eq!(ordinal_of("cache"), None);
        assert_eq!(ordinal_of("cache-x"), None);
    }
}
