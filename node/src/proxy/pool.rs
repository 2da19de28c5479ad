//! Per-worker pool of upstream connections to key owners' RESP ports.
//!
//! One multiplexed connection per (owner address, protocol version) and worker
//! thread. Requests from every proxy client of the worker are written to it in the
//! order they are sent (a writer task batches whatever is queued into one write), and
//! replies come back in the same order: the reader task hands each complete reply to
//! the oldest waiter in a FIFO. In-flight requests per connection are capped by a
//! semaphore, so a slow owner makes senders wait instead of growing buffers.
//!
//! Connecting happens in the connection's own task: requests queue meanwhile, so a
//! client pipeline never stalls on a connect to one owner while it has requests for
//! others. A connection that fails is marked dead, its waiters get an error, and the
//! next request reconnects. After a failed connect the owner is reported down (with
//! the connect error) for a short while instead of being retried by every request.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use tracing::debug;

use super::reply::{self, Progress};

/// Requests in flight on one upstream connection before senders wait.
pub const MAX_IN_FLIGHT: usize = 4096;
/// Bytes the writer gathers into one write.
const WRITE_BATCH: usize = 64 * 1024;
const READ_CHUNK: usize = 16 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an owner whose connect failed is reported down without a new attempt.
const DOWN_FOR: Duration = Duration::from_millis(200);

/// Why an upstream request got no reply.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PoolError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("connect to {addr} timed out")]
    ConnectTimeout { addr: String },
    #[error("{addr} refused the proxy's handshake: {reply}")]
    Handshake { addr: String, reply: String },
    #[error("{addr} has too many requests in flight")]
    Busy { addr: String },
    #[error("connection to {addr} lost")]
    Closed { addr: String },
    #[error("{addr} sent an invalid reply: {source}")]
    Protocol { addr: String, source: reply::ReplyError },
}

/// Where a reply arrives.
pub type ReplyRx = oneshot::Receiver<Result<Bytes, PoolError>>;
type ReplyTx = oneshot::Sender<Result<Bytes, PoolError>>;

struct Job {
    request: Bytes,
    reply: ReplyTx,
    permit: OwnedSemaphorePermit,
}

struct Waiter {
    reply: ReplyTx,
    _permit: OwnedSemaphorePermit,
}

/// State shared by one connection's writer and reader tasks.
struct Link {
    addr: String,
    dead: Cell<bool>,
    waiters: RefCell<VecDeque<Waiter>>,
    /// Set when the connect failed: the owner is reported down for [`DOWN_FOR`].
    connect_failed_at: Cell<Option<Instant>>,
    last_error: RefCell<Option<PoolError>>,
}

impl Link {
    /// Marks the connection dead and fails every request still waiting on it.
    fn fail(&self, err: PoolError) {
        self.dead.set(true);
        let waiters: Vec<Waiter> = self.waiters.borrow_mut().drain(..).collect();
        for w in waiters {
            let _ = w.reply.send(Err(err.clone()));
        }
    }

    /// The error a request on this dead connection gets.
    fn error(&self) -> PoolError {
        self.last_error.borrow().clone().unwrap_or_else(|| self.closed())
    }

    fn closed(&self) -> PoolError {
        PoolError::Closed {
            addr: self.addr.clone(),
        }
    }
}

struct Upstream {
    tx: mpsc::Sender<Job>,
    permits: Arc<Semaphore>,
    link: Rc<Link>,
    /// The connection task (connect, then write), to stop it when the owner stops
    /// answering; it stops the reader it spawned when it ends.
    task: AbortHandle,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // Nobody can queue more requests; the task ends by itself once the queue is
        // drained, unless it is stuck writing to an owner that does not read.
        if self.link.dead.get() {
            self.task.abort();
        }
    }
}

/// What an upstream connection is set up for: RESP3 (`HELLO 3`, for clients that
/// said it), and replica reads (`READONLY`, for hot-key reads spread over a slot's
/// copies, see `hot.rs`). Requests go on a connection of their lane only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Lane {
    pub resp3: bool,
    pub readonly: bool,
}

