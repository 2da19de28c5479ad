//! Scaling under load, on the real control plane with the operator installed by Helm: a
//! cache-aside load (zipf-like popularity, a miss reads the origin and fills the cache)
//! samples the hit rate every second while `kubectl scale` moves slots in warm-up
//! stages. Every sample during a scale-out stays within 95 % of the hit rate before it,
//! with a cluster-aware client and through the client Service's proxy port; a scale-in
//! loses no acknowledged write, even with the operator's leader killed mid-stage; a
//! rolling image change keeps the hit rate too. The tests of this binary run one at a
//! time (they share two cores).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::ListParams;
use kube::Api;
use ringcache_tests::load::{lost_writes, Load, Sample, Shape, Target};
use ringcache_tests::operator::{
    cachecluster, cluster_pods, container_pid, one_at_a_time_with_operator, pod_ip, wait_condition, wait_until_routed,
};
use ringcache_tests::{shared, wait_for, TestEnv};

const WAIT: Duration = Duration::from_secs(300);
/// Every sample during the change must reach this share of the hit rate before it.
const MIN_SHARE: f64 = 0.95;

fn env() -> &'static TestEnv {
    shared().expect("starting the shared control plane")
}

fn cluster(name: &str, replicas: u32, extra: &str) -> String {
    format!(
        "apiVersion: ringcache.io/v1alpha1\nkind: CacheCluster\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  replicationFactor: 2\n  maxmemory: 64mb\n  warmup:\n    minStageSeconds: 3\n    maxStageSeconds: 30\n{extra}"
    )
}

async fn pod_ips(client: &kube::Client, ns: &str, name: &str) -> Vec<String> {
    cluster_pods(client, ns, name)
        .await
        .expect("pods")
        .iter()
        .filter_map(pod_ip)
        .collect()
}

async fn target(client: &kube::Client, ns: &str, name: &str, via_proxy: bool) -> Target {
    if via_proxy {
        let services: Api<Service> = Api::namespaced(client.clone(), ns);
        let ip = services
            .get(name)
            .await
            .expect("client Service")
            .spec
            .and_then(|s| s.cluster_ip)
            .expect("ClusterIP");
        let url = format!("redis://{ip}:6379/");
        wait_until_routed(&url, WAIT).await.expect("the client Service routed");
        Target::Plain(url)
    } else {
        Target::Cluster(
            pod_ips(client, ns, name)
                .await
                .iter()
                .map(|ip| format!("redis://{ip}:6379/"))
                .collect(),
        )
    }
}

/// Starts the default load on `t` and lets it run 10 s: the load, how many samples it
/// has taken, and the mean hit rate of those after the first two (the cache filling).
async fn load_with_baseline(t: &Target) -> (Load, usize, f64) {
    let load = tokio::task::spawn_blocking({
        let t = t.clone();
        move || Load::start(t, None, Shape::default())
    })
    .await
    .expect("thread")
    .expect("the load starts");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let samples = load.samples();
    (load, samples.len(), mean(&samples[2..]))
}

/// The mean hit rate of `samples`.
fn mean(samples: &[Sample]) -> f64 {
    let (h, m) = samples.iter().fold((0, 0), |(h, m), s| (h + s.hits, m + s.misses));
    h as f64 / (h + m).max(1) as f64
}

