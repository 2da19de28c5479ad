//! A Redis Cluster of Debian's `redis-server` processes on loopback ports, created and
//! grown with `redis-cli --cluster`. Every process is killed when the cluster (or the
//! node) is dropped, also on error (`ringcache_tests::proc::ChildProcess` kills its
//! process group on drop, and at exit).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use ringcache_tests::proc::{spawn, ChildProcess};

use crate::R;

pub struct RedisNode {
    pub port: u16,
    pub process: Option<ChildProcess>,
}

pub struct RedisCluster {
    pub nodes: Vec<RedisNode>,
    /// The data dirs and logs; removed on drop (after the processes, declared last).
    pub dir: tempfile::TempDir,
}

impl RedisNode {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

/// A plain connection with short timeouts.
pub fn connect(addr: &str, timeout: Duration) -> redis::RedisResult<redis::Connection> {
    let con = redis::Client::open(format!("redis://{addr}/"))?.get_connection_with_timeout(timeout)?;
    con.set_read_timeout(Some(timeout))?;
    con.set_write_timeout(Some(timeout))?;
    Ok(con)
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn redis_cli(args: &[&str]) -> R<String> {
    let out = Command::new("redis-cli")
        .args(args)
        .output()
        .map_err(|e| format!("running redis-cli {}: {e} (is redis-tools installed?)", args.join(" ")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(format!("redis-cli {}: {}: {}", args.join(" "), out.status, text.trim()));
    }
    Ok(text)
}

impl RedisCluster {
    /// Starts `n` empty cluster-enabled nodes on ports `base..base+n` (cluster bus on
    /// port + 10000), each with its own dir.
    pub fn start(base: u16, n: u16, node_timeout_ms: u64) -> R<RedisCluster> {
        let dir = tempfile::Builder::new()
            .prefix("ringcache-bench-redis-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let mut nodes = Vec::new();
        for i in 0..n {
            let port = base + i;
            if !port_free(port) || !port_free(port + 10000) {
                return Err(format!("port {port} or its cluster bus port {} is taken", port + 10000));
            }
            let node_dir: PathBuf = dir.path().join(port.to_string());
            std::fs::create_dir_all(&node_dir).map_err(|e| format!("{}: {e}", node_dir.display()))?;
            let conf = format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode no\ncluster-enabled yes\ncluster-config-file nodes.conf\ncluster-node-timeout {node_timeout_ms}\nappendonly no\nsave \"\"\ndir {}\nlogfile \"\"\ndaemonize no\n",
                node_dir.display()
            );
            let conf_path = node_dir.join("redis.conf");
            std::fs::write(&conf_path, conf).map_err(|e| format!("{}: {e}", conf_path.display()))?;
            let mut cmd = Command::new("redis-server");
            cmd.arg(&conf_path);
            let process = spawn(&format!("redis-server:{port}"), cmd, &node_dir.join("redis.log"))
                .map_err(|e| format!("starting redis-server on {port}: {e} (is redis-server installed?)"))?;
            nodes.push(RedisNode {
                port,
                process: Some(process),
            });
        }
        let cluster = RedisCluster { nodes, dir };
        eprintln!("redis-server logs: {}/<port>/redis.log", cluster.dir.path().display());
        for node in &cluster.nodes {
            wait(
                &format!("redis-server {} answering PING", node.port),
                Duration::from_secs(15),
                || {
                    let mut con = connect(&node.addr(), Duration::from_millis(500)).map_err(|e| e.to_string())?;
                    redis::cmd("PING").query::<String>(&mut con).map_err(|e| e.to_string())
                },
            )?;
        }
        Ok(cluster)
    }

    pub fn urls(&self, idx: &[usize]) -> Vec<String> {
        idx.iter().map(|&i| self.nodes[i].url()).collect()
    }

    /// `redis-cli --cluster create` over nodes `idx`, with `replicas` replicas per primary;
    /// waits until every node of them agrees and reports `cluster_state:ok`.
    pub fn create(&self, idx: &[usize], replicas: u32) -> R<()> {
        let addrs: Vec<String> = idx.iter().map(|&i| self.nodes[i].addr()).collect();
        let mut args: Vec<&str> = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        let r = replicas.to_string();
        args.extend(["--cluster-replicas", r.as_str(), "--cluster-yes"]);
        redis_cli(&args)?;
        self.wait_agreed(idx, Duration::from_secs(60))
    }

    /// Until `redis-cli --cluster check` finds no error and every node of `idx` reports
    /// `cluster_state:ok`.
    pub fn wait_agreed(&self, idx: &[usize], timeout: Duration) -> R<()> {
        let first = self.nodes[idx[0]].addr();
        wait("the Redis Cluster agreeing, state ok", timeout, || {
            let out = redis_cli(&["--cluster", "check", &first])?;
            if out.contains("[ERR]") || !out.contains("All 16384 slots covered") {
                return Err(out
                    .lines()
                    .filter(|l| l.contains("[ERR]"))
                    .collect::<Vec<_>>()
                    .join("; "));
            }
            for &i in idx {
                let mut con = connect(&self.nodes[i].addr(), Duration::from_millis(500)).map_err(|e| e.to_string())?;
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut con)
                    .map_err(|e| e.to_string())?;
                if !info.contains("cluster_state:ok") {
                    return Err(format!("{}: not cluster_state:ok", self.nodes[i].port));
                }
            }
            Ok(())
        })
    }

    /// Until every replica among `idx` has its link to its primary up and no sync running.
    pub fn wait_replicas_synced(&self, idx: &[usize], timeout: Duration) -> R<()> {
        wait("every replica synced", timeout, || {
            for &i in idx {
                let mut con = connect(&self.nodes[i].addr(), Duration::from_millis(500)).map_err(|e| e.to_string())?;
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut con)
                    .map_err(|e| e.to_string())?;
                if info.contains("role:slave")
                    && (!info.contains("master_link_status:up") || info.contains("master_sync_in_progress:1"))
                {
                    return Err(format!("{}: replica not in sync", self.nodes[i].port));
                }
            }
            Ok(())
        })
    }

    /// `redis-cli --cluster add-node <new> <existing>` (an empty primary).
    pub fn add_node(&self, new: usize, existing: usize) -> R<String> {
        redis_cli(&[
            "--cluster",
            "add-node",
            &self.nodes[new].addr(),
            &self.nodes[existing].addr(),
        ])
    }

    /// `redis-cli --cluster rebalance <addr> --cluster-use-empty-masters`.
    pub fn rebalance(&self, via: usize) -> R<String> {
        redis_cli(&[
            "--cluster",
            "rebalance",
            &self.nodes[via].addr(),
            "--cluster-use-empty-masters",
        ])
    }

    /// The slots node `i` serves as a primary, from its own `CLUSTER NODES`.
    pub fn primary_slots(&self, i: usize) -> R<Vec<u16>> {
        let mut con = connect(&self.nodes[i].addr(), Duration::from_secs(1)).map_err(|e| e.to_string())?;
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query(&mut con)
            .map_err(|e| format!("CLUSTER NODES: {e}"))?;
        let line = nodes
            .lines()
            .find(|l| l.split(' ').nth(2).is_some_and(|f| f.contains("myself")))
            .ok_or("CLUSTER NODES has no myself line")?;
        let fields: Vec<&str> = line.split(' ').collect();
        if !fields.get(2).is_some_and(|f| f.contains("master")) {
            return Err(format!("node {} is not a primary: {line}", self.nodes[i].port));
        }
        let mut slots = Vec::new();
        for range in fields.iter().skip(8) {
            if range.starts_with('[') {
                continue; // a migrating/importing marker
            }
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            let a: u16 = a.parse().map_err(|e| format!("slot range {range}: {e}"))?;
            let b: u16 = b.parse().map_err(|e| format!("slot range {range}: {e}"))?;
            slots.extend(a..=b);
        }
        Ok(slots)
    }
}

/// Polls `check` every 200 ms until it is `Ok` or `timeout` passes.
pub fn wait<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> R<T> {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() >= timeout => {
                return Err(format!("{what}: not done after {timeout:?}; last: {e}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}