/// Upstream connections of one worker thread (not `Send`: lives on a `LocalSet`).
#[derive(Default)]
pub struct Pool {
    conns: RefCell<HashMap<(String, Lane), Rc<Upstream>>>,
}

impl Pool {
    pub fn new() -> Pool {
        Pool::default()
    }

    /// Queues `request` (an encoded RESP command) to `addr`, on a connection of `lane`,
    /// authenticating with `password` when connecting. Returns
    /// where the reply will arrive. Never waits for a connect (requests queue while
    /// the connection is being made); waits at most `wait` for a free in-flight slot.
    pub async fn send(
        &self,
        addr: &str,
        lane: Lane,
        password: Option<&str>,
        request: Bytes,
        wait: Duration,
    ) -> Result<ReplyRx, PoolError> {
        let up = self.upstream(addr, lane, password)?;
        let permit = match tokio::time::timeout(wait, up.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(up.link.error()),
            Err(_) => {
                self.reset(addr, lane);
                return Err(PoolError::Busy { addr: addr.to_string() });
            }
        };
        if up.link.dead.get() {
            return Err(up.link.error());
        }
        let (reply, rx) = oneshot::channel();
        up.tx
            .send(Job { request, reply, permit })
            .await
            .map_err(|_| up.link.error())?;
        Ok(rx)
    }

    /// Drops the connection to `addr` (e.g. after a reply timed out): its waiters get
    /// an error, its tasks stop, and the next request reconnects.
    pub fn reset(&self, addr: &str, lane: Lane) {
        let removed = self.conns.borrow_mut().remove(&(addr.to_string(), lane));
        if let Some(up) = removed {
            up.link.fail(up.link.closed());
            up.task.abort();
        }
    }

    fn upstream(&self, addr: &str, lane: Lane, password: Option<&str>) -> Result<Rc<Upstream>, PoolError> {
        let key = (addr.to_string(), lane);
        if let Some(up) = self.conns.borrow().get(&key) {
            if !up.link.dead.get() {
                return Ok(up.clone());
            }
            if let Some(at) = up.link.connect_failed_at.get() {
                if at.elapsed() < DOWN_FOR {
                    return Err(up.link.error());
                }
            }
        }
        let up = Rc::new(start(addr, lane, password.map(str::to_string)));
        self.conns.borrow_mut().insert(key, up.clone());
        Ok(up)
    }
}

/// Encodes a command as a RESP multibulk.
pub fn encode_request(args: &[Bytes]) -> Bytes {
    let mut out = BytesMut::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out.freeze()
}

/// Creates an upstream whose task connects in the background, then writes.
fn start(addr: &str, lane: Lane, password: Option<String>) -> Upstream {
    let link = Rc::new(Link {
        addr: addr.to_string(),
        dead: Cell::new(false),
        waiters: RefCell::new(VecDeque::new()),
        connect_failed_at: Cell::new(None),
        last_error: RefCell::new(None),
    });
    let (tx, rx) = mpsc::channel(MAX_IN_FLIGHT);
    let task = tokio::task::spawn_local(run(lane, password, rx, link.clone())).abort_handle();
    Upstream {
        tx,
        permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        link,
        task,
    }
}

