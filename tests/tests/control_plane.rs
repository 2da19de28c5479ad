//! The harness itself against the real control plane: a Deployment and a Service applied with the pinned kubectl
//! run as local processes on the test kubelet, get distinct pod IPs, become Ready, appear in the Service's
//! EndpointSlices, are replaced by their ReplicaSet when deleted, and restart in place when killed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::Api;
use ringcache_tests::kubelet::{PID_ANNOTATION_PREFIX, ZONE_LABEL};
use ringcache_tests::{pod_ready, shared, wait_for, ImageSource, TestEnv};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(90);

const MANIFEST: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
spec:
  replicas: 3
  selector:
    matchLabels: { app: echo }
  template:
    metadata:
      labels: { app: echo }
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: echo
        image: ringcache/testpod:dev
        args: ["--bind", "$(POD_IP)", "--port", "7000"]
        ports:
        - { name: echo, containerPort: 7000 }
        env:
        - name: POD_IP
          valueFrom: { fieldRef: { fieldPath: status.podIP } }
        - name: POD_NAME
          valueFrom: { fieldRef: { fieldPath: metadata.name } }
        - name: NODE_NAME
          valueFrom: { fieldRef: { fieldPath: spec.nodeName } }
        readinessProbe:
          httpGet: { path: /healthz, port: echo }
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  selector: { app: echo }
  ports:
  - { name: echo, port: 7000, targetPort: echo }
"#;

fn env() -> &'static TestEnv {
    let env = shared().expect("starting the shared control plane");
    env.images.insert(
        "ringcache/testpod",
        ImageSource::Path(PathBuf::from(env!("CARGO_BIN_EXE_testpod"))),
    );
    env
}

fn pod_ip(p: &Pod) -> Option<String> {
    p.status.as_ref().and_then(|s| s.pod_ip.clone())
}

fn restart_count(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .map(|c| c.restart_count)
        .unwrap_or(0)
}

/// Waits until exactly `n` live pods with `app=echo` are Running and Ready; returns name → pod.
async fn wait_ready_pods(pods: &Api<Pod>, n: usize) -> BTreeMap<String, Pod> {
    wait_for(&format!("{n} Ready echo pods"), WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels("app=echo"))
            .await
            .map_err(|e| e.to_string())?;
        let live: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let summary: Vec<String> = live
            .iter()
            .map(|p| {
                format!(
                    "{} phase={:?} ready={} ip={:?}",
                    p.metadata.name.clone().unwrap_or_default(),
                    p.status.as_ref().and_then(|s| s.phase.clone()),
                    pod_ready(p),
                    pod_ip(p)
                )
            })
            .collect();
        let ok = live.len() == n
            && live
                .iter()
                .all(|p| pod_ready(p) && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
        if ok {
            Ok(live
                .into_iter()
                .map(|p| (p.metadata.name.clone().unwrap_or_default(), p))
                .collect())
        } else {
            Err(summary.join("; "))
        }
    })
    .await
    .expect("pods did not become Ready")
}

