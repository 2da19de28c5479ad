//! Bloom filter commands (cmd/bloom.rs, store/bloom.rs) through a real client.
//!
//! There is no RedisBloom on this machine, so these tests are not differential: the
//! replies and error strings asserted here are RedisBloom's as read from its source
//! (src/rebloom.c, src/sb.c, deps/bloom/bloom.c, src/config.c of
//! github.com/RedisBloom/RedisBloom), including its errors without an `ERR` code and
//! its RESP3 booleans and maps. They also cover what only ringcache has to get right:
//! the false-positive rate a filled filter keeps, memory accounting against
//! maxmemory, replication to a replica and a filter moving with its slot.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use redis::Value;
use ringcache_core::slot::key_slot;
use ringcache_node::launch::NodeHandle;
use ringcache_node::store::Policy;

/// Sends `input` on a fresh connection and reads until the output ends with `tail`.
fn raw_until(node: &NodeHandle, input: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(node.resp_addr).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s.write_all(input).expect("writes");
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while !out.ends_with(tail) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// A request as RESP.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    v
}

fn used_memory(con: &mut redis::Connection) -> i64 {
    let info: String = cmd(con, &["INFO", "memory"]);
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO")
}

fn info_pairs(con: &mut redis::Connection, key: &str) -> Vec<(String, Value)> {
    let v: Vec<Value> = cmd(con, &["BF.INFO", key]);
    v.chunks(2)
        .map(|p| match &p[0] {
            Value::SimpleString(s) => (s.clone(), p[1].clone()),
            other => panic!("field name {other:?}"),
        })
        .collect()
}

