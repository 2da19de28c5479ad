//! The CacheCluster CRD and the Helm chart on the real control plane: the chart lints, its
//! rendered objects pass the apiserver's dry run with exactly the RBAC the operator is meant
//! to have; the CRD installs; the apiserver refuses each invalid example with a message
//! naming the field, fills in the defaults of a valid object, refuses a change of
//! replicationFactor, and `kubectl scale` goes through the scale subresource.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;

use ringcache_tests::{shared, EnvError, TestEnv};
use serde_json::{json, Value};

const CRD: &str = "cacheclusters.ringcache.io";

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn repo_str(path: &str) -> String {
    repo(path).to_string_lossy().into_owned()
}

fn env() -> &'static TestEnv {
    shared().expect("starting the shared control plane")
}

fn kubectl(args: &[&str], stdin: Option<&str>) -> Result<String, EnvError> {
    env().kubectl_run(args, stdin)
}

fn helm(args: &[&str]) -> Result<String, EnvError> {
    ringcache_tests::run_with_stdin(env().helm(), args, None)
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Installs the CRD from crds/ once per test binary and waits until it is served.
fn install_crd() {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let r = DONE.get_or_init(|| {
        let file = repo_str(&format!("crds/{CRD}.yaml"));
        // Server-side: the CRD is too large for client-side apply's last-applied annotation.
        kubectl(&["apply", "--server-side", "-f", &file], None).map_err(|e| e.to_string())?;
        kubectl(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                &format!("crd/{CRD}"),
            ],
            None,
        )
        .map_err(|e| e.to_string())?;
        Ok(())
    });
    if let Err(e) = r {
        panic!("installing the CRD: {e}");
    }
}

fn ns(prefix: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(env().namespace(prefix)).expect("namespace")
}

fn cleanup(ns: &str) {
    let _ = kubectl(&["delete", "namespace", ns, "--wait=false"], None);
}

/// `kubectl create` of `manifest` must fail; returns the error text.
fn refused(ns: &str, manifest: &str) -> String {
    match kubectl(&["create", "--dry-run=server", "-n", ns, "-f", "-"], Some(manifest)) {
        Ok(out) => panic!("the apiserver accepted:\n{manifest}\nanswer: {out}"),
        Err(e) => e.to_string(),
    }
}

fn cache_cluster(name: &str, spec: &str) -> String {
    format!("apiVersion: ringcache.io/v1alpha1\nkind: CacheCluster\nmetadata:\n  name: {name}\nspec:\n{spec}\n")
}

