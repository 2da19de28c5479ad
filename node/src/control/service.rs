//! The `Control` gRPC service: converts wire types with [`super::convert`] and calls
//! [`ClusterState`] and the [`Store`]; no cluster logic lives here.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tonic::{Request, Response, Status};
use tracing::{info, warn};

use ringcache_core::promote::{check_promotion, PromoteError};
use ringcache_core::slotset::SlotSet;
use ringcache_core::status::{NodeStatus, SlotRangeStats};
use ringcache_core::topology::{SlotRange, LAST_SLOT};
use ringcache_proto::convert::{
    check_addr, check_id, handover_to_pb, link_to_pb, node_status_to_pb, slot_set_from_pb, topology_from_pb,
    ConvertError,
};
use ringcache_proto::pb;
use ringcache_proto::pb::control_server::Control;

use crate::cluster::{ApplyError, ClusterState};
use crate::handover::HandoverError;
use crate::state::ServerState;
use crate::store::Store;

/// The control service of one node.
#[derive(Clone)]
pub struct ControlService {
    state: Arc<ServerState>,
    store: Arc<Store>,
    resp_addr: SocketAddr,
    /// The replica listener, when it is on.
    replica_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for ControlService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlService")
            .field("resp_addr", &self.resp_addr)
            .finish()
    }
}

