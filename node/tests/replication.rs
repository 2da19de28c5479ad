//! Replication primary → replicas on three in-process nodes with two copies of every
//! slot: data reaches replicas (strings, TTLs, hashes, deletions), a short break
//! resumes from the offset, a long one copies again, and acknowledged writes wait for
//! a replica or answer `-NOREPLICAS`; collection writes ship as their change, and every
//! type survives a replica restart, moved copies and a slot handover.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use redis::Commands;
use ringcache_core::placement::{next_topology, Member};
use ringcache_core::slot::key_slot;
use ringcache_core::topology::{NodeInfo, Topology};
use ringcache_node::launch::NodeHandle;
use ringcache_node::store::now_ms;

fn primary_of<'a>(nodes: &'a [NodeHandle], topo: &Topology, key: &str) -> &'a NodeHandle {
    by_id(nodes, &topo.owners_of(key_slot(key.as_bytes()))[0])
}

fn replica_of<'a>(nodes: &'a [NodeHandle], topo: &Topology, key: &str) -> &'a NodeHandle {
    by_id(nodes, &topo.owners_of(key_slot(key.as_bytes()))[1])
}

/// Every live node has a connected link to each of its primaries, and has applied
/// everything those primaries wrote.
fn caught_up(nodes: &[&NodeHandle]) -> bool {
    nodes.iter().all(|n| {
        let st = n.state.replication.status();
        !st.links.is_empty()
            && st.links.iter().all(|l| {
                let Some(p) = nodes.iter().find(|p| p.state.cluster.node_id == l.primary_id) else {
                    return true;
                };
                l.connected && l.applied_offset == p.state.replication.status().current_offset
            })
    })
}

fn links_up(nodes: &[NodeHandle]) -> bool {
    nodes.iter().all(|n| {
        let st = n.state.replication.status();
        st.links.len() == 2 && st.links.iter().all(|l| l.connected)
    })
}

/// The expected contents: key → value (strings) or fields (hashes); `None` = deleted.
#[derive(Debug, Clone, PartialEq)]
enum Want {
    Str(String),
    Hash(Vec<(String, String)>),
    Gone,
}

/// Writes `n` keys with prefix `p` through the cluster client: plain strings, strings
/// with a TTL, counters (INCR), hashes (HSET + HINCRBY), and keys written then deleted.
fn write_keys(con: &mut redis::cluster::ClusterConnection, p: &str, n: usize, want: &mut HashMap<String, Want>) {
    for i in 0..n {
        let key = format!("{p}:{i}");
        match i % 6 {
            0 => {
                let _: () = con
                    .hset_multiple(&key, &[("f1", format!("v{i}")), ("n", "1".into())])
                    .expect("hset");
                let _: i64 = con.hincr(&key, "n", 2).expect("hincrby");
                want.insert(
                    key,
                    Want::Hash(vec![("f1".into(), format!("v{i}")), ("n".into(), "3".into())]),
                );
            }
            1 => {
                let _: () = con.set_ex(&key, format!("ttl{i}"), 1000).expect("setex");
                want.insert(key, Want::Str(format!("ttl{i}")));
            }
            2 => {
                let _: () = con.set(&key, 0).expect("set");
                let _: i64 = con.incr(&key, 5).expect("incr");
                let _: i64 = con.incr(&key, 1).expect("incr");
                want.insert(key, Want::Str("6".into()));
            }
            3 => {
                let _: () = con.set(&key, "doomed").expect("set");
                let _: i64 = con.del(&key).expect("del");
                want.insert(key, Want::Gone);
            }
            _ => {
                let _: () = con.set(&key, format!("value-{i}")).expect("set");
                want.insert(key, Want::Str(format!("value-{i}")));
            }
        }
    }
}

fn read_want(con: &mut redis::Connection, key: &str, like: &Want) -> Want {
    match like {
        Want::Hash(_) => {
            let mut fields: Vec<(String, String)> = con.hgetall(key).expect("hgetall");
            fields.sort();
            if fields.is_empty() {
                Want::Gone
            } else {
                Want::Hash(fields)
            }
        }
        _ => match con.get::<_, Option<String>>(key).expect("get") {
            Some(v) => Want::Str(v),
            None => Want::Gone,
        },
    }
}

fn readonly_client(node: &NodeHandle) -> redis::Connection {
    let mut con = client(node);
    cmd::<()>(&mut con, &["READONLY"]);
    con
}

