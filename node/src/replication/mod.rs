//! Replication primary → replicas (DESIGN.md §5).
//!
//! What is shipped is the *state of each written key after the write* (string value
//! or all hash fields, plus the absolute expiry), or its deletion, or a flush. Replicas
//! never re-execute commands, so `INCR`, relative `EXPIRE` and friends replicate
//! deterministically.
//!
//! - Primary side: after a write command on a slot this node is primary of (and that
//!   has replicas), the command pipeline calls [`Replication::record_write`], which
//!   reads each written key's state under its shard lock and appends a
//!   [`record::Record`] to the node's bounded [`backlog::Backlog`], still under that
//!   lock, so records of one key are in the order of its writes.
//!   A replica connects to the main RESP port and sends
//!   `RINGCACHE.SYNC <replica-id> <epoch> <next-offset>`; [`primary::serve`] then
//!   streams on that connection: a partial resume from the backlog when `next-offset`
//!   is still in it, else a full copy of every slot the replica holds for this
//!   primary followed by the backlog from the position taken before the copy.
//! - Replica side: [`replica::spawn`] runs one link per primary it replicates (from
//!   the topology; restarted when the topology changes, reconnecting with backoff),
//!   applies frames straight to the store and acknowledges applied offsets with
//!   `RINGCACHE.ACK <offset>`.
//! - Acknowledged writes: with `--min-replicas-to-ack N`, a write's reply waits (the
//!   connection awaits [`Replication::wait_for_acks`]) until
//!   N replicas of its slot acknowledged its offset, else `-NOREPLICAS` after
//!   `--replica-ack-timeout-ms`. As with Redis `WAIT`, the write stays applied on the
//!   primary in that case; the client only learns it is not known to be replicated.
//!   Slots without a replica in the topology are not waited on. Each acknowledged
//!   write waits on its own, so a pipeline of them costs one replica round trip each.
//!
//! Known limits:
//! - A hash is shipped whole on every write to it (O(fields) per `HSET`).
//! - Eviction and expiry are not shipped: replicas expire by the absolute time they
//!   were given and evict under their own `maxmemory`.
//! - A replica shows a slot partially while a full copy of it is in progress, and
//!   keeps the keys of slots it stops replicating (cleaning up is the handover's job).
//! - A hash with more fields than the RESP multibulk limit (512 Ki fields) cannot be
//!   shipped; its stream fails and retries.
//! - Writes through the proxy port wait for acknowledgements on the node that owns
//!   the key (a forwarded write waits there, a local one in the proxy).

pub mod backlog;
pub mod primary;
pub mod record;
pub mod replica;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use ringcache_core::slot::Slot;
use ringcache_core::slotset::SlotSet;
use ringcache_core::status::{LinkStatus, PeerStatus, ReplicationStatus};
use ringcache_core::view::View;
use tokio::sync::watch;

use crate::cluster::ClusterState;
use crate::store::Store;
use backlog::{Backlog, DEFAULT_BACKLOG_BYTES};
use record::Record;

/// The reply of a write that was not acknowledged by enough replicas in time.
pub const NOREPLICAS: &str = "NOREPLICAS Not enough good replicas to write.";

/// Why a replication stream failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol error: {0}")]
    Protocol(#[from] crate::resp::ProtocolError),
    #[error("malformed replication frame: {0}")]
    BadFrame(String),
    #[error("primary refused the sync: {0}")]
    Refused(String),
    #[error("unexpected frame: {0}")]
    Unexpected(String),
    #[error("the replica fell out of the backlog: {0}")]
    Lagged(#[from] backlog::OutOfRange),
    #[error("no data from the peer for {0:?}")]
    Idle(Duration),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("buffer limit of {0} bytes exceeded")]
    BufferLimit(usize),
    #[error("the topology changed")]
    TopologyChanged,
}

/// A replica connected to this primary.
#[derive(Debug, Clone, Default)]
struct Peer {
    acked: u64,
    connected: bool,
    /// The stream currently serving this replica.
    session: u64,
}

/// Replica-side progress of the link to one primary.
#[derive(Debug, Clone)]
pub(crate) struct LinkProgress {
    /// The primary's process instance the offsets refer to.
    instance: String,
    slots: SlotSet,
    /// Next offset wanted from the primary (0: nothing applied yet, full copy needed).
    next: u64,
    connected: bool,
    /// The resync generation this progress belongs to; a newer one starts over.
    generation: u64,
}

