//! The chart's RBAC is exercised for real: with one verb the operator needs removed from
//! its ClusterRole, a CacheCluster fails visibly (a Warning Event naming the refusal);
//! with the verb back, it becomes Ready.

use std::time::Duration;

use ringcache_tests::operator::{install_operator, wait_condition};
use ringcache_tests::{shared, wait_for};

const WAIT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_verb_fails_visibly_and_its_return_heals() {
    let env = shared().expect("starting the shared control plane");
    let ns = env.namespace("op-rbac").await.expect("namespace");
    install_operator(env, "rc", &ns, &[&format!("watchNamespace={ns}"), "replicaCount=1"]).expect("helm install");
    // The ClusterRole's rule for secrets without "create": the operator cannot create the
    // control token's Secret.
    let role = env
        .kubectl_run(&["get", "clusterrole", "rc-ringcache-operator", "-o", "json"], None)
        .expect("the ClusterRole");
    let mut role: serde_json::Value = serde_json::from_str(&role).expect("json");
    let rules = role["rules"].as_array_mut().expect("rules");
    let secrets = rules
        .iter_mut()
        .find(|r| r["resources"] == serde_json::json!(["secrets"]))
        .expect("a rule for secrets");
    let verbs: Vec<serde_json::Value> = secrets["verbs"]
        .as_array()
        .expect("verbs")
        .iter()
        .filter(|v| *v != "create")
        .cloned()
        .collect();
    assert_eq!(verbs.len(), 3, "{secrets}");
    secrets["verbs"] = serde_json::Value::Array(verbs);
    let patched = role.to_string();
    env.kubectl_run(&["replace", "-f", "-"], Some(&patched))
        .expect("remove the verb");

    let cluster = "apiVersion: ringcache.io/v1alpha1\nkind: CacheCluster\nmetadata:\n  name: rbac\nspec:\n  replicas: 1\n  replicationFactor: 1\n  maxmemory: 64mb\n";
    env.kubectl_run(&["apply", "-n", &ns, "-f", "-"], Some(cluster))
        .expect("apply");
    wait_for("a Warning event naming the refusal", WAIT, || async {
        let events = env
            .kubectl_run(&["get", "events", "-n", &ns, "-o", "json"], None)
            .map_err(|e| e.to_string())?;
        if events.contains("\"reason\": \"ReconcileFailed\"") && events.contains("forbidden") {
            Ok(())
        } else {
            Err("no ReconcileFailed event yet".to_string())
        }
    })
    .await
    .expect("the failure is visible");

    // helm's own ClusterRole back: the cluster comes up.
    env.kubectl_run(
        &["replace", "-f", "-"],
        Some(
            &env.kubectl_run(&["get", "clusterrole", "rc-ringcache-operator", "-o", "json"], None)
                .map(|r| {
                    let mut r: serde_json::Value = serde_json::from_str(&r).unwrap_or_default();
                    if let Some(rule) = r["rules"]
                        .as_array_mut()
                        .and_then(|rs| rs.iter_mut().find(|x| x["resources"] == serde_json::json!(["secrets"])))
                    {
                        rule["verbs"] = serde_json::json!(["get", "list", "watch", "create"]);
                    }
                    r.to_string()
                })
                .expect("the ClusterRole"),
        ),
    )
    .expect("restore the verb");
    wait_condition(env, &ns, "rbac", "Ready", "True", None, WAIT)
        .await
        .expect("Ready once the verb is back");
}
