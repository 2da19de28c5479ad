//! Failover mechanics on the node side: a replica that has the data is promoted with
//! `Promote` in a new epoch and serves what its dead primary acknowledged; a node that
//! does not replicate the slots refuses to be promoted for them; GetStatus reports the
//! replication offsets a controller uses to pick the replica.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use redis::Commands;
use ringcache_core::slot::Slot;
use ringcache_core::topology::{ranges_from_slots, SlotAssignment, SlotRange, Topology, LAST_SLOT};
use ringcache_node::config::TEST_CONTROL_TOKEN;
use ringcache_node::control::bootstrap::create_cluster;
use ringcache_node::launch::NodeHandle;
use ringcache_proto::convert::topology_to_pb;
use ringcache_proto::pb::{GetStatusRequest, PromoteRequest, SlotRange as PbRange};
use tonic::Code;

/// `topology` with `dead` removed: each slot's first surviving owner becomes primary.
fn without(topology: &Topology, dead: &str) -> Topology {
    let slots = topology
        .slots
        .iter()
        .map(|a| SlotAssignment {
            range: a.range,
            owners: a.owners.iter().filter(|o| *o != dead).cloned().collect(),
        })
        .collect();
    Topology {
        epoch: topology.epoch + 1,
        nodes: topology.nodes.iter().filter(|n| n.id != dead).cloned().collect(),
        slots,
    }
}

fn ranges_to_pb(ranges: &[SlotRange]) -> Vec<PbRange> {
    ranges
        .iter()
        .map(|r| PbRange {
            start: u32::from(r.start),
            end: u32::from(r.end),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caught_up_replica_is_promoted_and_serves_what_the_dead_primary_acknowledged() {
    let nodes: Vec<NodeHandle> = ["n1", "n2", "n3"].into_iter().map(common::cluster_node).collect();
    let addrs: Vec<String> = nodes.iter().map(|n| n.control_addr.to_string()).collect();
    let topology = create_cluster(&addrs, 2, TEST_CONTROL_TOKEN).await.unwrap();

    // Writes acknowledged by n1 as primary.
    let n1_slots = topology.slots_of("n1").primary;
    let keys: Vec<String> = (0..)
        .map(|i| format!("k{i}"))
        .filter(|k| {
            let s: Slot = ringcache_core::slot::key_slot(k.as_bytes());
            n1_slots.iter().any(|r| r.contains(s))
        })
        .take(300)
        .collect();
    let n1_resp = nodes[0].resp_addr;
    let keys2 = keys.clone();
    tokio::task::spawn_blocking(move || {
        let mut c = redis::Client::open(format!("redis://{n1_resp}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        for k in &keys2 {
            let _: () = c.set(k, k).unwrap();
        }
    })
    .await
    .unwrap();

    // A controller reads the offsets: n1's current offset, and how far each replica got.
    let mut n1c = common::control_client(&nodes[0]).await;
    let n1_offset = n1c
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .replication
        .unwrap()
        .current_offset;
    assert!(n1_offset >= 300, "n1 wrote at least 300 records: {n1_offset}");
    // The replica of n1's first range.
    let first = n1_slots[0];
    let replica_id = topology.owners_of(first.start)[1].clone();
    let replica = nodes.iter().find(|n| n.state.cluster.node_id == replica_id).unwrap();
    let (replica_control, replica_resp) = (replica.control_addr, replica.resp_addr);
    let mut rc = common::control_client_at(&replica_control.to_string()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = rc
            .get_status(GetStatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .replication
            .unwrap();
        let applied = st
            .primaries
            .iter()
            .find(|l| l.primary_id == "n1")
            .map_or(0, |l| l.applied_offset);
        if applied >= n1_offset {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica never caught up: {applied} < {n1_offset}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // n1 dies. The survivor topology makes each slot's first replica its primary.
    let mut nodes = nodes;
    let n1 = nodes.remove(0);
    tokio::task::spawn_blocking(move || n1.shutdown()).await.unwrap();
    let next = without(&topology, "n1");
    let promoted: Vec<SlotRange> = ranges_from_slots(
        (0..=LAST_SLOT)
            .filter(|&s| topology.primary_of(s) == Some("n1") && next.primary_of(s) == Some(replica_id.as_str())),
    );
    assert!(!promoted.is_empty());

    // The other survivor does not replicate those slots: it refuses to be promoted for them.
    let other = nodes.iter().find(|n| n.state.cluster.node_id != replica_id).unwrap();
    let mut oc = common::control_client(other).await;
    let refused = oc
        .promote(PromoteRequest {
            topology: Some(topology_to_pb(&next)),
            slots: ranges_to_pb(&promoted),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(refused.code(), Code::FailedPrecondition | Code::InvalidArgument),
        "{refused:?}"
    );
    assert!(refused.message().contains("slot"), "{}", refused.message());
    // Bad input names the field.
    let bad = rc
        .promote(PromoteRequest {
            topology: Some(topology_to_pb(&next)),
            slots: vec![PbRange { start: 5, end: 20000 }],
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("slots[0].end"), "{}", bad.message());

    let resp = rc
        .promote(PromoteRequest {
            topology: Some(topology_to_pb(&next)),
            slots: ranges_to_pb(&promoted),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.epoch, next.epoch);
    assert!(
        resp.applied
            .iter()
            .any(|l| l.primary_id == "n1" && l.applied_offset >= n1_offset),
        "{:?}",
        resp.applied
    );
    // The rest of the cluster follows the new epoch.
    for n in &nodes {
        n.state.cluster.apply(next.clone()).unwrap();
    }

    // Every acknowledged write in the promoted ranges is served by the new primary.
    let resp_addr = replica_resp;
    let expect: Vec<String> = keys
        .into_iter()
        .filter(|k| {
            let s = ringcache_core::slot::key_slot(k.as_bytes());
            promoted.iter().any(|r| r.contains(s))
        })
        .collect();
    assert!(!expect.is_empty());
    tokio::task::spawn_blocking(move || {
        let mut c = redis::Client::open(format!("redis://{resp_addr}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        for k in &expect {
            let v: Option<String> = c.get(k).unwrap();
            assert_eq!(v.as_deref(), Some(k.as_str()), "{k} after failover");
        }
    })
    .await
    .unwrap();
    tokio::task::spawn_blocking(move || {
        for n in nodes {
            n.shutdown();
        }
    })
    .await
    .unwrap();
}
