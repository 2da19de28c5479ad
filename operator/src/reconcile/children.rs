//! The Kubernetes objects a CacheCluster owns, built from its spec: pure functions (no
//! client), applied by [`super::apply`] with server-side apply.
//!
//! | object | name | what for |
//! |---|---|---|
//! | StatefulSet | `<cluster>` | the node pods `<cluster>-0…`, `updateStrategy: OnDelete` |
//! | Service (headless) | `<cluster>-nodes` | stable pod DNS for the StatefulSet |
//! | Service | `<cluster>` | clients: port 6379 → every pod's proxy port |
//! | PodDisruptionBudget | `<cluster>` | at most one node pod down by choice |
//! | NetworkPolicy | `<cluster>` | only the operator reaches the control port |
//! | Secret | `<cluster>-control` | the control token (created once, never re-applied) |
//!
//! Why a StatefulSet with `OnDelete` rather than bare pods: stable names are the node
//! ids of the topology, the StatefulSet controller recreates a lost pod under its name
//! (which then rejoins as a new process), scale-in removes the highest ordinals (which
//! the operator drains first), and `OnDelete` leaves the operator to choose when each
//! pod restarts during a rolling update, after its primaries were handed over.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, PodSpec,
    PodTemplateSpec, Probe, SecretKeySelector, SecurityContext, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::crd::{CacheCluster, ImagePullPolicy, ProtectionSpec, ServiceType};
use crate::plan::observed::{ADMIN_PORT, CONTROL_PORT, PROXY_PORT, REPLICA_PORT, RESP_PORT};

/// The field manager of every server-side apply.
pub const MANAGER: &str = "ringcache-operator";
/// Key of the control token in the `<cluster>-control` Secret.
pub const TOKEN_KEY: &str = "token";

/// The label every node pod carries with its cluster's name (used to find the
/// CacheCluster of a pod event).
pub const CLUSTER_LABEL: &str = "app.kubernetes.io/instance";
const NAME_LABEL: &str = "app.kubernetes.io/name";
const NODE_APP: &str = "ringcache-node";

/// Why a child could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ChildrenError {
    #[error("the CacheCluster has no {0} (not read from the apiserver?)")]
    MissingMeta(&'static str),
    #[error("spec.resources.limits.memory: {0}")]
    MemoryLimit(String),
}

/// Names of a cluster's children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub cluster: String,
    pub namespace: String,
}

impl Names {
    pub fn of(cc: &CacheCluster) -> Result<Names, ChildrenError> {
        Ok(Names {
            cluster: cc.metadata.name.clone().ok_or(ChildrenError::MissingMeta("name"))?,
            namespace: cc
                .metadata
                .namespace
                .clone()
                .ok_or(ChildrenError::MissingMeta("namespace"))?,
        })
    }
    pub fn statefulset(&self) -> String {
        self.cluster.clone()
    }
    pub fn headless(&self) -> String {
        format!("{}-nodes", self.cluster)
    }
    pub fn client_service(&self) -> String {
        self.cluster.clone()
    }
    pub fn pdb(&self) -> String {
        self.cluster.clone()
    }
    pub fn network_policy(&self) -> String {
        self.cluster.clone()
    }
    pub fn control_secret(&self) -> String {
        format!("{}-control", self.cluster)
    }
    /// The pods' selector labels.
    pub fn selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (NAME_LABEL.to_string(), NODE_APP.to_string()),
            (CLUSTER_LABEL.to_string(), self.cluster.clone()),
        ])
    }
    /// The selector as `kubectl -l` / `status.selector` writes it.
    pub fn selector_string(&self) -> String {
        self.selector()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
    fn labels(&self) -> BTreeMap<String, String> {
        let mut l = self.selector();
        l.insert("app.kubernetes.io/component".into(), "cache".into());
        l.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
        l
    }
}

fn meta(names: &Names, name: String, owner: &OwnerReference) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(names.namespace.clone()),
        labels: Some(names.labels()),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// The owner reference every child carries (so deleting the CacheCluster deletes it).
pub fn owner(cc: &CacheCluster) -> Result<OwnerReference, ChildrenError> {
    cc.controller_owner_ref(&()).ok_or(ChildrenError::MissingMeta("uid"))
}

