//! Set commands with a real client, for what the differential test against Redis
//! (tests/against_redis.rs) cannot compare: the random picks of SPOP and SRANDMEMBER,
//! exact memory accounting through the compact and table forms, atomic multi-key
//! commands under concurrent writers, and sets carried by replication and by a slot
//! handover's read-through.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;
use ringcache_core::slot::key_slot;

fn members(con: &mut redis::Connection, key: &str) -> HashSet<String> {
    cmd(con, &["SMEMBERS", key])
}

fn strings(items: &[&str]) -> HashSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// SADD of `items` in one command.
fn sadd(con: &mut redis::Connection, key: &str, items: impl IntoIterator<Item = String>) -> i64 {
    redis::cmd("SADD")
        .arg(key)
        .arg(items.into_iter().collect::<Vec<_>>())
        .query(con)
        .expect("sadd")
}

#[test]
fn srandmember_picks_distinct_members_for_a_positive_count_and_repeats_for_a_negative_one() {
    let node = start();
    let mut con = client(&node);
    // The same checks on the compact form (integers) and the table form.
    let forms = [
        ("ints", (0..10).map(|i| (100 + i).to_string()).collect::<Vec<_>>()),
        ("words", (0..10).map(|i| format!("w{i}")).collect()),
    ];
    for (key, all) in forms {
        let all_set: HashSet<String> = all.iter().cloned().collect();
        assert_eq!(sadd(&mut con, key, all.clone()), 10);
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let picked: Vec<String> = cmd(&mut con, &["SRANDMEMBER", key, "4"]);
            assert_eq!(picked.len(), 4);
            let distinct: HashSet<String> = picked.iter().cloned().collect();
            assert_eq!(distinct.len(), 4, "{picked:?} repeats a member");
            assert!(distinct.is_subset(&all_set), "{picked:?}");
            seen.extend(distinct);
        }
        assert_eq!(seen, all_set, "every member eventually comes up");

        let repeated: Vec<String> = cmd(&mut con, &["SRANDMEMBER", key, "-50"]);
        assert_eq!(repeated.len(), 50);
        assert!(repeated.iter().all(|m| all_set.contains(m)));
        let distinct: HashSet<&String> = repeated.iter().collect();
        assert!(distinct.len() < 50, "50 picks out of 10 members repeat some");

        let whole: Vec<String> = cmd(&mut con, &["SRANDMEMBER", key, "11"]);
        assert_eq!(whole.iter().cloned().collect::<HashSet<_>>(), all_set);
        assert_eq!(whole.len(), 10);

        // One member at a time: roughly uniform (each of 10 expected 300 times in
        // 3000 draws; a count outside 180..420 is 7 standard deviations out).
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut pipe = redis::pipe();
        for _ in 0..3000 {
            pipe.cmd("SRANDMEMBER").arg(key);
        }
        let draws: Vec<String> = pipe.query(&mut con).expect("draws");
        for d in draws {
            *counts.entry(d).or_default() += 1;
        }
        assert_eq!(counts.len(), 10, "{counts:?}");
        assert!(counts.values().all(|&c| (180..420).contains(&c)), "{counts:?}");
        assert_eq!(cmd::<i64>(&mut con, &["SCARD", key]), 10, "SRANDMEMBER removes nothing");
    }
    // A negative count's repeats are bounded (Redis has no bound).
    assert_eq!(
        cmd_err(&mut con, &["SRANDMEMBER", "ints", "-2000000"]),
        "ERR value is out of range"
    );
    assert!(cmd::<Vec<String>>(&mut con, &["SRANDMEMBER", "missing", "-2000000"]).is_empty());
    node.shutdown();
}

