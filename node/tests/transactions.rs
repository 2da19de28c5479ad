//! MULTI/EXEC/WATCH with real clients, for what the differential test against Redis
//! (one connection at a time) cannot show: EXEC is atomic against other connections on
//! other worker threads, WATCH sees another client's write and no update is lost under
//! optimistic retries, a watched key's expiry aborts EXEC, and cluster mode keeps a
//! transaction inside one slot.

mod common;

use std::thread;
use std::time::Duration;

use common::*;
use ringcache_core::slot::key_slot;

/// `MULTI`, the commands, `EXEC`: the EXEC reply (nil when a WATCH aborted it).
fn transaction(con: &mut redis::Connection, commands: &[&[&str]]) -> Option<Vec<redis::Value>> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for c in commands {
        let mut command = redis::cmd(c[0]);
        for a in &c[1..] {
            command.arg(*a);
        }
        pipe.add_command(command);
    }
    pipe.query::<Option<Vec<redis::Value>>>(con)
        .unwrap_or_else(|e| panic!("transaction {commands:?}: {e}"))
}

#[test]
fn exec_is_atomic_against_other_connections() {
    let node = start();
    // Two keys in different slots, so in different shards and locks.
    let (a, b) = ("balance:a", "balance:b");
    assert_ne!(key_slot(a.as_bytes()) % 256, key_slot(b.as_bytes()) % 256);
    let mut setup = client(&node);
    cmd::<()>(&mut setup, &["MSET", a, "0", b, "0"]);
    let writers: Vec<_> = (0..3)
        .map(|_| {
            let mut con = client(&node);
            thread::spawn(move || {
                // Between the two increments, enough other work that a reader running
                // unsynchronised would land in the middle.
                let (first, last) = (["INCR", a], ["INCR", b]);
                let mut commands: Vec<&[&str]> = vec![&first];
                commands.extend(std::iter::repeat_n(&["INCR", "filler"][..], 100));
                commands.push(&last);
                for _ in 0..300 {
                    transaction(&mut con, &commands).expect("no WATCH, never aborted");
                }
            })
        })
        .collect();
    // A reader's transaction never sees one counter moved without the other.
    let mut reader = client(&node);
    let mut reads = 0;
    while !writers.iter().all(|w| w.is_finished()) {
        let got = transaction(&mut reader, &[&["GET", a], &["GET", b]]).expect("not aborted");
        let values: Vec<i64> = got
            .iter()
            .map(|v| redis::from_redis_value::<i64>(v).expect("a counter"))
            .collect();
        assert_eq!(values[0], values[1], "a transaction saw half of another one");
        reads += 1;
    }
    for w in writers {
        w.join().expect("writer");
    }
    assert!(reads > 0);
    assert_eq!(cmd::<Vec<i64>>(&mut setup, &["MGET", a, b]), vec![900, 900]);
    node.shutdown();
}

#[test]
fn watch_sees_another_clients_write() {
    let node = start();
    let (mut mine, mut other) = (client(&node), client(&node));
    cmd::<()>(&mut mine, &["SET", "k", "1"]);
    cmd::<()>(&mut mine, &["WATCH", "k"]);
    cmd::<()>(&mut other, &["SET", "k", "2"]);
    assert_eq!(transaction(&mut mine, &[&["SET", "k", "mine"]]), None);
    assert_eq!(cmd::<String>(&mut mine, &["GET", "k"]), "2");
    // EXEC forgets the watch: the next transaction runs.
    assert!(transaction(&mut mine, &[&["SET", "k", "mine"]]).is_some());
    // A write that changes nothing (SET NX on a present key) is no change.
    cmd::<()>(&mut mine, &["WATCH", "k"]);
    assert!(!cmd::<bool>(&mut other, &["SETNX", "k", "x"]));
    assert!(transaction(&mut mine, &[&["GET", "k"]]).is_some());
    // UNWATCH forgets, DISCARD too.
    cmd::<()>(&mut mine, &["WATCH", "k"]);
    cmd::<()>(&mut mine, &["UNWATCH"]);
    cmd::<()>(&mut other, &["SET", "k", "3"]);
    assert!(transaction(&mut mine, &[&["GET", "k"]]).is_some());
    node.shutdown();
}

