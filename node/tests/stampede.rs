//! Miss coalescing (RINGCACHE.COALESCE) with real connections: many readers of one
//! missing key make one origin query; a filler that dies or whose lease ends hands the
//! fill to a waiter; waits are bounded; plain clients are unaffected; bad arguments
//! get errors.

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;
use ringcache_node::launch::NodeHandle;

/// A connection in coalescing mode with these options.
fn coalescing(node: &NodeHandle, opts: &[&str]) -> redis::Connection {
    let mut con = client(node);
    let mut args = vec!["RINGCACHE.COALESCE", "ON"];
    args.extend_from_slice(opts);
    assert_eq!(cmd::<String>(&mut con, &args), "OK");
    con
}

/// A field of INFO stats or clients.
fn info_field(con: &mut redis::Connection, name: &str) -> u64 {
    let info: String = cmd(con, &["INFO"]);
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in INFO"))
}

/// GET `key` on a coalescing connection in a thread; the reply and how long it took
/// come back through the handle.
fn get_in_background(
    node: &NodeHandle,
    key: &str,
    opts: &[&str],
) -> std::thread::JoinHandle<(Option<String>, Duration, redis::Connection)> {
    let mut con = coalescing(node, opts);
    let key = key.to_string();
    std::thread::spawn(move || {
        let t = Instant::now();
        let v: Option<String> = cmd(&mut con, &["GET", &key]);
        (v, t.elapsed(), con)
    })
}

#[test]
fn a_hundred_readers_of_a_missing_key_make_one_origin_query() {
    let node = start();
    let n = 100;
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let mut con = coalescing(&node, &["LEASE", "10000", "WAIT", "10000"]);
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let v: Option<String> = cmd(&mut con, &["GET", "hot"]);
                if v.is_none() {
                    // The filler: "queries the origin", then fills the key.
                    std::thread::sleep(Duration::from_millis(300));
                    assert_eq!(cmd::<String>(&mut con, &["SET", "hot", "from-origin"]), "OK");
                }
                v
            })
        })
        .collect();
    let replies: Vec<Option<String>> = threads.into_iter().map(|t| t.join().expect("reader")).collect();
    let origin_queries = replies.iter().filter(|v| v.is_none()).count();
    assert_eq!(origin_queries, 1, "origin queries per expiry");
    assert!(replies.iter().flatten().all(|v| v == "from-origin"));
    let mut con = client(&node);
    assert_eq!(info_field(&mut con, "coalesce_fillers"), 1);
    assert!(info_field(&mut con, "coalesce_waiters") > 0);
    assert_eq!(info_field(&mut con, "coalesce_wait_timeouts"), 0);
    assert_eq!(info_field(&mut con, "blocked_clients"), 0);
    let metrics = http_get(node.admin_addr, "/metrics");
    assert!(metrics.contains("ringcache_coalesce_fillers_total 1"), "{metrics}");

    // The key expires: the next wave again makes one origin query.
    assert_eq!(cmd::<i64>(&mut con, &["PEXPIRE", "hot", "1"]), 1);
    std::thread::sleep(Duration::from_millis(20));
    let mut filler = coalescing(&node, &[]);
    assert_eq!(cmd::<Option<String>>(&mut filler, &["GET", "hot"]), None);
    let waiters: Vec<_> = (0..10).map(|_| get_in_background(&node, "hot", &[])).collect();
    wait_until("the waiters block", Duration::from_secs(5), || {
        info_field(&mut con, "blocked_clients") == 10
    });
    assert_eq!(cmd::<String>(&mut filler, &["SET", "hot", "again"]), "OK");
    for w in waiters {
        assert_eq!(w.join().expect("waiter").0.as_deref(), Some("again"));
    }
    assert_eq!(info_field(&mut con, "coalesce_fillers"), 2);
}

