//! String commands against a real client: values, options, TTL handling, error
//! strings and atomic multi-key writes.

mod common;

use std::thread::sleep;
use std::time::Duration;

use common::*;

const NOT_INT: &str = "ERR value is not an integer or out of range";
const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

fn pttl(con: &mut redis::Connection, key: &str) -> i64 {
    cmd(con, &["PTTL", key])
}

#[test]
fn setex_psetex_setnx_getset() {
    let node = start();
    let mut con = client(&node);
    assert_eq!(cmd::<String>(&mut con, &["SETEX", "a", "100", "v"]), "OK");
    assert_eq!(cmd::<String>(&mut con, &["GET", "a"]), "v");
    let t = pttl(&mut con, "a");
    assert!(t > 99_000 && t <= 100_000, "{t}");
    assert_eq!(cmd::<String>(&mut con, &["PSETEX", "b", "100000", "w"]), "OK");
    let t = pttl(&mut con, "b");
    assert!(t > 99_000 && t <= 100_000, "{t}");
    for bad in ["0", "-5"] {
        assert_eq!(
            cmd_err(&mut con, &["SETEX", "a", bad, "v"]),
            "ERR invalid expire time in 'setex' command"
        );
        assert_eq!(
            cmd_err(&mut con, &["PSETEX", "a", bad, "v"]),
            "ERR invalid expire time in 'psetex' command"
        );
    }
    assert_eq!(
        cmd_err(&mut con, &["SETEX", "a", "9223372036854775", "v"]),
        "ERR invalid expire time in 'setex' command"
    );
    assert_eq!(cmd_err(&mut con, &["SETEX", "a", "x", "v"]), NOT_INT);
    assert_eq!(
        cmd_err(&mut con, &["SETEX", "a", "1"]),
        "ERR wrong number of arguments for 'setex' command"
    );

    assert_eq!(cmd::<i64>(&mut con, &["SETNX", "n", "1"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["SETNX", "n", "2"]), 0);
    assert_eq!(cmd::<String>(&mut con, &["GET", "n"]), "1");

    // GETSET returns the old value and drops the TTL.
    assert_eq!(
        cmd::<Option<String>>(&mut con, &["GETSET", "a", "new"]),
        Some("v".into())
    );
    assert_eq!(pttl(&mut con, "a"), -1);
    assert_eq!(cmd::<Option<String>>(&mut con, &["GETSET", "fresh", "x"]), None);
    assert_eq!(cmd::<String>(&mut con, &["GET", "fresh"]), "x");
    node.shutdown();
}

#[test]
fn getdel_and_getex() {
    let node = start();
    let mut con = client(&node);
    cmd::<()>(&mut con, &["SET", "k", "v"]);
    assert_eq!(cmd::<Option<String>>(&mut con, &["GETDEL", "k"]), Some("v".into()));
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "k"]), 0);
    assert_eq!(cmd::<Option<String>>(&mut con, &["GETDEL", "k"]), None);

    cmd::<()>(&mut con, &["SET", "k", "v"]);
    assert_eq!(cmd::<String>(&mut con, &["GETEX", "k"]), "v");
    assert_eq!(pttl(&mut con, "k"), -1);
    assert_eq!(cmd::<String>(&mut con, &["GETEX", "k", "EX", "100"]), "v");
    assert!(pttl(&mut con, "k") > 99_000);
    assert_eq!(cmd::<String>(&mut con, &["GETEX", "k", "PX", "50000"]), "v");
    let t = pttl(&mut con, "k");
    assert!(t > 49_000 && t <= 50_000, "{t}");
    assert_eq!(cmd::<String>(&mut con, &["GETEX", "k", "PERSIST"]), "v");
    assert_eq!(pttl(&mut con, "k"), -1);
    let at = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 1000)
        .to_string();
    assert_eq!(cmd::<String>(&mut con, &["GETEX", "k", "EXAT", &at]), "v");
    let t = cmd::<i64>(&mut con, &["TTL", "k"]);
    assert!((998..=1000).contains(&t), "{t}");
    // An absolute time in the past deletes the key after returning it.
    assert_eq!(cmd::<String>(&mut con, &["GETEX", "k", "PXAT", "1"]), "v");
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "k"]), 0);
    assert_eq!(cmd::<Option<String>>(&mut con, &["GETEX", "k", "EX", "10"]), None);

    cmd::<()>(&mut con, &["SET", "k", "v"]);
    assert_eq!(
        cmd_err(&mut con, &["GETEX", "k", "EX", "10", "PX", "10"]),
        "ERR syntax error"
    );
    assert_eq!(
        cmd_err(&mut con, &["GETEX", "k", "PERSIST", "EX", "10"]),
        "ERR syntax error"
    );
    assert_eq!(cmd_err(&mut con, &["GETEX", "k", "EX"]), "ERR syntax error");
    assert_eq!(cmd_err(&mut con, &["GETEX", "k", "KEEPTTL"]), "ERR syntax error");
    assert_eq!(
        cmd_err(&mut con, &["GETEX", "k", "EX", "0"]),
        "ERR invalid expire time in 'getex' command"
    );
    assert_eq!(cmd_err(&mut con, &["GETEX", "k", "EX", "x"]), NOT_INT);
    assert_eq!(pttl(&mut con, "k"), -1);
    node.shutdown();
}