#[test]
fn add_exists_and_their_replies() {
    let node = start();
    let mut con = client(&node);
    assert_eq!(cmd::<i64>(&mut con, &["BF.ADD", "f", "a"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["BF.ADD", "f", "a"]), 0);
    assert_eq!(
        cmd::<Vec<i64>>(&mut con, &["BF.MADD", "f", "a", "b", "c"]),
        vec![0, 1, 1]
    );
    assert_eq!(cmd::<i64>(&mut con, &["BF.EXISTS", "f", "b"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["BF.EXISTS", "f", "zz"]), 0);
    assert_eq!(
        cmd::<Vec<i64>>(&mut con, &["BF.MEXISTS", "f", "a", "zz", "c"]),
        vec![1, 0, 1]
    );
    assert_eq!(cmd::<i64>(&mut con, &["BF.CARD", "f"]), 3);
    assert_eq!(cmd::<String>(&mut con, &["TYPE", "f"]), "MBbloom--");
    // A missing filter holds nothing and has no items.
    assert_eq!(cmd::<i64>(&mut con, &["BF.EXISTS", "nosuch", "a"]), 0);
    assert_eq!(
        cmd::<Vec<i64>>(&mut con, &["BF.MEXISTS", "nosuch", "a", "b"]),
        vec![0, 0]
    );
    assert_eq!(cmd::<i64>(&mut con, &["BF.CARD", "nosuch"]), 0);
    // RedisBloom answers 0 for a key of another type (its lookup treats it as empty).
    cmd::<()>(&mut con, &["SET", "s", "v"]);
    assert_eq!(cmd::<i64>(&mut con, &["BF.EXISTS", "s", "a"]), 0);
    let wrongtype = "WRONGTYPE Operation against a key holding the wrong kind of value";
    for args in [
        &["BF.ADD", "s", "a"][..],
        &["BF.MADD", "s", "a"],
        &["BF.INSERT", "s", "ITEMS", "a"],
        &["BF.RESERVE", "s", "0.01", "100"],
        &["BF.INFO", "s"],
        &["BF.CARD", "s"],
    ] {
        assert_eq!(cmd_err(&mut con, args), wrongtype, "{args:?}");
    }
    // Other commands see the filter as a value of another type.
    assert_eq!(cmd_err(&mut con, &["GET", "f"]), wrongtype);
    assert_eq!(cmd::<i64>(&mut con, &["DEL", "f"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "f"]), 0);
}

#[test]
fn reserve_and_info() {
    let node = start();
    let mut con = client(&node);
    assert_eq!(cmd::<String>(&mut con, &["BF.RESERVE", "r", "0.01", "1000"]), "OK");
    assert_eq!(
        cmd_err(&mut con, &["BF.RESERVE", "r", "0.01", "1000"]),
        "ERR item exists"
    );
    // 1000 items at 0.5 % (a scaling filter's first sub-filter is sized for half the
    // rate): 11027 bits → 173 words → 1384 bytes; plus RedisBloom's 32 + 64 bytes.
    let info = info_pairs(&mut con, "r");
    let names: Vec<&str> = info.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Capacity",
            "Size",
            "Number of filters",
            "Number of items inserted",
            "Expansion rate"
        ]
    );
    let values: Vec<Value> = info.into_iter().map(|(_, v)| v).collect();
    assert_eq!(
        values,
        [
            Value::Int(1000),
            Value::Int(32 + 64 + 1384),
            Value::Int(1),
            Value::Int(0),
            Value::Int(2)
        ]
    );
    assert_eq!(cmd::<Vec<i64>>(&mut con, &["BF.INFO", "r", "CAPACITY"]), vec![1000]);
    assert_eq!(cmd::<Vec<i64>>(&mut con, &["BF.INFO", "r", "size"]), vec![1480]);
    assert_eq!(cmd::<Vec<i64>>(&mut con, &["BF.INFO", "r", "filters"]), vec![1]);
    assert_eq!(cmd::<Vec<i64>>(&mut con, &["BF.INFO", "r", "Items"]), vec![0]);
    assert_eq!(cmd::<Vec<i64>>(&mut con, &["BF.INFO", "r", "expansion"]), vec![2]);
    assert_eq!(
        cmd_err(&mut con, &["BF.INFO", "r", "bits"]),
        "Invalid information value"
    );
    assert_eq!(cmd_err(&mut con, &["BF.INFO", "nosuch"]), "ERR not found");

    // EXPANSION and NONSCALING.
    assert_eq!(
        cmd::<String>(&mut con, &["BF.RESERVE", "x", "0.001", "10", "EXPANSION", "4"]),
        "OK"
    );
    assert_eq!(cmd::<Vec<i64>>(&mut con, &["BF.INFO", "x", "expansion"]), vec![4]);
    assert_eq!(
        cmd::<String>(&mut con, &["BF.RESERVE", "n", "0.01", "10", "NONSCALING"]),
        "OK"
    );
    let v: Vec<Value> = cmd(&mut con, &["BF.INFO", "n", "expansion"]);
    assert_eq!(v, vec![Value::Nil], "a non-scaling filter has no expansion rate");
    assert_eq!(
        cmd::<String>(&mut con, &["BF.RESERVE", "z", "0.01", "10", "EXPANSION", "0"]),
        "OK"
    );
    let v: Vec<Value> = cmd(&mut con, &["BF.INFO", "z", "expansion"]);
    assert_eq!(v, vec![Value::Nil], "EXPANSION 0 is non-scaling");
    // Unknown extra arguments are ignored, as RedisBloom does.
    assert_eq!(
        cmd::<String>(&mut con, &["BF.RESERVE", "u", "0.01", "10", "whatever"]),
        "OK"
    );
    // Error rates above 0.25 are used as 0.25.
    assert_eq!(
        cmd::<String>(&mut con, &["BF.RESERVE", "cap", "0.9", "100", "NONSCALING"]),
        "OK"
    );
    // 100 items at 0.25: 288 bits → 5 words → 40 bytes.
    assert_eq!(
        cmd::<Vec<i64>>(&mut con, &["BF.INFO", "cap", "size"]),
        vec![32 + 64 + 40]
    );
}

