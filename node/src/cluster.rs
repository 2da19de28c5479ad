//! This node's place in the cluster: whether cluster mode is on, its identity, the
//! current [`View`] (replaced atomically, epochs only grow) and the write lease.
//!
//! The hot path reads the view through [`ClusterState::view`], an `Arc` clone under a
//! read lock that a connection takes once per command batch; the control service
//! replaces it with [`ClusterState::apply`]. The view itself (a validated topology and
//! its per-slot index) is pure data from `ringcache_core`.
//!
//! Changes of primary are fenced both ways ([`crate::fence`]): a node that stops
//! leading a slot counts the writes still running on it ([`ClusterState::enter_write`],
//! refused once the epoch moved on), so its fence comes after every write it
//! acknowledged; a node that starts leading one it replicated waits for that fence
//! ([`ClusterState::fences`]), decided as it installs the view.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use ringcache_core::slot::{Slot, SLOT_COUNT};
use ringcache_core::slotset::SlotSet;
use ringcache_core::topology::{Topology, TopologyError};
use ringcache_core::view::{View, ViewError};

use crate::fence::{next_owed, next_pending, Fences};

/// Why a topology was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("cluster mode is not enabled on this node (start it with --cluster-enabled)")]
    NotClusterMode,
    #[error("stale topology: epoch {offered} is older than the current epoch {current}")]
    StaleEpoch { offered: u64, current: u64 },
    #[error("topology epoch {epoch} equals the current one but differs from it")]
    ConflictingEpoch { epoch: u64 },
    #[error("topology does not list this node (id {id})")]
    NotAMember { id: String },
    #[error("topology lists node {id} with instance {offered}, but this process is instance {actual}")]
    WrongInstance {
        id: String,
        offered: String,
        actual: String,
    },
    #[error("invalid topology: {0}")]
    Invalid(#[from] TopologyError),
}

/// Cluster-mode state of one node process.
#[derive(Debug)]
pub struct ClusterState {
    pub enabled: bool,
    /// Stable id (pod name in Kubernetes).
    pub node_id: String,
    /// New on every process start.
    pub instance: String,
    view: RwLock<Option<Arc<View>>>,
    /// Unix ms until which this node may accept writes as a primary; 0 = no lease
    /// required (no controller has granted one yet).
    lease_until_ms: AtomicU64,
    /// The epoch of the installed view, for the write gate's check.
    epoch_now: AtomicU64,
    /// Writes past routing and not yet recorded, per slot ([`Self::enter_write`]).
    writes: Box<[AtomicU32]>,
    /// Slots this node leads but does not serve until their former primary's fence.
    pub fences: Fences,
    /// Reads served from a replica copy (a slot this node holds but is not primary
    /// of): INFO cluster `cluster_replica_reads`, `ringcache_replica_reads_total`. It
    /// shows that clients' replica-read modes reach the replicas.
    pub replica_reads: AtomicU64,
}

fn random_hex(n: usize) -> String {
    (0..n)
        .map(|_| char::from(b"0123456789abcdef"[rand::random::<usize>() % 16]))
        .collect()
}

impl ClusterState {
    pub fn new(enabled: bool, node_id: Option<String>) -> ClusterState {
        ClusterState {
            enabled,
            node_id: node_id.unwrap_or_else(|| random_hex(40)),
            instance: random_hex(16),
            view: RwLock::new(None),
            lease_until_ms: AtomicU64::new(0),
            epoch_now: AtomicU64::new(0),
            writes: (0..if enabled { SLOT_COUNT } else { 0 })
                .map(|_| AtomicU32::new(0))
                .collect(),
            fences: Fences::default(),
            replica_reads: AtomicU64::new(0),
        }
    }

    /// The current view, if a topology has been applied.
    pub fn view(&self) -> Option<Arc<View>> {
        self.view.read().clone()
    }

    /// The current epoch (0 before any topology).
    pub fn epoch(&self) -> u64 {
        self.view.read().as_ref().map_or(0, |v| v.topology.epoch)
    }

    /// Installs `topology` if it is valid, newer than the current one, and lists this
    /// process (same id and instance). Re-applying the current topology is a no-op.
    /// Slots this node now leads after replicating them from a node still in the
    /// topology are fenced ([`crate::fence`]).
    pub fn apply(&self, topology: Topology) -> Result<Arc<View>, ApplyError> {
        self.install(topology, &SlotSet::empty())
    }

    /// [`Self::apply`] for a promotion: `promoted` slots are served at once (their
    /// former primary is lost, no fence can come).
    pub fn apply_promoted(&self, topology: Topology, promoted: &SlotSet) -> Result<Arc<View>, ApplyError> {
        self.install(topology, promoted)
    }

    fn install(&self, topology: Topology, promoted: &SlotSet) -> Result<Arc<View>, ApplyError> {
        if !self.enabled {
            return Err(ApplyError::NotClusterMode);
        }
        let view = View::new(topology, &self.node_id).map_err(|e| match e {
            ViewError::Invalid(e) => ApplyError::Invalid(e),
            ViewError::NotAMember { id } => ApplyError::NotAMember { id },
        })?;
        if view.me.instance != self.instance {
            return Err(ApplyError::WrongInstance {
                id: view.me.id.clone(),
                offered: view.me.instance.clone(),
                actual: self.instance.clone(),
            });
        }
        let mut guard = self.view.write();
        if let Some(cur) = guard.as_ref() {
            let current = cur.topology.epoch;
            let offered = view.topology.epoch;
            if offered < current {
                return Err(ApplyError::StaleEpoch { offered, current });
            }
            if offered == current {
                if cur.topology == view.topology {
                    return Ok(cur.clone());
                }
                return Err(ApplyError::ConflictingEpoch { epoch: current });
            }
        }
        // The fences are in place before the view that needs them is visible, so no
        // command is served on a slot whose fence has not arrived.
        let pending = next_pending(&self.fences.snapshot(), guard.as_deref(), &view, promoted);
        self.fences.replace(pending);
        self.fences
            .replace_owed(next_owed(&self.fences.owed(), guard.as_deref(), &view));
        let view = Arc::new(view);
        self.epoch_now.store(view.topology.epoch, Ordering::SeqCst);
        *guard = Some(view.clone());
        Ok(view)
    }

