//! Connection-level behaviour with a real client and raw RESP: framing, pipelining,
//! protocol errors, HELLO/AUTH, limits, graceful shutdown.

mod common;

use std::io::Write;
use std::net::TcpStream;

use common::*;

#[test]
fn ping_echo_and_pipelining_with_a_real_client() {
    let node = start();
    let mut con = client(&node);
    assert_eq!(cmd::<String>(&mut con, &["PING"]), "PONG");
    assert_eq!(cmd::<String>(&mut con, &["ECHO", "hi"]), "hi");
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.cmd("SET").arg(format!("k{i}")).arg(i);
    }
    for i in 0..1000 {
        pipe.cmd("GET").arg(format!("k{i}"));
    }
    let replies: Vec<redis::Value> = pipe.query(&mut con).expect("pipeline");
    assert_eq!(replies.len(), 2000);
    assert_eq!(replies[1999], redis::Value::BulkString(b"999".to_vec()));
    node.shutdown();
}

#[test]
fn inline_commands_and_unknown_commands() {
    let node = start();
    let out = raw(&node, b"PING\r\nSET k \"a b\"\r\nGET k\r\nNOPE x y\r\n", 70);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "+PONG\r\n+OK\r\n$3\r\na b\r\n-ERR unknown command 'NOPE', with args beginning with: 'x' 'y' \r\n"
    );
    node.shutdown();
}

#[test]
fn protocol_error_closes_only_that_connection() {
    let node = start();
    let mut other = client(&node);
    cmd::<()>(&mut other, &["SET", "survivor", "1"]);
    // A valid request is answered before the malformed one closes the connection.
    let out = raw(&node, b"*1\r\n$4\r\nPING\r\n*1\r\n+OK\r\n", 1000);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "+PONG\r\n-ERR Protocol error: expected '$', got '+'\r\n"
    );
    for bad in [
        &b"*abc\r\n"[..],
        b"*1\r\n$-7\r\n",
        b"*2\r\n$1\r\nab\r\n",
        b"SET \"unbalanced\r\n",
    ] {
        let out = raw(&node, bad, 1000);
        assert!(
            out.starts_with(b"-ERR Protocol error: "),
            "{:?} -> {:?}",
            String::from_utf8_lossy(bad),
            String::from_utf8_lossy(&out)
        );
    }
    // The other connection and the data are unaffected.
    assert_eq!(cmd::<String>(&mut other, &["GET", "survivor"]), "1");
    node.shutdown();
}

#[test]
fn bulk_length_limit_is_enforced() {
    let node = start_with(|c| c.proto_max_bulk_len = 1024);
    let out = raw(&node, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000\r\n", 1000);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "-ERR Protocol error: invalid bulk length\r\n"
    );
    node.shutdown();
}

#[test]
fn query_buffer_limit_closes_the_connection() {
    let node = start_with(|c| c.client_query_buffer_limit = 64 * 1024);
    let mut s = TcpStream::connect(node.resp_addr).expect("connects");
    // A bulk string that never completes grows the query buffer past the limit.
    let _ = s.write_all(b"*2\r\n$3\r\nGET\r\n$1000000\r\n");
    let chunk = vec![b'x'; 16 * 1024];
    let mut closed = false;
    for _ in 0..64 {
        if s.write_all(&chunk).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    if !closed {
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .expect("timeout");
        closed = read_some(&mut s, 1).is_empty();
    }
    assert!(
        closed,
        "the connection should be closed after exceeding the query buffer limit"
    );
    node.shutdown();
}

#[test]
fn hello_switches_to_resp3_and_auth_is_enforced() {
    let node = start_with(|c| c.requirepass = Some("s3cret".into()));
    // Until the HELLO map's header (before AUTH each request's reply is written on its own).
    let out = raw(&node, b"GET k\r\nAUTH wrong\r\nHELLO 3 AUTH default s3cret\r\n", 110);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("-NOAUTH Authentication required.\r\n-WRONGPASS invalid username-password pair or user is disabled.\r\n%7\r\n"), "{text}");
    let out = raw(&node, b"AUTH s3cret\r\nHELLO 3\r\nGET missing\r\n", 300);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("+OK\r\n%7\r\n"), "{text}");
    assert!(text.ends_with("_\r\n"), "RESP3 null expected: {text}");
    let url = format!("redis://:s3cret@{}/", node.resp_addr);
    let mut con = redis::Client::open(url)
        .expect("url")
        .get_connection()
        .expect("auth via client");
    assert_eq!(cmd::<String>(&mut con, &["PING"]), "PONG");
    node.shutdown();
}