async fn echo_roundtrip(ip: &str) {
    let addr: SocketAddr = format!("{ip}:7000").parse().expect("pod address");
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect timeout")
        .expect("connect to pod");
    s.write_all(b"ping\n").await.expect("write");
    let mut buf = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .expect("read timeout")
        .expect("read echo");
    assert_eq!(&buf, b"ping\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_runs_serves_and_recovers() {
    let env = env();
    eprintln!(
        "control plane {} (startup {:.1}s), run dir {}, pod network {:?}",
        env.server,
        env.startup.as_secs_f64(),
        env.run_dir.display(),
        env.network
    );
    let client = env.client().await.expect("client");

    // Three Ready nodes in three zones.
    let nodes: Api<Node> = Api::all(client.clone());
    let zones: BTreeSet<String> = wait_for("3 Ready nodes", WAIT, || async {
        let list = nodes.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
        let zones: BTreeSet<String> = list
            .items
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .filter_map(|n| n.metadata.labels.as_ref()?.get(ZONE_LABEL).cloned())
            .collect();
        if zones.len() == 3 {
            Ok(zones)
        } else {
            Err(format!("ready zones: {zones:?}"))
        }
    })
    .await
    .expect("nodes");
    assert_eq!(zones.len(), 3);

    let ns = env.namespace("harness").await.expect("namespace");
    env.kubectl_run(&["apply", "-n", &ns, "-f", "-"], Some(MANIFEST))
        .expect("kubectl apply");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    // Running, Ready, distinct addresses, spread over the three nodes, serving on their own IPs.
    let running = wait_ready_pods(&pods, 3).await;
    let ips: BTreeSet<String> = running.values().filter_map(pod_ip).collect();
    assert_eq!(ips.len(), 3, "pod IPs must be distinct: {ips:?}");
    let nodes_used: BTreeSet<String> = running
        .values()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    assert_eq!(nodes_used.len(), 3, "pods should spread over the nodes: {nodes_used:?}");
    for ip in &ips {
        echo_roundtrip(ip).await;
    }
    for name in running.keys() {
        let log = ringcache_tests::kubelet::log_path(&env.run_dir, &ns, name, "echo");
        let text = std::fs::read_to_string(&log).expect("container log file");
        assert!(text.contains("listening on"), "{}: {text}", log.display());
    }

    // The Service's EndpointSlices list exactly the Ready pod IPs.
    assert!(
        env.network.endpoints_supported(),
        "pod network is {:?}: the apiserver rejects loopback EndpointSlice addresses; run as root so the harness \
         can install the {} local route (see tests/README.md)",
        env.network,
        ringcache_tests::kubelet::network::LOCAL_ROUTE_CIDR
    );
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    let want = ips.clone();
    wait_for("EndpointSlices of Service echo", WAIT, || {
        let slices = slices.clone();
        let want = want.clone();
        async move {
            let list = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=echo"))
                .await
                .map_err(|e| e.to_string())?;
            let got: BTreeSet<String> = list
                .items
                .iter()
                .flat_map(|s| s.endpoints.iter())
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .flat_map(|e| e.addresses.iter().cloned())
                .collect();
            if got == want {
                Ok(())
            } else {
                Err(format!("ready endpoint addresses {got:?}, want {want:?}"))
            }
        }
    })
    .await
    .expect("EndpointSlices");

    // Deleting a pod: graceful termination, then the ReplicaSet replaces it.
    let victim = running.keys().next().cloned().expect("a pod");
    env.kubectl_run(&["delete", "pod", "-n", &ns, &victim, "--timeout=60s"], None)
        .expect("kubectl delete pod");
    let after = wait_ready_pods(&pods, 3).await;
    assert!(!after.contains_key(&victim), "deleted pod {victim} still listed");
    assert_eq!(
        after.keys().filter(|k| !running.contains_key(*k)).count(),
        1,
        "exactly one replacement pod expected: before {:?}, after {:?}",
        running.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );

    // SIGKILL a container process: the kubelet restarts it in place and counts the restart.
    let (name, pod) = after.iter().next().expect("a pod");
    let annotation = format!("{PID_ANNOTATION_PREFIX}echo");
    let pid: i32 = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(&annotation))
        .expect("pid annotation")
        .parse()
        .expect("numeric pid");
    assert_eq!(restart_count(pod), 0);
    // SAFETY: signalling a process this test's kubelet started.
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill {pid}");
    let restarted = wait_for("restartCount to rise after SIGKILL", WAIT, || async {
        let p = pods.get(name).await.map_err(|e| e.to_string())?;
        let new_pid = p
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(&annotation))
            .cloned()
            .unwrap_or_default();
        if restart_count(&p) >= 1 && pod_ready(&p) && new_pid != pid.to_string() {
            Ok(p)
        } else {
            Err(format!(
                "restartCount={} ready={} pid={new_pid}",
                restart_count(&p),
                pod_ready(&p)
            ))
        }
    })
    .await
    .expect("restart");
    let cs = restarted
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .cloned()
        .expect("container status");
    let last = cs.last_state.and_then(|l| l.terminated).expect("lastState.terminated");
    assert_eq!(last.exit_code, 137);
    assert_eq!(last.signal, Some(9));
    echo_roundtrip(&pod_ip(&restarted).expect("pod ip")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_report_pinned_versions() {
    let env = env();
    let out = env
        .kubectl_run(&["version", "-o", "json"], None)
        .expect("kubectl version");
    let v: serde_json::Value = serde_json::from_str(&out).expect("kubectl version json");
    let client = v["clientVersion"]["gitVersion"].as_str().unwrap_or_default();
    let server = v["serverVersion"]["gitVersion"].as_str().unwrap_or_default();
    assert!(client.starts_with("v1."), "kubectl version: {out}");
    assert_eq!(client, server, "kubectl and apiserver come from one pin");
    let helm = ringcache_tests::run_with_stdin(env.helm(), &["version", "--short"], None).expect("helm version");
    assert!(helm.trim().starts_with("v3."), "helm version: {helm}");
    let etcd = ringcache_tests::run_with_stdin(
        std::process::Command::new(env.bin_dir.join("etcd")),
        &["--version"],
        None,
    )
    .expect("etcd --version");
    assert!(etcd.contains("etcd Version: 3.6."), "etcd version: {etcd}");
    let proxy = ringcache_tests::run_with_stdin(
        std::process::Command::new(env.bin_dir.join("kube-proxy")),
        &["--version"],
        None,
    )
    .expect("kube-proxy --version");
    assert_eq!(
        proxy.trim(),
        format!("Kubernetes {server}"),
        "kube-proxy comes from the same pin"
    );
}

fn pod_manifest(name: &str, extra_args: &str, grace: u32, extra_container_yaml: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: {grace}
  containers:
  - name: main
    image: ringcache/testpod
    args: ["--port", "7100"{extra_args}]
    env:
    - name: POD_IP
      valueFrom: {{ fieldRef: {{ fieldPath: status.podIP }} }}
{extra_container_yaml}
"#
    )
}

