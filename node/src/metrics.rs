//! Metrics: per-command counters kept per worker thread (so the hot path writes only
//! its own cache lines) and summed when scraped, the gauges sampled at scrape time, and
//! every Prometheus text renderer of the node (the admin port serves [`render`]; INFO
//! reads the counters, not this text).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ringcache_core::status::{HandoverStatus, HotKey, ReplicationStatus};

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

/// All workers' metrics. RESP worker `i` writes `workers[i]`; index `threads` is for the
/// admin and background threads; proxy worker `i` writes `workers[threads + 1 + i]`.
#[derive(Debug)]
pub struct Metrics {
    pub workers: Vec<WorkerMetrics>,
    resp_workers: usize,
}

/// Sum over workers of one command's counters.
#[derive(Debug, Default, Clone)]
pub struct CommandTotals {
    pub calls: u64,
    pub usec: u64,
    pub buckets: Vec<u64>,
}

impl Metrics {
    /// Counters for `commands` commands (the registry's indices) on `threads` RESP
    /// workers, one slot for the admin and background threads, and `threads` proxy
    /// workers (the proxy port runs as many).
    pub fn new(threads: usize, commands: usize) -> Self {
        let n = commands;
        Metrics {
            workers: (0..=2 * threads).map(|_| WorkerMetrics::new(n)).collect(),
            resp_workers: threads,
        }
    }

    /// The counters proxy worker `i` writes (what it runs locally; what it forwards is
    /// counted by the node that runs it).
    pub fn proxy_worker(&self, i: usize) -> &WorkerMetrics {
        self.worker(self.resp_workers + 1 + i)
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

    pub fn command_count(&self) -> usize {
        self.workers.first().map_or(0, |w| w.commands.len())
    }

    pub fn total_commands(&self) -> u64 {
        (0..self.command_count()).map(|i| self.command_totals(i).calls).sum()
    }
}

/// Counters of miss coalescing (INFO stats, /metrics).
#[derive(Debug, Default)]
pub struct CoalesceStats {
    /// Leases granted: GETs answered nil as the key's filler.
    pub fillers: AtomicU64,
    /// GETs that waited for another client's fill (counted once per GET).
    pub coalesced: AtomicU64,
    /// Waiting GETs answered nil because their wait bound passed.
    pub wait_timeouts: AtomicU64,
    /// GETs answered nil at once because too many clients waited for the key.
    pub too_many_waiters: AtomicU64,
    /// GETs that hit a key about to expire and were answered nil to refresh it early.
    pub early_refreshes: AtomicU64,
}

impl CoalesceStats {
    /// The counters now.
    pub fn snapshot(&self) -> CoalesceCounts {
        CoalesceCounts {
            fillers: self.fillers.load(Ordering::Relaxed),
            coalesced: self.coalesced.load(Ordering::Relaxed),
            wait_timeouts: self.wait_timeouts.load(Ordering::Relaxed),
            too_many_waiters: self.too_many_waiters.load(Ordering::Relaxed),
            early_refreshes: self.early_refreshes.load(Ordering::Relaxed),
        }
    }
}

/// [`CoalesceStats`] read at one time.
#[derive(Debug, Default, Clone, Copy)]
pub struct CoalesceCounts {
    pub fillers: u64,
    pub coalesced: u64,
    pub wait_timeouts: u64,
    pub too_many_waiters: u64,
    pub early_refreshes: u64,
}

impl CoalesceCounts {
    /// What changed since `base`.
    pub fn since(self, base: CoalesceCounts) -> CoalesceCounts {
        CoalesceCounts {
            fillers: self.fillers.saturating_sub(base.fillers),
            coalesced: self.coalesced.saturating_sub(base.coalesced),
            wait_timeouts: self.wait_timeouts.saturating_sub(base.wait_timeouts),
            too_many_waiters: self.too_many_waiters.saturating_sub(base.too_many_waiters),
            early_refreshes: self.early_refreshes.saturating_sub(base.early_refreshes),
        }
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
    /// Relative TTLs given a random extra (`--ttl-jitter-percent`).
    pub jittered_ttls: u64,
    /// Miss coalescing's counters.
    pub coalesce: CoalesceCounts,
    /// Reads served from a replica copy (cluster mode).
    pub replica_reads: u64,
}

/// Renders everything in the Prometheus text exposition format; `command_names[i]` is
/// the name of command index `i`.
pub fn render(
    metrics: &Metrics,
    command_names: &[&str],
    g: &Gauges,
    replication: &ReplicationStatus,
    handovers: &[HandoverStatus],
) -> String {
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
        "ringcache_replica_reads_total",
        "counter",
        "Reads served from a replica copy of their slot (READONLY or the replica port).",
        g.replica_reads.to_string(),
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
        "ringcache_jittered_ttls_total",
        "counter",
        "Relative TTLs given a random extra by --ttl-jitter-percent.",
        g.jittered_ttls.to_string(),
    );
    for (name, help, v) in [
        (
            "ringcache_coalesce_fillers_total",
            "Coalescing GETs that missed and were made the key's filler (origin queries).",
            g.coalesce.fillers,
        ),
        (
            "ringcache_coalesce_waiters_total",
            "Coalescing GETs that missed and waited for another client's fill.",
            g.coalesce.coalesced,
        ),
        (
            "ringcache_coalesce_wait_timeouts_total",
            "Waiting GETs answered nil because their wait bound passed.",
            g.coalesce.wait_timeouts,
        ),
        (
            "ringcache_coalesce_too_many_waiters_total",
            "Coalescing GETs answered nil at once because the key had too many waiters.",
            g.coalesce.too_many_waiters,
        ),
        (
            "ringcache_coalesce_early_refreshes_total",
            "GETs that hit a key about to expire and were answered nil to refresh it early.",
            g.coalesce.early_refreshes,
        ),
    ] {
        metric(name, "counter", help, v.to_string());
    }
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
    render_replication(&mut s, replication);
    render_handovers(&mut s, handovers);

