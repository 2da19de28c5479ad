//! Helpers for the operator's end-to-end tests: install the Helm chart (the operator
//! then runs as pods of this control plane, under the chart's RBAC), read and wait for
//! CacheClusters, and ask their nodes for their status with the cluster's control
//! token, as the operator does.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::ListParams;
use kube::Api;
use ringcache_core::slot::{key_slot, Slot};
use ringcache_core::status::NodeStatus;
use serde_json::Value;

use crate::{bins, run_with_stdin, wait_for, EnvError, TestEnv};

/// The chart in this repository.
pub fn chart_dir() -> PathBuf {
    bins::workspace_root().join("charts/ringcache")
}

/// A file of this repository.
pub fn repo_file(path: &str) -> PathBuf {
    bins::workspace_root().join(path)
}

/// `helm install <release> charts/ringcache -n <namespace> --set …` and waits until the
/// operator's Deployment is available.
pub fn install_operator(env: &TestEnv, release: &str, namespace: &str, set: &[&str]) -> Result<String, EnvError> {
    let chart = chart_dir().to_string_lossy().into_owned();
    let mut args = vec![
        "install",
        release,
        chart.as_str(),
        "--namespace",
        namespace,
        "--wait",
        "--timeout",
        "180s",
    ];
    for s in set {
        args.push("--set");
        args.push(s);
    }
    run_with_stdin(env.helm(), &args, None)
}

/// `kubectl get cachecluster <name> -n <ns> -o json`.
pub fn cachecluster(env: &TestEnv, ns: &str, name: &str) -> Result<Value, EnvError> {
    let out = env.kubectl_run(&["get", "cachecluster", name, "-n", ns, "-o", "json"], None)?;
    serde_json::from_str(&out).map_err(|e| EnvError::Command {
        cmd: "kubectl get cachecluster".into(),
        detail: e.to_string(),
    })
}

/// The condition `type_` of a CacheCluster's JSON, as (status, reason, message).
pub fn condition(cc: &Value, type_: &str) -> Option<(String, String, String)> {
    cc["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("status"), s("reason"), s("message"))
        })
}

/// Waits until the CacheCluster's condition `type_` has `status` (and `reason`, when
/// given); returns the CacheCluster's JSON.
pub async fn wait_condition(
    env: &TestEnv,
    ns: &str,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
    timeout: Duration,
) -> Result<Value, EnvError> {
    wait_for(
        &format!("CacheCluster {ns}/{name}: {type_}={status} {}", reason.unwrap_or("")),
        timeout,
        || async move {
            let cc = cachecluster(env, ns, name).map_err(|e| e.to_string())?;
            match condition(&cc, type_) {
                Some((s, r, _)) if s == status && reason.is_none_or(|want| want == r) => Ok(cc),
                Some((s, r, m)) => Err(format!("{type_}={s} {r}: {m}")),
                None => Err(format!("no {type_} condition yet")),
            }
        },
    )
    .await
}

/// The control token of cluster `name` (its `<name>-control` Secret).
pub async fn control_token(client: &kube::Client, ns: &str, name: &str) -> Result<String, EnvError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let s = secrets.get(&format!("{name}-control")).await?;
    s.data
        .as_ref()
        .and_then(|d| d.get("token"))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .ok_or_else(|| EnvError::Command {
            cmd: "reading the control token".into(),
            detail: format!("Secret {name}-control has no key token"),
        })
}

/// `GetStatus` of the node at `addr` (`ip:7379`), with `token`.
pub async fn node_status(addr: &str, token: &str) -> Result<NodeStatus, EnvError> {
    let err = |detail: String| EnvError::Command {
        cmd: format!("GetStatus {addr}"),
        detail,
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| err(e.to_string()))?
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .map_err(|e| err(e.to_string()))?;
    let mut client = ringcache_proto::auth::client(channel, token).map_err(|e| err(e.to_string()))?;
    let reply = client
        .get_status(ringcache_proto::pb::GetStatusRequest {})
        .await
        .map_err(|e| err(e.to_string()))?
        .into_inner();
    ringcache_proto::convert::node_status_from_pb(reply).map_err(|e| err(e.to_string()))
}

/// The live pods of CacheCluster `name` (not being deleted), by name.
pub async fn cluster_pods(client: &kube::Client, ns: &str, name: &str) -> Result<Vec<Pod>, EnvError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut pods: Vec<Pod> = api
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={name}")))
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    pods.sort_by_key(|p| p.metadata.name.clone());
    Ok(pods)
}

/// A pod's IP, once it has one.
pub fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref().and_then(|s| s.pod_ip.clone())
}

/// The slots `pod` leads in the topology its node reports (`GetStatus` with `token`).
pub async fn primary_slots(pod: &Pod, token: &str) -> Result<HashSet<Slot>, EnvError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let err = |detail: &str| EnvError::Command {
        cmd: format!("GetStatus of {name}"),
        detail: detail.to_string(),
    };
    let ip = pod_ip(pod).ok_or_else(|| err("the pod has no IP"))?;
    let topology = node_status(&format!("{ip}:7379"), token)
        .await?
        .topology
        .ok_or_else(|| err("no topology"))?;
    Ok((0..16384u16)
        .filter(|&slot| topology.primary_of(slot) == Some(name.as_str()))
        .collect())
}

/// The first `n` keys named `<prefix><i>` that hash to one of `slots`.
pub fn keys_in(slots: &HashSet<Slot>, prefix: &str, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .filter(|k| slots.contains(&key_slot(k.as_bytes())))
        .take(n)
        .collect()
}

/// The pid of a pod's container process (the test kubelet's annotation).
pub fn container_pid(pod: &Pod, container: &str) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(&format!("{}{container}", crate::kubelet::PID_ANNOTATION_PREFIX))?
        .parse()
        .ok()
}

/// Creates the namespace `ringcache-system` and installs the chart there as release `rc`
/// with its defaults (the operator watches every namespace).
pub fn install_default_operator(env: &TestEnv) -> Result<(), EnvError> {
    env.kubectl_run(&["create", "namespace", "ringcache-system"], None)?;
    install_operator(env, "rc", "ringcache-system", &[]).map(|_| ())
}

/// For test binaries whose tests share one operator and must not overlap (they share
/// two cores and measure hit rates): waits for the previous test to finish and, on the
/// first call of the binary, installs the chart as release `rc` in `ringcache-system`
/// (watching every namespace). Panics when the shared control plane or the install
/// fails, naming why.
pub async fn one_at_a_time_with_operator() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let guard = LOCK.lock().await;
    let installed = INSTALLED.get_or_init(|| {
        let env = crate::shared().map_err(|e| format!("starting the shared control plane: {e}"))?;
        install_default_operator(env).map_err(|e| e.to_string())
    });
    if let Err(e) = installed {
        panic!("installing the operator: {e}");
    }
    guard
}

/// Waits until `url` (a client Service's ClusterIP) answers PING: a CacheCluster is
/// Ready once its nodes serve, but kube-proxy routes the Service only after the
/// EndpointSlice controller has listed the Ready pods and its next rules sync (until
/// then a connection is refused by its reject rule). Applications retry; tests wait.
pub async fn wait_until_routed(url: &str, timeout: Duration) -> Result<(), EnvError> {
    wait_for(&format!("{url} answering PING"), timeout, || {
        let url = url.to_string();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut con = redis::Client::open(url.as_str())
                    .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
                    .map_err(|e| e.to_string())?;
                redis::cmd("PING").query::<String>(&mut con).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())?
            .map(|_| ())
        }
    })
    .await
}
