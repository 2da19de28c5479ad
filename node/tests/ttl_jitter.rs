//! TTL jitter (`--ttl-jitter-percent`, store/ttl_jitter.rs): every relative TTL a
//! command sets gets a random extra of 0..N %, absolute times and replicated records
//! do not, the INFO and /metrics counter counts them, and bad values stop the node at
//! start-up. With jitter 0 (the default) the differential test (against_redis.rs)
//! covers that nothing changed.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use ringcache_core::slot::key_slot;
use ringcache_node::launch::NodeHandle;

/// Runs `(command, key, ttl-argument…)` for `n` keys named `prefix:i` in one pipeline
/// and returns their PTTLs and the milliseconds the whole thing took.
fn pttls_after(con: &mut redis::Connection, prefix: &str, n: usize, setup: &[&[&str]]) -> (Vec<i64>, i64) {
    let start = Instant::now();
    let mut p = redis::pipe();
    for i in 0..n {
        let key = format!("{prefix}:{i}");
        for step in setup {
            let mut c = redis::cmd(step[0]);
            c.arg(&key);
            for a in &step[1..] {
                c.arg(*a);
            }
            p.add_command(c).ignore();
        }
        p.cmd("PTTL").arg(&key);
    }
    let pttls: Vec<i64> = p.query(con).expect("pipeline");
    (pttls, start.elapsed().as_millis() as i64 + 1)
}

