//! Hash commands with a real client and raw RESP: replies, Redis' error strings,
//! WRONGTYPE, deletion of emptied hashes and exact memory accounting.

mod common;

use std::collections::{HashMap, HashSet};

use common::*;

#[test]
fn set_get_and_multi_field_commands() {
    let node = start();
    let mut con = client(&node);
    assert_eq!(cmd::<i64>(&mut con, &["HSET", "h", "a", "1", "b", "2"]), 2);
    assert_eq!(cmd::<i64>(&mut con, &["HSET", "h", "a", "10", "c", "3"]), 1);
    assert_eq!(cmd::<String>(&mut con, &["HGET", "h", "a"]), "10");
    assert_eq!(cmd::<Option<String>>(&mut con, &["HGET", "h", "nope"]), None);
    assert_eq!(cmd::<Option<String>>(&mut con, &["HGET", "missing", "a"]), None);
    assert_eq!(cmd::<String>(&mut con, &["HMSET", "h", "d", "4", "e", "5"]), "OK");
    assert_eq!(cmd::<i64>(&mut con, &["HLEN", "h"]), 5);
    assert_eq!(cmd::<i64>(&mut con, &["HLEN", "missing"]), 0);
    assert_eq!(
        cmd::<Vec<Option<String>>>(&mut con, &["HMGET", "h", "a", "zz", "e"]),
        vec![Some("10".into()), None, Some("5".into())]
    );
    assert_eq!(
        cmd::<Vec<Option<String>>>(&mut con, &["HMGET", "missing", "a", "b"]),
        vec![None, None]
    );

    assert_eq!(cmd::<i64>(&mut con, &["HSETNX", "h", "a", "x"]), 0);
    assert_eq!(cmd::<String>(&mut con, &["HGET", "h", "a"]), "10");
    assert_eq!(cmd::<i64>(&mut con, &["HSETNX", "h", "f", "6"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["HSETNX", "fresh", "f", "v"]), 1);
    assert_eq!(cmd::<String>(&mut con, &["HGET", "fresh", "f"]), "v");

    let all: HashMap<String, String> = cmd(&mut con, &["HGETALL", "h"]);
    let want: HashMap<String, String> = [("a", "10"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5"), ("f", "6")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(all, want);
    assert!(cmd::<HashMap<String, String>>(&mut con, &["HGETALL", "missing"]).is_empty());

    let mut keys: Vec<String> = cmd(&mut con, &["HKEYS", "h"]);
    keys.sort();
    assert_eq!(keys, ["a", "b", "c", "d", "e", "f"]);
    let mut vals: Vec<String> = cmd(&mut con, &["HVALS", "h"]);
    vals.sort();
    assert_eq!(vals, ["10", "2", "3", "4", "5", "6"]);
    assert!(cmd::<Vec<String>>(&mut con, &["HKEYS", "missing"]).is_empty());
    assert!(cmd::<Vec<String>>(&mut con, &["HVALS", "missing"]).is_empty());

    assert_eq!(cmd::<i64>(&mut con, &["HEXISTS", "h", "a"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["HEXISTS", "h", "zz"]), 0);
    assert_eq!(cmd::<i64>(&mut con, &["HEXISTS", "missing", "a"]), 0);
    assert_eq!(cmd::<i64>(&mut con, &["HSTRLEN", "h", "a"]), 2);
    assert_eq!(cmd::<i64>(&mut con, &["HSTRLEN", "h", "zz"]), 0);
    assert_eq!(cmd::<i64>(&mut con, &["HSTRLEN", "missing", "a"]), 0);

    // Binary-safe fields and values.
    let mut c = redis::cmd("HSET");
    c.arg("bin").arg(&b"f\0\r\n"[..]).arg(&b"\xff\x00v"[..]);
    assert_eq!(c.query::<i64>(&mut con).expect("hset"), 1);
    let v: Vec<u8> = redis::cmd("HGET")
        .arg("bin")
        .arg(&b"f\0\r\n"[..])
        .query(&mut con)
        .expect("hget");
    assert_eq!(v, b"\xff\x00v");
    node.shutdown();
}

fn info_stat(con: &mut redis::Connection, name: &str) -> u64 {
    let info: String = cmd(con, &["INFO", "stats"]);
    let prefix = format!("{name}:");
    info.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {info:?}"))
}

#[test]
fn reads_count_keyspace_hits_and_misses() {
    let node = start();
    let mut con = client(&node);
    cmd::<i64>(&mut con, &["HSET", "h", "a", "1"]);
    let (hits, misses) = (
        info_stat(&mut con, "keyspace_hits"),
        info_stat(&mut con, "keyspace_misses"),
    );
    cmd::<Option<String>>(&mut con, &["HGET", "h", "a"]);
    cmd::<Option<String>>(&mut con, &["HGET", "h", "nofield"]);
    cmd::<i64>(&mut con, &["HLEN", "h"]);
    cmd::<Option<String>>(&mut con, &["HGET", "missing", "a"]);
    cmd::<Vec<String>>(&mut con, &["HKEYS", "missing"]);
    assert_eq!(info_stat(&mut con, "keyspace_hits"), hits + 3);
    assert_eq!(info_stat(&mut con, "keyspace_misses"), misses + 2);
    node.shutdown();
}

#[test]
fn hdel_deletes_the_key_with_its_last_field() {
    let node = start();
    let mut con = client(&node);
    cmd::<i64>(&mut con, &["HSET", "h", "a", "1", "b", "2", "c", "3"]);
    assert_eq!(cmd::<i64>(&mut con, &["HDEL", "h", "a", "zz", "a"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["HDEL", "missing", "a"]), 0);
    assert_eq!(cmd::<i64>(&mut con, &["HLEN", "h"]), 2);
    // While the hash exists, GET on it is WRONGTYPE.
    assert!(cmd_err(&mut con, &["GET", "h"]).starts_with("WRONGTYPE"));
    assert_eq!(cmd::<i64>(&mut con, &["HDEL", "h", "b", "c"]), 2);
    assert_eq!(cmd::<i64>(&mut con, &["HLEN", "h"]), 0);
    // The key is gone: GET sees nothing instead of a hash, and SET makes it a string.
    assert_eq!(cmd::<Option<String>>(&mut con, &["GET", "h"]), None);
    assert_eq!(cmd::<String>(&mut con, &["SET", "h", "s"]), "OK");
    assert_eq!(cmd::<String>(&mut con, &["GET", "h"]), "s");
    node.shutdown();
}

#[test]
fn increments_and_their_errors() {
    let node = start();
    let mut con = client(&node);
    assert_eq!(cmd::<i64>(&mut con, &["HINCRBY", "h", "n", "5"]), 5);
    assert_eq!(cmd::<i64>(&mut con, &["HINCRBY", "h", "n", "-7"]), -2);
    assert_eq!(cmd::<String>(&mut con, &["HGET", "h", "n"]), "-2");
    cmd::<i64>(
        &mut con,
        &["HSET", "h", "s", "abc", "big", "9223372036854775800", "sp", " 1"],
    );
    assert_eq!(
        cmd_err(&mut con, &["HINCRBY", "h", "s", "1"]),
        "ERR hash value is not an integer"
    );
    assert_eq!(
        cmd_err(&mut con, &["HINCRBY", "h", "sp", "1"]),
        "ERR hash value is not an integer"
    );
    assert_eq!(
        cmd_err(&mut con, &["HINCRBY", "h", "big", "10"]),
        "ERR increment or decrement would overflow"
    );
    assert_eq!(cmd::<String>(&mut con, &["HGET", "h", "big"]), "9223372036854775800");
    assert_eq!(
        cmd_err(&mut con, &["HINCRBY", "h", "n", "x"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        cmd_err(&mut con, &["HINCRBY", "h", "n", "1.5"]),
        "ERR value is not an integer or out of range"
    );
    // A failed increment on a missing key does not create it.
    assert_eq!(
        cmd_err(&mut con, &["HINCRBY", "nokey", "n", "x"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(cmd::<i64>(&mut con, &["HLEN", "nokey"]), 0);

    assert_eq!(cmd::<i64>(&mut con, &["HSET", "f", "x", "10.50"]), 1);
    assert_eq!(cmd::<String>(&mut con, &["HINCRBYFLOAT", "f", "x", "0.1"]), "10.6");
    assert_eq!(cmd::<String>(&mut con, &["HINCRBYFLOAT", "f", "x", "-5"]), "5.6");
    cmd::<i64>(&mut con, &["HSET", "f", "x", "5.0e3"]);
    assert_eq!(cmd::<String>(&mut con, &["HINCRBYFLOAT", "f", "x", "2.0e2"]), "5200");
    assert_eq!(cmd::<String>(&mut con, &["HGET", "f", "x"]), "5200");
    assert_eq!(cmd::<String>(&mut con, &["HINCRBYFLOAT", "f", "new", "1.5"]), "1.5");
    cmd::<i64>(&mut con, &["HSET", "f", "s", "abc", "huge", "1e4932"]);
    assert_eq!(
        cmd_err(&mut con, &["HINCRBYFLOAT", "f", "s", "1"]),
        "ERR hash value is not a float"
    );
    assert_eq!(
        cmd_err(&mut con, &["HINCRBYFLOAT", "f", "x", "abc"]),
        "ERR value is not a valid float"
    );
    assert_eq!(
        cmd_err(&mut con, &["HINCRBYFLOAT", "f", "huge", "1e4932"]),
        "ERR increment would produce NaN or Infinity"
    );
    assert_eq!(cmd::<String>(&mut con, &["HGET", "f", "huge"]), "1e4932");
    assert_eq!(
        cmd_err(&mut con, &["HINCRBYFLOAT", "f", "x", "inf"]),
        "ERR value is NaN or Infinity"
    );
    node.shutdown();
}

#[test]
fn wrong_type_and_wrong_arity() {
    let node = start();
    let mut con = client(&node);
    cmd::<()>(&mut con, &["SET", "s", "v"]);
    let wrongtype = "WRONGTYPE Operation against a key holding the wrong kind of value";
    for args in [
        &["HSET", "s", "f", "v"][..],
        &["HSETNX", "s", "f", "v"],
        &["HMSET", "s", "f", "v"],
        &["HGET", "s", "f"],
        &["HMGET", "s", "f"],
        &["HGETALL", "s"],
        &["HDEL", "s", "f"],
        &["HEXISTS", "s", "f"],
        &["HINCRBY", "s", "f", "1"],
        &["HINCRBYFLOAT", "s", "f", "1"],
        &["HLEN", "s"],
        &["HKEYS", "s"],
        &["HVALS", "s"],
        &["HSTRLEN", "s", "f"],
        &["HSCAN", "s", "0"],
        &["HRANDFIELD", "s"],
        &["HRANDFIELD", "s", "2"],
    ] {
        assert_eq!(cmd_err(&mut con, args), wrongtype, "{args:?}");
    }
    assert_eq!(cmd::<String>(&mut con, &["GET", "s"]), "v");

    assert_eq!(
        cmd_err(&mut con, &["HSET", "h", "f"]),
        "ERR wrong number of arguments for 'hset' command"
    );
    assert_eq!(
        cmd_err(&mut con, &["HSET", "h", "f", "v", "g"]),
        "ERR wrong number of arguments for 'hset' command"
    );
    assert_eq!(
        cmd_err(&mut con, &["HMSET", "h", "f", "v", "g"]),
        "ERR wrong number of arguments for 'hmset' command"
    );
    assert_eq!(
        cmd_err(&mut con, &["HGET", "h"]),
        "ERR wrong number of arguments for 'hget' command"
    );
    assert_eq!(
        cmd_err(&mut con, &["HDEL", "h"]),
        "ERR wrong number of arguments for 'hdel' command"
    );
    assert_eq!(cmd::<i64>(&mut con, &["HLEN", "h"]), 0);
    node.shutdown();
}

#[test]
fn hscan_returns_everything_with_cursor_zero() {
    let node = start();
    let mut con = client(&node);
    for i in 0..200 {
        cmd::<i64>(&mut con, &["HSET", "h", &format!("field:{i}"), &format!("v{i}")]);
    }
    cmd::<i64>(&mut con, &["HSET", "h", "other", "x"]);
    let (cursor, items): (String, Vec<String>) = cmd(&mut con, &["HSCAN", "h", "0"]);
    assert_eq!(cursor, "0");
    assert_eq!(items.len(), 2 * 201);
    let pairs: HashMap<&String, &String> = items.chunks(2).map(|p| (&p[0], &p[1])).collect();
    assert_eq!(pairs.get(&"field:7".to_string()).map(|v| v.as_str()), Some("v7"));

    let (cursor, items): (String, Vec<String>) = cmd(&mut con, &["HSCAN", "h", "0", "MATCH", "field:1?", "COUNT", "5"]);
    assert_eq!(cursor, "0");
    let mut fields: Vec<&String> = items.iter().step_by(2).collect();
    fields.sort();
    assert_eq!(fields.len(), 10);
    assert!(fields.iter().all(|f| f.starts_with("field:1") && f.len() == 8));

    let (_, items): (String, Vec<String>) = cmd(&mut con, &["HSCAN", "h", "0", "MATCH", "oth*", "NOVALUES"]);
    assert_eq!(items, ["other"]);
    let (cursor, items): (String, Vec<String>) = cmd(&mut con, &["HSCAN", "missing", "0"]);
    assert_eq!((cursor.as_str(), items.len()), ("0", 0));

    assert_eq!(cmd_err(&mut con, &["HSCAN", "h", "abc"]), "ERR invalid cursor");
    assert_eq!(
        cmd_err(&mut con, &["HSCAN", "h", "0", "COUNT", "0"]),
        "ERR syntax error"
    );
    assert_eq!(
        cmd_err(&mut con, &["HSCAN", "h", "0", "COUNT", "x"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(cmd_err(&mut con, &["HSCAN", "h", "0", "MATCH"]), "ERR syntax error");
    assert_eq!(cmd_err(&mut con, &["HSCAN", "h", "0", "BOGUS"]), "ERR syntax error");
    node.shutdown();
}

#[test]
fn hrandfield_counts_and_shapes() {
    let node = start();
    let mut con = client(&node);
    for i in 0..10 {
        cmd::<i64>(&mut con, &["HSET", "h", &format!("f{i}"), &format!("v{i}")]);
    }
    let all: HashSet<String> = (0..10).map(|i| format!("f{i}")).collect();

    let one: String = cmd(&mut con, &["HRANDFIELD", "h"]);
    assert!(all.contains(&one));
    assert_eq!(cmd::<Option<String>>(&mut con, &["HRANDFIELD", "missing"]), None);
    assert!(cmd::<Vec<String>>(&mut con, &["HRANDFIELD", "missing", "3"]).is_empty());
    assert!(cmd::<Vec<String>>(&mut con, &["HRANDFIELD", "h", "0"]).is_empty());

    // Positive counts: distinct fields, at most the hash size.
    for n in [1usize, 3, 9, 10, 50] {
        let got: Vec<String> = cmd(&mut con, &["HRANDFIELD", "h", &n.to_string()]);
        let distinct: HashSet<&String> = got.iter().collect();
        assert_eq!(got.len(), n.min(10), "count {n}");
        assert_eq!(distinct.len(), got.len(), "count {n} repeated a field");
        assert!(got.iter().all(|f| all.contains(f)));
    }
    // Negative counts: exactly |count| fields, repeats allowed.
    let got: Vec<String> = cmd(&mut con, &["HRANDFIELD", "h", "-50"]);
    assert_eq!(got.len(), 50);
    assert!(got.iter().all(|f| all.contains(f)));
    // WITHVALUES in RESP2: a flat field, value list.
    let got: Vec<String> = cmd(&mut con, &["HRANDFIELD", "h", "-5", "withvalues"]);
    assert_eq!(got.len(), 10);
    for p in got.chunks(2) {
        assert_eq!(p[1], format!("v{}", &p[0][1..]));
    }

    assert_eq!(
        cmd_err(&mut con, &["HRANDFIELD", "h", "-9223372036854775808"]),
        "ERR value is out of range, must be between -9223372036854775807 and 9223372036854775807"
    );
    assert_eq!(
        cmd_err(&mut con, &["HRANDFIELD", "h", "-9223372036854775807", "WITHVALUES"]),
        "ERR value is out of range"
    );
    assert_eq!(
        cmd_err(&mut con, &["HRANDFIELD", "h", "-9223372036854775807"]),
        "ERR value is out of range"
    );
    // Large positive counts are bounded by the hash size.
    assert_eq!(
        cmd::<Vec<String>>(&mut con, &["HRANDFIELD", "h", "9223372036854775807"]).len(),
        10
    );
    assert_eq!(
        cmd_err(&mut con, &["HRANDFIELD", "h", "x"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        cmd_err(&mut con, &["HRANDFIELD", "h", "1", "bogus"]),
        "ERR syntax error"
    );
    assert_eq!(
        cmd_err(&mut con, &["HRANDFIELD", "h", "1", "withvalues", "x"]),
        "ERR syntax error"
    );
    node.shutdown();
}

#[test]
fn resp3_replies_are_maps_and_pairs() {
    let node = start();
    let mut con = client(&node);
    cmd::<i64>(&mut con, &["HSET", "h", "a", "1"]);
    let out = raw(
        &node,
        b"HELLO 3\r\nHGETALL h\r\nHGETALL missing\r\nHGET h nope\r\nHRANDFIELD h -2 WITHVALUES\r\nHRANDFIELD missing\r\nHINCRBYFLOAT h a 0.5\r\nPING\r\n",
        usize::MAX,
    );
    let text = String::from_utf8_lossy(&out);
    let after_hello = text
        .find("%1\r\n$1\r\na\r\n$1\r\n1\r\n")
        .unwrap_or_else(|| panic!("no map reply in {text:?}"));
    assert_eq!(
        &text[after_hello..],
        "%1\r\n$1\r\na\r\n$1\r\n1\r\n%0\r\n_\r\n*2\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n_\r\n$3\r\n1.5\r\n+PONG\r\n"
    );
    node.shutdown();
}

#[test]
fn memory_returns_to_its_start_after_a_big_hash_goes() {
    let node = start();
    let mut con = client(&node);
    let start_mem = used_memory(&mut con);
    let value = "x".repeat(100);
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        pipe.cmd("HSET")
            .arg("big")
            .arg(format!("field:{i}"))
            .arg(&value)
            .ignore();
    }
    pipe.query::<()>(&mut con).expect("pipeline");
    let full = used_memory(&mut con);
    assert!(full >= start_mem + 5000 * 100, "{start_mem} -> {full}");
    // Overwrites and increments change the charge exactly.
    cmd::<i64>(&mut con, &["HSET", "big", "field:0", "short"]);
    cmd::<i64>(&mut con, &["HINCRBY", "big", "counter", "12345"]);
    cmd::<String>(&mut con, &["HINCRBYFLOAT", "big", "counter", "0.5"]);
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        pipe.cmd("HDEL").arg("big").arg(format!("field:{i}")).ignore();
    }
    pipe.cmd("HDEL").arg("big").arg("counter").ignore();
    pipe.query::<()>(&mut con).expect("pipeline");
    assert_eq!(cmd::<i64>(&mut con, &["HLEN", "big"]), 0);
    assert_eq!(used_memory(&mut con), start_mem);

    // And through FLUSHALL.
    for i in 0..100 {
        cmd::<i64>(&mut con, &["HSET", &format!("h{i}"), "f", &value]);
    }
    assert!(used_memory(&mut con) > start_mem);
    cmd::<()>(&mut con, &["FLUSHALL"]);
    assert_eq!(used_memory(&mut con), start_mem);
    node.shutdown();
}

#[test]
fn increments_from_two_clients_accumulate() {
    let node = start();
    let mut a = client(&node);
    let mut b = client(&node);
    for i in 0..100 {
        let con = if i % 2 == 0 { &mut a } else { &mut b };
        cmd::<i64>(con, &["HINCRBY", "shared", "n", "1"]);
    }
    assert_eq!(cmd::<String>(&mut a, &["HGET", "shared", "n"]), "100");
    node.shutdown();
}