#[test]
fn client_and_command_introspection() {
    let node = start();
    let mut con = client(&node);
    let id: i64 = cmd(&mut con, &["CLIENT", "ID"]);
    assert!(id > 0);
    cmd::<()>(&mut con, &["CLIENT", "SETNAME", "tester"]);
    assert_eq!(cmd::<String>(&mut con, &["CLIENT", "GETNAME"]), "tester");
    let list: String = cmd(&mut con, &["CLIENT", "LIST"]);
    assert!(list.contains("name=tester"), "{list}");
    assert!(cmd_err(&mut con, &["CLIENT", "SETNAME", "a b"]).contains("cannot contain spaces"));
    let count: i64 = cmd(&mut con, &["COMMAND", "COUNT"]);
    assert!(count > 5);
    let info: Vec<redis::Value> = cmd(&mut con, &["COMMAND", "INFO", "get"]);
    assert_eq!(info.len(), 1);
    assert_eq!(cmd::<String>(&mut con, &["SELECT", "0"]), "OK");
    assert!(cmd_err(&mut con, &["SELECT", "1"]).contains("DB index is out of range"));
    assert_eq!(
        cmd_err(&mut con, &["GET"]),
        "ERR wrong number of arguments for 'get' command"
    );
    node.shutdown();
}

#[test]
fn info_config_and_admin_endpoints() {
    let node = start();
    let mut con = client(&node);
    cmd::<()>(&mut con, &["SET", "a", "1"]);
    let _: Option<String> = cmd(&mut con, &["GET", "a"]);
    let _: Option<String> = cmd(&mut con, &["GET", "nope"]);
    let info: String = cmd(&mut con, &["INFO"]);
    assert!(info.contains("keyspace_hits:1"), "{info}");
    assert!(info.contains("keyspace_misses:1"), "{info}");
    assert!(info.contains("db0:keys=1,expires=0"), "{info}");
    // Commandstats only when asked for, as in Redis.
    assert!(!info.contains("# Commandstats"), "{info}");
    let stats: String = cmd(&mut con, &["INFO", "commandstats"]);
    assert!(stats.contains("cmdstat_get:calls=2,usec="), "{stats}");
    assert!(stats.contains("cmdstat_set:calls=1,usec="), "{stats}");
    assert!(!stats.contains("# Keyspace"), "{stats}");
    cmd::<()>(
        &mut con,
        &["CONFIG", "SET", "maxmemory", "10mb", "maxmemory-policy", "allkeys-lru"],
    );
    let cfg: Vec<String> = cmd(&mut con, &["CONFIG", "GET", "maxmemory*"]);
    assert_eq!(cfg, vec!["maxmemory", "10485760", "maxmemory-policy", "allkeys-lru"]);
    assert!(cmd_err(&mut con, &["CONFIG", "SET", "maxmemory-policy", "bogus"]).contains("maxmemory-policy"));
    let metrics = http_get(node.admin_addr, "/metrics");
    assert!(metrics.contains("ringcache_keys 1"), "{metrics}");
    assert!(metrics.contains("ringcache_commands_total{cmd=\"get\"} 2"), "{metrics}");
    assert!(
        metrics.contains("ringcache_command_duration_seconds_bucket{cmd=\"set\",le=\"+Inf\"} 1"),
        "{metrics}"
    );
    assert!(http_get(node.admin_addr, "/healthz").starts_with("HTTP/1.1 200"));
    assert!(http_get(node.admin_addr, "/readyz").starts_with("HTTP/1.1 200"));
    node.shutdown();
}