#[test]
fn argument_errors_are_redisbloom_s() {
    let node = start();
    let mut con = client(&node);
    let cases: &[(&[&str], &str)] = &[
        (
            &["BF.RESERVE", "k", "0.01"],
            "ERR wrong number of arguments for 'bf.reserve' command",
        ),
        (
            &["BF.RESERVE", "k", "0.01", "10", "EXPANSION", "2", "NONSCALING", "x"],
            "ERR wrong number of arguments for 'bf.reserve' command",
        ),
        (&["BF.RESERVE", "k", "abc", "10"], "ERR bad error rate"),
        (
            &["BF.RESERVE", "k", "0", "10"],
            "ERR error rate must be in the range (0.000000, 1.000000)",
        ),
        (
            &["BF.RESERVE", "k", "1", "10"],
            "ERR error rate must be in the range (0.000000, 1.000000)",
        ),
        (&["BF.RESERVE", "k", "0.01", "1.5"], "ERR bad capacity"),
        (
            &["BF.RESERVE", "k", "0.01", "0"],
            "ERR capacity must be in the range [1, 1073741824]",
        ),
        (
            &["BF.RESERVE", "k", "0.01", "1073741825"],
            "ERR capacity must be in the range [1, 1073741824]",
        ),
        (&["BF.RESERVE", "k", "0.01", "10", "EXPANSION"], "ERR no expansion"),
        (
            &["BF.RESERVE", "k", "0.01", "10", "EXPANSION", "x"],
            "ERR bad expansion",
        ),
        (
            &["BF.RESERVE", "k", "0.01", "10", "EXPANSION", "-1"],
            "ERR expansion must be in the range [0, 32768]",
        ),
        (
            &["BF.RESERVE", "k", "0.01", "10", "EXPANSION", "32769"],
            "ERR expansion must be in the range [0, 32768]",
        ),
        (
            &["BF.RESERVE", "k", "0.01", "10", "NONSCALING", "EXPANSION", "2"],
            "Nonscaling filters cannot expand",
        ),
        (&["BF.ADD", "k"], "ERR wrong number of arguments for 'bf.add' command"),
        (
            &["BF.ADD", "k", "a", "b"],
            "ERR wrong number of arguments for 'bf.add' command",
        ),
        (&["BF.MADD", "k"], "ERR wrong number of arguments for 'bf.madd' command"),
        (
            &["BF.EXISTS", "k", "a", "b"],
            "ERR wrong number of arguments for 'bf.exists' command",
        ),
        (
            &["BF.MEXISTS", "k"],
            "ERR wrong number of arguments for 'bf.mexists' command",
        ),
        (
            &["BF.INFO", "k", "a", "b"],
            "ERR wrong number of arguments for 'bf.info' command",
        ),
        (
            &["BF.CARD", "k", "a"],
            "ERR wrong number of arguments for 'bf.card' command",
        ),
        (
            &["BF.INSERT", "k", "ITEMS"],
            "ERR wrong number of arguments for 'bf.insert' command",
        ),
        (
            &["BF.INSERT", "k", "CAPACITY", "10"],
            "ERR wrong number of arguments for 'bf.insert' command",
        ),
        (
            &["BF.INSERT", "k", "NOCREATE", "ERROR"],
            "ERR wrong number of arguments for 'bf.insert' command",
        ),
        (&["BF.INSERT", "k", "ERROR", "2", "ITEMS", "a"], "Bad error rate"),
        (&["BF.INSERT", "k", "ERROR", "x", "ITEMS", "a"], "Bad error rate"),
        (&["BF.INSERT", "k", "CAPACITY", "0", "ITEMS", "a"], "Bad capacity"),
        (&["BF.INSERT", "k", "EXPANSION", "-2", "ITEMS", "a"], "Bad expansion"),
        (&["BF.INSERT", "k", "FOO", "ITEMS", "a"], "Unknown argument received"),
        (&["BF.INSERT", "k", "NOCREATE", "ITEMS", "a"], "ERR not found"),
    ];
    for (args, want) in cases {
        assert_eq!(cmd_err(&mut con, args), *want, "{args:?}");
    }
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "k"]), 0, "no error made a key");
}