/// Wait until enough replicas of `slot` acknowledged `offset`.
#[derive(Debug, Clone, Copy)]
pub struct AckWait {
    pub offset: u64,
    pub slot: Slot,
}

/// A replica's `RINGCACHE.SYNC` request.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub replica_id: String,
    pub epoch: u64,
    pub next_offset: u64,
    /// Slots the replica now leads and waits for this node's fence of
    /// (`FENCE <start> <end> ...`, see [`crate::fence`]).
    pub fence: SlotSet,
}

/// Replication state of one node: its backlog as a primary, the acknowledgements of
/// its replicas, and its links to its own primaries.
#[derive(Debug)]
pub struct Replication {
    cluster: Arc<ClusterState>,
    pub backlog: Backlog,
    min_acks: AtomicUsize,
    ack_timeout_ms: AtomicU64,
    peers: Mutex<HashMap<String, Peer>>,
    sessions: AtomicU64,
    /// Bumped on every acknowledgement; writes waiting for acks watch it.
    acks_tx: watch::Sender<u64>,
    pub(crate) links: Mutex<HashMap<String, LinkProgress>>,
    /// Replica side: links are closed and not re-opened while paused.
    paused_tx: watch::Sender<bool>,
    /// Replica side: bumped to restart every link with a full copy.
    resync_tx: watch::Sender<u64>,
    pub counters: Counters,
}

/// Monotonic counters, for tests and status.
#[derive(Debug, Default)]
pub struct Counters {
    /// Primary side: full copies served.
    pub full_syncs_served: AtomicU64,
    /// Primary side: partial resumes served.
    pub partial_syncs_served: AtomicU64,
    /// Replica side: full copies received.
    pub full_syncs_received: AtomicU64,
    /// Replica side: partial resumes received.
    pub partial_syncs_received: AtomicU64,
    /// Replica side: data records applied (copies included).
    pub records_applied: AtomicU64,
}

impl Replication {
    pub fn new(cluster: Arc<ClusterState>) -> Replication {
        Replication {
            cluster,
            backlog: Backlog::new(DEFAULT_BACKLOG_BYTES),
            min_acks: AtomicUsize::new(0),
            ack_timeout_ms: AtomicU64::new(1000),
            peers: Mutex::new(HashMap::new()),
            sessions: AtomicU64::new(0),
            acks_tx: watch::Sender::new(0),
            links: Mutex::new(HashMap::new()),
            paused_tx: watch::Sender::new(false),
            resync_tx: watch::Sender::new(0),
            counters: Counters::default(),
        }
    }

    /// Sets `minReplicasToAck` and the acknowledgement timeout.
    pub fn configure(&self, min_replicas_to_ack: usize, ack_timeout_ms: u64) {
        self.min_acks.store(min_replicas_to_ack, Ordering::Relaxed);
        self.ack_timeout_ms.store(ack_timeout_ms, Ordering::Relaxed);
    }

    pub fn min_replicas_to_ack(&self) -> usize {
        self.min_acks.load(Ordering::Relaxed)
    }

    /// Changes the backlog's byte cap.
    pub fn set_backlog_cap(&self, bytes: usize) {
        self.backlog.set_cap(bytes);
    }

    /// Replica side: closes every link to a primary and keeps them closed while
    /// `paused` (maintenance, tests of resume and re-copy).
    pub fn set_paused(&self, paused: bool) {
        self.paused_tx.send_replace(paused);
    }

    pub(crate) fn paused(&self) -> watch::Receiver<bool> {
        self.paused_tx.subscribe()
    }

    /// Replica side: drops what was replicated so far and restarts every link with a
    /// full copy (after this node's keyspace was flushed, replicated slots included).
    pub fn resync(&self) {
        self.resync_tx.send_modify(|g| *g += 1);
    }

    pub(crate) fn resyncs(&self) -> watch::Receiver<u64> {
        self.resync_tx.subscribe()
    }

