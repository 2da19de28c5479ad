//! How Redis Cluster clients see a topology: which address serves each slot range as
//! primary and which as replica (`CLUSTER SLOTS`, `CLUSTER SHARDS`), and the node list
//! with roles (`CLUSTER NODES`).
//!
//! A ringcache node is primary for some slot ranges and replica for others, while a
//! Redis client keeps one role per address (ioredis, go-redis, Lettuce open one
//! connection per address and send `READONLY` only to replicas). So a node with a
//! replica address (`NodeInfo::replica_addr`, where `READONLY` is implied) shows there
//! as one *virtual replica* per primary whose slots it copies: node X copying ranges of
//! primary P is listed as a replica of P, with its own 40-hex id ([`replica_id`]), at
//! X's replica address, for exactly the ranges of P that X holds. Its real id stays the
//! primary of its own ranges at its RESP address. A node without a replica address is
//! listed at its RESP address for its replica ranges too (clients send `READONLY`
//! there, as before).

use crate::topology::{NodeInfo, SlotRange, Topology};

/// A node as a client addresses it: an id and a `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The real node id, or a virtual replica's [`replica_id`].
    pub id: String,
    pub addr: String,
}

/// One slot range with the endpoints that serve it, the primary first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeEndpoints {
    pub range: SlotRange,
    /// `[primary, replicas…]`, in the topology's owner order.
    pub endpoints: Vec<Endpoint>,
}

/// A node's role in `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Primary,
    /// A replica of the node with this id.
    Replica {
        of: String,
    },
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedNode {
    pub endpoint: Endpoint,
    /// The real node behind this entry (a virtual replica's is the copying node).
    pub node_id: String,
    /// `host:port` of the real node's control listener (the bus port column).
    pub control_addr: String,
    pub role: Role,
    /// The ranges this entry serves as primary (empty for a replica).
    pub primary_ranges: Vec<SlotRange>,
}

/// The 40-hex id of node `replica`'s virtual replica of `primary`: deterministic (every
/// node of the cluster derives the same one, across restarts and topologies) and
/// distinct per pair.
pub fn replica_id(replica: &str, primary: &str) -> String {
    // FNV-1a, 64 bits, over "replica\0<replica>\0<primary>", three times with different
    // offsets, each finished with MurmurHash3's fmix64 so ids of similar names differ in
    // every digit: 160 bits of output, written as 40 hex digits like a Redis node id.
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = |seed: u64| {
        let mut h = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(PRIME);
        let bytes = b"replica\0"
            .iter()
            .chain(replica.as_bytes())
            .chain(b"\0")
            .chain(primary.as_bytes());
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    };
    format!("{:016x}{:016x}{:08x}", hash(1), hash(2), hash(3) >> 32)
}

/// The endpoint of `owner` holding a copy of `primary`'s range: its virtual replica at
/// its replica address, or its RESP address when it has none.
fn replica_endpoint(owner: &NodeInfo, primary: &str) -> Endpoint {
    match &owner.replica_addr {
        Some(addr) => Endpoint {
            id: replica_id(&owner.id, primary),
            addr: addr.clone(),
        },
        None => Endpoint {
            id: owner.id.clone(),
            addr: owner.resp_addr.clone(),
        },
    }
}

/// Every slot range with its endpoints, in slot order (`CLUSTER SLOTS`; `CLUSTER
/// SHARDS` groups them). Owners missing from the node list are left out.
pub fn range_endpoints(topology: &Topology) -> Vec<RangeEndpoints> {
    let mut out: Vec<RangeEndpoints> = topology
        .slots
        .iter()
        .filter_map(|a| {
            let primary = topology.node(a.owners.first()?)?;
            let mut endpoints = vec![Endpoint {
                id: primary.id.clone(),
                addr: primary.resp_addr.clone(),
            }];
            endpoints.extend(
                a.owners
                    .iter()
                    .skip(1)
                    .filter_map(|id| topology.node(id))
                    .map(|n| replica_endpoint(n, &primary.id)),
            );
            Some(RangeEndpoints {
                range: a.range,
                endpoints,
            })
        })
        .collect();
    out.sort_by_key(|r| r.range.start);
    out
}

