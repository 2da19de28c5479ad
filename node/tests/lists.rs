//! List commands with a real client and raw RESP, for what the differential test
//! (tests/against_redis.rs) cannot reach: memory accounting, blocking commands woken
//! from other connections (order, timeouts, dropped clients), lists on replicas, and a
//! blocked client whose slot moves to another node, and the proxy port's refusal.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use ringcache_core::slot::key_slot;
use ringcache_core::topology::Topology;
use ringcache_node::launch::NodeHandle;

fn bulk(s: &str) -> redis::Value {
    redis::Value::BulkString(s.as_bytes().to_vec())
}

fn pair(k: &str, v: &str) -> redis::Value {
    redis::Value::Array(vec![bulk(k), bulk(v)])
}

#[test]
fn values_errors_and_emptied_lists() {
    let node = start();
    let mut con = client(&node);
    assert_eq!(cmd::<i64>(&mut con, &["RPUSH", "l", "b", "c"]), 2);
    assert_eq!(cmd::<i64>(&mut con, &["LPUSH", "l", "a"]), 3);
    assert_eq!(cmd::<String>(&mut con, &["TYPE", "l"]), "list");
    assert_eq!(
        cmd::<Vec<String>>(&mut con, &["LRANGE", "l", "0", "-1"]),
        ["a", "b", "c"]
    );
    let scanned: (String, Vec<String>) = cmd(&mut con, &["SCAN", "0", "TYPE", "list", "COUNT", "1000"]);
    assert_eq!(scanned.1, ["l"]);
    assert_eq!(cmd::<i64>(&mut con, &["LINSERT", "l", "AFTER", "b", "b2"]), 4);
    assert_eq!(cmd::<String>(&mut con, &["LSET", "l", "-1", "z"]), "OK");
    assert_eq!(
        cmd::<Vec<String>>(&mut con, &["LRANGE", "l", "0", "-1"]),
        ["a", "b", "b2", "z"]
    );
    assert_eq!(cmd_err(&mut con, &["LSET", "l", "4", "x"]), "ERR index out of range");
    assert_eq!(cmd_err(&mut con, &["LSET", "nokey", "0", "x"]), "ERR no such key");
    assert_eq!(
        cmd_err(&mut con, &["LPUSH", "l"]),
        "ERR wrong number of arguments for 'lpush' command"
    );
    cmd::<()>(&mut con, &["SET", "s", "x"]);
    assert!(cmd_err(&mut con, &["LPUSH", "s", "x"]).starts_with("WRONGTYPE"));
    assert!(cmd_err(&mut con, &["BLPOP", "s", "0"]).starts_with("WRONGTYPE"));
    // A list emptied by any command is gone.
    assert_eq!(
        cmd::<Vec<String>>(&mut con, &["LPOP", "l", "10"]),
        ["a", "b", "b2", "z"]
    );
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "l"]), 0);
    cmd::<i64>(&mut con, &["RPUSH", "l", "x", "x"]);
    assert_eq!(cmd::<i64>(&mut con, &["LREM", "l", "0", "x"]), 2);
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "l"]), 0);
    cmd::<i64>(&mut con, &["RPUSH", "l", "x", "y"]);
    cmd::<()>(&mut con, &["LTRIM", "l", "5", "10"]);
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "l"]), 0);
    cmd::<i64>(&mut con, &["RPUSH", "l", "x"]);
    assert_eq!(cmd::<String>(&mut con, &["LMOVE", "l", "l2", "LEFT", "RIGHT"]), "x");
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "l"]), 0);
    // A list moved onto itself rotates.
    cmd::<i64>(&mut con, &["RPUSH", "r", "1", "2", "3"]);
    assert_eq!(cmd::<String>(&mut con, &["RPOPLPUSH", "r", "r"]), "3");
    assert_eq!(
        cmd::<Vec<String>>(&mut con, &["LRANGE", "r", "0", "-1"]),
        ["3", "1", "2"]
    );
    // Elements are binary-safe.
    let raw_elem =
        b"*3\r\n$5\r\nRPUSH\r\n$1\r\nb\r\n$4\r\n\x00\r\n\xff\r\n*3\r\n$6\r\nLINDEX\r\n$1\r\nb\r\n$1\r\n0\r\n";
    assert_eq!(raw(&node, raw_elem, 14), b":1\r\n$4\r\n\x00\r\n\xff\r\n");
}

