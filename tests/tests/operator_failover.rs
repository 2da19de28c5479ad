//! Failover on the real control plane, the operator installed by Helm: a primary's
//! process SIGKILLed, another's SIGSTOPped, a Kubernetes node crashed. Writes to the lost
//! primary's slots succeed again after the promotion; with `minReplicasToAck: 1` no
//! acknowledged write is lost; a resumed old primary refuses writes (its lease ran out);
//! the replication factor comes back. The loose time bounds here only prove the
//! failover happened (long before Kubernetes' own eviction); bench/ measures it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::Api;
use redis::Commands;
use ringcache_core::slot::Slot;
use ringcache_tests::load::{lost_writes, Load, Shape, Target};
use ringcache_tests::operator::{
    cachecluster, cluster_pods, container_pid, control_token, keys_in, node_status, one_at_a_time_with_operator,
    pod_ip, primary_slots, wait_condition,
};
use ringcache_tests::{shared, wait_for, TestEnv};

const WAIT: Duration = Duration::from_secs(300);
/// A bound that only a failover can meet (Kubernetes would take 16 s to even notice a
/// node, and never replaces a hung process).
const WRITABLE_WITHIN: Duration = Duration::from_secs(12);

fn env() -> &'static TestEnv {
    shared().expect("starting the shared control plane")
}

const CLUSTER: &str = "apiVersion: ringcache.io/v1alpha1\nkind: CacheCluster\nmetadata:\n  name: fo\nspec:\n  replicas: 3\n  replicationFactor: 2\n  minReplicasToAck: 1\n  maxmemory: 64mb\n  failover:\n    detectionSeconds: 2\n  warmup:\n    minStageSeconds: 2\n";

struct Setup {
    client: kube::Client,
    ns: String,
    pods: Vec<Pod>,
    urls: Vec<String>,
    token: String,
}

async fn setup(prefix: &str) -> Setup {
    let env = env();
    let client = env.client().await.expect("client");
    let ns = env.namespace(prefix).await.expect("namespace");
    env.kubectl_run(&["apply", "-n", &ns, "-f", "-"], Some(CLUSTER))
        .expect("apply");
    wait_condition(env, &ns, "fo", "Ready", "True", None, WAIT)
        .await
        .expect("Ready");
    let pods = cluster_pods(&client, &ns, "fo").await.expect("pods");
    let urls = pods.iter().map(|p| format!("redis://{}:6379/", ip(p))).collect();
    let token = control_token(&client, &ns, "fo").await.expect("token");
    Setup {
        client,
        ns,
        pods,
        urls,
        token,
    }
}

fn ip(p: &Pod) -> String {
    pod_ip(p).expect("pod IP")
}

/// The slots `pod` leads in the cluster's topology, and keys in them.
async fn primary_keys(s: &Setup, pod: &Pod) -> (HashSet<Slot>, Vec<String>) {
    let slots = primary_slots(pod, &s.token).await.expect("GetStatus");
    let keys = keys_in(&slots, "probe:", 20);
    (slots, keys)
}

/// From `started` (the fault) until a write to each of `keys` succeeds, asked of the
/// live nodes only (`-MOVED` followed, never to `victim`): a hung victim accepts
/// connections and never answers, which would measure the client's timeouts instead.
fn time_to_writable(started: Instant, urls: Vec<String>, victim: String, keys: Vec<String>) -> Duration {
    let victim_url = format!("//{victim}:");
    let live: Vec<String> = urls.into_iter().filter(|u| !u.contains(&victim_url)).collect();
    let set = |url: &str, k: &str| -> Result<(), Option<String>> {
        let con = redis::Client::open(url).and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)));
        let mut con = con.map_err(|_| None)?;
        let _ = con.set_read_timeout(Some(Duration::from_millis(500)));
        match con.set::<_, _, ()>(k, "after") {
            Ok(()) => Ok(()),
            Err(e) => Err(e.redirect_node().map(|(host, _)| host.to_string())),
        }
    };
    let mut pending: Vec<String> = keys;
    while !pending.is_empty() {
        assert!(started.elapsed() < WAIT, "writes never came back");
        pending.retain(|k| {
            live.iter().all(|url| match set(url, k) {
                Ok(()) => false,
                Err(Some(addr)) if addr.rsplit_once(':').map(|(host, _)| host) != Some(victim.as_str()) => {
                    set(&format!("redis://{addr}/"), k).is_err()
                }
                Err(_) => true,
            })
        });
        if !pending.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    started.elapsed()
}

