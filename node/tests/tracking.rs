//! Client-side caching's invalidations for changes no client command made here, which
//! the differential test (tracking scripts against Redis in `against_redis.rs`) cannot
//! stage: a key that expires or is evicted, a key written on the primary while the
//! client tracks it on a replica, and keys of slots this node stops serving (a
//! handover or failover moved them, so later writes happen elsewhere).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use ringcache_core::placement::{next_topology, Member};
use ringcache_core::slot::key_slot;
use ringcache_node::launch::NodeHandle;

/// A RESP3 connection that sends commands and collects what arrives, pushes included.
struct Resp3 {
    write: TcpStream,
    read: BufReader<TcpStream>,
}

impl Resp3 {
    fn open(addr: std::net::SocketAddr) -> Resp3 {
        let s = TcpStream::connect(addr).expect("connects");
        let mut c = Resp3 {
            write: s.try_clone().expect("clone"),
            read: BufReader::new(s),
        };
        c.call(&["HELLO", "3"]);
        c
    }

    fn send(&mut self, args: &[&str]) {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
        self.write.write_all(&req).expect("request");
    }

    /// One complete RESP3 value, as text lines joined by spaces.
    fn value(&mut self) -> String {
        let mut line = String::new();
        self.read.read_line(&mut line).expect("a reply line");
        let line = line.trim_end().to_string();
        let (kind, rest) = line.split_at(1);
        match kind {
            "$" | "=" | "!" => {
                let n: i64 = rest.parse().expect("length");
                if n < 0 {
                    return line;
                }
                let mut body = vec![0; n as usize + 2];
                self.read.read_exact(&mut body).expect("body");
                format!("{line} {}", String::from_utf8_lossy(&body[..n as usize]))
            }
            "*" | ">" | "~" | "%" => {
                let n: usize = rest.parse().expect("count");
                let n = if kind == "%" { 2 * n } else { n };
                let items: Vec<String> = (0..n).map(|_| self.value()).collect();
                format!("{line} [{}]", items.join(", "))
            }
            _ => line,
        }
    }

    /// Sends a command and returns its reply (pushes before it are skipped).
    fn call(&mut self, args: &[&str]) -> String {
        self.send(args);
        loop {
            let v = self.value();
            if !v.starts_with('>') {
                return v;
            }
        }
    }

    /// Waits up to `limit` for an invalidation push naming `key` (or a flush, `None`).
    fn invalidated(&mut self, key: Option<&str>, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let wanted = match key {
            Some(k) => format!("${} {k}", k.len()),
            None => "invalidate, _".to_string(),
        };
        let stream = self.read.get_ref().try_clone().expect("clone");
        while Instant::now() < deadline {
            stream
                .set_read_timeout(Some(
                    deadline
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(1)),
                ))
                .expect("timeout");
            let mut peek = [0u8; 1];
            if self.read.buffer().is_empty() && stream.peek(&mut peek).is_err() {
                break;
            }
            let v = self.value();
            if v.starts_with(">2") && v.contains("invalidate") && v.contains(&wanted) {
                stream.set_read_timeout(None).expect("timeout");
                return true;
            }
        }
        stream.set_read_timeout(None).expect("timeout");
        false
    }
}

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn an_expired_key_is_invalidated() {
    let node = start();
    let mut tracker = Resp3::open(node.resp_addr);
    let mut writer = client(&node);
    cmd::<()>(&mut writer, &["SET", "session", "v", "PX", "200"]);
    assert_eq!(tracker.call(&["CLIENT", "TRACKING", "on"]), "+OK");
    assert_eq!(tracker.call(&["GET", "session"]), "$1 v");
    // Nobody touches it: the active expiry deletes it and the tracker hears of it.
    assert!(
        tracker.invalidated(Some("session"), WAIT),
        "no invalidation after expiry"
    );
    node.shutdown();
}