#[test]
fn insert_options() {
    let node = start();
    let mut con = client(&node);
    let r: Vec<i64> = cmd(
        &mut con,
        &[
            "BF.INSERT",
            "i",
            "CAPACITY",
            "50",
            "ERROR",
            "0.001",
            "EXPANSION",
            "3",
            "ITEMS",
            "a",
            "b",
            "a",
        ],
    );
    assert_eq!(r, vec![1, 1, 0]);
    assert_eq!(cmd::<Vec<i64>>(&mut con, &["BF.INFO", "i", "capacity"]), vec![50]);
    assert_eq!(cmd::<Vec<i64>>(&mut con, &["BF.INFO", "i", "expansion"]), vec![3]);
    // Options of an existing filter are ignored; NOCREATE adds to it.
    let r: Vec<i64> = cmd(&mut con, &["BF.INSERT", "i", "CAPACITY", "7", "NOCREATE", "ITEMS", "c"]);
    assert_eq!(r, vec![1]);
    assert_eq!(cmd::<Vec<i64>>(&mut con, &["BF.INFO", "i", "capacity"]), vec![50]);
    // Only first letters count: "cap" is CAPACITY, "nonsc" NONSCALING, "it" ITEMS.
    // (The `redis` crate turns an error inside an array into a failed query: raw RESP.)
    let mut input = resp(&["BF.INSERT", "j", "cap", "2", "nonsc", "it", "x", "y", "z", "w"]);
    input.extend(resp(&["BF.INSERT", "j", "ITEMS", "q", "r"]));
    input.extend(resp(&["PING"]));
    let out = raw_until(&node, &input, b"+PONG\r\n");
    assert_eq!(
        out,
        &b"*3\r\n:1\r\n:1\r\n-ERR non scaling filter is full\r\n*1\r\n-ERR non scaling filter is full\r\n+PONG\r\n"[..],
        "each reply stops after the first refused item: {}",
        String::from_utf8_lossy(&out)
    );
    let v: Vec<Value> = cmd(&mut con, &["BF.INFO", "j", "expansion"]);
    assert_eq!(v, vec![Value::Nil]);
}

#[test]
fn capacity_reached_scales_or_refuses() {
    let node = start();
    let mut con = client(&node);
    // Scaling: 10 items, expansion 2 → sub-filters of 10, 20, 40, …
    cmd::<()>(&mut con, &["BF.RESERVE", "s", "0.01", "10"]);
    let items: Vec<String> = (0..100).map(|i| format!("item{i}")).collect();
    let mut args = vec!["BF.MADD", "s"];
    args.extend(items.iter().map(String::as_str));
    let added: Vec<i64> = cmd(&mut con, &args);
    let n: i64 = added.iter().sum();
    assert!(n >= 95, "few false positives among 100 items: {n}");
    assert_eq!(cmd::<i64>(&mut con, &["BF.CARD", "s"]), n);
    // 10 + 20 + 40 = 70 < n ≤ 150 = 10 + 20 + 40 + 80.
    assert_eq!(cmd::<Vec<i64>>(&mut con, &["BF.INFO", "s", "filters"]), vec![4]);
    assert_eq!(cmd::<Vec<i64>>(&mut con, &["BF.INFO", "s", "capacity"]), vec![150]);
    let mut args = vec!["BF.MEXISTS", "s"];
    args.extend(items.iter().map(String::as_str));
    assert!(cmd::<Vec<i64>>(&mut con, &args).iter().all(|&x| x == 1));

    // Non-scaling: the item past capacity is refused, the filter unchanged.
    cmd::<()>(&mut con, &["BF.RESERVE", "n", "0.01", "5", "NONSCALING"]);
    let mut added = 0;
    for i in 0.. {
        let v: Result<i64, _> = redis::cmd("BF.ADD").arg("n").arg(format!("x{i}")).query(&mut con);
        match v {
            Ok(a) => added += a,
            Err(e) => {
                assert_eq!(e.code(), Some("ERR"));
                assert_eq!(e.detail(), Some("non scaling filter is full"));
                break;
            }
        }
    }
    assert_eq!(added, 5);
    assert_eq!(cmd::<i64>(&mut con, &["BF.CARD", "n"]), 5);
    assert_eq!(cmd::<Vec<i64>>(&mut con, &["BF.INFO", "n", "filters"]), vec![1]);
    // An item already in it is still answered, not refused.
    assert_eq!(cmd::<i64>(&mut con, &["BF.ADD", "n", "x0"]), 0);
}

