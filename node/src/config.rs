//! Command-line flags and `RINGCACHE_*` environment variables.

use std::net::IpAddr;

use clap::Parser;

use crate::hotkeys::HotKeysConfig;
use crate::store::{bloom, ttl_jitter, BloomParams, Policy};
use crate::util::size::parse_bytes;

/// ringcache-node: a Redis-compatible, multi-core cache node.
#[derive(Debug, Clone, Parser)]
#[command(name = "ringcache-node", version, about)]
pub struct Config {
    /// Address to listen on (in Kubernetes: the pod IP).
    #[arg(long, env = "RINGCACHE_BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,

    /// Redis protocol port (0 picks a free port).
    #[arg(long, env = "RINGCACHE_PORT", default_value_t = 6379)]
    pub port: u16,

    /// HTTP port for /metrics, /healthz and /readyz (0 picks a free port).
    #[arg(long, env = "RINGCACHE_ADMIN_PORT", default_value_t = 9121)]
    pub admin_port: u16,

    /// Memory limit for keys and values, e.g. 1gb, 512mb, 100000 (bytes).
    /// Default: 80 % of the cgroup memory limit, else 1gb.
    #[arg(long, env = "RINGCACHE_MAXMEMORY", value_parser = parse_bytes)]
    pub maxmemory: Option<u64>,

    /// Eviction policy: s3fifo, allkeys-lru, volatile-ttl or noeviction.
    #[arg(long, env = "RINGCACHE_MAXMEMORY_POLICY", default_value = "s3fifo", value_parser = parse_policy)]
    pub maxmemory_policy: Policy,

    /// Password clients must give with AUTH or HELLO. Prefer the environment variable:
    /// a flag shows in any process listing.
    #[arg(long, env = "RINGCACHE_REQUIREPASS", hide_env_values = true)]
    pub requirepass: Option<String>,

    /// The credential every control RPC must carry (`authorization: Bearer <token>`);
    /// required with --cluster-enabled, so the control port obeys only whoever holds it
    /// (in Kubernetes: the operator, from a Secret it creates). Prefer the environment
    /// variable: a flag shows in any process listing.
    #[arg(long, env = "RINGCACHE_CONTROL_TOKEN", hide_env_values = true)]
    pub control_token: Option<String>,

    /// Worker threads (default: the number of CPUs).
    #[arg(long, env = "RINGCACHE_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    /// Largest bulk string a request may carry, e.g. 512mb.
    #[arg(long, env = "RINGCACHE_PROTO_MAX_BULK_LEN", default_value = "512mb", value_parser = parse_bytes)]
    pub proto_max_bulk_len: u64,

    /// Largest incomplete request a client may have buffered, e.g. 1gb.
    #[arg(long, env = "RINGCACHE_CLIENT_QUERY_BUFFER_LIMIT", default_value = "1gb", value_parser = parse_bytes)]
    pub client_query_buffer_limit: u64,

    /// Proxy port for cluster-unaware clients: any key through any node (0 picks a
    /// free port).
    #[arg(long, env = "RINGCACHE_PROXY_PORT", default_value_t = 6380)]
    pub proxy_port: u16,

    /// Replica port: the address cluster clients see as this node's replicas (CLUSTER
    /// SLOTS, SHARDS, NODES). `READONLY` is implied there: reads of the slots this node
    /// copies are served, writes get `-MOVED` to the slot's primary. Same AUTH as the
    /// RESP port. 0 picks a free port; `off` turns it off (clients then send `READONLY`
    /// on the RESP port).
    #[arg(long, env = "RINGCACHE_REPLICA_PORT", default_value = "6381", value_parser = parse_replica_port)]
    pub replica_port: ReplicaPort,

    /// gRPC control port for the operator and peers (0 picks a free port).
    #[arg(long, env = "RINGCACHE_CONTROL_PORT", default_value_t = 7379)]
    pub control_port: u16,

    /// Cluster mode: serve no keys until a topology is applied, then follow it
    /// (redirects, replicas, handovers). Without it the node owns every slot.
    #[arg(long, env = "RINGCACHE_CLUSTER_ENABLED")]
    pub cluster_enabled: bool,

    /// Stable node id used in topologies (in Kubernetes: the pod name). Default: random.
    #[arg(long, env = "RINGCACHE_NODE_ID")]
    pub node_id: Option<String>,

    /// Acknowledged writes (`minReplicasToAck`): a write's reply waits until this many
    /// replicas of its slot have it, else `-NOREPLICAS` after --replica-ack-timeout-ms
    /// (the write stays applied on the primary, as with Redis WAIT). 0: asynchronous.
    #[arg(long, env = "RINGCACHE_MIN_REPLICAS_TO_ACK", default_value_t = 0)]
    pub min_replicas_to_ack: u16,

