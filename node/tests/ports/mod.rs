//! Ports for the servers node tests start as child processes (the `ringcache-node` binary,
//! Debian's `redis-server`).
//!
//! Binding port 0, releasing it and handing the number to a child races with every other
//! socket on the machine: any outgoing connection may get it as its ephemeral source port
//! (the kernel picks those from `/proc/sys/net/ipv4/ip_local_port_range`, 32768–60999 by
//! default), and a probe connecting to a port nobody listens on in that range can even
//! connect to itself. So ports here come from below the ephemeral range (10000–32767 by
//! default), which only explicit binds use, and a start that fails because another
//! listener holds a port is retried with fresh ports.
//! (`ringcache-node` binds its RESP port once per worker thread with `SO_REUSEPORT`, so
//! it cannot bind port 0 and report it.)
#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// How often a start is tried with new ports before the test gives up.
const ATTEMPTS: usize = 20;

/// What one start attempt found.
pub enum Start<T> {
    /// The server listens on the ports it was given.
    Up(T),
    /// A port was taken by another socket; the text says which (for the log).
    PortInUse(String),
}

/// The inclusive range tests pick ports from: below the kernel's ephemeral range (or
/// above it when that leaves more room).
pub fn port_range() -> (u16, u16) {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32_768, 60_999));
    let below = (10_000, ephemeral.0.saturating_sub(1));
    let above = (ephemeral.1.saturating_add(1), u16::MAX);
    let room = |(lo, hi): (u16, u16)| hi.saturating_sub(lo);
    if room(below) >= room(above) && room(below) > 0 {
        below
    } else if room(above) > 0 {
        above
    } else {
        // The ephemeral range covers everything: retrying is all that is left.
        (10_000, 32_767)
    }
}

/// `n` distinct random ports from [`port_range`].
pub fn random_ports(n: usize) -> Vec<u16> {
    let (lo, hi) = port_range();
    let span = u64::from(hi - lo) + 1;
    let mut ports = Vec::with_capacity(n);
    while ports.len() < n {
        let mut h = RandomState::new().build_hasher();
        h.write_usize(ports.len());
        let port = lo + (h.finish() % span) as u16;
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

/// Calls `start` with `n` fresh ports until it reports [`Start::Up`]; panics after
/// [`ATTEMPTS`] starts that all found a port in use.
pub fn start_on_fresh_ports<T>(what: &str, n: usize, mut start: impl FnMut(&[u16]) -> Start<T>) -> T {
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        let ports = random_ports(n);
        match start(&ports) {
            Start::Up(t) => return t,
            Start::PortInUse(detail) => {
                eprintln!("{what}: a port of {ports:?} is in use ({detail}); retrying with other ports");
                last = detail;
            }
        }
    }
    panic!("{what}: {ATTEMPTS} attempts all found a port in use; last: {last}");
}

/// Whether a server's error output says that its bind failed because the address is taken.
pub fn says_address_in_use(output: &str) -> bool {
    output.contains("Address already in use") || output.contains("os error 98")
}

#[test]
fn ports_are_distinct_and_outside_the_ephemeral_range() {
    let (lo, hi) = port_range();
    assert!(lo <= hi);
    let ports = random_ports(50);
    for (i, p) in ports.iter().enumerate() {
        assert!((lo..=hi).contains(p), "{p} outside {lo}-{hi}");
        assert!(!ports[..i].contains(p), "{p} twice");
    }
    if let Ok(s) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") {
        let bounds: Vec<u16> = s.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        if let [elo, ehi] = bounds[..] {
            if elo > 10_001 || ehi < 65_534 {
                assert!(
                    ports.iter().all(|p| !(elo..=ehi).contains(p)),
                    "{ports:?} in {elo}-{ehi}"
                );
            }
        }
    }
}

#[test]
fn a_start_that_finds_a_port_in_use_is_retried_with_other_ports() {
    let mut tried: Vec<Vec<u16>> = Vec::new();
    let got = start_on_fresh_ports("test", 2, |p| {
        tried.push(p.to_vec());
        if tried.len() < 3 {
            Start::PortInUse(format!("{p:?} taken"))
        } else {
            Start::Up(p.to_vec())
        }
    });
    assert_eq!(tried.len(), 3);
    assert_eq!(Some(&got), tried.last());
}
