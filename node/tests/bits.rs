//! Bitmaps, LCS and HyperLogLog with a real client, for what the differential test
//! cannot reach: offsets at the string size limit, memory accounting after a bitmap
//! grows, the OOM refusal, TTLs kept by in-place writes, and the error bound of
//! PFCOUNT over a million distinct elements.

mod common;

use common::*;

const BAD_OFFSET: &str = "ERR bit offset is not an integer or out of range";

#[test]
fn offsets_stop_at_the_string_size_limit() {
    // A 1 MiB limit stands for Redis' 512 MB: the last addressable bit is 8 Mi - 1.
    let limit = 1024 * 1024u64;
    let node = start_with(|c| c.proto_max_bulk_len = limit);
    let mut con = client(&node);
    let last = (limit * 8 - 1).to_string();
    let past = (limit * 8).to_string();
    assert_eq!(cmd::<i64>(&mut con, &["SETBIT", "k", &last, "1"]), 0);
    assert_eq!(cmd::<i64>(&mut con, &["STRLEN", "k"]), limit as i64);
    assert_eq!(cmd::<i64>(&mut con, &["GETBIT", "k", &last]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["BITCOUNT", "k"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["BITPOS", "k", "1"]), (limit * 8 - 1) as i64);
    assert_eq!(cmd_err(&mut con, &["SETBIT", "k", &past, "1"]), BAD_OFFSET);
    assert_eq!(cmd_err(&mut con, &["GETBIT", "k", &past]), BAD_OFFSET);
    assert_eq!(cmd_err(&mut con, &["BITFIELD", "k", "GET", "u8", &past]), BAD_OFFSET);
    // `#n` offsets count in the field's width.
    let hashed = format!("#{}", limit);
    assert_eq!(
        cmd_err(&mut con, &["BITFIELD", "k", "SET", "u8", &hashed, "1"]),
        BAD_OFFSET
    );
    assert_eq!(cmd::<i64>(&mut con, &["STRLEN", "k"]), limit as i64, "nothing written");
    // LCS refuses a table larger than the limit.
    let a = "a".repeat(600);
    assert_eq!(cmd::<String>(&mut con, &["MSET", "x", &a, "y", &a]), "OK");
    for lcs in [&["LCS", "x", "y"][..], &["LCS", "x", "y", "LEN"]] {
        assert_eq!(
            cmd_err(&mut con, lcs),
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len"
        );
    }
}

#[test]
fn the_default_limit_is_512_mb() {
    let node = start();
    let mut con = client(&node);
    assert_eq!(cmd_err(&mut con, &["SETBIT", "k", "4294967296", "1"]), BAD_OFFSET);
    assert_eq!(cmd_err(&mut con, &["SETBIT", "k", "-1", "1"]), BAD_OFFSET);
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "k"]), 0);
    let past = format!("#{}", 4294967296u64 / 64);
    assert_eq!(cmd_err(&mut con, &["BITFIELD", "k", "GET", "i64", &past]), BAD_OFFSET);
}

