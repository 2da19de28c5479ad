//! Scheduling without a kube-scheduler: which node an unscheduled pod is bound to. Pure functions over the pod, the
//! kubelet's nodes and the pods already bound; the sync loop does the listing and the `Binding`.
//!
//! Like the default scheduler, as far as tests need it: only pods for `default-scheduler` that have no `nodeName`
//! and are not being deleted; a node is eligible unless cordoned, tainted NoSchedule/NoExecute without a matching
//! toleration, or outside the pod's `nodeSelector` / required node affinity; among eligible nodes the one with the
//! fewest pods of the pod's controller wins (spreading a ReplicaSet's or StatefulSet's replicas over nodes), then
//! the one with the fewest pods; remaining ties rotate.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Node, Pod};

/// Pods bound to each node, in total and per spreading group ([`spread_group`]); terminal and deleting pods do not
/// count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Load {
    /// Node → bound pods, for the kubelet's own nodes only.
    per_node: HashMap<String, usize>,
    /// (spreading group, node) → bound pods.
    per_group: HashMap<(String, String), usize>,
}

impl Load {
    /// The load of `ours` (the kubelet's nodes) given every pod in the cluster.
    pub fn of(pods: &[Pod], ours: &[String]) -> Load {
        let mut load = Load {
            per_node: ours.iter().map(|n| (n.clone(), 0)).collect(),
            per_group: HashMap::new(),
        };
        for p in pods {
            if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_ref()) {
                if !is_terminal(p) && p.metadata.deletion_timestamp.is_none() {
                    load.add(&spread_group(p), n);
                }
            }
        }
        load
    }

    /// Counts one more pod of `group` on `node`.
    pub fn add(&mut self, group: &str, node: &str) {
        if let Some(l) = self.per_node.get_mut(node) {
            *l += 1;
        }
        *self.per_group.entry((group.to_owned(), node.to_owned())).or_insert(0) += 1;
    }

    /// (pods of `group` on `node`, all pods on `node`): lower is better.
    fn score(&self, group: &str, node: &str) -> (usize, usize) {
        let g = self
            .per_group
            .get(&(group.to_owned(), node.to_owned()))
            .copied()
            .unwrap_or(0);
        (g, self.per_node.get(node).copied().unwrap_or(0))
    }
}

/// What to do with a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// Bind it to this node.
    Node(String),
    /// It has a `nodeName` already.
    AlreadyBound,
    /// It is being deleted.
    Deleting,
    /// Another scheduler's pod.
    OtherScheduler,
    /// No node may run it (now).
    NoEligibleNode,
}

/// Where `pod` goes, among `nodes` with `load`. `turn` breaks ties between equally loaded nodes (the caller advances
/// it after each [`Pick::Node`], so equal nodes take turns).
pub fn pick_node(pod: &Pod, nodes: &[Node], load: &Load, turn: usize) -> Pick {
    let Some(spec) = pod.spec.as_ref() else {
        return Pick::NoEligibleNode;
    };
    if spec.node_name.is_some() {
        return Pick::AlreadyBound;
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return Pick::Deleting;
    }
    if spec.scheduler_name.as_deref().unwrap_or("default-scheduler") != "default-scheduler" {
        return Pick::OtherScheduler;
    }
    let group = spread_group(pod);
    let mut candidates: Vec<(String, (usize, usize))> = nodes
        .iter()
        .filter(|n| eligible(pod, n))
        .filter_map(|n| n.metadata.name.clone())
        .map(|name| {
            let score = load.score(&group, &name);
            (name, score)
        })
        .collect();
    // Stable: equal scores keep the nodes' order.
    candidates.sort_by_key(|(_, score)| *score);
    let Some(best) = candidates.first().map(|(_, score)| *score) else {
        return Pick::NoEligibleNode;
    };
    let tied: Vec<&String> = candidates
        .iter()
        .filter(|(_, score)| *score == best)
        .map(|(name, _)| name)
        .collect();
    match tied.get(turn % tied.len().max(1)) {
        Some(name) => Pick::Node((*name).clone()),
        None => Pick::NoEligibleNode,
    }
}