/// Parses a Kubernetes memory quantity (`512Mi`, `1G`, `1.5Gi`, `1e9`, `2048`) to bytes.
pub fn quantity_bytes(q: &str) -> Result<u64, String> {
    const SUFFIXES: [(&str, f64); 12] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let q = q.trim();
    let bad = || format!("{q:?} is not a memory quantity");
    let (num, mult) = SUFFIXES
        .iter()
        .find_map(|(s, m)| q.strip_suffix(s).map(|n| (n, *m)))
        .unwrap_or((q, 1.0));
    let n: f64 = num.parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 || num.starts_with('+') {
        return Err(bad());
    }
    Ok((n * mult) as u64)
}

/// The `--maxmemory` a node gets: `spec.maxmemory`, else 80 % of the memory limit,
/// else none (the node's own default).
pub fn maxmemory(cc: &CacheCluster) -> Result<Option<String>, ChildrenError> {
    if let Some(m) = &cc.spec.maxmemory {
        return Ok(Some(m.clone()));
    }
    let limit = cc
        .spec
        .resources
        .limits
        .as_ref()
        .and_then(|l| l.get("memory"))
        .map(|q| quantity_bytes(&q.0))
        .transpose()
        .map_err(ChildrenError::MemoryLimit)?;
    Ok(limit.map(|bytes| (bytes / 10 * 8).to_string()))
}

fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn env_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn port(name: &str, port: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: i32::from(port),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn http_probe(path: &str, period: i32, initial_delay: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        initial_delay_seconds: Some(initial_delay),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// The node flags of `spec.protection`, only those that differ from the node's
/// defaults (so a cluster that sets none keeps its pod template).
fn protection_args(p: &ProtectionSpec) -> Vec<String> {
    let defaults = ProtectionSpec::default();
    let mut args = Vec::new();
    let mut flag = |name: &str, value: String| {
        args.push(format!("--{name}"));
        args.push(value);
    };
    if p.ttl_jitter_percent != defaults.ttl_jitter_percent {
        flag("ttl-jitter-percent", p.ttl_jitter_percent.to_string());
    }
    for pattern in &p.coalesce_patterns {
        flag("coalesce-pattern", pattern.clone());
    }
    if p.coalesce_early_ms != defaults.coalesce_early_ms {
        flag("coalesce-early-ms", p.coalesce_early_ms.to_string());
    }
    let (h, dh) = (&p.hot_keys, &defaults.hot_keys);
    if h.enabled != dh.enabled {
        flag("hotkeys", h.enabled.to_string());
    }
    if h.k != dh.k {
        flag("hotkeys-k", h.k.to_string());
    }
    if h.window_seconds != dh.window_seconds {
        flag("hotkeys-window", h.window_seconds.to_string());
    }
    if h.sample != dh.sample {
        flag("hotkeys-sample", h.sample.to_string());
    }
    if h.replica_reads_min_ops != dh.replica_reads_min_ops {
        flag("hot-key-replica-reads", h.replica_reads_min_ops.to_string());
    }
    let (b, db) = (&p.bloom, &defaults.bloom);
    if b.error_rate != db.error_rate {
        flag("bf-error-rate", b.error_rate.to_string());
    }
    if b.initial_size != db.initial_size {
        flag("bf-initial-size", b.initial_size.to_string());
    }
    if b.expansion != db.expansion {
        flag("bf-expansion", b.expansion.to_string());
    }
    args
}

/// The node container.
fn node_container(cc: &CacheCluster, names: &Names) -> Result<Container, ChildrenError> {
    let spec = &cc.spec;
    let mut args: Vec<String> = [
        "--cluster-enabled",
        "--bind",
        "$(POD_IP)",
        "--node-id",
        "$(POD_NAME)",
        "--maxmemory-policy",
        spec.maxmemory_policy.as_str(),
        "--min-replicas-to-ack",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(spec.min_replicas_to_ack.to_string());
    if let Some(m) = maxmemory(cc)? {
        args.push("--maxmemory".into());
        args.push(m);
    }
    args.extend(protection_args(&spec.protection));
    let mut env = vec![
        env_field("POD_IP", "status.podIP"),
        env_field("POD_NAME", "metadata.name"),
        env_secret("RINGCACHE_CONTROL_TOKEN", &names.control_secret(), TOKEN_KEY),
    ];
    if let Some(pass) = &spec.auth.password_secret_ref {
        env.push(env_secret("RINGCACHE_REQUIREPASS", &pass.name, &pass.key));
    }
    Ok(Container {
        name: "node".into(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some(
            match spec.image_pull_policy {
                ImagePullPolicy::Always => "Always",
                ImagePullPolicy::IfNotPresent => "IfNotPresent",
                ImagePullPolicy::Never => "Never",
            }
            .into(),
        ),
        args: Some(args),
        env: Some(env),
        ports: Some(vec![
            port("redis", RESP_PORT),
            port("proxy", PROXY_PORT),
            port("replica", REPLICA_PORT),
            port("control", CONTROL_PORT),
            port("admin", ADMIN_PORT),
        ]),
        readiness_probe: Some(http_probe("/readyz", 2, 0)),
        liveness_probe: Some(http_probe("/healthz", 10, 5)),
        resources: Some(spec.resources.clone()),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    })
}

/// The node pods' StatefulSet, keeping `replicas` pods (`spec.replicas`, or more while a
/// scale-in drains the highest ordinals).
pub fn statefulset(cc: &CacheCluster, replicas: i32) -> Result<StatefulSet, ChildrenError> {
    let names = Names::of(cc)?;
    let owner = owner(cc)?;
    let spec = &cc.spec;
    let mut pod_labels = spec.labels.clone();
    pod_labels.extend(names.labels());
    Ok(StatefulSet {
        metadata: meta(&names, names.statefulset(), &owner),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas.max(spec.replicas)),
            service_name: Some(names.headless()),
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..StatefulSetUpdateStrategy::default()
            }),
            selector: LabelSelector {
                match_labels: Some(names.selector()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: (!spec.annotations.is_empty()).then(|| spec.annotations.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![node_container(cc, &names)?],
                    node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
                    tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
                    affinity: spec.affinity.clone(),
                    topology_spread_constraints: (!spec.topology_spread_constraints.is_empty())
                        .then(|| spec.topology_spread_constraints.clone()),
                    priority_class_name: spec.priority_class_name.clone(),
                    termination_grace_period_seconds: Some(spec.termination_grace_period_seconds),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    ..PodSpec::default()
                }),
            },
            ..StatefulSetSpec::default()
        }),
        status: None,
    })
}