/// Checks every key on its replica (through READONLY reads); returns the mismatches.
fn replica_mismatches(nodes: &[NodeHandle], topo: &Topology, want: &HashMap<String, Want>) -> Vec<String> {
    let mut cons: HashMap<String, redis::Connection> = nodes
        .iter()
        .map(|n| (n.state.cluster.node_id.clone(), readonly_client(n)))
        .collect();
    let mut bad = Vec::new();
    for (key, w) in want {
        let replica = &topo.owners_of(key_slot(key.as_bytes()))[1];
        let Some(con) = cons.get_mut(replica) else { continue };
        let got = read_want(con, key, w);
        if &got != w {
            bad.push(format!("{key}: want {w:?}, replica {replica} has {got:?}"));
        }
    }
    bad
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("admin port");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").expect("request");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn cluster_client(nodes: &[NodeHandle]) -> redis::cluster::ClusterConnection {
    let urls: Vec<String> = nodes.iter().map(|n| format!("redis://{}/", n.resp_addr)).collect();
    redis::cluster::ClusterClient::new(urls)
        .expect("cluster client")
        .get_connection()
        .expect("connects")
}

#[test]
fn ten_thousand_keys_reach_their_replicas_and_a_replica_shutdown_loses_nothing() {
    let (mut nodes, topo) = three_nodes();
    let mut con = cluster_client(&nodes);
    let mut want = HashMap::new();
    write_keys(&mut con, "key", 10_000, &mut want);

    let refs: Vec<&NodeHandle> = nodes.iter().collect();
    wait_until("replicas to catch up", Duration::from_secs(30), || caught_up(&refs));
    let bad = replica_mismatches(&nodes, &topo, &want);
    assert!(
        bad.is_empty(),
        "{} keys differ on replicas, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    // Each replica holds exactly its share: live keys of the slots it replicates.
    let live = want.values().filter(|w| **w != Want::Gone).count();
    let total: usize = nodes.iter().map(|n| n.store.dbsize()).sum();
    assert_eq!(total, 2 * live, "every live key is on exactly two nodes");
    // The absolute expiry travels with the value.
    let ttl_key = "key:1";
    let pttl: i64 = cmd(
        &mut readonly_client(replica_of(&nodes, &topo, ttl_key)),
        &["PTTL", ttl_key],
    );
    assert!(pttl > 990_000 && pttl <= 1_000_000, "{pttl}");
    // One full copy per primary (the first sync), and primaries see no lag once the
    // acknowledgements are in.
    for n in &nodes {
        let st = n.state.replication.status();
        assert_eq!(st.full_syncs_received, 2, "{}: {st:?}", n.state.cluster.node_id);
        wait_until("acknowledgements", Duration::from_secs(10), || {
            let st = n.state.replication.status();
            st.peers.len() == 2 && st.peers.iter().all(|p| p.connected && p.lag_records == 0)
        });
    }

    // Prometheus: this node's offset and each replica's lag.
    let metrics = http_get(nodes[0].admin_addr, "/metrics");
    let offset = nodes[0].state.replication.status().current_offset;
    assert!(
        metrics.contains(&format!("ringcache_replication_offset {offset}\n")),
        "{metrics}"
    );
    assert!(
        metrics.contains("ringcache_replication_lag_records{peer=\"b\"} 0\n"),
        "{metrics}"
    );

    // A replica node goes away: primaries keep every key and keep taking writes.
    let gone = nodes.remove(2);
    let gone_id = gone.state.cluster.node_id.clone();
    gone.shutdown();
    let mut cons: HashMap<String, redis::Connection> = nodes
        .iter()
        .map(|n| (n.state.cluster.node_id.clone(), client(n)))
        .collect();
    let mut checked = 0;
    for (key, w) in &want {
        let primary = &topo.owners_of(key_slot(key.as_bytes()))[0];
        if *primary == gone_id {
            continue;
        }
        let con = cons.get_mut(primary).expect("live primary");
        assert_eq!(&read_want(con, key, w), w, "{key} on primary {primary}");
        let _: () = con
            .set(format!("{{{key}}}-after"), "x")
            .expect("write after replica loss");
        checked += 1;
    }
    assert!(checked > 5000, "{checked}");
    for n in nodes {
        n.shutdown();
    }
}

#[test]
fn a_short_break_resumes_from_the_offset_and_a_long_one_copies_again() {
    let (nodes, topo) = three_nodes();
    let mut con = cluster_client(&nodes);
    let mut want = HashMap::new();
    write_keys(&mut con, "early", 600, &mut want);
    let refs: Vec<&NodeHandle> = nodes.iter().collect();
    wait_until("replicas to catch up", Duration::from_secs(20), || caught_up(&refs));

    // Short break: the replica resumes from its offset, no copy.
    let b = &nodes[1];
    let before = b.state.replication.status();
    b.state.replication.set_paused(true);
    wait_until("links to close", Duration::from_secs(5), || {
        b.state.replication.status().links.iter().all(|l| !l.connected)
    });
    write_keys(&mut con, "early", 300, &mut want); // overwrites
    write_keys(&mut con, "short", 600, &mut want);
    b.state.replication.set_paused(false);
    wait_until(
        "replicas to catch up after a short break",
        Duration::from_secs(20),
        || caught_up(&refs),
    );
    let after = b.state.replication.status();
    assert_eq!(after.full_syncs_received, before.full_syncs_received, "{after:?}");
    assert_eq!(
        after.partial_syncs_received,
        before.partial_syncs_received + 2,
        "{after:?}"
    );
    let bad = replica_mismatches(&nodes, &topo, &want);
    assert!(bad.is_empty(), "{:?}", &bad[..bad.len().min(5)]);

    // A new epoch with the same placement restarts the links, which resume.
    let mut next = topo.clone();
    next.epoch += 1;
    for n in &nodes {
        n.state.cluster.apply(next.clone()).expect("newer epoch");
    }
    write_keys(&mut con, "epoch", 300, &mut want);
    wait_until("links on the new epoch", Duration::from_secs(20), || {
        caught_up(&refs) && b.state.replication.status().partial_syncs_received >= before.partial_syncs_received + 4
    });
    assert_eq!(
        b.state.replication.status().full_syncs_received,
        before.full_syncs_received
    );
    let bad = replica_mismatches(&nodes, &topo, &want);
    assert!(bad.is_empty(), "{:?}", &bad[..bad.len().min(5)]);

    // Long break: the primaries' backlogs no longer hold the replica's position, so it
    // gets a full copy of its slots (including deletions made meanwhile).
    for n in &nodes {
        n.state.replication.set_backlog_cap(16 * 1024);
    }
    b.state.replication.set_paused(true);
    wait_until("links to close", Duration::from_secs(5), || {
        b.state.replication.status().links.iter().all(|l| !l.connected)
    });
    for i in (4..600).step_by(6) {
        let key = format!("early:{i}");
        let _: i64 = con.del(&key).expect("del");
        want.insert(key, Want::Gone);
    }
    write_keys(&mut con, "long", 1200, &mut want);
    b.state.replication.set_paused(false);
    wait_until(
        "replicas to catch up after a long break",
        Duration::from_secs(20),
        || caught_up(&refs),
    );
    let last = b.state.replication.status();
    assert_eq!(last.full_syncs_received, before.full_syncs_received + 2, "{last:?}");
    let bad = replica_mismatches(&nodes, &topo, &want);
    assert!(bad.is_empty(), "{:?}", &bad[..bad.len().min(5)]);
    for n in nodes {
        n.shutdown();
    }
}

#[test]
fn replicas_added_to_a_cluster_with_data_get_a_full_copy() {
    let nodes: Vec<NodeHandle> = ["a", "b", "c"].iter().map(|id| cluster_node(id)).collect();
    let single = form(&nodes, 1);
    let mut con = cluster_client(&nodes);
    let mut want = HashMap::new();
    write_keys(&mut con, "before", 1200, &mut want);
    assert!(
        nodes.iter().all(|n| n.state.replication.status().current_offset == 0),
        "R=1 keeps no backlog"
    );

    // Going to two copies per slot keeps the primaries and adds a replica to each slot.
    let infos: Vec<NodeInfo> = nodes.iter().map(info).collect();
    let members: Vec<Member> = infos.iter().map(|n| Member::new(n.id.clone())).collect();
    let topo = next_topology(Some(&single), &infos, &members, 2).expect("placement");
    assert!((0..16384u16).all(|s| topo.owners_of(s)[0] == single.owners_of(s)[0]));
    for n in &nodes {
        n.state.cluster.apply(topo.clone()).expect("newer epoch");
    }
    let refs: Vec<&NodeHandle> = nodes.iter().collect();
    wait_until("the new replicas to copy", Duration::from_secs(20), || caught_up(&refs));
    for n in &nodes {
        assert_eq!(n.state.replication.status().full_syncs_received, 2);
    }
    let bad = replica_mismatches(&nodes, &topo, &want);
    assert!(bad.is_empty(), "{:?}", &bad[..bad.len().min(5)]);
    for n in nodes {
        n.shutdown();
    }
}

#[test]
fn flushall_empties_the_primary_slots_everywhere_and_recopies_replicated_ones() {
    let (nodes, topo) = three_nodes();
    let mut con = cluster_client(&nodes);
    let mut want = HashMap::new();
    write_keys(&mut con, "f", 600, &mut want);
    let refs: Vec<&NodeHandle> = nodes.iter().collect();
    wait_until("replicas to catch up", Duration::from_secs(20), || caught_up(&refs));
    let a = &nodes[0];
    let before = a.state.replication.status().full_syncs_received;
    cmd::<()>(&mut client(a), &["FLUSHALL"]);
    for (key, w) in want.iter_mut() {
        if topo.owners_of(key_slot(key.as_bytes()))[0] == "a" {
            *w = Want::Gone;
        }
    }
    wait_until("a to copy its replicated slots again", Duration::from_secs(20), || {
        a.state.replication.status().full_syncs_received == before + 2 && caught_up(&refs)
    });
    let bad = replica_mismatches(&nodes, &topo, &want);
    assert!(bad.is_empty(), "{:?}", &bad[..bad.len().min(5)]);
    for n in nodes {
        n.shutdown();
    }
}

#[test]
fn acknowledged_writes_wait_for_a_replica_or_answer_noreplicas() {
    let (mut nodes, topo) = three_nodes_with(|c| {
        c.min_replicas_to_ack = 1;
        c.replica_ack_timeout_ms = 500;
    });
    wait_until("replication links", Duration::from_secs(10), || links_up(&nodes));
    let mut primaries: HashMap<String, redis::Connection> = nodes
        .iter()
        .map(|n| (n.state.cluster.node_id.clone(), client(n)))
        .collect();
    let mut replicas: HashMap<String, redis::Connection> = nodes
        .iter()
        .map(|n| (n.state.cluster.node_id.clone(), readonly_client(n)))
        .collect();
    for i in 0..300 {
        let key = format!("acked:{i}");
        let owners = topo.owners_of(key_slot(key.as_bytes()));
        let p = primaries.get_mut(&owners[0]).expect("primary");
        let _: () = p.set(&key, i).expect("acknowledged write");
        let r = replicas.get_mut(&owners[1]).expect("replica");
        let got: Option<i64> = r.get(&key).expect("replica read");
        assert_eq!(
            got,
            Some(i),
            "{key} is on replica {} as soon as the write returned",
            owners[1]
        );
    }

    // A pipeline of acknowledged writes: every reply is OK and every key is on the
    // replica when the replies are in.
    let key0 = "{piped}:0";
    let owners = topo.owners_of(key_slot(key0.as_bytes()));
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.cmd("SET").arg(format!("{{piped}}:{i}")).arg(i).ignore();
    }
    let () = pipe
        .query(primaries.get_mut(&owners[0]).expect("primary"))
        .expect("pipelined acknowledged writes");
    let r = replicas.get_mut(&owners[1]).expect("replica");
    let got: Vec<Option<i64>> = (0..2000)
        .map(|i| r.get(format!("{{piped}}:{i}")).expect("replica read"))
        .collect();
    assert!(got.iter().enumerate().all(|(i, v)| *v == Some(i as i64)));

    // Through a proxy port too: the owner runs the write and its reply waits for the
    // replica (here the write is local to the proxy's node).
    for i in 0..50 {
        let key = format!("{{proxied}}:{i}");
        let owners = topo.owners_of(key_slot(key.as_bytes()));
        let owner = nodes
            .iter()
            .find(|n| n.state.cluster.node_id == owners[0])
            .expect("owner");
        let mut proxy = redis::Client::open(format!("redis://{}/", owner.proxy_addr))
            .expect("url")
            .get_connection()
            .expect("proxy");
        let _: () = proxy.set(&key, i).expect("acknowledged write through the proxy");
        let got: Option<i64> = replicas.get_mut(&owners[1]).expect("replica").get(&key).expect("read");
        assert_eq!(got, Some(i), "{key} is on the replica when the proxy's reply came");
    }

    // With the slot's only replica gone, a write is applied but answers NOREPLICAS.
    let key = "acked:lonely";
    let replica_id = replica_of(&nodes, &topo, key).state.cluster.node_id.clone();
    let primary_id = primary_of(&nodes, &topo, key).state.cluster.node_id.clone();
    let idx = nodes
        .iter()
        .position(|n| n.state.cluster.node_id == replica_id)
        .expect("replica");
    drop(replicas);
    nodes.remove(idx).shutdown();
    let p = primaries.get_mut(&primary_id).expect("primary");
    let started = Instant::now();
    let err = cmd_err(p, &["SET", key, "v"]);
    assert_eq!(err, "NOREPLICAS Not enough good replicas to write.");
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(cmd::<String>(p, &["GET", key]), "v", "the write stays applied locally");
    let primary = nodes
        .iter()
        .find(|n| n.state.cluster.node_id == primary_id)
        .expect("primary");
    let mut proxy = redis::Client::open(format!("redis://{}/", primary.proxy_addr))
        .expect("url")
        .get_connection()
        .expect("proxy");
    assert_eq!(
        cmd_err(&mut proxy, &["SET", "{acked:lonely}p", "v"]),
        "NOREPLICAS Not enough good replicas to write.",
        "through the proxy port too"
    );
    // Reads and writes of slots without replicas are unaffected by the wait.
    assert_eq!(cmd::<String>(p, &["PING"]), "PONG");
    for n in nodes {
        n.shutdown();
    }
}

