//! The proxy port: a plain (cluster-unaware) client connected to any node's proxy port
//! reaches every key. Three in-process nodes share one topology; the proxy forwards to
//! the slot's primary, splits multi-key commands, follows MOVED, retries TRYAGAIN,
//! and isolates a dead owner's keys.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use ringcache_core::placement::{next_topology, Member};
use ringcache_core::slot::{key_slot, SLOT_COUNT};
use ringcache_core::topology::{NodeInfo, Topology};
use ringcache_node::launch::NodeHandle;

fn proxy(node: &NodeHandle) -> redis::Connection {
    redis::Client::open(format!("redis://{}/", node.proxy_addr))
        .expect("valid url")
        .get_connection()
        .expect("connects to the proxy port")
}

/// The id of the primary of `key`'s slot.
fn owner_of(topo: &Topology, key: &str) -> String {
    topo.primary_of(key_slot(key.as_bytes())).expect("assigned").to_string()
}

/// A key named `{prefix}:{n}` whose primary is (`want` = true) or is not `id`.
fn key_owned(topo: &Topology, prefix: &str, id: &str, want: bool, skip: usize) -> String {
    (0..)
        .map(|i| format!("{prefix}:{i}"))
        .filter(|k| (owner_of(topo, k) == id) == want)
        .nth(skip)
        .expect("some key")
}

/// Keys a node holds in the slots it serves as primary (replica copies excluded).
fn primary_keys(node: &NodeHandle, topo: &Topology) -> usize {
    let id = &node.state.cluster.node_id;
    (0..SLOT_COUNT as u16)
        .filter(|&s| topo.primary_of(s).is_some_and(|p| p == id.as_str()))
        .map(|s| node.store.slot_stats(s).keys)
        .sum()
}

fn shutdown_all(nodes: Vec<NodeHandle>) {
    for n in nodes {
        n.shutdown();
    }
}

/// Sends raw bytes to the proxy port and reads until `want` appears (or 3 s pass).
fn raw_proxy(node: &NodeHandle, input: &[u8], want: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(node.proxy_addr).expect("connects");
    s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    s.write_all(input).expect("writes");
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut out = Vec::new();
    while std::time::Instant::now() < deadline && !out.windows(want.len()).any(|w| w == want) {
        out.extend(read_some(&mut s, 1));
    }
    out
}

#[test]
fn standalone_proxy_port_serves_locally() {
    let node = start();
    assert_ne!(node.proxy_addr, node.resp_addr);
    let mut con = proxy(&node);
    cmd::<()>(&mut con, &["MSET", "a", "1", "b", "2", "c", "3"]);
    assert_eq!(cmd::<Vec<String>>(&mut con, &["MGET", "a", "b", "c"]), ["1", "2", "3"]);
    assert_eq!(cmd::<String>(&mut con, &["PING"]), "PONG");
    assert_eq!(cmd::<i64>(&mut con, &["DEL", "a", "b", "zz"]), 2);
    assert_eq!(node.store.dbsize(), 1);
    // What the proxy port runs counts in INFO like the RESP port's commands.
    let before = node.state.metrics.total_commands();
    for _ in 0..50 {
        assert_eq!(cmd::<String>(&mut con, &["GET", "c"]), "3");
    }
    assert_eq!(node.state.metrics.total_commands(), before + 50);
    node.shutdown();
}

