//! One client connection: read → parse every complete request (up to a batch) → execute → write all
//! replies at once (pipelining costs one read and one write per batch). A protocol
//! error answers `-ERR Protocol error: ...` and closes this connection only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use ringcache_core::view::View;

use crate::blocking::BlockOn;
use crate::cmd::{self, Ctx, Next};
use crate::resp::{Out, Request, RequestParser};
use crate::state::{ClientState, ServerState};
use crate::store::{now_ms, Store};
use crate::tracking::Push;

/// Replies buffered beyond this are written before more requests run.
const FLUSH_AT: usize = 64 * 1024;
const READ_CHUNK: usize = 16 * 1024;
/// Requests parsed ahead of running them.
const MAX_BATCH: usize = 64;

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol error: {0}")]
    Protocol(#[from] crate::resp::ProtocolError),
    #[error("client query buffer exceeded {0} bytes")]
    QueryBufferLimit(usize),
}

/// Serves one client until it disconnects, sends QUIT, breaks the protocol, or the
/// server shuts down (after the replies to what was already read are written).
pub async fn serve(
    mut stream: TcpStream,
    store: Arc<Store>,
    state: Arc<ServerState>,
    worker: usize,
    port: super::Port,
    shutdown: CancellationToken,
) -> Result<(), ConnectionError> {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr()?;
    let local = stream.local_addr()?;
    let shared = state.clients.register(peer, local);
    let mut client = ClientState {
        shared,
        authenticated: !state.access.auth_required(),
        no_evict: false,
        // The replica port implies READONLY (clients see it as a replica's address).
        readonly: port == super::Port::Replica,
        replica_port: port == super::Port::Replica,
        // This loop runs the handover read-throughs commands ask for.
        can_read_through: true,
        tx: crate::state::Transaction::supported(),
        pushes: crate::state::Pushes::supported(),
        // This loop holds blocked commands (BLPOP and the like).
        can_block: true,
        blocked: false,
        coalesce: Default::default(),
        depth: 0,
        write_gate: None,
    };
    // Invalidations and Pub/Sub messages for this connection arrive here.
    let (inbox, mut pushes) = tokio::sync::mpsc::unbounded_channel();
    state.tracking.open(client.id(), inbox);
    let result = run(&mut stream, &store, &state, worker, &shutdown, &mut client, &mut pushes).await;
    coalesce_done(&state, &mut client);
    if client.coalesce.filled {
        // The leases this client held end: one waiter of each key runs its GET again
        // and becomes the filler.
        for key in state.coalesce.release_client(client.id()) {
            state.blocking.key_written(&key);
        }
    }
    state.tracking.close(client.id());
    cmd::transactions::unwatch_all(&store, &mut client);
    state.clients.unregister(client.id());
    result
}