#[test]
fn replicas_authenticate_when_a_password_is_required() {
    let (nodes, topo) = three_nodes_with(|c| c.requirepass = Some("s3cret".into()));
    wait_until("replication links", Duration::from_secs(10), || links_up(&nodes));
    let key = "auth:key";
    let mut p = client_with_password(primary_of(&nodes, &topo, key));
    cmd::<()>(&mut p, &["SET", key, "v"]);
    let mut r = client_with_password(replica_of(&nodes, &topo, key));
    cmd::<()>(&mut r, &["READONLY"]);
    wait_until("the key on its replica", Duration::from_secs(10), || {
        cmd::<Option<String>>(&mut r, &["GET", key]).is_some()
    });
    for n in nodes {
        n.shutdown();
    }
}

fn client_with_password(node: &NodeHandle) -> redis::Connection {
    redis::Client::open(format!("redis://:s3cret@{}/", node.resp_addr))
        .expect("valid url")
        .get_connection()
        .expect("connects")
}

#[test]
fn internal_commands_refuse_misuse() {
    let plain = start();
    let out = raw(&plain, b"RINGCACHE.SYNC x 1 0\r\nRINGCACHE.ACK 1\r\n", 200);
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("-ERR This instance has cluster support disabled\r\n"),
        "{text}"
    );
    assert!(
        text.contains("-ERR RINGCACHE.ACK is only valid on a replication stream\r\n"),
        "{text}"
    );
    plain.shutdown();

    let (nodes, _topo) = three_nodes();
    let a = &nodes[0];
    // Wrong epoch: refused with TRYAGAIN, then the connection closes.
    let out = raw(a, b"RINGCACHE.SYNC b 999 0\r\n", 200);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("-TRYAGAIN topology epoch mismatch"), "{text}");
    let epoch = a.state.cluster.epoch();
    let out = raw(a, format!("RINGCACHE.SYNC nobody {epoch} 0\r\n").as_bytes(), 200);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("-ERR node \"nobody\" replicates no slot"), "{text}");
    let out = raw(a, b"RINGCACHE.SYNC b notanumber 0\r\n", 200);
    assert!(String::from_utf8_lossy(&out).starts_with("-ERR value is not an integer"));
    // A real sync answers with a stream that starts with RBEGIN, and garbage instead of
    // acknowledgements ends it without harming the node.
    let out = raw(a, format!("RINGCACHE.SYNC b {epoch} 0\r\nGARBAGE\r\n").as_bytes(), 20);
    assert!(String::from_utf8_lossy(&out).starts_with("*3\r\n$6\r\nRBEGIN\r\n"));
    assert_eq!(cmd::<String>(&mut client(a), &["PING"]), "PONG");
    for n in nodes {
        n.shutdown();
    }
}

