//! The proxy port (default 6380): lets a cluster-unaware client reach every key
//! through any node.
//!
//! Each request is planned by hash slot ([`split`]): keyless commands (PING, HELLO,
//! CLIENT, INFO, ...) and keys this node serves as primary run directly against the
//! local store through the normal command path ([`cmd::execute`]); keys owned by
//! another node go to that node's RESP port over a pooled, pipelined connection
//! ([`pool`]), and their replies are relayed byte for byte ([`reply`] finds where
//! each reply ends). Multi-key MGET/MSET/DEL/UNLINK/EXISTS/TOUCH across slots are
//! split per slot and merged; other multi-slot requests answer `-CROSSSLOT`.
//! A `-MOVED` reply is followed once and a `-TRYAGAIN` retried once after a short
//! pause; an unreachable owner answers `-CLUSTERDOWN ...` for that request only.
//!
//! Pipelining: the connection plans and dispatches every complete request it has read
//! (up to [`MAX_IN_FLIGHT`] sub-requests), then writes the replies in request order.
//! RESP3: after `HELLO 3` the client's forwarded requests use upstream connections
//! that also said `HELLO 3`, so relayed replies are in the client's protocol.
//!
//! Blocking commands (BLPOP, BLMOVE, …) are refused: a blocked request would hold up
//! the pooled upstream connection every client of the worker shares.
//!
//! Hot keys ([`hot`], `--hot-key-replica-reads`): single-key reads of a key this node
//! sees often enough go to the slot's copies in turn, replicas included (over
//! `READONLY` upstream connections, or locally as a replica read).
//!
//! Not cluster-wide: keyless commands that report on keys (DBSIZE, KEYS, SCAN,
//! RANDOMKEY, FLUSHALL, INFO keyspace) see this node only. Upstream connections
//! authenticate with this node's `requirepass` (all nodes of a cluster share it).
//! In standalone mode every request runs locally.

pub mod hot;
pub mod pool;
pub mod reply;
pub mod split;

use std::cell::RefCell;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use ringcache_core::slot::{key_slot, Slot};
use ringcache_core::view::{Owner, View};

use crate::cmd::{self, Ctx, Next};
use crate::resp::{Out, ProtocolError, RequestParser};
use crate::state::{ClientState, ServerState};
use crate::store::{now_ms, Store};
use hot::HotSet;
use pool::{Lane, Pool, PoolError, ReplyRx};
use split::{Merge, Plan};

/// The answer to a blocking command (BLPOP, BLMOVE, …) on the proxy port.
pub const BLOCKING_REFUSED: &str =
    "ERR blocking commands are not served on the proxy port; send them to the key's node on its RESP port";

/// Sub-requests a client connection dispatches before it waits for their replies.
pub const MAX_IN_FLIGHT: usize = 1024;
/// Replies buffered beyond this are written before the next one is awaited.
const FLUSH_AT: usize = 64 * 1024;
const READ_CHUNK: usize = 16 * 1024;
/// How long a forwarded request may wait for its owner's reply.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before retrying a request an owner answered with `-TRYAGAIN`.
const TRYAGAIN_PAUSE: Duration = Duration::from_millis(50);

/// Errors of the proxy port.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on proxy address {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start proxy thread: {0}")]
    Thread(std::io::Error),
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("client query buffer exceeded {0} bytes")]
    QueryBufferLimit(usize),
}

/// Binds the proxy port (`addr`, port 0 = a free one) with one `SO_REUSEPORT`
/// listener per thread. Returns the listeners and the bound address.
pub fn bind(addr: SocketAddr, threads: usize) -> Result<(Vec<StdListener>, SocketAddr), ProxyError> {
    let listeners = crate::server::bind_listeners(addr, threads).map_err(|e| match e {
        crate::server::ServerError::Listen { addr, source } => ProxyError::Listen { addr, source },
        crate::server::ServerError::Thread(e) => ProxyError::Thread(e),
    })?;
    let bound = match listeners.first() {
        Some(l) => l.local_addr().map_err(|source| ProxyError::Listen { addr, source })?,
        None => addr,
    };
    Ok((listeners, bound))
}

/// Starts one proxy thread per listener (each with its own runtime and upstream
/// pool). They stop accepting on `shutdown` and return once their clients are gone.
pub fn spawn(
    listeners: Vec<StdListener>,
    store: Arc<Store>,
    state: Arc<ServerState>,
    shutdown: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, ProxyError> {
    let mut handles = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let (store, state, shutdown) = (store.clone(), state.clone(), shutdown.clone());
        let h = std::thread::Builder::new()
            .name(format!("proxy-{i}"))
            .spawn(move || worker(i, l, store, state, shutdown))
            .map_err(ProxyError::Thread)?;
        handles.push(h);
    }
    Ok(handles)
}