#[test]
fn chart_lints_and_renders_what_the_apiserver_accepts_with_exact_rbac() {
    let chart = repo_str("charts/ringcache");
    let lint = helm(&["lint", "--strict", &chart]).expect("helm lint");
    assert!(lint.contains("1 chart(s) linted, 0 chart(s) failed"), "{lint}");

    let ns = ns("chart");
    let rendered = helm(&["template", "rc", &chart, "--namespace", &ns]).expect("helm template");
    let applied = kubectl(
        &["apply", "--dry-run=server", "-n", &ns, "-o", "json", "-f", "-"],
        Some(&rendered),
    )
    .expect("server dry run of the rendered chart");
    let list = json_of(&applied);
    let items = list["items"].as_array().expect("a List of objects");
    let kinds: BTreeSet<&str> = items.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]),
        "{applied}"
    );
    let of_kind = |kind: &str| {
        items
            .iter()
            .find(|o| o["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    };

    // Exactly these permissions, no more, no fewer.
    let rules = |o: &Value| -> BTreeSet<(String, String, Option<String>, Vec<String>)> {
        let mut out = BTreeSet::new();
        for rule in o["rules"].as_array().expect("rules") {
            let strs = |k: &str| -> Vec<String> {
                rule[k]
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default()
            };
            let mut verbs = strs("verbs");
            verbs.sort();
            let names = strs("resourceNames");
            for group in strs("apiGroups") {
                for resource in strs("resources") {
                    let name = names.first().cloned();
                    assert!(names.len() <= 1, "{rule}");
                    out.insert((group.clone(), resource, name, verbs.clone()));
                }
            }
        }
        out
    };
    let expect =
        |rows: &[(&str, &str, Option<&str>, &str)]| -> BTreeSet<(String, String, Option<String>, Vec<String>)> {
            rows.iter()
                .map(|(g, r, n, v)| {
                    let mut verbs: Vec<String> = v.split(' ').map(str::to_owned).collect();
                    verbs.sort();
                    (g.to_string(), r.to_string(), n.map(str::to_owned), verbs)
                })
                .collect()
        };
    assert_eq!(
        rules(of_kind("ClusterRole")),
        expect(&[
            ("ringcache.io", "cacheclusters", None, "get list watch"),
            ("ringcache.io", "cacheclusters/status", None, "patch"),
            ("apps", "statefulsets", None, "get list watch create patch"),
            ("", "pods", None, "list watch delete"),
            ("", "services", None, "list watch create patch"),
            ("", "secrets", None, "get list watch create"),
            ("", "nodes", None, "get"),
            ("policy", "poddisruptionbudgets", None, "list watch create patch"),
            ("networking.k8s.io", "networkpolicies", None, "list watch create patch"),
            ("events.k8s.io", "events", None, "create patch"),
        ])
    );
    let role = of_kind("Role");
    assert_eq!(role["metadata"]["namespace"], json!(ns));
    assert_eq!(
        rules(role),
        expect(&[
            ("coordination.k8s.io", "leases", None, "create"),
            (
                "coordination.k8s.io",
                "leases",
                Some("rc-ringcache-operator"),
                "get update"
            ),
        ])
    );
    for binding in ["ClusterRoleBinding", "RoleBinding"] {
        let b = of_kind(binding);
        assert_eq!(
            b["subjects"],
            json!([{"kind": "ServiceAccount", "name": "rc-ringcache-operator", "namespace": ns}]),
            "{binding}"
        );
    }

    // The Deployment: 2 replicas, the flags, downward-API env, probes, locked down.
    let d = of_kind("Deployment");
    assert_eq!(d["spec"]["replicas"], json!(2));
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], json!("rc-ringcache-operator"));
    let c = &pod["containers"][0];
    assert_eq!(c["image"], json!("ringcache/operator:0.1.0"));
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(&args[..3], &["run", "--bind", "$(POD_IP)"], "{args:?}");
    assert!(args.contains(&"--network-policy=true"), "{args:?}");
    assert!(args.windows(2).any(|w| w == ["--log-format", "text"]), "{args:?}");
    assert!(
        args.windows(2).any(|w| w == ["--lease-name", "rc-ringcache-operator"]),
        "{args:?}"
    );
    let env_fields: Vec<(String, String)> = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_owned(),
                e["valueFrom"]["fieldRef"]["fieldPath"].as_str()?.to_owned(),
            ))
        })
        .collect();
    for (name, path) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_IP", "status.podIP"),
    ] {
        assert!(
            env_fields.contains(&(name.into(), path.into())),
            "{name}: {env_fields:?}"
        );
    }
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], json!("/readyz"));
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], json!("/healthz"));
    assert_eq!(c["ports"][0]["containerPort"], json!(8080));
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], json!(false));
    assert_eq!(sc["readOnlyRootFilesystem"], json!(true));
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(pod["securityContext"]["runAsNonRoot"], json!(true));
    assert!(c["resources"]["limits"]["memory"].is_string());
    // No secret in argv, ever.
    assert!(
        !args.iter().any(|a| a.to_ascii_lowercase().contains("pass")),
        "{args:?}"
    );

    // Values reach the flags; the ServiceMonitor renders only when asked for.
    let off = helm(&[
        "template",
        "rc",
        &chart,
        "--namespace",
        &ns,
        "--set",
        "networkPolicy.enabled=false,watchNamespace=team-a",
    ])
    .expect("helm template with values");
    assert!(off.contains("- --network-policy=false"), "{off}");
    assert!(off.contains("- --namespace\n            - \"team-a\""), "{off}");
    assert!(!rendered.contains("ServiceMonitor"));
    let monitored = helm(&[
        "template",
        "rc",
        &chart,
        "--namespace",
        &ns,
        "--set",
        "serviceMonitor.enabled=true",
    ])
    .expect("helm template with a ServiceMonitor");
    assert!(monitored.contains("kind: ServiceMonitor"), "{monitored}");
    let bad = helm(&["template", "rc", &chart, "--set", "logFormat=xml"]).expect_err("logFormat=xml must be refused");
    assert!(bad.to_string().contains("logFormat"), "{bad}");
    cleanup(&ns);
}