/// Bitmaps and HyperLogLog sketches are strings changed in place (SETBIT inside the
/// string, BITFIELD, dense PFADD) or rebuilt (growth, BITOP, PFMERGE): replicas get
/// the primary's exact bytes either way.
#[test]
fn bitmaps_and_sketches_reach_replicas_byte_for_byte() {
    let (nodes, topo) = three_nodes();
    let keys = [
        "{bits}map",
        "{bits}field",
        "{bits}op",
        "{bits}hll",
        "{bits}small",
        "{bits}merged",
    ];
    let primary = primary_of(&nodes, &topo, keys[0]);
    let mut con = client(primary);
    cmd::<i64>(&mut con, &["SETBIT", keys[0], "9999", "1"]);
    cmd::<i64>(&mut con, &["SETBIT", keys[0], "5", "1"]);
    cmd::<Vec<i64>>(
        &mut con,
        &[
            "BITFIELD", keys[1], "SET", "i16", "#40", "-300", "INCRBY", "u4", "3", "9",
        ],
    );
    cmd::<i64>(&mut con, &["BITOP", "XOR", keys[2], keys[0], keys[1]]);
    let elements: Vec<String> = (0..3000).map(|i| format!("e{i}")).collect();
    for chunk in elements.chunks(500) {
        let mut c = redis::cmd("PFADD");
        c.arg(keys[3]).arg(chunk);
        let _: i64 = c.query(&mut con).expect("PFADD");
    }
    cmd::<i64>(&mut con, &["PFADD", keys[4], "a", "b", "c"]);
    cmd::<()>(&mut con, &["PFMERGE", keys[5], keys[4], keys[3]]);
    let refs: Vec<&NodeHandle> = nodes.iter().collect();
    wait_until("replicas to catch up", Duration::from_secs(20), || caught_up(&refs));
    let mut replica = readonly_client(replica_of(&nodes, &topo, keys[0]));
    for key in keys {
        let want: Vec<u8> = cmd(&mut con, &["GET", key]);
        let got: Vec<u8> = cmd(&mut replica, &["GET", key]);
        assert!(!want.is_empty(), "{key} was written");
        assert!(
            got == want,
            "{key}: replica has {} bytes, primary {}",
            got.len(),
            want.len()
        );
    }
    assert_eq!(
        cmd::<i64>(&mut replica, &["PFCOUNT", keys[4]]),
        cmd::<i64>(&mut con, &["PFCOUNT", keys[4]])
    );
    for n in nodes {
        n.shutdown();
    }
}