#[test]
fn a_grown_bitmap_is_charged_like_the_same_string_and_freed_on_delete() {
    let node = start();
    let mut con = client(&node);
    let start_mem = used_memory(&mut con);
    // 100 000 bytes, grown in three steps.
    for offset in ["7", "400000", "799999"] {
        assert_eq!(cmd::<i64>(&mut con, &["SETBIT", "bk", offset, "1"]), 0);
    }
    assert_eq!(cmd::<i64>(&mut con, &["STRLEN", "bk"]), 100_000);
    // Writes inside the string change it in place.
    assert_eq!(cmd::<i64>(&mut con, &["SETBIT", "bk", "8", "1"]), 0);
    assert_eq!(cmd::<i64>(&mut con, &["SETBIT", "bk", "7", "0"]), 1);
    assert_eq!(
        cmd::<Vec<i64>>(
            &mut con,
            &["BITFIELD", "bk", "SET", "u16", "#10", "65535", "GET", "u8", "#20"]
        ),
        vec![0, 255]
    );
    assert_eq!(cmd::<i64>(&mut con, &["BITCOUNT", "bk"]), 1 + 1 + 1 + 16);
    let grown = used_memory(&mut con) - start_mem;
    let value: Vec<u8> = cmd(&mut con, &["GET", "bk"]);
    assert_eq!(cmd::<i64>(&mut con, &["DEL", "bk"]), 1);
    assert_eq!(used_memory(&mut con), start_mem);
    // The same bytes written by SET under a key of the same length cost the same.
    let mut set = redis::cmd("SET");
    set.arg("sk").arg(&value);
    let _: () = set.query(&mut con).expect("SET");
    assert_eq!(used_memory(&mut con) - start_mem, grown);
    assert_eq!(cmd::<i64>(&mut con, &["DEL", "sk"]), 1);
    // BITFIELD and BITOP results too.
    assert_eq!(
        cmd::<Vec<i64>>(&mut con, &["BITFIELD", "bf", "SET", "u8", "#99999", "255"]),
        vec![0]
    );
    assert_eq!(cmd::<i64>(&mut con, &["BITOP", "NOT", "bo", "bf"]), 100_000);
    assert!(used_memory(&mut con) - start_mem >= 2 * 100_000);
    assert_eq!(cmd::<i64>(&mut con, &["DEL", "bf", "bo"]), 2);
    assert_eq!(used_memory(&mut con), start_mem);
}

#[test]
fn writes_past_maxmemory_are_refused_under_noeviction() {
    let node = start_with(|c| {
        c.maxmemory = Some(2 * 1024 * 1024);
        c.maxmemory_policy = ringcache_node::store::Policy::NoEviction;
    });
    let mut con = client(&node);
    // 3 MiB of bitmap in 512 KiB steps: the step after the limit is passed is refused.
    let mut refused = None;
    for step in 1..=6u64 {
        let offset = (step * 512 * 1024 * 8 - 1).to_string();
        let mut c = redis::cmd("SETBIT");
        c.arg("big").arg(&offset).arg(1);
        if let Err(e) = c.query::<i64>(&mut con) {
            refused = Some((step, e.to_string()));
            break;
        }
    }
    let (step, err) = refused.expect("a write past maxmemory is refused");
    assert!(step >= 4, "refused too early, at step {step}");
    assert!(err.contains("OOM"), "{err}");
    assert!(cmd_err(&mut con, &["PFADD", "h", "a"]).starts_with("OOM"));
    // Reads still work.
    assert_eq!(cmd::<i64>(&mut con, &["BITCOUNT", "big"]), (step - 1) as i64);
}

#[test]
fn bit_and_sketch_writes_keep_the_ttl() {
    let node = start();
    let mut con = client(&node);
    for (key, write) in [
        ("s", vec!["SETBIT", "s", "100", "1"]),
        ("f", vec!["BITFIELD", "f", "INCRBY", "u8", "#20", "5"]),
        ("h", vec!["PFADD", "h", "x", "y"]),
    ] {
        if key == "h" {
            assert_eq!(cmd::<i64>(&mut con, &["PFADD", "h", "a"]), 1);
        } else {
            assert_eq!(cmd::<String>(&mut con, &["SET", key, "HYLL"]), "OK");
        }
        assert_eq!(cmd::<i64>(&mut con, &["EXPIRE", key, "1000"]), 1);
        let _: redis::Value = cmd(&mut con, &write);
        let ttl: i64 = cmd(&mut con, &["TTL", key]);
        assert!((990..=1000).contains(&ttl), "{write:?} left TTL {ttl}");
    }
    // PFCOUNT stores the cardinality in the sketch and keeps the TTL too.
    assert_eq!(cmd::<i64>(&mut con, &["PFCOUNT", "h"]), 3);
    assert!(cmd::<i64>(&mut con, &["TTL", "h"]) > 990);
    // BITOP's destination is a new value: no TTL, as after SET.
    assert_eq!(cmd::<i64>(&mut con, &["BITOP", "OR", "s", "s", "f"]), 21);
    assert_eq!(cmd::<i64>(&mut con, &["TTL", "s"]), -1);
}

