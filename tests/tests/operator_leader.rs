//! The operator's leader election on the real control plane: two replicas from the Helm
//! chart, the leader's process SIGKILLed; the standby takes the Lease and reconciles a
//! spec change made afterwards.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use ringcache_tests::operator::{container_pid, install_operator, wait_condition};
use ringcache_tests::{shared, wait_for};

const WAIT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_from_a_killed_leader_and_reconciles() {
    let env = shared().expect("starting the shared control plane");
    let client = env.client().await.expect("client");
    let ns = env.namespace("op-leader").await.expect("namespace");
    install_operator(env, "rc", &ns, &[&format!("watchNamespace={ns}")]).expect("helm install");
    let cluster = "apiVersion: ringcache.io/v1alpha1\nkind: CacheCluster\nmetadata:\n  name: led\nspec:\n  replicas: 1\n  replicationFactor: 1\n  maxmemory: 64mb\n";
    env.kubectl_run(&["apply", "-n", &ns, "-f", "-"], Some(cluster))
        .expect("apply");
    wait_condition(env, &ns, "led", "Ready", "True", None, WAIT)
        .await
        .expect("Ready under the first leader");

    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let holder = |l: &Lease| {
        l.spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default()
    };
    let leader = holder(&leases.get("rc-ringcache-operator").await.expect("the Lease"));
    let (leader_pod, _) = leader.rsplit_once('_').expect("identity is <pod>_<process>");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pid = container_pid(&pods.get(leader_pod).await.expect("leader pod"), "operator").expect("pid");
    // SAFETY: signalling a process this test's kubelet started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let killed = Instant::now();

    let new = wait_for("another replica holds the Lease", WAIT, || {
        let leases = leases.clone();
        let leader = leader.clone();
        async move {
            let l = leases.get("rc-ringcache-operator").await.map_err(|e| e.to_string())?;
            let h = holder(&l);
            if h.is_empty() || h == leader {
                Err(format!("held by {h:?}"))
            } else {
                Ok(h)
            }
        }
    })
    .await
    .expect("a new leader");
    let took = killed.elapsed();
    assert!(
        !new.starts_with(&format!("{leader_pod}_")),
        "the standby, not the killed leader's restarted container, took the Lease: {new}"
    );
    // Not before the 15 s lease ran out (no split brain), and well within it plus retries.
    assert!(took >= Duration::from_secs(10), "taken over after {took:?}");
    eprintln!("standby {new} took the Lease {took:?} after the leader's SIGKILL");

    // A spec change made now is reconciled by the new leader.
    env.kubectl_run(
        &[
            "patch",
            "cachecluster",
            "led",
            "-n",
            &ns,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"paused":true}}"#,
        ],
        None,
    )
    .expect("pause");
    wait_condition(env, &ns, "led", "Progressing", "False", Some("Paused"), WAIT)
        .await
        .expect("the new leader reconciles the change");
}