    /// Current offsets, per-replica acknowledgements and per-primary links.
    pub fn status(&self) -> ReplicationStatus {
        let (first, next, bytes) = self.backlog.bounds();
        let current = next - 1;
        let mut peers: Vec<PeerStatus> = self
            .peers
            .lock()
            .iter()
            .map(|(id, p)| PeerStatus {
                replica_id: id.clone(),
                acked_offset: p.acked,
                lag_records: current.saturating_sub(p.acked),
                connected: p.connected,
            })
            .collect();
        peers.sort_by(|a, b| a.replica_id.cmp(&b.replica_id));
        let mut links: Vec<LinkStatus> = self
            .links
            .lock()
            .iter()
            .map(|(id, l)| LinkStatus {
                primary_id: id.clone(),
                applied_offset: l.next.saturating_sub(1),
                connected: l.connected,
            })
            .collect();
        links.sort_by(|a, b| a.primary_id.cmp(&b.primary_id));
        let c = &self.counters;
        ReplicationStatus {
            current_offset: current,
            backlog_first_offset: first,
            backlog_bytes: bytes as u64,
            peers,
            links,
            full_syncs_served: c.full_syncs_served.load(Ordering::Relaxed),
            partial_syncs_served: c.partial_syncs_served.load(Ordering::Relaxed),
            full_syncs_received: c.full_syncs_received.load(Ordering::Relaxed),
            partial_syncs_received: c.partial_syncs_received.load(Ordering::Relaxed),
            fencing: self.cluster.fences.fenced().ranges(),
        }
    }

    /// Primary side: a replica (re)started a stream; `acked` is what it already has.
    /// Returns the stream's session number.
    fn peer_connected(&self, id: &str, acked: u64) -> u64 {
        let session = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        let mut peers = self.peers.lock();
        let p = peers.entry(id.to_string()).or_default();
        p.acked = acked;
        p.connected = true;
        p.session = session;
        drop(peers);
        self.acks_tx.send_modify(|g| *g += 1);
        session
    }

    /// Primary side: stream `session` of replica `id` ended (a newer stream of the
    /// same replica is left alone).
    fn peer_disconnected(&self, id: &str, session: u64) {
        if let Some(p) = self.peers.lock().get_mut(id) {
            if p.session == session {
                p.connected = false;
            }
        }
    }

    fn peer_acked(&self, id: &str, offset: u64) {
        if let Some(p) = self.peers.lock().get_mut(id) {
            p.acked = p.acked.max(offset);
        }
        self.acks_tx.send_modify(|g| *g += 1);
    }

    /// How many connected replicas of `slot` (in the current topology) acknowledged
    /// `offset`.
    fn acked_by(&self, slot: Slot, offset: u64) -> usize {
        let Some(view) = self.cluster.view() else { return 0 };
        let peers = self.peers.lock();
        view.slots
            .owners(slot)
            .iter()
            .skip(1)
            .filter(|id| peers.get(id.as_str()).is_some_and(|p| p.connected && p.acked >= offset))
            .count()
    }

    /// Waits until `min_replicas_to_ack` replicas of the slot acknowledged the offset,
    /// or the timeout; returns whether enough did.
    pub async fn wait_for_acks(&self, wait: AckWait) -> bool {
        let need = self.min_replicas_to_ack();
        if need == 0 {
            return true;
        }
        let timeout = Duration::from_millis(self.ack_timeout_ms.load(Ordering::Relaxed));
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.acks_tx.subscribe();
        loop {
            if self.acked_by(wait.slot, wait.offset) >= need {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return self.acked_by(wait.slot, wait.offset) >= need,
            }
        }
    }
}

impl Replication {
    /// Primary side, after a write command on `slot` that routing let run here: when
    /// this node is the slot's primary and the slot has replicas, appends the state of
    /// every key of `keys` in `slot` to the backlog, each under its shard lock. Returns
    /// the offset of the last record appended (0: none, nothing to wait for).
    pub fn record_write<'k>(
        &self,
        store: &Store,
        view: &View,
        slot: Slot,
        keys: impl Iterator<Item = &'k Bytes>,
        now: u64,
    ) -> u64 {
        if !view.is_primary(slot) || view.slots.owners(slot).len() < 2 {
            return 0;
        }
        let mut last = 0;
        let mut locked = store.lock(slot);
        let mut s = locked.slot();
        for key in keys {
            let rec = Record::from_entry(key, s.get(key, now).map(|e| &*e));
            last = self.backlog.append(slot, rec);
        }
        last
    }

    /// Primary side, after `FLUSHALL`/`FLUSHDB`: every slot this node is primary of was
    /// emptied, so each replica empties the slots it holds for this node; and the
    /// slots this node replicates were emptied too, so they are copied again.
    pub fn record_flush(&self) {
        self.backlog.append(0, Record::flush());
        self.resync();
    }

    /// An acknowledgement wait for a write whose last record is `offset`, if
    /// `minReplicasToAck` asks for one.
    pub fn ack_wait(&self, slot: Slot, offset: u64) -> Option<AckWait> {
        (offset > 0 && self.min_replicas_to_ack() > 0).then_some(AckWait { offset, slot })
    }
}