/// Everything a key of any type holds, as a replica and its primary can be compared
/// (sets and hashes sorted; a Bloom filter by its item count).
fn dump(con: &mut redis::Connection, key: &str) -> String {
    let kind: String = cmd(con, &["TYPE", key]);
    let body = match kind.as_str() {
        "none" => String::new(),
        "string" => cmd::<String>(con, &["GET", key]),
        "list" => cmd::<Vec<String>>(con, &["LRANGE", key, "0", "-1"]).join(","),
        "set" => {
            let mut m: Vec<String> = cmd(con, &["SMEMBERS", key]);
            m.sort();
            m.join(",")
        }
        "zset" => cmd::<Vec<String>>(con, &["ZRANGE", key, "0", "-1", "WITHSCORES"]).join(","),
        "hash" => {
            let mut m: Vec<(String, String)> = cmd(con, &["HGETALL", key]);
            m.sort();
            format!("{m:?}")
        }
        "MBbloom--" => cmd::<i64>(con, &["BF.CARD", key]).to_string(),
        other => panic!("{key}: unexpected type {other}"),
    };
    let pttl: i64 = cmd(con, &["PTTL", key]);
    // A TTL reads lower on whichever side is asked second; only its presence is compared.
    format!("{kind} ttl={} {body}", pttl >= 0)
}

