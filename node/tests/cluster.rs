//! Cluster mode on one machine: three in-process nodes given one topology. A
//! cluster-aware client (redis-rs `ClusterClient`) routes itself by `CLUSTER SLOTS`
//! and `-MOVED`; raw requests see the exact redirect and error lines.

mod common;

use common::*;
use redis::Commands;
use ringcache_node::launch::NodeHandle;

#[test]
fn a_node_serves_nothing_until_it_has_a_topology() {
    let node = cluster_node("lonely");
    let out = raw(&node, b"GET k\r\nPING\r\nCLUSTER INFO\r\n", 60);
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("-CLUSTERDOWN The cluster is down\r\n+PONG\r\n"),
        "{text}"
    );
    assert!(text.contains("cluster_state:fail"), "{text}");
    node.shutdown();
}

#[test]
fn three_nodes_serve_every_key_through_a_cluster_client() {
    let (nodes, topo) = three_nodes();
    let urls: Vec<String> = nodes.iter().map(|n| format!("redis://{}/", n.resp_addr)).collect();
    let client = redis::cluster::ClusterClient::new(urls).expect("cluster client");
    let mut con = client.get_connection().expect("connects");
    for i in 0..3000 {
        let _: () = con.set(format!("key:{i}"), i).expect("set");
    }
    for i in 0..3000 {
        let v: i64 = con.get(format!("key:{i}")).expect("get");
        assert_eq!(v, i);
    }
    // Keys are spread over the three primaries, each holding only its own slots plus
    // the copies it replicates (R=2: every key on two nodes, asynchronously).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let per_node = loop {
        let per_node: Vec<usize> = nodes.iter().map(|n| n.store.dbsize()).collect();
        if per_node.iter().sum::<usize>() == 6000 || std::time::Instant::now() > deadline {
            break per_node;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(per_node.iter().sum::<usize>(), 6000, "{per_node:?}");
    assert!(per_node.iter().all(|&k| k > 1600), "{per_node:?}");

    // A node that does not own a key's slot redirects to the primary.
    let slot = ringcache_core::slot::key_slot(b"key:1");
    let primary = topo.primary_of(slot).expect("assigned").to_string();
    let other = nodes
        .iter()
        .find(|n| n.state.cluster.node_id != primary)
        .expect("another node");
    let owner = nodes
        .iter()
        .find(|n| n.state.cluster.node_id == primary)
        .expect("primary");
    let out = raw(other, b"GET key:1\r\nMGET a b\r\n", 80);
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with(&format!("-MOVED {slot} {}\r\n", owner.resp_addr)),
        "{text}"
    );
    assert!(
        text.contains("-CROSSSLOT Keys in request don't hash to the same slot"),
        "{text}"
    );

    // CLUSTER SLOTS lists every slot once, with a primary and a replica.
    let mut plain = client_for(&nodes[0]);
    let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut plain).expect("slots");
    let mut covered = 0;
    for s in slots {
        let redis::Value::Array(parts) = s else {
            panic!("slot entry is an array")
        };
        let (redis::Value::Int(a), redis::Value::Int(b)) = (&parts[0], &parts[1]) else {
            panic!("range")
        };
        covered += b - a + 1;
        assert_eq!(parts.len(), 4, "primary plus one replica");
    }
    assert_eq!(covered, 16384);
    let keyslot: i64 = cmd(&mut plain, &["CLUSTER", "KEYSLOT", "key:1"]);
    assert_eq!(keyslot, i64::from(slot));
    let myid: String = cmd(&mut plain, &["CLUSTER", "MYID"]);
    assert_eq!(myid, "a");
    let nodes_txt: String = cmd(&mut plain, &["CLUSTER", "NODES"]);
    // Three primaries, then the replicas at their replica ports (tests/replica_port.rs).
    assert_eq!(
        nodes_txt
            .lines()
            .filter(|l| l.split(' ').nth(2).is_some_and(|f| f.ends_with("master")))
            .count(),
        3,
        "{nodes_txt}"
    );
    assert!(nodes_txt.contains("myself,master"), "{nodes_txt}");
    let count: i64 = cmd(
        &mut client_for(owner),
        &["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()],
    );
    assert!(count >= 1);
    let keys: Vec<String> = cmd(
        &mut client_for(owner),
        &["CLUSTER", "GETKEYSINSLOT", &slot.to_string(), "10"],
    );
    assert!(keys.contains(&"key:1".to_string()), "{keys:?}");

    // A replica serves reads after READONLY and redirects without it.
    let replica_id = topo.owners_of(slot)[1].clone();
    let replica = nodes
        .iter()
        .find(|n| n.state.cluster.node_id == replica_id)
        .expect("replica");
    let out = raw(replica, b"READONLY\r\nGET nosuchkey-in-this-slot\r\n", 10);
    assert!(
        String::from_utf8_lossy(&out).starts_with("+OK\r\n"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    for n in nodes {
        n.shutdown();
    }
}

fn client_for(node: &NodeHandle) -> redis::Connection {
    client(node)
}

#[test]
fn a_primary_without_a_live_lease_refuses_writes_with_tryagain() {
    let node = cluster_node("solo");
    form(std::slice::from_ref(&node), 1);
    let mut con = client(&node);
    cmd::<()>(&mut con, &["SET", "k", "1"]);
    // A lease that ended in the past fences the primary.
    node.state.cluster.grant_lease(1);
    let err = cmd_err(&mut con, &["SET", "k", "2"]);
    assert!(err.starts_with("TRYAGAIN"), "{err}");
    // Reads still work; the value is the last acknowledged one.
    assert_eq!(cmd::<String>(&mut con, &["GET", "k"]), "1");
    node.shutdown();
}