/// Fills a filter to capacity, probes 100k absent items, and returns the measured
/// false-positive rate and the filter's bytes per item.
fn measure(con: &mut redis::Connection, key: &str, error: &str, nonscaling: bool) -> (f64, f64) {
    const N: usize = 100_000;
    let mut reserve = vec!["BF.RESERVE", key, error, "100000"];
    if nonscaling {
        reserve.push("NONSCALING");
    }
    cmd::<()>(con, &reserve);
    for chunk in (0..N).collect::<Vec<_>>().chunks(2000) {
        let mut c = redis::cmd("BF.MADD");
        c.arg(key);
        for i in chunk {
            c.arg(format!("present:{i}"));
        }
        let _: Vec<i64> = c.query(con).expect("adds");
    }
    let card: i64 = cmd(con, &["BF.CARD", key]);
    assert!(card as f64 > N as f64 * 0.98, "filled: {card}");
    let filters: Vec<i64> = cmd(con, &["BF.INFO", key, "filters"]);
    assert_eq!(filters, vec![1], "still one sub-filter at capacity");
    let mut positives = 0;
    for chunk in (0..N).collect::<Vec<_>>().chunks(2000) {
        let mut c = redis::cmd("BF.MEXISTS");
        c.arg(key);
        for i in chunk {
            c.arg(format!("absent:{i}"));
        }
        let r: Vec<i64> = c.query(con).expect("checks");
        positives += r.iter().sum::<i64>();
    }
    let size: Vec<i64> = cmd(con, &["BF.INFO", key, "size"]);
    (positives as f64 / N as f64, size[0] as f64 / N as f64)
}

#[test]
fn a_filter_filled_to_capacity_keeps_the_requested_error_rate() {
    let node = start();
    let mut con = client(&node);
    // Non-scaling filters are sized for exactly the requested rate.
    for (key, error) in [("e1", 0.01), ("e01", 0.001)] {
        let (rate, bytes) = measure(&mut con, key, &error.to_string(), true);
        eprintln!("non-scaling {error}: false positives {rate:.5}, {bytes:.3} bytes per item");
        assert!(rate <= error * 1.2, "{key}: {rate} > {error} × 1.2");
        assert!(rate >= error * 0.5, "{key}: {rate} suspiciously low for {error}");
    }
    // A scaling filter's first sub-filter is sized for half the rate.
    let (rate, bytes) = measure(&mut con, "s1", "0.01", false);
    eprintln!("scaling 0.01: false positives {rate:.5}, {bytes:.3} bytes per item");
    assert!(rate <= 0.01 * 0.5 * 1.2, "{rate}");
    // 1 % costs ln(100)/ln(2)² ≈ 9.59 bits ≈ 1.2 bytes per item (1.38 scaling).
    let (_, bytes) = measure(&mut con, "b1", "0.01", true);
    assert!((1.19..1.21).contains(&bytes), "{bytes}");
}

#[test]
fn memory_is_charged_and_maxmemory_sees_filters() {
    let node = start();
    let mut con = client(&node);
    let before = used_memory(&mut con);
    cmd::<()>(&mut con, &["BF.RESERVE", "big", "0.01", "1000000", "NONSCALING"]);
    let size: Vec<i64> = cmd(&mut con, &["BF.INFO", "big", "size"]);
    let grown = used_memory(&mut con) - before;
    assert!(size[0] > 1_190_000, "{size:?}");
    assert!(
        grown >= size[0] && grown < size[0] + 256,
        "charged {grown} for a filter of {}",
        size[0]
    );
    // Growing a scaling filter is charged too.
    cmd::<()>(&mut con, &["BF.RESERVE", "grow", "0.01", "100"]);
    let mid = used_memory(&mut con);
    let items: Vec<String> = (0..150).map(|i| format!("i{i}")).collect();
    let mut args = vec!["BF.MADD", "grow"];
    args.extend(items.iter().map(String::as_str));
    cmd::<Vec<i64>>(&mut con, &args);
    let size: Vec<i64> = cmd(&mut con, &["BF.INFO", "grow", "size"]);
    assert_eq!(
        used_memory(&mut con) - mid,
        size[0] - (32 + 64 + 144),
        "the second sub-filter"
    );
    cmd::<i64>(&mut con, &["DEL", "big", "grow"]);
    assert_eq!(used_memory(&mut con), before, "deleting gives it all back");

    // A filter larger than maxmemory is refused; filters count against it.
    let node = start_with(|c| {
        c.maxmemory = Some(2 * 1024 * 1024);
        c.maxmemory_policy = Policy::NoEviction;
    });
    let mut con = client(&node);
    assert_eq!(
        cmd_err(&mut con, &["BF.RESERVE", "huge", "0.001", "10000000"]),
        "ERR Insufficient memory to create filter"
    );
    cmd::<()>(&mut con, &["BF.RESERVE", "a", "0.01", "1000000", "NONSCALING"]);
    cmd::<()>(&mut con, &["BF.RESERVE", "b", "0.01", "1000000", "NONSCALING"]);
    let err = cmd_err(&mut con, &["BF.ADD", "c", "x"]);
    assert!(err.starts_with("OOM"), "{err}");
    // A read still works.
    assert_eq!(cmd::<i64>(&mut con, &["BF.EXISTS", "a", "x"]), 0);

    // With an evicting policy, filters are evicted like any key to make room.
    let node = start_with(|c| {
        c.maxmemory = Some(2 * 1024 * 1024);
        c.maxmemory_policy = Policy::AllKeysLru;
    });
    let mut con = client(&node);
    for i in 0..5 {
        cmd::<()>(
            &mut con,
            &["BF.RESERVE", &format!("f{i}"), "0.01", "1000000", "NONSCALING"],
        );
    }
    let keys: i64 = cmd(&mut con, &["DBSIZE"]);
    assert!(keys < 5, "older filters were evicted: {keys} left");
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "f4"]), 1, "the newest stays");
    assert!(used_memory(&mut con) < 2 * 1024 * 1024 + 1_300_000);
}