#[test]
fn invalid_examples_are_refused_with_a_message_naming_the_field() {
    install_crd();
    let ns = ns("crdinvalid");
    let dir = repo("examples/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/invalid")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read example");
        // Each example says what the apiserver answers.
        let expected = text
            .lines()
            .find_map(|l| l.strip_prefix("# Expected error: "))
            .unwrap_or_else(|| panic!("{} has no '# Expected error: ' line", file.display()));
        let err = match kubectl(&["create", "-n", &ns, "-f", &file.to_string_lossy()], None) {
            Ok(out) => panic!("{} was accepted: {out}", file.display()),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(expected),
            "{}: expected {expected:?} in: {err}",
            file.display()
        );
        let field = expected.split(':').next().unwrap_or_default();
        assert!(field.starts_with("spec."), "{expected}");
    }

    // The rules the examples do not cover.
    let cases: &[(&str, &str)] = &[
        (
            "  replicas: 0\n  replicationFactor: 1",
            "spec.replicas: must be at least 1",
        ),
        (
            "  replicationFactor: 2\n  minReplicasToAck: 2",
            "spec.minReplicasToAck: must be less than spec.replicationFactor",
        ),
        (
            "  warmup:\n    stages: [10, 50, 90]",
            "spec.warmup.stages: the last stage must be 100",
        ),
        (
            "  warmup:\n    stages: [10, 10, 100]",
            "spec.warmup.stages: must be strictly increasing",
        ),
        ("  warmup:\n    stages: [0, 100]", "spec.warmup.stages[0]"),
        (
            "  warmup:\n    minHitRatio: 0",
            "spec.warmup.minHitRatio: must be greater than 0",
        ),
        (
            "  warmup:\n    minStageSeconds: 60\n    maxStageSeconds: 30",
            "spec.warmup.maxStageSeconds: must be at least spec.warmup.minStageSeconds",
        ),
        ("  maxmemory: 512 megabytes", "spec.maxmemory"),
        ("  maxmemoryPolicy: lru", "spec.maxmemoryPolicy"),
        ("  failover:\n    detectionSeconds: 0", "spec.failover.detectionSeconds"),
        ("  service:\n    type: ExternalName", "spec.service.type"),
        (
            "  protection:\n    ttlJitterPercent: 101",
            "spec.protection.ttlJitterPercent",
        ),
        (
            "  protection:\n    coalescePatterns: [\"a,b\"]",
            "spec.protection.coalescePatterns: a pattern must not contain a comma",
        ),
        (
            "  protection:\n    hotKeys:\n      sample: 0",
            "spec.protection.hotKeys.sample",
        ),
        (
            "  protection:\n    bloom:\n      errorRate: 1",
            "spec.protection.bloom.errorRate: must be greater than 0 and less than 1",
        ),
    ];
    for (spec, expected) in cases {
        let err = refused(&ns, &cache_cluster("bad", spec));
        assert!(err.contains(expected), "spec {spec:?}: expected {expected:?} in: {err}");
    }
    cleanup(&ns);
}

