//! Sorted-set commands with a real client, for what the differential test against
//! redis-server cannot reach: ZRANDMEMBER's random replies, exact memory accounting,
//! sets well past the small encoding (100k members) checked against a model, RESP3
//! shapes, replication of sorted sets to a replica, and the blocking BZPOPMIN BZPOPMAX
//! BZMPOP woken from other connections (order, timeouts, COUNT, waiters for another
//! type on the same key, a slot that moves, the proxy port's refusal).

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use common::*;
use ringcache_core::slot::key_slot;
use ringcache_core::topology::Topology;
use ringcache_node::launch::NodeHandle;

/// A flat RESP2 WITHSCORES reply as (member, score) pairs.
fn pairs(flat: Vec<String>) -> Vec<(String, f64)> {
    flat.chunks(2)
        .map(|p| (p[0].clone(), p[1].parse().expect("score")))
        .collect()
}

#[test]
fn zrandmember_counts_and_shapes() {
    let node = start();
    let mut con = client(&node);
    for i in 0..10 {
        cmd::<i64>(&mut con, &["ZADD", "z", &i.to_string(), &format!("m{i}")]);
    }
    let all: HashSet<String> = (0..10).map(|i| format!("m{i}")).collect();

    let one: String = cmd(&mut con, &["ZRANDMEMBER", "z"]);
    assert!(all.contains(&one));
    assert_eq!(cmd::<Option<String>>(&mut con, &["ZRANDMEMBER", "missing"]), None);
    assert!(cmd::<Vec<String>>(&mut con, &["ZRANDMEMBER", "missing", "3"]).is_empty());
    assert!(cmd::<Vec<String>>(&mut con, &["ZRANDMEMBER", "z", "0"]).is_empty());

    // Positive counts: distinct members, at most the set's size.
    for n in [1usize, 3, 9, 10, 50] {
        let got: Vec<String> = cmd(&mut con, &["ZRANDMEMBER", "z", &n.to_string()]);
        let distinct: HashSet<&String> = got.iter().collect();
        assert_eq!(got.len(), n.min(10), "count {n}");
        assert_eq!(distinct.len(), got.len(), "count {n} repeated a member");
        assert!(got.iter().all(|m| all.contains(m)));
    }
    // Over time every member comes up.
    let mut seen = HashSet::new();
    for _ in 0..200 {
        seen.insert(cmd::<String>(&mut con, &["ZRANDMEMBER", "z"]));
    }
    assert_eq!(seen, all);
    // Negative counts: exactly |count| members, repeats allowed.
    let got: Vec<String> = cmd(&mut con, &["ZRANDMEMBER", "z", "-50"]);
    assert_eq!(got.len(), 50);
    assert!(got.iter().all(|m| all.contains(m)));
    // WITHSCORES in RESP2: a flat member, score list with each member's own score.
    let got = pairs(cmd(&mut con, &["ZRANDMEMBER", "z", "-5", "withscores"]));
    assert_eq!(got.len(), 5);
    for (m, s) in got {
        assert_eq!(m, format!("m{s}"));
    }
    let got = pairs(cmd(&mut con, &["ZRANDMEMBER", "z", "4", "WITHSCORES"]));
    assert_eq!(got.iter().map(|(m, _)| m).collect::<HashSet<_>>().len(), 4);

    assert_eq!(
        cmd_err(&mut con, &["ZRANDMEMBER", "z", "-9223372036854775808"]),
        "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"
    );
    assert_eq!(
        cmd_err(&mut con, &["ZRANDMEMBER", "z", "-9223372036854775807", "WITHSCORES"]),
        "ERR value is out of range"
    );
    // Redis has no limit here; ringcache bounds repeated picks.
    assert_eq!(
        cmd_err(&mut con, &["ZRANDMEMBER", "z", "-9223372036854775807"]),
        "ERR value is out of range"
    );
    assert_eq!(
        cmd::<Vec<String>>(&mut con, &["ZRANDMEMBER", "z", "9223372036854775807"]).len(),
        10
    );
    assert_eq!(
        cmd_err(&mut con, &["ZRANDMEMBER", "z", "1", "bogus"]),
        "ERR syntax error"
    );
    cmd::<()>(&mut con, &["SET", "s", "x"]);
    assert_eq!(
        cmd_err(&mut con, &["ZRANDMEMBER", "s"]),
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );

    // RESP3: WITHSCORES gives [member, score] pairs with double scores.
    cmd::<i64>(&mut con, &["ZADD", "one", "0.5", "only"]);
    let out = raw(
        &node,
        b"HELLO 3\r\nZRANDMEMBER one -2 WITHSCORES\r\nZRANDMEMBER missing\r\nPING\r\n",
        usize::MAX,
    );
    let text = String::from_utf8_lossy(&out);
    let at = text
        .find("*2\r\n*2\r\n")
        .unwrap_or_else(|| panic!("no pairs in {text:?}"));
    assert_eq!(
        &text[at..],
        "*2\r\n*2\r\n$4\r\nonly\r\n,0.5\r\n*2\r\n$4\r\nonly\r\n,0.5\r\n_\r\n+PONG\r\n"
    );
    node.shutdown();
}