/// Sorted-set writes that change nothing leave a WATCH alone, as in Redis (which
/// signals a modified key only when members were added, updated or removed); one that
/// changes something aborts it.
#[test]
fn sorted_set_writes_that_change_nothing_do_not_abort_a_watch() {
    let node = start();
    let (mut mine, mut other) = (client(&node), client(&node));
    cmd::<i64>(&mut mine, &["ZADD", "z", "1", "a", "2", "b"]);
    for noop in [
        &["ZREM", "z", "absent"][..],
        &["ZADD", "z", "NX", "5", "a"],
        &["ZADD", "z", "1", "a"],
        &["ZADD", "z", "XX", "1", "absent"],
        &["ZREMRANGEBYSCORE", "z", "10", "20"],
        &["ZREMRANGEBYRANK", "z", "5", "9"],
        &["ZREMRANGEBYLEX", "z", "[x", "[y"],
        &["ZPOPMIN", "z", "0"],
    ] {
        cmd::<()>(&mut mine, &["WATCH", "z"]);
        let _: redis::Value = cmd(&mut other, noop);
        assert!(
            transaction(&mut mine, &[&["ZCARD", "z"]]).is_some(),
            "{noop:?} aborted the watch"
        );
    }
    for change in [
        &["ZREM", "z", "a"][..],
        &["ZADD", "z", "NX", "3", "c"],
        &["ZPOPMIN", "z"],
    ] {
        cmd::<()>(&mut mine, &["WATCH", "z"]);
        let _: redis::Value = cmd(&mut other, change);
        assert_eq!(transaction(&mut mine, &[&["ZCARD", "z"]]), None, "{change:?}");
    }
    node.shutdown();
}

#[test]
fn optimistic_increments_from_many_clients_lose_no_update() {
    let node = start();
    let mut setup = client(&node);
    cmd::<()>(&mut setup, &["SET", "counter", "0"]);
    let per_client = 200;
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let mut con = client(&node);
            thread::spawn(move || {
                let mut retries = 0;
                for _ in 0..per_client {
                    loop {
                        cmd::<()>(&mut con, &["WATCH", "counter"]);
                        let n: i64 = cmd(&mut con, &["GET", "counter"]);
                        let next = (n + 1).to_string();
                        if transaction(&mut con, &[&["SET", "counter", &next]]).is_some() {
                            break;
                        }
                        retries += 1;
                    }
                }
                retries
            })
        })
        .collect();
    let retries: u32 = clients.into_iter().map(|c| c.join().expect("client")).sum();
    assert_eq!(cmd::<i64>(&mut setup, &["GET", "counter"]), 4 * per_client);
    // Four clients racing on one key: some EXECs must have been refused, or WATCH did
    // nothing and the count above would have lost updates.
    println!("{retries} aborted transactions");
    node.shutdown();
}

#[test]
fn a_watched_key_that_expires_aborts_exec_unless_it_had_already_expired() {
    let node = start();
    let mut con = client(&node);
    cmd::<()>(&mut con, &["SET", "k", "v", "PX", "50"]);
    cmd::<()>(&mut con, &["WATCH", "k"]);
    thread::sleep(Duration::from_millis(80));
    assert_eq!(transaction(&mut con, &[&["GET", "k"]]), None);
    // Watched after it expired: its deletion is no change.
    cmd::<()>(&mut con, &["SET", "k", "v", "PX", "1"]);
    thread::sleep(Duration::from_millis(5));
    cmd::<()>(&mut con, &["WATCH", "k"]);
    assert_eq!(cmd::<Option<String>>(&mut con, &["GET", "k"]), None);
    assert!(transaction(&mut con, &[&["GET", "k"]]).is_some());
    node.shutdown();
}

#[test]
fn a_cluster_transaction_stays_in_one_slot() {
    let node = cluster_node("solo");
    form(std::slice::from_ref(&node), 1);
    let mut con = client(&node);
    // Keys of one slot (a hash tag) run together.
    let got = transaction(&mut con, &[&["SET", "{u1}.name", "x"], &["INCR", "{u1}.visits"]]).expect("ran");
    assert_eq!(got.len(), 2);
    // Keys of two slots: each command is fine alone, EXEC refuses the whole and
    // discards it, as Redis Cluster does.
    cmd::<()>(&mut con, &["MULTI"]);
    cmd::<()>(&mut con, &["SET", "a", "1"]);
    cmd::<()>(&mut con, &["SET", "b", "1"]);
    assert_eq!(
        cmd_err(&mut con, &["EXEC"]),
        "CROSSSLOT Keys in request don't hash to the same slot"
    );
    assert_eq!(cmd::<Option<String>>(&mut con, &["GET", "a"]), None);
    assert_eq!(cmd_err(&mut con, &["EXEC"]), "ERR EXEC without MULTI");
    node.shutdown();
}

#[test]
fn transactions_are_refused_on_the_proxy_port() {
    let node = cluster_node("solo");
    form(std::slice::from_ref(&node), 1);
    let proxy = redis::Client::open(format!("redis://{}/", node.proxy_addr)).expect("proxy address");
    let mut con = proxy.get_connection().expect("proxy connects");
    for c in [&["MULTI"][..], &["WATCH", "k"]] {
        let err = cmd_err(&mut con, c);
        assert!(err.contains("not supported on the proxy port"), "{c:?}: {err}");
    }
    node.shutdown();
}