/// INFO cpu reports this process' CPU time, growing with work; OBJECT IDLETIME and FREQ
/// follow the eviction policy.
#[test]
fn info_cpu_and_object_idletime_and_freq() {
    let node = start();
    let mut con = client(&node);
    let cpu = |con: &mut redis::Connection| -> Vec<(String, f64)> {
        let info: String = cmd(con, &["INFO", "cpu"]);
        info.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().parse().expect("seconds")))
            .collect()
    };
    let before = cpu(&mut con);
    let names: Vec<&str> = before.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "used_cpu_sys",
            "used_cpu_user",
            "used_cpu_sys_children",
            "used_cpu_user_children",
            "used_cpu_sys_main_thread",
            "used_cpu_user_main_thread"
        ]
    );
    for i in 0..20_000 {
        cmd::<()>(&mut con, &["SET", &format!("k{i}"), "v"]);
    }
    let after = cpu(&mut con);
    let total = |v: &[(String, f64)]| v[0].1 + v[1].1;
    assert!(total(&after) > total(&before), "{before:?} then {after:?}");

    cmd::<()>(&mut con, &["SET", "k", "v"]);
    // s3fifo (the default) counts accesses like Redis' LFU policies.
    assert_eq!(cmd::<i64>(&mut con, &["OBJECT", "FREQ", "k"]), 0);
    let _: String = cmd(&mut con, &["GET", "k"]);
    assert_eq!(cmd::<i64>(&mut con, &["OBJECT", "FREQ", "k"]), 1);
    assert!(cmd_err(&mut con, &["OBJECT", "IDLETIME", "k"]).contains("s3fifo"));
    cmd::<()>(&mut con, &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    assert_eq!(cmd::<i64>(&mut con, &["OBJECT", "IDLETIME", "k"]), 0);
    assert!(cmd_err(&mut con, &["OBJECT", "FREQ", "k"]).contains("needs s3fifo"));
    assert_eq!(cmd::<Option<i64>>(&mut con, &["OBJECT", "IDLETIME", "nokey"]), None);
    node.shutdown();
}

#[test]
fn graceful_shutdown_answers_what_was_read() {
    let node = start();
    let mut s = TcpStream::connect(node.resp_addr).expect("connects");
    s.write_all(b"SET k v\r\nGET k\r\n").expect("write");
    let out = read_some(&mut s, 12);
    assert_eq!(out, b"+OK\r\n$1\r\nv\r\n");
    node.shutdown();
    // After shutdown the listener is gone.
    assert!(TcpStream::connect(s.peer_addr().expect("peer")).is_err());
}

#[test]
fn active_expiry_reclaims_keys_nobody_reads() {
    let node = start();
    let mut con = client(&node);
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.cmd("SET").arg(format!("t{i}")).arg("x").ignore();
    }
    pipe.cmd("SET").arg("keep").arg("y").ignore();
    let () = pipe.query(&mut con).expect("pipeline");
    let used_before: usize = node.store.mem.used();
    assert_eq!(node.store.dbsize(), 2001);
    // The TTLs come after the count: a loaded machine may take longer than a short TTL
    // to send 2000 SETs.
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.cmd("PEXPIRE").arg(format!("t{i}")).arg(50).ignore();
    }
    let () = pipe.query(&mut con).expect("pipeline");
    // Nobody reads the keys: only the active expiry thread can remove them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while node.store.dbsize() > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} keys left",
            node.store.dbsize()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        node.store.mem.used() < used_before / 100,
        "expired memory was not reclaimed"
    );
    let expired: u64 = node.store.stats.expired_keys.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(expired, 2000);
    node.shutdown();
}