fn service_port(name: &str, port: u16, target: &str) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: i32::from(port),
        target_port: Some(IntOrString::String(target.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// The headless Service of the StatefulSet (every pod, ready or not, has a DNS name).
pub fn headless_service(cc: &CacheCluster) -> Result<Service, ChildrenError> {
    let names = Names::of(cc)?;
    Ok(Service {
        metadata: meta(&names, names.headless(), &owner(cc)?),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(names.selector()),
            ports: Some(vec![
                service_port("redis", RESP_PORT, "redis"),
                service_port("replica", REPLICA_PORT, "replica"),
                service_port("control", CONTROL_PORT, "control"),
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// The client Service: port 6379 reaches the proxy port of any ready pod, which serves
/// every key (cluster-unaware clients).
pub fn client_service(cc: &CacheCluster) -> Result<Service, ChildrenError> {
    let names = Names::of(cc)?;
    let mut metadata = meta(&names, names.client_service(), &owner(cc)?);
    if !cc.spec.service.annotations.is_empty() {
        metadata.annotations = Some(cc.spec.service.annotations.clone());
    }
    Ok(Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(
                match cc.spec.service.type_ {
                    ServiceType::ClusterIP => "ClusterIP",
                    ServiceType::NodePort => "NodePort",
                    ServiceType::LoadBalancer => "LoadBalancer",
                }
                .into(),
            ),
            selector: Some(names.selector()),
            ports: Some(vec![service_port("redis", RESP_PORT, "proxy")]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// At most one node pod down by choice (drains, upgrades of Kubernetes nodes).
pub fn pod_disruption_budget(cc: &CacheCluster) -> Result<PodDisruptionBudget, ChildrenError> {
    let names = Names::of(cc)?;
    Ok(PodDisruptionBudget {
        metadata: meta(&names, names.pdb(), &owner(cc)?),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(names.selector()),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}

/// Only pods matching `operator` (in any namespace) reach the nodes' control port;
/// the client, proxy and admin ports stay open (node-to-node replication uses the
/// client port and authenticates like a client).
pub fn network_policy(cc: &CacheCluster, operator: &BTreeMap<String, String>) -> Result<NetworkPolicy, ChildrenError> {
    let names = Names::of(cc)?;
    let ports = |list: &[u16]| {
        Some(
            list.iter()
                .map(|&p| NetworkPolicyPort {
                    port: Some(IntOrString::Int(i32::from(p))),
                    protocol: Some("TCP".into()),
                    ..NetworkPolicyPort::default()
                })
                .collect(),
        )
    };
    Ok(NetworkPolicy {
        metadata: meta(&names, names.network_policy(), &owner(cc)?),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(names.selector()),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: None,
                    // Clients read from replicas at the replica port (CLUSTER SLOTS).
                    ports: ports(&[RESP_PORT, PROXY_PORT, REPLICA_PORT, ADMIN_PORT]),
                },
                NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        namespace_selector: Some(LabelSelector::default()),
                        pod_selector: Some(LabelSelector {
                            match_labels: Some(operator.clone()),
                            ..LabelSelector::default()
                        }),
                        ..NetworkPolicyPeer::default()
                    }]),
                    ports: ports(&[CONTROL_PORT]),
                },
            ]),
            ..NetworkPolicySpec::default()
        }),
    })
}

/// The `<cluster>-control` Secret holding `token` (created once: a re-apply would change
/// the token the running nodes were started with).
pub fn control_secret(cc: &CacheCluster, token: &str) -> Result<k8s_openapi::api::core::v1::Secret, ChildrenError> {
    let names = Names::of(cc)?;
    Ok(k8s_openapi::api::core::v1::Secret {
        metadata: meta(&names, names.control_secret(), &owner(cc)?),
        string_data: Some(BTreeMap::from([(TOKEN_KEY.to_string(), token.to_string())])),
        type_: Some("Opaque".into()),
        ..Default::default()
    })
}

/// The names of the pods the StatefulSet makes: `<cluster>-<ordinal>`.
pub fn pod_name(cc: &CacheCluster, ordinal: usize) -> String {
    format!("{}-{ordinal}", cc.name_any())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::crd::{CacheClusterSpec, SecretKeyRef};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn cc(spec: CacheClusterSpec) -> CacheCluster {
        let mut cc = CacheCluster::new("cache", spec);
        cc.metadata.namespace = Some("ns".into());
        cc.metadata.uid = Some("uid-1".into());
        cc
    }

    #[test]
    fn protection_becomes_node_flags_and_defaults_add_none() {
        assert!(protection_args(&ProtectionSpec::default()).is_empty());
        let mut p = ProtectionSpec {
            ttl_jitter_percent: 10,
            coalesce_patterns: vec!["user:*".into(), "feed:*".into()],
            ..ProtectionSpec::default()
        };
        p.hot_keys.replica_reads_min_ops = 500;
        p.hot_keys.enabled = false;
        p.bloom.error_rate = 0.001;
        assert_eq!(
            protection_args(&p),
            [
                "--ttl-jitter-percent",
                "10",
                "--coalesce-pattern",
                "user:*",
                "--coalesce-pattern",
                "feed:*",
                "--hotkeys",
                "false",
                "--hot-key-replica-reads",
                "500",
                "--bf-error-rate",
                "0.001",
            ]
        );
    }

    #[test]
    fn quantities_parse_like_kubernetes() {
        assert_eq!(quantity_bytes("512Mi"), Ok(512 * 1024 * 1024));
        assert_eq!(quantity_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(quantity_bytes("1.5Gi"), Ok(1_610_612_736));
        assert_eq!(quantity_bytes("2048"), Ok(2048));
        assert_eq!(quantity_bytes("1e9"), Ok(1_000_000_000));
        assert_eq!(quantity_bytes("2E"), Ok(2_000_000_000_000_000_000));
        assert_eq!(quantity_bytes("1Ei"), Ok(1 << 60));
        assert!(quantity_bytes("12XB").is_err());
        assert!(quantity_bytes("-1Gi").is_err());
        assert!(quantity_bytes("").is_err());
    }

    #[test]
    fn maxmemory_is_the_spec_or_80_percent_of_the_limit() {
        let mut spec = CacheClusterSpec::default();
        assert_eq!(maxmemory(&cc(spec.clone())).unwrap(), None);
        spec.resources.limits = Some(BTreeMap::from([("memory".to_string(), Quantity("1000Mi".into()))]));
        assert_eq!(maxmemory(&cc(spec.clone())).unwrap(), Some("838860800".into()));
        spec.maxmemory = Some("64mb".into());
        assert_eq!(maxmemory(&cc(spec.clone())).unwrap(), Some("64mb".into()));
        spec.maxmemory = None;
        spec.resources.limits = Some(BTreeMap::from([("memory".to_string(), Quantity("lots".into()))]));
        let err = maxmemory(&cc(spec)).unwrap_err().to_string();
        assert!(err.starts_with("spec.resources.limits.memory:"), "{err}");
    }

    #[test]
    fn the_statefulset_runs_cluster_mode_nodes_with_secrets_from_env() {
        let mut spec = CacheClusterSpec::default();
        spec.auth.password_secret_ref = Some(SecretKeyRef {
            name: "pw".into(),
            key: "password".into(),
        });
        spec.replicas = 5;
        let sts = statefulset(&cc(spec), 4).unwrap();
        let s = sts.spec.as_ref().unwrap();
        assert_eq!(s.replicas, Some(5));
        assert_eq!(s.service_name.as_deref(), Some("cache-nodes"));
        assert_eq!(s.update_strategy.as_ref().unwrap().type_.as_deref(), Some("OnDelete"));
        let pod = s.template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        let args = c.args.as_ref().unwrap();
        assert!(args.windows(2).any(|w| w == ["--bind", "$(POD_IP)"]));
        assert!(args.windows(2).any(|w| w == ["--node-id", "$(POD_NAME)"]));
        assert!(args.contains(&"--cluster-enabled".to_string()));
        // No secret on the command line: they come from the environment.
        let env = c.env.as_ref().unwrap();
        let from_secret = |name: &str| {
            env.iter()
                .find(|e| e.name == name)
                .and_then(|e| e.value_from.as_ref())
                .and_then(|v| v.secret_key_ref.as_ref())
                .map(|r| (r.name.clone(), r.key.clone()))
        };
        assert_eq!(
            from_secret("RINGCACHE_REQUIREPASS"),
            Some(("pw".into(), "password".into()))
        );
        assert_eq!(
            from_secret("RINGCACHE_CONTROL_TOKEN"),
            Some(("cache-control".into(), "token".into()))
        );
        assert!(env.iter().all(|e| e.value.is_none() || !e.name.contains("PASS")));
        let owner = &sts.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("CacheCluster", Some(true)));
        let labels = s.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
        assert_eq!(labels.get(CLUSTER_LABEL).map(String::as_str), Some("cache"));
    }

    #[test]
    fn services_pdb_and_network_policy() {
        let c = cc(CacheClusterSpec::default());
        let svc = client_service(&c).unwrap();
        let port = &svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
        assert_eq!(port.port, 6379);
        assert_eq!(port.target_port, Some(IntOrString::String("proxy".into())));
        assert_eq!(svc.metadata.name.as_deref(), Some("cache"));
        let headless = headless_service(&c).unwrap();
        assert_eq!(headless.spec.as_ref().unwrap().cluster_ip.as_deref(), Some("None"));
        let pdb = pod_disruption_budget(&c).unwrap();
        assert_eq!(pdb.spec.unwrap().max_unavailable, Some(IntOrString::Int(1)));
        let op = BTreeMap::from([("app.kubernetes.io/component".to_string(), "operator".to_string())]);
        let np = network_policy(&c, &op).unwrap();
        let rules = np.spec.unwrap().ingress.unwrap();
        let control = rules
            .iter()
            .find(|r| r.ports.as_ref().unwrap()[0].port == Some(IntOrString::Int(7379)))
            .unwrap();
        assert_eq!(
            control.from.as_ref().unwrap()[0]
                .pod_selector
                .as_ref()
                .unwrap()
                .match_labels,
            Some(op)
        );
        assert_eq!(
            Names::of(&c).unwrap().selector_string(),
            "app.kubernetes.io/instance=cache,app.kubernetes.io/name=ringcache-node"
        );
    }
}
