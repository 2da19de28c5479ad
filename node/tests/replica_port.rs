//! The replica port: each node's address where `READONLY` is implied. Cluster replies
//! list it as one replica per primary whose slots the node copies (CLUSTER SLOTS,
//! SHARDS, NODES), it serves reads of those slots without READONLY, sends writes to the
//! primary with `-MOVED`, asks for the same password as the RESP port, and a cluster
//! client reading from replicas (redis-rs `read_from_replicas`) reads there.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use redis::Value;
use ringcache_core::roles::replica_id;
use ringcache_core::slot::key_slot;
use ringcache_core::topology::Topology;
use ringcache_node::config::ReplicaPort;
use ringcache_node::launch::NodeHandle;

fn replica_addr(node: &NodeHandle) -> SocketAddr {
    node.replica_addr.expect("tests run with a replica port")
}

fn connect(addr: SocketAddr) -> redis::Connection {
    redis::Client::open(format!("redis://{addr}/"))
        .expect("valid url")
        .get_connection()
        .expect("connects")
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::VerbatimString { text, .. } => text.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

/// A RESP2 flat array of field/value pairs (or a RESP3 map) as pairs.
fn fields(v: &Value) -> Vec<(String, Value)> {
    match v {
        Value::Array(items) => items.chunks(2).map(|kv| (text(&kv[0]), kv[1].clone())).collect(),
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (text(k), v.clone())).collect(),
        other => panic!("not a map: {other:?}"),
    }
}

fn field(v: &Value, name: &str) -> Value {
    fields(v)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {name} in {v:?}"))
}

fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) => items,
        other => panic!("not an array: {other:?}"),
    }
}

/// `cluster_replica_reads` of INFO cluster.
fn replica_reads(node: &NodeHandle) -> u64 {
    let info: String = cmd(&mut client(node), &["INFO", "cluster"]);
    info.lines()
        .find_map(|l| l.strip_prefix("cluster_replica_reads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no cluster_replica_reads in {info:?}"))
}

#[test]
fn cluster_slots_shards_and_nodes_list_the_replicas_at_their_replica_ports() {
    let (nodes, topo) = three_nodes();
    let mut con = client(&nodes[0]);

    // CLUSTER SLOTS: each range's primary at its RESP port, its replica at the
    // replica port of the node holding the copy, under the virtual replica's id.
    let slots: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut con).expect("slots");
    let mut covered = 0;
    for entry in &slots {
        let parts = items(entry);
        let (start, end) = (int(&parts[0]), int(&parts[1]));
        covered += end - start + 1;
        assert_eq!(parts.len(), 4, "a primary and one replica: {parts:?}");
        let owners = topo.owners_of(start as u16);
        let (primary, copy) = (by_id(&nodes, &owners[0]), by_id(&nodes, &owners[1]));
        let p = items(&parts[2]);
        assert_eq!(int(&p[1]), i64::from(primary.resp_addr.port()));
        assert_eq!(text(&p[2]), owners[0]);
        let r = items(&parts[3]);
        assert_eq!(text(&r[0]), "127.0.0.1");
        assert_eq!(int(&r[1]), i64::from(replica_addr(copy).port()));
        assert_eq!(text(&r[2]), replica_id(&owners[1], &owners[0]));
    }
    assert_eq!(covered, 16384);

    // CLUSTER SHARDS: the master at its RESP port, the replica at its replica port.
    let shards: Vec<Value> = redis::cmd("CLUSTER").arg("SHARDS").query(&mut con).expect("shards");
    assert!(!shards.is_empty());
    for shard in &shards {
        let shard_nodes = field(shard, "nodes");
        let shard_nodes = items(&shard_nodes);
        assert_eq!(shard_nodes.len(), 2, "{shard:?}");
        let master_id = text(&field(&shard_nodes[0], "id"));
        assert_eq!(text(&field(&shard_nodes[0], "role")), "master");
        assert_eq!(
            int(&field(&shard_nodes[0], "port")),
            i64::from(by_id(&nodes, &master_id).resp_addr.port())
        );
        assert_eq!(text(&field(&shard_nodes[1], "role")), "replica");
        let port = int(&field(&shard_nodes[1], "port"));
        let copy = nodes
            .iter()
            .find(|n| i64::from(replica_addr(n).port()) == port)
            .expect("a replica port");
        assert_eq!(
            text(&field(&shard_nodes[1], "id")),
            replica_id(&copy.state.cluster.node_id, &master_id)
        );
    }

    // CLUSTER NODES: three masters with their slots, then one `slave <primary>` line
    // per (copying node, primary) pair, at the copying node's replica port.
    let listing: String = cmd(&mut con, &["CLUSTER", "NODES"]);
    let mut masters = 0;
    let mut replicas = 0;
    for line in listing.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let addr = f[1].split('@').next().expect("addr");
        if f[2].ends_with("master") {
            masters += 1;
            assert_eq!(addr, by_id(&nodes, f[0]).resp_addr.to_string(), "{line}");
            assert!(f.len() > 8, "a master lists its slots: {line}");
        } else {
            replicas += 1;
            assert_eq!(f[2], "slave", "{line}");
            let copy = nodes
                .iter()
                .find(|n| replica_addr(n).to_string() == addr)
                .expect("a replica port");
            assert_eq!(f[0], replica_id(&copy.state.cluster.node_id, f[3]), "{line}");
            assert_eq!(
                topo.slots_of(&copy.state.cluster.node_id)
                    .replica
                    .iter()
                    .filter(|r| topo.primary_of(r.start) == Some(f[3]))
                    .count()
                    .min(1),
                1,
                "{line}: the copying node holds some of its primary's slots"
            );
        }
    }
    assert_eq!(masters, 3, "{listing}");
    assert!(replicas >= 3, "every primary has a replica: {listing}");
    assert!(listing.contains("myself,master"), "{listing}");
    for n in nodes {
        n.shutdown();
    }
}

