//! ringcache-node on the real control plane: a StatefulSet of cluster-mode pods, each
//! binding its own pod IP, bootstrapped with `ringcache-node cluster create` over their
//! control ports, then used by a cluster-aware Redis client through the pod IPs. A
//! deleted pod comes back as a new instance that serves nothing until it is given a
//! topology (the operator's job; here nobody gives it one).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use kube::Api;
use redis::Commands;
use ringcache_tests::bins::workspace_binary;
use ringcache_tests::{pod_ready, shared, wait_for};

const WAIT: Duration = Duration::from_secs(120);

/// The control token of this test's nodes (a Secret in the manifest; the operator
/// creates a random one per cluster).
const CONTROL_TOKEN: &str = "node-pods-test-token";

const MANIFEST: &str = r#"
apiVersion: v1
kind: Secret
metadata:
  name: cache-control
stringData:
  token: node-pods-test-token
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: cache
spec:
  replicas: 3
  serviceName: cache
  selector:
    matchLabels: { app: cache }
  template:
    metadata:
      labels: { app: cache }
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: node
        image: ringcache/node:dev
        args: ["--bind", "$(POD_IP)", "--cluster-enabled", "--node-id", "$(POD_NAME)", "--maxmemory", "64mb"]
        env:
        - name: POD_IP
          valueFrom: { fieldRef: { fieldPath: status.podIP } }
        - name: POD_NAME
          valueFrom: { fieldRef: { fieldPath: metadata.name } }
        - name: RINGCACHE_CONTROL_TOKEN
          valueFrom: { secretKeyRef: { name: cache-control, key: token } }
        ports:
        - { name: redis, containerPort: 6379 }
        - { name: control, containerPort: 7379 }
        - { name: admin, containerPort: 9121 }
        readinessProbe:
          httpGet: { path: /readyz, port: admin }
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: cache
spec:
  clusterIP: None
  selector: { app: cache }
  ports:
  - { name: redis, port: 6379 }
"#;

async fn ready_pods(pods: &Api<Pod>) -> BTreeMap<String, (String, String)> {
    wait_for("3 Ready cache pods", WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels("app=cache"))
            .await
            .map_err(|e| e.to_string())?;
        let live: Vec<&Pod> = list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        if live.len() == 3 && live.iter().all(|p| pod_ready(p)) {
            Ok(live
                .iter()
                .map(|p| {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
                    let uid = p.metadata.uid.clone().unwrap_or_default();
                    (name, (ip, uid))
                })
                .collect())
        } else {
            Err(format!(
                "{} live, {} ready",
                live.len(),
                live.iter().filter(|p| pod_ready(p)).count()
            ))
        }
    })
    .await
    .expect("cache pods did not become Ready")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_pods_bootstrap_and_serve_a_cluster_client() {
    let env = shared().expect("starting the shared control plane");
    let node_bin = workspace_binary("ringcache-node").expect("build ringcache-node first (make test does)");
    let client = env.client().await.expect("client");
    let ns = env.namespace("nodepods").await.expect("namespace");
    env.kubectl_run(&["apply", "-n", &ns, "-f", "-"], Some(MANIFEST))
        .expect("kubectl apply");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let running = ready_pods(&pods).await;
    let ips: Vec<String> = running.values().map(|(ip, _)| ip.clone()).collect();

    // Before a topology, a cluster-mode node serves no keys.
    let first = redis::Client::open(format!("redis://{}:6379/", ips[0])).expect("url");
    let mut con = first.get_connection().expect("connect to a pod");
    let err = redis::cmd("GET")
        .arg("k")
        .query::<Option<String>>(&mut con)
        .expect_err("CLUSTERDOWN expected");
    assert_eq!(err.code(), Some("CLUSTERDOWN"), "{err}");

    // Bootstrap over the control ports, like `redis-cli --cluster create`.
    let out = std::process::Command::new(&node_bin)
        .arg("cluster")
        .arg("create")
        .arg("--replication-factor")
        .arg("2")
        .args(ips.iter().map(|ip| format!("{ip}:7379")))
        .env("RINGCACHE_CONTROL_TOKEN", CONTROL_TOKEN)
        .output()
        .expect("run ringcache-node cluster create");
    assert!(
        out.status.success(),
        "cluster create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let nodes: Vec<String> = ips.iter().map(|ip| format!("redis://{ip}:6379/")).collect();
    let cluster = redis::cluster::ClusterClient::new(nodes).expect("cluster client");
    let mut cc = cluster.get_connection().expect("cluster connection");
    for i in 0..2000 {
        let _: () = cc.set(format!("user:{i}"), i).expect("set through the cluster");
    }
    for i in 0..2000 {
        let v: i64 = cc.get(format!("user:{i}")).expect("get through the cluster");
        assert_eq!(v, i);
    }
    let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut con).expect("cluster info");
    assert!(info.contains("cluster_state:ok"), "{info}");
    assert!(info.contains("cluster_known_nodes:3"), "{info}");

    // Every pod reports its share on its own admin port.
    for ip in &ips {
        let addr = format!("{ip}:9121").parse().expect("admin address");
        let (status, body) = ringcache_tests::http::get(addr, ip, "/metrics", Duration::from_secs(5))
            .await
            .expect("metrics");
        assert_eq!(status, 200);
        assert!(body.contains("ringcache_keys "), "{body}");
    }

    // A deleted pod comes back (same name, new pod and process) and, being a new
    // instance, does not claim the old topology: it serves nothing until told.
    let (victim, (_, old_uid)) = running
        .iter()
        .next()
        .map(|(n, v)| (n.clone(), v.clone()))
        .expect("a pod");
    pods.delete(&victim, &DeleteParams::default())
        .await
        .expect("delete pod");
    let back = wait_for("the deleted pod to come back", WAIT, || async {
        let p = pods.get(&victim).await.map_err(|e| e.to_string())?;
        let uid = p.metadata.uid.clone().unwrap_or_default();
        if uid != old_uid && pod_ready(&p) {
            p.status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .ok_or_else(|| "no IP yet".to_string())
        } else {
            Err(format!("uid {uid}, ready {}", pod_ready(&p)))
        }
    })
    .await
    .expect("pod replaced");
    let fresh = redis::Client::open(format!("redis://{back}:6379/")).expect("url");
    let mut fc = fresh.get_connection().expect("connect to the new pod");
    let err = redis::cmd("GET")
        .arg("user:1")
        .query::<Option<String>>(&mut fc)
        .expect_err("a new instance serves nothing");
    assert_eq!(err.code(), Some("CLUSTERDOWN"), "{err}");
    env.kubectl_run(&["delete", "namespace", &ns, "--wait=false"], None)
        .expect("cleanup");
}