/// The spreading group of a pod: its controller (a ReplicaSet, StatefulSet, Job…), or itself.
pub fn spread_group(p: &Pod) -> String {
    p.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.clone())
        .or_else(|| p.metadata.uid.clone())
        .unwrap_or_default()
}

/// Whether the pod has finished (`Succeeded` or `Failed`).
pub fn is_terminal(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

fn labels_match_expr(labels: &BTreeMap<String, String>, key: &str, op: &str, values: &[String]) -> bool {
    let v = labels.get(key);
    match op {
        "In" => v.is_some_and(|v| values.contains(v)),
        "NotIn" => v.is_none_or(|v| !values.contains(v)),
        "Exists" => v.is_some(),
        "DoesNotExist" => v.is_none(),
        _ => false,
    }
}

/// Whether `pod` may run on `node`: not cordoned, every NoSchedule/NoExecute taint tolerated, `nodeSelector` and
/// required node affinity (`matchExpressions`) satisfied.
fn eligible(pod: &Pod, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        return false;
    }
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    for t in taints {
        if t.effect != "NoSchedule" && t.effect != "NoExecute" {
            continue;
        }
        let tolerated = spec.tolerations.iter().flatten().any(|tol| {
            let key_ok = match tol.key.as_deref() {
                None | Some("") => tol.operator.as_deref() == Some("Exists"),
                Some(k) => k == t.key,
            };
            let value_ok = match tol.operator.as_deref() {
                Some("Exists") => true,
                _ => tol.value.as_deref().unwrap_or("") == t.value.as_deref().unwrap_or(""),
            };
            let effect_ok = tol.effect.as_deref().is_none_or(|e| e.is_empty() || e == t.effect);
            key_ok && value_ok && effect_ok
        });
        if !tolerated {
            return false;
        }
    }
    if let Some(sel) = &spec.node_selector {
        if sel.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref());
    if let Some(req) = required {
        // Terms are ORed; expressions inside a term are ANDed.
        let any = req.node_selector_terms.iter().any(|t| {
            t.match_expressions
                .iter()
                .flatten()
                .all(|e| labels_match_expr(&labels, &e.key, &e.operator, e.values.as_deref().unwrap_or(&[])))
        });
        if !any {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn node(name: &str, zone: &str, spec: Value) -> Node {
        serde_json::from_value(json!({
            "metadata": { "name": name, "labels": { "topology.kubernetes.io/zone": zone, "disk": if zone == "zone-c" { "ssd" } else { "hdd" } } },
            "spec": spec,
        }))
        .expect("node")
    }

    fn nodes() -> Vec<Node> {
        vec![
            node("worker-a", "zone-a", json!({})),
            node("worker-b", "zone-b", json!({})),
            node("worker-c", "zone-c", json!({})),
        ]
    }

    fn names(nodes: &[Node]) -> Vec<String> {
        nodes.iter().filter_map(|n| n.metadata.name.clone()).collect()
    }

    /// A pod of controller `owner` (none: a bare pod), with `spec` merged over a plain container spec.
    fn pod(name: &str, owner: Option<&str>, spec: Value) -> Pod {
        let mut s = json!({ "containers": [{ "name": "c", "image": "ringcache/testpod" }] });
        if let (Some(o), Some(extra)) = (s.as_object_mut(), spec.as_object()) {
            o.extend(extra.clone());
        }
        let owners = owner
            .map(|uid| json!([{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true }]))
            .unwrap_or(json!([]));
        serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": "ns", "uid": format!("uid-{name}"), "ownerReferences": owners },
            "spec": s,
        }))
        .expect("pod")
    }

    fn bound(name: &str, owner: Option<&str>, node: &str) -> Pod {
        pod(name, owner, json!({ "nodeName": node }))
    }

    fn picked(p: Pick) -> String {
        match p {
            Pick::Node(n) => n,
            other => panic!("expected a node, got {other:?}"),
        }
    }

    #[test]
    fn replicas_of_one_controller_spread_over_nodes_before_doubling_up() {
        let nodes = nodes();
        let mut existing = vec![bound("x1", Some("rs-1"), "worker-a")];
        // worker-a and worker-b carry other pods; the controller's replica is only on worker-a.
        existing.push(bound("o1", Some("other"), "worker-b"));
        existing.push(bound("o2", Some("other"), "worker-b"));
        let mut load = Load::of(&existing, &names(&nodes));
        let mut chosen = Vec::new();
        for (turn, name) in ["x2", "x3"].iter().enumerate() {
            let p = pod(name, Some("rs-1"), json!({}));
            let n = picked(pick_node(&p, &nodes, &load, turn));
            load.add(&spread_group(&p), &n);
            chosen.push(n);
        }
        // worker-c (no pods) first, then worker-b (one fewer of this controller than worker-a).
        assert_eq!(chosen, ["worker-c", "worker-b"]);
        // Now every node has one replica: the least loaded nodes overall (worker-a and worker-c, one pod each)
        // tie, and turn 0 takes the first of them.
        let p = pod("x4", Some("rs-1"), json!({}));
        assert_eq!(picked(pick_node(&p, &nodes, &load, 0)), "worker-a");
    }

    #[test]
    fn ties_rotate_with_the_turn() {
        let nodes = nodes();
        let load = Load::of(&[], &names(&nodes));
        let p = pod("p", None, json!({}));
        let got: Vec<String> = (0..3).map(|t| picked(pick_node(&p, &nodes, &load, t))).collect();
        assert_eq!(got, ["worker-a", "worker-b", "worker-c"]);
    }

    #[test]
    fn node_selector_and_required_affinity_narrow_the_nodes() {
        let nodes = nodes();
        let load = Load::of(&[], &names(&nodes));
        let sel = pod("s", None, json!({ "nodeSelector": { "disk": "ssd" } }));
        for turn in 0..3 {
            assert_eq!(picked(pick_node(&sel, &nodes, &load, turn)), "worker-c");
        }
        let affinity_on = |key: &str, op: &str, values: Value| {
            pod(
                "a",
                None,
                json!({ "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{ "matchExpressions": [
                        { "key": key, "operator": op, "values": values }
                    ] }]
                } } } }),
            )
        };
        let affinity = |op: &str, values: Value| affinity_on("topology.kubernetes.io/zone", op, values);
        // A label no node has: NotIn and DoesNotExist hold everywhere, Exists nowhere.
        let not_gpu = affinity_on("gpu", "NotIn", json!(["yes"]));
        assert_eq!(picked(pick_node(&not_gpu, &nodes, &load, 2)), "worker-c");
        let no_gpu = affinity_on("gpu", "DoesNotExist", json!([]));
        assert_eq!(picked(pick_node(&no_gpu, &nodes, &load, 1)), "worker-b");
        let gpu = affinity_on("gpu", "Exists", json!([]));
        assert_eq!(pick_node(&gpu, &nodes, &load, 0), Pick::NoEligibleNode);
        let in_b = affinity("In", json!(["zone-b"]));
        assert_eq!(picked(pick_node(&in_b, &nodes, &load, 0)), "worker-b");
        let not_ab = affinity("NotIn", json!(["zone-a", "zone-b"]));
        assert_eq!(picked(pick_node(&not_ab, &nodes, &load, 1)), "worker-c");
        let nowhere = affinity("In", json!(["zone-x"]));
        assert_eq!(pick_node(&nowhere, &nodes, &load, 0), Pick::NoEligibleNode);
        let unknown_label = pod("u", None, json!({ "nodeSelector": { "gpu": "yes" } }));
        assert_eq!(pick_node(&unknown_label, &nodes, &load, 0), Pick::NoEligibleNode);
    }

    #[test]
    fn cordoned_and_tainted_nodes_are_skipped_unless_tolerated() {
        let nodes = vec![
            node("worker-a", "zone-a", json!({ "unschedulable": true })),
            node(
                "worker-b",
                "zone-b",
                json!({ "taints": [{ "key": "node.kubernetes.io/unreachable", "effect": "NoSchedule" }] }),
            ),
            node(
                "worker-c",
                "zone-c",
                json!({ "taints": [{ "key": "dedicated", "value": "cache", "effect": "NoExecute" }] }),
            ),
        ];
        let load = Load::of(&[], &names(&nodes));
        let plain = pod("p", None, json!({}));
        assert_eq!(pick_node(&plain, &nodes, &load, 0), Pick::NoEligibleNode);

        let tolerates_cache = pod(
            "t",
            None,
            json!({ "tolerations": [{ "key": "dedicated", "operator": "Equal", "value": "cache" }] }),
        );
        assert_eq!(picked(pick_node(&tolerates_cache, &nodes, &load, 0)), "worker-c");
        let wrong_value = pod(
            "w",
            None,
            json!({ "tolerations": [{ "key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoExecute" }] }),
        );
        assert_eq!(pick_node(&wrong_value, &nodes, &load, 0), Pick::NoEligibleNode);
        // An empty key with Exists tolerates every taint; cordoning still wins.
        let tolerates_all = pod("e", None, json!({ "tolerations": [{ "operator": "Exists" }] }));
        let got: Vec<String> = (0..2)
            .map(|t| picked(pick_node(&tolerates_all, &nodes, &load, t)))
            .collect();
        assert_eq!(got, ["worker-b", "worker-c"]);
        // A PreferNoSchedule taint does not keep pods away.
        let soft = vec![node(
            "worker-a",
            "zone-a",
            json!({ "taints": [{ "key": "k", "effect": "PreferNoSchedule" }] }),
        )];
        assert_eq!(picked(pick_node(&plain, &soft, &load, 0)), "worker-a");
    }

    #[test]
    fn bound_deleting_and_foreign_pods_are_left_alone() {
        let nodes = nodes();
        let load = Load::of(&[], &names(&nodes));
        assert_eq!(
            pick_node(&bound("b", None, "worker-a"), &nodes, &load, 0),
            Pick::AlreadyBound
        );
        let mut deleting = pod("d", None, json!({}));
        deleting.metadata.deletion_timestamp = serde_json::from_value(json!("2026-01-01T00:00:00Z")).ok();
        assert!(deleting.metadata.deletion_timestamp.is_some());
        assert_eq!(pick_node(&deleting, &nodes, &load, 0), Pick::Deleting);
        let other = pod("o", None, json!({ "schedulerName": "my-scheduler" }));
        assert_eq!(pick_node(&other, &nodes, &load, 0), Pick::OtherScheduler);
        let explicit = pod("x", None, json!({ "schedulerName": "default-scheduler" }));
        assert_eq!(picked(pick_node(&explicit, &nodes, &load, 0)), "worker-a");
    }

    #[test]
    fn load_ignores_finished_and_deleting_pods_and_foreign_nodes() {
        let ours = vec!["worker-a".to_owned(), "worker-b".to_owned()];
        let mut done = bound("done", Some("rs"), "worker-a");
        done.status = serde_json::from_value(json!({ "phase": "Succeeded" })).ok();
        let mut going = bound("going", Some("rs"), "worker-a");
        going.metadata.deletion_timestamp = serde_json::from_value(json!("2026-01-01T00:00:00Z")).ok();
        let pods = vec![
            done,
            going,
            bound("live", Some("rs"), "worker-b"),
            bound("elsewhere", Some("rs"), "someone-elses-node"),
            pod("unbound", Some("rs"), json!({})),
        ];
        let load = Load::of(&pods, &ours);
        assert_eq!(load.score("rs", "worker-a"), (0, 0));
        assert_eq!(load.score("rs", "worker-b"), (1, 1));
        assert_eq!(load.score("rs", "someone-elses-node"), (1, 0));
        // A bare pod is its own group.
        assert_eq!(spread_group(&pod("solo", None, json!({}))), "uid-solo");
    }
}
