//! request-floor: the cheapest Redis-protocol request loop this machine can run, with no
//! store and no runtime, to measure what the kernel alone charges a server per request.
//!
//! `request-floor epoll PORT`    Redis' own loop: level-triggered epoll, one read per readable
//!                               socket, all replies written before the next wait.
//! `request-floor io-uring PORT` one `io_uring_enter` per turn: multishot accept, multishot
//!                               receive into a provided buffer ring, the turn's sends
//!                               submitted with the wait for the next completions.
//!
//! Either loop listens on 127.0.0.1:PORT and prints `listening on 127.0.0.1:<port>` on stdout once it
//! listens; PORT 0 takes any free port (tests use it and read the line, so no other socket can take the
//! port between choosing and binding it).
//!
//! bench/node_vs_redis.py runs both next to Redis and ringcache at pipeline 1; Redis' CPU
//! per request divided by this floor's is the best CPU-efficiency ratio any server whose
//! command work cost nothing could reach against Redis on this machine.

mod conn;
mod epoll;
mod resp;
mod uring;

use std::io::Write;
use std::net::TcpListener;

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("usage: request-floor epoll|io-uring PORT (0: any free port; the bound address is printed)")]
    Usage,
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Listen { port: u16, source: std::io::Error },
    #[error("reporting the listening address: {0}")]
    Report(#[source] std::io::Error),
    #[error("event loop failed: {0}")]
    Loop(#[from] std::io::Error),
}

fn main() {
    if let Err(e) = run() {
        eprintln!("request-floor: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, port] = args.as_slice() else {
        return Err(Error::Usage);
    };
    let port: u16 = port.parse().map_err(|_| Error::Usage)?;
    let listener = TcpListener::bind(("127.0.0.1", port)).map_err(|source| Error::Listen { port, source })?;
    if !matches!(mode.as_str(), "epoll" | "io-uring") {
        return Err(Error::Usage);
    }
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr().map_err(Error::Report)?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")
            .and_then(|()| out.flush())
            .map_err(Error::Report)?;
    }
    match mode.as_str() {
        "epoll" => epoll::run(listener)?,
        _ => uring::run(listener)?,
    }
    Ok(())
}
