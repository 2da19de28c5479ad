//! Both loops of request-floor, as a client sees them: every pipelined request gets its
//! reply in order, replies larger than the socket buffer arrive whole (short writes),
//! a request split across reads is answered once complete, and bad input closes only
//! that connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

const GET_REPLY_LEN: usize = 5 + 64 + 2;

/// A running request-floor. It binds port 0 and prints the address it bound, so no other
/// socket (an ephemeral source port, another test's server) can take the port first.
struct Floor {
    child: Child,
    addr: SocketAddr,
    /// Kept open so that the server never writes into a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl Floor {
    fn start(mode: &str) -> Floor {
        let mut child = Command::new(env!("CARGO_BIN_EXE_request-floor"))
            .args([mode, "0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("request-floor starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("request-floor's stdout");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse::<SocketAddr>().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let status = child.wait();
            panic!("request-floor {mode} did not report its address: {line:?}, {status:?}");
        };
        Floor {
            child,
            addr,
            _stdout: stdout,
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        s
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_exactly(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).expect("all replies arrive");
    buf
}

fn check(mode: &str) {
    let floor = Floor::start(mode);

    // 100k pipelined GETs: 7.1 MB of replies, far more than a socket buffer, read
    // only after all requests are written, so the server's sends come up short.
    let mut s = floor.connect();
    let n = 100_000;
    let writer = {
        let mut w = s.try_clone().expect("clone");
        std::thread::spawn(move || {
            let req = b"*2\r\n$3\r\nGET\r\n$5\r\nkey:1\r\n".repeat(n);
            w.write_all(&req).expect("requests written");
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let replies = read_exactly(&mut s, n * GET_REPLY_LEN);
    writer.join().expect("writer");
    assert!(replies
        .chunks(GET_REPLY_LEN)
        .all(|r| r.starts_with(b"$64\r\n") && r.ends_with(b"x\r\n")));

    // A request split across two reads, then a mixed pipeline, answered in order.
    s.write_all(b"*1\r\n$4\r\nPI").expect("write");
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"NG\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*1\r\n$4\r\nping\r\n")
        .expect("write");
    assert_eq!(read_exactly(&mut s, 7 + 5 + 7), b"+PONG\r\n+OK\r\n+PONG\r\n");

    // Bad input closes that connection; the other one is still served.
    let mut bad = floor.connect();
    bad.write_all(b"PING\r\n").expect("write");
    let mut rest = Vec::new();
    assert_eq!(bad.read_to_end(&mut rest).expect("closed cleanly"), 0);
    s.write_all(b"*1\r\n$4\r\nPING\r\n").expect("write");
    assert_eq!(read_exactly(&mut s, 7), b"+PONG\r\n");
}

#[test]
fn epoll_loop_answers_pipelines_short_writes_and_closes_on_bad_input() {
    check("epoll");
}

#[test]
fn io_uring_loop_answers_pipelines_short_writes_and_closes_on_bad_input() {
    check("io-uring");
}