#[test]
fn every_proxy_port_reaches_every_key_with_pipelining() {
    let (nodes, topo) = three_nodes();
    let mut cons: Vec<redis::Connection> = nodes.iter().map(proxy).collect();
    const N: usize = 20_000;
    // Each node's proxy writes a third of the keys, in pipelines of 1000.
    for chunk in (0..N).collect::<Vec<_>>().chunks(1000) {
        let mut pipes: Vec<redis::Pipeline> = (0..3).map(|_| redis::pipe()).collect();
        for &i in chunk {
            pipes[i % 3].cmd("SET").arg(format!("key:{i}")).arg(i).ignore();
        }
        for (p, con) in pipes.iter().zip(cons.iter_mut()) {
            let () = p.query(con).expect("pipelined SETs");
        }
    }
    let per_node: Vec<usize> = nodes.iter().map(|n| primary_keys(n, &topo)).collect();
    assert_eq!(per_node.iter().sum::<usize>(), N, "{per_node:?}");
    assert!(per_node.iter().all(|&k| k > N / 5), "{per_node:?}");
    // Every key reads back through a proxy other than the one that wrote it.
    for chunk in (0..N).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            pipe.cmd("GET").arg(format!("key:{i}"));
        }
        let reader = (chunk[0] / 1000 + 1) % 3;
        let got: Vec<usize> = pipe.query(&mut cons[reader]).expect("pipelined GETs");
        assert_eq!(got, chunk.to_vec());
    }
    // Keyless commands are answered by the proxy's own node.
    assert_eq!(cmd::<String>(&mut cons[1], &["PING"]), "PONG");
    assert_eq!(cmd::<String>(&mut cons[1], &["ECHO", "hi"]), "hi");
    drop(cons);
    shutdown_all(nodes);
}

#[test]
fn multi_key_commands_split_across_owners_and_merge() {
    let (nodes, topo) = three_nodes();
    let mut con = proxy(&nodes[0]);
    let keys: Vec<String> = (0..30).map(|i| format!("mk:{i}")).collect();
    let owners: std::collections::HashSet<String> = keys.iter().map(|k| owner_of(&topo, k)).collect();
    assert_eq!(owners.len(), 3, "the keys span every owner");
    let mut mset = vec!["MSET".to_string()];
    for (i, k) in keys.iter().enumerate() {
        mset.push(k.clone());
        mset.push(format!("v{i}"));
    }
    let mset: Vec<&str> = mset.iter().map(String::as_str).collect();
    cmd::<()>(&mut con, &mset);

    let mut mget = vec!["MGET", "nosuch:1"];
    mget.extend(keys.iter().map(String::as_str));
    mget.push("nosuch:2");
    mget.push("mk:3");
    let got: Vec<Option<String>> = cmd(&mut con, &mget);
    let mut want: Vec<Option<String>> = vec![None];
    want.extend((0..30).map(|i| Some(format!("v{i}"))));
    want.push(None);
    want.push(Some("v3".into()));
    assert_eq!(got, want);

    let mut exists = vec!["EXISTS"];
    exists.extend(keys.iter().map(String::as_str));
    exists.push("mk:0");
    assert_eq!(cmd::<i64>(&mut con, &exists), 31);
    assert_eq!(cmd::<i64>(&mut con, &["TOUCH", "mk:1", "mk:2", "nosuch"]), 2);
    assert_eq!(cmd::<i64>(&mut con, &["UNLINK", "mk:1", "mk:2", "nosuch"]), 2);
    let mut del = vec!["DEL"];
    del.extend(keys.iter().map(String::as_str));
    assert_eq!(cmd::<i64>(&mut con, &del), 28);
    assert_eq!(nodes.iter().map(|n| primary_keys(n, &topo)).sum::<usize>(), 0);

    // Same slot: forwarded whole. Different slots: commands that cannot split refuse.
    cmd::<()>(&mut con, &["MSET", "{t}a", "1", "{t}b", "2"]);
    cmd::<()>(&mut con, &["RENAME", "{t}a", "{t}c"]);
    assert_eq!(cmd::<String>(&mut con, &["GET", "{t}c"]), "1");
    let (x, y) = (
        key_owned(&topo, "x", "a", true, 0),
        key_owned(&topo, "y", "a", false, 0),
    );
    cmd::<()>(&mut con, &["SET", &x, "1"]);
    let err = cmd_err(&mut con, &["RENAME", &x, &y]);
    assert!(err.starts_with("CROSSSLOT"), "{err}");
    let err = cmd_err(&mut con, &["MSETNX", &x, "1", &y, "2"]);
    assert!(err.starts_with("CROSSSLOT"), "{err}");
    // Errors of the owner are relayed.
    cmd::<()>(&mut con, &["SET", &y, "notanumber"]);
    let err = cmd_err(&mut con, &["INCR", &y]);
    assert!(err.contains("not an integer"), "{err}");
    drop(con);
    shutdown_all(nodes);
}