    /// How long a write waits for replica acknowledgements (with --min-replicas-to-ack).
    #[arg(long, env = "RINGCACHE_REPLICA_ACK_TIMEOUT_MS", default_value_t = 1000)]
    pub replica_ack_timeout_ms: u64,

    /// Hot-key detection: count the first key of a sample of keyed commands and report
    /// the hottest (RINGCACHE.HOTKEYS, /metrics, GetStatus). `--hotkeys=false` turns it off.
    #[arg(long, env = "RINGCACHE_HOTKEYS", default_value_t = true, action = clap::ArgAction::Set)]
    pub hotkeys: bool,

    /// How many hot keys are reported by default (and exported to /metrics).
    #[arg(long, env = "RINGCACHE_HOTKEYS_K", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub hotkeys_k: u16,

    /// The hot-key window, seconds: rates are measured over it and a key that cools
    /// down leaves the list within it.
    #[arg(long, env = "RINGCACHE_HOTKEYS_WINDOW", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub hotkeys_window: u64,

    /// Count 1 in N keyed commands for hot keys (1: every one); rates are scaled back
    /// by N.
    #[arg(long, env = "RINGCACHE_HOTKEYS_SAMPLE", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub hotkeys_sample: u32,

    /// Hot-key replica reads on the proxy port: reads of a key this node sees at least
    /// this many times a second (by the hot-key sketch) are spread over the key's
    /// copies, the replicas included, which may answer a replication lag behind its
    /// latest write. 0 (the default) turns it off.
    #[arg(long, env = "RINGCACHE_HOT_KEY_REPLICA_READS", default_value_t = 0)]
    pub hot_key_replica_reads: u64,

    /// Log format: text or json.
    #[arg(long, env = "RINGCACHE_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,

    /// False-positive rate of a Bloom filter BF.ADD, BF.MADD or BF.INSERT creates,
    /// in (0, 1); above 0.25 counts as 0.25 (RedisBloom's bf-error-rate).
    #[arg(long, env = "RINGCACHE_BF_ERROR_RATE", default_value_t = 0.01, value_parser = parse_bf_error_rate)]
    pub bf_error_rate: f64,

    /// Items the first sub-filter of such a filter holds, 1 to 2^30 (RedisBloom's
    /// bf-initial-size).
    #[arg(long, env = "RINGCACHE_BF_INITIAL_SIZE", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=bloom::CAPACITY_MAX as u64))]
    pub bf_initial_size: u64,

    /// Size factor between a filter's sub-filters, 0 to 32768; 0 makes filters
    /// non-scaling (RedisBloom's bf-expansion-factor).
    #[arg(long, env = "RINGCACHE_BF_EXPANSION", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(0..=bloom::EXPANSION_MAX))]
    pub bf_expansion: u32,

    /// Adds a uniformly random 0 to N % to every relative TTL a command sets (SET
    /// EX/PX, SETEX, PSETEX, EXPIRE, PEXPIRE, GETEX EX/PX), so keys written together do
    /// not all expire together. 0 to 100; 0 (the default) is off. Absolute times
    /// (EXAT, PXAT, EXPIREAT, PEXPIREAT) are kept as given.
    #[arg(long, env = "RINGCACHE_TTL_JITTER_PERCENT", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=i64::from(ttl_jitter::MAX_PERCENT)))]
    pub ttl_jitter_percent: u8,

    /// Miss coalescing by default: GETs of keys matching this glob pattern coalesce
    /// (one filler, the others wait for its SET) on every connection that did not send
    /// RINGCACHE.COALESCE ON or OFF. Repeatable (comma-separated in the environment);
    /// none by default.
    #[arg(
        long = "coalesce-pattern",
        env = "RINGCACHE_COALESCE_PATTERNS",
        value_delimiter = ','
    )]
    pub coalesce_patterns: Vec<String>,

    /// Early refresh for --coalesce-pattern keys: a GET that hits such a key expiring
    /// within this many ms, while nobody refreshes it, gets nil (its client refreshes
    /// it); the others keep getting the value. 0 (the default) is off.
    #[arg(long, env = "RINGCACHE_COALESCE_EARLY_MS", default_value_t = 0)]
    pub coalesce_early_ms: u64,
}

fn parse_bf_error_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(e) if e > 0.0 && e < 1.0 => Ok(e.min(bloom::ERROR_RATE_CAP)),
        _ => Err("expected a number between 0 and 1 (both excluded)".to_string()),
    }
}