    /// The write gate, taken by a write the routing lets run here as primary under a
    /// view of epoch `view_epoch` (a connection reads the view once per batch): counts
    /// the write in flight on `slot` until [`Self::leave_write`], and refuses it (false)
    /// when a newer view is installed. Paired with [`Self::writes_in_flight`], a node
    /// that stops leading a slot knows when every write it accepted there is recorded:
    /// the count is raised before the epoch is read, and the epoch stored before the
    /// counts are read (both sequentially consistent), so a write either sees the new
    /// epoch or is seen in flight.
    pub fn enter_write(&self, view_epoch: u64, slot: Slot) -> bool {
        let Some(count) = self.writes.get(usize::from(slot)) else {
            return true;
        };
        count.fetch_add(1, Ordering::SeqCst);
        if self.epoch_now.load(Ordering::SeqCst) == view_epoch {
            return true;
        }
        count.fetch_sub(1, Ordering::Release);
        false
    }

    /// Ends what [`Self::enter_write`] started, once the write's records are in the backlog.
    pub fn leave_write(&self, slot: Slot) {
        if let Some(count) = self.writes.get(usize::from(slot)) {
            count.fetch_sub(1, Ordering::Release);
        }
    }

    /// Whether a write admitted by [`Self::enter_write`] under an older view may still
    /// be running on one of `slots`.
    pub fn writes_in_flight(&self, slots: &SlotSet) -> bool {
        slots.iter().any(|s| {
            self.writes
                .get(usize::from(s))
                .is_some_and(|c| c.load(Ordering::SeqCst) > 0)
        })
    }

    /// Extends the write lease to `until_ms` (never shortens it).
    pub fn grant_lease(&self, until_ms: u64) {
        self.lease_until_ms.fetch_max(until_ms, Ordering::Relaxed);
    }

    pub fn lease_until_ms(&self) -> u64 {
        self.lease_until_ms.load(Ordering::Relaxed)
    }

    /// Whether a primary may accept writes at `now_ms`: no lease was ever granted
    /// (bootstrap without a controller), or the lease has not expired.
    pub fn may_write(&self, now_ms: u64) -> bool {
        let until = self.lease_until_ms();
        until == 0 || now_ms < until
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ringcache_core::topology::{NodeInfo, SlotAssignment, SlotRange};

    fn topo(state: &ClusterState, epoch: u64) -> Topology {
        Topology {
            epoch,
            nodes: vec![NodeInfo {
                id: state.node_id.clone(),
                instance: state.instance.clone(),
                resp_addr: "127.0.0.1:1".into(),
                control_addr: "127.0.0.1:2".into(),
                replica_addr: None,
                zone: None,
            }],
            slots: vec![SlotAssignment {
                range: SlotRange::all(),
                owners: vec![state.node_id.clone()],
            }],
        }
    }

    #[test]
    fn epochs_only_grow_and_instance_must_match() {
        let s = ClusterState::new(true, Some("n1".into()));
        s.apply(topo(&s, 5)).unwrap();
        assert_eq!(s.epoch(), 5);
        assert!(s.apply(topo(&s, 5)).is_ok(), "re-applying the same topology is a no-op");
        assert_eq!(
            s.apply(topo(&s, 4)).unwrap_err(),
            ApplyError::StaleEpoch { offered: 4, current: 5 }
        );
        let mut other = topo(&s, 6);
        other.nodes[0].instance = "old-process".into();
        assert!(matches!(s.apply(other), Err(ApplyError::WrongInstance { .. })));
        let v = s.apply(topo(&s, 6)).unwrap();
        assert!(v.is_primary(0));
        assert!(ClusterState::new(false, None).apply(topo(&s, 1)).is_err());
    }

    #[test]
    fn the_write_gate_refuses_a_stale_view_and_counts_writes_in_flight() {
        let s = ClusterState::new(true, Some("n1".into()));
        s.apply(topo(&s, 5)).unwrap();
        let seven: SlotSet = [7].into_iter().collect();
        assert!(s.enter_write(5, 7));
        assert!(s.writes_in_flight(&seven));
        assert!(!s.writes_in_flight(&[8].into_iter().collect()));
        s.apply(topo(&s, 6)).unwrap();
        assert!(!s.enter_write(5, 7), "a batch's view older than the installed one");
        assert!(s.writes_in_flight(&seven), "the write admitted before is still running");
        s.leave_write(7);
        assert!(!s.writes_in_flight(&seven));
        assert!(s.enter_write(6, 7));
        s.leave_write(7);
        // Standalone nodes have no gate.
        assert!(ClusterState::new(false, None).enter_write(0, 7));
    }

    #[test]
    fn lease_fences_writes_once_granted() {
        let s = ClusterState::new(true, None);
        assert!(s.may_write(1_000));
        s.grant_lease(2_000);
        assert!(s.may_write(1_999));
        assert!(!s.may_write(2_000));
        s.grant_lease(1_500);
        assert_eq!(s.lease_until_ms(), 2_000);
    }
}