#[test]
fn memory_returns_to_the_same_used_memory_and_short_elements_cost_little() {
    let node = start();
    let mut con = client(&node);
    cmd::<()>(&mut con, &["SET", "anchor", "x"]);
    let before = used_memory(&mut con);
    // A feed of 100 ids of 12 bytes: 1,200 bytes of payload.
    for i in 0..100 {
        cmd::<i64>(&mut con, &["RPUSH", "feed", &format!("id:{i:09}")]);
    }
    let feed = used_memory(&mut con) - before;
    assert!(feed < 2_000, "a feed of 100 ids of 12 bytes is charged {feed} bytes");
    for round in 0..3 {
        for i in 0..500 {
            let v = format!("element-{round}-{i}");
            let end = if i % 2 == 0 { "LPUSH" } else { "RPUSH" };
            cmd::<i64>(&mut con, &[end, "big", &v]);
        }
        cmd::<String>(&mut con, &["LSET", "big", "7", "a somewhat longer element than before"]);
        cmd::<i64>(
            &mut con,
            &["LINSERT", "big", "BEFORE", &format!("element-{round}-10"), "pivot"],
        );
        cmd::<i64>(&mut con, &["LREM", "big", "-2", &format!("element-{round}-11")]);
        cmd::<()>(&mut con, &["LTRIM", "big", "3", "-3"]);
        cmd::<Vec<String>>(&mut con, &["LPOP", "big", "100"]);
        cmd::<Option<String>>(&mut con, &["RPOPLPUSH", "big", "other"]);
    }
    cmd::<i64>(&mut con, &["DEL", "big", "other"]);
    while cmd::<Option<String>>(&mut con, &["RPOP", "feed"]).is_some() {}
    assert_eq!(used_memory(&mut con), before);
}