/// Writes every kind of change each collection command ships as itself, plus writes
/// that ship whole values (SPOP, EXPIRE, a multi-key store).
fn change_every_type(con: &mut redis::Connection, tag: &str, round: usize) {
    let k = |name: &str| format!("{{{tag}}}{name}");
    let r = round.to_string();
    let run = |con: &mut redis::Connection, args: &[&str]| {
        let _: redis::Value = cmd(con, args);
    };
    run(con, &["LPUSH", &k("list"), &format!("post-{r}"), "x"]);
    run(con, &["LTRIM", &k("list"), "0", "999"]);
    run(con, &["LSET", &k("list"), "1", &format!("edited-{r}")]);
    run(con, &["LINSERT", &k("list"), "BEFORE", "x", &format!("before-x-{r}")]);
    run(con, &["LREM", &k("list"), "1", "x"]);
    run(con, &["RPUSH", &k("list"), "tail-a", "tail-b"]);
    run(con, &["RPOP", &k("list")]);
    run(con, &["LPOP", &k("list"), "1"]);
    run(con, &["LPUSHX", &k("list"), &format!("pushx-{r}")]);
    run(con, &["RPUSHX", &k("list"), "rpushx"]);
    run(con, &["SADD", &k("set"), &format!("m{r}"), "7", "8"]);
    run(con, &["SREM", &k("set"), "7", "absent"]);
    run(con, &["SPOP", &k("set")]);
    run(
        con,
        &[
            "ZADD",
            &k("zset"),
            "GT",
            "CH",
            &format!("{round}.5"),
            "m1",
            "2",
            &format!("z{r}"),
        ],
    );
    run(con, &["ZADD", &k("zset"), "INCR", "0.25", "m2"]);
    run(con, &["ZINCRBY", &k("zset"), "-1.5", "m3"]);
    run(con, &["ZREM", &k("zset"), "m4", "absent"]);
    run(con, &["ZPOPMIN", &k("zset")]);
    run(con, &["ZPOPMAX", &k("zset"), "2"]);
    run(con, &["ZREMRANGEBYSCORE", &k("zset"), "-inf", "(0"]);
    run(con, &["ZREMRANGEBYRANK", &k("zset"), "0", "0"]);
    run(con, &["ZREMRANGEBYLEX", &k("lex"), "[a", "[b"]);
    run(con, &["HSET", &k("hash"), "f1", &r, &format!("g{r}"), "v"]);
    run(con, &["HSETNX", &k("hash"), "f1", "never"]);
    run(con, &["HDEL", &k("hash"), "f3", "absent"]);
    run(con, &["HINCRBY", &k("hash"), "n", "3"]);
    run(con, &["HINCRBYFLOAT", &k("hash"), "x", "0.1"]);
    run(con, &["HMSET", &k("hash"), "m", &r]);
    run(con, &["EXPIRE", &k("hash"), "1000"]);
    run(con, &["ZUNIONSTORE", &k("union"), "2", &k("zset"), &k("set")]);
    run(con, &["BF.ADD", &k("bloom"), &format!("item-{r}")]);
    run(con, &["SET", &k("str"), &r]);
}

/// The keys [`change_every_type`] writes, with hash tag `tag`.
fn feed_keys(tag: &str) -> Vec<String> {
    ["list", "set", "zset", "lex", "hash", "union", "bloom", "str", "gone"]
        .iter()
        .map(|name| format!("{{{tag}}}{name}"))
        .collect()
}