#[test]
fn a_pipeline_mixing_local_and_remote_keys_keeps_reply_order() {
    let (nodes, topo) = three_nodes();
    let mut con = proxy(&nodes[0]);
    let mut pipe = redis::pipe();
    let mut want: Vec<redis::Value> = Vec::new();
    for i in 0..300 {
        let local = key_owned(&topo, "ord", "a", true, i);
        let remote = key_owned(&topo, "ord", "a", false, i);
        pipe.cmd("SET").arg(&remote).arg(format!("r{i}"));
        want.push(redis::Value::Okay);
        pipe.cmd("SET").arg(&local).arg(format!("l{i}"));
        want.push(redis::Value::Okay);
        pipe.cmd("GET").arg(&remote);
        want.push(redis::Value::BulkString(format!("r{i}").into_bytes()));
        pipe.cmd("INCR").arg(format!("ctr:{}", i % 7));
        want.push(redis::Value::Int(i as i64 / 7 + 1));
        pipe.cmd("GET").arg(&local);
        want.push(redis::Value::BulkString(format!("l{i}").into_bytes()));
        pipe.cmd("PING");
        want.push(redis::Value::SimpleString("PONG".into()));
        pipe.cmd("MGET").arg(&local).arg(&remote);
        want.push(redis::Value::Array(vec![
            redis::Value::BulkString(format!("l{i}").into_bytes()),
            redis::Value::BulkString(format!("r{i}").into_bytes()),
        ]));
    }
    let got: Vec<redis::Value> = pipe.query(&mut con).expect("pipeline");
    assert_eq!(got.len(), want.len());
    for (n, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "reply {n}");
    }
    drop(con);
    shutdown_all(nodes);
}

#[test]
fn resp3_clients_get_resp3_replies_from_remote_owners() {
    let (nodes, topo) = three_nodes();
    let remote = key_owned(&topo, "r3", "a", false, 0);
    let local = key_owned(&topo, "r3", "a", true, 0);
    let input = format!(
        "HELLO 3\r\nGET {remote}\r\nGET {local}\r\nSET {remote} x\r\nGET {remote}\r\nMGET {local} {remote}\r\nPING\r\n"
    );
    let want = b"_\r\n_\r\n+OK\r\n$1\r\nx\r\n*2\r\n_\r\n$1\r\nx\r\n+PONG\r\n";
    let out = raw_proxy(&nodes[0], input.as_bytes(), want);
    assert!(out.starts_with(b"%"), "{}", String::from_utf8_lossy(&out));
    assert!(out.ends_with(want), "{}", String::from_utf8_lossy(&out));
    shutdown_all(nodes);
}

