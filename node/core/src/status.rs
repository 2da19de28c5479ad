//! What a node reports about itself (`GetStatus`): identity, epoch, memory, per-range
//! statistics, handovers and replication. The node fills these; the operator reads
//! them; the control proto converts them to and from the wire.

use crate::topology::{SlotRange, Topology};

/// A node's status at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStatus {
    pub node_id: String,
    /// Changes on every process start.
    pub instance: String,
    /// 0 before any topology was applied.
    pub epoch: u64,
    pub cluster_enabled: bool,
    pub used_memory: u64,
    pub maxmemory: u64,
    pub keys: u64,
    /// Unix ms until which the node may accept writes; 0 = no lease granted yet.
    pub lease_until_ms: u64,
    /// The slots the node owns (all slots without a topology), per range of equal
    /// ownership.
    pub slot_ranges: Vec<SlotRangeStats>,
    /// Active handovers to this node.
    pub handovers: Vec<HandoverStatus>,
    pub replication: ReplicationStatus,
    /// The topology in force on the node (`None` before any was applied).
    pub topology: Option<Topology>,
    /// The node's hottest keys over its hot-key window, hottest first (empty when
    /// hot-key detection is off).
    pub hot_keys: Vec<HotKey>,
}

impl NodeStatus {
    /// Reads (hits, misses) over every reported range.
    pub fn hits_misses(&self) -> (u64, u64) {
        self.slot_ranges
            .iter()
            .fold((0, 0), |(h, m), r| (h + r.hits, m + r.misses))
    }
}

/// One of a node's hottest keys: the first key of the commands it served, estimated
/// over its hot-key window (see [`crate::hotkeys`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HotKey {
    pub key: Vec<u8>,
    /// Estimated commands per second on the key, rounded.
    pub ops_per_sec: u64,
}

/// Keys, bytes and reads of one slot range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotRangeStats {
    pub range: SlotRange,
    pub keys: u64,
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
}

/// A handover's counters at one moment, kept by the new owner. Only reads of keys in
/// `slots` served while the node is their primary count: a key found there is a local
/// hit, a key read through from the source a read-through hit, a key found nowhere a
/// miss.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandoverStatus {
    pub id: String,
    pub slots: Vec<SlotRange>,
    pub source_node_id: String,
    pub source_addr: String,
    /// Unix ms of BeginHandover.
    pub started_ms: u64,
    pub local_hits: u64,
    pub read_through_hits: u64,
    pub misses: u64,
    pub read_through_errors: u64,
    /// Keys written or deleted on the new owner since BeginHandover.
    pub written_keys: u64,
    /// Read-through stopped (written-keys set full, or a flush).
    pub read_through_stopped: bool,
}

impl HandoverStatus {
    /// (local + read-through hits) / all counted reads; 1 when nothing was read.
    pub fn hit_ratio(&self) -> f64 {
        let hits = self.local_hits + self.read_through_hits;
        let all = hits + self.misses;
        if all == 0 {
            1.0
        } else {
            hits as f64 / all as f64
        }
    }
}

/// A replica as its primary sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStatus {
    pub replica_id: String,
    pub acked_offset: u64,
    /// `current_offset - acked_offset`.
    pub lag_records: u64,
    pub connected: bool,
}

/// A replica's link to one of its primaries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStatus {
    pub primary_id: String,
    /// Last offset applied from this primary (0: none).
    pub applied_offset: u64,
    pub connected: bool,
}

/// Replication offsets and lag, as a primary (peers) and as a replica (links).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicationStatus {
    /// Offset of the last record this node wrote as a primary (0: none).
    pub current_offset: u64,
    /// Oldest offset still in the backlog.
    pub backlog_first_offset: u64,
    pub backlog_bytes: u64,
    pub peers: Vec<PeerStatus>,
    pub links: Vec<LinkStatus>,
    pub full_syncs_served: u64,
    pub partial_syncs_served: u64,
    pub full_syncs_received: u64,
    pub partial_syncs_received: u64,
    /// Slots this node leads but does not serve yet: it waits for their former
    /// primary's fence (a stage's flip, before the new owner has every acknowledged write).
    pub fencing: Vec<SlotRange>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_ratio_and_totals() {
        let mut h = HandoverStatus {
            local_hits: 90,
            read_through_hits: 5,
            misses: 5,
            ..Default::default()
        };
        assert!((h.hit_ratio() - 0.95).abs() < 1e-9);
        h.local_hits = 0;
        h.read_through_hits = 0;
        h.misses = 0;
        assert_eq!(h.hit_ratio(), 1.0);
        let st = NodeStatus {
            slot_ranges: vec![
                SlotRangeStats {
                    hits: 3,
                    misses: 1,
                    ..Default::default()
                },
                SlotRangeStats {
                    hits: 4,
                    misses: 2,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(st.hits_misses(), (7, 3));
    }
}
