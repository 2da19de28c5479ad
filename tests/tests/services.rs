//! Services route as in a real cluster: kube-proxy (nftables mode) on the host turns a ClusterIP Service into DNAT
//! rules, so the test process reaches ringcache-node pods through `ClusterIP:6379`, spread over the pods, and is
//! refused once the Service has no endpoints. Its own test binary (its own control plane): it checks at the end that
//! stopping the harness removes kube-proxy's nftables tables.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::ListParams;
use kube::Api;
use ringcache_tests::bins::workspace_binary;
use ringcache_tests::kube_proxy::{self, HostLock};
use ringcache_tests::{init_tracing, pod_ready, run_with_stdin, start_env, wait_for, ControlPlaneOptions};

const WAIT: Duration = Duration::from_secs(120);

const MANIFEST: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: cache
spec:
  replicas: 2
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
        args: ["--bind", "$(POD_IP)", "--maxmemory", "64mb", "--threads", "1"]
        env:
        - name: POD_IP
          valueFrom: { fieldRef: { fieldPath: status.podIP } }
        ports:
        - { name: redis, containerPort: 6379 }
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
  type: ClusterIP
  selector: { app: cache }
  ports:
  - { name: redis, port: 6379, targetPort: redis }
"#;

/// One command on a new connection to `addr` (so that kube-proxy picks an endpoint afresh).
async fn call(addr: SocketAddr, args: &[&str]) -> Result<String, String> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let client = redis::Client::open(format!("redis://{addr}/")).map_err(|e| e.to_string())?;
        let mut con = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        con.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut cmd = redis::cmd(&args[0]);
        for a in &args[1..] {
            cmd.arg(a);
        }
        cmd.query::<String>(&mut con)
            .map_err(|e| format!("{args:?} at {addr}: {e}"))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The `run_id` line of `INFO server`: which ringcache-node process answered.
fn run_id(info: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .map(|v| v.trim().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ip_reaches_the_pods_behind_it_and_the_rules_go_with_the_harness() {
    init_tracing();
    workspace_binary("ringcache-node").expect("build ringcache-node first (make test does)");
    let (cp, kubelet) = start_env(ControlPlaneOptions::default(), |_| {})
        .await
        .expect("control plane, kubelet and kube-proxy");
    assert!(
        cp.kube_proxy_running(),
        "kube-proxy is not running (needs root for the 198.18.0.0/15 pod network, `nft`, and RINGCACHE_KUBE_PROXY unset)"
    );
    let tables = kube_proxy::tables();
    assert!(tables.iter().any(|t| t == "ip kube-proxy"), "{tables:?}");

    run_with_stdin(cp.kubectl(), &["apply", "-n", "default", "-f", "-"], Some(MANIFEST)).expect("kubectl apply");
    let client = cp.client().await.expect("client");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod_ips: Vec<Ipv4Addr> = wait_for("2 Ready cache pods", WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels("app=cache"))
            .await
            .map_err(|e| e.to_string())?;
        let ready: Vec<Ipv4Addr> = list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p))
            .filter_map(|p| p.status.as_ref()?.pod_ip.as_ref()?.parse().ok())
            .collect();
        if ready.len() == 2 {
            Ok(ready)
        } else {
            Err(format!("{} of {} ready", ready.len(), list.items.len()))
        }
    })
    .await
    .expect("pods");

    // Each pod's own identity, asked at its pod IP.
    let mut by_run_id: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
    for ip in &pod_ips {
        let info = call(SocketAddr::from((*ip, 6379)), &["INFO", "server"])
            .await
            .expect("INFO at the pod IP");
        by_run_id.insert(run_id(&info).expect("run_id in INFO"), *ip);
    }
    assert_eq!(by_run_id.len(), 2, "two distinct processes");

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc = services.get("cache").await.expect("service");
    let cluster_ip: Ipv4Addr = svc
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_ref())
        .and_then(|ip| ip.parse().ok())
        .expect("a ClusterIP");
    assert_eq!(cluster_ip.octets()[..2], [10, 96], "{cluster_ip} from the service CIDR");
    assert!(!pod_ips.contains(&cluster_ip));
    let vip = SocketAddr::new(IpAddr::V4(cluster_ip), 6379);

    // The rules follow the EndpointSlice within a sync period or so.
    let pong = wait_for("PING through the ClusterIP", WAIT, || call(vip, &["PING"]))
        .await
        .expect("ClusterIP answers");
    assert_eq!(pong, "PONG");

    // One connection stays with one pod: what it writes, it reads back.
    let roundtrip = tokio::task::spawn_blocking(move || -> Result<Option<String>, String> {
        let mut con = redis::Client::open(format!("redis://{vip}/"))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        redis::cmd("SET")
            .arg("greeting")
            .arg("through the ClusterIP")
            .query::<()>(&mut con)
            .map_err(|e| e.to_string())?;
        redis::cmd("GET")
            .arg("greeting")
            .query(&mut con)
            .map_err(|e| e.to_string())
    })
    .await
    .expect("join")
    .expect("SET and GET through the ClusterIP");
    assert_eq!(roundtrip.as_deref(), Some("through the ClusterIP"));

    // New connections are spread over both pods, and only over them (once the EndpointSlice lists both and
    // kube-proxy has synced it: until then, the first pod's endpoint may be the only one).
    let mut answered: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    while answered.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "only {answered:?} answered through the ClusterIP in {}s",
            WAIT.as_secs()
        );
        match call(vip, &["INFO", "server"]).await {
            Ok(info) => {
                let id = run_id(&info).expect("run_id");
                assert!(by_run_id.contains_key(&id), "{id} is none of the pods {by_run_id:?}");
                *answered.entry(id).or_insert(0) += 1;
            }
            Err(e) => tracing::warn!(error = e, "INFO through the ClusterIP"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::info!(?answered, "answers per pod");

    // No endpoints left: kube-proxy rejects connections to the Service's port.
    run_with_stdin(
        cp.kubectl(),
        &["scale", "-n", "default", "deployment/cache", "--replicas=0"],
        None,
    )
    .expect("kubectl scale");
    let refused = wait_for("connections to the empty Service to be refused", WAIT, || async {
        match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(vip)).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(e.to_string()),
            Ok(Err(e)) => Err(format!("other error: {e}")),
            Ok(Ok(_)) => Err("still connects".into()),
            Err(_) => Err("connect timed out".into()),
        }
    })
    .await
    .expect("rejected");
    tracing::info!(refused, "empty Service");

    // Stopping the harness stops kube-proxy and removes its tables. Checked under the host lock, so that no other
    // harness can have created them again in between.
    let run_dir = cp.run_dir.clone();
    kubelet.shutdown().await;
    drop(cp);
    let _lock = HostLock::acquire("services test: checking the cleanup", Duration::from_secs(300))
        .await
        .expect("host lock");
    let left = kube_proxy::tables();
    assert!(
        left.is_empty(),
        "kube-proxy's tables outlived the harness: {left:?} (run dir {})",
        run_dir.display()
    );
}