#[test]
fn when_the_filler_dies_a_waiter_becomes_the_filler() {
    let node = start();
    let mut watcher = client(&node);
    let mut filler = coalescing(&node, &["LEASE", "30000"]);
    assert_eq!(cmd::<Option<String>>(&mut filler, &["GET", "k"]), None);
    // The filler asking again is still the filler.
    assert_eq!(cmd::<Option<String>>(&mut filler, &["GET", "k"]), None);
    let second = get_in_background(&node, "k", &["LEASE", "30000", "WAIT", "20000"]);
    let third = get_in_background(&node, "k", &["LEASE", "30000", "WAIT", "20000"]);
    wait_until("two waiters", Duration::from_secs(5), || {
        info_field(&mut watcher, "blocked_clients") == 2
    });
    drop(filler);
    // One waiter becomes the filler at once (long before the lease would end); the
    // other keeps waiting.
    let (first_done, other) = loop {
        if second.is_finished() {
            break (second, third);
        }
        if third.is_finished() {
            break (third, second);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let (v, took, mut new_filler) = first_done.join().expect("waiter");
    assert_eq!(v, None);
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(!other.is_finished());
    assert_eq!(cmd::<String>(&mut new_filler, &["SET", "k", "filled"]), "OK");
    assert_eq!(other.join().expect("waiter").0.as_deref(), Some("filled"));
    assert_eq!(info_field(&mut watcher, "coalesce_fillers"), 2);
}

#[test]
fn a_lease_ends_and_a_waiter_takes_it_and_waits_are_bounded() {
    let node = start();
    let mut watcher = client(&node);
    let mut filler = coalescing(&node, &["LEASE", "300"]);
    let granted = Instant::now();
    assert_eq!(cmd::<Option<String>>(&mut filler, &["GET", "k"]), None);
    // The filler stays connected but never fills: after LEASE, a waiter is the filler.
    let waiter = get_in_background(&node, "k", &["WAIT", "20000"]);
    let (v, took, mut next) = waiter.join().expect("waiter");
    assert_eq!(v, None);
    assert!(
        granted.elapsed() >= Duration::from_millis(300),
        "{:?}",
        granted.elapsed()
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    // It holds the lease now: another reader waits for its SET.
    let late = get_in_background(&node, "k", &["WAIT", "20000"]);
    wait_until("a waiter", Duration::from_secs(5), || {
        info_field(&mut watcher, "blocked_clients") == 1
    });
    assert_eq!(cmd::<String>(&mut next, &["SET", "k", "v"]), "OK");
    assert_eq!(late.join().expect("waiter").0.as_deref(), Some("v"));

    // A wait bound shorter than the lease: nil (no lease) once it passes.
    let mut filler = coalescing(&node, &["LEASE", "30000"]);
    assert_eq!(cmd::<Option<String>>(&mut filler, &["GET", "j"]), None);
    let (v, took, _) = get_in_background(&node, "j", &["WAIT", "200"]).join().expect("waiter");
    assert_eq!(v, None);
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert_eq!(info_field(&mut watcher, "coalesce_wait_timeouts"), 1);
    // MAXWAITERS 0: nil at once while the lease is held.
    let mut impatient = coalescing(&node, &["MAXWAITERS", "0"]);
    let t = Instant::now();
    assert_eq!(cmd::<Option<String>>(&mut impatient, &["GET", "j"]), None);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(info_field(&mut watcher, "coalesce_too_many_waiters"), 1);
    // Any write of the key ends the lease: a DEL too.
    let waiter = get_in_background(&node, "j", &["WAIT", "20000"]);
    wait_until("a waiter", Duration::from_secs(5), || {
        info_field(&mut watcher, "blocked_clients") == 1
    });
    assert_eq!(cmd::<i64>(&mut watcher, &["DEL", "j"]), 0);
    let (v, _, _) = waiter.join().expect("waiter");
    assert_eq!(v, None, "the waiter became the filler after the DEL");
}

#[test]
fn plain_clients_and_transactions_are_unaffected() {
    let node = start();
    let mut filler = coalescing(&node, &["LEASE", "30000"]);
    assert_eq!(cmd::<Option<String>>(&mut filler, &["GET", "k"]), None);
    // A plain GET misses at once.
    let mut plain = client(&node);
    let t = Instant::now();
    assert_eq!(cmd::<Option<String>>(&mut plain, &["GET", "k"]), None);
    // OFF: plain again.
    let mut off = coalescing(&node, &[]);
    assert_eq!(cmd::<String>(&mut off, &["RINGCACHE.COALESCE", "OFF"]), "OK");
    assert_eq!(cmd::<Option<String>>(&mut off, &["GET", "k"]), None);
    // RESET: back to plain (no patterns on this node).
    let mut reset = coalescing(&node, &[]);
    assert_eq!(cmd::<String>(&mut reset, &["RESET"]), "RESET");
    assert_eq!(cmd::<Option<String>>(&mut reset, &["GET", "k"]), None);
    // Inside MULTI a coalescing GET does not wait.
    let mut tx = coalescing(&node, &[]);
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("GET").arg("k");
    let (v,): (Option<String>,) = pipe.query(&mut tx).expect("exec");
    assert_eq!(v, None);
    assert!(t.elapsed() < Duration::from_secs(5));
    // A hit is a hit, and another type is WRONGTYPE.
    assert_eq!(cmd::<i64>(&mut plain, &["LPUSH", "l", "x"]), 1);
    assert!(cmd_err(&mut tx, &["GET", "l"]).starts_with("WRONGTYPE"));
    assert_eq!(cmd::<String>(&mut filler, &["SET", "k", "v"]), "OK");
    assert_eq!(cmd::<Option<String>>(&mut tx, &["GET", "k"]).as_deref(), Some("v"));
}

#[test]
fn bad_arguments_get_errors() {
    let node = start();
    let mut con = client(&node);
    let cases: &[(&[&str], &str)] = &[
        (
            &["RINGCACHE.COALESCE"],
            "ERR wrong number of arguments for 'ringcache.coalesce' command",
        ),
        (&["RINGCACHE.COALESCE", "MAYBE"], "ERR syntax error"),
        (&["RINGCACHE.COALESCE", "OFF", "LEASE", "1"], "ERR syntax error"),
        (&["RINGCACHE.COALESCE", "ON", "LEASE"], "ERR syntax error"),
        (&["RINGCACHE.COALESCE", "ON", "FOO", "1"], "ERR syntax error"),
        (
            &["RINGCACHE.COALESCE", "ON", "LEASE", "x"],
            "ERR value is not an integer or out of range",
        ),
        (
            &["RINGCACHE.COALESCE", "ON", "LEASE", "0"],
            "ERR LEASE must be a positive number of milliseconds",
        ),
        (
            &["RINGCACHE.COALESCE", "ON", "WAIT", "-1"],
            "ERR WAIT must not be negative",
        ),
        (
            &["RINGCACHE.COALESCE", "ON", "MAXWAITERS", "-1"],
            "ERR MAXWAITERS must not be negative",
        ),
    ];
    for (args, want) in cases {
        assert_eq!(cmd_err(&mut con, args), *want, "{args:?}");
    }
    // A refused ON leaves the mode as it was: a plain GET.
    assert_eq!(cmd::<Option<String>>(&mut con, &["GET", "k"]), None);
    assert_eq!(
        cmd::<String>(
            &mut con,
            &["RINGCACHE.COALESCE", "on", "lease", "5", "wait", "0", "maxwaiters", "7"]
        ),
        "OK"
    );
}

#[test]
fn coalesce_patterns_make_plain_clients_coalesce() {
    let node = start_with(|c| c.coalesce_patterns = vec!["user:*".into()]);
    let mut watcher = client(&node);
    // Unchanged clients: no RINGCACHE.COALESCE on any of these connections.
    let mut filler = client(&node);
    assert_eq!(cmd::<Option<String>>(&mut filler, &["GET", "user:1"]), None);
    let mut con = client(&node);
    let waiter = std::thread::spawn(move || cmd::<Option<String>>(&mut con, &["GET", "user:1"]));
    wait_until("a waiter", Duration::from_secs(5), || {
        info_field(&mut watcher, "blocked_clients") == 1
    });
    // Keys outside the patterns, and connections that opted out, miss at once.
    let t = Instant::now();
    assert_eq!(cmd::<Option<String>>(&mut watcher, &["GET", "other"]), None);
    let mut opted_out = client(&node);
    assert_eq!(cmd::<String>(&mut opted_out, &["RINGCACHE.COALESCE", "OFF"]), "OK");
    assert_eq!(cmd::<Option<String>>(&mut opted_out, &["GET", "user:1"]), None);
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(cmd::<String>(&mut filler, &["SET", "user:1", "alice"]), "OK");
    assert_eq!(waiter.join().expect("waiter").as_deref(), Some("alice"));
    assert_eq!(info_field(&mut watcher, "coalesce_fillers"), 1);
}

#[test]
fn early_refresh_sends_one_reader_to_the_origin_before_expiry() {
    let node = start();
    let mut plain = client(&node);
    let mut a = coalescing(&node, &["EARLY", "5000"]);
    let mut b = coalescing(&node, &["EARLY", "5000"]);
    // Far from expiry: a hit.
    assert_eq!(cmd::<String>(&mut plain, &["SET", "k", "v", "PX", "60000"]), "OK");
    assert_eq!(cmd::<Option<String>>(&mut a, &["GET", "k"]).as_deref(), Some("v"));
    // Within EARLY of expiry: one reader is told nil and refreshes, the others (and
    // plain clients) keep getting the value.
    assert_eq!(cmd::<String>(&mut plain, &["SET", "k", "v", "PX", "3000"]), "OK");
    assert_eq!(cmd::<Option<String>>(&mut a, &["GET", "k"]), None);
    assert_eq!(cmd::<Option<String>>(&mut b, &["GET", "k"]).as_deref(), Some("v"));
    assert_eq!(cmd::<Option<String>>(&mut a, &["GET", "k"]).as_deref(), Some("v"));
    assert_eq!(cmd::<Option<String>>(&mut plain, &["GET", "k"]).as_deref(), Some("v"));
    assert_eq!(cmd::<String>(&mut a, &["SET", "k", "fresh", "PX", "60000"]), "OK");
    assert_eq!(cmd::<Option<String>>(&mut b, &["GET", "k"]).as_deref(), Some("fresh"));
    assert_eq!(info_field(&mut plain, "coalesce_early_refreshes"), 1);
    assert_eq!(info_field(&mut plain, "coalesce_fillers"), 0);
    assert_eq!(
        cmd_err(&mut plain, &["RINGCACHE.COALESCE", "ON", "EARLY", "-5"]),
        "ERR EARLY must not be negative"
    );
}