#[test]
fn resp3_replies_are_booleans_and_maps() {
    let node = start();
    let mut input = b"HELLO 3\r\n".to_vec();
    for args in [
        &["BF.ADD", "f", "a"][..],
        &["BF.ADD", "f", "a"],
        &["BF.MADD", "f", "a", "b"],
        &["BF.EXISTS", "f", "a"],
        &["BF.MEXISTS", "f", "zz", "b"],
        &["BF.INFO", "f", "items"],
        &["BF.RESERVE", "n", "0.01", "10", "NONSCALING"],
        &["BF.INFO", "n", "expansion"],
        &["BF.INFO", "n"],
        &["PING"],
    ] {
        input.extend(resp(args));
    }
    let out = raw_until(&node, &input, b"+PONG\r\n");
    let want: &[u8] = b"#t\r\n#f\r\n*2\r\n#f\r\n#t\r\n#t\r\n*2\r\n#f\r\n#t\r\n\
%1\r\n+Number of items inserted\r\n:2\r\n+OK\r\n%1\r\n+Expansion rate\r\n_\r\n\
%5\r\n+Capacity\r\n:10\r\n+Size\r\n:112\r\n+Number of filters\r\n:1\r\n+Number of items inserted\r\n:0\r\n+Expansion rate\r\n_\r\n+PONG\r\n";
    assert!(
        out.ends_with(want),
        "{}",
        String::from_utf8_lossy(&out[out.len().saturating_sub(want.len() + 40)..])
    );
    // RESP2: the same as integers, a flat array and a null bulk string.
    let mut input = Vec::new();
    for args in [&["BF.INFO", "n"][..], &["BF.INFO", "n", "expansion"], &["PING"]] {
        input.extend(resp(args));
    }
    let out = raw_until(&node, &input, b"+PONG\r\n");
    let want: &[u8] = b"*10\r\n+Capacity\r\n:10\r\n+Size\r\n:112\r\n+Number of filters\r\n:1\r\n\
+Number of items inserted\r\n:0\r\n+Expansion rate\r\n$-1\r\n*1\r\n$-1\r\n+PONG\r\n";
    assert_eq!(out, want, "{}", String::from_utf8_lossy(&out));
}

#[test]
fn defaults_come_from_the_node_flags() {
    let node = start_with(|c| {
        c.bf_error_rate = 0.001;
        c.bf_initial_size = 1000;
        c.bf_expansion = 4;
    });
    let mut con = client(&node);
    cmd::<i64>(&mut con, &["BF.ADD", "d", "a"]);
    assert_eq!(cmd::<Vec<i64>>(&mut con, &["BF.INFO", "d", "capacity"]), vec![1000]);
    assert_eq!(cmd::<Vec<i64>>(&mut con, &["BF.INFO", "d", "expansion"]), vec![4]);
    // 1000 items at 0.05 %: 15 848 bits → 248 words → 1984 bytes.
    assert_eq!(
        cmd::<Vec<i64>>(&mut con, &["BF.INFO", "d", "size"]),
        vec![32 + 64 + 1984]
    );
    let node = start_with(|c| c.bf_expansion = 0);
    let mut con = client(&node);
    cmd::<Vec<i64>>(&mut con, &["BF.INSERT", "d", "ITEMS", "a"]);
    let v: Vec<Value> = cmd(&mut con, &["BF.INFO", "d", "expansion"]);
    assert_eq!(v, vec![Value::Nil], "expansion 0 makes filters non-scaling");
}

