//! The `ringcache-node` binary itself: flag errors, environment variables, SIGTERM.

mod common;
mod ports;

use std::io::{BufRead, BufReader, Lines, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringcache-node");

#[test]
fn a_wrong_flag_value_exits_with_one_line_naming_the_flag() {
    for (args, env, flag) in [
        (vec!["--maxmemory", "lots"], None, "--maxmemory"),
        (vec!["--maxmemory-policy", "lfu"], None, "--maxmemory-policy"),
        (vec!["--port", "99999"], None, "--port"),
        (vec![], Some(("RINGCACHE_ADMIN_PORT", "x")), "--admin-port"),
    ] {
        let mut c = Command::new(BIN);
        c.args(&args);
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        let out = c.output().expect("runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line expected: {stderr}");
        assert!(stderr.contains(flag), "{stderr} should name {flag}");
    }
}

/// The node binary started on fresh ports (see `ports`), after it reported ready, with
/// the rest of its stderr.
struct Started {
    child: Child,
    port: u16,
    lines: Lines<BufReader<ChildStderr>>,
}

impl Drop for Started {
    fn drop(&mut self) {
        // A failed assertion must not leave the node running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node() -> Started {
    ports::start_on_fresh_ports("ringcache-node", 4, try_start_node)
}

/// Starts the node on `p` (RESP, admin, control, proxy port); `PortInUse` when one is taken.
fn try_start_node(p: &[u16]) -> ports::Start<Started> {
    let mut child = Command::new(BIN)
        .env("RINGCACHE_PORT", p[0].to_string())
        .env("RINGCACHE_ADMIN_PORT", p[1].to_string())
        .env("RINGCACHE_CONTROL_PORT", p[2].to_string())
        .env("RINGCACHE_PROXY_PORT", p[3].to_string())
        .env("RINGCACHE_REPLICA_PORT", "0")
        .env("RINGCACHE_MAXMEMORY", "64mb")
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("node did not report ready: {seen:?}");
        }
        match lines.next() {
            // Not just "ready": "Address already in use" contains it too.
            Some(Ok(l)) if l.contains("ringcache-node ready") => {
                return ports::Start::Up(Started {
                    child,
                    port: p[0],
                    lines,
                })
            }
            Some(Ok(l)) => seen.push(l),
            Some(Err(e)) => panic!("reading the node's stderr: {e}"),
            None => {
                let status = child.wait().expect("wait");
                let out = seen.join("\n");
                if ports::says_address_in_use(&out) {
                    return ports::Start::PortInUse(out);
                }
                panic!("node exited before ready ({status}): {out}");
            }
        }
    }
}

#[test]
fn a_taken_port_is_reported_as_in_use_so_the_start_is_retried() {
    // Whoever holds the admin port (here: this test) makes the node fail to start.
    let (ports, holder) = (0..20)
        .find_map(|_| {
            let ports = ports::random_ports(4);
            let holder = std::net::TcpListener::bind(("127.0.0.1", ports[1])).ok()?;
            Some((ports, holder))
        })
        .expect("a port this test can hold");
    match try_start_node(&ports) {
        ports::Start::PortInUse(out) => assert!(out.contains(&ports[1].to_string()), "{out}"),
        ports::Start::Up(_) => panic!("the node started although port {} is taken", ports[1]),
    }
    drop(holder);
}

#[test]
fn sigterm_finishes_in_flight_replies_then_exits() {
    let mut node = start_node();
    let mut s = TcpStream::connect(("127.0.0.1", node.port)).expect("connects");
    s.write_all(b"SET k v\r\nGET k\r\n").expect("write");
    assert_eq!(common::read_some(&mut s, 12), b"+OK\r\n$1\r\nv\r\n");
    let status = Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(st) = node.child.try_wait().expect("wait") {
            break st;
        }
        assert!(Instant::now() < deadline, "node did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "exit status {code:?}");
    let rest: Vec<String> = node.lines.by_ref().map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("SIGTERM")), "{rest:?}");
}
