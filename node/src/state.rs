//! What every connection of the node shares ([`ServerState`]: access rules, the
//! client list, counters, and the cluster, replication and handover state) and what
//! one connection holds ([`ClientState`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::access::Access;
use crate::blocking::Blocking;
use crate::cluster::ClusterState;
use crate::handover::Handovers;
use crate::metrics::{rss_bytes, Gauges, Metrics};
use crate::replication::Replication;
use crate::store::{BloomParams, Stamp, Store};

/// Process-wide server state.
#[derive(Debug)]
pub struct ServerState {
    /// Password and request limits (client ports and node-to-node links).
    pub access: Arc<Access>,
    pub clients: ClientRegistry,
    pub started: Instant,
    pub run_id: String,
    pub port: u16,
    pub total_connections: AtomicU64,
    pub metrics: Metrics,
    pub ready: AtomicBool,
    pub threads: usize,
    pub cluster: Arc<ClusterState>,
    /// Backlog, replica acknowledgements and links to primaries.
    pub replication: Arc<Replication>,
    /// Slot handovers to this node, and slots retained here for others.
    pub handovers: Arc<Handovers>,
    /// The hot-key sketches the command pipeline feeds (off unless
    /// [`ServerState::with_hotkeys`] switches them on).
    pub hotkeys: crate::hotkeys::HotKeys,
    /// INFO's counters as they were at the last CONFIG RESETSTAT: INFO shows what
    /// happened since. The counters themselves never go back (per-slot hits and misses
    /// feed the control plane's hit rates and /metrics, which expect monotonic totals).
    pub stats_baseline: parking_lot::Mutex<StatCounters>,
    /// CLIENT TRACKING and Pub/Sub: who may have which key cached, who subscribed.
    pub tracking: crate::tracking::Tracking,
    /// Clients blocked until a key is written (BLPOP and the like).
    pub blocking: Blocking,
    /// How BF.ADD, BF.MADD and BF.INSERT make a filter they create (`--bf-*` flags).
    pub bloom: BloomParams,
    /// Miss coalescing: who fills which missing key, and its counters.
    pub coalesce: crate::coalesce::Coalescing,
}

/// The counters of INFO's stats section, as totals or as what changed since a baseline.
#[derive(Debug, Default, Clone, Copy)]
pub struct StatCounters {
    pub total_connections: u64,
    pub total_commands: u64,
    pub expired: u64,
    pub evicted: u64,
    pub hits: u64,
    pub misses: u64,
    pub jittered_ttls: u64,
    pub coalesce: crate::metrics::CoalesceCounts,
}

impl StatCounters {
    /// The totals now, from the gauges and the command count.
    pub fn from_gauges(g: &Gauges, total_commands: u64) -> StatCounters {
        StatCounters {
            total_connections: g.total_connections,
            total_commands,
            expired: g.expired,
            evicted: g.evicted,
            hits: g.hits,
            misses: g.misses,
            jittered_ttls: g.jittered_ttls,
            coalesce: g.coalesce,
        }
    }

    /// What changed since `base`.
    pub fn since(self, base: StatCounters) -> StatCounters {
        StatCounters {
            total_connections: self.total_connections.saturating_sub(base.total_connections),
            total_commands: self.total_commands.saturating_sub(base.total_commands),
            expired: self.expired.saturating_sub(base.expired),
            evicted: self.evicted.saturating_sub(base.evicted),
            hits: self.hits.saturating_sub(base.hits),
            misses: self.misses.saturating_sub(base.misses),
            jittered_ttls: self.jittered_ttls.saturating_sub(base.jittered_ttls),
            coalesce: self.coalesce.since(base.coalesce),
        }
    }
}