async fn wait_pod<F>(pods: &Api<Pod>, name: &str, what: &str, ok: F) -> Pod
where
    F: Fn(&Pod) -> bool,
{
    wait_for(&format!("pod {name}: {what}"), WAIT, || async {
        let p = pods.get(name).await.map_err(|e| e.to_string())?;
        if ok(&p) {
            Ok(p)
        } else {
            Err(format!("status: {:?}", p.status))
        }
    })
    .await
    .expect("pod condition")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_waits_for_the_grace_period_then_kills() {
    let env = env();
    let client = env.client().await.expect("client");
    let ns = env.namespace("grace").await.expect("namespace");
    env.kubectl_run(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&pod_manifest("stubborn", r#", "--ignore-sigterm""#, 2, "")),
    )
    .expect("kubectl apply");
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let p = wait_pod(&pods, "stubborn", "Running", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    })
    .await;
    let pid: i32 = p
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(&format!("{PID_ANNOTATION_PREFIX}main")))
        .expect("pid annotation")
        .parse()
        .expect("numeric pid");
    let t0 = std::time::Instant::now();
    env.kubectl_run(&["delete", "pod", "-n", &ns, "stubborn", "--timeout=60s"], None)
        .expect("kubectl delete");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "a process ignoring SIGTERM must live through the 2s grace period; deletion took {took:?}"
    );
    // SAFETY: signal 0 only checks whether the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    assert!(!alive, "process {pid} survived its pod's deletion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_liveness_probe_restarts_the_container() {
    let env = env();
    let client = env.client().await.expect("client");
    let ns = env.namespace("liveness").await.expect("namespace");
    let probe =
        "    livenessProbe:\n      tcpSocket: { port: 7999 }\n      periodSeconds: 1\n      failureThreshold: 2\n";
    env.kubectl_run(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&pod_manifest("unhealthy", "", 1, probe)),
    )
    .expect("kubectl apply");
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let p = wait_pod(&pods, "unhealthy", "restartCount >= 1", |p| restart_count(p) >= 1).await;
    let last = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.last_state.as_ref())
        .and_then(|l| l.terminated.as_ref())
        .cloned()
        .expect("lastState.terminated after a liveness kill");
    // testpod exits 0 on SIGTERM.
    assert_eq!(last.exit_code, 0, "{last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_pods_reach_terminal_phases() {
    use k8s_openapi::api::batch::v1::Job;
    let env = env();
    let client = env.client().await.expect("client");
    let ns = env.namespace("job").await.expect("namespace");
    let manifest = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: once
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: ringcache/testpod
        args: ["--exit", "0"]
---
apiVersion: v1
kind: Pod
metadata:
  name: fails
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: ringcache/testpod
    args: ["--exit", "3"]
"#;
    env.kubectl_run(&["apply", "-n", &ns, "-f", "-"], Some(manifest))
        .expect("kubectl apply");
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    wait_for("Job once to succeed", WAIT, || async {
        let j = jobs.get("once").await.map_err(|e| e.to_string())?;
        match j.status.as_ref().and_then(|s| s.succeeded) {
            Some(1) => Ok(()),
            _ => Err(format!("{:?}", j.status)),
        }
    })
    .await
    .expect("job");
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let p = wait_pod(&pods, "fails", "phase Failed", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
    })
    .await;
    let cs = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .cloned()
        .expect("container status");
    assert_eq!(restart_count(&p), 0);
    let t = cs.state.and_then(|s| s.terminated).expect("terminated");
    assert_eq!(t.exit_code, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_their_service_account_token_and_rbac() {
    let env = env();
    env.images
        .insert("ringcache-test/kubectl", ImageSource::Path(env.bin_dir.join("kubectl")));
    let client = env.client().await.expect("client");
    let ns = env.namespace("token").await.expect("namespace");
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata:
  name: whoami
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: ringcache-test/kubectl
    command: ["kubectl"]
    args: ["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]
---
apiVersion: v1
kind: Pod
metadata:
  name: lister
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: ringcache-test/kubectl
    command: ["kubectl"]
    args: ["get", "pods"]
"#;
    env.kubectl_run(&["apply", "-n", &ns, "-f", "-"], Some(manifest))
        .expect("kubectl apply");
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let phase = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    wait_pod(&pods, "whoami", "Succeeded", |p| phase(p) == "Succeeded").await;
    let log = std::fs::read_to_string(ringcache_tests::kubelet::log_path(&env.run_dir, &ns, "whoami", "main"))
        .expect("whoami log");
    assert!(
        log.contains(&format!("system:serviceaccount:{ns}:default")),
        "whoami printed {log:?}"
    );
    // The default ServiceAccount may not list pods: RBAC is enforced for pod processes.
    wait_pod(&pods, "lister", "Failed", |p| phase(p) == "Failed").await;
    let log = std::fs::read_to_string(ringcache_tests::kubelet::log_path(&env.run_dir, &ns, "lister", "main"))
        .expect("lister log");
    assert!(log.contains("forbidden"), "lister printed {log:?}");
}
