//! Generic key commands against a real client: deletion, existence, TTLs with
//! NX/XX/GT/LT, TYPE, KEYS, SCAN completeness, RENAME and RANDOMKEY.

mod common;

use std::collections::HashSet;
use std::thread::sleep;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64
}

/// Runs a full SCAN with `opts` and returns every key, checking no key repeats.
fn scan_all(con: &mut redis::Connection, opts: &[&str]) -> (HashSet<String>, usize) {
    let mut cursor = "0".to_string();
    let mut seen = HashSet::new();
    let mut calls = 0;
    loop {
        let mut args = vec!["SCAN", cursor.as_str()];
        args.extend_from_slice(opts);
        let (next, keys): (String, Vec<String>) = cmd(con, &args);
        calls += 1;
        for k in keys {
            assert!(seen.insert(k.clone()), "{k} returned twice");
        }
        if next == "0" {
            return (seen, calls);
        }
        assert!(calls < 100_000, "SCAN does not terminate");
        cursor = next;
    }
}

#[test]
fn del_unlink_exists_touch_type() {
    let node = start();
    let mut con = client(&node);
    cmd::<()>(&mut con, &["MSET", "a", "1", "b", "2", "c", "3"]);
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "a", "a", "b", "nope"]), 3);
    assert_eq!(cmd::<i64>(&mut con, &["TOUCH", "a", "b", "nope"]), 2);
    assert_eq!(cmd::<i64>(&mut con, &["DEL", "a", "nope", "a"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["UNLINK", "b", "c"]), 2);
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "a", "b", "c"]), 0);
    assert_eq!(
        cmd_err(&mut con, &["DEL"]),
        "ERR wrong number of arguments for 'del' command"
    );

    cmd::<()>(&mut con, &["SET", "s", "v"]);
    cmd::<()>(&mut con, &["HSET", "h", "f", "v"]);
    assert_eq!(cmd::<String>(&mut con, &["TYPE", "s"]), "string");
    assert_eq!(cmd::<String>(&mut con, &["TYPE", "h"]), "hash");
    assert_eq!(cmd::<String>(&mut con, &["TYPE", "nope"]), "none");
    assert_eq!(cmd::<i64>(&mut con, &["DEL", "h"]), 1);
    assert_eq!(cmd::<String>(&mut con, &["TYPE", "h"]), "none");

    // Expired keys are missing for every command.
    cmd::<()>(&mut con, &["SET", "e", "v", "PX", "50"]);
    sleep(Duration::from_millis(120));
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "e"]), 0);
    assert_eq!(cmd::<i64>(&mut con, &["TOUCH", "e"]), 0);
    assert_eq!(cmd::<String>(&mut con, &["TYPE", "e"]), "none");
    assert_eq!(cmd::<i64>(&mut con, &["DEL", "e"]), 0);
    node.shutdown();
}