impl ServerState {
    /// `commands`: the size of the command registry (per-command metrics).
    pub fn new(port: u16, access: Access, threads: usize, commands: usize, cluster: Arc<ClusterState>) -> Self {
        let run_id: String = (0..40)
            .map(|_| char::from(b"0123456789abcdef"[rand::random::<usize>() % 16]))
            .collect();
        ServerState {
            access: Arc::new(access),
            clients: ClientRegistry::default(),
            started: Instant::now(),
            run_id,
            port,
            total_connections: AtomicU64::new(0),
            metrics: Metrics::new(threads, commands),
            ready: AtomicBool::new(false),
            threads,
            replication: Arc::new(Replication::new(cluster.clone())),
            handovers: Arc::new(Handovers::default()),
            hotkeys: crate::hotkeys::HotKeys::disabled(),
            cluster,
            stats_baseline: parking_lot::Mutex::new(StatCounters::default()),
            tracking: crate::tracking::Tracking::default(),
            blocking: Blocking::default(),
            bloom: BloomParams::default(),
            coalesce: crate::coalesce::Coalescing::default(),
        }
    }

    /// The same state with these hot-key sketches (before it is shared).
    pub fn with_hotkeys(mut self, hotkeys: crate::hotkeys::HotKeys) -> Self {
        self.hotkeys = hotkeys;
        self
    }

    /// The gauges sampled now, for /metrics and INFO.
    pub fn gauges(&self, store: &Store) -> Gauges {
        let (keys, expires) = store.key_counts();
        let (hits, misses) = store.hits_misses();
        Gauges {
            keys,
            expires,
            used_memory: store.mem.used(),
            maxmemory: store.mem.max(),
            rss: rss_bytes(),
            hits,
            misses,
            evicted: store.stats.evicted_keys.load(Ordering::Relaxed),
            expired: store.stats.expired_keys.load(Ordering::Relaxed),
            connected_clients: self.clients.count(),
            total_connections: self.total_connections.load(Ordering::Relaxed),
            jittered_ttls: store.ttl_jitter.jittered(),
            coalesce: self.coalesce.stats.snapshot(),
            replica_reads: self.cluster.replica_reads.load(Ordering::Relaxed),
        }
    }

    /// INFO's stats counters since the last CONFIG RESETSTAT, from gauges `g`.
    pub fn stats_since_reset(&self, g: &Gauges) -> StatCounters {
        StatCounters::from_gauges(g, self.metrics.total_commands()).since(*self.stats_baseline.lock())
    }

    /// CONFIG RESETSTAT: INFO's counters start again from zero.
    pub fn reset_stats(&self, store: &Store) {
        *self.stats_baseline.lock() = StatCounters::from_gauges(&self.gauges(store), self.metrics.total_commands());
    }
}

/// Mutable, displayable facts about a client (`CLIENT SETNAME`, `CLIENT SETINFO`).
#[derive(Debug, Default, Clone)]
pub struct ClientMeta {
    pub name: Option<String>,
    pub lib_name: Option<String>,
    pub lib_ver: Option<String>,
    pub last_cmd: &'static str,
    pub resp: u8,
}

/// The part of a client other connections can see (for `CLIENT LIST`).
#[derive(Debug)]
pub struct ClientShared {
    pub id: u64,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub connected: Instant,
    pub meta: Mutex<ClientMeta>,
}

impl ClientShared {
    /// One line of `CLIENT LIST` / `CLIENT INFO`, in Redis' field format.
    pub fn info_line(&self) -> String {
        let m = self.meta.lock();
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            m.name.as_deref().unwrap_or(""),
            self.connected.elapsed().as_secs(),
            if m.last_cmd.is_empty() { "NULL" } else { m.last_cmd },
            m.resp,
            m.lib_name.as_deref().unwrap_or(""),
            m.lib_ver.as_deref().unwrap_or(""),
        )
    }
}

/// All connected clients, by id.
#[derive(Debug, Default)]
pub struct ClientRegistry {
    next_id: AtomicU64,
    clients: Mutex<BTreeMap<u64, Arc<ClientShared>>>,
}

impl ClientRegistry {
    pub fn register(&self, addr: SocketAddr, laddr: SocketAddr) -> Arc<ClientShared> {
        let c = self.detached(addr, laddr);
        self.clients.lock().insert(c.id, c.clone());
        c
    }