#[test]
fn valid_objects_are_accepted_with_every_default_filled_in() {
    install_crd();
    let ns = ns("crdvalid");
    // The commented sample, with its Secret.
    kubectl(
        &["apply", "-n", &ns, "-f", &repo_str("examples/cachecluster.yaml")],
        None,
    )
    .expect("apply the sample");
    let sample = json_of(&kubectl(&["get", "-n", &ns, "cachecluster", "demo", "-o", "json"], None).expect("get"));
    assert_eq!(sample["spec"]["replicas"], json!(3));
    assert_eq!(sample["spec"]["replicationFactor"], json!(2));
    assert_eq!(sample["spec"]["warmup"]["stages"], json!([10, 25, 50, 100]));
    assert_eq!(
        sample["spec"]["auth"]["passwordSecretRef"]["name"],
        json!("demo-password")
    );
    kubectl(&["get", "-n", &ns, "secret", "demo-password"], None).expect("the sample's Secret");

    // An empty spec: the apiserver writes every documented default.
    kubectl(
        &["create", "-n", &ns, "-f", "-"],
        Some(&cache_cluster("defaults", "  {}")),
    )
    .expect("create");
    let got = json_of(&kubectl(&["get", "-n", &ns, "rcc", "defaults", "-o", "json"], None).expect("get by short name"));
    assert_eq!(
        got["spec"],
        json!({
            "replicas": 3,
            "replicationFactor": 2,
            "image": "ringcache/node:0.1.0",
            "imagePullPolicy": "IfNotPresent",
            "resources": {},
            "maxmemoryPolicy": "s3fifo",
            "minReplicasToAck": 0,
            "auth": {},
            "warmup": {
                "stages": [10, 25, 50, 100],
                "minHitRatio": 0.95,
                "minStageSeconds": 10,
                "maxStageSeconds": 300,
                "onTimeout": "Proceed"
            },
            "failover": { "detectionSeconds": 2 },
            "protection": {
                "ttlJitterPercent": 0,
                "coalescePatterns": [],
                "coalesceEarlyMs": 0,
                "hotKeys": {
                    "enabled": true,
                    "k": 10,
                    "windowSeconds": 10,
                    "sample": 32,
                    "replicaReadsMinOps": 0
                },
                "bloom": { "errorRate": 0.01, "initialSize": 100, "expansion": 2 }
            },
            "labels": {},
            "annotations": {},
            "nodeSelector": {},
            "tolerations": [],
            "topologySpreadConstraints": [],
            "terminationGracePeriodSeconds": 30,
            "service": { "type": "ClusterIP", "annotations": {} },
            "paused": false
        })
    );

    // Nested objects given in part get the rest of their defaults.
    let partial = cache_cluster(
        "partial",
        "  auth:\n    passwordSecretRef:\n      name: pw\n  warmup:\n    onTimeout: Hold\n  service:\n    type: NodePort",
    );
    kubectl(&["create", "-n", &ns, "-f", "-"], Some(&partial)).expect("create");
    let got = json_of(&kubectl(&["get", "-n", &ns, "rcc", "partial", "-o", "json"], None).expect("get"));
    assert_eq!(
        got["spec"]["auth"]["passwordSecretRef"],
        json!({"name": "pw", "key": "password"})
    );
    assert_eq!(got["spec"]["warmup"]["onTimeout"], json!("Hold"));
    assert_eq!(got["spec"]["warmup"]["stages"], json!([10, 25, 50, 100]));
    assert_eq!(got["spec"]["warmup"]["minHitRatio"], json!(0.95));
    assert_eq!(got["spec"]["service"], json!({"type": "NodePort", "annotations": {}}));
    let hot = cache_cluster("hot", "  protection:\n    hotKeys:\n      replicaReadsMinOps: 500");
    kubectl(&["create", "-n", &ns, "-f", "-"], Some(&hot)).expect("create");
    let got = json_of(&kubectl(&["get", "-n", &ns, "rcc", "hot", "-o", "json"], None).expect("get"));
    assert_eq!(got["spec"]["protection"]["hotKeys"]["replicaReadsMinOps"], json!(500));
    assert_eq!(got["spec"]["protection"]["hotKeys"]["sample"], json!(32));
    assert_eq!(got["spec"]["protection"]["ttlJitterPercent"], json!(0));

    // The category lists them.
    let listed = kubectl(&["get", "-n", &ns, "ringcache", "-o", "name"], None).expect("get the category");
    for name in ["demo", "defaults", "partial"] {
        assert!(
            listed.contains(&format!("cachecluster.ringcache.io/{name}")),
            "{listed}"
        );
    }
    cleanup(&ns);
}