/// Connects, then runs the writer (and spawns the reader). A failed connect fails
/// every request queued meanwhile with the connect error.
async fn run(lane: Lane, password: Option<String>, mut rx: mpsc::Receiver<Job>, link: Rc<Link>) {
    let stream = match connect(&link.addr, lane, password.as_deref()).await {
        Ok(s) => s,
        Err(e) => {
            debug!(addr = %link.addr, error = %e, "proxy: cannot reach owner");
            link.connect_failed_at.set(Some(Instant::now()));
            *link.last_error.borrow_mut() = Some(e.clone());
            link.dead.set(true);
            rx.close();
            while let Some(job) = rx.recv().await {
                let _ = job.reply.send(Err(e.clone()));
            }
            return;
        }
    };
    let (rd, wr) = stream.into_split();
    let reader_task = tokio::task::spawn_local(reader(rd, link.clone())).abort_handle();
    // If this task is aborted (Pool::reset), the guard stops the reader too.
    let guard = AbortOnDrop(reader_task);
    writer(wr, rx, &link).await;
    // The queue closed normally: the reader still collects the replies owed.
    std::mem::forget(guard);
}

/// Aborts a task when dropped (the connection task was aborted).
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn connect(addr: &str, lane: Lane, password: Option<&str>) -> Result<TcpStream, PoolError> {
    let connect_err = |e: std::io::Error| PoolError::Connect {
        addr: addr.to_string(),
        reason: e.to_string(),
    };
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| PoolError::ConnectTimeout { addr: addr.to_string() })?
        .map_err(connect_err)?;
    let _ = stream.set_nodelay(true);
    let mut handshake: Vec<Vec<Bytes>> = Vec::new();
    if let Some(pw) = password {
        handshake.push(vec![Bytes::from_static(b"AUTH"), Bytes::copy_from_slice(pw.as_bytes())]);
    }
    if lane.resp3 {
        handshake.push(vec![Bytes::from_static(b"HELLO"), Bytes::from_static(b"3")]);
    }
    if lane.readonly {
        handshake.push(vec![Bytes::from_static(b"READONLY")]);
    }
    if !handshake.is_empty() {
        let hs = async {
            for cmd in &handshake {
                stream.write_all(&encode_request(cmd)).await.map_err(connect_err)?;
            }
            let mut buf = BytesMut::with_capacity(1024);
            for _ in &handshake {
                let frame = loop {
                    match reply::frame_len(&buf) {
                        Ok(Some(n)) => break buf.split_to(n),
                        Ok(None) => {}
                        Err(source) => {
                            return Err(PoolError::Protocol {
                                addr: addr.to_string(),
                                source,
                            })
                        }
                    }
                    if stream.read_buf(&mut buf).await.map_err(connect_err)? == 0 {
                        return Err(PoolError::Closed { addr: addr.to_string() });
                    }
                };
                if reply::is_error(&frame) {
                    return Err(PoolError::Handshake {
                        addr: addr.to_string(),
                        reply: String::from_utf8_lossy(&frame).trim_end().to_string(),
                    });
                }
            }
            Ok(())
        };
        tokio::time::timeout(CONNECT_TIMEOUT, hs)
            .await
            .map_err(|_| PoolError::ConnectTimeout { addr: addr.to_string() })??;
    }
    debug!(
        addr,
        resp3 = lane.resp3,
        readonly = lane.readonly,
        "proxy: connected to owner"
    );
    Ok(stream)
}