#[test]
fn the_replica_port_serves_replica_reads_and_redirects_the_rest() {
    let (nodes, topo) = three_nodes();
    let key = "{rp}k";
    let slot = key_slot(key.as_bytes());
    let owners = topo.owners_of(slot);
    let primary = by_id(&nodes, &owners[0]);
    let copy = by_id(&nodes, &owners[1]);
    let other = nodes
        .iter()
        .find(|n| !owners.contains(&n.state.cluster.node_id))
        .expect("a node without the slot");
    cmd::<()>(&mut client(primary), &["SET", key, "v1"]);
    let moved = format!("MOVED {slot} {}", primary.resp_addr);

    // The copy's replica port: the read is served without READONLY, counted as a
    // replica read; the write goes to the primary.
    let mut at_copy = connect(replica_addr(copy));
    wait_until("the copy to have the key", Duration::from_secs(10), || {
        redis::cmd("GET")
            .arg(key)
            .query::<Option<String>>(&mut at_copy)
            .ok()
            .flatten()
            == Some("v1".into())
    });
    let before = replica_reads(copy);
    assert_eq!(cmd::<String>(&mut at_copy, &["GET", key]), "v1");
    assert_eq!(replica_reads(copy), before + 1);
    assert_eq!(cmd_err(&mut at_copy, &["SET", key, "v2"]), moved);
    assert_eq!(cmd_err(&mut at_copy, &["DEL", key]), moved);
    // READWRITE makes it a replica that redirects reads too; READONLY undoes that.
    cmd::<()>(&mut at_copy, &["READWRITE"]);
    assert_eq!(cmd_err(&mut at_copy, &["GET", key]), moved);
    cmd::<()>(&mut at_copy, &["READONLY"]);
    assert_eq!(cmd::<String>(&mut at_copy, &["GET", key]), "v1");

    // A node that does not hold the slot redirects the read to the primary.
    assert_eq!(cmd_err(&mut connect(replica_addr(other)), &["GET", key]), moved);

    // The primary's own replica port serves the read and sends the write to its RESP
    // port, as a replica would.
    let mut at_primary = connect(replica_addr(primary));
    assert_eq!(cmd::<String>(&mut at_primary, &["GET", key]), "v1");
    assert_eq!(cmd_err(&mut at_primary, &["SET", key, "v2"]), moved);
    assert_eq!(
        cmd::<String>(&mut client(primary), &["GET", key]),
        "v1",
        "no write went through"
    );
    for n in nodes {
        n.shutdown();
    }
}

#[test]
fn the_replica_port_asks_for_the_same_password() {
    let node = cluster_node_with("a", |c| c.requirepass = Some("secret".into()));
    node.state.cluster.apply(form_one(&node)).expect("applies");
    let mut s = std::net::TcpStream::connect(replica_addr(&node)).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let out = String::from_utf8_lossy(&{
        use std::io::Write;
        s.write_all(b"GET k\r\nAUTH wrong\r\nAUTH secret\r\nGET k\r\n")
            .expect("write");
        read_some(&mut s, 200)
    })
    .into_owned();
    assert!(out.starts_with("-NOAUTH Authentication required.\r\n"), "{out}");
    assert!(out.contains("-WRONGPASS"), "{out}");
    assert!(out.ends_with("+OK\r\n$-1\r\n"), "{out}");
    node.shutdown();
}