#[test]
fn ttl_options_really_expire() {
    let node = start();
    let mut con = client(&node);
    cmd::<()>(&mut con, &["PSETEX", "a", "80", "1"]);
    cmd::<()>(&mut con, &["SET", "b", "1", "PX", "80"]);
    cmd::<()>(&mut con, &["SET", "c", "1"]);
    cmd::<String>(&mut con, &["GETEX", "c", "PX", "80"]);
    cmd::<()>(&mut con, &["SET", "d", "1", "PX", "80"]);
    // Writes that keep the TTL in Redis keep it here too.
    assert_eq!(cmd::<i64>(&mut con, &["INCR", "d"]), 2);
    assert!(pttl(&mut con, "d") > 0);
    sleep(Duration::from_millis(200));
    for k in ["a", "b", "c", "d"] {
        assert_eq!(cmd::<Option<String>>(&mut con, &["GET", k]), None, "{k}");
        assert_eq!(pttl(&mut con, k), -2, "{k}");
    }
    // An expired key behaves as missing for every command.
    cmd::<()>(&mut con, &["SET", "e", "5", "PX", "50"]);
    sleep(Duration::from_millis(120));
    assert_eq!(cmd::<i64>(&mut con, &["INCR", "e"]), 1);
    assert_eq!(pttl(&mut con, "e"), -1);
    cmd::<()>(&mut con, &["SET", "f", "abc", "PX", "50"]);
    sleep(Duration::from_millis(120));
    assert_eq!(cmd::<i64>(&mut con, &["APPEND", "f", "x"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["SETNX", "f", "y"]), 0);
    cmd::<()>(&mut con, &["SET", "g", "abc", "PX", "50"]);
    sleep(Duration::from_millis(120));
    assert_eq!(cmd::<i64>(&mut con, &["SETNX", "g", "y"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["MSETNX", "g2", "1", "h", "2"]), 1);
    node.shutdown();
}

#[test]
fn mget_mset_msetnx() {
    let node = start();
    let mut con = client(&node);
    assert_eq!(cmd::<String>(&mut con, &["MSET", "a", "1", "b", "2", "c", "3"]), "OK");
    cmd::<()>(&mut con, &["HSET", "h", "f", "v"]);
    let v: Vec<Option<String>> = cmd(&mut con, &["MGET", "a", "b", "missing", "h", "c"]);
    assert_eq!(
        v,
        vec![Some("1".into()), Some("2".into()), None, None, Some("3".into())]
    );
    assert_eq!(
        cmd_err(&mut con, &["MSET", "a", "1", "b"]),
        "ERR wrong number of arguments for 'mset' command"
    );
    assert_eq!(
        cmd_err(&mut con, &["MSET", "a"]),
        "ERR wrong number of arguments for 'mset' command"
    );
    // Later pairs win; MSET drops TTLs.
    cmd::<()>(&mut con, &["SET", "t", "x", "EX", "100"]);
    cmd::<()>(&mut con, &["MSET", "t", "1", "t", "2"]);
    assert_eq!(cmd::<String>(&mut con, &["GET", "t"]), "2");
    assert_eq!(pttl(&mut con, "t"), -1);

    // MSETNX is all or nothing.
    assert_eq!(cmd::<i64>(&mut con, &["MSETNX", "x", "1", "y", "2", "a", "9"]), 0);
    let v: Vec<Option<String>> = cmd(&mut con, &["MGET", "x", "y", "a"]);
    assert_eq!(v, vec![None, None, Some("1".into())]);
    assert_eq!(cmd::<i64>(&mut con, &["MSETNX", "x", "1", "y", "2"]), 1);
    let v: Vec<Option<String>> = cmd(&mut con, &["MGET", "x", "y"]);
    assert_eq!(v, vec![Some("1".into()), Some("2".into())]);
    assert_eq!(
        cmd_err(&mut con, &["MSETNX", "x", "1", "y"]),
        "ERR wrong number of arguments for 'msetnx' command"
    );
    // A key of another type also blocks MSETNX.
    assert_eq!(cmd::<i64>(&mut con, &["MSETNX", "z", "1", "h", "2"]), 0);
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "z"]), 0);
    node.shutdown();
}

