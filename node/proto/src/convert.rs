//! Conversions between the wire types in [`pb`](crate::pb) and the pure types of
//! [`ringcache_core`]. Wire → core checks what the core types cannot hold (slot numbers
//! beyond `u16`, inverted ranges, a missing message, ids and addresses that are empty
//! or malformed); everything else is left to the core (e.g. [`Topology::validate`]).
//! Every error names the field it is about (`topology.slots[3].end`).

use ringcache_core::slot::Slot;
use ringcache_core::slotset::SlotSet;
use ringcache_core::status::{
    HandoverStatus, HotKey, LinkStatus, NodeStatus, PeerStatus, ReplicationStatus, SlotRangeStats,
};
use ringcache_core::topology::{NodeInfo, SlotAssignment, SlotRange, Topology, LAST_SLOT};

use crate::pb;

/// Longest id (handover, node) accepted off the wire.
pub const MAX_ID_LEN: usize = 256;

/// Why a wire message cannot be converted. Messages name the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("{field}: is required")]
    Missing { field: String },
    #[error("{field}: must not be empty")]
    Empty { field: String },
    #[error("{field}: longer than {MAX_ID_LEN} bytes")]
    TooLong { field: String },
    #[error("{field}: {value} is out of range 0..={LAST_SLOT}")]
    SlotOutOfRange { field: String, value: u32 },
    #[error("{field}: end {end} is before start {start}")]
    InvertedRange { field: String, start: u32, end: u32 },
    #[error("{field}: must be at least 1")]
    ZeroEpoch { field: String },
    #[error("{field}: {value:?} is not host:port")]
    BadAddress { field: String, value: String },
}

fn slot(field: String, value: u32) -> Result<Slot, ConvertError> {
    match Slot::try_from(value) {
        Ok(s) if s <= LAST_SLOT => Ok(s),
        _ => Err(ConvertError::SlotOutOfRange { field, value }),
    }
}

/// `field` (a wire range) → [`SlotRange`].
pub fn range_from_pb(field: &str, start: u32, end: u32) -> Result<SlotRange, ConvertError> {
    let s = slot(format!("{field}.start"), start)?;
    let e = slot(format!("{field}.end"), end)?;
    if e < s {
        return Err(ConvertError::InvertedRange {
            field: field.to_string(),
            start,
            end,
        });
    }
    Ok(SlotRange::new(s, e))
}

/// A list of wire ranges → ranges; `field` names the list.
pub fn ranges_from_pb(field: &str, ranges: &[pb::SlotRange]) -> Result<Vec<SlotRange>, ConvertError> {
    ranges
        .iter()
        .enumerate()
        .map(|(i, r)| range_from_pb(&format!("{field}[{i}]"), r.start, r.end))
        .collect()
}

/// A non-empty list of wire ranges → the set of their slots; `field` names the list.
pub fn slot_set_from_pb(field: &str, ranges: &[pb::SlotRange]) -> Result<SlotSet, ConvertError> {
    if ranges.is_empty() {
        return Err(ConvertError::Empty { field: field.into() });
    }
    let mut set = SlotSet::empty();
    for r in ranges_from_pb(field, ranges)? {
        set.insert_range(r);
    }
    Ok(set)
}

pub fn ranges_to_pb(ranges: &[SlotRange]) -> Vec<pb::SlotRange> {
    ranges
        .iter()
        .map(|r| pb::SlotRange {
            start: u32::from(r.start),
            end: u32::from(r.end),
        })
        .collect()
}

/// Checks an id field: non-empty and at most [`MAX_ID_LEN`] bytes.
pub fn check_id(field: &str, id: &str) -> Result<(), ConvertError> {
    if id.is_empty() {
        return Err(ConvertError::Empty { field: field.into() });
    }
    if id.len() > MAX_ID_LEN {
        return Err(ConvertError::TooLong { field: field.into() });
    }
    Ok(())
}