/// When a lease of `lease_ms` sent at `sent_unix_ms` (0: unknown, now) ends. It runs
/// from the send time, never from later than `now`.
fn lease_end(now: u64, sent_unix_ms: u64, lease_ms: u64) -> u64 {
    let from = if sent_unix_ms == 0 { now } else { sent_unix_ms.min(now) };
    from.saturating_add(lease_ms)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The gRPC status for a refused topology: invalid input → INVALID_ARGUMENT, a
/// conflict with this node's state → FAILED_PRECONDITION.
pub fn apply_error_status(err: &ApplyError) -> Status {
    match err {
        ApplyError::Invalid(e) => Status::invalid_argument(format!("topology.{e}")),
        ApplyError::StaleEpoch { .. } | ApplyError::ConflictingEpoch { .. } => {
            Status::failed_precondition(format!("topology.epoch: {err}"))
        }
        ApplyError::NotAMember { .. } => Status::failed_precondition(format!("topology.nodes: {err}")),
        ApplyError::WrongInstance { .. } => Status::failed_precondition(format!("topology.nodes[].instance: {err}")),
        ApplyError::NotClusterMode => Status::failed_precondition(err.to_string()),
    }
}

/// INVALID_ARGUMENT for a request field that did not convert; the message names it.
fn invalid(err: ConvertError) -> Status {
    Status::invalid_argument(err.to_string())
}

/// The gRPC status for a refused handover request.
pub fn handover_error_status(err: &HandoverError) -> Status {
    match err {
        HandoverError::SourceIsSelf(_) => Status::invalid_argument(err.to_string()),
        HandoverError::NotFound(_) => Status::not_found(err.to_string()),
        HandoverError::AlreadyExists(_) => Status::already_exists(err.to_string()),
        HandoverError::NotClusterMode
        | HandoverError::NoTopology
        | HandoverError::NotOwned { .. }
        | HandoverError::Overlap { .. } => Status::failed_precondition(err.to_string()),
        HandoverError::TooMany => Status::resource_exhausted(err.to_string()),
    }
}

/// Maps a refused promotion to a gRPC status: the node's state is the precondition,
/// a topology that contradicts the request is a bad argument.
pub fn promote_error_status(err: &PromoteError) -> Status {
    match err {
        PromoteError::NotPrimaryInNewTopology { .. } => Status::invalid_argument(err.to_string()),
        PromoteError::NoTopology | PromoteError::NotNewer { .. } | PromoteError::NotAReplica { .. } => {
            Status::failed_precondition(err.to_string())
        }
    }
}

impl ControlService {
    /// The checked handover id and slots of a Begin/AdvanceHandover request, on a node
    /// in cluster mode.
    fn handover_slots(&self, id: &str, slots: &[pb::SlotRange]) -> Result<SlotSet, Status> {
        check_id("handover_id", id).map_err(invalid)?;
        let slots = slot_set_from_pb("slots", slots).map_err(invalid)?;
        self.handover_cluster()?;
        Ok(slots)
    }

    fn handover_cluster(&self) -> Result<(), Status> {
        if !self.cluster().enabled {
            return Err(handover_error_status(&HandoverError::NotClusterMode));
        }
        Ok(())
    }

    pub fn new(
        state: Arc<ServerState>,
        store: Arc<Store>,
        resp_addr: SocketAddr,
        replica_addr: Option<SocketAddr>,
    ) -> Self {
        Self {
            state,
            store,
            resp_addr,
            replica_addr,
        }
    }

    fn cluster(&self) -> &ClusterState {
        &self.state.cluster
    }

    /// Per-range stats of the slots this node owns (all slots without a topology),
    /// one entry per topology range of equal ownership.
    fn slot_range_stats(&self) -> Vec<SlotRangeStats> {
        let ranges: Vec<SlotRange> = match self.cluster().view() {
            Some(view) => {
                let me = view.me.id.as_str();
                let mut r: Vec<SlotRange> = view
                    .topology
                    .slots
                    .iter()
                    .filter(|a| a.owners.iter().any(|o| o == me))
                    .map(|a| a.range)
                    .collect();
                r.sort();
                r
            }
            None => vec![SlotRange::new(0, LAST_SLOT)],
        };
        ranges
            .into_iter()
            .map(|range| {
                let mut out = SlotRangeStats {
                    range,
                    ..Default::default()
                };
                for slot in range.iter() {
                    let s = self.store.slot_stats(slot);
                    out.keys += s.keys as u64;
                    out.bytes += s.bytes as u64;
                    out.hits += s.hits;
                    out.misses += s.misses;
                }
                out
            })
            .collect()
    }
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn apply_topology(
        &self,
        request: Request<pb::ApplyTopologyRequest>,
    ) -> Result<Response<pb::ApplyTopologyResponse>, Status> {
        let req = request.into_inner();
        let topology = topology_from_pb("topology", req.topology).map_err(invalid)?;
        let epoch = topology.epoch;
        let cluster = self.cluster();
        // The first lease comes before the topology, so no write slips in between
        // unfenced; it only starts fencing, never extends a lease.
        if req.lease_ms > 0 && cluster.lease_until_ms() == 0 {
            cluster.grant_lease(lease_end(now_ms(), req.sent_unix_ms, req.lease_ms).max(1));
        }
        match cluster.apply(topology) {
            Ok(view) => {
                info!(
                    epoch = view.topology.epoch,
                    nodes = view.topology.nodes.len(),
                    "topology applied"
                );
                Ok(Response::new(pb::ApplyTopologyResponse {
                    epoch: view.topology.epoch,
                }))
            }
            Err(e) => {
                warn!(epoch, error = %e, "topology refused");
                Err(apply_error_status(&e))
            }
        }
    }

    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let cluster = self.cluster();
        let store = self.store.clone();
        let svc = self.clone();
        // 16384 shard-lock acquisitions: keep them off the async worker.
        let slot_ranges = tokio::task::spawn_blocking(move || svc.slot_range_stats())
            .await
            .map_err(|e| Status::internal(format!("slot statistics: {e}")))?;
        // One read of the view: the epoch and the topology reported agree.
        let view = cluster.view();
        let status = NodeStatus {
            node_id: cluster.node_id.clone(),
            instance: cluster.instance.clone(),
            epoch: view.as_ref().map_or(0, |v| v.topology.epoch),
            cluster_enabled: cluster.enabled,
            used_memory: store.mem.used() as u64,
            maxmemory: store.mem.max() as u64,
            keys: store.dbsize() as u64,
            lease_until_ms: cluster.lease_until_ms(),
            slot_ranges,
            handovers: self.state.handovers.snapshots(),
            replication: self.state.replication.status(),
            topology: view.map(|v| v.topology.clone()),
            hot_keys: self.state.hotkeys.top_k(now_ms()),
        };
        Ok(Response::new(node_status_to_pb(&status)))
    }

    async fn health(&self, _request: Request<pb::HealthRequest>) -> Result<Response<pb::HealthResponse>, Status> {
        let cluster = self.cluster();
        Ok(Response::new(pb::HealthResponse {
            ready: self.state.ready.load(Ordering::Relaxed),
            node_id: cluster.node_id.clone(),
            instance: cluster.instance.clone(),
            epoch: cluster.epoch(),
            resp_addr: self.resp_addr.to_string(),
            replica_addr: self.replica_addr.map(|a| a.to_string()).unwrap_or_default(),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let req = request.into_inner();
        let cluster = self.cluster();
        if !cluster.enabled {
            return Err(Status::failed_precondition(ApplyError::NotClusterMode.to_string()));
        }
        if req.lease_ms == 0 {
            return Err(Status::invalid_argument("lease_ms: must be at least 1"));
        }
        let current = cluster.epoch();
        if req.epoch < current {
            return Err(Status::failed_precondition(format!(
                "epoch: {} is older than this node's epoch {current}",
                req.epoch
            )));
        }
        // The lease runs from when the heartbeat was sent (never from later than now):
        // one read late, after the process was stopped or the network held it, must
        // not extend a lease the controller already counted as ended.
        let now = now_ms();
        let until = lease_end(now, req.sent_unix_ms, req.lease_ms);
        if until <= now {
            return Err(Status::failed_precondition(format!(
                "sent_unix_ms: the lease of this heartbeat (sent at {}, {} ms) ended before it was read at {now}",
                req.sent_unix_ms, req.lease_ms
            )));
        }
        cluster.grant_lease(until);
        Ok(Response::new(pb::HeartbeatResponse {
            lease_until_ms: cluster.lease_until_ms(),
        }))
    }

    async fn begin_handover(
        &self,
        request: Request<pb::BeginHandoverRequest>,
    ) -> Result<Response<pb::BeginHandoverResponse>, Status> {
        let req = request.into_inner();
        let slots = self.handover_slots(&req.handover_id, &req.slots)?;
        check_id("source_node_id", &req.source_node_id).map_err(invalid)?;
        check_addr("source_resp_addr", &req.source_resp_addr).map_err(invalid)?;
        let view = self.cluster().view();
        let h = self
            .state
            .handovers
            .begin(
                &req.handover_id,
                slots,
                &req.source_node_id,
                &req.source_resp_addr,
                view.as_deref(),
                now_ms(),
            )
            .map_err(|e| handover_error_status(&e))?;
        info!(handover = %h.id, source = %h.source_node_id, slots = h.slots().len(), "handover begun");
        crate::handover::fetch::notify_source(&self.state.access, &h.source_addr, &h.id, Some(&h.slots())).await;
        Ok(Response::new(pb::BeginHandoverResponse {
            handover: Some(handover_to_pb(&h.snapshot())),
        }))
    }

    async fn advance_handover(
        &self,
        request: Request<pb::AdvanceHandoverRequest>,
    ) -> Result<Response<pb::AdvanceHandoverResponse>, Status> {
        let req = request.into_inner();
        let slots = self.handover_slots(&req.handover_id, &req.slots)?;
        let view = self.cluster().view();
        let h = self
            .state
            .handovers
            .advance(&req.handover_id, &slots, view.as_deref())
            .map_err(|e| handover_error_status(&e))?;
        info!(handover = %h.id, slots = h.slots().len(), "handover advanced");
        crate::handover::fetch::notify_source(&self.state.access, &h.source_addr, &h.id, Some(&h.slots())).await;
        Ok(Response::new(pb::AdvanceHandoverResponse {
            handover: Some(handover_to_pb(&h.snapshot())),
        }))
    }

    async fn complete_handover(
        &self,
        request: Request<pb::CompleteHandoverRequest>,
    ) -> Result<Response<pb::CompleteHandoverResponse>, Status> {
        let req = request.into_inner();
        check_id("handover_id", &req.handover_id).map_err(invalid)?;
        self.handover_cluster()?;
        let snap = self
            .state
            .handovers
            .complete(&req.handover_id)
            .map_err(|e| handover_error_status(&e))?;
        info!(
            handover = %snap.id,
            local_hits = snap.local_hits,
            read_through_hits = snap.read_through_hits,
            misses = snap.misses,
            "handover completed"
        );
        crate::handover::fetch::notify_source(&self.state.access, &snap.source_addr, &snap.id, None).await;
        Ok(Response::new(pb::CompleteHandoverResponse {
            handover: Some(handover_to_pb(&snap)),
        }))
    }

    async fn promote(&self, request: Request<pb::PromoteRequest>) -> Result<Response<pb::PromoteResponse>, Status> {
        let cluster = self.cluster();
        if !cluster.enabled {
            return Err(Status::failed_precondition(ApplyError::NotClusterMode.to_string()));
        }
        let req = request.into_inner();
        let topology = topology_from_pb("topology", req.topology).map_err(invalid)?;
        let slots = slot_set_from_pb("slots", &req.slots).map_err(invalid)?;
        let view = cluster.view();
        check_promotion(view.as_deref(), &topology, slots.iter()).map_err(|e| {
            warn!(epoch = topology.epoch, error = %e, "promotion refused");
            promote_error_status(&e)
        })?;
        // Offsets applied from the former primaries, before the new epoch stops those links.
        let applied = self.state.replication.status().links.iter().map(link_to_pb).collect();
        // The former primary of the promoted slots is lost: no fence to wait for.
        let view = cluster
            .apply_promoted(topology, &slots)
            .map_err(|e| apply_error_status(&e))?;
        info!(epoch = view.topology.epoch, slots = slots.len(), "promoted to primary");
        Ok(Response::new(pb::PromoteResponse {
            epoch: view.topology.epoch,
            applied,
        }))
    }
}