#[test]
fn spop_removes_what_it_returns_and_empties_the_key_at_the_end() {
    let node = start();
    let mut con = client(&node);
    for (key, all) in [
        ("ints", (0..20).map(|i| i.to_string()).collect::<Vec<_>>()),
        ("words", (0..20).map(|i| format!("m{i}")).collect()),
    ] {
        let mut left: HashSet<String> = all.iter().cloned().collect();
        sadd(&mut con, key, all);
        let popped: Vec<String> = cmd(&mut con, &["SPOP", key, "5"]);
        assert_eq!(popped.len(), 5);
        for m in &popped {
            assert!(left.remove(m), "{m} popped twice or never there");
        }
        assert_eq!(members(&mut con, key), left);
        let one: String = cmd(&mut con, &["SPOP", key]);
        assert!(left.remove(&one));
        assert_eq!(members(&mut con, key), left);
        // Nearly all of what is left (Redis builds the remainder instead here).
        let most: Vec<String> = cmd(&mut con, &["SPOP", key, "12"]);
        for m in &most {
            assert!(left.remove(m));
        }
        assert_eq!(members(&mut con, key), left);
        assert_eq!(left.len(), 2);
        let rest: Vec<String> = cmd(&mut con, &["SPOP", key, "9"]);
        assert_eq!(rest.into_iter().collect::<HashSet<_>>(), left);
        assert_eq!(cmd::<i64>(&mut con, &["EXISTS", key]), 0);
        assert_eq!(cmd::<Option<String>>(&mut con, &["SPOP", key]), None);
    }
    // Single pops until the set is gone, every member once.
    sadd(&mut con, "s", (0..50).map(|i| format!("p{i}")));
    let mut got = HashSet::new();
    while let Some(m) = cmd::<Option<String>>(&mut con, &["SPOP", "s"]) {
        assert!(got.insert(m));
    }
    assert_eq!(got.len(), 50);
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "s"]), 0);
    node.shutdown();
}

#[test]
fn memory_returns_to_its_start_after_sets_go() {
    let node = start();
    let mut con = client(&node);
    let start_mem = used_memory(&mut con);
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        pipe.cmd("SADD").arg("big").arg(format!("member:{i}")).ignore();
    }
    pipe.query::<()>(&mut con).expect("pipeline");
    let full = used_memory(&mut con);
    assert!(full >= start_mem + 5000 * 11, "{start_mem} -> {full}");
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        pipe.cmd("SREM").arg("big").arg(format!("member:{i}")).ignore();
    }
    pipe.query::<()>(&mut con).expect("pipeline");
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "big"]), 0);
    assert_eq!(used_memory(&mut con), start_mem);

    // SPOP, SMOVE and the STORE forms account exactly too.
    sadd(&mut con, "{t}a", (0..300).map(|i| format!("a{i}")));
    sadd(&mut con, "{t}b", (0..300).map(|i| i.to_string()));
    cmd::<i64>(&mut con, &["SUNIONSTORE", "{t}u", "{t}a", "{t}b"]);
    cmd::<i64>(&mut con, &["SINTERSTORE", "{t}i", "{t}a", "{t}u"]);
    cmd::<i64>(&mut con, &["SDIFFSTORE", "{t}d", "{t}u", "{t}a"]);
    cmd::<Vec<String>>(&mut con, &["SPOP", "{t}u", "100"]);
    cmd::<i64>(&mut con, &["SMOVE", "{t}a", "{t}b", "a7"]);
    cmd::<()>(&mut con, &["SET", "str", "value"]);
    cmd::<i64>(&mut con, &["SUNIONSTORE", "str", "{t}b"]);
    assert!(used_memory(&mut con) > start_mem);
    cmd::<i64>(&mut con, &["DEL", "{t}a", "{t}b", "{t}u", "{t}i", "{t}d", "str"]);
    assert_eq!(used_memory(&mut con), start_mem);
    node.shutdown();
}

#[test]
fn a_small_integer_set_costs_close_to_its_payload_and_converts_back_exactly() {
    let node = start();
    let mut con = client(&node);
    let start_mem = used_memory(&mut con);
    // A feed of 100 ids of 7 digits: 700 bytes as text, 800 as 64-bit integers.
    let ids: Vec<String> = (0..100).map(|i| (4_000_000 + 37 * i).to_string()).collect();
    sadd(&mut con, "feed", ids.clone());
    let compact = used_memory(&mut con) - start_mem;
    assert!(compact <= 800 + 250, "100 integer ids cost {compact} bytes");

    // A non-integer member turns it into a table; removing it turns it back.
    sadd(&mut con, "feed", ["latest".to_string()]);
    let table = used_memory(&mut con) - start_mem;
    assert!(table > compact + 100 * 20, "table form {table}, compact {compact}");
    cmd::<i64>(&mut con, &["SREM", "feed", "latest"]);
    assert_eq!(used_memory(&mut con) - start_mem, compact);

    // More than 512 integers make a table too; back under half of that, compact.
    sadd(&mut con, "feed", (0..500).map(|i| i.to_string()));
    assert!(used_memory(&mut con) - start_mem > table);
    redis::cmd("SREM")
        .arg("feed")
        .arg((0..500).map(|i| i.to_string()).collect::<Vec<_>>())
        .query::<i64>(&mut con)
        .expect("srem");
    assert_eq!(used_memory(&mut con) - start_mem, compact);
    assert_eq!(members(&mut con, "feed"), ids.into_iter().collect());
    node.shutdown();
}