#[test]
fn expire_ttl_persist() {
    let node = start();
    let mut con = client(&node);
    assert_eq!(cmd::<i64>(&mut con, &["TTL", "k"]), -2);
    assert_eq!(cmd::<i64>(&mut con, &["PTTL", "k"]), -2);
    assert_eq!(cmd::<i64>(&mut con, &["EXPIRETIME", "k"]), -2);
    assert_eq!(cmd::<i64>(&mut con, &["EXPIRE", "k", "100"]), 0);
    cmd::<()>(&mut con, &["SET", "k", "v"]);
    assert_eq!(cmd::<i64>(&mut con, &["TTL", "k"]), -1);
    assert_eq!(cmd::<i64>(&mut con, &["PEXPIRETIME", "k"]), -1);
    assert_eq!(cmd::<i64>(&mut con, &["PERSIST", "k"]), 0);

    assert_eq!(cmd::<i64>(&mut con, &["EXPIRE", "k", "100"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["TTL", "k"]), 100);
    let t = cmd::<i64>(&mut con, &["PTTL", "k"]);
    assert!(t > 99_000 && t <= 100_000, "{t}");
    assert_eq!(cmd::<i64>(&mut con, &["PEXPIRE", "k", "50000"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["TTL", "k"]), 50);

    let at = now_ms() / 1000 + 1000;
    assert_eq!(cmd::<i64>(&mut con, &["EXPIREAT", "k", &at.to_string()]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["EXPIRETIME", "k"]), at);
    assert_eq!(cmd::<i64>(&mut con, &["PEXPIRETIME", "k"]), at * 1000);
    let pat = now_ms() + 2_000_000;
    assert_eq!(cmd::<i64>(&mut con, &["PEXPIREAT", "k", &pat.to_string()]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["PEXPIRETIME", "k"]), pat);

    assert_eq!(cmd::<i64>(&mut con, &["PERSIST", "k"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["TTL", "k"]), -1);
    assert_eq!(cmd::<i64>(&mut con, &["PERSIST", "nope"]), 0);

    // A time in the past deletes the key and returns 1.
    assert_eq!(cmd::<i64>(&mut con, &["PEXPIREAT", "k", "1000"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "k"]), 0);
    cmd::<()>(&mut con, &["SET", "k", "v"]);
    assert_eq!(cmd::<i64>(&mut con, &["EXPIRE", "k", "-1"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "k"]), 0);
    cmd::<()>(&mut con, &["SET", "k", "v"]);
    assert_eq!(cmd::<i64>(&mut con, &["EXPIRE", "k", "0"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "k"]), 0);

    // Short TTLs really expire.
    cmd::<()>(&mut con, &["SET", "k", "v"]);
    assert_eq!(cmd::<i64>(&mut con, &["PEXPIRE", "k", "80"]), 1);
    sleep(Duration::from_millis(200));
    assert_eq!(cmd::<Option<String>>(&mut con, &["GET", "k"]), None);
    assert_eq!(cmd::<i64>(&mut con, &["PTTL", "k"]), -2);
    assert_eq!(cmd::<i64>(&mut con, &["EXPIRE", "k", "100"]), 0);

    // Errors.
    cmd::<()>(&mut con, &["SET", "k", "v"]);
    assert_eq!(
        cmd_err(&mut con, &["EXPIRE", "k", "x"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        cmd_err(&mut con, &["EXPIRE", "k", "9223372036854775807"]),
        "ERR invalid expire time in 'expire' command"
    );
    assert_eq!(
        cmd_err(&mut con, &["PEXPIRE", "k", "9223372036854775807"]),
        "ERR invalid expire time in 'pexpire' command"
    );
    assert_eq!(
        cmd_err(&mut con, &["EXPIREAT", "k", "-9223372036854775808"]),
        "ERR invalid expire time in 'expireat' command"
    );
    assert_eq!(
        cmd_err(&mut con, &["EXPIRE", "k", "10", "FOO"]),
        "ERR Unsupported option FOO"
    );
    for opts in [["NX", "XX"], ["NX", "GT"], ["LT", "NX"]] {
        let mut args = vec!["EXPIRE", "k", "10"];
        args.extend_from_slice(&opts);
        assert_eq!(
            cmd_err(&mut con, &args),
            "ERR NX and XX, GT or LT options at the same time are not compatible"
        );
    }
    assert_eq!(
        cmd_err(&mut con, &["EXPIRE", "k", "10", "GT", "LT"]),
        "ERR GT and LT options at the same time are not compatible"
    );
    assert_eq!(cmd::<i64>(&mut con, &["TTL", "k"]), -1);
    node.shutdown();
}

#[test]
fn expire_nx_xx_gt_lt() {
    let node = start();
    let mut con = client(&node);
    cmd::<()>(&mut con, &["SET", "k", "v"]);
    // No TTL: XX refuses, GT refuses (no TTL is infinite), LT accepts.
    assert_eq!(cmd::<i64>(&mut con, &["EXPIRE", "k", "100", "XX"]), 0);
    assert_eq!(cmd::<i64>(&mut con, &["EXPIRE", "k", "100", "GT"]), 0);
    assert_eq!(cmd::<i64>(&mut con, &["TTL", "k"]), -1);
    assert_eq!(cmd::<i64>(&mut con, &["EXPIRE", "k", "100", "LT"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["TTL", "k"]), 100);
    cmd::<()>(&mut con, &["PERSIST", "k"]);
    assert_eq!(cmd::<i64>(&mut con, &["EXPIRE", "k", "100", "NX"]), 1);
    // With a TTL: NX refuses, XX accepts.
    assert_eq!(cmd::<i64>(&mut con, &["EXPIRE", "k", "200", "NX"]), 0);
    assert_eq!(cmd::<i64>(&mut con, &["TTL", "k"]), 100);
    assert_eq!(cmd::<i64>(&mut con, &["EXPIRE", "k", "200", "XX"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["TTL", "k"]), 200);
    // GT only extends, LT only shortens.
    assert_eq!(cmd::<i64>(&mut con, &["EXPIRE", "k", "100", "GT"]), 0);
    assert_eq!(cmd::<i64>(&mut con, &["EXPIRE", "k", "300", "GT"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["TTL", "k"]), 300);
    assert_eq!(cmd::<i64>(&mut con, &["EXPIRE", "k", "400", "LT"]), 0);
    assert_eq!(cmd::<i64>(&mut con, &["EXPIRE", "k", "150", "lt"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["TTL", "k"]), 150);
    // XX and GT combine.
    assert_eq!(cmd::<i64>(&mut con, &["EXPIRE", "k", "500", "XX", "GT"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["TTL", "k"]), 500);
    // A refused past time does not delete the key.
    assert_eq!(cmd::<i64>(&mut con, &["PEXPIREAT", "k", "1", "GT"]), 0);
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "k"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["PEXPIREAT", "k", "1", "LT"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "k"]), 0);
    node.shutdown();
}

#[test]
fn keys_glob_skips_expired() {
    let node = start();
    let mut con = client(&node);
    cmd::<()>(
        &mut con,
        &["MSET", "user:1", "a", "user:2", "b", "user:10", "c", "other", "d"],
    );
    cmd::<()>(&mut con, &["SET", "user:gone", "x", "PX", "50"]);
    let mut all: Vec<String> = cmd(&mut con, &["KEYS", "*"]);
    all.sort();
    assert_eq!(all.len(), 5);
    sleep(Duration::from_millis(120));
    let mut k: Vec<String> = cmd(&mut con, &["KEYS", "user:*"]);
    k.sort();
    assert_eq!(k, vec!["user:1", "user:10", "user:2"]);
    let mut k: Vec<String> = cmd(&mut con, &["KEYS", "user:?"]);
    k.sort();
    assert_eq!(k, vec!["user:1", "user:2"]);
    let k: Vec<String> = cmd(&mut con, &["KEYS", "user:[^1]"]);
    assert_eq!(k, vec!["user:2"]);
    let k: Vec<String> = cmd(&mut con, &["KEYS", "nomatch*"]);
    assert!(k.is_empty());
    node.shutdown();
}

#[test]
fn scan_returns_every_key_exactly_once() {
    let node = start();
    let mut con = client(&node);
    let mut expected = HashSet::new();
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        let k = format!("key:{i}");
        pipe.cmd("SET").arg(&k).arg(i).ignore();
        expected.insert(k);
    }
    pipe.query::<()>(&mut con).expect("pipeline");
    let (seen, calls) = scan_all(&mut con, &["COUNT", "100"]);
    assert_eq!(seen, expected);
    assert!((40..=60).contains(&calls), "{calls} calls for 5000 keys with COUNT 100");

    // Default COUNT, MATCH and TYPE filters.
    let (seen, _) = scan_all(&mut con, &[]);
    assert_eq!(seen.len(), 5000);
    let (seen, _) = scan_all(&mut con, &["MATCH", "key:1??", "COUNT", "1000"]);
    let want: HashSet<String> = (100..200).map(|i| format!("key:{i}")).collect();
    assert_eq!(seen, want);
    cmd::<()>(&mut con, &["HSET", "hash:1", "f", "v"]);
    let (seen, _) = scan_all(&mut con, &["TYPE", "hash", "COUNT", "500"]);
    assert_eq!(seen, HashSet::from(["hash:1".to_string()]));
    let (seen, _) = scan_all(&mut con, &["TYPE", "STRING", "COUNT", "500"]);
    assert_eq!(seen.len(), 5000);

    // Keys present for the whole scan are all returned, even with writes in between.
    let mut cursor = "0".to_string();
    let mut seen = HashSet::new();
    let mut round = 0;
    loop {
        let (next, keys): (String, Vec<String>) = cmd(&mut con, &["SCAN", &cursor, "COUNT", "100"]);
        seen.extend(keys);
        cmd::<()>(&mut con, &["SET", &format!("new:{round}"), "x"]);
        cmd::<()>(&mut con, &["DEL", &format!("key:{}", 4999 - round)]);
        round += 1;
        if next == "0" {
            break;
        }
        cursor = next;
    }
    for i in 0..(5000 - round) {
        assert!(seen.contains(&format!("key:{i}")), "key:{i} missed");
    }

    // Errors and edge cases.
    assert_eq!(cmd_err(&mut con, &["SCAN", "abc"]), "ERR invalid cursor");
    assert_eq!(cmd_err(&mut con, &["SCAN", "0", "COUNT", "0"]), "ERR syntax error");
    assert_eq!(cmd_err(&mut con, &["SCAN", "0", "COUNT", "-5"]), "ERR syntax error");
    assert_eq!(
        cmd_err(&mut con, &["SCAN", "0", "COUNT", "x"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(cmd_err(&mut con, &["SCAN", "0", "MATCH"]), "ERR syntax error");
    assert_eq!(cmd_err(&mut con, &["SCAN", "0", "BOGUS", "1"]), "ERR syntax error");
    let (next, keys): (String, Vec<String>) = cmd(&mut con, &["SCAN", "99999999999999"]);
    assert_eq!((next.as_str(), keys.len()), ("0", 0));
    let (next, keys): (String, Vec<String>) = cmd(&mut con, &["SCAN", "0", "COUNT", "9223372036854775807"]);
    assert_eq!(next, "0");
    assert_eq!(keys.len(), cmd::<usize>(&mut con, &["DBSIZE"]));
    node.shutdown();
}

#[test]
fn scan_on_empty_db_and_skips_expired() {
    let node = start();
    let mut con = client(&node);
    let (seen, calls) = scan_all(&mut con, &[]);
    assert!(seen.is_empty());
    assert_eq!(calls, 1);
    cmd::<()>(&mut con, &["SET", "live", "1"]);
    cmd::<()>(&mut con, &["SET", "dead", "1", "PX", "50"]);
    sleep(Duration::from_millis(120));
    let (seen, _) = scan_all(&mut con, &[]);
    assert_eq!(seen, HashSet::from(["live".to_string()]));
    node.shutdown();
}

#[test]
fn rename_and_renamenx() {
    let node = start();
    let mut con = client(&node);
    assert_eq!(cmd_err(&mut con, &["RENAME", "nope", "x"]), "ERR no such key");
    assert_eq!(cmd_err(&mut con, &["RENAMENX", "nope", "x"]), "ERR no such key");
    assert_eq!(cmd_err(&mut con, &["RENAME", "nope", "nope"]), "ERR no such key");

    cmd::<()>(&mut con, &["SET", "a", "1", "EX", "100"]);
    assert_eq!(cmd::<String>(&mut con, &["RENAME", "a", "b"]), "OK");
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "a"]), 0);
    assert_eq!(cmd::<String>(&mut con, &["GET", "b"]), "1");
    let t = cmd::<i64>(&mut con, &["TTL", "b"]);
    assert!((99..=100).contains(&t), "TTL kept: {t}");
    // To itself: OK, nothing changes.
    assert_eq!(cmd::<String>(&mut con, &["RENAME", "b", "b"]), "OK");
    assert_eq!(cmd::<String>(&mut con, &["GET", "b"]), "1");
    assert_eq!(cmd::<i64>(&mut con, &["RENAMENX", "b", "b"]), 0);

    // Overwrites the destination, including its TTL and type.
    cmd::<()>(&mut con, &["HSET", "h", "f1", "v1", "f2", "v2"]);
    cmd::<()>(&mut con, &["SET", "c", "3"]);
    assert_eq!(cmd::<String>(&mut con, &["RENAME", "c", "b"]), "OK");
    assert_eq!(cmd::<String>(&mut con, &["GET", "b"]), "3");
    assert_eq!(cmd::<i64>(&mut con, &["TTL", "b"]), -1);
    assert_eq!(cmd::<String>(&mut con, &["RENAME", "h", "b"]), "OK");
    assert_eq!(cmd::<String>(&mut con, &["TYPE", "b"]), "hash");
    assert_eq!(cmd::<String>(&mut con, &["HGET", "b", "f2"]), "v2");
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "h"]), 0);

    // RENAMENX refuses an existing destination and leaves both keys alone.
    cmd::<()>(&mut con, &["SET", "x", "1"]);
    cmd::<()>(&mut con, &["SET", "y", "2"]);
    assert_eq!(cmd::<i64>(&mut con, &["RENAMENX", "x", "y"]), 0);
    assert_eq!(cmd::<String>(&mut con, &["GET", "x"]), "1");
    assert_eq!(cmd::<String>(&mut con, &["GET", "y"]), "2");
    assert_eq!(cmd::<i64>(&mut con, &["RENAMENX", "x", "z"]), 1);
    assert_eq!(cmd::<Option<String>>(&mut con, &["GET", "x"]), None);
    assert_eq!(cmd::<String>(&mut con, &["GET", "z"]), "1");

    // An expired source is missing; an expired destination does not block RENAMENX.
    cmd::<()>(&mut con, &["SET", "gone", "1", "PX", "50"]);
    cmd::<()>(&mut con, &["SET", "src", "s"]);
    sleep(Duration::from_millis(120));
    assert_eq!(cmd_err(&mut con, &["RENAME", "gone", "q"]), "ERR no such key");
    assert_eq!(cmd::<i64>(&mut con, &["RENAMENX", "src", "gone"]), 1);
    assert_eq!(cmd::<String>(&mut con, &["GET", "gone"]), "s");
    node.shutdown();
}

#[test]
fn rename_is_atomic_under_concurrent_renames() {
    // Two clients bounce one key between two names (in different slots); the key
    // must never be lost or duplicated.
    let node = start();
    let mut con = client(&node);
    cmd::<()>(&mut con, &["SET", "ping", "v"]);
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let mut con = client(&node);
            std::thread::spawn(move || {
                for _ in 0..500 {
                    for (from, to) in [("ping", "pong"), ("pong", "ping")] {
                        let mut c = redis::cmd("RENAME");
                        c.arg(from).arg(to);
                        // "no such key" is expected when the other client moved it.
                        let _ = c.query::<redis::Value>(&mut con);
                    }
                }
            })
        })
        .collect();
    for _ in 0..500 {
        // EXISTS on both names is atomic too: exactly one exists at any time.
        let n: i64 = cmd(&mut con, &["EXISTS", "ping", "pong"]);
        assert_eq!(n, 1, "key lost or duplicated");
    }
    for w in workers {
        w.join().expect("worker");
    }
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "ping", "pong"]), 1);
    node.shutdown();
}

