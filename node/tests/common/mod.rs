//! Shared helpers for node integration tests: an in-process node on free loopback
//! ports, a real Redis client, and a raw-socket client for exact RESP bytes.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ringcache_node::config::Config;
use ringcache_node::launch::NodeHandle;

/// Starts a node with test defaults, changed by `tweak`.
pub fn start_with(tweak: impl FnOnce(&mut Config)) -> NodeHandle {
    let mut config = Config::for_tests();
    tweak(&mut config);
    NodeHandle::start(&config).expect("node starts on loopback")
}

pub fn start() -> NodeHandle {
    start_with(|_| {})
}

/// A synchronous connection from the `redis` crate.
pub fn client(node: &NodeHandle) -> redis::Connection {
    let url = format!("redis://{}/", node.resp_addr);
    redis::Client::open(url)
        .expect("valid url")
        .get_connection()
        .expect("connects")
}

/// Sends raw bytes and reads until `expect_len` bytes arrived, EOF, or 2 s passed.
pub fn raw(node: &NodeHandle, input: &[u8], expect_len: usize) -> Vec<u8> {
    let mut s = TcpStream::connect(node.resp_addr).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    s.write_all(input).expect("writes");
    read_some(&mut s, expect_len)
}

pub fn read_some(s: &mut TcpStream, expect_len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while out.len() < expect_len {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// Runs a command and returns its value, panicking with the command on error.
pub fn cmd<T: redis::FromRedisValue>(con: &mut redis::Connection, args: &[&str]) -> T {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(con).unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
}

/// Runs a command that must fail, returning the error text (code + message).
pub fn cmd_err(con: &mut redis::Connection, args: &[&str]) -> String {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    match c.query::<redis::Value>(con) {
        Ok(v) => panic!("{args:?} should fail, got {v:?}"),
        Err(e) => match (e.code(), e.detail()) {
            (Some(code), Some(detail)) => format!("{code} {detail}"),
            _ => e.to_string(),
        },
    }
}