    let _ = writeln!(
        s,
        "# HELP ringcache_commands_total Commands processed, by command.\n# TYPE ringcache_commands_total counter"
    );
    let totals: Vec<(usize, CommandTotals)> = (0..metrics.command_count())
        .map(|i| (i, metrics.command_totals(i)))
        .filter(|(_, t)| t.calls > 0)
        .collect();
    for (i, t) in &totals {
        let _ = writeln!(
            s,
            "ringcache_commands_total{{cmd=\"{}\"}} {}",
            command_names.get(*i).copied().unwrap_or("?"),
            t.calls
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
        let name = command_names.get(*i).copied().unwrap_or("?");
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

/// CPU time used, in seconds, as INFO's `cpu` section reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    pub sys: f64,
    pub user: f64,
    pub children_sys: f64,
    pub children_user: f64,
    /// The process' main thread (here it starts the node and waits; the workers do the
    /// serving, unlike Redis' main thread).
    pub main_thread_sys: f64,
    pub main_thread_user: f64,
}

fn rusage(who: libc::c_int) -> (f64, f64) {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_stime), secs(ru.ru_utime))
}

/// The main thread's (system, user) seconds, from /proc (zeros where unavailable).
fn main_thread_times() -> (f64, f64) {
    let pid = std::process::id();
    let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{pid}/stat")) else {
        return (0.0, 0.0);
    };
    // Fields after the command name (which may hold spaces) start at the state.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return (0.0, 0.0);
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / ticks;
    // utime and stime are fields 14 and 15 of stat: indexes 11 and 12 from the state.
    (field(12), field(11))
}

/// This process' CPU times now.
pub fn cpu_times() -> CpuTimes {
    let (sys, user) = rusage(libc::RUSAGE_SELF);
    let (children_sys, children_user) = rusage(libc::RUSAGE_CHILDREN);
    let (main_thread_sys, main_thread_user) = main_thread_times();
    CpuTimes {
        sys,
        user,
        children_sys,
        children_user,
        main_thread_sys,
        main_thread_user,
    }
}