#[test]
fn moved_is_followed_once_and_tryagain_retried() {
    let (mut nodes, topo) = three_nodes();
    // A newer topology where every slot's replica became its primary, known to b and c
    // only: node a's proxy still forwards by the old one and gets -MOVED.
    let mut swapped = topo.clone();
    swapped.epoch += 1;
    for a in &mut swapped.slots {
        a.owners.rotate_left(1);
    }
    nodes[1].state.cluster.apply(swapped.clone()).expect("b applies");
    nodes[2].state.cluster.apply(swapped.clone()).expect("c applies");
    // A key a forwards to b (old primary) that now belongs to c.
    let key = (0..)
        .map(|i| format!("mv:{i}"))
        .find(|k| owner_of(&topo, k) == "b" && owner_of(&swapped, k) == "c")
        .expect("a key moving from b to c");
    let mut con = proxy(&nodes[0]);
    cmd::<()>(&mut con, &["SET", &key, "moved"]);
    let slot = key_slot(key.as_bytes());
    assert_eq!(nodes[2].store.slot_stats(slot).keys, 1, "written on the new primary");
    assert_eq!(cmd::<String>(&mut con, &["GET", &key]), "moved");

    // A primary without a write lease answers TRYAGAIN; the proxy retries once, then
    // relays it.
    let c = nodes.remove(2);
    c.state.cluster.grant_lease(1);
    let err = cmd_err(&mut con, &["SET", &key, "again"]);
    assert!(err.starts_with("TRYAGAIN"), "{err}");
    assert_eq!(cmd::<String>(&mut con, &["GET", &key]), "moved");
    drop(con);
    c.shutdown();
    shutdown_all(nodes);
}

#[test]
fn a_dead_owner_fails_only_its_own_keys() {
    let (mut nodes, topo) = three_nodes();
    let mut con = proxy(&nodes[0]);
    for i in 0..300 {
        cmd::<()>(&mut con, &["SET", &format!("d:{i}"), &i.to_string()]);
    }
    let dead = nodes.remove(2);
    dead.shutdown();
    let (mut ok, mut down) = (0, 0);
    for i in 0..300 {
        let key = format!("d:{i}");
        let got: redis::RedisResult<Option<String>> = redis::cmd("GET").arg(&key).query(&mut con);
        if owner_of(&topo, &key) == "c" {
            let err = got.expect_err("the owner is down");
            assert_eq!(err.code(), Some("CLUSTERDOWN"), "{err}");
            down += 1;
        } else {
            assert_eq!(got.expect("a live owner answers"), Some(i.to_string()));
            ok += 1;
        }
    }
    assert!(ok > 100 && down > 50, "ok={ok} down={down}");
    // A split request touching the dead owner fails as a whole, with the same error.
    let mut mget = redis::cmd("MGET");
    for i in 0..30 {
        mget.arg(format!("d:{i}"));
    }
    let err = mget.query::<redis::Value>(&mut con).expect_err("part of it is down");
    assert_eq!(err.code(), Some("CLUSTERDOWN"), "{err}");
    drop(con);
    shutdown_all(nodes);
}

#[test]
fn with_a_password_the_proxy_authenticates_clients_and_its_upstream_connections() {
    let nodes: Vec<NodeHandle> = ["a", "b", "c"]
        .iter()
        .map(|id| {
            let id = id.to_string();
            start_with(move |c| {
                c.cluster_enabled = true;
                c.node_id = Some(id);
                c.requirepass = Some("s3cret".into());
            })
        })
        .collect();
    let infos: Vec<NodeInfo> = nodes.iter().map(info).collect();
    let members: Vec<Member> = infos.iter().map(|n| Member::new(n.id.clone())).collect();
    let topo = next_topology(None, &infos, &members, 1).expect("placement");
    for n in &nodes {
        n.state.cluster.apply(topo.clone()).expect("topology applies");
    }
    let remote = key_owned(&topo, "pw", "a", false, 0);
    let out = raw_proxy(&nodes[0], format!("GET {remote}\r\n").as_bytes(), b"\r\n");
    assert!(out.starts_with(b"-NOAUTH"), "{}", String::from_utf8_lossy(&out));
    let mut con = redis::Client::open(format!("redis://:s3cret@{}/", nodes[0].proxy_addr))
        .expect("valid url")
        .get_connection()
        .expect("connects with the password");
    cmd::<()>(&mut con, &["SET", &remote, "v"]);
    assert_eq!(cmd::<String>(&mut con, &["GET", &remote]), "v");
    drop(con);
    shutdown_all(nodes);
}