async fn replication_factor_restored(s: &Setup) {
    wait_for("every slot with 2 copies again, Running", WAIT, || async {
        let cc = cachecluster(env(), &s.ns, "fo").map_err(|e| e.to_string())?;
        if cc["status"]["phase"] != "Running" {
            return Err(format!("phase {}", cc["status"]["phase"]));
        }
        let api: Api<Pod> = Api::namespaced(s.client.clone(), &s.ns);
        let pods = api
            .list(&ListParams::default().labels("app.kubernetes.io/instance=fo"))
            .await
            .map_err(|e| e.to_string())?
            .items;
        let pod = pods.first().ok_or("no pod")?;
        let st = node_status(&format!("{}:7379", ip(pod)), &s.token)
            .await
            .map_err(|e| e.to_string())?;
        let t = st.topology.ok_or("no topology")?;
        if t.nodes.len() == 3 && t.slots.iter().all(|a| a.owners.len() == 2) {
            Ok(())
        } else {
            Err(format!("{} nodes", t.nodes.len()))
        }
    })
    .await
    .expect("restored");
}

/// `status.lastFailover` once it names `pod` (the status is written just after the
/// promotion, so a client may see the new primary first).
async fn last_failover(s: &Setup, pod: &str) -> serde_json::Value {
    wait_for(&format!("status.lastFailover naming {pod}"), WAIT, || async {
        let cc = cachecluster(env(), &s.ns, "fo").map_err(|e| e.to_string())?;
        let lf = cc["status"]["lastFailover"].clone();
        if lf["pods"] == serde_json::json!([pod]) {
            Ok(lf)
        } else {
            Err(format!("lastFailover: {lf}"))
        }
    })
    .await
    .expect("lastFailover")
}

/// A crashed Kubernetes node, recovered when dropped (also when the test fails, so the
/// next test has its three zones).
struct NodeDown(String);

impl NodeDown {
    fn crash(node: &str) -> NodeDown {
        env().nodes.fail(node);
        NodeDown(node.to_string())
    }
}

impl Drop for NodeDown {
    fn drop(&mut self) {
        env().nodes.recover(&self.0);
    }
}