fn worker(i: usize, listener: StdListener, store: Arc<Store>, state: Arc<ServerState>, shutdown: CancellationToken) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return warn!(proxy_worker = i, error = %e, "cannot build proxy runtime"),
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => return warn!(proxy_worker = i, error = %e, "cannot register proxy listener"),
        };
        let pool = Rc::new(Pool::new());
        let hot = Rc::new(RefCell::new(HotSet::default()));
        let tracker = tokio_util::task::TaskTracker::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let conn = match Conn::new(i, &stream, store.clone(), state.clone(), pool.clone(), hot.clone()) {
                            Ok(c) => c,
                            Err(e) => {
                                debug!(%peer, error = %e, "proxy connection failed");
                                continue;
                            }
                        };
                        let shutdown = shutdown.clone();
                        tracker.spawn_local(async move {
                            if let Err(e) = conn.serve(stream, shutdown).await {
                                debug!(%peer, error = %e, "proxy connection closed");
                            }
                        });
                    }
                    Err(e) => {
                        warn!(proxy_worker = i, error = %e, "proxy accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                _ = shutdown.cancelled() => break,
            }
        }
        drop(listener);
        tracker.close();
        tracker.wait().await;
        info!(proxy_worker = i, "proxy worker stopped");
    });
}

/// Where one (sub-)request runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Local,
    Remote(String),
    /// A hot key's read on this node's replica copy of its slot.
    LocalReplica,
    /// A hot key's read on another node's replica copy, over a `READONLY` connection.
    RemoteReplica(String),
}

/// Where a spread read of a hot key in `slot` goes: the slot's copy `copy` (0 is the
/// primary), here or on another node.
fn copy_target(view: &View, slot: Slot, copy: usize) -> Target {
    let owners = view.slots.owners(slot);
    let Some(id) = owners.get(copy) else {
        return target_of(view, slot);
    };
    let primary = copy == 0;
    if *id == view.me.id {
        return if primary { Target::Local } else { Target::LocalReplica };
    }
    match view.topology.node(id) {
        Some(node) if primary => Target::Remote(node.resp_addr.clone()),
        Some(node) => Target::RemoteReplica(node.resp_addr.clone()),
        None => target_of(view, slot),
    }
}

fn target_of(view: &View, slot: Slot) -> Target {
    match view.owner(slot, false) {
        Owner::Elsewhere(owner) => Target::Remote(owner.resp_addr.clone()),
        // Here, or no primary: the local path answers (`-CLUSTERDOWN Hash slot not
        // served` for the latter).
        Owner::Here | Owner::Nobody => Target::Local,
    }
}

/// What the proxy connection does after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    /// Send what is buffered, then close (QUIT).
    Close,
}

/// A sub-request being answered.
struct PartState {
    target: Target,
    args: Vec<Bytes>,
    keys: Vec<usize>,
    wait: Wait,
}

enum Wait {
    Done(Bytes),
    /// Queued upstream, on a connection of this lane.
    Reply(ReplyRx, Lane),
    Failed(PoolError),
}

/// The reply owed to one client request, in request order.
enum Pending {
    Ready(Bytes),
    Whole(PartState),
    Split {
        merge: Merge,
        keys: usize,
        parts: Vec<PartState>,
    },
}

/// One proxy client connection.
struct Conn {
    /// This connection's proxy worker (for its command counters).
    worker: usize,
    store: Arc<Store>,
    state: Arc<ServerState>,
    pool: Rc<Pool>,
    /// The worker's hot keys, whose reads are spread over their copies.
    hot: Rc<RefCell<HotSet>>,
    client: ClientState,
    out: Out,
}

impl Conn {
    fn new(
        worker: usize,
        stream: &TcpStream,
        store: Arc<Store>,
        state: Arc<ServerState>,
        pool: Rc<Pool>,
        hot: Rc<RefCell<HotSet>>,
    ) -> std::io::Result<Conn> {
        let _ = stream.set_nodelay(true);
        let shared = state.clients.register(stream.peer_addr()?, stream.local_addr()?);
        let client = ClientState {
            shared,
            authenticated: !state.access.auth_required(),
            no_evict: false,
            readonly: false,
            replica_port: false,
            // Local commands read through a handover's source like on the RESP port.
            can_read_through: true,
            // Each command goes to its own node: no transactions here.
            tx: crate::state::Transaction::default(),
            pushes: crate::state::Pushes::default(),
            can_block: false,
            blocked: false,
            coalesce: Default::default(),
            depth: 0,
            write_gate: None,
        };
        Ok(Conn {
            worker,
            store,
            state,
            pool,
            hot,
            client,
            out: Out::new(),
        })
    }