/// Checks a `host:port` address (port 1..=65535).
pub fn check_addr(field: &str, addr: &str) -> Result<(), ConvertError> {
    let bad = || ConvertError::BadAddress {
        field: field.into(),
        value: addr.chars().take(MAX_ID_LEN).collect(),
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    Ok(())
}

/// `request.topology` → [`Topology`]; `field` is the name of the topology field in
/// error messages (`"topology"`).
pub fn topology_from_pb(field: &str, topology: Option<pb::Topology>) -> Result<Topology, ConvertError> {
    let t = topology.ok_or_else(|| ConvertError::Missing {
        field: field.to_string(),
    })?;
    if t.epoch == 0 {
        return Err(ConvertError::ZeroEpoch {
            field: format!("{field}.epoch"),
        });
    }
    let nodes = t.nodes.into_iter().map(node_from_pb).collect();
    let slots = t
        .slots
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            Ok(SlotAssignment {
                range: range_from_pb(&format!("{field}.slots[{i}]"), s.start, s.end)?,
                owners: s.owners,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Topology {
        epoch: t.epoch,
        nodes,
        slots,
    })
}

pub fn node_from_pb(n: pb::Node) -> NodeInfo {
    NodeInfo {
        id: n.id,
        instance: n.instance,
        resp_addr: n.resp_addr,
        control_addr: n.control_addr,
        replica_addr: n.replica_addr,
        zone: n.zone,
    }
}

pub fn node_to_pb(n: &NodeInfo) -> pb::Node {
    pb::Node {
        id: n.id.clone(),
        instance: n.instance.clone(),
        resp_addr: n.resp_addr.clone(),
        control_addr: n.control_addr.clone(),
        replica_addr: n.replica_addr.clone(),
        zone: n.zone.clone(),
    }
}

pub fn topology_to_pb(t: &Topology) -> pb::Topology {
    pb::Topology {
        epoch: t.epoch,
        nodes: t.nodes.iter().map(node_to_pb).collect(),
        slots: t
            .slots
            .iter()
            .map(|a| pb::SlotAssignment {
                start: u32::from(a.range.start),
                end: u32::from(a.range.end),
                owners: a.owners.clone(),
            })
            .collect(),
    }
}

pub fn handover_to_pb(h: &HandoverStatus) -> pb::HandoverStatus {
    pb::HandoverStatus {
        handover_id: h.id.clone(),
        slots: ranges_to_pb(&h.slots),
        local_hits: h.local_hits,
        read_through_hits: h.read_through_hits,
        misses: h.misses,
        started_ms: h.started_ms,
        source_node_id: h.source_node_id.clone(),
        source_resp_addr: h.source_addr.clone(),
        written_keys: h.written_keys,
        read_through_stopped: h.read_through_stopped,
        read_through_errors: h.read_through_errors,
    }
}

pub fn handover_from_pb(field: &str, h: pb::HandoverStatus) -> Result<HandoverStatus, ConvertError> {
    Ok(HandoverStatus {
        slots: ranges_from_pb(&format!("{field}.slots"), &h.slots)?,
        id: h.handover_id,
        source_node_id: h.source_node_id,
        source_addr: h.source_resp_addr,
        started_ms: h.started_ms,
        local_hits: h.local_hits,
        read_through_hits: h.read_through_hits,
        misses: h.misses,
        read_through_errors: h.read_through_errors,
        written_keys: h.written_keys,
        read_through_stopped: h.read_through_stopped,
    })
}

pub fn link_to_pb(l: &LinkStatus) -> pb::PrimaryLink {
    pb::PrimaryLink {
        primary_id: l.primary_id.clone(),
        applied_offset: l.applied_offset,
        connected: l.connected,
    }
}

pub fn link_from_pb(l: pb::PrimaryLink) -> LinkStatus {
    LinkStatus {
        primary_id: l.primary_id,
        applied_offset: l.applied_offset,
        connected: l.connected,
    }
}

pub fn replication_to_pb(st: &ReplicationStatus) -> pb::ReplicationStatus {
    pb::ReplicationStatus {
        current_offset: st.current_offset,
        backlog_first_offset: st.backlog_first_offset,
        backlog_bytes: st.backlog_bytes,
        replicas: st
            .peers
            .iter()
            .map(|p| pb::ReplicaPeer {
                replica_id: p.replica_id.clone(),
                acked_offset: p.acked_offset,
                lag_records: p.lag_records,
                connected: p.connected,
            })
            .collect(),
        primaries: st.links.iter().map(link_to_pb).collect(),
        full_syncs_served: st.full_syncs_served,
        partial_syncs_served: st.partial_syncs_served,
        full_syncs_received: st.full_syncs_received,
        partial_syncs_received: st.partial_syncs_received,
        fencing: ranges_to_pb(&st.fencing),
    }
}

pub fn replication_from_pb(st: pb::ReplicationStatus) -> ReplicationStatus {
    ReplicationStatus {
        current_offset: st.current_offset,
        backlog_first_offset: st.backlog_first_offset,
        backlog_bytes: st.backlog_bytes,
        peers: st
            .replicas
            .into_iter()
            .map(|p| PeerStatus {
                replica_id: p.replica_id,
                acked_offset: p.acked_offset,
                lag_records: p.lag_records,
                connected: p.connected,
            })
            .collect(),
        links: st.primaries.into_iter().map(link_from_pb).collect(),
        full_syncs_served: st.full_syncs_served,
        partial_syncs_served: st.partial_syncs_served,
        full_syncs_received: st.full_syncs_received,
        partial_syncs_received: st.partial_syncs_received,
        fencing: st
            .fencing
            .into_iter()
            .filter_map(|r| range_from_pb("fencing", r.start, r.end).ok())
            .collect(),
    }
}

pub fn node_status_to_pb(st: &NodeStatus) -> pb::GetStatusResponse {
    pb::GetStatusResponse {
        node_id: st.node_id.clone(),
        instance: st.instance.clone(),
        epoch: st.epoch,
        cluster_enabled: st.cluster_enabled,
        used_memory: st.used_memory,
        maxmemory: st.maxmemory,
        keys: st.keys,
        lease_until_ms: st.lease_until_ms,
        slot_ranges: st
            .slot_ranges
            .iter()
            .map(|r| pb::SlotRangeStats {
                start: u32::from(r.range.start),
                end: u32::from(r.range.end),
                keys: r.keys,
                bytes: r.bytes,
                hits: r.hits,
                misses: r.misses,
            })
            .collect(),
        handovers: st.handovers.iter().map(handover_to_pb).collect(),
        replication: Some(replication_to_pb(&st.replication)),
        topology: st.topology.as_ref().map(topology_to_pb),
        hot_keys: st
            .hot_keys
            .iter()
            .map(|h| pb::HotKey {
                key: h.key.clone(),
                ops_per_sec: h.ops_per_sec,
            })
            .collect(),
    }
}

/// A `GetStatus` reply → [`NodeStatus`] (a missing `replication` reads as empty).
pub fn node_status_from_pb(st: pb::GetStatusResponse) -> Result<NodeStatus, ConvertError> {
    let slot_ranges = st
        .slot_ranges
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            Ok(SlotRangeStats {
                range: range_from_pb(&format!("slot_ranges[{i}]"), r.start, r.end)?,
                keys: r.keys,
                bytes: r.bytes,
                hits: r.hits,
                misses: r.misses,
            })
        })
        .collect::<Result<Vec<_>, ConvertError>>()?;
    let handovers = st
        .handovers
        .into_iter()
        .enumerate()
        .map(|(i, h)| handover_from_pb(&format!("handovers[{i}]"), h))
        .collect::<Result<Vec<_>, _>>()?;
    let topology = match st.topology {
        Some(t) => Some(topology_from_pb("topology", Some(t))?),
        None => None,
    };
    Ok(NodeStatus {
        topology,
        node_id: st.node_id,
        instance: st.instance,
        epoch: st.epoch,
        cluster_enabled: st.cluster_enabled,
        used_memory: st.used_memory,
        maxmemory: st.maxmemory,
        keys: st.keys,
        lease_until_ms: st.lease_until_ms,
        slot_ranges,
        handovers,
        replication: st.replication.map(replication_from_pb).unwrap_or_default(),
        hot_keys: st
            .hot_keys
            .into_iter()
            .map(|h| HotKey {
                key: h.key,
                ops_per_sec: h.ops_per_sec,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn wire() -> pb::Topology {
        pb::Topology {
            epoch: 3,
            nodes: vec![pb::Node {
                id: "a".into(),
                instance: "i".into(),
                resp_addr: "127.0.0.1:1".into(),
                control_addr: "127.0.0.1:2".into(),
                replica_addr: Some("127.0.0.1:3".into()),
                zone: Some("z1".into()),
            }],
            slots: vec![
                pb::SlotAssignment {
                    start: 0,
                    end: 99,
                    owners: vec!["a".into()],
                },
                pb::SlotAssignment {
                    start: 100,
                    end: 16383,
                    owners: vec!["a".into()],
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let t = topology_from_pb("topology", Some(wire())).unwrap();
        assert_eq!(t.validate(), Ok(()));
        assert_eq!(t.nodes[0].zone.as_deref(), Some("z1"));
        assert_eq!(t.nodes[0].replica_addr.as_deref(), Some("127.0.0.1:3"));
        assert_eq!(topology_to_pb(&t), wire());
    }

    #[test]
    fn errors_name_the_field() {
        let err = |w: pb::Topology| topology_from_pb("topology", Some(w)).unwrap_err().to_string();
        let mut w = wire();
        w.slots[1].end = 17000;
        assert_eq!(err(w), "topology.slots[1].end: 17000 is out of range 0..=16383");
        let mut w = wire();
        w.slots[1].start = 70000;
        assert_eq!(err(w), "topology.slots[1].start: 70000 is out of range 0..=16383");
        let mut w = wire();
        w.slots[0].start = 100;
        w.slots[0].end = 5;
        assert_eq!(err(w), "topology.slots[0]: end 5 is before start 100");
        let mut w = wire();
        w.epoch = 0;
        assert_eq!(err(w), "topology.epoch: must be at least 1");
        assert_eq!(
            topology_from_pb("topology", None).unwrap_err().to_string(),
            "topology: is required"
        );
    }

    fn wire_ranges(r: &[(u32, u32)]) -> Vec<pb::SlotRange> {
        r.iter().map(|&(start, end)| pb::SlotRange { start, end }).collect()
    }

    #[test]
    fn slot_lists_ids_and_addresses_are_checked_with_field_names() {
        assert_eq!(
            slot_set_from_pb("slots", &wire_ranges(&[(0, 2), (10, 10)]))
                .unwrap()
                .len(),
            4
        );
        assert_eq!(
            slot_set_from_pb("slots", &[]).unwrap_err().to_string(),
            "slots: must not be empty"
        );
        assert_eq!(
            slot_set_from_pb("slots", &wire_ranges(&[(0, 1), (5, 16384)]))
                .unwrap_err()
                .to_string(),
            "slots[1].end: 16384 is out of range 0..=16383"
        );
        assert!(matches!(
            slot_set_from_pb("slots", &wire_ranges(&[(9, 3)])),
            Err(ConvertError::InvertedRange { .. })
        ));
        assert!(check_addr("a", "host:6379").is_ok());
        assert!(check_addr("a", "[::1]:6379").is_ok());
        for bad in ["", "host", ":1", "h:0", "h:x", "h:70000"] {
            assert!(check_addr("a", bad).is_err(), "{bad}");
        }
        assert!(check_id("handover_id", "").is_err());
        assert!(check_id("handover_id", &"x".repeat(300)).is_err());
        assert!(check_id("handover_id", "h1").is_ok());
    }

    #[test]
    fn status_round_trips() {
        let st = NodeStatus {
            node_id: "a".into(),
            instance: "i1".into(),
            epoch: 7,
            cluster_enabled: true,
            used_memory: 10,
            maxmemory: 100,
            keys: 3,
            lease_until_ms: 99,
            slot_ranges: vec![SlotRangeStats {
                range: SlotRange::new(0, 99),
                keys: 3,
                bytes: 10,
                hits: 5,
                misses: 1,
            }],
            handovers: vec![HandoverStatus {
                id: "h".into(),
                slots: vec![SlotRange::new(5, 9)],
                source_node_id: "b".into(),
                source_addr: "b:1".into(),
                started_ms: 1,
                local_hits: 2,
                read_through_hits: 3,
                misses: 4,
                read_through_errors: 5,
                written_keys: 6,
                read_through_stopped: true,
            }],
            replication: ReplicationStatus {
                current_offset: 42,
                peers: vec![PeerStatus {
                    replica_id: "c".into(),
                    acked_offset: 40,
                    lag_records: 2,
                    connected: true,
                }],
                links: vec![LinkStatus {
                    primary_id: "d".into(),
                    applied_offset: 8,
                    connected: false,
                }],
                fencing: vec![SlotRange::new(5, 9)],
                ..Default::default()
            },
            topology: Some(topology_from_pb("topology", Some(wire())).unwrap()),
            hot_keys: vec![
                HotKey {
                    key: b"user:\xff".to_vec(),
                    ops_per_sec: 900,
                },
                HotKey {
                    key: b"b".to_vec(),
                    ops_per_sec: 3,
                },
            ],
        };
        assert_eq!(node_status_from_pb(node_status_to_pb(&st)).unwrap(), st);
        let mut bad = node_status_to_pb(&st);
        bad.handovers[0].slots[0].end = 1;
        assert_eq!(
            node_status_from_pb(bad).unwrap_err().to_string(),
            "handovers[0].slots[0]: end 1 is before start 5"
        );
    }
}