#[test]
fn a_blocked_pop_is_woken_by_a_push_from_another_connection() {
    let node = start();
    let mut con = client(&node);
    let started = Instant::now();
    let waiter = in_background(&node, &["BLPOP", "q1", "q2", "0"]);
    wait_until("the client to block", Duration::from_secs(5), || {
        node.state.blocking.waiting_on(b"q2") == 1
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(!waiter.is_finished(), "BLPOP returned with nothing to pop");
    assert_eq!(cmd::<i64>(&mut con, &["RPUSH", "q2", "hello", "rest"]), 2);
    assert_eq!(waiter.join().expect("thread").expect("reply"), pair("q2", "hello"));
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(cmd::<Vec<String>>(&mut con, &["LRANGE", "q2", "0", "-1"]), ["rest"]);
    assert_eq!(node.state.blocking.blocked_clients(), 0);

    // With data already there, nothing blocks: the first non-empty key is served.
    assert_eq!(
        cmd::<(String, String)>(&mut con, &["BRPOP", "empty", "q2", "0"]),
        ("q2".to_string(), "rest".to_string())
    );

    // BLMPOP with a count takes up to that many from the first list written.
    let waiter = in_background(&node, &["BLMPOP", "0", "2", "m1", "m2", "RIGHT", "COUNT", "2"]);
    wait_until("the client to block", Duration::from_secs(5), || {
        node.state.blocking.waiting_on(b"m1") == 1
    });
    cmd::<i64>(&mut con, &["RPUSH", "m2", "a", "b", "c"]);
    let got = waiter.join().expect("thread").expect("reply");
    assert_eq!(
        got,
        redis::Value::Array(vec![bulk("m2"), redis::Value::Array(vec![bulk("c"), bulk("b")])])
    );
}

#[test]
fn blocked_clients_are_served_first_come_first_served() {
    let node = start();
    let mut con = client(&node);
    let mut waiters = Vec::new();
    for i in 0..3 {
        waiters.push(in_background(&node, &["BLPOP", "q", "0"]));
        wait_until("the client to block", Duration::from_secs(5), || {
            node.state.blocking.waiting_on(b"q") == i + 1
        });
    }
    // One element: only the first is served.
    cmd::<i64>(&mut con, &["RPUSH", "q", "one"]);
    wait_until("the first to be served", Duration::from_secs(5), || {
        waiters[0].is_finished()
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(!waiters[1].is_finished() && !waiters[2].is_finished());
    // Two at once: the second and the third, in order.
    cmd::<i64>(&mut con, &["RPUSH", "q", "two", "three"]);
    let replies: Vec<redis::Value> = waiters
        .into_iter()
        .map(|w| w.join().expect("thread").expect("reply"))
        .collect();
    assert_eq!(replies, [pair("q", "one"), pair("q", "two"), pair("q", "three")]);
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "q"]), 0);
}

#[test]
fn timeouts_answer_nil_in_resp2_and_resp3_and_bad_timeouts_are_errors() {
    let node = start();
    let mut con = client(&node);
    let started = Instant::now();
    let got: Option<(String, String)> = cmd(&mut con, &["BLPOP", "nothing", "0.2"]);
    assert_eq!(got, None);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    // Redis answers a timed-out blocking command with a null array, BLMOVE too.
    let blmove = b"*6\r\n$6\r\nBLMOVE\r\n$1\r\nx\r\n$1\r\ny\r\n$4\r\nLEFT\r\n$5\r\nRIGHT\r\n$4\r\n0.05\r\n";
    assert_eq!(raw(&node, blmove, 5), b"*-1\r\n");
    let hello3 = b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n".to_vec();
    let hello_reply = raw(&node, &hello3, 1);
    let blpop = b"*3\r\n$5\r\nBLPOP\r\n$1\r\nx\r\n$4\r\n0.05\r\n";
    let reply = raw(&node, &[&hello3[..], blpop].concat(), hello_reply.len() + 3);
    assert_eq!(&reply[hello_reply.len()..], b"_\r\n");
    for (t, err) in [
        ("-1", "ERR timeout is negative"),
        ("inf", "ERR timeout is negative"),
        ("x", "ERR timeout is not a float or out of range"),
    ] {
        assert_eq!(cmd_err(&mut con, &["BLPOP", "k", t]), err);
        assert_eq!(cmd_err(&mut con, &["BLMOVE", "k", "d", "LEFT", "LEFT", t]), err);
    }
    assert_eq!(
        cmd_err(&mut con, &["BLMPOP", "0", "0", "k", "LEFT"]),
        "ERR numkeys should be greater than 0"
    );
    assert_eq!(node.state.blocking.blocked_clients(), 0);
}

#[test]
fn replies_before_a_blocked_command_go_out_and_those_after_it_wait() {
    let node = start();
    let mut s = TcpStream::connect(node.resp_addr).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    s.write_all(b"*1\r\n$4\r\nPING\r\n*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n0\r\n*2\r\n$4\r\nECHO\r\n$5\r\nafter\r\n")
        .expect("writes");
    assert_eq!(read_some(&mut s, 7), b"+PONG\r\n");
    wait_until("the client to block", Duration::from_secs(5), || {
        node.state.blocking.waiting_on(b"q") == 1
    });
    let mut con = client(&node);
    cmd::<i64>(&mut con, &["LPUSH", "q", "v"]);
    let want = b"*2\r\n$1\r\nq\r\n$1\r\nv\r\n$5\r\nafter\r\n";
    assert_eq!(read_some(&mut s, want.len()), want);
}

#[test]
fn a_blocked_client_that_disconnects_leaves_no_waiter() {
    let node = start();
    let mut con = client(&node);
    let mut s = TcpStream::connect(node.resp_addr).expect("connects");
    s.write_all(b"*3\r\n$5\r\nBRPOP\r\n$1\r\nq\r\n$1\r\n0\r\n")
        .expect("writes");
    wait_until("the client to block", Duration::from_secs(5), || {
        node.state.blocking.waiting_on(b"q") == 1
    });
    let info: String = cmd(&mut con, &["INFO", "clients"]);
    assert!(info.contains("blocked_clients:1"), "{info}");
    drop(s);
    wait_until("the waiter to leave", Duration::from_secs(5), || {
        node.state.blocking.blocked_clients() == 0
    });
    assert_eq!(node.state.blocking.waiting_on(b"q"), 0);
    cmd::<i64>(&mut con, &["LPUSH", "q", "kept"]);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(cmd::<Vec<String>>(&mut con, &["LRANGE", "q", "0", "-1"]), ["kept"]);
}

#[test]
fn blmove_waits_for_its_source_and_moves_into_its_destination() {
    let node = start();
    let mut con = client(&node);
    cmd::<i64>(&mut con, &["RPUSH", "dst", "old"]);
    let waiter = in_background(&node, &["BLMOVE", "src", "dst", "RIGHT", "LEFT", "0"]);
    wait_until("the client to block", Duration::from_secs(5), || {
        node.state.blocking.waiting_on(b"src") == 1
    });
    // Another client takes its place in line behind it.
    let second = in_background(&node, &["BRPOPLPUSH", "src", "dst", "0"]);
    wait_until("the second to block", Duration::from_secs(5), || {
        node.state.blocking.waiting_on(b"src") == 2
    });
    cmd::<i64>(&mut con, &["RPUSH", "src", "a", "b"]);
    assert_eq!(waiter.join().expect("thread").expect("reply"), bulk("b"));
    assert_eq!(second.join().expect("thread").expect("reply"), bulk("a"));
    assert_eq!(
        cmd::<Vec<String>>(&mut con, &["LRANGE", "dst", "0", "-1"]),
        ["a", "b", "old"]
    );
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "src"]), 0);
    // A destination of another type: the woken client gets WRONGTYPE and nothing moves.
    cmd::<()>(&mut con, &["SET", "str", "x"]);
    let waiter = in_background(&node, &["BLMOVE", "src", "str", "LEFT", "LEFT", "0"]);
    wait_until("the client to block", Duration::from_secs(5), || {
        node.state.blocking.waiting_on(b"src") == 1
    });
    cmd::<i64>(&mut con, &["RPUSH", "src", "z"]);
    let err = waiter.join().expect("thread").expect_err("WRONGTYPE");
    assert_eq!(err.code(), Some("WRONGTYPE"));
    assert_eq!(cmd::<Vec<String>>(&mut con, &["LRANGE", "src", "0", "-1"]), ["z"]);
}

