//! ringcache on the real control plane of tests/ (`ringcache_tests::shared`), the operator
//! installed by Helm with its defaults.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use ringcache_tests::load::{lost_writes, Load, Target};
use ringcache_tests::operator::{
    cachecluster, cluster_pods, container_pid, control_token, install_default_operator, keys_in, pod_ip, primary_slots,
    wait_condition,
};
use ringcache_tests::{shared, TestEnv};

use crate::failover::{self, FailoverRep};
use crate::rebalance::{shape, Run};
use crate::R;

const WAIT: Duration = Duration::from_secs(300);

pub fn env() -> R<&'static TestEnv> {
    shared().map_err(|e| format!("starting the control plane: {e}"))
}

/// Creates `ringcache-system` and installs the chart with its defaults.
pub fn install(env: &TestEnv) -> R<()> {
    install_default_operator(env).map_err(|e| format!("installing the operator: {e}"))
}

fn ip(p: &Pod) -> R<String> {
    pod_ip(p).ok_or_else(|| format!("pod {:?} has no IP", p.metadata.name))
}

async fn pods(client: &kube::Client, ns: &str, name: &str) -> R<Vec<Pod>> {
    cluster_pods(client, ns, name)
        .await
        .map_err(|e| format!("listing pods: {e}"))
}

async fn urls(client: &kube::Client, ns: &str, name: &str) -> R<Vec<String>> {
    pods(client, ns, name)
        .await?
        .iter()
        .map(|p| ip(p).map(|ip| format!("redis://{ip}:6379/")))
        .collect()
}

async fn create(env: &TestEnv, prefix: &str, yaml: &str, name: &str) -> R<String> {
    let ns = env.namespace(prefix).await.map_err(|e| format!("namespace: {e}"))?;
    env.kubectl_run(&["apply", "-n", &ns, "-f", "-"], Some(yaml))
        .map_err(|e| format!("kubectl apply: {e}"))?;
    wait_condition(env, &ns, name, "Ready", "True", None, WAIT)
        .await
        .map_err(|e| format!("{ns}/{name} Ready: {e}"))?;
    Ok(ns)
}

fn delete(env: &TestEnv, ns: &str) {
    // Waits, so the next measurement does not share the 2 cores with dying pods.
    if let Err(e) = env.kubectl_run(&["delete", "namespace", ns, "--timeout=120s"], None) {
        eprintln!("deleting namespace {ns}: {e}");
    }
}

