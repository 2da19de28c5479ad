//! Shared helpers for node integration tests: an in-process node on free loopback
//! ports, a real Redis client, and a raw-socket client for exact RESP bytes.
#![allow(dead_code)]

pub mod plan;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ringcache_core::placement::{next_topology, Member};
use ringcache_core::slot::{key_slot, Slot};
use ringcache_core::topology::{NodeInfo, Topology};
use ringcache_node::config::Config;
use ringcache_node::launch::NodeHandle;

/// Starts a node with test defaults, changed by `tweak`.
pub fn start_with(tweak: impl FnOnce(&mut Config)) -> NodeHandle {
    let mut config = Config::for_tests();
    tweak(&mut config);
    NodeHandle::start(&config).expect("node starts on loopback")
}

pub fn start() -> NodeHandle {
    start_with(|_| {})
}

/// A synchronous connection from the `redis` crate.
pub fn client(node: &NodeHandle) -> redis::Connection {
    let url = format!("redis://{}/", node.resp_addr);
    redis::Client::open(url)
        .expect("valid url")
        .get_connection()
        .expect("connects")
}

/// Sends raw bytes and reads until `expect_len` bytes arrived, EOF, or 2 s passed.
pub fn raw(node: &NodeHandle, input: &[u8], expect_len: usize) -> Vec<u8> {
    let mut s = TcpStream::connect(node.resp_addr).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    s.write_all(input).expect("writes");
    read_some(&mut s, expect_len)
}

pub fn read_some(s: &mut TcpStream, expect_len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while out.len() < expect_len {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// Runs a command and returns its value, panicking with the command on error.
pub fn cmd<T: redis::FromRedisValue>(con: &mut redis::Connection, args: &[&str]) -> T {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(con).unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
}

/// Polls `f` until it holds; fails the test naming `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `args` on a new connection in a thread (it may block); the reply comes back
/// through the handle.
pub fn in_background(node: &NodeHandle, args: &[&str]) -> std::thread::JoinHandle<redis::RedisResult<redis::Value>> {
    let mut con = client(node);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    std::thread::spawn(move || {
        let mut c = redis::cmd(&args[0]);
        for a in &args[1..] {
            c.arg(a);
        }
        c.query::<redis::Value>(&mut con)
    })
}

/// Runs a command that must fail, returning the error text (code + message).
pub fn cmd_err(con: &mut redis::Connection, args: &[&str]) -> String {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    match c.query::<redis::Value>(con) {
        Ok(v) => panic!("{args:?} should fail, got {v:?}"),
        Err(e) => match (e.code(), e.detail()) {
            (Some(code), Some(detail)) => format!("{code} {detail}"),
            _ => e.to_string(),
        },
    }
}

/// `used_memory` from INFO memory.
pub fn used_memory(con: &mut redis::Connection) -> u64 {
    let info: String = cmd(con, &["INFO", "memory"]);
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no used_memory in {info:?}"))
}

/// A cluster-mode node with id `id`, changed by `tweak`.
pub fn cluster_node_with(id: &str, tweak: impl FnOnce(&mut Config)) -> NodeHandle {
    let id = id.to_string();
    start_with(move |c| {
        c.cluster_enabled = true;
        c.node_id = Some(id);
        tweak(c);
    })
}

/// A gRPC control client connected to `node`'s control port.
pub async fn control_client(node: &NodeHandle) -> ringcache_proto::auth::Client {
    control_client_at(&node.control_addr.to_string()).await
}

/// A gRPC control client for the control port at `addr`, carrying the test token.
pub async fn control_client_at(addr: &str) -> ringcache_proto::auth::Client {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("control address")
        .connect()
        .await
        .expect("control port accepts connections");
    ringcache_proto::auth::client(channel, ringcache_node::config::TEST_CONTROL_TOKEN).expect("test token")
}

/// A cluster-mode node with id `id`.
pub fn cluster_node(id: &str) -> NodeHandle {
    cluster_node_with(id, |_| {})
}

/// How a topology names `node`.
pub fn info(node: &NodeHandle) -> NodeInfo {
    NodeInfo {
        id: node.state.cluster.node_id.clone(),
        instance: node.state.cluster.instance.clone(),
        resp_addr: node.resp_addr.to_string(),
        control_addr: node.control_addr.to_string(),
        replica_addr: node.replica_addr.map(|a| a.to_string()),
        zone: None,
    }
}

/// Nodes "a", "b" and "c" in cluster mode, changed by `tweak`, with two copies of every
/// slot (epoch 1), and the topology.
pub fn three_nodes_with(tweak: impl Fn(&mut Config)) -> (Vec<NodeHandle>, Topology) {
    let nodes: Vec<NodeHandle> = ["a", "b", "c"].iter().map(|id| cluster_node_with(id, &tweak)).collect();
    let topo = form(&nodes, 2);
    (nodes, topo)
}

/// [`three_nodes_with`] with the test defaults.
pub fn three_nodes() -> (Vec<NodeHandle>, Topology) {
    three_nodes_with(|_| {})
}

/// The node of `nodes` with id `id`.
pub fn by_id<'a>(nodes: &'a [NodeHandle], id: &str) -> &'a NodeHandle {
    nodes
        .iter()
        .find(|n| n.state.cluster.node_id == id)
        .unwrap_or_else(|| panic!("no node {id}"))
}