#[test]
fn before_auth_the_proxy_port_has_the_same_small_request_limits() {
    let node = start_with(|c| c.requirepass = Some("s3cret".into()));
    let out = raw_proxy(&node, b"*11\r\n", b"\r\n");
    assert_eq!(out, b"-ERR Protocol error: unauthenticated multibulk length\r\n");
    // After AUTH, in the same write, a request of 12 arguments is fine.
    let mset = format!("*13\r\n$4\r\nMSET\r\n{}", "$1\r\nk\r\n$1\r\nv\r\n".repeat(6));
    let input = [&b"*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n"[..], mset.as_bytes()].concat();
    let out = raw_proxy(&node, &input, b"+OK\r\n+OK\r\n");
    assert_eq!(out, b"+OK\r\n+OK\r\n");
    node.shutdown();
}

/// `--hot-key-replica-reads`: reads of a key the node sees often enough are spread over
/// the slot's copies (primary and replica both serve them); a cold key's reads and
/// every write stay on the primary.
#[test]
fn hot_key_reads_through_the_proxy_are_spread_over_the_copies() {
    let (nodes, topo) = three_nodes_with(|c| {
        c.hot_key_replica_reads = 50;
        c.hotkeys_sample = 1;
    });
    let (hot, cold) = ("{hot}key", "{hot}cold");
    let slot = key_slot(hot.as_bytes());
    let owners = topo.owners_of(slot);
    let (primary, replica) = (by_id(&nodes, &owners[0]), by_id(&nodes, &owners[1]));
    // Enter through the node that holds no copy of the slot: every read is forwarded.
    let entry = nodes
        .iter()
        .find(|n| !owners.contains(&n.state.cluster.node_id))
        .expect("a third node");
    let mut con = proxy(entry);
    cmd::<()>(&mut con, &["SET", hot, "v"]);
    cmd::<()>(&mut con, &["SET", cold, "c"]);
    wait_until("the replica to have the keys", Duration::from_secs(20), || {
        replica.store.slot_stats(slot).keys == 2
    });
    let hits = |n: &NodeHandle| n.store.slot_stats(slot).hits;
    for _ in 0..5 {
        assert_eq!(cmd::<String>(&mut con, &["GET", cold]), "c");
    }
    assert_eq!(hits(replica), 0, "a cold key's reads go to its primary");
    assert_eq!(hits(primary), 5);
    wait_until(
        "reads of the hot key to reach both copies",
        Duration::from_secs(30),
        || {
            for _ in 0..200 {
                assert_eq!(cmd::<String>(&mut con, &["GET", hot]), "v");
            }
            hits(replica) >= 100 && hits(primary) >= 100
        },
    );
    // The entry node counts what it spread, by copy.
    let metrics = http_get(entry.admin_addr, "/metrics");
    let spread = |copy: &str| -> u64 {
        let prefix = format!("ringcache_proxy_hot_key_reads_total{{copy=\"{copy}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in {metrics}"))
    };
    assert!(spread("replica") >= 100 && spread("primary") >= 100, "{metrics}");
    // Entering through a copy's own node: this node's copy serves locally (as a
    // replica read on the replica), the other remotely.
    for via in [primary, replica] {
        let mut con = proxy(via);
        let (p0, r0) = (hits(primary), hits(replica));
        wait_until(
            "reads through a copy's node to reach both copies",
            Duration::from_secs(30),
            || {
                for _ in 0..200 {
                    assert_eq!(cmd::<String>(&mut con, &["GET", hot]), "v");
                }
                hits(replica) >= r0 + 100 && hits(primary) >= p0 + 100
            },
        );
    }
    // Writes still go to the primary only: the replica sees them by replication.
    cmd::<()>(&mut con, &["SET", hot, "w"]);
    wait_until("the replica to have the write", Duration::from_secs(20), || {
        (0..10).all(|_| cmd::<String>(&mut con, &["GET", hot]) == "w")
    });
    shutdown_all(nodes);
}
