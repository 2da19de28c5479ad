//! The operator's Prometheus metrics: reconciles and their duration, errors by reason,
//! and per-cluster gauges, rendered in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use parking_lot::Mutex;

use crate::plan::health::Health;

/// Upper bounds of the reconcile duration buckets, in seconds.
const BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug, Default)]
struct Reconciles {
    ok: u64,
    errors: BTreeMap<&'static str, u64>,
    /// One count per bucket plus +Inf.
    buckets: [u64; BUCKETS.len() + 1],
    seconds: f64,
}

/// One cluster's gauges.
#[derive(Debug, Clone, PartialEq)]
struct ClusterGauges {
    ready: bool,
    epoch: u64,
    slots_covered: usize,
    ready_replicas: usize,
    hit_rate: Option<f64>,
}

/// Every metric of the operator.
#[derive(Debug, Default)]
pub struct Metrics {
    reconciles: Mutex<Reconciles>,
    clusters: Mutex<BTreeMap<(String, String), ClusterGauges>>,
}

impl Metrics {
    /// Records one reconcile that took `took` and failed with `error` (its reason), if it did.
    pub fn reconciled(&self, took: Duration, error: Option<&'static str>) {
        let mut r = self.reconciles.lock();
        match error {
            None => r.ok += 1,
            Some(reason) => *r.errors.entry(reason).or_default() += 1,
        }
        let secs = took.as_secs_f64();
        let b = BUCKETS.iter().position(|&ub| secs <= ub).unwrap_or(BUCKETS.len());
        r.buckets[b] += 1;
        r.seconds += secs;
    }

    /// The gauges of cluster `namespace/name` after a reconcile.
    pub fn cluster(&self, namespace: &str, name: &str, h: &Health) {
        self.clusters.lock().insert(
            (namespace.to_string(), name.to_string()),
            ClusterGauges {
                ready: h.ready,
                epoch: h.epoch,
                slots_covered: h.slots_covered,
                ready_replicas: h.ready_replicas,
                hit_rate: h.hit_rate,
            },
        );
    }

    /// The text exposition; `exists(namespace, name)` drops clusters deleted since.
    pub fn render(&self, exists: impl Fn(&str, &str) -> bool) -> String {
        let mut s = String::new();
        let r = self.reconciles.lock();
        let head = |s: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            &mut s,
            "ringcache_operator_reconciles_total",
            "counter",
            "Reconciles of CacheClusters, by result.",
        );
        let errors: u64 = r.errors.values().sum();
        let _ = writeln!(s, "ringcache_operator_reconciles_total{{result=\"ok\"}} {}", r.ok);
        let _ = writeln!(s, "ringcache_operator_reconciles_total{{result=\"error\"}} {errors}");
        head(
            &mut s,
            "ringcache_operator_reconcile_errors_total",
            "counter",
            "Failed reconciles, by reason.",
        );
        for (reason, n) in &r.errors {
            let _ = writeln!(
                s,
                "ringcache_operator_reconcile_errors_total{{reason=\"{reason}\"}} {n}"
            );
        }
        head(
            &mut s,
            "ringcache_operator_reconcile_duration_seconds",
            "histogram",
            "Time one reconcile took.",
        );
        let mut cum = 0;
        for (i, ub) in BUCKETS.iter().enumerate() {
            cum += r.buckets[i];
            let _ = writeln!(
                s,
                "ringcache_operator_reconcile_duration_seconds_bucket{{le=\"{ub}\"}} {cum}"
            );
        }
        cum += r.buckets[BUCKETS.len()];
        let _ = writeln!(
            s,
            "ringcache_operator_reconcile_duration_seconds_bucket{{le=\"+Inf\"}} {cum}"
        );
        let _ = writeln!(s, "ringcache_operator_reconcile_duration_seconds_sum {}", r.seconds);
        let _ = writeln!(s, "ringcache_operator_reconcile_duration_seconds_count {cum}");
        drop(r);
        let mut clusters = self.clusters.lock();
        clusters.retain(|(ns, name), _| exists(ns, name));
        type Gauge = (&'static str, &'static str, fn(&ClusterGauges) -> Option<f64>);
        let gauges: [Gauge; 5] = [
            (
                "ringcache_cluster_ready",
                "1 when every slot is served with its copies.",
                |g| Some(f64::from(u8::from(g.ready))),
            ),
            ("ringcache_cluster_epoch", "Topology epoch of the cluster.", |g| {
                Some(g.epoch as f64)
            }),
            (
                "ringcache_cluster_slots_covered",
                "Slots with a serving primary.",
                |g| Some(g.slots_covered as f64),
            ),
            ("ringcache_cluster_ready_replicas", "Ready node pods.", |g| {
                Some(g.ready_replicas as f64)
            }),
            (
                "ringcache_cluster_hit_ratio",
                "Keyspace hits over reads in the last observation window.",
                |g| g.hit_rate,
            ),
        ];
        for (name, help, get) in gauges {
            head(&mut s, name, "gauge", help);
            for ((ns, cluster), g) in clusters.iter() {
                if let Some(v) = get(g) {
                    let _ = writeln!(s, "{name}{{namespace=\"{ns}\",cachecluster=\"{cluster}\"}} {v}");
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::health::Phase;

    #[test]
    fn renders_counters_histogram_and_live_clusters_only() {
        let m = Metrics::default();
        m.reconciled(Duration::from_millis(30), None);
        m.reconciled(Duration::from_secs(20), Some("Topology"));
        let h = Health {
            phase: Phase::Running,
            ready: true,
            epoch: 4,
            slots_covered: 16384,
            ready_replicas: 3,
            members: vec![],
            hit_rate: Some(0.5),
            conditions: vec![],
        };
        m.cluster("ns", "a", &h);
        m.cluster("ns", "gone", &h);
        let text = m.render(|_, name| name != "gone");
        assert!(
            text.contains("ringcache_operator_reconciles_total{result=\"ok\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("ringcache_operator_reconcile_errors_total{reason=\"Topology\"} 1\n"));
        assert!(text.contains("ringcache_operator_reconcile_duration_seconds_bucket{le=\"0.05\"} 1\n"));
        assert!(text.contains("ringcache_operator_reconcile_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("ringcache_cluster_epoch{namespace=\"ns\",cachecluster=\"a\"} 4\n"));
        assert!(!text.contains("cachecluster=\"gone\""));
    }
}
