//! Conversions between the wire types in [`pb`](super::pb) and the pure cluster types
//! in [`crate::cluster::topology`]. Wire → pure checks what the pure types cannot hold
//! (slot numbers beyond `u16`, inverted ranges, a missing topology); everything else is
//! left to [`Topology::validate`]. Every error names the field it is about.

use crate::cluster::slot::Slot;
use crate::cluster::topology::{NodeInfo, SlotAssignment, SlotRange, Topology, LAST_SLOT};

use super::pb;

/// Why a wire message cannot be converted. Messages name the field (`topology.slots[3].end`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("{field}: is required")]
    Missing { field: String },
    #[error("{field}: {value} is out of range 0..={LAST_SLOT}")]
    SlotOutOfRange { field: String, value: u32 },
    #[error("{field}: end {end} is before start {start}")]
    InvertedRange { field: String, start: u32, end: u32 },
    #[error("{field}: must be at least 1")]
    ZeroEpoch { field: String },
}

fn slot(field: String, value: u32) -> Result<Slot, ConvertError> {
    match Slot::try_from(value) {
        Ok(s) if s <= LAST_SLOT => Ok(s),
        _ => Err(ConvertError::SlotOutOfRange { field, value }),
    }
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
            let start = slot(format!("{field}.slots[{i}].start"), s.start)?;
            let end = slot(format!("{field}.slots[{i}].end"), s.end)?;
            if end < start {
                return Err(ConvertError::InvertedRange {
                    field: format!("{field}.slots[{i}]"),
                    start: s.start,
                    end: s.end,
                });
            }
            Ok(SlotAssignment {
                range: SlotRange::new(start, end),
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
        zone: n.zone,
    }
}

pub fn node_to_pb(n: &NodeInfo) -> pb::Node {
    pb::Node {
        id: n.id.clone(),
        instance: n.instance.clone(),
        resp_addr: n.resp_addr.clone(),
        control_addr: n.control_addr.clone(),
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
}