fn info_jittered(con: &mut redis::Connection) -> u64 {
    let info: String = cmd(con, &["INFO", "stats"]);
    info.lines()
        .find_map(|l| l.strip_prefix("jittered_ttls:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("jittered_ttls in INFO stats")
}

fn metrics_jittered(node: &NodeHandle) -> u64 {
    http_get(node.admin_addr, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix("ringcache_jittered_ttls_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("ringcache_jittered_ttls_total in /metrics")
}

/// Every PTTL is within `ttl .. ttl × 1.2` (less what elapsed), and they spread over
/// most of that range.
fn assert_spread(what: &str, pttls: &[i64], ttl_ms: i64, elapsed: i64) {
    let top = ttl_ms + ttl_ms / 5;
    for &p in pttls {
        assert!(
            p >= ttl_ms - elapsed && p <= top,
            "{what}: PTTL {p} outside {ttl_ms}..={top}"
        );
    }
    let (lo, hi) = (pttls.iter().min().copied(), pttls.iter().max().copied());
    let (lo, hi) = (lo.expect("some keys"), hi.expect("some keys"));
    assert!(
        lo < ttl_ms + ttl_ms / 50 && hi > top - ttl_ms / 50,
        "{what}: spread only {lo}..{hi}"
    );
}

#[test]
fn relative_ttls_spread_over_the_jitter_and_are_counted() {
    let node = start_with(|c| c.ttl_jitter_percent = 20);
    let mut con = client(&node);
    cmd::<()>(&mut con, &["SET", "probe", "v"]);
    let (pttls, elapsed) = pttls_after(&mut con, "ex", 1000, &[&["SET", "v", "EX", "100"]]);
    assert_spread("SET EX 100", &pttls, 100_000, elapsed);
    let mut counted = 1000;
    let cases: &[(&str, &[&[&str]], i64)] = &[
        ("SET PX", &[&["SET", "v", "PX", "50000"]], 50_000),
        ("SETEX", &[&["SETEX", "50", "v"]], 50_000),
        ("PSETEX", &[&["PSETEX", "50000", "v"]], 50_000),
        ("EXPIRE", &[&["SET", "v"], &["EXPIRE", "50"]], 50_000),
        ("PEXPIRE", &[&["SET", "v"], &["PEXPIRE", "50000"]], 50_000),
        ("GETEX EX", &[&["SET", "v"], &["GETEX", "EX", "50"]], 50_000),
        ("GETEX PX", &[&["SET", "v"], &["GETEX", "PX", "50000"]], 50_000),
        (
            "EXPIRE GT",
            &[&["SET", "v", "EX", "1"], &["EXPIRE", "50", "GT"]],
            50_000,
        ),
    ];
    for (i, (what, setup, ttl)) in cases.iter().enumerate() {
        let (pttls, elapsed) = pttls_after(&mut con, &format!("c{i}"), 300, setup);
        assert_spread(what, &pttls, *ttl, elapsed);
        counted += 300 * setup.iter().filter(|s| s.len() > 2 || s[0] != "SET").count() as u64;
    }
    assert_eq!(info_jittered(&mut con), counted);
    assert_eq!(metrics_jittered(&node), counted);
    // A TTL that deletes the key, KEEPTTL and PERSIST jitter nothing.
    cmd::<()>(&mut con, &["SET", "k", "v", "EX", "100"]);
    let at: i64 = cmd(&mut con, &["PEXPIRETIME", "k"]);
    cmd::<()>(&mut con, &["SET", "k", "w", "KEEPTTL"]);
    assert_eq!(cmd::<i64>(&mut con, &["PEXPIRETIME", "k"]), at);
    cmd::<i64>(&mut con, &["EXPIRE", "k", "-1"]);
    assert_eq!(cmd::<i64>(&mut con, &["EXISTS", "k"]), 0);
    assert_eq!(info_jittered(&mut con), counted + 1);
    // CONFIG RESETSTAT starts INFO's count again; /metrics keeps the total.
    cmd::<()>(&mut con, &["CONFIG", "RESETSTAT"]);
    assert_eq!(info_jittered(&mut con), 0);
    assert_eq!(metrics_jittered(&node), counted + 1);
}

#[test]
fn absolute_times_are_kept_as_given() {
    let node = start_with(|c| c.ttl_jitter_percent = 50);
    let mut con = client(&node);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let at_s = now_ms / 1000 + 1000;
    let at_ms = now_ms + 1_000_123;
    let (s, ms) = (at_s.to_string(), at_ms.to_string());
    let cases: &[(&[&[&str]], i64)] = &[
        (&[&["SET", "v", "EXAT", &s]], at_s * 1000),
        (&[&["SET", "v", "PXAT", &ms]], at_ms),
        (&[&["SET", "v"], &["EXPIREAT", &s]], at_s * 1000),
        (&[&["SET", "v"], &["PEXPIREAT", &ms]], at_ms),
        (&[&["SET", "v"], &["GETEX", "EXAT", &s]], at_s * 1000),
        (&[&["SET", "v"], &["GETEX", "PXAT", &ms]], at_ms),
    ];
    for (i, (setup, want)) in cases.iter().enumerate() {
        for k in 0..50 {
            let key = format!("a{i}:{k}");
            for step in *setup {
                let mut args = vec![step[0], key.as_str()];
                args.extend(&step[1..]);
                cmd::<redis::Value>(&mut con, &args);
            }
            assert_eq!(cmd::<i64>(&mut con, &["PEXPIRETIME", &key]), *want, "{setup:?}");
        }
    }
    assert_eq!(info_jittered(&mut con), 0);
}

#[test]
fn off_by_default() {
    let node = start();
    let mut con = client(&node);
    let (pttls, elapsed) = pttls_after(&mut con, "k", 200, &[&["SET", "v", "EX", "100"]]);
    assert!(
        pttls.iter().all(|&p| p <= 100_000 && p >= 100_000 - elapsed),
        "{pttls:?}"
    );
    assert_eq!(info_jittered(&mut con), 0);
    assert_eq!(metrics_jittered(&node), 0);
}

#[test]
fn replicas_keep_the_primary_s_expiry_time() {
    let nodes: Vec<NodeHandle> = ["a", "b", "c"]
        .iter()
        .map(|id| cluster_node_with(id, |c| c.ttl_jitter_percent = 30))
        .collect();
    let topo = form(&nodes, 2);
    let by_id = |id: &str| nodes.iter().find(|n| n.state.cluster.node_id == id).expect("node");
    let start = Instant::now();
    while !nodes.iter().all(|n| {
        let st = n.state.replication.status();
        st.links.len() == 2 && st.links.iter().all(|l| l.connected)
    }) {
        assert!(start.elapsed() < Duration::from_secs(10), "replication links");
        std::thread::sleep(Duration::from_millis(20));
    }
    for i in 0..20 {
        let key = format!("jit:{i}");
        let owners = topo.owners_of(key_slot(key.as_bytes()));
        let mut p = client(by_id(&owners[0]));
        cmd::<()>(&mut p, &["SET", &key, "v", "EX", "1000"]);
        let want: i64 = cmd(&mut p, &["PEXPIRETIME", &key]);
        let mut r = client(by_id(&owners[1]));
        cmd::<()>(&mut r, &["READONLY"]);
        let start = Instant::now();
        loop {
            let got: i64 = cmd(&mut r, &["PEXPIRETIME", &key]);
            if got == want {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "replica has {got}, primary {want}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let counts: u64 = nodes.iter().map(|n| n.store.ttl_jitter.jittered()).sum();
    assert_eq!(counts, 20, "only the primaries decided a jitter");
}

#[test]
fn bad_values_are_refused_at_start_up() {
    let bin = env!("CARGO_BIN_EXE_ringcache-node");
    for bad in ["101", "-1", "ten", "2.5"] {
        let out = Command::new(bin)
            .arg(format!("--ttl-jitter-percent={bad}"))
            .args(["--port", "0", "--admin-port", "0"])
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--ttl-jitter-percent"), "{bad}: {err}");
        let out = Command::new(bin)
            .env("RINGCACHE_TTL_JITTER_PERCENT", bad)
            .args(["--port", "0", "--admin-port", "0"])
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "env {bad}");
    }
}