/// The ranges grouped into shards: one per distinct endpoint list (a primary and the
/// replicas of those ranges), in order of their first range (`CLUSTER SHARDS`). A
/// primary whose ranges are copied to different nodes heads several shards, so every
/// shard lists exactly the nodes that hold its slots.
pub fn shards(topology: &Topology) -> Vec<(Vec<Endpoint>, Vec<SlotRange>)> {
    let mut out: Vec<(Vec<Endpoint>, Vec<SlotRange>)> = Vec::new();
    for r in range_endpoints(topology) {
        match out.iter_mut().find(|(e, _)| *e == r.endpoints) {
            Some((_, ranges)) => ranges.push(r.range),
            None => out.push((r.endpoints, vec![r.range])),
        }
    }
    out
}

/// The node list of `CLUSTER NODES`: every node at its RESP address, then the virtual
/// replicas, each listed once per (copying node, primary) pair, in node order.
pub fn listed_nodes(topology: &Topology) -> Vec<ListedNode> {
    let mut out = Vec::new();
    for node in &topology.nodes {
        let slots = topology.slots_of(&node.id);
        // A node without a replica address that is only a replica shows as a replica
        // of its first range's primary (clients reach it with READONLY).
        let role = match (slots.primary.is_empty(), slots.replica.first(), &node.replica_addr) {
            (true, Some(r), None) => match topology.primary_of(r.start) {
                Some(p) => Role::Replica { of: p.to_string() },
                None => Role::Primary,
            },
            _ => Role::Primary,
        };
        out.push(ListedNode {
            endpoint: Endpoint {
                id: node.id.clone(),
                addr: node.resp_addr.clone(),
            },
            node_id: node.id.clone(),
            control_addr: node.control_addr.clone(),
            role,
            primary_ranges: slots.primary,
        });
    }
    for node in topology.nodes.iter().filter(|n| n.replica_addr.is_some()) {
        for primary in &topology.nodes {
            let copies = topology
                .slots
                .iter()
                .any(|a| a.owners.first() == Some(&primary.id) && a.owners.iter().skip(1).any(|o| *o == node.id));
            if copies {
                out.push(ListedNode {
                    endpoint: replica_endpoint(node, &primary.id),
                    node_id: node.id.clone(),
                    control_addr: node.control_addr.clone(),
                    role: Role::Replica { of: primary.id.clone() },
                    primary_ranges: Vec::new(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::topology::{test_node, SlotAssignment};

    fn node(id: &str, replica_port: bool) -> NodeInfo {
        NodeInfo {
            replica_addr: replica_port.then(|| format!("{id}:6381")),
            ..test_node(id)
        }
    }

    fn assign(start: u16, end: u16, owners: &[&str]) -> SlotAssignment {
        SlotAssignment {
            range: SlotRange::new(start, end),
            owners: owners.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// a, b, c with R=2, copies spread: a's two ranges are copied to b and to c.
    fn spread(replica_ports: bool) -> Topology {
        Topology {
            epoch: 3,
            nodes: vec![
                node("a", replica_ports),
                node("b", replica_ports),
                node("c", replica_ports),
            ],
            slots: vec![
                assign(0, 2999, &["a", "b"]),
                assign(3000, 5460, &["a", "c"]),
                assign(5461, 10922, &["b", "c"]),
                assign(10923, 16383, &["c", "a"]),
            ],
        }
    }

    fn ep(id: &str, addr: &str) -> Endpoint {
        Endpoint {
            id: id.into(),
            addr: addr.into(),
        }
    }

    #[test]
    fn replica_ids_are_40_hex_deterministic_and_per_pair() {
        let id = replica_id("b", "a");
        assert_eq!(id.len(), 40);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(id, replica_id("b", "a"));
        assert_ne!(id, replica_id("a", "b"));
        assert_ne!(id, replica_id("b", "c"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(replica_id("ab", "c"), replica_id("a", "bc"));
        // Similar names give unrelated ids (no long shared prefix).
        assert_ne!(replica_id("a", "b")[..4], replica_id("a", "c")[..4]);
    }

    #[test]
    fn slots_list_virtual_replicas_at_replica_addresses_per_range() {
        let got = range_endpoints(&spread(true));
        let want = vec![
            (0, vec![ep("a", "a:6379"), ep(&replica_id("b", "a"), "b:6381")]),
            (3000, vec![ep("a", "a:6379"), ep(&replica_id("c", "a"), "c:6381")]),
            (5461, vec![ep("b", "b:6379"), ep(&replica_id("c", "b"), "c:6381")]),
            (10923, vec![ep("c", "c:6379"), ep(&replica_id("a", "c"), "a:6381")]),
        ];
        assert_eq!(got.len(), want.len());
        for (g, (start, endpoints)) in got.iter().zip(want) {
            assert_eq!(g.range.start, start);
            assert_eq!(g.endpoints, endpoints);
        }
    }

    #[test]
    fn without_replica_addresses_replicas_stay_at_their_resp_address() {
        let got = range_endpoints(&spread(false));
        assert_eq!(got[0].endpoints, vec![ep("a", "a:6379"), ep("b", "b:6379")]);
        let nodes = listed_nodes(&spread(false));
        assert_eq!(nodes.len(), 3, "no virtual replicas");
        assert!(nodes.iter().all(|n| n.role == Role::Primary));
    }

    #[test]
    fn shards_split_a_primary_by_where_its_ranges_are_copied() {
        let got = shards(&spread(true));
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].0[1].addr, "b:6381");
        assert_eq!(got[1].0[1].addr, "c:6381");
        assert_eq!(got[1].1, vec![SlotRange::new(3000, 5460)]);
        // Ranges with the same endpoints share a shard.
        let mut t = spread(true);
        t.slots = vec![
            assign(0, 99, &["a", "b"]),
            assign(100, 199, &["b", "a"]),
            assign(200, 16383, &["a", "b"]),
        ];
        let got = shards(&t);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, vec![SlotRange::new(0, 99), SlotRange::new(200, 16383)]);
    }

    #[test]
    fn nodes_list_real_primaries_then_one_replica_per_pair() {
        let got = listed_nodes(&spread(true));
        let summary: Vec<(String, String, Role, usize)> = got
            .iter()
            .map(|n| {
                (
                    n.endpoint.id.clone(),
                    n.endpoint.addr.clone(),
                    n.role.clone(),
                    n.primary_ranges.len(),
                )
            })
            .collect();
        let replica_of = |p: &str| Role::Replica { of: p.to_string() };
        assert_eq!(
            summary,
            vec![
                ("a".into(), "a:6379".into(), Role::Primary, 1),
                ("b".into(), "b:6379".into(), Role::Primary, 1),
                ("c".into(), "c:6379".into(), Role::Primary, 1),
                (replica_id("a", "c"), "a:6381".into(), replica_of("c"), 0),
                (replica_id("b", "a"), "b:6381".into(), replica_of("a"), 0),
                (replica_id("c", "a"), "c:6381".into(), replica_of("a"), 0),
                (replica_id("c", "b"), "c:6381".into(), replica_of("b"), 0),
            ]
        );
        // a's primary ranges are merged: 0-5460.
        assert_eq!(got[0].primary_ranges, vec![SlotRange::new(0, 5460)]);
        assert_eq!(got[5].node_id, "c");
        assert_eq!(got[5].control_addr, "c:7379");
    }

    #[test]
    fn a_replica_only_node_without_replica_address_is_a_replica_at_its_resp_address() {
        let t = Topology {
            epoch: 1,
            nodes: vec![node("a", false), node("b", false)],
            slots: vec![assign(0, 16383, &["a", "b"])],
        };
        let got = listed_nodes(&t);
        assert_eq!(got[1].role, Role::Replica { of: "a".into() });
        assert_eq!(got[1].endpoint, ep("b", "b:6379"));
    }
}
