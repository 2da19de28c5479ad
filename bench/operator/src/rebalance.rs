//! The hit-rate curve of a scale-out 3 -> 5 under the cache-aside load of
//! `ringcache_tests::load`, and its summary.

use std::path::Path;
use std::time::Duration;

use ringcache_tests::load::{lost_writes, Counters, Load, Sample, Shape, Target};
use serde_json::{json, Value};

use crate::redis_cluster::RedisCluster;
use crate::R;

/// What one variant's run produced.
pub struct Run {
    pub variant: String,
    /// Seconds since the load started: the scale command, and the change complete.
    pub t_scale: f64,
    pub t_done: f64,
    pub samples: Vec<Sample>,
    /// (seconds since the load started, what happened)
    pub events: Vec<(f64, String)>,
    pub lost: Vec<String>,
    pub writes: u64,
    pub first_errors: Vec<String>,
    pub notes: Vec<String>,
}

fn sum(samples: &[&Sample]) -> (u64, u64, u64) {
    samples
        .iter()
        .fold((0, 0, 0), |(h, m, e), s| (h + s.hits, m + s.misses, e + s.errors))
}

impl Run {
    pub fn new(variant: &str, load: &Load, t_scale: f64, t_done: f64, events: Vec<(f64, String)>) -> Run {
        Run {
            variant: variant.to_string(),
            t_scale,
            t_done,
            samples: load.samples(),
            events,
            lost: Vec::new(),
            writes: 0,
            first_errors: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn finish(&mut self, counters: &Counters, lost: Vec<String>) {
        self.writes = counters.writes.load(std::sync::atomic::Ordering::Relaxed);
        self.first_errors = counters.first_errors.lock().map(|f| f.clone()).unwrap_or_default();
        self.lost = lost;
    }

    fn phase(&self, s: &Sample) -> &'static str {
        // A sample covers the second before `at`.
        if s.at <= self.t_scale {
            "baseline"
        } else if s.at - 1.0 < self.t_done {
            "change"
        } else {
            "after"
        }
    }

    pub fn summary(&self) -> Value {
        // The first 2 s warm the load's connections up.
        let baseline: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.at > 2.0 && self.phase(s) == "baseline")
            .collect();
        let change: Vec<&Sample> = self.samples.iter().filter(|s| self.phase(s) == "change").collect();
        let (bh, bm, be) = sum(&baseline);
        let (ch, cm, ce) = sum(&change);
        let base_secs = baseline.len().max(1) as f64;
        let base_rate = bh as f64 / (bh + bm).max(1) as f64;
        let lowest =
            change
                .iter()
                .filter_map(|s| s.hit_rate().map(|r| (r, s.at)))
                .fold(None::<(f64, f64)>, |lo, (r, at)| match lo {
                    Some((l, _)) if l <= r => lo,
                    _ => Some((r, at)),
                });
        let lowest_ops = change.iter().map(|s| s.hits + s.misses).min();
        let base_origin_per_s = bm as f64 / base_secs;
        let change_secs = change.len() as f64;
        json!({
            "variant": self.variant,
            "time_to_complete_s": round(self.t_done - self.t_scale, 1),
            "baseline": {
                "seconds": baseline.len(),
                "hit_rate": round(base_rate, 5),
                "ops_per_s": round((bh + bm) as f64 / base_secs, 0),
                "origin_reads_per_s": round(base_origin_per_s, 1),
                "errors": be,
            },
            "change": {
                "seconds": change.len(),
                "hit_rate": round(ch as f64 / (ch + cm).max(1) as f64, 5),
                "lowest_sample_hit_rate": lowest.map(|l| round(l.0, 5)),
                "lowest_sample_at_s_after_scale": lowest.map(|l| round(l.1 - self.t_scale, 0)),
                "lowest_over_baseline": lowest.map(|l| round(l.0 / base_rate.max(f64::MIN_POSITIVE), 4)),
                "ops_per_s": round((ch + cm) as f64 / change_secs.max(1.0), 0),
                "lowest_sample_ops_per_s": lowest_ops,
                "origin_reads": cm,
                "origin_reads_at_baseline_rate": round(base_origin_per_s * change_secs, 0),
                "errors": ce,
            },
            "writes_during_run": self.writes,
            "acknowledged_writes_lost": self.lost.len(),
            "lost_examples": self.lost.iter().take(5).collect::<Vec<_>>(),
            "first_errors": self.first_errors.iter().take(5).collect::<Vec<_>>(),
            "events": self.events.iter().map(|(t, e)| json!({"at_s_after_scale": round(t - self.t_scale, 1), "what": e})).collect::<Vec<_>>(),
            "notes": self.notes,
        })
    }