#[test]
fn multi_key_commands_see_no_half_done_smove() {
    let node = start();
    let mut setup = client(&node);
    // Keys in different slots (and shards): SMOVE locks both.
    let all: HashSet<String> = (0..20).map(|i| format!("m{i}")).collect();
    sadd(&mut setup, "left", all.iter().cloned());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let movers: Vec<_> = (0..2)
        .map(|t| {
            let mut con = client(&node);
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (from, to) = if t == 0 { ("left", "right") } else { ("right", "left") };
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    cmd::<i64>(&mut con, &["SMOVE", from, to, &format!("m{}", i % 20)]);
                    i += 1;
                }
            })
        })
        .collect();
    for _ in 0..500 {
        let union: HashSet<String> = cmd(&mut setup, &["SUNION", "left", "right"]);
        assert_eq!(union, all);
        let both: i64 = cmd(&mut setup, &["SINTERCARD", "2", "left", "right"]);
        assert_eq!(both, 0, "a member in both sets");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for m in movers {
        m.join().expect("mover");
    }
    node.shutdown();
}

#[test]
fn store_forms_replace_any_type_and_drop_the_ttl() {
    let node = start();
    let mut con = client(&node);
    sadd(&mut con, "{k}a", ["1", "2", "x"].map(String::from));
    sadd(&mut con, "{k}b", ["2", "x", "y"].map(String::from));
    cmd::<()>(&mut con, &["SET", "{k}dst", "string", "EX", "100"]);
    assert_eq!(cmd::<i64>(&mut con, &["SINTERSTORE", "{k}dst", "{k}a", "{k}b"]), 2);
    assert_eq!(cmd::<String>(&mut con, &["TYPE", "{k}dst"]), "set");
    assert_eq!(cmd::<i64>(&mut con, &["TTL", "{k}dst"]), -1);
    assert_eq!(members(&mut con, "{k}dst"), strings(&["2", "x"]));
    cmd::<i64>(&mut con, &["DEL", "{k}dst"]);
    cmd::<i64>(&mut con, &["HSET", "{k}dst", "f", "v"]);
    assert_eq!(cmd::<i64>(&mut con, &["SDIFFSTORE", "{k}dst", "{k}a", "{k}a"]), 0);
    assert_eq!(
        cmd::<i64>(&mut con, &["EXISTS", "{k}dst"]),
        0,
        "an empty result deletes"
    );
    assert_eq!(cmd::<i64>(&mut con, &["SUNIONSTORE", "{k}a", "{k}a", "{k}b"]), 4);
    assert_eq!(members(&mut con, "{k}a"), strings(&["1", "2", "x", "y"]));
    let scanned: (String, Vec<String>) = cmd(&mut con, &["SSCAN", "{k}a", "0", "MATCH", "[0-9]"]);
    assert_eq!(scanned.0, "0");
    assert_eq!(scanned.1.into_iter().collect::<HashSet<_>>(), strings(&["1", "2"]));
    let typed: (String, Vec<String>) = cmd(&mut con, &["SCAN", "0", "COUNT", "1000", "TYPE", "set"]);
    assert_eq!(typed.1.into_iter().collect::<HashSet<_>>(), strings(&["{k}a", "{k}b"]));
    node.shutdown();
}

