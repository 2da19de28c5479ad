//! Node crashes, in their own test binary (so their own control plane): a crashed node disturbs every pod that
//! shares it, so no other test may run beside this one.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::Api;
use ringcache_tests::kubelet::PID_ANNOTATION_PREFIX;
use ringcache_tests::{pod_ready, shared, wait_for, ImageSource, TestEnv};

const WAIT: Duration = Duration::from_secs(90);

fn env() -> &'static TestEnv {
    let env = shared().expect("starting the shared control plane");
    env.images.insert(
        "ringcache/testpod",
        ImageSource::Path(PathBuf::from(env!("CARGO_BIN_EXE_testpod"))),
    );
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_node_is_detected_and_its_pods_are_evicted() {
    let env = env();
    let client = env.client().await.expect("client");
    let ns = env.namespace("nodefail").await.expect("namespace");
    // Pods that leave an unreachable node after 1 s instead of the default 300 s.
    let manifest = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: survivor
spec:
  replicas: 2
  selector:
    matchLabels: { app: survivor }
  template:
    metadata:
      labels: { app: survivor }
    spec:
      terminationGracePeriodSeconds: 1
      tolerations:
      - { key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 1 }
      - { key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 1 }
      containers:
      - name: main
        image: ringcache/testpod
        args: ["--port", "7200"]
        env:
        - name: POD_IP
          valueFrom: { fieldRef: { fieldPath: status.podIP } }
        readinessProbe:
          tcpSocket: { port: 7200 }
          periodSeconds: 1
"#;
    env.kubectl_run(&["apply", "-n", &ns, "-f", "-"], Some(manifest))
        .expect("kubectl apply");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let live = |list: Vec<Pod>| -> Vec<Pod> {
        list.into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    };
    let before = wait_for("2 Ready survivor pods", WAIT, || async {
        let l = live(
            pods.list(&ListParams::default().labels("app=survivor"))
                .await
                .map_err(|e| e.to_string())?
                .items,
        );
        if l.len() == 2 && l.iter().all(pod_ready) {
            Ok(l)
        } else {
            Err(format!("{} live pods", l.len()))
        }
    })
    .await
    .expect("pods");
    let victim = before[0].clone();
    let victim_name = victim.metadata.name.clone().expect("name");
    let node = victim.spec.as_ref().and_then(|s| s.node_name.clone()).expect("bound");
    let pid: i32 = victim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(&format!("{PID_ANNOTATION_PREFIX}main")))
        .expect("pid annotation")
        .parse()
        .expect("numeric pid");

    env.nodes.fail(&node);
    // The process dies with the node.
    wait_for("victim process to die", WAIT, || async {
        // SAFETY: signal 0 only checks whether the process exists.
        if unsafe { libc::kill(pid, 0) } == 0 {
            Err(format!("pid {pid} alive"))
        } else {
            Ok(())
        }
    })
    .await
    .expect("process killed");
    // The node-lifecycle controller notices the missing heartbeats, the taint evicts the pod, the ReplicaSet
    // replaces it on a live node.
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for(&format!("node {node} not Ready"), WAIT, || async {
        let n = nodes.get(&node).await.map_err(|e| e.to_string())?;
        let st = n
            .status
            .and_then(|s| s.conditions)
            .and_then(|cs| cs.into_iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status)
            .unwrap_or_default();
        if st == "True" {
            Err("still Ready".into())
        } else {
            Ok(())
        }
    })
    .await
    .expect("node detected");
    let victim_name2 = victim_name.clone();
    let node2 = node.clone();
    wait_for("replacement pod Ready on another node", WAIT, || async {
        let l = live(
            pods.list(&ListParams::default().labels("app=survivor"))
                .await
                .map_err(|e| e.to_string())?
                .items,
        );
        let on_live_nodes = l
            .iter()
            .all(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node2.as_str()));
        let names: Vec<String> = l.iter().filter_map(|p| p.metadata.name.clone()).collect();
        if l.len() == 2 && l.iter().all(pod_ready) && on_live_nodes && !names.contains(&victim_name2) {
            Ok(())
        } else {
            Err(format!("live pods {names:?}"))
        }
    })
    .await
    .expect("replacement");

    // The node comes back; the kubelet releases the evicted pod it had been holding.
    env.nodes.recover(&node);
    wait_for(&format!("evicted pod {victim_name} released"), WAIT, || async {
        match pods.get_opt(&victim_name).await {
            Ok(None) => Ok(()),
            Ok(Some(p)) => Err(format!(
                "still there, deletionTimestamp {:?}",
                p.metadata.deletion_timestamp
            )),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .expect("release after recovery");
}
