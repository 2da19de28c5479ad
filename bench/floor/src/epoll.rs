//! Redis' event loop without Redis: level-triggered epoll; each readable socket is read
//! once and its requests answered into its output buffer; before the next wait every
//! connection with output is written (Redis' `beforeSleep`), so a turn's replies go out
//! back to back. A short write keeps the rest and waits for EPOLLOUT.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::io::FromRawFd;

use crate::conn::{set_nodelay, Conn};

struct Client {
    stream: TcpStream,
    conn: Conn,
    /// EPOLLOUT is registered because a write came up short.
    want_write: bool,
}

pub fn run(listener: TcpListener) -> io::Result<()> {
    // SAFETY: epoll_create1 has no preconditions; a non-negative result is a new fd we own.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `ep` was just returned by epoll_create1 and nothing else owns it.
    let ep = unsafe { OwnedFd::from_raw_fd(ep) };
    let lfd = listener.as_raw_fd();
    ctl(&ep, libc::EPOLL_CTL_ADD, lfd, libc::EPOLLIN)?;
    let mut clients: HashMap<RawFd, Client> = HashMap::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut with_output: Vec<RawFd> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // SAFETY: `events` is a live buffer of the length passed.
        let n = unsafe { libc::epoll_wait(ep.as_raw_fd(), events.as_mut_ptr(), events.len() as i32, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in &events[..n as usize] {
            let fd = ev.u64 as RawFd;
            if fd == lfd {
                accept_all(&listener, &ep, &mut clients)?;
                continue;
            }
            let Some(client) = clients.get_mut(&fd) else { continue };
            if ev.events & libc::EPOLLOUT as u32 != 0 && !with_output.contains(&fd) {
                with_output.push(fd);
            }
            if ev.events & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 == 0 {
                continue;
            }
            let keep = match client.stream.read(&mut buf) {
                Ok(0) => false,
                Ok(n) => client.conn.received(&buf[..n]).is_ok(),
                Err(e) => e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted,
            };
            if !keep {
                // Dropping the stream closes the socket, which also leaves the epoll set.
                clients.remove(&fd);
            } else if !client.conn.out.is_empty() && !with_output.contains(&fd) {
                with_output.push(fd);
            }
        }
        for fd in with_output.drain(..) {
            let Some(client) = clients.get_mut(&fd) else { continue };
            match client.stream.write(&client.conn.out) {
                Ok(n) => {
                    client.conn.out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {
                    clients.remove(&fd);
                    continue;
                }
            }
            let want_write = !client.conn.out.is_empty();
            if want_write != client.want_write {
                let interest = if want_write {
                    libc::EPOLLIN | libc::EPOLLOUT
                } else {
                    libc::EPOLLIN
                };
                ctl(&ep, libc::EPOLL_CTL_MOD, fd, interest)?;
                client.want_write = want_write;
            }
        }
    }
}

fn accept_all(listener: &TcpListener, ep: &OwnedFd, clients: &mut HashMap<RawFd, Client>) -> io::Result<()> {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(true)?;
                let fd = stream.as_raw_fd();
                set_nodelay(fd);
                ctl(ep, libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN)?;
                clients.insert(
                    fd,
                    Client {
                        stream,
                        conn: Conn::default(),
                        want_write: false,
                    },
                );
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted || e.kind() == ErrorKind::ConnectionAborted => {}
            Err(e) => return Err(e),
        }
    }
}

fn ctl(ep: &OwnedFd, op: libc::c_int, fd: RawFd, interest: libc::c_int) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: interest as u32,
        u64: fd as u64,
    };
    // SAFETY: both fds are open and `ev` is a live epoll_event.
    if unsafe { libc::epoll_ctl(ep.as_raw_fd(), op, fd, &mut ev) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