#[test]
fn memory_returns_to_its_start_after_sorted_sets_go() {
    let node = start();
    let mut con = client(&node);
    let start_mem = used_memory(&mut con);
    // Past the 128-member index threshold and back, with updates on the way.
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        pipe.cmd("ZADD")
            .arg("big")
            .arg(i % 97)
            .arg(format!("member:{i}"))
            .ignore();
    }
    pipe.query::<()>(&mut con).expect("pipeline");
    let full = used_memory(&mut con);
    assert!(full >= start_mem + 5000 * 11, "{start_mem} -> {full}");
    cmd::<String>(&mut con, &["ZINCRBY", "big", "2.5", "member:7"]);
    cmd::<i64>(&mut con, &["ZADD", "big", "1", "a-new-and-much-longer-member-name"]);
    assert_eq!(cmd::<i64>(&mut con, &["ZREMRANGEBYSCORE", "big", "(10", "20"]), 520);
    assert_eq!(cmd::<i64>(&mut con, &["ZREMRANGEBYRANK", "big", "0", "99"]), 100);
    let _: Vec<String> = cmd(&mut con, &["ZPOPMAX", "big", "300"]);
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        pipe.cmd("ZREM").arg("big").arg(format!("member:{i}")).ignore();
    }
    pipe.cmd("ZREM")
        .arg("big")
        .arg("a-new-and-much-longer-member-name")
        .ignore();
    pipe.query::<()>(&mut con).expect("pipeline");
    assert_eq!(cmd::<i64>(&mut con, &["ZCARD", "big"]), 0);
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "big"]), 0);
    assert_eq!(used_memory(&mut con), start_mem);

    // Stores, and FLUSHALL.
    for i in 0..50 {
        cmd::<i64>(&mut con, &["ZADD", &format!("{{z}}{i}"), &i.to_string(), "m", "1", "n"]);
    }
    cmd::<i64>(&mut con, &["ZUNIONSTORE", "{z}u", "3", "{z}1", "{z}2", "{z}3"]);
    cmd::<i64>(&mut con, &["ZRANGESTORE", "{z}r", "{z}4", "0", "-1"]);
    assert!(used_memory(&mut con) > start_mem);
    cmd::<()>(&mut con, &["FLUSHALL"]);
    assert_eq!(used_memory(&mut con), start_mem);
    node.shutdown();
}

/// A model of a sorted set: (score, member) in order.
fn model_order(model: &HashMap<String, i64>) -> Vec<(i64, String)> {
    let set: BTreeSet<(i64, String)> = model.iter().map(|(m, s)| (*s, m.clone())).collect();
    set.into_iter().collect()
}