/// One scale-out 3 -> 5 under the load; `warmup` is the CacheCluster's `spec.warmup`
/// block (indented YAML).
pub async fn rebalance(env: &TestEnv, variant: &str, warmup: &str, baseline: Duration, tail: Duration) -> R<Run> {
    let client = env.client().await.map_err(|e| format!("client: {e}"))?;
    let yaml = format!(
        "apiVersion: ringcache.io/v1alpha1\nkind: CacheCluster\nmetadata:\n  name: feed\nspec:\n  replicas: 3\n  replicationFactor: 2\n  maxmemory: 64mb\n  warmup:\n{warmup}"
    );
    let ns = create(env, &format!("bench-{variant}"), &yaml, "feed").await?;
    eprintln!("{variant}: {ns}/feed Ready");
    let target = Target::Cluster(urls(&client, &ns, "feed").await?);
    let load = tokio::task::spawn_blocking(move || Load::start(target, None, shape()))
        .await
        .map_err(|e| format!("load thread: {e}"))?
        .map_err(|e| format!("starting the load: {e}"))?;
    tokio::time::sleep(baseline).await;
    let since = |load: &Load| load.started.elapsed().as_secs_f64();
    let t_scale = since(&load);
    env.kubectl_run(&["scale", "-n", &ns, "rcc/feed", "--replicas=5"], None)
        .map_err(|e| format!("kubectl scale: {e}"))?;
    let mut events = vec![(t_scale, "kubectl scale --replicas=5".to_string())];
    // Follow status.rebalance until it is gone and the phase is Running again.
    let mut started = false;
    let mut last_progress = String::new();
    let deadline = Instant::now() + 2 * WAIT;
    let mut failure = None;
    loop {
        if Instant::now() > deadline {
            failure = Some(format!("the rebalance did not finish within {:?}", 2 * WAIT));
            break;
        }
        let cc = match cachecluster(env, &ns, "feed") {
            Ok(cc) => cc,
            Err(e) => {
                eprintln!("reading the CacheCluster: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        let st = &cc["status"];
        match st["rebalance"].as_object() {
            Some(r) => {
                started = true;
                let progress = format!(
                    "stagesDone {}: {}",
                    r["stagesDone"],
                    r["progress"].as_str().unwrap_or_default()
                );
                if progress != last_progress {
                    eprintln!("{variant}: {:.1}s after scale: {progress}", since(&load) - t_scale);
                    events.push((since(&load), progress.clone()));
                    last_progress = progress;
                }
            }
            None if started && st["phase"] == "Running" => break,
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let t_done = since(&load);
    events.push((t_done, "status.rebalance gone, phase Running".to_string()));
    tokio::time::sleep(tail).await;
    let mut run = Run::new(variant, &load, t_scale, t_done, events);
    let counters = tokio::task::spawn_blocking(move || load.stop())
        .await
        .map_err(|e| format!("stopping the load: {e}"))?;
    let target = Target::Cluster(urls(&client, &ns, "feed").await?);
    let c2 = counters.clone();
    let lost = tokio::task::spawn_blocking(move || lost_writes(&target, None, &c2))
        .await
        .map_err(|e| format!("read-back thread: {e}"))?
        .map_err(|e| format!("reading the writes back: {e}"))?;
    run.finish(&counters, lost);
    if let Some(f) = failure {
        run.notes.push(format!("FAILED: {f}"));
    }
    delete(env, &ns);
    Ok(run)
}

const FAILOVER_CLUSTER: &str = "apiVersion: ringcache.io/v1alpha1\nkind: CacheCluster\nmetadata:\n  name: fo\nspec:\n  replicas: 3\n  replicationFactor: 2\n  minReplicasToAck: 1\n  maxmemory: 64mb\n";

/// One `signal` (SIGKILL, or SIGSTOP: a hung process) to a primary's process: a fresh
/// 3-pod CacheCluster (operator defaults, `minReplicasToAck: 1`), the second pod's node
/// process signalled. A stopped process gets SIGCONT after the measurement.
pub async fn failover(env: &TestEnv, rep: usize, signal: i32) -> R<FailoverRep> {
    let client = env.client().await.map_err(|e| format!("client: {e}"))?;
    let ns = create(env, &format!("bench-fo{signal}-{rep}"), FAILOVER_CLUSTER, "fo").await?;
    let pods = pods(&client, &ns, "fo").await?;
    let token = control_token(&client, &ns, "fo")
        .await
        .map_err(|e| format!("control token: {e}"))?;
    let victim = pods.get(1).ok_or("fewer than 2 pods")?.clone();
    let victim_name = victim.metadata.name.clone().unwrap_or_default();
    let victim_ip = ip(&victim)?;
    let slots = primary_slots(&victim, &token)
        .await
        .map_err(|e| format!("{victim_name}'s slots: {e}"))?;
    if slots.is_empty() {
        return Err(format!("{victim_name} leads no slot"));
    }
    let pid = container_pid(&victim, "node").ok_or("no pid annotation on the victim")?;
    let urls: Vec<String> = pods
        .iter()
        .map(|p| ip(p).map(|ip| format!("redis://{ip}:6379/")))
        .collect::<R<_>>()?;
    eprintln!(
        "ringcache failover {rep}: signal {signal} to {victim_name} (pid {pid}, {} slots)",
        slots.len()
    );
    let victim_addr = format!("{victim_ip}:6379");
    let probe = keys_in(&slots, "probe:", 20);
    let counters = keys_in(&slots, "ctr:", 50);
    let r = tokio::task::spawn_blocking(move || {
        failover::measure(
            &urls,
            &victim_addr,
            probe,
            counters,
            || {
                // SAFETY: kill(2) on a process the harness's kubelet started.
                if unsafe { libc::kill(pid, signal) } != 0 {
                    return Err(format!("kill {pid}: {}", std::io::Error::last_os_error()));
                }
                Ok(())
            },
            Duration::from_secs(120),
        )
    })
    .await
    .map_err(|e| format!("failover thread: {e}"))?;
    if signal == libc::SIGSTOP {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
    }
    delete(env, &ns);
    r
}