/// Places all slots over `nodes` with `r` copies (epoch 1) and applies it everywhere.
pub fn form(nodes: &[NodeHandle], r: usize) -> Topology {
    let infos: Vec<NodeInfo> = nodes.iter().map(info).collect();
    let members: Vec<Member> = infos.iter().map(|n| Member::new(n.id.clone())).collect();
    let topo = next_topology(None, &infos, &members, r).expect("placement");
    for n in nodes {
        n.state.cluster.apply(topo.clone()).expect("topology applies");
    }
    topo
}

/// `GET path` on an admin port; the whole response (status line, headers, body).
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("admin port");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes())
        .expect("request");
    String::from_utf8_lossy(&read_some(&mut s, usize::MAX)).into_owned()
}

/// Runs the blocking `command`, whose key is `key`, on the owner of the key's slot in a
/// two-node cluster, then moves that slot to the other node: the blocked client must
/// be answered `-MOVED` to the new owner and leave no waiter behind.
pub fn blocked_command_is_redirected_when_its_slot_moves(command: &[&str], key: &str) {
    let nodes: Vec<NodeHandle> = ["a", "b"].iter().map(|id| cluster_node(id)).collect();
    let topo = form(&nodes, 1);
    let slot = key_slot(key.as_bytes());
    let owner = topo.owners_of(slot)[0].clone();
    let (here, there) = if nodes[0].state.cluster.node_id == owner {
        (&nodes[0], &nodes[1])
    } else {
        (&nodes[1], &nodes[0])
    };
    let waiter = in_background(here, command);
    wait_until("the client to block", Duration::from_secs(5), || {
        here.state.blocking.waiting_on(key.as_bytes()) == 1
    });
    // The slot moves to the other node.
    let mut owners = topo.to_slot_owners();
    owners[usize::from(slot)] = vec![there.state.cluster.node_id.clone()];
    let moved = Topology::from_slot_owners(topo.epoch + 1, topo.nodes.clone(), owners).expect("valid topology");
    for n in &nodes {
        n.state.cluster.apply(moved.clone()).expect("topology applies");
    }
    let err = waiter.join().expect("thread").expect_err("redirected");
    assert_eq!(err.code(), Some("MOVED"));
    assert_eq!(err.detail(), Some(format!("{slot} {}", there.resp_addr).as_str()));
    assert_eq!(here.state.blocking.blocked_clients(), 0);
}

/// Nodes "a" and "b" in cluster mode, every slot placed over them with one copy (epoch
/// 1), and the topology.
pub fn two_node_cluster() -> (NodeHandle, NodeHandle, Topology) {
    let (a, b) = (cluster_node("a"), cluster_node("b"));
    let infos = vec![info(&a), info(&b)];
    let members: Vec<Member> = infos.iter().map(|n| Member::new(n.id.clone())).collect();
    let mut t1 = next_topology(None, &infos, &members, 1).expect("placement");
    t1.epoch = 1;
    for n in [&a, &b] {
        n.state.cluster.apply(t1.clone()).expect("applies");
    }
    (a, b, t1)
}

/// Hands `slot` from `a` to `b` of [`two_node_cluster`] without a copy: `b` begins a
/// handover from `a` (so it reads missing keys through), then `b` owns the slot in the
/// next epoch on both nodes.
pub fn hand_slot_to_b(a: &NodeHandle, b: &NodeHandle, t1: &Topology, slot: Slot) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut control = rt.block_on(control_client(b));
    rt.block_on(control.begin_handover(ringcache_proto::pb::BeginHandoverRequest {
        handover_id: "h".into(),
        slots: vec![ringcache_proto::pb::SlotRange {
            start: u32::from(slot),
            end: u32::from(slot),
        }],
        source_node_id: "a".into(),
        source_resp_addr: a.resp_addr.to_string(),
    }))
    .expect("handover begins");
    let mut owners = t1.to_slot_owners();
    owners[usize::from(slot)] = vec!["b".to_string()];
    let t2 = Topology::from_slot_owners(t1.epoch + 1, t1.nodes.clone(), owners).expect("valid topology");
    for n in [a, b] {
        n.state.cluster.apply(t2.clone()).expect("applies");
    }
}