async fn run(
    stream: &mut TcpStream,
    store: &Store,
    state: &ServerState,
    worker: usize,
    shutdown: &CancellationToken,
    client: &mut ClientState,
    pushes: &mut UnboundedReceiver<Push>,
) -> Result<(), ConnectionError> {
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut parser = RequestParser::default();
    let mut out = Out::new();
    let mut batch: Vec<(Request, cmd::Found)> = Vec::with_capacity(MAX_BATCH);
    let metrics = state.metrics.worker(worker);
    // Created once: registering with the token on every read would cost a lock each time.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    loop {
        let mut close = false;
        // Parse every complete request first, then run them: one clock read per batch
        // for command time, one per command for latency.
        let mut broken = None;
        // Set when parsing stopped with complete requests possibly left in the buffer:
        // they run before the next read.
        let mut more = false;
        while batch.len() < MAX_BATCH {
            match parser.parse(&mut rbuf, &state.access.request_limits(client.authenticated)) {
                Ok(Some(args)) => {
                    // Before AUTH, one request at a time: the next is parsed with the
                    // limits that hold once this one has run.
                    let stop = cmd::replication::takes_over_connection(&args) || !client.authenticated;
                    let found = cmd::find(&args);
                    batch.push((args, found));
                    if stop {
                        more = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
        }
        more |= batch.len() == MAX_BATCH;
        if batch.len() > 1 {
            store.prefetch(batch.iter().filter_map(|(args, found)| cmd::first_key(args, *found)));
        }
        // Pushes that arrived before this batch go out before its replies, as Redis
        // appends them to the output when they happen.
        drain_pushes(pushes, &mut out, client);
        // The cluster view, read once per batch (a topology change takes effect from
        // the next batch).
        let view = state.cluster.view();
        let mut now = now_ms();
        let mut started = Instant::now();
        for (args, found) in batch.drain(..) {
            let mut mark = out.buf.len();
            let (mut index, mut next, waited) =
                run_command(store, state, client, &mut out, view.as_deref(), &args, found, now).await;
            if waited {
                now = now_ms();
            }
            if let Next::Block(block) = next {
                (index, next) = wait_blocked(
                    stream, &mut rbuf, store, state, client, &mut out, pushes, shutdown, &args, found, block,
                )
                .await?;
                // The replies before it were sent.
                mark = 0;
                now = now_ms();
                started = Instant::now();
            }
            let finished = Instant::now();
            metrics.record(index, finished.duration_since(started));
            started = finished;
            match next {
                Next::Continue | Next::ReadThrough(_) | Next::Block(_) => {}
                Next::WaitForAcks(wait) => {
                    // minReplicasToAck: the reply goes out once enough replicas have the write.
                    if !state.replication.wait_for_acks(wait).await {
                        out.buf.truncate(mark);
                        out.error(crate::replication::NOREPLICAS);
                    }
                    now = now_ms();
                    started = Instant::now();
                }
                Next::TakeOver(req) => {
                    // RINGCACHE.SYNC: this connection now carries a replication stream.
                    stream.write_all(&out.buf).await?;
                    let rest = rbuf.split();
                    crate::replication::primary::serve(
                        stream,
                        rest,
                        req,
                        store,
                        &state.replication,
                        &state.access.limits,
                        shutdown,
                    )
                    .await;
                    return Ok(());
                }
                Next::Close => {
                    close = true;
                    break;
                }
            }
            if out.buf.len() >= FLUSH_AT {
                stream.write_all(&out.buf).await?;
                out.buf.clear();
                now = now_ms();
                started = Instant::now();
            }
        }
        if let Some(e) = broken.filter(|_| !close) {
            out.error(&format!("ERR Protocol error: {e}"));
            stream.write_all(&out.buf).await?;
            return Err(e.into());
        }
        // Pushes that arrived meanwhile (this batch's own writes' invalidations among
        // them) follow its replies.
        drain_pushes(pushes, &mut out, client);
        if !out.buf.is_empty() {
            // Replies go out at the end of the worker's turn, after every other ready
            // connection has run its requests (Redis writes in `beforeSleep` for the
            // same reason): sends then come back to back, so a client sleeping in
            // epoll is woken once per turn instead of once per connection. A wake-up
            // of another CPU is the dearest part of a send on a VM (22 % of a
            // saturated worker's CPU at -P16 in perf); one worker at -P16 went from
            // 1.3-1.47 to 1.0-1.13 us of CPU per request in A/B runs, -P1 unchanged.
            tokio::task::yield_now().await;
            stream.write_all(&out.buf).await?;
            out.buf.clear();
            if out.buf.capacity() > 1024 * 1024 {
                out.buf = BytesMut::with_capacity(READ_CHUNK);
            }
        }
        if close {
            return Ok(());
        }
        if rbuf.len() > state.access.max_query_buffer {
            return Err(ConnectionError::QueryBufferLimit(state.access.max_query_buffer));
        }
        if more {
            continue;
        }
        if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
            rbuf.reserve(READ_CHUNK);
        }
        tokio::select! {
            biased;
            n = read_available(stream, &mut rbuf) => {
                if n? == 0 {
                    return Ok(());
                }
            }
            Some(push) = pushes.recv() => {
                // Invalidations and messages go out between replies, never inside one.
                push.encode(&mut out, !client.pushes.channels.is_empty());
                drain_pushes(pushes, &mut out, client);
                stream.write_all(&out.buf).await?;
                out.buf.clear();
            }
            _ = &mut cancelled => return Ok(()),
        }
    }
}

/// Appends the pushes waiting in the inbox, encoded for this connection.
fn drain_pushes(pushes: &mut UnboundedReceiver<Push>, out: &mut Out, client: &ClientState) {
    while let Ok(push) = pushes.try_recv() {
        push.encode(out, !client.pushes.channels.is_empty());
    }
}

/// Runs one request through the pipeline; when the command asks for a handover
/// read-through first (it wrote no reply), fills its missing keys from the slots'
/// previous owner and runs it again (once). The flag says whether it waited for one.
#[allow(clippy::too_many_arguments)]
async fn run_command(
    store: &Store,
    state: &ServerState,
    client: &mut ClientState,
    out: &mut Out,
    view: Option<&View>,
    args: &Request,
    found: cmd::Found,
    now: u64,
) -> (Option<usize>, Next, bool) {
    let mark = out.buf.len();
    let mut ctx = Ctx {
        store,
        server: state,
        client,
        out,
        now,
        view,
        slot: None,
        next: Next::Continue,
    };
    let (index, next) = cmd::execute(&mut ctx, args, found, None);
    let Next::ReadThrough(fetch) = next else {
        return (index, next, false);
    };
    out.buf.truncate(mark);
    let filled = crate::handover::fetch::read_through(&fetch, store, &state.access).await;
    let mut ctx = Ctx {
        store,
        server: state,
        client,
        out,
        now: now_ms(),
        view,
        slot: None,
        next: Next::Continue,
    };
    let (index, next) = cmd::execute(&mut ctx, args, found, Some(&filled));
    (index, next, true)
}

/// How often a blocked client in cluster mode looks for a new topology.
const TOPOLOGY_CHECK: Duration = Duration::from_millis(100);

/// A command that blocked ([`Next::Block`]): the replies before it are sent, then it
/// runs again each time a write to one of its keys wakes it, and after a topology
/// change (so that it is redirected, or told the cluster is down, when its slot
/// moved), until it does something other than block. Its timeout answers a null
/// array, as Redis does. While blocked the connection keeps reading (what the client
/// sends waits its turn), so a closed connection ends the wait; leaving drops the
/// ticket, which takes the client off every key's queue.
#[allow(clippy::too_many_arguments)]
async fn wait_blocked(
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    store: &Store,
    state: &ServerState,
    client: &mut ClientState,
    out: &mut Out,
    pushes: &mut UnboundedReceiver<Push>,
    shutdown: &CancellationToken,
    args: &Request,
    found: cmd::Found,
    block: BlockOn,
) -> Result<(Option<usize>, Next), ConnectionError> {
    stream.write_all(&out.buf).await?;
    out.buf.clear();
    let mut deadline = block.timeout.map(|t| tokio::time::Instant::now() + t);
    let ticket = state.blocking.register(block.keys);
    let result = wait_loop(
        stream,
        rbuf,
        store,
        state,
        client,
        out,
        pushes,
        shutdown,
        args,
        found,
        &ticket,
        &mut deadline,
    )
    .await;
    drop(ticket);
    coalesce_done(state, client);
    result
}

/// A coalesced GET that waited (see [`crate::coalesce`]) no longer waits.
fn coalesce_done(state: &ServerState, client: &mut ClientState) {
    if let Some((key, _)) = client.coalesce.waiting.take() {
        state.coalesce.leave(&key);
    }
}

/// [`wait_blocked`]'s loop. A coalesced GET (one that set `client.coalesce.waiting`)
/// gives a new deadline each time it blocks again and, at the deadline, runs again
/// instead of timing out: the lease table then decides.
#[allow(clippy::too_many_arguments)]
async fn wait_loop(
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    store: &Store,
    state: &ServerState,
    client: &mut ClientState,
    out: &mut Out,
    pushes: &mut UnboundedReceiver<Push>,
    shutdown: &CancellationToken,
    args: &Request,
    found: cmd::Found,
    ticket: &crate::blocking::Ticket<'_>,
    deadline: &mut Option<tokio::time::Instant>,
) -> Result<(Option<usize>, Next), ConnectionError> {
    let mut epoch = state.cluster.epoch();
    let mut woken = false;
    loop {
        // Registered first, run again second: a write in between is not missed.
        ticket.rearm();
        let view = state.cluster.view();
        client.blocked = true;
        let (index, next, _) = run_command(store, state, client, out, view.as_deref(), args, found, now_ms()).await;
        client.blocked = false;
        let coalesced = client.coalesce.waiting.is_some();
        match next {
            Next::Block(b) if coalesced => *deadline = b.timeout.map(|t| tokio::time::Instant::now() + t),
            Next::Block(_) => {}
            next => return Ok((index, next)),
        }
        if std::mem::take(&mut woken) {
            // Woken for something this command does not take: the waiters behind may.
            ticket.pass_on();
        }
        let timeout = async {
            match *deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let topology_changed = async {
            if !state.cluster.enabled {
                return std::future::pending().await;
            }
            while state.cluster.epoch() == epoch {
                tokio::time::sleep(TOPOLOGY_CHECK).await;
            }
        };
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok((index, Next::Close)),
            _ = ticket.woken() => woken = true,
            Some(push) = pushes.recv() => {
                // A blocked client still gets its invalidations and messages.
                push.encode(out, !client.pushes.channels.is_empty());
                drain_pushes(pushes, out, client);
                stream.write_all(&out.buf).await?;
                out.buf.clear();
            }
            _ = topology_changed => epoch = state.cluster.epoch(),
            _ = timeout => {
                if coalesced {
                    continue;
                }
                out.null_array();
                return Ok((index, Next::Continue));
            }
            n = read_available(stream, rbuf) => {
                if n? == 0 {
                    return Ok((index, Next::Close));
                }
                if rbuf.len() > state.access.max_query_buffer {
                    return Err(ConnectionError::QueryBufferLimit(state.access.max_query_buffer));
                }
            }
        }
    }
}

/// Reads what the socket has into `buf`. A read shorter than the free space means the
/// socket is drained, so tokio's readiness is cleared right away (tokio registers
/// sockets edge-triggered, so data arriving later raises a new event). This saves the
/// extra `read` that would otherwise return EAGAIN after every request, which matters
/// at pipeline depth 1 where each request costs a few syscalls.
async fn read_available(stream: &TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    loop {
        // The stream's single reader waker slot (no waiter node to link and unlink, as
        // `readable()` does on every wait).
        std::future::poll_fn(|cx| stream.poll_read_ready(cx)).await?;
        let mut got = None;
        let result = stream.try_io(Interest::READABLE, || {
            let spare = buf.spare_capacity_mut();
            let room = spare.len();
            let n = socket2::SockRef::from(stream).recv(spare)?;
            // SAFETY: `recv` initialised the first `n` bytes of the spare capacity.
            unsafe { buf.set_len(buf.len() + n) };
            got = Some(n);
            if n > 0 && n < room {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match result {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(n) = got {
                    return Ok(n);
                }
            }
            Err(e) => return Err(e),
        }
    }
}
