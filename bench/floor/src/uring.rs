//! The same loop on io_uring, with what io_uring offers to cut system calls: one
//! `io_uring_enter` per turn both submits the turn's sends and waits for the next
//! completions; accept and receive are multishot (armed once per socket), receiving into
//! a ring of provided buffers; the ring is single-issuer with deferred task work, so
//! completions are processed in this thread when it enters the kernel.

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use crate::conn::{set_nodelay, Conn};

const BUFFER_GROUP: u16 = 1;
const BUFFERS: u16 = 1024;
const BUFFER_SIZE: usize = 4096;

const ACCEPT: u64 = 0;
const RECV: u64 = 1;
const SEND: u64 = 2;

fn user_data(fd: RawFd, op: u64) -> u64 {
    ((fd as u64) << 2) | op
}

struct Client {
    fd: OwnedFd,
    conn: Conn,
    /// Bytes handed to the kernel by the send in flight (if any), and how many it took so far.
    sending: Vec<u8>,
    sent: usize,
    send_in_flight: bool,
    /// The multishot receive has ended (peer closed, error, or shut down after bad input).
    recv_ended: bool,
}

pub fn run(listener: TcpListener) -> io::Result<()> {
    // Declared before the ring, so it is dropped after the ring that reads it.
    let mut buffers = BufferRing::new()?;
    let mut ring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(4096)?;
    // SAFETY: the ring memory is page-aligned, holds BUFFERS entries and outlives `ring`.
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(buffers.ring as u64, BUFFERS, BUFFER_GROUP, 0)?
    };
    let lfd = listener.as_raw_fd();
    let mut clients: HashMap<RawFd, Client> = HashMap::new();
    let mut submissions = vec![opcode::AcceptMulti::new(types::Fd(lfd))
        .build()
        .user_data(user_data(lfd, ACCEPT))];
    let mut with_output: Vec<RawFd> = Vec::new();
    loop {
        for entry in submissions.drain(..) {
            // SAFETY: every buffer an entry points at lives in `clients` until its completion.
            while unsafe { ring.submission().push(&entry) }.is_err() {
                ring.submit()?;
            }
        }
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let completions: Vec<(u64, i32, u32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result(), c.flags()))
            .collect();
        for (data, res, flags) in completions {
            let fd = (data >> 2) as RawFd;
            match data & 3 {
                ACCEPT => {
                    if res >= 0 {
                        // SAFETY: a non-negative accept result is a new socket we own.
                        let socket = unsafe { OwnedFd::from_raw_fd(res) };
                        set_nodelay(res);
                        clients.insert(res, Client::new(socket));
                        submissions.push(receive(res));
                    }
                    if !cqueue::more(flags) {
                        submissions.push(opcode::AcceptMulti::new(types::Fd(lfd)).build().user_data(data));
                    }
                }
                RECV => {
                    let Some(client) = clients.get_mut(&fd) else { continue };
                    if let Some(id) = cqueue::buffer_select(flags) {
                        if res > 0 && client.conn.received(buffers.get(id, res as usize)).is_err() {
                            // Bad input: stop receiving; the final completion comes back here.
                            // SAFETY: shutdown on an open socket.
                            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
                        }
                        buffers.give_back(id);
                    }
                    if !cqueue::more(flags) {
                        if res > 0 || res == -libc::ENOBUFS {
                            submissions.push(receive(fd));
                        } else {
                            client.recv_ended = true;
                        }
                    }
                    if !client.conn.out.is_empty() && !with_output.contains(&fd) {
                        with_output.push(fd);
                    }
                }
                _ => {
                    let Some(client) = clients.get_mut(&fd) else { continue };
                    client.send_in_flight = false;
                    if res < 0 {
                        client.sending.clear();
                        // SAFETY: shutdown on an open socket; ends the multishot receive.
                        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
                    } else {
                        client.sent += res as usize;
                        if client.sent == client.sending.len() {
                            client.sending.clear();
                            client.sent = 0;
                        }
                    }
                    if !with_output.contains(&fd) {
                        with_output.push(fd);
                    }
                }
            }
            if clients.get(&fd).is_some_and(|c| c.recv_ended && !c.send_in_flight) {
                clients.remove(&fd);
            }
        }
        for fd in with_output.drain(..) {
            if let Some(send) = clients.get_mut(&fd).and_then(Client::next_send) {
                submissions.push(send);
            }
        }
    }
}

fn receive(fd: RawFd) -> squeue::Entry {
    opcode::RecvMulti::new(types::Fd(fd), BUFFER_GROUP)
        .build()
        .user_data(user_data(fd, RECV))
}

impl Client {
    fn new(fd: OwnedFd) -> Self {
        Client {
            fd,
            conn: Conn::default(),
            sending: Vec::new(),
            sent: 0,
            send_in_flight: false,
            recv_ended: false,
        }
    }

    /// A send of what is left of the last send, or else of the replies waiting, if any.
    fn next_send(&mut self) -> Option<squeue::Entry> {
        if self.send_in_flight || self.recv_ended {
            return None;
        }
        if self.sending.is_empty() {
            std::mem::swap(&mut self.sending, &mut self.conn.out);
        }
        let rest = &self.sending[self.sent..];
        if rest.is_empty() {
            return None;
        }
        self.send_in_flight = true;
        let fd = self.fd.as_raw_fd();
        Some(
            opcode::Send::new(types::Fd(fd), rest.as_ptr(), rest.len() as u32)
                .build()
                .user_data(user_data(fd, SEND)),
        )
    }
}

/// Receive buffers the kernel picks from: a ring of `io_uring_buf` entries
/// (addr u64, len u32, bid u16, resv u16, whose first `resv` is the ring's tail).
struct BufferRing {
    ring: *mut u8,
    memory: Vec<u8>,
    tail: u16,
}

impl BufferRing {
    fn new() -> io::Result<Self> {
        let bytes = BUFFERS as usize * 16;
        // SAFETY: an anonymous private mapping; the result is checked below.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut buffers = BufferRing {
            ring: ring.cast(),
            memory: vec![0; BUFFERS as usize * BUFFER_SIZE],
            tail: 0,
        };
        for id in 0..BUFFERS {
            buffers.give_back(id);
        }
        Ok(buffers)
    }

    fn get(&self, id: u16, len: usize) -> &[u8] {
        let start = id as usize * BUFFER_SIZE;
        &self.memory[start..start + len.min(BUFFER_SIZE)]
    }

    /// Puts buffer `id` at the tail and publishes the new tail to the kernel.
    fn give_back(&mut self, id: u16) {
        let slot = (self.tail & (BUFFERS - 1)) as usize;
        let addr = self.memory.as_ptr() as u64 + (id as usize * BUFFER_SIZE) as u64;
        // SAFETY: `slot` < BUFFERS, so the 16-byte entry lies inside the mapping; the kernel
        // reads entries only up to the published tail, which moves past this one below.
        unsafe {
            let entry = self.ring.add(slot * 16);
            entry.cast::<u64>().write(addr);
            entry.add(8).cast::<u32>().write(BUFFER_SIZE as u32);
            entry.add(12).cast::<u16>().write(id);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: offset 14 (entry 0's resv) is the shared tail, 2-byte aligned in the mapping.
        let tail = unsafe { &*self.ring.add(14).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufferRing {
    fn drop(&mut self) {
        // SAFETY: `ring` is the mapping made in `new`, of this length, unmapped once.
        unsafe { libc::munmap(self.ring.cast(), BUFFERS as usize * 16) };
    }
}