/// A Prometheus label value, escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn head(s: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// This node's offset and backlog as a primary, each replica's lag, each link's
/// applied offset, and sync counters.
fn render_replication(s: &mut String, st: &ReplicationStatus) {
    head(
        s,
        "ringcache_replication_offset",
        "gauge",
        "Offset of the last record this node wrote as a primary.",
    );
    let _ = writeln!(s, "ringcache_replication_offset {}", st.current_offset);
    head(
        s,
        "ringcache_replication_backlog_bytes",
        "gauge",
        "Bytes held in the replication backlog.",
    );
    let _ = writeln!(s, "ringcache_replication_backlog_bytes {}", st.backlog_bytes);
    head(
        s,
        "ringcache_replication_lag_records",
        "gauge",
        "Records a replica has not acknowledged yet, by replica.",
    );
    for p in &st.peers {
        let _ = writeln!(
            s,
            "ringcache_replication_lag_records{{peer=\"{}\"}} {}",
            label(&p.replica_id),
            p.lag_records
        );
    }
    head(
        s,
        "ringcache_replication_peer_connected",
        "gauge",
        "Whether a replica's stream is connected, by replica.",
    );
    for p in &st.peers {
        let _ = writeln!(
            s,
            "ringcache_replication_peer_connected{{peer=\"{}\"}} {}",
            label(&p.replica_id),
            u8::from(p.connected)
        );
    }
    head(
        s,
        "ringcache_replication_applied_offset",
        "gauge",
        "Last offset applied from a primary, by primary.",
    );
    for l in &st.links {
        let _ = writeln!(
            s,
            "ringcache_replication_applied_offset{{primary=\"{}\"}} {}",
            label(&l.primary_id),
            l.applied_offset
        );
    }
    head(
        s,
        "ringcache_replication_syncs_total",
        "counter",
        "Replication syncs, by role (served as primary, received as replica) and kind.",
    );
    for (role, kind, n) in [
        ("served", "full", st.full_syncs_served),
        ("served", "partial", st.partial_syncs_served),
        ("received", "full", st.full_syncs_received),
        ("received", "partial", st.partial_syncs_received),
    ] {
        let _ = writeln!(
            s,
            "ringcache_replication_syncs_total{{role=\"{role}\",kind=\"{kind}\"}} {n}"
        );
    }
}

/// Name, help and value of one per-handover metric.
type HandoverMetric = (&'static str, &'static str, fn(&HandoverStatus) -> u64);

/// The counters of the active handovers, one series per handover.
fn render_handovers(s: &mut String, handovers: &[HandoverStatus]) {
    let metrics: [HandoverMetric; 7] = [
        (
            "ringcache_handover_local_hits_total",
            "Reads of handed-over slots found locally, by handover.",
            |h| h.local_hits,
        ),
        (
            "ringcache_handover_read_through_hits_total",
            "Reads of handed-over slots filled from the source, by handover.",
            |h| h.read_through_hits,
        ),
        (
            "ringcache_handover_misses_total",
            "Reads of handed-over slots found nowhere, by handover.",
            |h| h.misses,
        ),
        (
            "ringcache_handover_read_through_errors_total",
            "Read-through attempts that failed, by handover.",
            |h| h.read_through_errors,
        ),
        (
            "ringcache_handover_written_keys",
            "Keys written here since the handover began (never read through), by handover.",
            |h| h.written_keys,
        ),
        (
            "ringcache_handover_read_through_stopped",
            "1 when the handover stopped reading through (written-keys set full, or a flush), by handover.",
            |h| u64::from(h.read_through_stopped),
        ),
        ("ringcache_handover_slots", "Slots in the handover, by handover.", |h| {
            h.slots.iter().map(|r| r.len() as u64).sum()
        }),
    ];
    for (name, help, get) in metrics {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        head(s, name, kind, help);
        for h in handovers {
            let _ = writeln!(s, "{name}{{handover=\"{}\"}} {}", label(&h.id), get(h));
        }
    }
}

/// The hottest keys (at most `--hotkeys-k`: the label set stays bounded), one series
/// each, labelled with their rank (1 = hottest) and the key. Nothing but the header when
/// hot-key detection is off or nothing was counted.
pub fn render_hot_keys(s: &mut String, hot: &[HotKey]) {
    head(
        s,
        "ringcache_hot_key_ops_per_second",
        "gauge",
        "Estimated commands per second on each of the hottest keys, by rank and key.",
    );
    for (rank, h) in hot.iter().enumerate() {
        let _ = writeln!(
            s,
            "ringcache_hot_key_ops_per_second{{rank=\"{}\",key=\"{}\"}} {}",
            rank + 1,
            key_label(&h.key),
            h.ops_per_sec
        );
    }
}

/// Reads of hot keys the proxy port spread over their copies, by the copy that got
/// them (`--hot-key-replica-reads`).
pub fn render_spread_reads(s: &mut String, to_primary: u64, to_replica: u64) {
    head(
        s,
        "ringcache_proxy_hot_key_reads_total",
        "counter",
        "Reads of hot keys the proxy port spread over their copies, by the copy that served them.",
    );
    let _ = writeln!(
        s,
        "ringcache_proxy_hot_key_reads_total{{copy=\"primary\"}} {to_primary}"
    );
    let _ = writeln!(
        s,
        "ringcache_proxy_hot_key_reads_total{{copy=\"replica\"}} {to_replica}"
    );
}