#[test]
fn a_hundred_thousand_members_range_like_a_model() {
    let node = start();
    let mut con = client(&node);
    let mut model: HashMap<String, i64> = HashMap::new();
    let mut pipe = redis::pipe();
    for i in 0..100_000u64 {
        // Scores repeat (ties are ordered by member), members are not in score order.
        let score = (i * 7919 % 10_007) as i64 - 5000;
        let member = format!("{:x}", i.wrapping_mul(2_654_435_761) % 1_000_003);
        model.insert(member.clone(), score);
        pipe.cmd("ZADD").arg("feed").arg(score).arg(member).ignore();
        if i % 10_000 == 9_999 {
            pipe.query::<()>(&mut con).expect("pipeline");
            pipe = redis::pipe();
        }
    }
    // Updates and removals in the middle.
    for i in 0..2000u64 {
        let member = format!("{:x}", (i * 31).wrapping_mul(2_654_435_761) % 1_000_003);
        if i % 2 == 0 {
            model.remove(&member);
            cmd::<i64>(&mut con, &["ZREM", "feed", &member]);
        } else if let Some(s) = model.get_mut(&member) {
            *s += 3;
            cmd::<String>(&mut con, &["ZINCRBY", "feed", "3", &member]);
        }
    }
    let order = model_order(&model);
    let n = order.len();
    assert_eq!(cmd::<usize>(&mut con, &["ZCARD", "feed"]), n);

    // By rank, both directions.
    for (start, stop) in [
        (0i64, 9i64),
        (500, 520),
        (n as i64 - 5, -1),
        (-30, -20),
        (49_990, 50_010),
    ] {
        let got = pairs(cmd(
            &mut con,
            &["ZRANGE", "feed", &start.to_string(), &stop.to_string(), "WITHSCORES"],
        ));
        let a = if start < 0 { n as i64 + start } else { start } as usize;
        let b = if stop < 0 { n as i64 + stop } else { stop } as usize;
        let want: Vec<(String, f64)> = order[a..=b].iter().map(|(s, m)| (m.clone(), *s as f64)).collect();
        assert_eq!(got, want, "ZRANGE {start} {stop}");
        let rev: Vec<String> = cmd(&mut con, &["ZREVRANGE", "feed", &start.to_string(), &stop.to_string()]);
        let want: Vec<String> = order
            .iter()
            .rev()
            .skip(a)
            .take(b - a + 1)
            .map(|(_, m)| m.clone())
            .collect();
        assert_eq!(rev, want, "ZREVRANGE {start} {stop}");
    }
    // By score, with exclusive bounds and LIMIT.
    for (lo, hi) in [(-10i64, 10i64), (4990, 5010), (-6000, -4990), (0, 0)] {
        let got: Vec<String> = cmd(&mut con, &["ZRANGEBYSCORE", "feed", &format!("({lo}"), &hi.to_string()]);
        let want: Vec<String> = order
            .iter()
            .filter(|(s, _)| *s > lo && *s <= hi)
            .map(|(_, m)| m.clone())
            .collect();
        assert_eq!(got, want, "ZRANGEBYSCORE ({lo} {hi}");
        assert_eq!(
            cmd::<usize>(&mut con, &["ZCOUNT", "feed", &format!("({lo}"), &hi.to_string()]),
            want.len()
        );
        let got: Vec<String> = cmd(
            &mut con,
            &[
                "ZREVRANGEBYSCORE",
                "feed",
                &hi.to_string(),
                &lo.to_string(),
                "LIMIT",
                "3",
                "7",
            ],
        );
        let want: Vec<String> = order
            .iter()
            .rev()
            .filter(|(s, _)| *s >= lo && *s <= hi)
            .skip(3)
            .take(7)
            .map(|(_, m)| m.clone())
            .collect();
        assert_eq!(got, want, "ZREVRANGEBYSCORE {hi} {lo} LIMIT 3 7");
    }
    // Ranks of members, both directions.
    for (r, (_, m)) in order.iter().enumerate().step_by(4999) {
        assert_eq!(cmd::<usize>(&mut con, &["ZRANK", "feed", m]), r);
        assert_eq!(cmd::<usize>(&mut con, &["ZREVRANK", "feed", m]), n - 1 - r);
    }
    // Removal by rank and by score keeps the rest in order.
    assert_eq!(
        cmd::<usize>(&mut con, &["ZREMRANGEBYRANK", "feed", "1000", "1999"]),
        1000
    );
    let mut order: Vec<(i64, String)> = order
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !(1000..2000).contains(i))
        .map(|(_, e)| e)
        .collect();
    let gone = order.iter().filter(|(s, _)| (100..=200).contains(s)).count();
    assert_eq!(
        cmd::<usize>(&mut con, &["ZREMRANGEBYSCORE", "feed", "100", "200"]),
        gone
    );
    order.retain(|(s, _)| !(100..=200).contains(s));
    let got: Vec<String> = cmd(&mut con, &["ZRANGE", "feed", "0", "-1"]);
    assert_eq!(got, order.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>());
    // Popping from both ends.
    let low = pairs(cmd(&mut con, &["ZPOPMIN", "feed", "3"]));
    assert_eq!(
        low.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>(),
        order[..3].iter().map(|(_, m)| m.clone()).collect::<Vec<_>>()
    );
    let high = pairs(cmd(&mut con, &["ZPOPMAX", "feed", "2"]));
    let last: Vec<String> = order.iter().rev().take(2).map(|(_, m)| m.clone()).collect();
    assert_eq!(high.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>(), last);
    node.shutdown();
}