#[test]
fn mset_is_atomic_under_concurrent_readers() {
    let node = start();
    let mut writer = client(&node);
    let keys: Vec<String> = (0..20).map(|i| format!("atom:{i}")).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let mut con = client(&node);
        let keys = keys.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut checks = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // MGET reads all keys at once and MSET writes them at once: a
                // reader sees no keys or one whole generation.
                let mut args: Vec<&str> = vec!["MGET"];
                args.extend(keys.iter().map(String::as_str));
                let v: Vec<Option<String>> = cmd(&mut con, &args);
                let present = v.iter().filter(|x| x.is_some()).count();
                assert!(present == 0 || present == keys.len(), "partial MSET visible: {present}");
                if present > 0 {
                    let first = v[0].clone();
                    assert!(v.iter().all(|x| *x == first), "mixed generations: {v:?}");
                }
                checks += 1;
            }
            checks
        })
    };
    for round in 0..200 {
        let val = round.to_string();
        let mut args: Vec<&str> = vec!["MSET"];
        for k in &keys {
            args.push(k);
            args.push(&val);
        }
        cmd::<()>(&mut writer, &args);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let checks = reader.join().expect("reader");
    assert!(checks > 0);
    node.shutdown();
}

#[test]
fn append_strlen_getrange_setrange() {
    let node = start();
    let mut con = client(&node);
    assert_eq!(cmd::<i64>(&mut con, &["APPEND", "s", "Hello"]), 5);
    assert_eq!(cmd::<i64>(&mut con, &["APPEND", "s", " World"]), 11);
    assert_eq!(cmd::<String>(&mut con, &["GET", "s"]), "Hello World");
    assert_eq!(cmd::<i64>(&mut con, &["STRLEN", "s"]), 11);
    assert_eq!(cmd::<i64>(&mut con, &["STRLEN", "missing"]), 0);

    cmd::<()>(&mut con, &["SET", "s", "This is a string"]);
    assert_eq!(cmd::<String>(&mut con, &["GETRANGE", "s", "0", "3"]), "This");
    assert_eq!(cmd::<String>(&mut con, &["GETRANGE", "s", "-3", "-1"]), "ing");
    assert_eq!(
        cmd::<String>(&mut con, &["GETRANGE", "s", "0", "-1"]),
        "This is a string"
    );
    assert_eq!(cmd::<String>(&mut con, &["GETRANGE", "s", "10", "100"]), "string");
    assert_eq!(cmd::<String>(&mut con, &["GETRANGE", "s", "5", "3"]), "");
    assert_eq!(cmd::<String>(&mut con, &["GETRANGE", "s", "-1", "-5"]), "");
    assert_eq!(cmd::<String>(&mut con, &["GETRANGE", "missing", "0", "-1"]), "");
    assert_eq!(cmd::<String>(&mut con, &["SUBSTR", "s", "0", "3"]), "This");
    assert_eq!(
        cmd::<String>(
            &mut con,
            &["GETRANGE", "s", "-9223372036854775808", "9223372036854775807"]
        ),
        "This is a string"
    );
    assert_eq!(cmd_err(&mut con, &["GETRANGE", "s", "a", "1"]), NOT_INT);

    // SETRANGE keeps the TTL, pads with zero bytes and reports the new length.
    cmd::<()>(&mut con, &["SET", "r", "Hello World", "EX", "100"]);
    assert_eq!(cmd::<i64>(&mut con, &["SETRANGE", "r", "6", "Redis"]), 11);
    assert_eq!(cmd::<String>(&mut con, &["GET", "r"]), "Hello Redis");
    assert!(pttl(&mut con, "r") > 0);
    assert_eq!(cmd::<i64>(&mut con, &["SETRANGE", "pad", "3", "ab"]), 5);
    assert_eq!(cmd::<Vec<u8>>(&mut con, &["GET", "pad"]), b"\0\0\0ab".to_vec());
    assert_eq!(cmd::<i64>(&mut con, &["SETRANGE", "empty", "10", ""]), 0);
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "empty"]), 0);
    assert_eq!(cmd::<i64>(&mut con, &["SETRANGE", "r", "100", ""]), 11);
    assert_eq!(
        cmd_err(&mut con, &["SETRANGE", "r", "-1", "x"]),
        "ERR offset is out of range"
    );
    assert_eq!(
        cmd_err(&mut con, &["SETRANGE", "r", "536870911", "xy"]),
        "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
    );
    assert_eq!(
        cmd_err(&mut con, &["SETRANGE", "r", "9223372036854775807", "x"]),
        "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
    );
    assert_eq!(cmd_err(&mut con, &["SETRANGE", "r", "x", "x"]), NOT_INT);

    // APPEND keeps the TTL.
    assert_eq!(cmd::<i64>(&mut con, &["APPEND", "r", "!"]), 12);
    assert!(pttl(&mut con, "r") > 0);
    node.shutdown();
}

