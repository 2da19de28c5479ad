//! A tiny pod for harness tests: a TCP echo server that also answers `GET` with HTTP 200.
//!
//! Binds `$POD_IP:<port>` (never 0.0.0.0: pods share the host network namespace).
//! Usage: testpod [--port N] [--bind IP] [--ignore-sigterm] [--exit CODE]
//! `--exit CODE` exits at once with CODE (for Jobs and restart policies).
//! SIGTERM exits 0 (graceful) unless `--ignore-sigterm`, which makes the kubelet's SIGKILL after the grace period
//! observable.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

extern "C" fn on_sigterm(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0) }
}

fn serve(mut s: TcpStream, name: &str) {
    let mut buf = [0u8; 4096];
    let n = match s.read(&mut buf) {
        Ok(0) | Err(_) => return,
        Ok(n) => n,
    };
    if buf[..n].starts_with(b"GET ") {
        let body = format!("ok {name}\n");
        let _ = write!(
            s,
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        return;
    }
    if s.write_all(&buf[..n]).is_err() {
        return;
    }
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn main() {
    let mut port: u16 = 8080;
    let mut bind = std::env::var("POD_IP").ok();
    let mut ignore_term = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => {
                port = match args.next().and_then(|p| p.parse().ok()) {
                    Some(p) => p,
                    None => {
                        eprintln!("testpod: --port needs a number");
                        std::process::exit(2);
                    }
                }
            }
            "--bind" => bind = args.next(),
            "--ignore-sigterm" => ignore_term = true,
            "--exit" => {
                let code = args.next().and_then(|c| c.parse().ok()).unwrap_or(0);
                eprintln!("testpod: exiting with {code}");
                std::process::exit(code);
            }
            other => {
                eprintln!("testpod: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let Some(bind) = bind else {
        eprintln!("testpod: set POD_IP (downward API status.podIP) or --bind");
        std::process::exit(2);
    };
    // SAFETY: installing a handler that only calls _exit.
    unsafe {
        if ignore_term {
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
        } else {
            libc::signal(libc::SIGTERM, on_sigterm as *const () as libc::sighandler_t);
        }
    }
    let name = std::env::var("POD_NAME").unwrap_or_else(|_| "testpod".into());
    let listener = match TcpListener::bind((bind.as_str(), port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("testpod: bind {bind}:{port}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("testpod {name} listening on {bind}:{port}");
    for s in listener.incoming().flatten() {
        let name = name.clone();
        std::thread::spawn(move || serve(s, &name));
    }
}
