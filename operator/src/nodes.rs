//! Talking to the nodes' control ports: `GetStatus` and `ApplyTopology`, with the
//! cluster's control token on every call and a deadline on each. Wire types stop here:
//! callers get `ringcache_core` types (converted by `ringcache_proto::convert`).

use std::time::Duration;

use ringcache_core::status::NodeStatus;
use ringcache_core::topology::Topology;
use ringcache_proto::auth;
use ringcache_proto::convert::{node_status_from_pb, topology_to_pb, ConvertError};
use ringcache_proto::pb;
use tonic::transport::Endpoint;

/// Longest a connection attempt or one RPC may take.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a call to a node failed. Variant names read well as metric labels.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{addr}: invalid address: {source}")]
    BadAddress {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("{addr}: cannot connect: {source}")]
    Connect {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("{addr}: {rpc}: {code:?}: {message}")]
    Rpc {
        addr: String,
        rpc: &'static str,
        code: tonic::Code,
        message: String,
    },
    #[error("{addr}: {rpc}: malformed reply: {source}")]
    Reply {
        addr: String,
        rpc: &'static str,
        #[source]
        source: ConvertError,
    },
    #[error("the control token: {0}")]
    Token(#[from] auth::InvalidToken),
}

impl NodeError {
    /// A short label for metrics and condition messages.
    pub fn kind(&self) -> &'static str {
        match self {
            NodeError::BadAddress { .. } => "BadAddress",
            NodeError::Connect { .. } => "Connect",
            NodeError::Rpc { code, .. } if *code == tonic::Code::Unauthenticated => "Unauthenticated",
            NodeError::Rpc { .. } => "Rpc",
            NodeError::Reply { .. } => "Reply",
            NodeError::Token(_) => "Token",
        }
    }
}

/// A connected control client for the node at `addr` (`host:port`).
pub async fn connect(addr: &str, token: &str) -> Result<auth::Client, NodeError> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|source| NodeError::BadAddress {
            addr: addr.to_string(),
            source,
        })?
        .connect_timeout(RPC_TIMEOUT)
        .timeout(RPC_TIMEOUT);
    let channel = endpoint.connect().await.map_err(|source| NodeError::Connect {
        addr: addr.to_string(),
        source,
    })?;
    Ok(auth::client(channel, token)?)
}

fn rpc_error(addr: &str, rpc: &'static str, status: tonic::Status) -> NodeError {
    NodeError::Rpc {
        addr: addr.to_string(),
        rpc,
        code: status.code(),
        message: status.message().to_string(),
    }
}

/// `GetStatus` of the node at `addr`.
pub async fn get_status(addr: &str, token: &str) -> Result<NodeStatus, NodeError> {
    let mut client = connect(addr, token).await?;
    let reply = client
        .get_status(pb::GetStatusRequest {})
        .await
        .map_err(|s| rpc_error(addr, "GetStatus", s))?
        .into_inner();
    node_status_from_pb(reply).map_err(|source| NodeError::Reply {
        addr: addr.to_string(),
        rpc: "GetStatus",
        source,
    })
}

/// `ApplyTopology(topology)` on the node at `addr`; the epoch now in force there. A
/// node that never had a write lease gets its first one (`lease_ms`) with it, so it is
/// fenced from its first topology on, before the monitor's first heartbeat.
pub async fn apply_topology(addr: &str, token: &str, topology: &Topology, lease_ms: u64) -> Result<u64, NodeError> {
    let mut client = connect(addr, token).await?;
    let reply = client
        .apply_topology(pb::ApplyTopologyRequest {
            topology: Some(topology_to_pb(topology)),
            lease_ms,
            sent_unix_ms: unix_ms(),
        })
        .await
        .map_err(|s| rpc_error(addr, "ApplyTopology", s))?;
    Ok(reply.into_inner().epoch)
}

/// `BeginHandover` (or `AdvanceHandover` when `begin` is false) on the new owner at
/// `addr`. A Begin of a handover that already exists is the same request repeated (the
/// operator restarted after it): it counts as done.
pub async fn handover(addr: &str, token: &str, call: &crate::plan::HandoverCall) -> Result<(), NodeError> {
    let mut client = connect(addr, token).await?;
    let slots = ringcache_proto::convert::ranges_to_pb(&call.slots);
    let result = if call.begin {
        client
            .begin_handover(pb::BeginHandoverRequest {
                handover_id: call.id.clone(),
                slots,
                source_node_id: call.source.clone(),
                source_resp_addr: call.source_addr.clone(),
            })
            .await
            .map(|_| ())
            .or_else(|s| match s.code() {
                tonic::Code::AlreadyExists => Ok(()),
                _ => Err(rpc_error(addr, "BeginHandover", s)),
            })
    } else {
        client
            .advance_handover(pb::AdvanceHandoverRequest {
                handover_id: call.id.clone(),
                slots,
            })
            .await
            .map(|_| ())
            .map_err(|s| rpc_error(addr, "AdvanceHandover", s))
    };
    result
}

/// `CompleteHandover(id)` on the node at `addr`; an unknown id (completed already, or
/// the node restarted) counts as done.
pub async fn complete_handover(addr: &str, token: &str, id: &str) -> Result<(), NodeError> {
    let mut client = connect(addr, token).await?;
    match client
        .complete_handover(pb::CompleteHandoverRequest {
            handover_id: id.to_string(),
        })
        .await
    {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
        Err(s) => Err(rpc_error(addr, "CompleteHandover", s)),
    }
}

/// `Promote`: the node at `addr` becomes primary of `slots` with `topology`.
pub async fn promote(
    addr: &str,
    token: &str,
    topology: &Topology,
    slots: &[ringcache_core::topology::SlotRange],
) -> Result<u64, NodeError> {
    let mut client = connect(addr, token).await?;
    let reply = client
        .promote(pb::PromoteRequest {
            topology: Some(topology_to_pb(topology)),
            slots: ringcache_proto::convert::ranges_to_pb(slots),
        })
        .await
        .map_err(|s| rpc_error(addr, "Promote", s))?;
    Ok(reply.into_inner().epoch)
}

/// This host's wall clock, Unix ms (leases run from their send time).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `Health` on an already connected client: whether the node answers (it grants
/// nothing).
pub async fn probe(client: &mut auth::Client, addr: &str) -> Result<(), NodeError> {
    client
        .health(pb::HealthRequest {})
        .await
        .map(|_| ())
        .map_err(|s| rpc_error(addr, "Health", s))
}

/// `Heartbeat` on an already connected client: grants the node a write lease of
/// `lease_ms` from now (the send time travels with it, so a late delivery grants less).
/// A node at a newer epoch than `epoch` refuses the lease but is alive: only a call
/// that gets no answer is a failure.
pub async fn heartbeat(client: &mut auth::Client, addr: &str, epoch: u64, lease_ms: u64) -> Result<(), NodeError> {
    let request = pb::HeartbeatRequest {
        epoch,
        lease_ms,
        sent_unix_ms: unix_ms(),
    };
    match client.heartbeat(request).await {
        Ok(_) => Ok(()),
        Err(s) if matches!(s.code(), tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument) => Ok(()),
        Err(s) => Err(rpc_error(addr, "Heartbeat", s)),
    }
}