#[test]
fn sets_reach_the_replica_whatever_the_random_picks() {
    let nodes: Vec<_> = ["a", "b"].iter().map(|id| cluster_node(id)).collect();
    let topo = form(&nodes, 2);
    let owners = topo.owners_of(key_slot(b"{r}"));
    let (primary, replica) = (by_id(&nodes, &owners[0]), by_id(&nodes, &owners[1]));
    let mut p = client(primary);
    let mut r = client(replica);
    cmd::<()>(&mut r, &["READONLY"]);

    sadd(&mut p, "{r}ints", (0..40).map(|i| i.to_string()));
    sadd(&mut p, "{r}words", (0..600).map(|i| format!("w{i}")));
    sadd(&mut p, "{r}gone", ["only".to_string()]);
    cmd::<Vec<String>>(&mut p, &["SPOP", "{r}ints", "7"]);
    cmd::<Option<String>>(&mut p, &["SPOP", "{r}words"]);
    cmd::<i64>(&mut p, &["SMOVE", "{r}words", "{r}ints", "w1"]);
    cmd::<i64>(&mut p, &["SUNIONSTORE", "{r}both", "{r}ints", "{r}words"]);
    cmd::<i64>(&mut p, &["SREM", "{r}gone", "only"]);

    for key in ["{r}ints", "{r}words", "{r}both", "{r}gone"] {
        let want = members(&mut p, key);
        wait_until(&format!("{key} on the replica"), Duration::from_secs(10), || {
            members(&mut r, key) == want
        });
    }
    assert_eq!(cmd::<i64>(&mut r, &["EXISTS", "{r}gone"]), 0);
    assert_eq!(cmd::<String>(&mut r, &["TYPE", "{r}both"]), "set");
    // The replica charges what the primary charges for the same sets.
    let slot = key_slot(b"{r}");
    wait_until("equal slot charges", Duration::from_secs(10), || {
        primary.store.slot_stats(slot).bytes == replica.store.slot_stats(slot).bytes
    });
    for n in nodes {
        n.shutdown();
    }
}

#[test]
fn a_set_moves_with_its_slot_by_read_through() {
    let (a, b, t1) = two_node_cluster();
    let tag = (0..100)
        .map(|i| format!("t{i}"))
        .find(|t| t1.primary_of(key_slot(t.as_bytes())) == Some("a"))
        .expect("a slot of a");
    let slot = key_slot(tag.as_bytes());
    let k = |name: &str| format!("{{{tag}}}{name}");
    let mut ca = client(&a);
    sadd(&mut ca, &k("ints"), ["1", "2", "3"].map(String::from));
    sadd(&mut ca, &k("words"), ["x", "y", "z", "1"].map(String::from));
    sadd(&mut ca, &k("moving"), ["m".to_string()]);

    hand_slot_to_b(&a, &b, &t1, slot);

    let mut cb = client(&b);
    assert_eq!(members(&mut cb, &k("ints")), strings(&["1", "2", "3"]));
    assert_eq!(cmd::<String>(&mut cb, &["TYPE", &k("words")]), "set");
    // Multi-key commands read every source through.
    assert_eq!(
        cmd::<i64>(&mut cb, &["SINTERSTORE", &k("both"), &k("ints"), &k("words")]),
        1
    );
    assert_eq!(members(&mut cb, &k("both")), strings(&["1"]));
    assert_eq!(cmd::<i64>(&mut cb, &["SMOVE", &k("moving"), &k("ints"), "m"]), 1);
    assert_eq!(cmd::<i64>(&mut cb, &["EXISTS", &k("moving")]), 0);
    assert_eq!(members(&mut cb, &k("ints")), strings(&["1", "2", "3", "m"]));
    // A write starts from the source's set.
    assert_eq!(sadd(&mut cb, &k("words"), ["w".to_string()]), 1);
    assert_eq!(cmd::<i64>(&mut cb, &["SCARD", &k("words")]), 5);
    a.shutdown();
    b.shutdown();
}

#[test]
fn cluster_mode_refuses_sets_of_different_slots_counted_keys_included() {
    let node = cluster_node("solo");
    form(std::slice::from_ref(&node), 1);
    let mut con = client(&node);
    sadd(&mut con, "{x}a", ["1", "2"].map(String::from));
    sadd(&mut con, "{x}b", ["2", "3"].map(String::from));
    let crossslot = "CROSSSLOT Keys in request don't hash to the same slot";
    for args in [
        &["SINTER", "{x}a", "other"][..],
        &["SUNIONSTORE", "other", "{x}a"],
        &["SMOVE", "{x}a", "other", "1"],
        &["SINTERCARD", "2", "{x}a", "other"],
    ] {
        assert_eq!(cmd_err(&mut con, args), crossslot, "{args:?}");
    }
    assert_eq!(
        cmd::<i64>(&mut con, &["SINTERCARD", "2", "{x}a", "{x}b", "LIMIT", "5"]),
        1
    );
    assert_eq!(
        cmd::<HashSet<String>>(&mut con, &["SUNION", "{x}a", "{x}b"]),
        strings(&["1", "2", "3"])
    );
    node.shutdown();
}