    async fn serve(mut self, mut stream: TcpStream, shutdown: CancellationToken) -> Result<(), ProxyError> {
        let result = self.run(&mut stream, &shutdown).await;
        self.state.clients.unregister(self.client.id());
        result
    }

    async fn run(&mut self, stream: &mut TcpStream, shutdown: &CancellationToken) -> Result<(), ProxyError> {
        let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
        let mut parser = RequestParser::default();
        let mut wbuf = BytesMut::with_capacity(READ_CHUNK);
        let mut batch: Vec<Pending> = Vec::new();
        loop {
            let mut close = false;
            let mut protocol_error = None;
            let mut in_flight = 0usize;
            while in_flight < MAX_IN_FLIGHT {
                // Each request is dispatched before the next is parsed, so an AUTH has
                // run by the time the request after it meets the limits.
                let args = match parser.parse(&mut rbuf, &self.state.access.request_limits(self.client.authenticated)) {
                    Ok(Some(args)) => args,
                    Ok(None) => break,
                    Err(e) => {
                        protocol_error = Some(e);
                        break;
                    }
                };
                let (pending, flow) = self.dispatch(&args).await;
                // Local replies count too: they hold reply bytes until the batch is written.
                in_flight += match &pending {
                    Pending::Ready(_) | Pending::Whole(_) => 1,
                    Pending::Split { parts, .. } => parts.len().max(1),
                };
                batch.push(pending);
                if flow == Flow::Close {
                    close = true;
                    break;
                }
            }
            for pending in batch.drain(..) {
                self.resolve(pending, &mut wbuf).await;
                if wbuf.len() >= FLUSH_AT {
                    stream.write_all(&wbuf).await?;
                    wbuf.clear();
                }
            }
            if let Some(e) = protocol_error {
                let mut out = Out::new();
                out.error(&format!("ERR Protocol error: {e}"));
                wbuf.extend_from_slice(&out.buf);
                stream.write_all(&wbuf).await?;
                return Err(e.into());
            }
            if !wbuf.is_empty() {
                stream.write_all(&wbuf).await?;
                wbuf.clear();
                if wbuf.capacity() > 1024 * 1024 {
                    wbuf = BytesMut::with_capacity(READ_CHUNK);
                }
            }
            if close {
                return Ok(());
            }
            if in_flight >= MAX_IN_FLIGHT {
                // More requests may already be buffered: serve them before reading.
                continue;
            }
            if rbuf.len() > self.state.access.max_query_buffer {
                return Err(ProxyError::QueryBufferLimit(self.state.access.max_query_buffer));
            }
            if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
                rbuf.reserve(READ_CHUNK);
            }
            tokio::select! {
                biased;
                n = stream.read_buf(&mut rbuf) => {
                    if n? == 0 {
                        return Ok(());
                    }
                }
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
    }

    /// Runs `args` against the local store through the normal command path, as the
    /// RESP port does: a handover's read-through first when the command asks for one,
    /// and the reply held until enough replicas acknowledged a write
    /// (`minReplicasToAck`).
    async fn execute_local(&mut self, args: &[Bytes]) -> (Bytes, Flow) {
        let view = self.state.cluster.view();
        let found = cmd::find(args);
        let mut filled: Option<Vec<Bytes>> = None;
        let started = std::time::Instant::now();
        let next = loop {
            let mut ctx = Ctx {
                store: &self.store,
                server: &self.state,
                client: &mut self.client,
                out: &mut self.out,
                now: now_ms(),
                view: view.as_deref(),
                slot: None,
                next: Next::Continue,
            };
            let (index, next) = cmd::execute(&mut ctx, args, found, filled.as_deref());
            match next {
                // Once: the second run reads what was filled.
                Next::ReadThrough(fetch) if filled.is_none() => {
                    self.out.buf.clear();
                    filled = Some(crate::handover::fetch::read_through(&fetch, &self.store, &self.state.access).await);
                }
                next => {
                    // Counted once, like the RESP port's commands (INFO, /metrics).
                    self.state
                        .metrics
                        .proxy_worker(self.worker)
                        .record(index, started.elapsed());
                    break next;
                }
            }
        };
        let flow = match next {
            Next::Close => Flow::Close,
            Next::Continue | Next::ReadThrough(_) => Flow::Continue,
            Next::WaitForAcks(wait) => {
                if !self.state.replication.wait_for_acks(wait).await {
                    self.out.buf.clear();
                    self.out.error(crate::replication::NOREPLICAS);
                }
                Flow::Continue
            }
            Next::Block(_) => {
                // Blocking commands are refused before they get here; should one
                // block anyway, it is answered as Redis answers a client that may not
                // block: as if it timed out at once.
                self.out.null_array();
                Flow::Continue
            }
            Next::TakeOver(_) => {
                self.out
                    .error("ERR replication streams are served on the main port, not the proxy port");
                Flow::Close
            }
        };
        (self.out.buf.split().freeze(), flow)
    }

    /// Plans one request and starts it: local work runs now, remote work is queued.
    async fn dispatch(&mut self, args: &[Bytes]) -> (Pending, Flow) {
        let cluster = self.state.cluster.clone();
        let view = if cluster.enabled && self.client.authenticated {
            cluster.view()
        } else {
            None
        };
        let spec = args
            .first()
            .and_then(|name| cmd::registry().lookup(name))
            .map(|(_, s)| s);
        if spec.is_some_and(|s| s.flags & cmd::flag::BLOCKING != 0) && self.client.authenticated {
            // A blocked command would hold up a pooled upstream connection, which
            // every client of this worker shares.
            let mut out = Out::new();
            out.error(BLOCKING_REFUSED);
            return (Pending::Ready(out.buf.freeze()), Flow::Continue);
        }
        let (Some(view), Some(spec)) = (view, spec) else {
            let (reply, flow) = self.execute_local(args).await;
            return (Pending::Ready(reply), flow);
        };
        let argc = args.len() as i32;
        if (spec.arity > 0 && argc != spec.arity) || (spec.arity < 0 && argc < -spec.arity) {
            let (reply, flow) = self.execute_local(args).await;
            return (Pending::Ready(reply), flow);
        }
        match split::plan(spec, args, |slot| target_of(&view, slot)) {
            Plan::Keyless => {
                let (reply, flow) = self.execute_local(args).await;
                (Pending::Ready(reply), flow)
            }
            Plan::CrossSlot => {
                let mut out = Out::new();
                out.error(split::CROSSSLOT);
                (Pending::Ready(out.buf.freeze()), Flow::Continue)
            }
            Plan::Whole(target) => match self.spread(&view, spec, args, target) {
                Target::Local => {
                    let (reply, flow) = self.execute_local(args).await;
                    (Pending::Ready(reply), flow)
                }
                target => {
                    let part = self.start(target, args.to_vec(), Vec::new()).await;
                    (Pending::Whole(part), Flow::Continue)
                }
            },
            Plan::Split { merge, keys, parts } => {
                let mut started = Vec::with_capacity(parts.len());
                for p in parts {
                    started.push(self.start(p.target, p.args, p.keys).await);
                }
                (
                    Pending::Split {
                        merge,
                        keys,
                        parts: started,
                    },
                    Flow::Continue,
                )
            }
        }
    }

    /// For a request of one slot: counts its key for hot-key detection when it goes to
    /// another node (the pipeline counts what runs here), and sends a read of a hot
    /// key to the slot's next copy instead of its primary.
    fn spread(&self, view: &View, spec: &cmd::CommandSpec, args: &[Bytes], target: Target) -> Target {
        let Some(key) = spec.key_positions(args).next().and_then(|p| args.get(p)) else {
            return target;
        };
        let hotkeys = &self.state.hotkeys;
        let now = now_ms();
        if target != Target::Local && hotkeys.sample() {
            hotkeys.record(key, now);
        }
        let single_read = spec.flags & cmd::flag::READONLY != 0 && spec.key_positions(args).count() == 1;
        if !single_read || !self.hot.borrow_mut().is_hot(hotkeys, key, now) {
            return target;
        }
        let slot = key_slot(key);
        let copy = self.hot.borrow_mut().next_copy(view.slots.owners(slot).len());
        let counter = if copy == 0 {
            &hotkeys.spread.primary
        } else {
            &hotkeys.spread.replica
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        copy_target(view, slot, copy)
    }

    /// Runs a sub-request locally now, or queues it to its owner.
    async fn start(&mut self, target: Target, args: Vec<Bytes>, keys: Vec<usize>) -> PartState {
        let wait = self.begin(&target, &args).await;
        PartState {
            target,
            args,
            keys,
            wait,
        }
    }

    async fn begin(&mut self, target: &Target, args: &[Bytes]) -> Wait {
        match target {
            Target::Local => Wait::Done(self.execute_local(args).await.0),
            Target::LocalReplica => {
                // A replica read, as a READONLY connection's.
                self.client.readonly = true;
                let reply = self.execute_local(args).await.0;
                self.client.readonly = false;
                Wait::Done(reply)
            }
            Target::Remote(addr) | Target::RemoteReplica(addr) => {
                let password = self.state.access.requirepass();
                let request = pool::encode_request(args);
                let lane = Lane {
                    resp3: self.out.resp3,
                    readonly: matches!(target, Target::RemoteReplica(_)),
                };
                match self
                    .pool
                    .send(addr, lane, password.as_deref(), request, UPSTREAM_TIMEOUT)
                    .await
                {
                    Ok(rx) => Wait::Reply(rx, lane),
                    Err(e) => Wait::Failed(e),
                }
            }
        }
    }

    /// Waits for one request's reply (following redirects) and appends it to `wbuf`.
    async fn resolve(&mut self, pending: Pending, wbuf: &mut BytesMut) {
        match pending {
            Pending::Ready(reply) => wbuf.extend_from_slice(&reply),
            Pending::Whole(part) => {
                let reply = self.finish(part).await;
                wbuf.extend_from_slice(&reply);
            }
            Pending::Split { merge, keys, parts } => {
                let mut replies: Vec<(Vec<usize>, Bytes)> = Vec::with_capacity(parts.len());
                for mut part in parts {
                    let k = std::mem::take(&mut part.keys);
                    replies.push((k, self.finish(part).await));
                }
                let view: Vec<(&[usize], &[u8])> = replies.iter().map(|(k, r)| (&k[..], &r[..])).collect();
                split::merge(merge, keys, &view, wbuf);
            }
        }
    }

    /// The final reply to a sub-request: follows one `-MOVED`, retries one
    /// `-TRYAGAIN`, and turns an unreachable owner into `-CLUSTERDOWN`.
    async fn finish(&mut self, part: PartState) -> Bytes {
        let PartState {
            mut target, args, wait, ..
        } = part;
        let mut reply = self.await_reply(wait, &target).await;
        let (mut moved, mut retried) = (false, false);
        loop {
            if !moved && reply.starts_with(b"-MOVED ") {
                moved = true;
                let Some(next) = self.moved_target(&reply) else {
                    return reply;
                };
                target = next;
            } else if !retried && reply.starts_with(b"-TRYAGAIN") {
                retried = true;
                tokio::time::sleep(TRYAGAIN_PAUSE).await;
            } else {
                return reply;
            }
            let wait = self.begin(&target, &args).await;
            reply = self.await_reply(wait, &target).await;
        }
    }

    async fn await_reply(&mut self, wait: Wait, target: &Target) -> Bytes {
        let addr = match target {
            Target::Remote(a) | Target::RemoteReplica(a) => a.as_str(),
            Target::Local | Target::LocalReplica => "local",
        };
        match wait {
            Wait::Done(b) => b,
            Wait::Failed(e) => clusterdown(&e.to_string()),
            Wait::Reply(rx, lane) => match tokio::time::timeout(UPSTREAM_TIMEOUT, rx).await {
                Ok(Ok(Ok(reply))) => reply,
                Ok(Ok(Err(e))) => clusterdown(&e.to_string()),
                Ok(Err(_)) => clusterdown(&format!("connection to {addr} lost")),
                Err(_) => {
                    // An owner that holds a reply this long is treated as stuck: drop the
                    // connection so later requests reconnect instead of queueing behind it.
                    warn!(addr, "proxy: owner did not answer in time; reconnecting");
                    self.pool.reset(addr, lane);
                    clusterdown(&format!("{addr} did not answer within {UPSTREAM_TIMEOUT:?}"))
                }
            },
        }
    }

    /// Where a `-MOVED <slot> <host:port>` reply points.
    fn moved_target(&self, reply: &[u8]) -> Option<Target> {
        let line = std::str::from_utf8(reply).ok()?.trim_end();
        let addr = line.split(' ').nth(2)?;
        let me = self.state.cluster.view().map(|v| v.me.resp_addr.clone());
        if me.as_deref() == Some(addr) {
            Some(Target::Local)
        } else {
            Some(Target::Remote(addr.to_string()))
        }
    }
}

/// A `-CLUSTERDOWN` reply for a request whose owner could not be reached.
fn clusterdown(why: &str) -> Bytes {
    let mut out = Out::new();
    out.error(&format!("CLUSTERDOWN the key's owner is unreachable: {why}"));
    out.buf.freeze()
}