#[test]
fn randomkey() {
    let node = start();
    let mut con = client(&node);
    assert_eq!(cmd::<Option<String>>(&mut con, &["RANDOMKEY"]), None);
    cmd::<()>(&mut con, &["SET", "dead", "1", "PX", "50"]);
    sleep(Duration::from_millis(120));
    assert_eq!(cmd::<Option<String>>(&mut con, &["RANDOMKEY"]), None);
    cmd::<()>(&mut con, &["MSET", "a", "1", "b", "2", "c", "3"]);
    let mut seen = HashSet::new();
    for _ in 0..200 {
        let k: String = cmd(&mut con, &["RANDOMKEY"]);
        assert!(["a", "b", "c"].contains(&k.as_str()), "{k}");
        seen.insert(k);
    }
    assert_eq!(seen.len(), 3, "RANDOMKEY never returned some keys: {seen:?}");
    node.shutdown();
}

/// MEMORY USAGE is what `used_memory` counts for the key: adding a key of any type
/// grows `used_memory` by exactly its MEMORY USAGE, and deleting it gives that back.
#[test]
fn memory_usage_is_the_keys_share_of_used_memory() {
    let node = start();
    let mut con = client(&node);
    let writes: &[&[&str]] = &[
        &["SET", "s", "a value of some length"],
        &["SET", "n", "12345"],
        &["HSET", "h", "f1", "v1", "f2", "v2"],
        &["RPUSH", "l", "a", "b", "c"],
        &["SADD", "si", "1", "2", "3"],
        &["SADD", "ss", "x", "y"],
        &["ZADD", "z", "1", "a", "2", "b"],
        &["BF.ADD", "bf", "item"],
        &["PFADD", "hll", "a", "b"],
    ];
    for w in writes {
        let key = w[1];
        let before = used_memory(&mut con);
        let _: redis::Value = cmd(&mut con, w);
        let usage: i64 = cmd(&mut con, &["MEMORY", "USAGE", key]);
        assert_eq!(used_memory(&mut con) - before, usage as u64, "{w:?}");
        assert_eq!(cmd::<i64>(&mut con, &["MEMORY", "USAGE", key, "SAMPLES", "0"]), usage);
        let _: i64 = cmd(&mut con, &["DEL", key]);
        assert_eq!(used_memory(&mut con), before, "{w:?}");
    }
    assert_eq!(cmd::<Option<i64>>(&mut con, &["MEMORY", "USAGE", "missing"]), None);
    assert_eq!(
        cmd_err(&mut con, &["MEMORY", "USAGE", "s", "SAMPLES", "-1"]),
        "ERR syntax error"
    );
    let help: Vec<String> = cmd(&mut con, &["MEMORY", "HELP"]);
    assert!(help[0].starts_with("MEMORY <subcommand>"), "{help:?}");
    node.shutdown();
}