#[test]
fn replication_factor_is_immutable_and_scale_uses_the_subresource() {
    install_crd();
    let ns = ns("crdscale");
    kubectl(
        &["create", "-n", &ns, "-f", "-"],
        Some(&cache_cluster("c", "  replicas: 3")),
    )
    .expect("create");

    let err = kubectl(
        &[
            "patch",
            "-n",
            &ns,
            "rcc",
            "c",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicationFactor":3}}"#,
        ],
        None,
    )
    .expect_err("changing replicationFactor must be refused")
    .to_string();
    assert!(err.contains("spec.replicationFactor: is immutable"), "{err}");
    // Other fields still change.
    kubectl(
        &[
            "patch",
            "-n",
            &ns,
            "rcc",
            "c",
            "--type=merge",
            "-p",
            r#"{"spec":{"paused":true}}"#,
        ],
        None,
    )
    .expect("changing paused");

    kubectl(&["scale", "-n", &ns, "rcc/c", "--replicas=5"], None).expect("kubectl scale");
    let got = json_of(&kubectl(&["get", "-n", &ns, "rcc", "c", "-o", "json"], None).expect("get"));
    assert_eq!(got["spec"]["replicas"], json!(5));
    assert_eq!(got["spec"]["replicationFactor"], json!(2));
    let scale_path = format!("/apis/ringcache.io/v1alpha1/namespaces/{ns}/cacheclusters/c/scale");
    let scale = json_of(&kubectl(&["get", "--raw", &scale_path], None).expect("get the scale subresource"));
    assert_eq!(scale["kind"], json!("Scale"));
    assert_eq!(scale["spec"]["replicas"], json!(5));

    // Scaling below replicationFactor is refused by the same rule as on create.
    let err = kubectl(&["scale", "-n", &ns, "rcc/c", "--replicas=1"], None)
        .expect_err("scaling below replicationFactor must be refused")
        .to_string();
    assert!(
        err.contains("spec.replicationFactor: must not exceed spec.replicas"),
        "{err}"
    );

    // Status through its subresource feeds the scale subresource and the printer columns.
    let status = r#"{"status":{"replicas":5,"readyReplicas":4,"selector":"app.kubernetes.io/instance=c","phase":"Rebalancing","epoch":7,"hitRate":"97.3%","slotsCovered":16384,"members":[{"pod":"c-0","ready":true,"primarySlots":5462,"replicaSlots":5461,"usedMemory":1048576,"hitRate":0.973}],"conditions":[{"type":"Ready","status":"True","reason":"AllSlotsServed","message":"","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#;
    kubectl(
        &[
            "patch",
            "-n",
            &ns,
            "rcc",
            "c",
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ],
        None,
    )
    .expect("patch status");
    let scale = json_of(&kubectl(&["get", "--raw", &scale_path], None).expect("get the scale subresource"));
    assert_eq!(scale["status"]["replicas"], json!(5));
    assert_eq!(scale["status"]["selector"], json!("app.kubernetes.io/instance=c"));
    let table = kubectl(&["get", "-n", &ns, "rcc", "c"], None).expect("kubectl get");
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "REPLICAS", "READY", "PHASE", "EPOCH", "HIT", "RATE", "PROGRESS", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(&row[..6], &["c", "5", "4", "Rebalancing", "7", "97.3%"], "{table}");

    // The status schema is enforced too.
    let err = kubectl(
        &[
            "patch",
            "-n",
            &ns,
            "rcc",
            "c",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Exploded"}}"#,
        ],
        None,
    )
    .expect_err("an unknown phase must be refused")
    .to_string();
    assert!(err.contains("status.phase"), "{err}");
    cleanup(&ns);
}