/// Writes queued requests, registering each waiter before its bytes leave, so the
/// reader always finds the waiter of the reply it parses.
async fn writer(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Job>, link: &Link) {
    let mut buf = BytesMut::with_capacity(WRITE_BATCH);
    while let Some(job) = rx.recv().await {
        let mut next = Some(job);
        while let Some(job) = next.take() {
            if link.dead.get() {
                let _ = job.reply.send(Err(link.closed()));
            } else {
                buf.extend_from_slice(&job.request);
                link.waiters.borrow_mut().push_back(Waiter {
                    reply: job.reply,
                    _permit: job.permit,
                });
            }
            if buf.len() < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if buf.is_empty() {
            continue;
        }
        if let Err(e) = wr.write_all(&buf).await {
            debug!(addr = %link.addr, error = %e, "proxy: upstream write failed");
            link.fail(link.closed());
        } else if link.dead.get() {
            // The reader ended while this batch was being written: nobody will
            // answer these waiters.
            link.fail(link.closed());
        }
        buf.clear();
        if buf.capacity() > 4 * WRITE_BATCH {
            buf = BytesMut::with_capacity(WRITE_BATCH);
        }
    }
}

/// Reads replies and hands each to the oldest waiter.
async fn reader(mut rd: OwnedReadHalf, link: Rc<Link>) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut progress = Progress::default();
    loop {
        loop {
            match reply::resume(&buf, &mut progress) {
                Ok(Some(n)) => {
                    let frame = buf.split_to(n).freeze();
                    if frame.first() == Some(&b'>') {
                        // An out-of-band push; the proxy never asks for any.
                        continue;
                    }
                    let waiter = link.waiters.borrow_mut().pop_front();
                    match waiter {
                        Some(w) => {
                            let _ = w.reply.send(Ok(frame));
                        }
                        None => {
                            debug!(addr = %link.addr, "proxy: unsolicited reply from owner");
                            return link.fail(link.closed());
                        }
                    }
                }
                Ok(None) => break,
                Err(source) => {
                    debug!(addr = %link.addr, error = %source, "proxy: invalid reply from owner");
                    return link.fail(PoolError::Protocol {
                        addr: link.addr.clone(),
                        source,
                    });
                }
            }
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return link.fail(link.closed()),
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::{parse_request, Limits};
    use tokio::net::TcpListener;

    /// A fake owner answering `ECHO x` with `$len x`, one byte per write, so replies
    /// reach the reader in fragments.
    async fn dribbling_echo_server(listener: TcpListener, requests: usize) {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let mut buf = BytesMut::new();
        let mut answered = 0;
        while answered < requests {
            if s.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                return;
            }
            while let Ok(Some(args)) = parse_request(&mut buf, &Limits::default()) {
                let arg = args.get(1).cloned().unwrap_or_default();
                let mut reply = format!("${}\r\n", arg.len()).into_bytes();
                reply.extend_from_slice(&arg);
                reply.extend_from_slice(b"\r\n");
                for b in reply {
                    if s.write_all(&[b]).await.is_err() {
                        return;
                    }
                }
                answered += 1;
            }
        }
    }

    fn echo(i: usize) -> Bytes {
        encode_request(&[Bytes::from_static(b"ECHO"), Bytes::from(format!("value-{i}"))])
    }

    #[tokio::test]
    async fn fragmented_replies_reach_their_waiters_in_order_and_a_dead_owner_errors() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
                let addr = listener.local_addr().expect("addr").to_string();
                let server = tokio::task::spawn_local(dribbling_echo_server(listener, 50));
                let pool = Pool::new();
                let wait = Duration::from_secs(5);
                let mut rxs = Vec::new();
                for i in 0..50 {
                    rxs.push(
                        pool.send(&addr, Lane::default(), None, echo(i), wait)
                            .await
                            .expect("queued"),
                    );
                }
                for (i, rx) in rxs.into_iter().enumerate() {
                    let reply = rx.await.expect("answered").expect("a reply");
                    let v = format!("value-{i}");
                    assert_eq!(reply, Bytes::from(format!("${}\r\n{v}\r\n", v.len())));
                }
                // The owner goes away: the request in flight fails, then so do new ones,
                // without waiting for a timeout.
                let _ = server.await;
                let rx = pool.send(&addr, Lane::default(), None, echo(0), wait).await;
                let err = match rx {
                    Ok(rx) => rx.await.expect("answered").expect_err("owner is gone"),
                    Err(e) => e,
                };
                assert!(
                    matches!(err, PoolError::Closed { .. } | PoolError::Connect { .. }),
                    "{err}"
                );
                let again = pool.send(&addr, Lane::default(), None, echo(1), wait).await;
                let err = match again {
                    Ok(rx) => rx.await.expect("answered").expect_err("owner is gone"),
                    Err(e) => e,
                };
                assert!(matches!(err, PoolError::Connect { .. }), "{err}");
            })
            .await;
    }
}