fn start_load(urls: Vec<String>) -> Load {
    let shape = Shape {
        write_pct: 50,
        keys: 5_000,
        ..Shape::default()
    };
    Load::start(Target::Cluster(urls), None, shape).expect("the load starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_is_replaced_and_no_acknowledged_write_is_lost() {
    let _serial = one_at_a_time_with_operator().await;
    let s = setup("fo-kill").await;
    let victim = s.pods[1].clone();
    let victim_name = victim.metadata.name.clone().unwrap_or_default();
    let (_, keys) = primary_keys(&s, &victim).await;
    let urls = s.urls.clone();
    let load = tokio::task::spawn_blocking(move || start_load(urls))
        .await
        .expect("thread");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = container_pid(&victim, "node").expect("pid");
    // SAFETY: signalling a process this test's kubelet started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let killed = Instant::now();
    let urls = s.urls.clone();
    let victim_ip = ip(&victim);
    let took = tokio::task::spawn_blocking(move || time_to_writable(killed, urls, victim_ip, keys))
        .await
        .expect("thread");
    eprintln!("SIGKILL of primary {victim_name}: its slots writable again after {took:?}");
    assert!(took < WRITABLE_WITHIN, "{took:?}");
    let lf = last_failover(&s, &victim_name).await;
    assert!(lf["slots"].as_i64().unwrap_or(0) > 5000, "{lf}");
    replication_factor_restored(&s).await;
    let counters = tokio::task::spawn_blocking(move || load.stop()).await.expect("stop");
    let urls = s
        .urls
        .iter()
        .filter(|u| !u.contains(&format!("//{}:", ip(&victim))))
        .cloned()
        .collect();
    let lost = tokio::task::spawn_blocking(move || lost_writes(&Target::Cluster(urls), None, &counters))
        .await
        .expect("thread")
        .expect("read back");
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let _ = env().kubectl_run(&["delete", "namespace", &s.ns, "--wait=false"], None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_primary_is_fenced_and_replaced() {
    let _serial = one_at_a_time_with_operator().await;
    let s = setup("fo-stop").await;
    let victim = s.pods[2].clone();
    let victim_name = victim.metadata.name.clone().unwrap_or_default();
    let (slots, keys) = primary_keys(&s, &victim).await;
    let pid = container_pid(&victim, "node").expect("pid");
    // SAFETY: signalling a process this test's kubelet started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let stopped = Instant::now();
    let urls = s.urls.clone();
    let victim_ip = ip(&victim);
    let took = tokio::task::spawn_blocking(move || time_to_writable(stopped, urls, victim_ip, keys.clone()))
        .await
        .expect("thread");
    eprintln!("SIGSTOP of primary {victim_name}: its slots writable again after {took:?}");
    assert!(took < WRITABLE_WITHIN, "{took:?}");
    last_failover(&s, &victim_name).await;
    // Resumed, the old primary refuses writes to the slots it led: its lease ran out.
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let key = keys_in(&slots, "fenced:", 1).pop().expect("a key of its slots");
    let old = format!("redis://{}:6379/", ip(&victim));
    let refused = tokio::task::spawn_blocking(move || {
        let mut con = redis::Client::open(old)
            .expect("url")
            .get_connection()
            .expect("the old primary answers again");
        con.set::<_, _, ()>(&key, "stale")
            .expect_err("the fenced primary must refuse writes")
    })
    .await
    .expect("thread");
    let code = refused.code().unwrap_or_default().to_string();
    assert!(code == "TRYAGAIN" || code == "MOVED", "{refused}");
    replication_factor_restored(&s).await;
    let _ = env().kubectl_run(&["delete", "namespace", &s.ns, "--wait=false"], None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_node_fails_over_long_before_kubernetes_evicts() {
    let _serial = one_at_a_time_with_operator().await;
    let s = setup("fo-node").await;
    let victim = s.pods[0].clone();
    let victim_name = victim.metadata.name.clone().unwrap_or_default();
    let node = victim
        .spec
        .as_ref()
        .and_then(|p| p.node_name.clone())
        .expect("scheduled");
    let (_, keys) = primary_keys(&s, &victim).await;
    let pid = container_pid(&victim, "node").expect("pid");
    let crashed = Instant::now();
    let down = NodeDown::crash(&node);
    // The test kubelet kills the node's processes on its next pass: wait for it, so the
    // writes below are not answered by the primary before it is gone.
    wait_for("the crashed node's processes gone", Duration::from_secs(30), || async {
        // SAFETY: signal 0 only checks that the process exists.
        if unsafe { libc::kill(pid, 0) } == 0 {
            Err(format!("pid {pid} still runs"))
        } else {
            Ok(())
        }
    })
    .await
    .expect("node crashed");
    eprintln!("node {node}: processes gone {:?} after the crash", crashed.elapsed());
    let urls = s.urls.clone();
    let victim_ip = ip(&victim);
    let took = tokio::task::spawn_blocking(move || time_to_writable(crashed, urls, victim_ip, keys))
        .await
        .expect("thread");
    eprintln!("node {node} crashed (with primary {victim_name}): its slots writable again after {took:?}");
    // The node-lifecycle controller waits 16 s (node-monitor-grace-period) before it even
    // marks the node NotReady; evicting a StatefulSet pod from it never happens by itself.
    assert!(took < Duration::from_secs(16), "{took:?}");
    last_failover(&s, &victim_name).await;
    drop(down);
    eprintln!("node {node} recovered after {:?}", crashed.elapsed());
    replication_factor_restored(&s).await;
    let _ = env().kubectl_run(&["delete", "namespace", &s.ns, "--wait=false"], None);
}