#[test]
fn scores_reply_with_redis_digits_in_resp2_and_resp3() {
    let node = start();
    let mut con = client(&node);
    cmd::<i64>(
        &mut con,
        &["ZADD", "z", "0.1", "a", "1e20", "b", "+inf", "c", "-0", "d"],
    );
    assert_eq!(cmd::<String>(&mut con, &["ZSCORE", "z", "a"]), "0.10000000000000001");
    assert_eq!(cmd::<String>(&mut con, &["ZSCORE", "z", "b"]), "1e+20");
    assert_eq!(cmd::<String>(&mut con, &["ZSCORE", "z", "c"]), "inf");
    assert_eq!(cmd::<String>(&mut con, &["ZSCORE", "z", "d"]), "0");
    assert_eq!(
        cmd_err(&mut con, &["ZADD", "z", "nan", "x"]),
        "ERR value is not a valid float"
    );
    assert_eq!(
        cmd_err(&mut con, &["ZINCRBY", "z", "-inf", "c"]),
        "ERR resulting score is not a number (NaN)"
    );
    assert_eq!(
        cmd_err(&mut con, &["ZRANGEBYSCORE", "z", "x", "1"]),
        "ERR min or max is not a float"
    );
    assert_eq!(
        cmd_err(&mut con, &["ZRANGEBYLEX", "z", "a", "+"]),
        "ERR min or max not valid string range item"
    );
    assert_eq!(
        cmd_err(&mut con, &["ZADD", "z", "NX", "XX", "1", "a"]),
        "ERR XX and NX options at the same time are not compatible"
    );
    assert_eq!(
        cmd_err(&mut con, &["ZRANK", "z", "a", "WITHSCORE"]),
        "ERR wrong number of arguments for 'zrank' command"
    );
    let out = raw(
        &node,
        b"HELLO 3\r\nZSCORE z a\r\nZRANGE z 0 1 WITHSCORES\r\nZPOPMIN nokey\r\nZMPOP 1 z MAX\r\nZMSCORE z a nosuch\r\nPING\r\n",
        usize::MAX,
    );
    let text = String::from_utf8_lossy(&out);
    let at = text.find(",0.1").unwrap_or_else(|| panic!("no double in {text:?}"));
    assert_eq!(
        &text[at..],
        ",0.10000000000000001\r\n*2\r\n*2\r\n$1\r\nd\r\n,0\r\n*2\r\n$1\r\na\r\n,0.10000000000000001\r\n*0\r\n*2\r\n$1\r\nz\r\n*1\r\n*2\r\n$1\r\nc\r\n,inf\r\n*2\r\n,0.10000000000000001\r\n_\r\n+PONG\r\n"
    );
    node.shutdown();
}

/// Every node's links are up and have applied everything their primaries wrote.
fn caught_up(nodes: &[NodeHandle]) -> bool {
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

fn node_of<'a>(nodes: &'a [NodeHandle], topo: &Topology, key: &str, copy: usize) -> &'a NodeHandle {
    let id = &topo.owners_of(key_slot(key.as_bytes()))[copy];
    nodes
        .iter()
        .find(|n| &n.state.cluster.node_id == id)
        .expect("node in topology")
}

