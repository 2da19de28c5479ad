//! State shared by all connections (configuration that `CONFIG SET` changes, the
//! client list, counters) and the per-connection client state.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

use crate::cluster::state::ClusterState;
use crate::metrics::Metrics;
use crate::resp::Limits;

/// Process-wide server state.
#[derive(Debug)]
pub struct ServerState {
    pub requirepass: RwLock<Option<String>>,
    pub clients: ClientRegistry,
    pub started: Instant,
    pub run_id: String,
    pub port: u16,
    pub limits: Limits,
    /// Maximum bytes a client may have buffered in an incomplete request.
    pub max_query_buffer: usize,
    pub total_connections: AtomicU64,
    pub metrics: Metrics,
    pub ready: AtomicBool,
    pub threads: usize,
    pub cluster: Arc<ClusterState>,
    /// Backlog, replica acknowledgements and links to primaries.
    pub replication: Arc<crate::replication::Replication>,
    /// Slot handovers to this node, and slots retained here for others.
    pub handovers: Arc<crate::handover::Handovers>,
    /// INFO's counters as they were at the last CONFIG RESETSTAT: INFO shows what
    /// happened since. The counters themselves never go back (per-slot hits and misses
    /// feed the control plane's hit rates and /metrics, which expect monotonic totals).
    pub stats_baseline: parking_lot::Mutex<StatCounters>,
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
}

impl StatCounters {
    /// The totals now, from the gauges and the command count.
    pub fn from_gauges(g: &crate::metrics::Gauges, total_commands: u64) -> StatCounters {
        StatCounters {
            total_connections: g.total_connections,
            total_commands,
            expired: g.expired,
            evicted: g.evicted,
            hits: g.hits,
            misses: g.misses,
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
        }
    }
}

impl ServerState {
    pub fn new(
        port: u16,
        requirepass: Option<String>,
        limits: Limits,
        max_query_buffer: usize,
        threads: usize,
        cluster: Arc<ClusterState>,
    ) -> Self {
        let run_id: String = (0..40)
            .map(|_| char::from(b"0123456789abcdef"[rand::random::<usize>() % 16]))
            .collect();
        ServerState {
            requirepass: RwLock::new(requirepass),
            clients: ClientRegistry::default(),
            started: Instant::now(),
            run_id,
            port,
            limits,
            max_query_buffer,
            total_connections: AtomicU64::new(0),
            metrics: Metrics::new(threads),
            ready: AtomicBool::new(false),
            threads,
            replication: Arc::new(crate::replication::Replication::new(cluster.clone())),
            handovers: Arc::new(crate::handover::Handovers::default()),
            cluster,
            stats_baseline: parking_lot::Mutex::new(StatCounters::default()),
        }
    }

    /// The limits a client's next request is parsed with: before AUTH on a server with
    /// a password, Redis' small ones (see [`Limits::unauthenticated`]).
    pub fn request_limits(&self, authenticated: bool) -> Limits {
        if authenticated {
            self.limits
        } else {
            self.limits.unauthenticated()
        }
    }

    /// Whether a new connection must authenticate first.
    pub fn auth_required(&self) -> bool {
        self.requirepass.read().is_some()
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
    /// Acknowledgement wait or replication stream requested by the last command.
    pub repl: crate::replication::ClientRepl,
    /// Handover read-through requested by the last command.
    pub handover: crate::handover::ClientHandover,
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
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let c = Arc::new(ClientShared {
            id,
            addr,
            laddr,
            connected: Instant::now(),
            meta: Mutex::new(ClientMeta {
                resp: 2,
                ..ClientMeta::default()
            }),
            repl: Default::default(),
            handover: Default::default(),
        });
        self.clients.lock().insert(id, c.clone());
        c
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
}

impl ClientState {
    pub fn id(&self) -> u64 {
        self.shared.id
    }
}