fn feed_mismatches(primary: &NodeHandle, replica: &NodeHandle) -> Vec<String> {
    let (mut p, mut r) = (client(primary), readonly_client(replica));
    feed_keys("feed")
        .iter()
        .filter_map(|k| {
            let (want, got) = (dump(&mut p, k), dump(&mut r, k));
            let short = |v: &str| v.chars().take(160).collect::<String>();
            (want != got).then(|| format!("{k}: primary {:?}…, replica {:?}…", short(&want), short(&got)))
        })
        .collect()
}

fn counter(
    node: &NodeHandle,
    f: impl Fn(&ringcache_node::replication::Counters) -> &std::sync::atomic::AtomicU64,
) -> u64 {
    f(&node.state.replication.counters).load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn collection_writes_ship_as_changes_and_every_type_survives_a_replica_restart() {
    let (mut nodes, topo) = three_nodes();
    let owners = topo.owners_of(key_slot(b"{feed}"));
    let (p_id, r_id) = (owners[0].clone(), owners[1].clone());
    let primary = by_id(&nodes, &p_id);
    let mut con = client(primary);
    // A feed of 1,000 posts and a collection of every other type.
    for chunk in 0..10 {
        let posts: Vec<String> = (0..100).map(|i| format!("post-{}", chunk * 100 + i)).collect();
        let mut c = redis::cmd("RPUSH");
        c.arg("{feed}list").arg(&posts);
        let _: i64 = c.query(&mut con).expect("RPUSH");
    }
    let members: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    let mut c = redis::cmd("SADD");
    c.arg("{feed}set").arg(&members);
    let _: i64 = c.query(&mut con).expect("SADD");
    for i in 0..200 {
        cmd::<i64>(&mut con, &["ZADD", "{feed}zset", &i.to_string(), &format!("m{i}")]);
        cmd::<i64>(&mut con, &["HSET", "{feed}hash", &format!("f{i}"), &i.to_string()]);
    }
    cmd::<i64>(&mut con, &["ZADD", "{feed}lex", "0", "a", "0", "b", "0", "c", "0", "d"]);
    cmd::<()>(&mut con, &["SET", "{feed}gone", "x"]);
    cmd::<i64>(&mut con, &["DEL", "{feed}gone"]);
    let refs: Vec<&NodeHandle> = nodes.iter().collect();
    wait_until("replicas to catch up", Duration::from_secs(20), || caught_up(&refs));

    // A push to the 1,000-post feed ships the pushed post, not the feed.
    let post = "p".repeat(128);
    let (bytes0, cmds0) = (
        counter(primary, |c| &c.bytes_shipped),
        counter(primary, |c| &c.commands_shipped),
    );
    let stats = |n: &NodeHandle| n.store.hits_misses();
    let before = (stats(primary), stats(by_id(&nodes, &r_id)));
    for _ in 0..100 {
        cmd::<i64>(&mut con, &["LPUSH", "{feed}list", &post]);
    }
    let per_push = (counter(primary, |c| &c.bytes_shipped) - bytes0) / 100;
    eprintln!("{per_push} bytes shipped per push of a {}-byte post", post.len());
    assert_eq!(counter(primary, |c| &c.commands_shipped) - cmds0, 100);
    assert!(
        per_push < 2 * post.len() as u64,
        "{per_push} bytes shipped per push of a {}-byte post",
        post.len()
    );
    wait_until("replicas to catch up", Duration::from_secs(20), || caught_up(&refs));
    // Writes count no keyspace hit or miss, on the primary or where they are replayed.
    assert_eq!((stats(primary), stats(by_id(&nodes, &r_id))), before);
    let bad = feed_mismatches(primary, by_id(&nodes, &r_id));
    assert!(bad.is_empty(), "{bad:?}");
    let metrics = http_get(primary.admin_addr, "/metrics");
    let shipped = counter(primary, |c| &c.commands_shipped);
    assert!(
        metrics.contains(&format!("ringcache_replication_shipped_commands_total {shipped}\n")),
        "{metrics}"
    );

    for round in 0..5 {
        change_every_type(&mut con, "feed", round);
    }
    wait_until("replicas to catch up", Duration::from_secs(20), || caught_up(&refs));
    let bad = feed_mismatches(primary, by_id(&nodes, &r_id));
    assert!(bad.is_empty(), "{bad:?}");

    // The replica restarts (a new process, so a new instance): writes go on meanwhile;
    // it gets a full copy with the values' change counts, and later writes ship as
    // changes again.
    let at = nodes
        .iter()
        .position(|n| n.state.cluster.node_id == r_id)
        .expect("replica");
    nodes.remove(at).shutdown();
    for round in 5..8 {
        change_every_type(&mut con, "feed", round);
    }
    let back = cluster_node(&r_id);
    let mut next = topo.clone();
    next.epoch += 1;
    for n in next.nodes.iter_mut().filter(|n| n.id == r_id) {
        *n = info(&back);
    }
    nodes.push(back);
    for n in &nodes {
        n.state.cluster.apply(next.clone()).expect("newer epoch");
    }
    let primary = by_id(&nodes, &p_id);
    let refs: Vec<&NodeHandle> = nodes.iter().collect();
    wait_until("the restarted replica to copy", Duration::from_secs(20), || {
        caught_up(&refs)
    });
    let bad = feed_mismatches(primary, by_id(&nodes, &r_id));
    assert!(bad.is_empty(), "after the copy: {bad:?}");
    let cmds = counter(primary, |c| &c.commands_shipped);
    for round in 8..12 {
        change_every_type(&mut con, "feed", round);
    }
    wait_until("replicas to catch up", Duration::from_secs(20), || caught_up(&refs));
    let bad = feed_mismatches(primary, by_id(&nodes, &r_id));
    assert!(bad.is_empty(), "after the restart: {bad:?}");
    assert!(counter(primary, |c| &c.commands_shipped) > cmds + 40);
    // No replica ever found a value that did not fit a command's base.
    assert_eq!(counter(primary, |c| &c.refetches_served), 0);

    // The slot's copies move: the third node becomes its replica (a full copy while
    // writes go on), then its primary, with the old primary as its replica.
    let third = nodes
        .iter()
        .find(|n| n.state.cluster.node_id != p_id && n.state.cluster.node_id != r_id)
        .expect("third node")
        .state
        .cluster
        .node_id
        .clone();
    let slot = key_slot(b"{feed}");
    let mut epoch = next.epoch;
    for owners in [vec![p_id.clone(), third.clone()], vec![third.clone(), p_id.clone()]] {
        let mut all = next.to_slot_owners();
        all[usize::from(slot)] = owners.clone();
        epoch += 1;
        let t = Topology::from_slot_owners(epoch, next.nodes.clone(), all).expect("valid topology");
        let copies = |id: &str| by_id(&nodes, id).state.replication.status().full_syncs_received;
        let before = copies(&owners[1]);
        for n in &nodes {
            n.state.cluster.apply(t.clone()).expect("newer epoch");
        }
        // A new primary serves the slot once its former primary's fence arrived.
        wait_until("the new primary's fence", Duration::from_secs(20), || {
            by_id(&nodes, &owners[0]).state.replication.status().fencing.is_empty()
        });
        let mut con = client(by_id(&nodes, &owners[0]));
        for round in 12..15 {
            change_every_type(&mut con, "feed", round);
        }
        // The new replica's link to the slot's primary restarts with the new slots
        // and copies them.
        wait_until("the new replica to copy", Duration::from_secs(20), || {
            copies(&owners[1]) > before && caught_up(&refs)
        });
        let bad = feed_mismatches(by_id(&nodes, &owners[0]), by_id(&nodes, &owners[1]));
        assert!(bad.is_empty(), "owners {owners:?}: {bad:?}");
    }
    for n in nodes {
        n.shutdown();
    }
}

/// A slot handover (the new owner reads missing keys through from the old one) carries
/// every type, and the new owner's writes start from the values it read through.
#[test]
fn every_type_reads_through_a_slot_handover() {
    let (a, b, t1) = two_node_cluster();
    // A hash tag whose slot "a" owns (hand_slot_to_b moves a slot from "a" to "b").
    let tag = (0..)
        .map(|i| format!("feed{i}"))
        .find(|t| t1.owners_of(key_slot(t.as_bytes()))[0] == "a")
        .expect("a slot of a");
    let slot = key_slot(tag.as_bytes());
    let mut ca = client(&a);
    let zset = format!("{{{tag}}}zset");
    for i in 0..30 {
        cmd::<i64>(&mut ca, &["ZADD", &zset, &i.to_string(), &format!("m{i}")]);
    }
    cmd::<i64>(
        &mut ca,
        &["ZADD", &format!("{{{tag}}}lex"), "0", "a", "0", "b", "0", "c", "0", "d"],
    );
    for round in 0..3 {
        change_every_type(&mut ca, &tag, round);
    }
    let keys = feed_keys(&tag);
    let before: Vec<String> = keys.iter().map(|k| dump(&mut ca, k)).collect();
    assert!(
        before.iter().filter(|d| !d.starts_with("none")).count() >= 8,
        "{before:?}"
    );

    hand_slot_to_b(&a, &b, &t1, slot);
    let mut cb = client(&b);
    let after: Vec<String> = keys.iter().map(|k| dump(&mut cb, k)).collect();
    assert_eq!(after, before);
    // Writes on the new owner go on from there, and it now holds every key itself.
    for round in 3..5 {
        change_every_type(&mut cb, &tag, round);
    }
    for k in &keys {
        let local = b.store.lock(slot).slot().get(k.as_bytes(), now_ms()).is_some();
        assert_eq!(local, !dump(&mut cb, k).starts_with("none"), "{k}");
    }
    a.shutdown();
    b.shutdown();
}
