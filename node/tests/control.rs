//! The gRPC control service against in-process nodes: `cluster create`, topology
//! epochs, input validation, heartbeats and status.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeSet, HashSet};

use ringcache_core::topology::{Topology, LAST_SLOT};
use ringcache_node::config::TEST_CONTROL_TOKEN;
use ringcache_node::control::bootstrap::create_cluster;
use ringcache_node::launch::NodeHandle;
use ringcache_proto::convert::topology_to_pb;
use ringcache_proto::pb::{ApplyTopologyRequest, GetStatusRequest, HealthRequest, HeartbeatRequest, SlotAssignment};
use tonic::Code;

fn addrs(nodes: &[NodeHandle]) -> Vec<String> {
    nodes.iter().map(|n| n.control_addr.to_string()).collect()
}

/// Three cluster-mode nodes with an R=2 topology applied by `cluster create`.
async fn three_node_cluster() -> (Vec<NodeHandle>, Topology) {
    let nodes: Vec<NodeHandle> = ["n1", "n2", "n3"].into_iter().map(common::cluster_node).collect();
    let topology = create_cluster(&addrs(&nodes), 2, TEST_CONTROL_TOKEN).await.unwrap();
    (nodes, topology)
}

/// Stops the nodes off the test's runtime, which must keep driving the clients'
/// connections while the servers shut down gracefully.
async fn shutdown(nodes: Vec<NodeHandle>) {
    tokio::task::spawn_blocking(move || {
        for n in nodes {
            n.shutdown();
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn cluster_create_applies_one_topology_everywhere() {
    let (nodes, topology) = three_node_cluster().await;
    assert_eq!(topology.epoch, 1);
    assert_eq!(topology.validate(), Ok(()));

    for node in &nodes {
        let status = common::control_client(node)
            .await
            .get_status(GetStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status.epoch, topology.epoch, "node {} epoch", status.node_id);
        assert!(status.cluster_enabled);
        let view = node.state.cluster.view().unwrap();
        assert_eq!(
            view.topology, topology,
            "node {} has the created topology",
            status.node_id
        );
        assert_eq!(view.me.resp_addr, node.resp_addr.to_string());
        assert_eq!(view.me.control_addr, node.control_addr.to_string());

        // GetStatus reports exactly the slots this node owns.
        let owned: usize = (0..=LAST_SLOT)
            .filter(|&s| view.slots.owners(s).contains(&view.me.id))
            .count();
        let reported: usize = status.slot_ranges.iter().map(|r| (r.end - r.start + 1) as usize).sum();
        assert_eq!(reported, owned);
        assert!(owned > 0);
    }

    // Every slot has two distinct owners, and primaries are balanced.
    let mut primaries = std::collections::BTreeMap::<String, usize>::new();
    for slot in 0..=LAST_SLOT {
        let owners = topology.owners_of(slot);
        assert_eq!(owners.len(), 2, "slot {slot}");
        assert_eq!(owners.iter().collect::<HashSet<_>>().len(), 2, "slot {slot}");
        *primaries.entry(owners[0].clone()).or_default() += 1;
    }
    assert_eq!(
        primaries.keys().cloned().collect::<BTreeSet<_>>(),
        ["n1", "n2", "n3"].map(String::from).into()
    );
    assert!(primaries.values().all(|&n| n == 5461 || n == 5462), "{primaries:?}");

    // A second `create` moves everyone to the next epoch.
    let again = create_cluster(&addrs(&nodes), 2, TEST_CONTROL_TOKEN).await.unwrap();
    assert_eq!(again.epoch, 2);
    for node in &nodes {
        assert_eq!(node.state.cluster.epoch(), 2);
    }
    shutdown(nodes).await;
}

#[tokio::test]
async fn stale_epoch_is_a_failed_precondition() {
    let (nodes, topology) = three_node_cluster().await;
    let mut c = common::control_client(&nodes[0]).await;
    let mut newer = topology.clone();
    newer.epoch = 7;
    let r = c
        .apply_topology(ApplyTopologyRequest {
            topology: Some(topology_to_pb(&newer)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.into_inner().epoch, 7);

    let mut stale = topology.clone();
    stale.epoch = 5;
    let err = c
        .apply_topology(ApplyTopologyRequest {
            topology: Some(topology_to_pb(&stale)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("epoch 5") && err.message().contains("epoch 7"),
        "{}",
        err.message()
    );
    assert!(err.message().starts_with("topology.epoch:"), "{}", err.message());

    // Same epoch, different content.
    let mut conflicting = newer.clone();
    conflicting.slots.swap(0, 1);
    let err = c
        .apply_topology(ApplyTopologyRequest {
            topology: Some(topology_to_pb(&conflicting)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    // Re-applying the current topology is a no-op.
    let r = c
        .apply_topology(ApplyTopologyRequest {
            topology: Some(topology_to_pb(&newer)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.into_inner().epoch, 7);
    assert_eq!(nodes[0].state.cluster.epoch(), 7);

    // A topology for another process instance of this node id is refused.
    let mut other_instance = newer.clone();
    other_instance.epoch = 8;
    for n in &mut other_instance.nodes {
        n.instance = "previous-process".into();
    }
    let err = c
        .apply_topology(ApplyTopologyRequest {
            topology: Some(topology_to_pb(&other_instance)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("instance"), "{}", err.message());
    drop(c);
    shutdown(nodes).await;
}

#[tokio::test]
async fn invalid_topologies_are_invalid_arguments_naming_the_field() {
    let (nodes, topology) = three_node_cluster().await;
    let mut c = common::control_client(&nodes[1]).await;
    let mut next = topology_to_pb(&topology);
    next.epoch = 2;

    let mut bad = next.clone();
    let last = bad.slots.len() - 1;
    bad.slots[last].end = 17000;
    let err = c
        .apply_topology(ApplyTopologyRequest {
            topology: Some(bad),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.message(),
        format!("topology.slots[{last}].end: 17000 is out of range 0..=16383")
    );

    let mut bad = next.clone();
    bad.slots[0] = SlotAssignment {
        start: 10,
        end: 5,
        owners: bad.slots[0].owners.clone(),
    };
    let err = c
        .apply_topology(ApplyTopologyRequest {
            topology: Some(bad),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("topology.slots[0]"), "{}", err.message());

    // Checks of the pure validator come back with the field path too.
    let mut bad = next.clone();
    bad.slots[0].owners.push("nobody".into());
    let err = c
        .apply_topology(ApplyTopologyRequest {
            topology: Some(bad),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("topology.slots[0].owners: unknown node id"),
        "{}",
        err.message()
    );

    let mut bad = next.clone();
    bad.slots.pop();
    let err = c
        .apply_topology(ApplyTopologyRequest {
            topology: Some(bad),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("topology.slots: "), "{}", err.message());

    let err = c
        .apply_topology(ApplyTopologyRequest {
            topology: None,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "topology: is required");

    assert_eq!(nodes[1].state.cluster.epoch(), 1, "nothing was applied");
    drop(c);
    shutdown(nodes).await;
}

#[tokio::test]
async fn heartbeat_grants_the_lease_and_refuses_old_epochs() {
    let (nodes, topology) = three_node_cluster().await;
    let mut c = common::control_client(&nodes[2]).await;
    let mut newer = topology.clone();
    newer.epoch = 3;
    c.apply_topology(ApplyTopologyRequest {
        topology: Some(topology_to_pb(&newer)),
        ..Default::default()
    })
    .await
    .unwrap();

    let err = c
        .heartbeat(HeartbeatRequest {
            epoch: 2,
            lease_ms: 5_000,
            sent_unix_ms: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.message(), "epoch: 2 is older than this node's epoch 3");
    assert_eq!(nodes[2].state.cluster.lease_until_ms(), 0, "no lease granted");

    let err = c
        .heartbeat(HeartbeatRequest {
            epoch: 3,
            lease_ms: 0,
            sent_unix_ms: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("lease_ms:"));

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let until = c
        .heartbeat(HeartbeatRequest {
            epoch: 3,
            lease_ms: 5_000,
            sent_unix_ms: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .lease_until_ms;
    assert!(until >= now + 5_000 && until < now + 65_000, "{until} vs {now}");
    assert_eq!(nodes[2].state.cluster.lease_until_ms(), until);
    let status = c.get_status(GetStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.lease_until_ms, until);
    drop(c);
    shutdown(nodes).await;
}

/// A controller's first topology starts the fencing: the node gets a lease with it (no
/// unfenced gap before the first heartbeat), which later topologies never extend.
#[tokio::test]
async fn the_first_topology_from_a_controller_brings_the_first_lease() {
    let (nodes, topology) = three_node_cluster().await;
    assert_eq!(nodes[1].state.cluster.lease_until_ms(), 0, "cluster create grants none");
    let mut c = common::control_client(&nodes[1]).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut next = topology.clone();
    next.epoch += 1;
    c.apply_topology(ApplyTopologyRequest {
        topology: Some(topology_to_pb(&next)),
        lease_ms: 2_000,
        sent_unix_ms: now - 500,
    })
    .await
    .unwrap();
    assert_eq!(nodes[1].state.cluster.lease_until_ms(), now + 1_500);
    next.epoch += 1;
    c.apply_topology(ApplyTopologyRequest {
        topology: Some(topology_to_pb(&next)),
        lease_ms: 60_000,
        sent_unix_ms: now,
    })
    .await
    .unwrap();
    assert_eq!(
        nodes[1].state.cluster.lease_until_ms(),
        now + 1_500,
        "only heartbeats extend a lease"
    );
    drop(c);
    shutdown(nodes).await;
}

/// A heartbeat's lease runs from when it was sent: one read late (it waited while the
/// process was stopped) grants nothing once that lease is over, and one a little late
/// grants only what is left of it.
#[tokio::test]
async fn a_heartbeat_read_late_grants_no_more_than_its_sender_meant() {
    let (nodes, topology) = three_node_cluster().await;
    let mut c = common::control_client(&nodes[0]).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let err = c
        .heartbeat(HeartbeatRequest {
            epoch: topology.epoch,
            lease_ms: 2_000,
            sent_unix_ms: now - 10_000,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().starts_with("sent_unix_ms:"), "{}", err.message());
    assert_eq!(nodes[0].state.cluster.lease_until_ms(), 0, "no lease granted");

    let until = c
        .heartbeat(HeartbeatRequest {
            epoch: topology.epoch,
            lease_ms: 5_000,
            sent_unix_ms: now - 1_000,
        })
        .await
        .unwrap()
        .into_inner()
        .lease_until_ms;
    assert_eq!(until, now + 4_000, "the lease ends 5 s after it was sent");
    drop(c);
    shutdown(nodes).await;
}

#[tokio::test]
async fn status_and_health_of_a_standalone_node() {
    let node = common::start();
    let mut con = common::client(&node);
    for i in 0..10 {
        let _: () = common::cmd(&mut con, &["SET", &format!("key:{i}"), "value"]);
    }
    let _: Option<String> = common::cmd(&mut con, &["GET", "key:1"]);
    let _: Option<String> = common::cmd(&mut con, &["GET", "missing"]);

    let mut c = common::control_client(&node).await;
    let health = c.health(HealthRequest {}).await.unwrap().into_inner();
    assert!(health.ready);
    assert_eq!(health.epoch, 0);
    assert_eq!(health.node_id, node.state.cluster.node_id);
    assert_eq!(health.instance, node.state.cluster.instance);
    assert_eq!(health.resp_addr, node.resp_addr.to_string());

    let status = c.get_status(GetStatusRequest {}).await.unwrap().into_inner();
    assert!(!status.cluster_enabled);
    assert_eq!(status.keys, 10);
    assert!(status.used_memory > 0);
    assert!(status.maxmemory >= status.used_memory);
    assert_eq!(status.slot_ranges.len(), 1, "all slots, no topology");
    let all = &status.slot_ranges[0];
    assert_eq!((all.start, all.end), (0, 16383));
    assert_eq!(all.keys, 10);
    assert!(all.bytes > 0);
    assert_eq!((all.hits, all.misses), (1, 1));

    // Cluster-only RPCs are refused outside cluster mode.
    let err = c
        .heartbeat(HeartbeatRequest {
            epoch: 0,
            lease_ms: 1_000,
            sent_unix_ms: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let mut t = topology_to_pb(&node.state.cluster.view().map_or_else(
        || {
            ringcache_core::placement::next_topology(
                None,
                &[ringcache_core::topology::NodeInfo {
                    id: health.node_id.clone(),
                    instance: health.instance.clone(),
                    resp_addr: health.resp_addr.clone(),
                    control_addr: node.control_addr.to_string(),
                    replica_addr: None,
                    zone: None,
                }],
                &[ringcache_core::placement::Member::new(health.node_id.clone())],
                1,
            )
            .unwrap()
        },
        |v| v.topology.clone(),
    ));
    t.epoch = 1;
    let err = c
        .apply_topology(ApplyTopologyRequest {
            topology: Some(t),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("cluster mode"), "{}", err.message());
    drop(c);
    shutdown(vec![node]).await;
}

#[test]
fn cluster_create_command_line() {
    let nodes: Vec<NodeHandle> = ["a", "b"].into_iter().map(common::cluster_node).collect();
    let create = |token: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ringcache-node"));
        cmd.args(["cluster", "create", "--replication-factor", "2"])
            .args(addrs(&nodes))
            .env("RINGCACHE_LOG", "warn")
            .env_remove("RINGCACHE_CONTROL_TOKEN");
        if let Some(t) = token {
            cmd.env("RINGCACHE_CONTROL_TOKEN", t);
        }
        cmd.output().unwrap()
    };
    // The nodes obey only whoever holds their control token.
    let out = create(None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RINGCACHE_CONTROL_TOKEN"));
    let out = create(Some("not-the-token"));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Unauthenticated"), "{stderr}");
    assert!(nodes.iter().all(|n| n.state.cluster.epoch() == 0), "nothing applied");
    let out = create(Some(TEST_CONTROL_TOKEN));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("epoch 1, 2 nodes"), "{stdout}");
    assert!(stdout.contains("primary 0-8191 (8192 slots)"), "{stdout}");
    for n in &nodes {
        assert_eq!(n.state.cluster.epoch(), 1);
    }

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringcache-node"))
        .args(["cluster", "create"])
        .env("RINGCACHE_CONTROL_TOKEN", TEST_CONTROL_TOKEN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "missing addresses is a usage error");
    for n in nodes {
        n.shutdown();
    }
}

/// The control port obeys only the token's holder: a call without it, or with another
/// one, is refused before it reaches the service; a cluster-mode node will not start
/// without a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_rpcs_need_the_token() {
    let node = common::cluster_node("a");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", node.control_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut bare = ringcache_proto::pb::control_client::ControlClient::new(channel.clone());
    let err = bare.health(HealthRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("Bearer"), "{}", err.message());
    let mut wrong = ringcache_proto::auth::client(channel.clone(), "wrong-token").unwrap();
    let err = wrong
        .heartbeat(HeartbeatRequest {
            epoch: 0,
            lease_ms: 1000,
            sent_unix_ms: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(
        node.state.cluster.lease_until_ms(),
        0,
        "the refused call changed nothing"
    );
    let mut ok = common::control_client(&node).await;
    assert!(ok.health(HealthRequest {}).await.unwrap().into_inner().ready);

    let mut config = ringcache_node::config::Config::for_tests();
    config.cluster_enabled = true;
    config.control_token = None;
    let err = NodeHandle::start(&config).unwrap_err();
    assert!(err.to_string().contains("RINGCACHE_CONTROL_TOKEN"), "{err}");
    config.control_token = Some("has a space".into());
    assert!(NodeHandle::start(&config).is_err());
    drop((bare, wrong, ok));
    shutdown(vec![node]).await;
}