#[test]
fn incr_family() {
    let node = start();
    let mut con = client(&node);
    assert_eq!(cmd::<i64>(&mut con, &["INCR", "n"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["INCRBY", "n", "10"]), 11);
    assert_eq!(cmd::<i64>(&mut con, &["DECR", "n"]), 10);
    assert_eq!(cmd::<i64>(&mut con, &["DECRBY", "n", "20"]), -10);
    assert_eq!(cmd::<i64>(&mut con, &["DECR", "fresh"]), -1);
    assert_eq!(cmd::<String>(&mut con, &["GET", "n"]), "-10");

    cmd::<()>(&mut con, &["SET", "s", "abc"]);
    assert_eq!(cmd_err(&mut con, &["INCR", "s"]), NOT_INT);
    cmd::<()>(&mut con, &["SET", "s", " 1"]);
    assert_eq!(cmd_err(&mut con, &["INCR", "s"]), NOT_INT);
    cmd::<()>(&mut con, &["SET", "s", "1.5"]);
    assert_eq!(cmd_err(&mut con, &["INCR", "s"]), NOT_INT);
    assert_eq!(cmd_err(&mut con, &["INCRBY", "n", "x"]), NOT_INT);
    assert_eq!(cmd_err(&mut con, &["INCRBY", "n", "99999999999999999999"]), NOT_INT);

    cmd::<()>(&mut con, &["SET", "big", "9223372036854775807"]);
    assert_eq!(
        cmd_err(&mut con, &["INCR", "big"]),
        "ERR increment or decrement would overflow"
    );
    assert_eq!(cmd::<String>(&mut con, &["GET", "big"]), "9223372036854775807");
    cmd::<()>(&mut con, &["SET", "small", "-9223372036854775808"]);
    assert_eq!(
        cmd_err(&mut con, &["DECR", "small"]),
        "ERR increment or decrement would overflow"
    );
    assert_eq!(
        cmd_err(&mut con, &["DECRBY", "n", "-9223372036854775808"]),
        "ERR decrement would overflow"
    );

    cmd::<()>(&mut con, &["HSET", "h", "f", "v"]);
    assert_eq!(cmd_err(&mut con, &["INCR", "h"]), WRONGTYPE);
    assert_eq!(cmd_err(&mut con, &["APPEND", "h", "x"]), WRONGTYPE);
    assert_eq!(cmd_err(&mut con, &["STRLEN", "h"]), WRONGTYPE);
    assert_eq!(cmd_err(&mut con, &["GETRANGE", "h", "0", "1"]), WRONGTYPE);
    assert_eq!(cmd_err(&mut con, &["SETRANGE", "h", "0", "x"]), WRONGTYPE);
    assert_eq!(cmd_err(&mut con, &["GETSET", "h", "x"]), WRONGTYPE);
    assert_eq!(cmd_err(&mut con, &["GETDEL", "h"]), WRONGTYPE);
    assert_eq!(cmd_err(&mut con, &["GETEX", "h"]), WRONGTYPE);
    assert_eq!(cmd_err(&mut con, &["INCRBYFLOAT", "h", "1"]), WRONGTYPE);
    // SETNX on a hash does not overwrite it.
    assert_eq!(cmd::<i64>(&mut con, &["SETNX", "h", "x"]), 0);
    node.shutdown();
}

#[test]
fn incrbyfloat() {
    let node = start();
    let mut con = client(&node);
    cmd::<()>(&mut con, &["SET", "f", "10.50"]);
    assert_eq!(cmd::<String>(&mut con, &["INCRBYFLOAT", "f", "0.1"]), "10.6");
    assert_eq!(cmd::<String>(&mut con, &["INCRBYFLOAT", "f", "-5"]), "5.6");
    cmd::<()>(&mut con, &["SET", "g", "5.0e3"]);
    assert_eq!(cmd::<String>(&mut con, &["INCRBYFLOAT", "g", "2.0e2"]), "5200");
    assert_eq!(cmd::<String>(&mut con, &["GET", "g"]), "5200");
    assert_eq!(cmd::<String>(&mut con, &["INCRBYFLOAT", "new", "3"]), "3");
    assert_eq!(
        cmd_err(&mut con, &["INCRBYFLOAT", "g", "abc"]),
        "ERR value is not a valid float"
    );
    assert_eq!(
        cmd_err(&mut con, &["INCRBYFLOAT", "g", "nan"]),
        "ERR value is not a valid float"
    );
    assert_eq!(
        cmd_err(&mut con, &["INCRBYFLOAT", "g", "inf"]),
        "ERR increment would produce NaN or Infinity"
    );
    // Redis adds in long double: twice f64's largest value is still finite there,
    // its overflow starts near 1.19e4932.
    cmd::<()>(&mut con, &["SET", "m", "1e4932"]);
    assert_eq!(
        cmd_err(&mut con, &["INCRBYFLOAT", "m", "1e4932"]),
        "ERR increment would produce NaN or Infinity"
    );
    cmd::<()>(&mut con, &["SET", "s", "text"]);
    assert_eq!(
        cmd_err(&mut con, &["INCRBYFLOAT", "s", "1"]),
        "ERR value is not a valid float"
    );
    // TTL is kept.
    cmd::<()>(&mut con, &["SET", "t", "1", "EX", "100"]);
    assert_eq!(cmd::<String>(&mut con, &["INCRBYFLOAT", "t", "1.5"]), "2.5");
    assert!(pttl(&mut con, "t") > 0);
    // RESP3 still replies with a bulk string.
    let out = raw(&node, b"HELLO 3\r\nINCRBYFLOAT r3 1.25\r\n", 4096);
    assert!(
        String::from_utf8_lossy(&out).ends_with("$4\r\n1.25\r\n"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    node.shutdown();
}
