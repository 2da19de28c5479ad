//! Routing in cluster mode, once per keyed command: the slot every key hashes to
//! (`-CROSSSLOT` otherwise), checked against this node's view: served here as primary
//! (a write also needs the lease: `-TRYAGAIN` once it expired), or as a replica for a
//! `READONLY` connection's read; else `-MOVED <slot> <owner>`, or `-CLUSTERDOWN` when
//! the slot has no primary or there is no topology. Standalone nodes serve everything.
//!
//! Two more `-TRYAGAIN`s fence a change of primary ([`crate::fence`]): a slot this node
//! leads but whose former primary's fence has not arrived is not served yet; and a
//! write takes the write gate ([`crate::cluster::ClusterState::enter_write`], released
//! by the pipeline after its replication step), refused when the batch's view is older
//! than the one installed, so a node that stopped leading a slot accepts no more writes
//! there.
//!
//! On the replica port only replica reads are served; the rest goes to the primary.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use ringcache_core::slot::{key_slot, Slot};
use ringcache_core::topology::NodeInfo;
use ringcache_core::view::Owner;

use super::flag::{READONLY, WRITE};
use super::{CmdError, CommandSpec, Ctx};

const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

/// The slot of a keyed command this node may serve (`None` in standalone mode), or the
/// redirect or error to answer.
pub fn route(ctx: &mut Ctx<'_>, spec: &CommandSpec, args: &[Bytes]) -> Result<Option<Slot>, CmdError> {
    let cluster = &ctx.server.cluster;
    if !cluster.enabled {
        return Ok(None);
    }
    let mut positions = spec.key_positions(args);
    let Some(first) = positions.next() else { return Ok(None) };
    let slot = key_slot(&args[first]);
    if positions.any(|p| key_slot(&args[p]) != slot) {
        return Err(CmdError::Coded(CROSSSLOT.into()));
    }
    let Some(view) = ctx.view else {
        return Err(CmdError::Coded("CLUSTERDOWN The cluster is down".into()));
    };
    let replica_read = ctx.client.readonly && spec.flags & READONLY != 0;
    if ctx.client.replica_port && !replica_read {
        // Clients see this port as a replica: like a Redis replica, it sends writes
        // (and reads after READWRITE) to the primary, even when that is this node.
        return Err(match view.primary(slot) {
            Some(primary) => moved(slot, primary),
            None => CmdError::Coded("CLUSTERDOWN Hash slot not served".into()),
        });
    }
    match view.owner(slot, replica_read) {
        Owner::Here => {
            if cluster.fences.is_fenced(slot) {
                return Err(CmdError::Coded(format!(
                    "TRYAGAIN slot {slot} changed primary; it is served once its former primary's writes are here"
                )));
            }
            // A write is never a replica read: Here means primary.
            if spec.flags & WRITE != 0 {
                if !cluster.may_write(ctx.now) {
                    return Err(CmdError::Coded(
                        "TRYAGAIN this node's write lease has expired; retry when the cluster has recovered".into(),
                    ));
                }
                if !cluster.enter_write(view.topology.epoch, slot) {
                    return Err(CmdError::Coded(
                        "TRYAGAIN the cluster topology changed while this command waited; retry".into(),
                    ));
                }
                ctx.client.write_gate = Some(slot);
            }
            if replica_read && !view.is_primary(slot) {
                cluster.replica_reads.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(slot))
        }
        Owner::Elsewhere(owner) => Err(moved(slot, owner)),
        Owner::Nobody => Err(CmdError::Coded("CLUSTERDOWN Hash slot not served".into())),
    }
}

fn moved(slot: Slot, primary: &NodeInfo) -> CmdError {
    CmdError::Coded(format!("MOVED {slot} {}", primary.resp_addr))
}
