//! Metrics kept per worker thread (so the hot path writes only its own cache lines)
//! and summed when scraped. Rendered in the Prometheus text format by `admin`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::cmd::registry;

/// Upper bounds of the latency histogram buckets, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 12] = [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000];

/// Counters of one command on one worker.
#[derive(Debug, Default)]
pub struct CommandMetrics {
    pub calls: AtomicU64,
    pub usec: AtomicU64,
    /// One counter per bucket plus +Inf.
    pub buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
}

/// Counters written by one worker thread only.
#[derive(Debug)]
pub struct WorkerMetrics {
    pub commands: Box<[CommandMetrics]>,
    pub unknown_commands: AtomicU64,
}

/// Adds to a counter that only one thread writes: a plain load and store, no locked
/// read-modify-write on the hot path.
#[inline]
fn bump(c: &AtomicU64, by: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(by), Ordering::Relaxed);
}

impl WorkerMetrics {
    fn new(n: usize) -> Self {
        WorkerMetrics {
            commands: (0..n).map(|_| CommandMetrics::default()).collect(),
            unknown_commands: AtomicU64::new(0),
        }
    }

    /// Records one command. Call only from the worker that owns this struct.
    #[inline]
    pub fn record(&self, index: Option<usize>, took: Duration) {
        let Some(m) = index.and_then(|i| self.commands.get(i)) else {
            bump(&self.unknown_commands, 1);
            return;
        };
        let us = took.as_micros() as u64;
        bump(&m.calls, 1);
        bump(&m.usec, us);
        let b = LATENCY_BUCKETS_US
            .iter()
            .position(|&ub| us <= ub)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        bump(&m.buckets[b], 1);
    }
}

/// All workers' metrics. Worker `i` writes `workers[i]`; index `threads` is for the
/// admin and background threads.
#[derive(Debug)]
pub struct Metrics {
    pub workers: Vec<WorkerMetrics>,
}

/// Sum over workers of one command's counters.
#[derive(Debug, Default, Clone)]
pub struct CommandTotals {
    pub calls: u64,
    pub usec: u64,
    pub buckets: Vec<u64>,
}

impl Metrics {
    pub fn new(threads: usize) -> Self {
        let n = registry().commands.len();
        Metrics {
            workers: (0..=threads).map(|_| WorkerMetrics::new(n)).collect(),
        }
    }

    pub fn worker(&self, i: usize) -> &WorkerMetrics {
        &self.workers[i.min(self.workers.len() - 1)]
    }

    pub fn command_totals(&self, index: usize) -> CommandTotals {
        let mut t = CommandTotals {
            buckets: vec![0; LATENCY_BUCKETS_US.len() + 1],
            ..Default::default()
        };
        for w in &self.workers {
            let m = &w.commands[index];
            t.calls += m.calls.load(Ordering::Relaxed);
            t.usec += m.usec.load(Ordering::Relaxed);
            for (acc, b) in t.buckets.iter_mut().zip(m.buckets.iter()) {
                *acc += b.load(Ordering::Relaxed);
            }
        }
        t
    }

    pub fn total_commands(&self) -> u64 {
        (0..registry().commands.len())
            .map(|i| self.command_totals(i).calls)
            .sum()
    }
}

/// Values sampled from the store and server at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    pub keys: usize,
    pub expires: usize,
    pub used_memory: usize,
    pub maxmemory: usize,
    pub rss: usize,
    pub hits: u64,
    pub misses: u64,
    pub evicted: u64,
    pub expired: u64,
    pub connected_clients: usize,
    pub total_connections: u64,
    /// Replication metrics, already in the exposition format
    /// ([`crate::replication::render_metrics`]).
    pub replication: String,
}