    /// `rebalance-<variant>.json` (the summary) and `.csv` (one row per second).
    pub fn write(&self, out: &Path) -> R<Value> {
        let summary = self.summary();
        let json_path = out.join(format!("rebalance-{}.json", self.variant));
        let text = serde_json::to_string_pretty(&summary).map_err(|e| format!("serializing: {e}"))?;
        std::fs::write(&json_path, text + "\n").map_err(|e| format!("{}: {e}", json_path.display()))?;
        let mut csv = String::from("t_since_scale_s,hit_rate,hits,origin_reads_per_s,errors_per_s,phase\n");
        for s in &self.samples {
            csv.push_str(&format!(
                "{:.1},{},{},{},{},{}\n",
                s.at - self.t_scale,
                s.hit_rate().map(|r| format!("{r:.5}")).unwrap_or_default(),
                s.hits,
                s.misses,
                s.errors,
                self.phase(s)
            ));
        }
        let csv_path = out.join(format!("rebalance-{}.csv", self.variant));
        std::fs::write(&csv_path, csv).map_err(|e| format!("{}: {e}", csv_path.display()))?;
        eprintln!("wrote {} and {}", json_path.display(), csv_path.display());
        Ok(summary)
    }
}

pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

pub fn shape() -> Shape {
    Shape::default()
}

/// Redis Cluster: 3 primaries under the load, then 2 empty primaries added with
/// `--cluster add-node` and `--cluster rebalance --cluster-use-empty-masters`.
pub fn redis(base_port: u16, baseline: Duration, tail: Duration) -> R<Run> {
    let rc = RedisCluster::start(base_port, 5, 5000)?;
    rc.create(&[0, 1, 2], 0)?;
    eprintln!("redis: 3-primary cluster created on ports {base_port}..");
    let target = Target::Cluster(rc.urls(&[0, 1, 2]));
    let load = Load::start(target, None, shape()).map_err(|e| format!("starting the load: {e}"))?;
    std::thread::sleep(baseline);
    let since = |load: &Load| load.started.elapsed().as_secs_f64();
    let t_scale = since(&load);
    let mut events = vec![(t_scale, "redis-cli --cluster add-node x2".to_string())];
    let result = (|| -> R<()> {
        rc.add_node(3, 0)?;
        rc.add_node(4, 0)?;
        rc.wait_agreed(&[0, 1, 2, 3, 4], Duration::from_secs(60))?;
        events.push((
            since(&load),
            "the 5 nodes agree; redis-cli --cluster rebalance".to_string(),
        ));
        let out = rc.rebalance(0)?;
        let moves = out.lines().filter(|l| l.starts_with("Moving ")).count();
        events.push((since(&load), format!("rebalance returned ({moves} 'Moving' batches)")));
        Ok(())
    })();
    let t_done = since(&load);
    if let Err(e) = &result {
        events.push((t_done, format!("failed: {e}")));
    }
    std::thread::sleep(tail);
    let mut run = Run::new("redis", &load, t_scale, t_done, events);
    let counters = load.stop();
    let lost = lost_writes(&Target::Cluster(rc.urls(&[0, 1, 2, 3, 4])), None, &counters)
        .map_err(|e| format!("reading the writes back: {e}"))?;
    run.finish(&counters, lost);
    if let Err(e) = result {
        run.notes.push(format!("FAILED: {e}"));
    }
    Ok(run)
}