#[test]
fn sorted_sets_reach_their_replicas() {
    let nodes: Vec<NodeHandle> = ["a", "b", "c"].iter().map(|id| cluster_node(id)).collect();
    let topo = form(&nodes, 2);
    let urls: Vec<String> = nodes.iter().map(|n| format!("redis://{}/", n.resp_addr)).collect();
    let mut con = redis::cluster::ClusterClient::new(urls)
        .expect("cluster client")
        .get_connection()
        .expect("connects");
    let q = |con: &mut redis::cluster::ClusterConnection, args: &[&str]| {
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        c.query::<redis::Value>(con).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    };
    let mut keys = Vec::new();
    for i in 0..40 {
        let key = format!("{{feed{i}}}:z");
        for j in 0..(5 + i * 7) {
            q(
                &mut con,
                &["ZADD", &key, &format!("{}.25", j % 13), &format!("post:{j}")],
            );
        }
        q(&mut con, &["ZINCRBY", &key, "100", "post:1"]);
        q(&mut con, &["ZREM", &key, "post:2"]);
        q(&mut con, &["ZPOPMIN", &key]);
        q(&mut con, &["ZREMRANGEBYSCORE", &key, "(11", "12"]);
        let copy = format!("{{feed{i}}}:union");
        q(&mut con, &["ZUNIONSTORE", &copy, "1", &key, "WEIGHTS", "2"]);
        q(
            &mut con,
            &["ZMPOP", "2", &format!("{{feed{i}}}:none"), &copy, "MAX", "COUNT", "2"],
        );
        keys.push(key);
        keys.push(copy);
    }
    // A set emptied by its last pop is gone on the replica too.
    q(&mut con, &["ZADD", "{gone}z", "1", "x"]);
    q(&mut con, &["ZPOPMAX", "{gone}z"]);
    keys.push("{gone}z".into());
    wait_until("replicas to catch up", Duration::from_secs(30), || caught_up(&nodes));
    for key in &keys {
        let read = |copy: usize| {
            let mut c = client(node_of(&nodes, &topo, key, copy));
            cmd::<()>(&mut c, &["READONLY"]);
            let v: Vec<String> = cmd(&mut c, &["ZRANGE", key, "0", "-1", "WITHSCORES"]);
            let t: String = cmd(&mut c, &["TYPE", key]);
            (v, t)
        };
        let (primary, replica) = (read(0), read(1));
        assert_eq!(primary, replica, "{key}");
        if key.starts_with("{gone}") {
            assert_eq!(primary.1, "none");
        } else {
            assert_eq!(primary.1, "zset", "{key}");
            assert!(!primary.0.is_empty(), "{key}");
        }
    }
    for n in nodes {
        n.shutdown();
    }
}

// --- BZPOPMIN BZPOPMAX BZMPOP -------------------------------------------------------

fn bulk(s: &str) -> redis::Value {
    redis::Value::BulkString(s.as_bytes().to_vec())
}

/// `[key, member, score]` as BZPOPMIN answers in RESP2.
fn popped(key: &str, member: &str, score: &str) -> redis::Value {
    redis::Value::Array(vec![bulk(key), bulk(member), bulk(score)])
}