#[test]
fn a_list_reaches_its_replica() {
    let nodes: Vec<NodeHandle> = ["a", "b"].iter().map(|id| cluster_node(id)).collect();
    let topo = form(&nodes, 2);
    let key = "feed";
    let owners = topo.owners_of(key_slot(key.as_bytes())).to_vec();
    let (primary, replica) = (by_id(&nodes, &owners[0]), by_id(&nodes, &owners[1]));
    let mut con = client(primary);
    cmd::<i64>(&mut con, &["RPUSH", key, "a", "b", "c", "d"]);
    cmd::<i64>(&mut con, &["LPUSH", key, "first"]);
    cmd::<String>(&mut con, &["LPOP", key]);
    cmd::<i64>(&mut con, &["LINSERT", key, "AFTER", "b", "b2"]);
    cmd::<String>(&mut con, &["LMOVE", key, key, "RIGHT", "LEFT"]);
    cmd::<i64>(&mut con, &["RPUSH", "{feed}gone", "x"]);
    cmd::<String>(&mut con, &["RPOP", "{feed}gone"]);
    // A pop served to a blocked client is replicated too.
    let blocked = in_background(primary, &["BLPOP", "{feed}q", "0"]);
    wait_until("the client to block", Duration::from_secs(5), || {
        primary.state.blocking.waiting_on(b"{feed}q") == 1
    });
    cmd::<i64>(&mut con, &["RPUSH", "{feed}q", "1", "2"]);
    assert_eq!(blocked.join().expect("thread").expect("reply"), pair("{feed}q", "1"));
    let want = ["d", "a", "b", "b2", "c"];
    assert_eq!(cmd::<Vec<String>>(&mut con, &["LRANGE", key, "0", "-1"]), want);
    let mut r = client(replica);
    cmd::<()>(&mut r, &["READONLY"]);
    wait_until("the list on the replica", Duration::from_secs(30), || {
        cmd::<Vec<String>>(&mut r, &["LRANGE", key, "0", "-1"]) == want
            && cmd::<Vec<String>>(&mut r, &["LRANGE", "{feed}q", "0", "-1"]) == ["2"]
    });
    assert_eq!(cmd::<String>(&mut r, &["TYPE", key]), "list");
    assert_eq!(cmd::<i64>(&mut r, &["EXISTS", "{feed}gone"]), 0);
}

