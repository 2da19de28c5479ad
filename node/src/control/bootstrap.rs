//! `ringcache-node cluster create [--replication-factor R] CONTROL_ADDR...`: forms a
//! cluster from running nodes, like `redis-cli --cluster create`.
//!
//! Asks every node for its identity (`Health`), computes a placement with
//! [`next_topology`], gives it an epoch above every node's current one, and applies it
//! to every node (`ApplyTopology`).

use std::net::SocketAddr;
use std::time::Duration;

use tonic::transport::Endpoint;

use ringcache_core::placement::{next_topology, Member, PlacementError};
use ringcache_core::topology::{NodeInfo, Topology};

use ringcache_proto::auth::{self, InvalidToken};
use ringcache_proto::convert::topology_to_pb;
use ringcache_proto::pb;

/// How long one connection attempt or RPC may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a cluster could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("control_addrs: at least one control address is required")]
    NoNodes,
    #[error("replication_factor: must be at least 1")]
    ReplicationFactorZero,
    #[error("control_addrs[{index}]: {addr:?} is listed twice")]
    DuplicateAddr { index: usize, addr: String },
    #[error("control_addrs[{index}]: invalid address {addr:?}: {source}")]
    BadAddr {
        index: usize,
        addr: String,
        source: tonic::transport::Error,
    },
    #[error("{addr}: cannot connect: {source}")]
    Connect {
        addr: String,
        source: tonic::transport::Error,
    },
    #[error("{addr}: {rpc} failed: {code:?}: {message}")]
    Rpc {
        addr: String,
        rpc: &'static str,
        code: tonic::Code,
        message: String,
    },
    #[error("{addr}: node {id} is not ready")]
    NotReady { addr: String, id: String },
    #[error("{addr}: node reports an invalid resp_addr {value:?}")]
    BadRespAddr { addr: String, value: String },
    #[error("{addr}: node id {id:?} is also reported by {other}")]
    DuplicateId { addr: String, id: String, other: String },
    #[error("placement: {0}")]
    Placement(#[from] PlacementError),
    #[error("RINGCACHE_CONTROL_TOKEN: {0}")]
    Token(#[from] InvalidToken),
}

impl BootstrapError {
    fn rpc(addr: &str, rpc: &'static str, status: tonic::Status) -> Self {
        Self::Rpc {
            addr: addr.to_string(),
            rpc,
            code: status.code(),
            message: status.message().to_string(),
        }
    }
}

/// The address at which other nodes and clients reach a node's RESP listener: the one
/// it reports, with an unspecified IP (`0.0.0.0`, `::`) replaced by the host of the
/// control address we reached it at.
fn reachable_resp_addr(control_addr: &str, reported: &str) -> Result<String, BootstrapError> {
    let bad = || BootstrapError::BadRespAddr {
        addr: control_addr.to_string(),
        value: reported.to_string(),
    };
    let sock: SocketAddr = reported.parse().map_err(|_| bad())?;
    if !sock.ip().is_unspecified() {
        return Ok(sock.to_string());
    }
    let host = control_addr.rsplit_once(':').map_or(control_addr, |(h, _)| h);
    if host.is_empty() {
        return Err(bad());
    }
    Ok(format!("{host}:{}", sock.port()))
}

async fn connect(index: usize, addr: &str, token: &str) -> Result<auth::Client, BootstrapError> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|source| BootstrapError::BadAddr {
            index,
            addr: addr.to_string(),
            source,
        })?
        .connect_timeout(TIMEOUT)
        .timeout(TIMEOUT);
    let channel = endpoint.connect().await.map_err(|source| BootstrapError::Connect {
        addr: addr.to_string(),
        source,
    })?;
    Ok(auth::client(channel, token)?)
}