/// What this node shipped to its replicas: bytes of records, write commands shipped as
/// themselves, and whole values replicas asked for again.
pub fn render_shipped(s: &mut String, bytes: u64, commands: u64, refetches: u64) {
    head(
        s,
        "ringcache_replication_shipped_bytes_total",
        "counter",
        "Bytes of replication records this node appended as a primary (each once, however many replicas read it).",
    );
    let _ = writeln!(s, "ringcache_replication_shipped_bytes_total {bytes}");
    head(
        s,
        "ringcache_replication_shipped_commands_total",
        "counter",
        "Collection writes shipped as the command itself rather than the whole value.",
    );
    let _ = writeln!(s, "ringcache_replication_shipped_commands_total {commands}");
    head(
        s,
        "ringcache_replication_refetches_total",
        "counter",
        "Whole values shipped because a replica found a value that did not fit a shipped command.",
    );
    let _ = writeln!(s, "ringcache_replication_refetches_total {refetches}");
}

/// A key as a Prometheus label value: its UTF-8 text escaped as [`label`] does, each
/// byte that is not UTF-8 as `\\xNN` (which reads back as `\xNN`).
fn key_label(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len() + 8);
    for chunk in key.utf8_chunks() {
        out.push_str(&label(chunk.valid()));
        for b in chunk.invalid() {
            let _ = write!(out, "\\\\x{b:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringcache_core::status::{LinkStatus, PeerStatus};
    use ringcache_core::topology::SlotRange;

    fn rendered(replication: &ReplicationStatus, handovers: &[HandoverStatus]) -> String {
        let metrics = Metrics::new(1, 2);
        metrics.worker(0).record(Some(1), Duration::from_micros(7));
        render(&metrics, &["get", "set"], &Gauges::default(), replication, handovers)
    }

    #[test]
    fn commands_render_by_name() {
        let text = rendered(&ReplicationStatus::default(), &[]);
        assert!(text.contains("ringcache_commands_total{cmd=\"set\"} 1\n"), "{text}");
        assert!(!text.contains("cmd=\"get\""), "{text}");
        assert!(text.contains("ringcache_command_duration_seconds_bucket{cmd=\"set\",le=\"0.00001\"} 1\n"));
    }

    #[test]
    fn replication_renders_per_peer_and_escapes_labels() {
        let st = ReplicationStatus {
            current_offset: 42,
            backlog_first_offset: 1,
            backlog_bytes: 100,
            peers: vec![PeerStatus {
                replica_id: "b\"x".into(),
                acked_offset: 40,
                lag_records: 2,
                connected: true,
            }],
            links: vec![LinkStatus {
                primary_id: "c".into(),
                applied_offset: 7,
                connected: true,
            }],
            full_syncs_served: 1,
            partial_syncs_served: 0,
            full_syncs_received: 2,
            partial_syncs_received: 3,
            fencing: vec![],
        };
        let text = rendered(&st, &[]);
        assert!(text.contains("ringcache_replication_offset 42\n"), "{text}");
        assert!(
            text.contains("ringcache_replication_lag_records{peer=\"b\\\"x\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("ringcache_replication_applied_offset{primary=\"c\"} 7\n"),
            "{text}"
        );
        assert!(text.contains("ringcache_replication_syncs_total{role=\"received\",kind=\"partial\"} 3\n"));
    }

    #[test]
    fn hot_keys_render_by_rank_with_escaped_keys() {
        let mut s = String::new();
        render_hot_keys(
            &mut s,
            &[
                HotKey {
                    key: b"user:\"1\"\n".to_vec(),
                    ops_per_sec: 900,
                },
                HotKey {
                    key: b"bin\xff\\".to_vec(),
                    ops_per_sec: 5,
                },
            ],
        );
        assert!(
            s.contains("ringcache_hot_key_ops_per_second{rank=\"1\",key=\"user:\\\"1\\\"\\n\"} 900\n"),
            "{s}"
        );
        assert!(
            s.contains("ringcache_hot_key_ops_per_second{rank=\"2\",key=\"bin\\\\xff\\\\\"} 5\n"),
            "{s}"
        );
        let mut empty = String::new();
        render_hot_keys(&mut empty, &[]);
        assert!(!empty.contains("rank="), "{empty}");
    }

    #[test]
    fn handovers_render_per_handover() {
        let h = HandoverStatus {
            id: "a\"b".into(),
            slots: vec![SlotRange::new(0, 9)],
            local_hits: 90,
            read_through_hits: 5,
            misses: 5,
            written_keys: 3,
            ..Default::default()
        };
        let text = rendered(&ReplicationStatus::default(), std::slice::from_ref(&h));
        assert!(
            text.contains("ringcache_handover_misses_total{handover=\"a\\\"b\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("ringcache_handover_slots{handover=\"a\\\"b\"} 10\n"),
            "{text}"
        );
    }
}
