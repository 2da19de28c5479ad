//! Hot-key detection end to end: a skewed load from a real client, then
//! RINGCACHE.HOTKEYS, /metrics and the control API's GetStatus all name the hot key;
//! a key that cools down leaves the list after the window; bad arguments get
//! Redis-style errors.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use ringcache_node::launch::NodeHandle;
use ringcache_proto::pb::GetStatusRequest;

/// A node with a 2 s hot-key window and the default sampling (1 in 32).
fn node() -> NodeHandle {
    common::start_with(|c| {
        c.hotkeys_window = 2;
    })
}

/// `ops` GETs, pipelined: a third on `hot`, the rest over 1000 `cold:i` keys with a
/// zipf-like skew (log-uniform: key i about as likely as 1/(i+1)).
fn skewed_load(con: &mut redis::Connection, hot: &str, ops: usize) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut pipe = redis::pipe();
    for i in 0..ops {
        let key = if i % 3 == 0 {
            hot.to_string()
        } else {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            format!("cold:{}", (1000f64.powf(u) as u64 - 1).min(999))
        };
        pipe.cmd("GET").arg(key).ignore();
        if i % 1000 == 999 {
            pipe.query::<()>(con).unwrap();
            pipe = redis::pipe();
        }
    }
    pipe.query::<()>(con).unwrap();
}

fn hotkeys(con: &mut redis::Connection, args: &[&str]) -> Vec<(String, i64)> {
    let mut c = redis::cmd("RINGCACHE.HOTKEYS");
    for a in args {
        c.arg(*a);
    }
    c.query(con).unwrap()
}

#[test]
fn hot_key_is_listed_exported_and_reported_then_ages_out() {
    let node = node();
    let mut con = common::client(&node);
    common::cmd::<()>(&mut con, &["SET", "user:42", "v"]);
    skewed_load(&mut con, "user:42", 30_000);

    let top = hotkeys(&mut con, &[]);
    assert!(!top.is_empty() && top.len() <= 10, "{top:?}");
    assert_eq!(top[0].0, "user:42", "{top:?}");
    assert!(top[0].1 > 0, "{top:?}");
    assert!(top.windows(2).all(|w| w[0].1 >= w[1].1), "hottest first: {top:?}");
    for (k, rate) in &top[1..] {
        assert!(k.starts_with("cold:"), "{top:?}");
        assert!(*rate < top[0].1, "{top:?}");
    }
    let three = hotkeys(&mut con, &["COUNT", "3"]);
    assert_eq!(three.len(), 3);
    assert_eq!(three[0].0, "user:42");
    assert!(hotkeys(&mut con, &["count", "0"]).is_empty());

    // /metrics: one series per reported key, ranked.
    let page = common::http_get(node.admin_addr, "/metrics");
    assert!(
        page.contains("ringcache_hot_key_ops_per_second{rank=\"1\",key=\"user:42\"} "),
        "{page}"
    );
    let series = page
        .lines()
        .filter(|l| l.starts_with("ringcache_hot_key_ops_per_second{"))
        .count();
    assert!((1..=10).contains(&series), "{page}");

    // GetStatus: the same list, for the operator.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        common::control_client(&node)
            .await
            .get_status(GetStatusRequest {})
            .await
            .unwrap()
            .into_inner()
    });
    assert!(!status.hot_keys.is_empty() && status.hot_keys.len() <= 10);
    assert_eq!(status.hot_keys[0].key, b"user:42");
    assert!(status.hot_keys[0].ops_per_sec > 0);

    // The key cools down: after the 2 s window it is gone, and a new hot key is listed.
    std::thread::sleep(Duration::from_millis(2300));
    skewed_load(&mut con, "session:7", 3000);
    let top = hotkeys(&mut con, &[]);
    assert_eq!(top[0].0, "session:7", "{top:?}");
    assert!(top.iter().all(|(k, _)| k != "user:42"), "{top:?}");
    drop(rt);
    node.shutdown();
}

#[test]
fn bad_arguments_are_redis_style_errors() {
    let node = node();
    let mut con = common::client(&node);
    let err = |con: &mut redis::Connection, args: &[&str]| {
        let mut all = vec!["RINGCACHE.HOTKEYS"];
        all.extend_from_slice(args);
        common::cmd_err(con, &all)
    };
    assert_eq!(err(&mut con, &["COUNT"]), "ERR syntax error");
    assert_eq!(err(&mut con, &["LIMIT", "3"]), "ERR syntax error");
    assert_eq!(err(&mut con, &["COUNT", "3", "extra"]), "ERR syntax error");
    assert_eq!(
        err(&mut con, &["COUNT", "three"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err(&mut con, &["COUNT", "-1"]),
        "ERR value is out of range, must be positive"
    );
    assert_eq!(
        common::cmd::<Vec<redis::Value>>(&mut con, &["ringcache.hotkeys", "Count", "5"]),
        vec![]
    );
    node.shutdown();

    let off = common::start_with(|c| c.hotkeys = false);
    let mut con = common::client(&off);
    common::cmd::<()>(&mut con, &["GET", "k"]);
    assert_eq!(
        common::cmd_err(&mut con, &["RINGCACHE.HOTKEYS"]),
        "ERR hot key detection is off (start the node with --hotkeys=true)"
    );
    let page = common::http_get(off.admin_addr, "/metrics");
    assert!(!page.contains("ringcache_hot_key_ops_per_second{"), "{page}");
    off.shutdown();
}