#[test]
fn a_filter_reaches_its_replica() {
    let (nodes, topo) = three_nodes();
    let key = "bloom:replicated";
    let owners = topo.owners_of(key_slot(key.as_bytes()));
    let (primary, replica) = (by_id(&nodes, &owners[0]), by_id(&nodes, &owners[1]));
    wait_until("replication links", Duration::from_secs(10), || {
        nodes.iter().all(|n| {
            let st = n.state.replication.status();
            st.links.len() == 2 && st.links.iter().all(|l| l.connected)
        })
    });
    let mut p = client(primary);
    cmd::<()>(&mut p, &["BF.RESERVE", key, "0.01", "20"]);
    let items: Vec<String> = (0..50).map(|i| format!("r{i}")).collect();
    let mut args = vec!["BF.MADD", key];
    args.extend(items.iter().map(String::as_str));
    cmd::<Vec<i64>>(&mut p, &args);
    let want = info_pairs(&mut p, key);
    let mut r = client(replica);
    cmd::<()>(&mut r, &["READONLY"]);
    wait_until("the filter on the replica", Duration::from_secs(10), || {
        cmd::<i64>(&mut r, &["EXISTS", key]) == 1 && info_pairs(&mut r, key) == want
    });
    assert_eq!(cmd::<String>(&mut r, &["TYPE", key]), "MBbloom--");
    let mut args = vec!["BF.MEXISTS", key];
    args.extend(items.iter().map(String::as_str));
    assert!(cmd::<Vec<i64>>(&mut r, &args).iter().all(|&x| x == 1));
    // A later add replaces the replica's copy.
    cmd::<i64>(&mut p, &["BF.ADD", key, "later"]);
    wait_until("the add on the replica", Duration::from_secs(10), || {
        cmd::<i64>(&mut r, &["BF.EXISTS", key, "later"]) == 1
    });
    assert_eq!(info_pairs(&mut r, key), info_pairs(&mut p, key));
}

#[test]
fn a_filter_moves_with_its_slot() {
    let (a, b, t1) = two_node_cluster();
    let key = (0..1000)
        .map(|i| format!("bloom:{i}"))
        .find(|k| t1.primary_of(key_slot(k.as_bytes())) == Some("a"))
        .expect("a key of a");
    let slot = key_slot(key.as_bytes());
    let mut ca = client(&a);
    cmd::<()>(&mut ca, &["BF.RESERVE", &key, "0.01", "10", "EXPANSION", "3"]);
    let items: Vec<String> = (0..40).map(|i| format!("m{i}")).collect();
    let mut args = vec!["BF.MADD", key.as_str()];
    args.extend(items.iter().map(String::as_str));
    cmd::<Vec<i64>>(&mut ca, &args);
    let want = info_pairs(&mut ca, &key);

    // The slot now belongs to b, which reads the filter through from a.
    hand_slot_to_b(&a, &b, &t1, slot);
    let mut cb = client(&b);
    let mut args = vec!["BF.MEXISTS", key.as_str()];
    args.extend(items.iter().map(String::as_str));
    assert!(
        cmd::<Vec<i64>>(&mut cb, &args).iter().all(|&x| x == 1),
        "read through from a"
    );
    assert_eq!(info_pairs(&mut cb, &key), want);
    assert_eq!(cmd::<String>(&mut cb, &["TYPE", &key]), "MBbloom--");
    // Writes on b go on from the moved filter.
    assert_eq!(cmd::<i64>(&mut cb, &["BF.ADD", &key, "m0"]), 0);
    assert_eq!(cmd::<i64>(&mut cb, &["BF.ADD", &key, "new"]), 1);
    let Value::Int(card) = want[3].1 else {
        panic!("{want:?}")
    };
    assert_eq!(cmd::<i64>(&mut cb, &["BF.CARD", &key]), card + 1);
}