    /// A client with an id of its own that `CLIENT LIST` does not show (the replica's
    /// runner of replicated commands).
    pub fn detached(&self, addr: SocketAddr, laddr: SocketAddr) -> Arc<ClientShared> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        Arc::new(ClientShared {
            id,
            addr,
            laddr,
            connected: Instant::now(),
            meta: Mutex::new(ClientMeta {
                resp: 2,
                ..ClientMeta::default()
            }),
        })
    }

    pub fn unregister(&self, id: u64) {
        self.clients.lock().remove(&id);
    }

    pub fn count(&self) -> usize {
        self.clients.lock().len()
    }

    pub fn all(&self) -> Vec<Arc<ClientShared>> {
        self.clients.lock().values().cloned().collect()
    }
}

/// Per-connection state.
#[derive(Debug)]
pub struct ClientState {
    pub shared: Arc<ClientShared>,
    pub authenticated: bool,
    /// `CLIENT NO-EVICT on`: this client's writes skip the memory check.
    pub no_evict: bool,
    /// `READONLY`: reads of slots this node replicates are served here.
    pub readonly: bool,
    /// The connection came in on the replica port: it is `READONLY` from the start, and
    /// what a replica does not serve (writes; reads after `READWRITE`) is redirected to
    /// the slot's primary, as a Redis replica answers.
    pub replica_port: bool,
    /// Whether this connection can await a handover read-through (the RESP port's
    /// connection loop can; the proxy port cannot).
    pub can_read_through: bool,
    /// MULTI/EXEC and WATCH (the RESP port only: the proxy port forwards each command
    /// on its own and refuses them).
    pub tx: Transaction,
    /// Client-side caching and Pub/Sub of this connection (the RESP port only).
    pub pushes: Pushes,
    /// Whether this connection can hold a blocked command (the RESP port's loop can;
    /// the proxy port cannot).
    pub can_block: bool,
    /// Set while a blocked command runs again after a wake-up: a key of another type
    /// then counts as empty, as Redis serves a blocked client only from a key of the
    /// type it waits for (a first run answers WRONGTYPE).
    pub blocked: bool,
    /// How many commands are running on this connection, one inside the other (a
    /// command run by another command, as EXEC runs its queue, is at depth 2). Kept
    /// by the pipeline.
    pub depth: u32,
    /// `RINGCACHE.COALESCE` mode and the key a coalesced GET waits for.
    pub coalesce: crate::coalesce::ClientCoalesce,
    /// The slot whose write gate the running command holds (set by routing, released
    /// by the pipeline; see `ClusterState::enter_write`).
    pub write_gate: Option<ringcache_core::slot::Slot>,
}

/// A connection's CLIENT TRACKING mode and subscriptions.
#[derive(Debug, Default)]
pub struct Pushes {
    /// Whether this port delivers pushes (the proxy port does not).
    pub supported: bool,
    /// `CLIENT TRACKING on` options; `None` when off.
    pub tracking: Option<crate::tracking::Mode>,
    /// `CLIENT CACHING yes|no` was given for the next command.
    pub caching: bool,
    /// Channels this connection subscribed to, in order.
    pub channels: Vec<bytes::Bytes>,
}

impl Pushes {
    /// Push state for a port that delivers pushes.
    pub fn supported() -> Pushes {
        Pushes {
            supported: true,
            ..Pushes::default()
        }
    }
}

/// A connection's transaction: what MULTI queued and what WATCH watches.
#[derive(Debug, Default)]
pub struct Transaction {
    /// Whether this port runs transactions at all.
    pub supported: bool,
    /// Commands queued since MULTI; `None` outside a transaction.
    pub queued: Option<Vec<Vec<bytes::Bytes>>>,
    /// A command was refused while queueing: EXEC answers EXECABORT.
    pub failed: bool,
    /// Watched keys, their slots and what their shard counted at WATCH.
    pub watched: Vec<(bytes::Bytes, ringcache_core::slot::Slot, Stamp)>,
}

impl Transaction {
    /// A transaction state for a port that runs transactions.
    pub fn supported() -> Transaction {
        Transaction {
            supported: true,
            ..Transaction::default()
        }
    }

    pub fn in_multi(&self) -> bool {
        self.queued.is_some()
    }
}

impl ClientState {
    pub fn id(&self) -> u64 {
        self.shared.id
    }
}