/// Renders everything in the Prometheus text exposition format.
pub fn render(metrics: &Metrics, g: &Gauges) -> String {
    let mut s = String::with_capacity(16 * 1024);
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    metric("ringcache_keys", "gauge", "Keys stored.", g.keys.to_string());
    metric(
        "ringcache_keys_with_ttl",
        "gauge",
        "Keys stored with a TTL.",
        g.expires.to_string(),
    );
    metric(
        "ringcache_used_memory_bytes",
        "gauge",
        "Bytes of keys and values accounted against maxmemory.",
        g.used_memory.to_string(),
    );
    metric(
        "ringcache_maxmemory_bytes",
        "gauge",
        "The maxmemory limit.",
        g.maxmemory.to_string(),
    );
    metric(
        "ringcache_resident_memory_bytes",
        "gauge",
        "Resident set size of the process.",
        g.rss.to_string(),
    );
    metric(
        "ringcache_keyspace_hits_total",
        "counter",
        "Read lookups that found their key.",
        g.hits.to_string(),
    );
    metric(
        "ringcache_keyspace_misses_total",
        "counter",
        "Read lookups that did not find their key.",
        g.misses.to_string(),
    );
    metric(
        "ringcache_evicted_keys_total",
        "counter",
        "Keys evicted to stay under maxmemory.",
        g.evicted.to_string(),
    );
    metric(
        "ringcache_expired_keys_total",
        "counter",
        "Keys removed because their TTL passed.",
        g.expired.to_string(),
    );
    metric(
        "ringcache_connected_clients",
        "gauge",
        "Open client connections.",
        g.connected_clients.to_string(),
    );
    metric(
        "ringcache_connections_received_total",
        "counter",
        "Client connections accepted.",
        g.total_connections.to_string(),
    );
    s.push_str(&g.replication);

    let reg = registry();
    let _ = writeln!(
        s,
        "# HELP ringcache_commands_total Commands processed, by command.\n# TYPE ringcache_commands_total counter"
    );
    let totals: Vec<(usize, CommandTotals)> = (0..reg.commands.len())
        .map(|i| (i, metrics.command_totals(i)))
        .filter(|(_, t)| t.calls > 0)
        .collect();
    for (i, t) in &totals {
        let _ = writeln!(
            s,
            "ringcache_commands_total{{cmd=\"{}\"}} {}",
            reg.commands[*i].name, t.calls
        );
    }
    let unknown: u64 = metrics
        .workers
        .iter()
        .map(|w| w.unknown_commands.load(Ordering::Relaxed))
        .sum();
    let _ = writeln!(s, "# HELP ringcache_unknown_commands_total Requests naming no known command.\n# TYPE ringcache_unknown_commands_total counter\nringcache_unknown_commands_total {unknown}");
    let _ = writeln!(s, "# HELP ringcache_command_duration_seconds Command execution time, by command.\n# TYPE ringcache_command_duration_seconds histogram");
    for (i, t) in &totals {
        let name = reg.commands[*i].name;
        let mut cum = 0;
        for (b, ub) in LATENCY_BUCKETS_US.iter().enumerate() {
            cum += t.buckets[b];
            let _ = writeln!(
                s,
                "ringcache_command_duration_seconds_bucket{{cmd=\"{name}\",le=\"{}\"}} {cum}",
                *ub as f64 / 1e6
            );
        }
        cum += t.buckets[LATENCY_BUCKETS_US.len()];
        let _ = writeln!(
            s,
            "ringcache_command_duration_seconds_bucket{{cmd=\"{name}\",le=\"+Inf\"}} {cum}"
        );
        let _ = writeln!(
            s,
            "ringcache_command_duration_seconds_sum{{cmd=\"{name}\"}} {}",
            t.usec as f64 / 1e6
        );
        let _ = writeln!(
            s,
            "ringcache_command_duration_seconds_count{{cmd=\"{name}\"}} {}",
            t.calls
        );
    }
    s
}

/// Resident set size of this process, from /proc (0 where unavailable).
pub fn rss_bytes() -> usize {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