/// Creates a cluster of the nodes at `control_addrs` with `replication_factor` copies
/// of every slot (capped to the number of nodes) and returns the applied topology.
/// Every call carries `token`, the nodes' control token.
pub async fn create_cluster(
    control_addrs: &[String],
    replication_factor: usize,
    token: &str,
) -> Result<Topology, BootstrapError> {
    if control_addrs.is_empty() {
        return Err(BootstrapError::NoNodes);
    }
    if replication_factor == 0 {
        return Err(BootstrapError::ReplicationFactorZero);
    }
    for (index, addr) in control_addrs.iter().enumerate() {
        if control_addrs[..index].contains(addr) {
            return Err(BootstrapError::DuplicateAddr {
                index,
                addr: addr.clone(),
            });
        }
    }

    let mut clients = Vec::with_capacity(control_addrs.len());
    let mut nodes: Vec<NodeInfo> = Vec::with_capacity(control_addrs.len());
    let mut max_epoch = 0;
    for (index, addr) in control_addrs.iter().enumerate() {
        let mut client = connect(index, addr, token).await?;
        let health = client
            .health(pb::HealthRequest {})
            .await
            .map_err(|s| BootstrapError::rpc(addr, "Health", s))?
            .into_inner();
        if !health.ready {
            return Err(BootstrapError::NotReady {
                addr: addr.clone(),
                id: health.node_id,
            });
        }
        if let Some(other) = nodes.iter().find(|n| n.id == health.node_id) {
            return Err(BootstrapError::DuplicateId {
                addr: addr.clone(),
                id: health.node_id,
                other: other.control_addr.clone(),
            });
        }
        tracing::info!(%addr, node_id = %health.node_id, epoch = health.epoch, "node found");
        max_epoch = max_epoch.max(health.epoch);
        nodes.push(NodeInfo {
            resp_addr: reachable_resp_addr(addr, &health.resp_addr)?,
            // An empty replica address: the node runs none (--replica-port off).
            replica_addr: match health.replica_addr.as_str() {
                "" => None,
                reported => Some(reachable_resp_addr(addr, reported)?),
            },
            id: health.node_id,
            instance: health.instance,
            control_addr: addr.clone(),
            zone: None,
        });
        clients.push((addr, client));
    }

    let members: Vec<Member> = nodes.iter().map(Member::from).collect();
    let mut topology = next_topology(None, &nodes, &members, replication_factor)?;
    topology.epoch = max_epoch.saturating_add(1);
    // No controller renews leases here: the nodes write without one.
    let request = pb::ApplyTopologyRequest {
        topology: Some(topology_to_pb(&topology)),
        lease_ms: 0,
        sent_unix_ms: 0,
    };
    for (addr, client) in &mut clients {
        client
            .apply_topology(request.clone())
            .await
            .map_err(|s| BootstrapError::rpc(addr, "ApplyTopology", s))?;
        tracing::info!(%addr, epoch = topology.epoch, "topology applied");
    }
    Ok(topology)
}

/// A human-readable summary: the epoch, then per node its primary and replica ranges.
pub fn summary(topology: &Topology) -> String {
    use std::fmt::Write;
    let join = |ranges: &[ringcache_core::topology::SlotRange]| -> (String, usize) {
        let text = ranges.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        (
            if text.is_empty() { "-".to_string() } else { text },
            ranges.iter().map(|r| r.len()).sum(),
        )
    };
    let mut out = format!(
        "cluster created: epoch {}, {} nodes\n",
        topology.epoch,
        topology.nodes.len()
    );
    for node in &topology.nodes {
        let slots = topology.slots_of(&node.id);
        let (primary, np) = join(&slots.primary);
        let (replica, nr) = join(&slots.replica);
        let _ = writeln!(
            out,
            "{} resp={} control={}\n  primary {primary} ({np} slots)\n  replica {replica} ({nr} slots)",
            node.id, node.resp_addr, node.control_addr
        );
    }
    out
}

/// Arguments of `ringcache-node cluster …`.
#[derive(Debug, clap::Parser)]
#[command(name = "ringcache-node cluster", about = "Cluster administration")]
pub struct ClusterCli {
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Forms a cluster of running nodes (started with --cluster-enabled) and applies the
    /// initial topology to all of them. The nodes' control token comes from the
    /// environment variable RINGCACHE_CONTROL_TOKEN (never a flag: argv is public).
    Create {
        /// Copies of every slot, primary included (capped to the number of nodes).
        #[arg(long, short = 'r', default_value_t = 2)]
        replication_factor: usize,
        /// host:port of every node's control (gRPC) listener.
        #[arg(required = true, value_name = "CONTROL_ADDR")]
        control_addrs: Vec<String>,
    },
}

/// Runs `ringcache-node cluster …` with `args` (starting at the word after `cluster`);
/// returns the process exit code.
pub fn run_cli(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    use clap::Parser;
    let cli = match ClusterCli::try_parse_from(std::iter::once("ringcache-node cluster".into()).chain(args)) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ringcache-node cluster: cannot start runtime: {e}");
            return 1;
        }
    };
    match cli.command {
        ClusterCommand::Create {
            replication_factor,
            control_addrs,
        } => {
            let Some(token) = std::env::var("RINGCACHE_CONTROL_TOKEN").ok().filter(|t| !t.is_empty()) else {
                eprintln!("ringcache-node cluster create: set RINGCACHE_CONTROL_TOKEN to the nodes' control token");
                return 2;
            };
            match rt.block_on(create_cluster(&control_addrs, replication_factor, &token)) {
                Ok(topology) => {
                    print!("{}", summary(&topology));
                    0
                }
                Err(e) => {
                    eprintln!("ringcache-node cluster create: {e}");
                    1
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn unspecified_resp_ip_takes_the_control_host() {
        assert_eq!(
            reachable_resp_addr("10.0.0.5:7000", "0.0.0.0:6379").unwrap(),
            "10.0.0.5:6379"
        );
        assert_eq!(
            reachable_resp_addr("pod-0.svc:7000", "[::]:6379").unwrap(),
            "pod-0.svc:6379"
        );
        assert_eq!(
            reachable_resp_addr("x:7000", "127.0.0.1:6379").unwrap(),
            "127.0.0.1:6379"
        );
        assert!(reachable_resp_addr("x:7000", "nonsense").is_err());
    }
}