/// `--replica-port`: a port, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaPort {
    Off,
    /// 0 picks a free port.
    Port(u16),
}

fn parse_replica_port(s: &str) -> Result<ReplicaPort, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(ReplicaPort::Off);
    }
    s.parse()
        .map(ReplicaPort::Port)
        .map_err(|_| "expected a port (0 to 65535) or off".to_string())
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    Policy::parse(s).ok_or_else(|| "expected one of s3fifo, allkeys-lru, volatile-ttl, noeviction".to_string())
}

/// The control token of [`Config::for_tests`].
pub const TEST_CONTROL_TOKEN: &str = "test-control-token";

/// 80 % of the cgroup (v2 or v1) memory limit, if the process has one.
pub fn cgroup_default_maxmemory() -> Option<u64> {
    let v2 = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok();
    let v1 = || std::fs::read_to_string("/sys/fs/cgroup/memory/memory.limit_in_bytes").ok();
    let raw = v2.or_else(v1)?;
    let limit: u64 = raw.trim().parse().ok()?;
    // cgroup v1 reports "no limit" as a huge number.
    if limit >= (1u64 << 60) {
        return None;
    }
    Some(limit / 10 * 8)
}

impl Config {
    /// The effective memory limit in bytes.
    pub fn effective_maxmemory(&self) -> u64 {
        self.maxmemory
            .or_else(cgroup_default_maxmemory)
            .unwrap_or(1024 * 1024 * 1024)
    }

    /// How a Bloom filter that BF.ADD, BF.MADD or BF.INSERT creates is made.
    pub fn bloom_defaults(&self) -> BloomParams {
        BloomParams {
            error_rate: self.bf_error_rate,
            capacity: self.bf_initial_size,
            expansion: self.bf_expansion,
            nonscaling: self.bf_expansion == 0,
        }
    }

    pub fn effective_threads(&self) -> usize {
        self.threads
            .map(usize::from)
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
    }

    /// The hot-key settings of the `--hotkeys*` flags.
    pub fn hotkeys_config(&self) -> HotKeysConfig {
        HotKeysConfig {
            enabled: self.hotkeys,
            k: usize::from(self.hotkeys_k),
            window_secs: self.hotkeys_window,
            sample: self.hotkeys_sample,
            replica_reads_min_ops: self.hot_key_replica_reads,
        }
    }

    /// A configuration for tests: loopback, free ports, defaults elsewhere.
    /// Loopback, free ports, small limits, and [`TEST_CONTROL_TOKEN`].
    pub fn for_tests() -> Config {
        Config {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 0,
            admin_port: 0,
            maxmemory: Some(256 * 1024 * 1024),
            maxmemory_policy: Policy::S3Fifo,
            requirepass: None,
            control_token: Some(TEST_CONTROL_TOKEN.into()),
            threads: Some(2),
            proto_max_bulk_len: 512 * 1024 * 1024,
            client_query_buffer_limit: 1024 * 1024 * 1024,
            log_format: "text".into(),
            control_port: 0,
            proxy_port: 0,
            replica_port: ReplicaPort::Port(0),
            cluster_enabled: false,
            node_id: None,
            min_replicas_to_ack: 0,
            replica_ack_timeout_ms: 1000,
            hotkeys: true,
            hotkeys_k: 10,
            hotkeys_window: 10,
            hotkeys_sample: 32,
            hot_key_replica_reads: 0,
            bf_error_rate: 0.01,
            bf_initial_size: 100,
            bf_expansion: 2,
            ttl_jitter_percent: 0,
            coalesce_patterns: Vec::new(),
            coalesce_early_ms: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("100"), Ok(100));
        assert_eq!(parse_bytes("1kb"), Ok(1024));
        assert_eq!(parse_bytes("1k"), Ok(1000));
        assert_eq!(parse_bytes("2GB"), Ok(2 * 1024 * 1024 * 1024));
        assert!(parse_bytes("12xb").is_err());
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn replica_port_is_a_port_or_off() {
        assert_eq!(parse_replica_port("6381"), Ok(ReplicaPort::Port(6381)));
        assert_eq!(parse_replica_port("0"), Ok(ReplicaPort::Port(0)));
        assert_eq!(parse_replica_port("OFF"), Ok(ReplicaPort::Off));
        assert!(parse_replica_port("70000").is_err());
        let c = Config::try_parse_from(["ringcache-node"]).expect("defaults parse");
        assert_eq!(c.replica_port, ReplicaPort::Port(6381));
    }
}
