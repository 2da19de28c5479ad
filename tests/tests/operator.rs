//! The operator end to end, on the real control plane: the Helm chart installs it (two
//! replicas, a leader elected on a Lease, the chart's RBAC), then CacheClusters in their
//! own namespaces: one becomes Ready and serves 100k keys to a cluster-aware client and
//! through its client Service's ClusterIP (kube-proxy) to a plain one, its children come
//! back when deleted and go when it is deleted, its control port refuses calls without
//! the token; a missing password Secret, pods that never become Ready and a control port
//! that does not answer show in the status, with reasons.

use std::collections::HashSet;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::ListParams;
use kube::Api;
use redis::Commands;
use ringcache_core::slot::SLOT_COUNT;
use ringcache_tests::operator::{
    cachecluster, condition, control_token, install_operator, node_status, repo_file, wait_condition, wait_until_routed,
};
use ringcache_tests::{shared, wait_for, TestEnv};

const WAIT: Duration = Duration::from_secs(240);
const PASSWORD: &str = "change-me-0123456789";

fn env() -> &'static TestEnv {
    shared().expect("starting the shared control plane")
}

/// The operator, installed once for this test binary in `ringcache-system`, watching
/// every namespace, with a short progress deadline for the test of pods that never
/// become Ready.
fn operator() {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let r = DONE.get_or_init(|| {
        let env = env();
        env.kubectl_run(&["create", "namespace", "ringcache-system"], None)
            .map_err(|e| e.to_string())?;
        install_operator(env, "rc", "ringcache-system", &["progressDeadlineSeconds=15"])
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    if let Err(e) = r {
        panic!("installing the operator with helm: {e}");
    }
}

fn cluster_yaml(name: &str, replicas: u32, r: u32, extra: &str) -> String {
    format!(
        "apiVersion: ringcache.io/v1alpha1\nkind: CacheCluster\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  replicationFactor: {r}\n  maxmemory: 64mb\n{extra}"
    )
}

async fn pods_of(client: &kube::Client, ns: &str, cluster: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={cluster}")))
        .await
        .expect("list pods")
        .items
}

fn pod_ip(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("a running pod has an IP")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cachecluster_becomes_ready_and_serves_every_kind_of_client() {
    operator();
    let env = env();
    let client = env.client().await.expect("client");
    let ns = env.namespace("op-ready").await.expect("namespace");
    let sample = std::fs::read_to_string(repo_file("examples/cachecluster.yaml")).expect("the sample");
    env.kubectl_run(&["apply", "-n", &ns, "-f", "-"], Some(&sample))
        .expect("apply the sample");
    let cc = wait_condition(env, &ns, "demo", "Ready", "True", None, WAIT)
        .await
        .expect("the sample becomes Ready");

    // What `kubectl get` shows.
    let table = env
        .kubectl_run(&["get", "rcc", "-n", &ns], None)
        .expect("kubectl get rcc");
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "REPLICAS", "READY", "PHASE", "EPOCH", "HIT", "RATE", "PROGRESS", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(&row[..5], ["demo", "3", "3", "Running", "1"], "{table}");

    // Status: every slot served; members with their zones.
    let status = &cc["status"];
    assert_eq!(status["slotsCovered"], 16384);
    assert_eq!(status["readyReplicas"], 3);
    assert_eq!(
        status["selector"],
        "app.kubernetes.io/instance=demo,app.kubernetes.io/name=ringcache-node"
    );
    let members = status["members"].as_array().expect("members");
    assert_eq!(members.len(), 3);
    let primaries: i64 = members.iter().map(|m| m["primarySlots"].as_i64().unwrap_or(0)).sum();
    assert_eq!(primaries, SLOT_COUNT as i64);
    assert!(
        members.iter().all(|m| m["ready"] == true && m["zone"].is_string()),
        "{members:?}"
    );

    // The topology, as the nodes have it: two copies of every slot, on distinct pods in
    // distinct zones (the three pods landed in three zones).
    let token = control_token(&client, &ns, "demo").await.expect("control token");
    let pods = pods_of(&client, &ns, "demo").await;
    let ips: Vec<String> = pods.iter().map(pod_ip).collect();
    let st = node_status(&format!("{}:7379", ips[0]), &token)
        .await
        .expect("GetStatus");
    let topology = st.topology.expect("the node has a topology");
    assert_eq!(topology.epoch, 1);
    let zones: HashSet<Option<String>> = topology.nodes.iter().map(|n| n.zone.clone()).collect();
    for a in &topology.slots {
        assert_eq!(a.owners.len(), 2, "{}", a.range);
        let z: Vec<_> = a
            .owners
            .iter()
            .map(|o| topology.node(o).and_then(|n| n.zone.clone()))
            .collect();
        assert_ne!(z[0], z[1], "slots {} have both copies in one zone", a.range);
    }
    assert_eq!(zones.len(), 3);

    // The control port obeys only the token: without it, refused.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}:7379", ips[1]))
        .expect("address")
        .connect()
        .await
        .expect("control port reachable");
    let mut bare = ringcache_proto::pb::control_client::ControlClient::new(channel);
    let err = bare
        .apply_topology(ringcache_proto::pb::ApplyTopologyRequest {
            topology: None,
            ..Default::default()
        })
        .await
        .expect_err("no token, no topology");
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");

    // 100k keys through a cluster-aware client (the password from the sample's Secret).
    let urls: Vec<String> = ips.iter().map(|ip| format!("redis://{ip}:6379/")).collect();
    let data = tokio::task::spawn_blocking(move || {
        let cluster = redis::cluster::ClusterClientBuilder::new(urls)
            .password(PASSWORD.into())
            .build()
            .expect("cluster client");
        let mut con = cluster.get_connection().expect("cluster connection");
        let keys: Vec<usize> = (0..100_000).collect();
        for chunk in keys.chunks(2000) {
            let mut pipe = redis::cluster::cluster_pipe();
            for i in chunk {
                pipe.set(format!("user:{i}"), format!("v{i}")).ignore();
            }
            let () = pipe.query(&mut con).expect("pipelined SETs");
        }
        for chunk in keys.chunks(2000) {
            let mut pipe = redis::cluster::cluster_pipe();
            for i in chunk {
                pipe.get(format!("user:{i}"));
            }
            let got: Vec<Option<String>> = pipe.query(&mut con).expect("pipelined GETs");
            for (i, v) in chunk.iter().zip(got) {
                assert_eq!(v, Some(format!("v{i}")), "user:{i}");
            }
        }
    });
    data.await.expect("cluster client thread");

    // A cluster-unaware client through the client Service's ClusterIP (kube-proxy routes
    // it to a pod's proxy port, which forwards to each key's owner).
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let svc = services.get("demo").await.expect("client Service");
    let cluster_ip = svc.spec.as_ref().and_then(|s| s.cluster_ip.clone()).expect("ClusterIP");
    let uid = svc.metadata.uid.clone();
    wait_until_routed(&format!("redis://:{PASSWORD}@{cluster_ip}:6379/"), WAIT)
        .await
        .expect("the client Service routed");
    tokio::task::spawn_blocking(move || {
        let plain = redis::Client::open(format!("redis://:{PASSWORD}@{cluster_ip}:6379/")).expect("url");
        let mut con = plain.get_connection().expect("through the ClusterIP");
        for i in (0..100_000).step_by(50) {
            let v: Option<String> = con.get(format!("user:{i}")).expect("GET through the proxy");
            assert_eq!(v, Some(format!("v{i}")));
        }
        let _: () = con.set("via-service", "ok").expect("SET through the proxy");
        let v: Option<String> = con.get("via-service").expect("GET");
        assert_eq!(v.as_deref(), Some("ok"));
    })
    .await
    .expect("plain client thread");

    // A deleted child comes back.
    env.kubectl_run(&["delete", "service", "demo", "-n", &ns], None)
        .expect("delete the client Service");
    wait_for("the client Service comes back", WAIT, || {
        let services = services.clone();
        let uid = uid.clone();
        async move {
            match services.get_opt("demo").await {
                Ok(Some(s)) if s.metadata.uid != uid => Ok(()),
                Ok(_) => Err("not recreated yet".to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
    .expect("recreated");
    let events = env
        .kubectl_run(&["get", "events", "-n", &ns, "-o", "json"], None)
        .expect("events");
    for reason in ["ControlTokenCreated", "Bootstrap", "Ready"] {
        assert!(
            events.contains(&format!("\"reason\": \"{reason}\"")),
            "no {reason} event"
        );
    }

    // Deleting the CacheCluster deletes everything it owns.
    env.kubectl_run(&["delete", "cachecluster", "demo", "-n", &ns, "--wait=true"], None)
        .expect("delete the CacheCluster");
    wait_for("pods and Services gone", WAIT, || {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            let pods = pods_of(&client, &ns, "demo").await.len();
            let svcs: Api<Service> = Api::namespaced(client.clone(), &ns);
            let svcs = svcs
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            if pods == 0 && svcs == 0 {
                Ok(())
            } else {
                Err(format!("{pods} pods, {svcs} services left"))
            }
        }
    })
    .await
    .expect("garbage collected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_password_secret_is_named_and_nothing_crash_loops() {
    operator();
    let env = env();
    let client = env.client().await.expect("client");
    let ns = env.namespace("op-secret").await.expect("namespace");
    let extra = "  auth:\n    passwordSecretRef:\n      name: not-there\n";
    env.kubectl_run(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&cluster_yaml("nosecret", 1, 1, extra)),
    )
    .expect("apply");
    let cc = wait_condition(env, &ns, "nosecret", "Degraded", "True", Some("SecretMissing"), WAIT)
        .await
        .expect("Degraded: SecretMissing");
    let (_, _, message) = condition(&cc, "Degraded").unwrap_or_default();
    assert!(message.contains("not-there"), "{message}");
    assert_eq!(cc["status"]["phase"], "Degraded");
    // The operator keeps running (no crash loop) and the cluster recovers once the
    // Secret exists.
    let operators: Api<Pod> = Api::namespaced(client.clone(), "ringcache-system");
    for p in operators
        .list(&ListParams::default())
        .await
        .expect("operator pods")
        .items
    {
        let restarts: i32 = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum());
        assert_eq!(restarts, 0, "operator pod restarted");
    }
    env.kubectl_run(
        &[
            "create",
            "secret",
            "generic",
            "not-there",
            "-n",
            &ns,
            "--from-literal=password=s3cret",
        ],
        None,
    )
    .expect("create the Secret");
    wait_condition(env, &ns, "nosecret", "Ready", "True", None, WAIT)
        .await
        .expect("Ready once the Secret exists");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_that_never_become_ready_stop_progressing_with_a_reason() {
    operator();
    let env = env();
    let ns = env.namespace("op-stuck").await.expect("namespace");
    // An image the test kubelet cannot run: the pod never becomes Ready.
    let extra = "  image: ringcache/no-such-image:1\n";
    env.kubectl_run(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&cluster_yaml("stuck", 1, 1, extra)),
    )
    .expect("apply");
    let cc = wait_condition(env, &ns, "stuck", "Progressing", "True", Some("PodsStarting"), WAIT)
        .await
        .expect("Progressing: PodsStarting");
    assert_eq!(cc["status"]["phase"], "Pending");
    let cc = wait_condition(
        env,
        &ns,
        "stuck",
        "Progressing",
        "False",
        Some("ProgressDeadlineExceeded"),
        WAIT,
    )
    .await
    .expect("Progressing: ProgressDeadlineExceeded");
    let (_, _, message) = condition(&cc, "Progressing").unwrap_or_default();
    assert!(message.contains("stuck-0"), "{message}");
    let (status, reason, _) = condition(&cc, "Degraded").unwrap_or_default();
    assert_eq!((status.as_str(), reason.as_str()), ("True", "PodsNotReady"));
}

/// Drops packets to `ip:7379` from this host (the operator's pods share its network
/// namespace) while it lives.
struct Blackhole(String);

impl Blackhole {
    fn control_port_of(ip: &str) -> Blackhole {
        let table = format!("rctest{}", ip.replace('.', ""));
        let nft = |script: String| {
            let out = Command::new("nft")
                .args(["-f", "-"])
                .stdin(std::process::Stdio::piped())
                .spawn();
            let mut child = out.expect("nft");
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(script.as_bytes())
                .expect("nft script");
            assert!(child.wait().expect("nft").success(), "nft: {script}");
        };
        nft(format!(
            "table ip {table} {{\n chain out {{\n  type filter hook output priority 0; policy accept;\n  ip daddr {ip} tcp dport 7379 drop\n }}\n}}\n"
        ));
        Blackhole(table)
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        let _ = Command::new("nft").args(["delete", "table", "ip", &self.0]).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_control_port_shows_in_status_and_events_and_recovers() {
    operator();
    let env = env();
    let client = env.client().await.expect("client");
    let ns = env.namespace("op-unreach").await.expect("namespace");
    env.kubectl_run(&["apply", "-n", &ns, "-f", "-"], Some(&cluster_yaml("far", 1, 1, "")))
        .expect("apply");
    wait_condition(env, &ns, "far", "Ready", "True", None, WAIT)
        .await
        .expect("Ready");
    let ip = pod_ip(&pods_of(&client, &ns, "far").await[0]);
    {
        let _hole = Blackhole::control_port_of(&ip);
        let cc = wait_condition(env, &ns, "far", "Degraded", "True", Some("NodeUnreachable"), WAIT)
            .await
            .expect("Degraded: NodeUnreachable");
        let (_, _, message) = condition(&cc, "Degraded").unwrap_or_default();
        assert!(message.contains("far-0"), "{message}");
        let events = env
            .kubectl_run(&["get", "events", "-n", &ns, "-o", "json"], None)
            .expect("events");
        assert!(
            events.contains("\"reason\": \"NodeUnreachable\""),
            "no NodeUnreachable event"
        );
    }
    // The operator keeps asking; once the port answers the cluster is Ready again.
    let cc = wait_condition(env, &ns, "far", "Degraded", "False", None, WAIT)
        .await
        .expect("recovered");
    let (ready, _, _) = condition(&cc, "Ready").unwrap_or_default();
    assert_eq!(ready, "True");

    // The leader's /metrics has the cluster's gauges.
    let operators: Api<Pod> = Api::namespaced(client.clone(), "ringcache-system");
    let want = format!("ringcache_cluster_ready{{namespace=\"{ns}\",cachecluster=\"far\"}} 1");
    wait_for("the cluster's gauges in the leader's /metrics", WAIT, || {
        let operators = operators.clone();
        let want = want.clone();
        async move {
            for p in operators
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
            {
                let addr: std::net::SocketAddr = format!("{}:8080", pod_ip(&p)).parse().map_err(|e| format!("{e}"))?;
                let (code, body) = ringcache_tests::http::get(addr, "operator", "/metrics", Duration::from_secs(5))
                    .await
                    .map_err(|e| e.to_string())?;
                if code == 200 && body.contains(&want) && body.contains("ringcache_operator_reconciles_total") {
                    return Ok(());
                }
            }
            Err(format!("no operator pod shows {want}"))
        }
    })
    .await
    .expect("metrics");
    let _ = cachecluster(env, &ns, "far").expect("still there");
}
