//! Node heartbeats, as a kubelet sends them: every `heartbeat` period each live node's status (conditions all
//! healthy, Ready) is patched and its `kube-node-lease` Lease renewed (created when missing). A crashed node
//! ([`super::NodeControl::fail`]) sends nothing, so the node-lifecycle controller notices it.

use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

use super::time::{rfc3339_micro_now, rfc3339_now};
use super::Ctx;

/// The `status` patch of a healthy, Ready node at `host_ip` running kubelet `version`; `since` is every condition's
/// `lastTransitionTime`.
pub(crate) fn node_status(host_ip: &str, version: &str, since: &str) -> Value {
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

/// Runs forever: one status patch and one lease renewal per live node every `ctx.config.heartbeat`.
pub(crate) async fn heartbeat(ctx: Arc<Ctx>, version: String) {
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
            renew_lease(&leases, &n.name, ctx.config.heartbeat.as_secs()).await;
        }
        tokio::time::sleep(ctx.config.heartbeat).await;
    }
}

/// Renews node `name`'s Lease, creating it (duration 4 heartbeats) when it does not exist yet.
async fn renew_lease(leases: &Api<Lease>, name: &str, heartbeat_secs: u64) {
    let renew = json!({ "spec": { "renewTime": rfc3339_micro_now() } });
    match leases.patch(name, &PatchParams::default(), &Patch::Merge(&renew)).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": { "name": name, "namespace": "kube-node-lease" },
                "spec": {
                    "holderIdentity": name,
                    "leaseDurationSeconds": (heartbeat_secs * 4).max(1),
                    "renewTime": rfc3339_micro_now(),
                }
            });
            match serde_json::from_value::<Lease>(lease) {
                Ok(l) => {
                    if let Err(e) = leases.create(&PostParams::default(), &l).await {
                        tracing::warn!(node = name, error = %e, "creating node lease");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "building node lease"),
            }
        }
        Err(e) => tracing::warn!(node = name, error = %e, "renewing node lease"),
    }
}