#[test]
fn sketches_are_strings_that_copy_and_reject_what_is_not_one() {
    let node = start();
    let mut con = client(&node);
    assert_eq!(cmd::<i64>(&mut con, &["PFADD", "h", "a", "b", "c"]), 1);
    assert_eq!(cmd::<i64>(&mut con, &["PFADD", "h", "a"]), 0);
    assert_eq!(cmd::<String>(&mut con, &["TYPE", "h"]), "string");
    let bytes: Vec<u8> = cmd(&mut con, &["GET", "h"]);
    assert_eq!(&bytes[..4], b"HYLL");
    let mut set = redis::cmd("SET");
    set.arg("copy").arg(&bytes);
    let _: () = set.query(&mut con).expect("SET");
    assert_eq!(cmd::<i64>(&mut con, &["PFCOUNT", "copy"]), 3);
    assert_eq!(cmd::<String>(&mut con, &["SET", "plain", "not a sketch at all"]), "OK");
    let not_hll = "WRONGTYPE Key is not a valid HyperLogLog string value.";
    assert_eq!(cmd_err(&mut con, &["PFADD", "plain", "a"]), not_hll);
    assert_eq!(cmd_err(&mut con, &["PFCOUNT", "plain"]), not_hll);
    assert_eq!(cmd_err(&mut con, &["PFCOUNT", "h", "plain"]), not_hll);
    assert_eq!(cmd_err(&mut con, &["PFMERGE", "h", "plain"]), not_hll);
    assert_eq!(cmd::<i64>(&mut con, &["HSET", "hash", "f", "v"]), 1);
    assert!(cmd_err(&mut con, &["PFCOUNT", "hash"]).starts_with("WRONGTYPE Operation against a key"));
}

/// Distinct elements in batches of 1000, pipelined.
fn add_range(con: &mut redis::Connection, key: &str, from: u64, to: u64) {
    let mut pipe = redis::pipe();
    for start in (from..to).step_by(1000) {
        let mut c = redis::cmd("PFADD");
        c.arg(key);
        for i in start..(start + 1000).min(to) {
            c.arg(format!("element:{i}"));
        }
        pipe.add_command(c).ignore();
    }
    let _: () = pipe.query(con).expect("PFADD batches");
}

fn within_bound(estimate: i64, truth: f64) {
    // Redis documents a standard error of 0.81 %; allow three of them.
    let error = (estimate as f64 - truth).abs() / truth;
    assert!(
        error <= 3.0 * 0.0081,
        "estimate {estimate} for {truth}: error {:.3} %",
        error * 100.0
    );
}

#[test]
fn pfcount_of_a_million_distinct_elements_is_within_three_standard_errors() {
    let node = start();
    let mut con = client(&node);
    add_range(&mut con, "low", 0, 600_000);
    add_range(&mut con, "high", 400_000, 1_000_000);
    within_bound(cmd(&mut con, &["PFCOUNT", "low"]), 600_000.0);
    // The union of two overlapping sketches, counted and merged.
    within_bound(cmd(&mut con, &["PFCOUNT", "low", "high"]), 1_000_000.0);
    assert_eq!(cmd::<String>(&mut con, &["PFMERGE", "all", "low", "high"]), "OK");
    let merged: i64 = cmd(&mut con, &["PFCOUNT", "all"]);
    within_bound(merged, 1_000_000.0);
    assert_eq!(merged, cmd::<i64>(&mut con, &["PFCOUNT", "low", "high"]));
    // A dense sketch is 12304 bytes.
    assert_eq!(cmd::<i64>(&mut con, &["STRLEN", "all"]), 12304);
}