#[test]
fn a_blocked_client_is_redirected_when_its_slot_moves() {
    let key = "waiting";
    blocked_command_is_redirected_when_its_slot_moves(&["BLPOP", key, "0"], key);
}

#[test]
fn the_proxy_port_refuses_blocking_commands() {
    let node = start();
    let url = format!("redis://{}/", node.proxy_addr);
    let mut con = redis::Client::open(url)
        .expect("url")
        .get_connection()
        .expect("connects");
    cmd::<i64>(&mut con, &["RPUSH", "q", "x"]);
    for args in [&["BLPOP", "q", "0"][..], &["BLMOVE", "q", "d", "LEFT", "LEFT", "0"]] {
        assert_eq!(cmd_err(&mut con, args), ringcache_node::proxy::BLOCKING_REFUSED);
    }
    assert_eq!(cmd::<String>(&mut con, &["LPOP", "q"]), "x");
}

#[test]
fn a_blocked_client_on_a_primary_that_becomes_a_replica_is_redirected_to_the_new_primary() {
    let nodes: Vec<NodeHandle> = ["a", "b"].iter().map(|id| cluster_node(id)).collect();
    let topo = form(&nodes, 2);
    let key = "waiting";
    let slot = key_slot(key.as_bytes());
    let owners = topo.owners_of(slot).to_vec();
    let (primary, replica) = (by_id(&nodes, &owners[0]), by_id(&nodes, &owners[1]));
    let waiter = in_background(primary, &["BRPOP", key, "0"]);
    wait_until("the client to block", Duration::from_secs(5), || {
        primary.state.blocking.waiting_on(key.as_bytes()) == 1
    });
    // Failover: the replica is promoted, the old primary keeps a copy as replica.
    let mut slot_owners = topo.to_slot_owners();
    slot_owners[usize::from(slot)] = vec![owners[1].clone(), owners[0].clone()];
    let promoted = Topology::from_slot_owners(topo.epoch + 1, topo.nodes.clone(), slot_owners).expect("valid topology");
    for n in &nodes {
        n.state.cluster.apply(promoted.clone()).expect("topology applies");
    }
    let err = waiter.join().expect("thread").expect_err("redirected");
    assert_eq!(err.code(), Some("MOVED"));
    assert_eq!(err.detail(), Some(format!("{slot} {}", replica.resp_addr).as_str()));
    assert_eq!(primary.state.blocking.blocked_clients(), 0);
}

#[test]
fn a_blocked_client_keeps_waiting_while_its_key_holds_another_type() {
    let node = start();
    let mut con = client(&node);
    // One after the other, so the queue's order is known.
    let pop = in_background(&node, &["BLPOP", "k", "0"]);
    wait_until("the first client to block", Duration::from_secs(5), || {
        node.state.blocking.waiting_on(b"k") == 1
    });
    let mv = in_background(&node, &["BLMOVE", "k", "dst", "LEFT", "LEFT", "0"]);
    wait_until("both clients to block", Duration::from_secs(5), || {
        node.state.blocking.waiting_on(b"k") == 2
    });
    // Redis serves a blocked client only from a list: a string written there wakes
    // nobody for good.
    cmd::<()>(&mut con, &["SET", "k", "x"]);
    std::thread::sleep(Duration::from_millis(100));
    assert!(!pop.is_finished() && !mv.is_finished());
    assert_eq!(node.state.blocking.waiting_on(b"k"), 2);
    cmd::<i64>(&mut con, &["DEL", "k"]);
    cmd::<i64>(&mut con, &["RPUSH", "k", "1", "2"]);
    assert_eq!(pop.join().expect("thread").expect("reply"), pair("k", "1"));
    assert_eq!(mv.join().expect("thread").expect("reply"), bulk("2"));
    assert_eq!(cmd::<Vec<String>>(&mut con, &["LRANGE", "dst", "0", "-1"]), ["2"]);
    // A first run still answers WRONGTYPE.
    cmd::<()>(&mut con, &["SET", "k", "x"]);
    assert!(cmd_err(&mut con, &["BLPOP", "k", "0"]).starts_with("WRONGTYPE"));
    assert!(cmd_err(&mut con, &["BLMOVE", "k", "dst", "LEFT", "LEFT", "0"]).starts_with("WRONGTYPE"));
}