/// A one-node topology for `node` (applied by the caller).
fn form_one(node: &NodeHandle) -> Topology {
    Topology {
        epoch: 1,
        nodes: vec![info(node)],
        slots: vec![ringcache_core::topology::SlotAssignment {
            range: ringcache_core::topology::SlotRange::all(),
            owners: vec![node.state.cluster.node_id.clone()],
        }],
    }
}

#[test]
fn without_a_replica_port_replicas_are_listed_at_their_resp_port() {
    let nodes: Vec<NodeHandle> = ["a", "b"]
        .iter()
        .map(|id| cluster_node_with(id, |c| c.replica_port = ReplicaPort::Off))
        .collect();
    assert!(nodes.iter().all(|n| n.replica_addr.is_none()));
    let topo = form(&nodes, 2);
    let slots: Vec<Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query(&mut client(&nodes[0]))
        .expect("slots");
    for entry in &slots {
        let parts = items(entry);
        let owners = topo.owners_of(int(&parts[0]) as u16);
        let r = items(&parts[3]);
        assert_eq!(text(&r[2]), owners[1]);
        assert_eq!(int(&r[1]), i64::from(by_id(&nodes, &owners[1]).resp_addr.port()));
    }
    for n in nodes {
        n.shutdown();
    }
}

#[test]
fn a_cluster_client_reading_from_replicas_reads_at_the_replica_ports() {
    let (nodes, topo) = three_nodes();
    let urls: Vec<String> = nodes.iter().map(|n| format!("redis://{}/", n.resp_addr)).collect();
    let cluster = redis::cluster::ClusterClientBuilder::new(urls)
        .read_from_replicas()
        .build()
        .expect("cluster client");
    let mut con = cluster.get_connection().expect("connects");
    // One slot, so one primary and one copy hold every key.
    let keys: Vec<String> = (0..200).map(|i| format!("{{rr}}:{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        redis::cmd("SET").arg(k).arg(i).query::<()>(&mut con).expect("set");
    }
    let owners = topo.owners_of(key_slot(b"rr"));
    let (primary, copy) = (by_id(&nodes, &owners[0]), by_id(&nodes, &owners[1]));
    wait_until("the copy to have every key", Duration::from_secs(10), || {
        copy.store.dbsize() == keys.len()
    });
    let (copy_before, primary_before) = (replica_reads(copy), replica_reads(primary));
    let hits_before = primary.store.hits_misses();
    for (i, k) in keys.iter().enumerate() {
        let v: i64 = redis::cmd("GET").arg(k).query(&mut con).expect("get");
        assert_eq!(v, i as i64);
    }
    // Every read was served by the copy, none by the primary.
    assert_eq!(replica_reads(copy) - copy_before, keys.len() as u64);
    assert_eq!(replica_reads(primary), primary_before);
    assert_eq!(primary.store.hits_misses(), hits_before);
    // Writes still reach the primary.
    redis::cmd("SET")
        .arg(&keys[0])
        .arg("w")
        .query::<()>(&mut con)
        .expect("set");
    assert_eq!(cmd::<String>(&mut client(primary), &["GET", &keys[0]]), "w");
    for n in nodes {
        n.shutdown();
    }
}

/// `redis-cli --cluster check` (Debian's redis-tools, what Redis users run to look at a
/// cluster) sees every slot covered and two copies of each primary's slots: the
/// primary and a replica per node that copies some of them (it reported "0 slaves"
/// before the replica port).
#[test]
fn redis_cli_cluster_check_lists_the_replicas() {
    let (nodes, _topo) = three_nodes();
    let out = std::process::Command::new("redis-cli")
        .args(["--cluster", "check", &nodes[0].resp_addr.to_string()])
        .output()
        .expect("redis-cli runs (make redis-tools installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[OK] All 16384 slots covered."), "{text}");
    let masters: Vec<&str> = text.lines().filter(|l| l.contains(" slots | ")).collect();
    assert_eq!(masters.len(), 3, "{text}");
    for line in masters {
        assert!(line.trim_end().ends_with("| 2 slaves."), "{line}\n{text}");
    }
    for n in nodes {
        n.shutdown();
    }
}