#[test]
fn a_blocked_bzpopmin_is_woken_by_a_zadd_from_another_connection() {
    let node = start();
    let mut con = client(&node);
    let started = Instant::now();
    let waiter = in_background(&node, &["BZPOPMIN", "z1", "z2", "0"]);
    wait_until("the client to block", Duration::from_secs(5), || {
        node.state.blocking.waiting_on(b"z2") == 1
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(!waiter.is_finished(), "BZPOPMIN returned with nothing to pop");
    // A write that leaves no sorted set wakes nobody for good.
    cmd::<()>(&mut con, &["SET", "z2", "x"]);
    cmd::<i64>(&mut con, &["DEL", "z2"]);
    std::thread::sleep(Duration::from_millis(50));
    assert!(!waiter.is_finished());
    assert_eq!(cmd::<i64>(&mut con, &["ZADD", "z2", "2", "b", "1", "a"]), 2);
    assert_eq!(waiter.join().expect("thread").expect("reply"), popped("z2", "a", "1"));
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(cmd::<Vec<String>>(&mut con, &["ZRANGE", "z2", "0", "-1"]), ["b"]);
    assert_eq!(node.state.blocking.blocked_clients(), 0);

    // BZPOPMAX takes the highest; with data there nothing blocks.
    cmd::<i64>(&mut con, &["ZADD", "z2", "5", "e"]);
    assert_eq!(
        cmd::<(String, String, f64)>(&mut con, &["BZPOPMAX", "empty", "z2", "0"]),
        ("z2".to_string(), "e".to_string(), 5.0)
    );
    // A first run on a key of another type is WRONGTYPE, as in Redis.
    cmd::<()>(&mut con, &["SET", "s", "x"]);
    assert!(cmd_err(&mut con, &["BZPOPMIN", "s", "0"]).starts_with("WRONGTYPE"));
    node.shutdown();
}

#[test]
fn blocked_bzpopmin_clients_are_served_in_the_order_they_blocked() {
    let node = start();
    let mut con = client(&node);
    let mut waiters = Vec::new();
    for (i, c) in ["BZPOPMIN", "BZPOPMAX", "BZPOPMIN"].iter().enumerate() {
        // The next one starts only once this one is blocked, so the order is known.
        waiters.push(in_background(&node, &[c, "z", "0"]));
        wait_until("the client to block", Duration::from_secs(5), || {
            node.state.blocking.waiting_on(b"z") == i + 1
        });
    }
    // One member: only the first is served.
    cmd::<i64>(&mut con, &["ZADD", "z", "1", "one"]);
    wait_until("the first to be served", Duration::from_secs(5), || {
        waiters[0].is_finished()
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(!waiters[1].is_finished() && !waiters[2].is_finished());
    // Three at once: the second takes the highest, the third the lowest of the rest.
    cmd::<i64>(&mut con, &["ZADD", "z", "2", "two", "3", "three", "4", "four"]);
    let replies: Vec<redis::Value> = waiters
        .into_iter()
        .map(|w| w.join().expect("thread").expect("reply"))
        .collect();
    assert_eq!(
        replies,
        [
            popped("z", "one", "1"),
            popped("z", "four", "4"),
            popped("z", "two", "2")
        ]
    );
    assert_eq!(cmd::<Vec<String>>(&mut con, &["ZRANGE", "z", "0", "-1"]), ["three"]);
    node.shutdown();
}

#[test]
fn blocking_pops_time_out_with_nil_in_resp2_and_resp3_and_check_their_arguments() {
    let node = start();
    let mut con = client(&node);
    let started = Instant::now();
    let got: Option<(String, String, f64)> = cmd(&mut con, &["BZPOPMIN", "nothing", "0.2"]);
    assert_eq!(got, None);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    let bzmpop = b"*5\r\n$6\r\nBZMPOP\r\n$4\r\n0.05\r\n$1\r\n1\r\n$1\r\nx\r\n$3\r\nMIN\r\n";
    assert_eq!(raw(&node, bzmpop, 5), b"*-1\r\n");
    let hello3 = b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n".to_vec();
    let hello_reply = raw(&node, &hello3, 1);
    let bzpopmax = b"*3\r\n$8\r\nBZPOPMAX\r\n$1\r\nx\r\n$4\r\n0.05\r\n";
    let reply = raw(&node, &[&hello3[..], bzpopmax].concat(), hello_reply.len() + 3);
    assert_eq!(&reply[hello_reply.len()..], b"_\r\n");
    for (t, err) in [
        ("-1", "ERR timeout is negative"),
        ("x", "ERR timeout is not a float or out of range"),
    ] {
        assert_eq!(cmd_err(&mut con, &["BZPOPMIN", "k", t]), err);
        assert_eq!(cmd_err(&mut con, &["BZMPOP", t, "1", "k", "MAX"]), err);
    }
    // BZMPOP checks its other arguments before the timeout, as Redis does.
    assert_eq!(
        cmd_err(&mut con, &["BZMPOP", "x", "0", "k", "MIN"]),
        "ERR numkeys should be greater than 0"
    );
    assert_eq!(
        cmd_err(&mut con, &["BZMPOP", "x", "1", "k", "MIN", "COUNT", "0"]),
        "ERR count should be greater than 0"
    );
    // Inside a transaction a blocking pop answers at once.
    let tx = b"*1\r\n$5\r\nMULTI\r\n*3\r\n$8\r\nBZPOPMIN\r\n$1\r\nx\r\n$1\r\n0\r\n*1\r\n$4\r\nEXEC\r\n";
    let expected = b"+OK\r\n+QUEUED\r\n*1\r\n*-1\r\n";
    assert_eq!(raw(&node, tx, expected.len()), expected);
    assert_eq!(node.state.blocking.blocked_clients(), 0);
    node.shutdown();
}

#[test]
fn a_blocked_bzmpop_takes_up_to_count_from_the_first_set_written() {
    let node = start();
    let mut con = client(&node);
    let waiter = in_background(&node, &["BZMPOP", "0", "2", "m1", "m2", "MAX", "COUNT", "2"]);
    wait_until("the client to block", Duration::from_secs(5), || {
        node.state.blocking.waiting_on(b"m1") == 1
    });
    cmd::<i64>(&mut con, &["ZADD", "m2", "1", "a", "2", "b", "3", "c"]);
    let got = waiter.join().expect("thread").expect("reply");
    let entry = |m: &str, s: &str| redis::Value::Array(vec![bulk(m), bulk(s)]);
    assert_eq!(
        got,
        redis::Value::Array(vec![
            bulk("m2"),
            redis::Value::Array(vec![entry("c", "3"), entry("b", "2")])
        ])
    );
    // A count larger than the set takes it all and deletes the key.
    let got: (String, Vec<(String, f64)>) = cmd(&mut con, &["BZMPOP", "0", "1", "m2", "MIN", "COUNT", "10"]);
    assert_eq!(got, ("m2".to_string(), vec![("a".to_string(), 1.0)]));
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "m2"]), 0);
    node.shutdown();
}

#[test]
fn a_blocked_bzpopmin_is_redirected_when_its_slot_moves() {
    let key = "waiting";
    blocked_command_is_redirected_when_its_slot_moves(&["BZPOPMIN", key, "0"], key);
}

#[test]
fn a_write_reaches_the_waiter_that_can_take_it_past_waiters_for_another_type() {
    let node = start();
    let mut con = client(&node);
    // A list waiter first, then a sorted-set waiter, then another list waiter.
    let list = in_background(&node, &["BLPOP", "k", "0"]);
    wait_until("the list client to block", Duration::from_secs(5), || {
        node.state.blocking.waiting_on(b"k") == 1
    });
    let zset = in_background(&node, &["BZPOPMIN", "k", "0"]);
    wait_until("the sorted-set client to block", Duration::from_secs(5), || {
        node.state.blocking.waiting_on(b"k") == 2
    });
    let list2 = in_background(&node, &["BRPOP", "k", "0"]);
    wait_until("the second list client to block", Duration::from_secs(5), || {
        node.state.blocking.waiting_on(b"k") == 3
    });
    // Redis serves the sorted set to the client waiting for one, past the BLPOP.
    cmd::<i64>(&mut con, &["ZADD", "k", "1", "a"]);
    assert_eq!(zset.join().expect("thread").expect("reply"), popped("k", "a", "1"));
    std::thread::sleep(Duration::from_millis(50));
    assert!(!list.is_finished() && !list2.is_finished());
    // The list waiters kept their places.
    cmd::<i64>(&mut con, &["RPUSH", "k", "x", "y"]);
    let pair = |k: &str, v: &str| redis::Value::Array(vec![bulk(k), bulk(v)]);
    assert_eq!(list.join().expect("thread").expect("reply"), pair("k", "x"));
    assert_eq!(list2.join().expect("thread").expect("reply"), pair("k", "y"));
    node.shutdown();
}

#[test]
fn the_proxy_port_refuses_blocking_pops() {
    let node = start();
    let url = format!("redis://{}/", node.proxy_addr);
    let mut con = redis::Client::open(url)
        .expect("url")
        .get_connection()
        .expect("connects");
    cmd::<i64>(&mut con, &["ZADD", "z", "1", "a"]);
    for args in [
        &["BZPOPMIN", "z", "0"][..],
        &["BZPOPMAX", "z", "0"],
        &["BZMPOP", "0", "1", "z", "MIN"],
    ] {
        assert_eq!(cmd_err(&mut con, args), ringcache_node::proxy::BLOCKING_REFUSED);
    }
    assert_eq!(cmd::<Vec<String>>(&mut con, &["ZPOPMIN", "z"]), ["a", "1"]);
    node.shutdown();
}