#[test]
fn an_evicted_key_is_invalidated() {
    // allkeys-lru: the key read longest ago goes first (s3fifo would keep a key that
    // was read while it evicts the fillers nobody read).
    let node = start_with(|c| {
        c.maxmemory = Some(2 << 20);
        c.maxmemory_policy = ringcache_node::store::Policy::AllKeysLru;
    });
    let mut tracker = Resp3::open(node.resp_addr);
    let mut writer = client(&node);
    cmd::<()>(&mut writer, &["SET", "cached", "v"]);
    assert_eq!(tracker.call(&["CLIENT", "TRACKING", "on"]), "+OK");
    assert_eq!(tracker.call(&["GET", "cached"]), "$1 v");
    // Fill well past maxmemory: `cached` is never read again, so it goes.
    let value = "x".repeat(1000);
    for i in 0..10_000 {
        cmd::<()>(&mut writer, &["SET", &format!("filler:{i}"), &value]);
    }
    assert_eq!(cmd::<Option<String>>(&mut writer, &["GET", "cached"]), None, "evicted");
    assert!(
        tracker.invalidated(Some("cached"), WAIT),
        "no invalidation after eviction"
    );
    node.shutdown();
}

/// Two nodes, two copies of every slot: each node is replica of the other's slots.
fn pair() -> (Vec<NodeHandle>, ringcache_core::topology::Topology) {
    let nodes: Vec<NodeHandle> = ["a", "b"].iter().map(|id| cluster_node(id)).collect();
    let topo = form(&nodes, 2);
    (nodes, topo)
}

#[test]
fn a_write_on_the_primary_invalidates_a_reader_of_the_replica() {
    let (nodes, topo) = pair();
    let key = "profile:7";
    let owners = topo.owners_of(key_slot(key.as_bytes()));
    let node = |id: &str| nodes.iter().find(|n| n.state.cluster.node_id == id).expect("node");
    let (primary, replica) = (node(&owners[0]), node(&owners[1]));
    let mut writer = client(primary);
    cmd::<()>(&mut writer, &["SET", key, "old"]);
    let mut tracker = Resp3::open(replica.resp_addr);
    assert_eq!(tracker.call(&["READONLY"]), "+OK");
    assert_eq!(tracker.call(&["CLIENT", "TRACKING", "on"]), "+OK");
    let deadline = Instant::now() + WAIT;
    while tracker.call(&["GET", key]) != "$3 old" {
        assert!(Instant::now() < deadline, "the replica never got the first write");
        std::thread::sleep(Duration::from_millis(20));
    }
    cmd::<()>(&mut writer, &["SET", key, "new"]);
    assert!(
        tracker.invalidated(Some(key), WAIT),
        "no invalidation for a replicated write"
    );
    for n in nodes {
        n.shutdown();
    }
}

#[test]
fn keys_of_slots_this_node_stops_serving_are_invalidated() {
    // a and b serve everything; then c joins and takes a third of the slots.
    let nodes: Vec<NodeHandle> = ["a", "b", "c"].iter().map(|id| cluster_node(id)).collect();
    let infos: Vec<_> = nodes.iter().map(info).collect();
    let members = |ids: &[&str]| ids.iter().map(|id| Member::new(id.to_string())).collect::<Vec<_>>();
    let before = next_topology(None, &infos, &members(&["a", "b"]), 1).expect("placement");
    for n in &nodes[..2] {
        n.state.cluster.apply(before.clone()).expect("topology applies");
    }
    let after = next_topology(Some(&before), &infos, &members(&["a", "b", "c"]), 1).expect("placement");
    let a = &nodes[0];
    // A key that moves from a to c, read by a tracking client and a BCAST client.
    let owner = |t: &ringcache_core::topology::Topology, k: &str| t.owners_of(key_slot(k.as_bytes()))[0].clone();
    let key = (0..)
        .map(|i| format!("user:{i}"))
        .find(|k| owner(&before, k) == "a" && owner(&after, k) == "c")
        .expect("a key that moves from a to c");
    let mut writer = client(a);
    cmd::<()>(&mut writer, &["SET", &key, "v"]);
    let mut tracker = Resp3::open(a.resp_addr);
    assert_eq!(tracker.call(&["CLIENT", "TRACKING", "on"]), "+OK");
    assert_eq!(tracker.call(&["GET", &key]), "$1 v");
    let mut bcast = Resp3::open(a.resp_addr);
    assert_eq!(bcast.call(&["CLIENT", "TRACKING", "on", "BCAST"]), "+OK");
    // Let the forwarder note what a serves before the topology changes.
    std::thread::sleep(Duration::from_millis(200));
    for n in &nodes {
        n.state.cluster.apply(after.clone()).expect("topology applies");
    }
    assert!(
        tracker.invalidated(Some(&key), WAIT),
        "no invalidation for a lost slot's key"
    );
    assert!(bcast.invalidated(None, WAIT), "no flush for a BCAST client");
    for n in nodes {
        n.shutdown();
    }
}
