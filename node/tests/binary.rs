//! The `ringcache-node` binary itself: flag errors, environment variables, SIGTERM.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn sigterm_finishes_in_flight_replies_then_exits() {
    let (port, admin, control, proxy) = (free_port(), free_port(), free_port(), free_port());
    let mut child = Command::new(BIN)
        .env("RINGCACHE_PORT", port.to_string())
        .env("RINGCACHE_ADMIN_PORT", admin.to_string())
        .env("RINGCACHE_CONTROL_PORT", control.to_string())
        .env("RINGCACHE_PROXY_PORT", proxy.to_string())
        .env("RINGCACHE_MAXMEMORY", "64mb")
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "node did not report ready");
        match lines.next() {
            Some(Ok(l)) if l.contains("ready") => break,
            Some(_) => continue,
            None => panic!("node exited before ready"),
        }
    }
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    s.write_all(b"SET k v\r\nGET k\r\n").expect("write");
    assert_eq!(common::read_some(&mut s, 12), b"+OK\r\n$1\r\nv\r\n");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(Instant::now() < deadline, "node did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "exit status {code:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("SIGTERM")), "{rest:?}");
}