/// Watches the CacheCluster until its rebalance is done; returns the stages seen, the
/// slots its plan moved, and whether every observation had all 16384 slots covered.
async fn follow_rebalance(ns: &str, name: &str, on_stage: impl Fn(i64)) -> (BTreeSet<i64>, i64, bool) {
    let mut stages = BTreeSet::new();
    let mut moved = 0;
    let mut always_covered = true;
    let mut started = false;
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "the rebalance did not finish");
        let cc = cachecluster(env(), ns, name).expect("CacheCluster");
        let st = &cc["status"];
        always_covered &= st["slotsCovered"] == 16384;
        match st["rebalance"].as_object() {
            Some(r) => {
                started = true;
                let done = r["stagesDone"].as_i64().unwrap_or(0);
                if stages.insert(done) {
                    eprintln!("{ns}/{name}: {}", r["progress"].as_str().unwrap_or_default());
                    on_stage(done);
                }
                moved = r["moves"]
                    .as_array()
                    .map_or(0, |m| m.iter().map(|x| x["count"].as_i64().unwrap_or(0)).sum());
            }
            None if started && st["phase"] == "Running" => return (stages, moved, always_covered),
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn report(what: &str, baseline: f64, samples: &[Sample]) -> Vec<String> {
    let low: Vec<String> = samples
        .iter()
        .filter(|s| s.hit_rate().is_some_and(|r| r < MIN_SHARE * baseline))
        .map(|s| {
            format!(
                "{:.0}s: {:.3} ({} hits, {} misses)",
                s.at,
                s.hit_rate().unwrap_or(0.0),
                s.hits,
                s.misses
            )
        })
        .collect();
    let min = samples.iter().filter_map(Sample::hit_rate).fold(1.0f64, f64::min);
    eprintln!(
        "{what}: baseline hit rate {baseline:.4}; {} one-second samples during the change, lowest {min:.4}, ops {}",
        samples.len(),
        samples.iter().map(|s| s.hits + s.misses).sum::<u64>()
    );
    low
}

async fn scale_out_keeps_the_hit_rate(via_proxy: bool) {
    let _serial = one_at_a_time_with_operator().await;
    let env = env();
    let client = env.client().await.expect("client");
    let ns = env
        .namespace(if via_proxy { "scale-proxy" } else { "scale-cluster" })
        .await
        .expect("namespace");
    env.kubectl_run(&["apply", "-n", &ns, "-f", "-"], Some(&cluster("feed", 3, "")))
        .expect("apply");
    wait_condition(env, &ns, "feed", "Ready", "True", None, WAIT)
        .await
        .expect("Ready");
    let t = target(&client, &ns, "feed", via_proxy).await;
    let (load, before, baseline) = load_with_baseline(&t).await;
    env.kubectl_run(&["scale", "-n", &ns, "rcc/feed", "--replicas=5"], None)
        .expect("kubectl scale");
    let (stages, moved, covered) = follow_rebalance(&ns, "feed", |_| {}).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let samples = load.samples();
    let counters = tokio::task::spawn_blocking(move || load.stop()).await.expect("stop");
    let during = &samples[before..];
    let low = report(
        if via_proxy {
            "scale 3->5 through the proxy port"
        } else {
            "scale 3->5, cluster-aware client"
        },
        baseline,
        during,
    );
    assert!(low.is_empty(), "samples below {MIN_SHARE} x baseline: {low:?}");
    // Placement moves 2/5 of the slots (within 1 %), in every stage.
    let ideal = 16384.0 * 2.0 / 5.0;
    assert!(
        ((moved as f64) - ideal).abs() <= ideal * 0.01,
        "{moved} slots moved, ideal {ideal}"
    );
    assert_eq!(
        stages,
        BTreeSet::from([0, 1, 2, 3, 4]),
        "the copy and every stage showed in the status"
    );
    assert!(covered, "every observation had all 16384 slots covered");
    let events = env
        .kubectl_run(&["get", "events", "-n", &ns, "-o", "json"], None)
        .expect("events");
    for reason in ["RebalanceCopy", "StageFlipped", "RebalanceComplete"] {
        assert!(
            events.contains(&format!("\"reason\": \"{reason}\"")),
            "no {reason} event"
        );
    }
    // No acknowledged write lost.
    let t = target(&client, &ns, "feed", via_proxy).await;
    let lost = tokio::task::spawn_blocking(move || lost_writes(&t, None, &counters))
        .await
        .expect("thread")
        .expect("reading back");
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let _ = env.kubectl_run(&["delete", "namespace", &ns, "--wait=false"], None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_keeps_the_hit_rate_for_a_cluster_aware_client() {
    scale_out_keeps_the_hit_rate(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_keeps_the_hit_rate_through_the_proxy_port() {
    scale_out_keeps_the_hit_rate(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_in_loses_nothing_even_when_the_leader_dies_mid_stage() {
    let _serial = one_at_a_time_with_operator().await;
    let env = env();
    let client = env.client().await.expect("client");
    let ns = env.namespace("scale-in").await.expect("namespace");
    env.kubectl_run(&["apply", "-n", &ns, "-f", "-"], Some(&cluster("shrink", 5, "")))
        .expect("apply");
    wait_condition(env, &ns, "shrink", "Ready", "True", None, WAIT)
        .await
        .expect("Ready");
    let t = target(&client, &ns, "shrink", false).await;
    let shape = Shape {
        write_pct: 30,
        ..Shape::default()
    };
    let load = tokio::task::spawn_blocking({
        let t = t.clone();
        move || Load::start(t, None, shape)
    })
    .await
    .expect("thread")
    .expect("the load starts");
    tokio::time::sleep(Duration::from_secs(5)).await;
    env.kubectl_run(&["scale", "-n", &ns, "rcc/shrink", "--replicas=3"], None)
        .expect("kubectl scale");
    // At the second stage, SIGKILL the operator's leader: the standby resumes.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "ringcache-system");
    let operator_pods: Api<Pod> = Api::namespaced(client.clone(), "ringcache-system");
    let killed = std::sync::Arc::new(Mutex::new(None::<String>));
    let (stages, _, covered) = {
        let killed = killed.clone();
        let (leases, operator_pods) = (leases.clone(), operator_pods.clone());
        let handle = tokio::runtime::Handle::current();
        follow_rebalance(&ns, "shrink", move |stage| {
            if stage != 2 {
                return;
            }
            let (leases, operator_pods, killed) = (leases.clone(), operator_pods.clone(), killed.clone());
            handle.spawn(async move {
                let lease = leases.get("rc-ringcache-operator").await.expect("Lease");
                let holder = lease.spec.and_then(|s| s.holder_identity).unwrap_or_default();
                let pod = holder.rsplit_once('_').map(|(p, _)| p.to_string()).unwrap_or_default();
                let pid = container_pid(&operator_pods.get(&pod).await.expect("leader pod"), "operator").expect("pid");
                // SAFETY: signalling a process this test's kubelet started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                if let Ok(mut k) = killed.lock() {
                    *k = Some(holder);
                }
            });
        })
        .await
    };
    let was_leader = killed
        .lock()
        .ok()
        .and_then(|k| k.clone())
        .expect("the leader was killed mid-rebalance");
    let now_leader = leases
        .get("rc-ringcache-operator")
        .await
        .expect("Lease")
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    assert_ne!(
        was_leader, now_leader,
        "another operator process finished the rebalance"
    );
    assert!(stages.contains(&4), "{stages:?}");
    assert!(covered, "no slot was ever without a primary");
    let counters = tokio::task::spawn_blocking(move || load.stop()).await.expect("stop");
    wait_for("2 pods removed", WAIT, || async {
        let n = pod_ips(&client, &ns, "shrink").await.len();
        if n == 3 {
            Ok(())
        } else {
            Err(format!("{n} pods"))
        }
    })
    .await
    .expect("scaled in");
    let t = target(&client, &ns, "shrink", false).await;
    let written = counters.acked.lock().map(|a| a.len()).unwrap_or(0);
    let lost = tokio::task::spawn_blocking(move || lost_writes(&t, None, &counters))
        .await
        .expect("thread")
        .expect("reading back");
    eprintln!(
        "scale 5->3: {written} keys written during the scale-in, {} lost",
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let _ = env.kubectl_run(&["delete", "namespace", &ns, "--wait=false"], None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_image_change_keeps_the_hit_rate() {
    let _serial = one_at_a_time_with_operator().await;
    let env = env();
    let client = env.client().await.expect("client");
    let ns = env.namespace("rollout").await.expect("namespace");
    env.kubectl_run(&["apply", "-n", &ns, "-f", "-"], Some(&cluster("roll", 3, "")))
        .expect("apply");
    wait_condition(env, &ns, "roll", "Ready", "True", None, WAIT)
        .await
        .expect("Ready");
    let t = target(&client, &ns, "roll", false).await;
    let (load, before, baseline) = load_with_baseline(&t).await;
    // A new image tag (the test kubelet maps ringcache/node:* to the same binary).
    env.kubectl_run(
        &[
            "patch",
            "rcc",
            "roll",
            "-n",
            &ns,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"image":"ringcache/node:0.1.1"}}"#,
        ],
        None,
    )
    .expect("patch the image");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    wait_for(
        "every pod restarted on the new image, the cluster Running",
        WAIT,
        || async {
            let list = pods
                .list(&ListParams::default().labels("app.kubernetes.io/instance=roll"))
                .await
                .map_err(|e| e.to_string())?
                .items;
            let new = list
                .iter()
                .filter(|p| {
                    p.spec
                        .as_ref()
                        .and_then(|s| s.containers.first())
                        .and_then(|c| c.image.as_deref())
                        == Some("ringcache/node:0.1.1")
                })
                .count();
            let cc = cachecluster(env, &ns, "roll").map_err(|e| e.to_string())?;
            if new == 3 && cc["status"]["phase"] == "Running" && cc["status"]["rebalance"].is_null() {
                Ok(())
            } else {
                Err(format!(
                    "{new} of 3 pods on the new image, phase {}",
                    cc["status"]["phase"]
                ))
            }
        },
    )
    .await
    .expect("rolled");
    let samples = load.samples();
    let counters = tokio::task::spawn_blocking(move || load.stop()).await.expect("stop");
    let low = report("rolling image change", baseline, &samples[before..]);
    assert!(low.is_empty(), "samples below {MIN_SHARE} x baseline: {low:?}");
    let events = env
        .kubectl_run(&["get", "events", "-n", &ns, "-o", "json"], None)
        .expect("events");
    for reason in [
        "PrimariesHandedOver",
        "PodRestarted",
        "MembersDropped",
        "RebalanceComplete",
    ] {
        assert!(
            events.contains(&format!("\"reason\": \"{reason}\"")),
            "no {reason} event"
        );
    }
    assert!(
        !events.contains("\"reason\": \"Failover\""),
        "a planned restart is not a failover"
    );
    let t = target(&client, &ns, "roll", false).await;
    let lost = tokio::task::spawn_blocking(move || lost_writes(&t, None, &counters))
        .await
        .expect("thread")
        .expect("reading back");
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let _ = env.kubectl_run(&["delete", "namespace", &ns, "--wait=false"], None);
}
