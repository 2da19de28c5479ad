//! Replication primary → replicas (DESIGN.md §5).
//!
//! What is shipped is the *state of each written key after the write* (string value
//! or all elements of a collection, plus the absolute expiry), or its deletion, or a
//! flush; or, for the collection writes that are deterministic given the value they find
//! (`LPUSH`, `LTRIM`, `HSET`, `SADD`, `ZADD`, … flagged `REPLAY` in their command
//! tables), the command itself when it made the one change the replicas miss
//! (store/changes.rs). So a push to a feed of 1,000 elements ships the pushed element,
//! not the feed. Replicas never re-execute anything else, so `INCR`, relative `EXPIRE`,
//! `SPOP` and friends replicate deterministically.
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
//! - A collection write that is not deterministic (`SPOP`, a blocking pop, `EXEC`'s
//!   commands are replayed one by one though) or touches several keys (`LMOVE`,
//!   `ZUNIONSTORE`) ships the whole value of each key it wrote.
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
use crate::store::{Changes, SlotRef, Store};
use backlog::{Backlog, DEFAULT_BACKLOG_BYTES};
use record::Record;

/// A write command that may be shipped as itself: its arguments (name, key, …) and the
/// change count its key's value had before it ran.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub base: u64,
    pub args: &'a [Bytes],
}

/// Whether a write is shipped as its command: the value changed exactly once since the
/// command found it at `base`, and the replicas have the value at `base` (nothing else
/// is pending for them). Otherwise the whole value goes.
pub fn ships_as_command(changes: Changes, base: u64) -> bool {
    changes.shipped == base && changes.count == base.wrapping_add(1)
}

/// The record for `key` as it is now, with its collection marked as shipped at its
/// current count; or its command, when `change` (for this key) may be shipped instead.
fn record_for(s: &mut SlotRef<'_>, key: &[u8], now: u64, change: Option<Change<'_>>) -> Record {
    let Some(e) = s.get(key, now) else {
        return Record::del(key);
    };
    let expires = e.expire_at().is_some();
    let Some(c) = e.changes_mut() else {
        return Record::from_entry(key, Some(e));
    };
    let as_command = change.filter(|ch| ch.args.get(1).is_some_and(|k| k == key) && ships_as_command(*c, ch.base));
    c.shipped = c.count;
    match as_command {
        // The time goes along only when it matters: a key with a TTL.
        Some(ch) => Record::command(ch.base, if expires { now } else { 0 }, ch.args),
        None => Record::from_entry(key, Some(e)),
    }
}

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
    /// Primary side: bytes of records appended to the backlog (each counted once,
    /// however many replicas it goes to).
    pub bytes_shipped: AtomicU64,
    /// Primary side: records that are a write command rather than a whole value.
    pub commands_shipped: AtomicU64,
    /// Primary side: whole values shipped because a replica asked (`RINGCACHE.REFETCH`).
    pub refetches_served: AtomicU64,
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
    /// Whether writes to `slot` are shipped from here: this node is its primary and
    /// it has replicas.
    pub fn ships(view: &View, slot: Slot) -> bool {
        view.is_primary(slot) && view.slots.owners(slot).len() >= 2
    }

    /// Primary side, before a write command that may be shipped as itself runs: the
    /// change count of its key's value (none for a missing key or a string).
    pub fn change_base(store: &Store, view: &View, slot: Slot, key: &[u8], now: u64) -> Option<u64> {
        if !Self::ships(view, slot) {
            return None;
        }
        let mut locked = store.lock(slot);
        let mut s = locked.slot();
        // A write's lookup: no hit or miss counted (the warm-up gate reads hit rates).
        s.get(key, now).and_then(|e| e.changes()).map(|c| c.count)
    }

    /// Primary side, after a write command on `slot` that routing let run here: when
    /// this node is the slot's primary and the slot has replicas, appends a record of
    /// every key of `keys` in `slot` to the backlog, each under its shard lock: the
    /// command itself when `change` allows it (see [`ships_as_command`]), else the
    /// key's state. Returns the offset of the last record appended (0: none, nothing
    /// to wait for).
    pub fn record_write<'k>(
        &self,
        store: &Store,
        view: &View,
        slot: Slot,
        keys: impl Iterator<Item = &'k Bytes>,
        change: Option<Change<'_>>,
        now: u64,
    ) -> u64 {
        if !Self::ships(view, slot) {
            return 0;
        }
        let mut last = 0;
        let mut locked = store.lock(slot);
        let mut s = locked.slot();
        // A key named twice (LMOVE k k, SUNIONSTORE k k) is one record. A set, not a
        // list: an MSET of thousands of keys in one slot stays linear.
        let mut done: hashbrown::HashSet<&Bytes> = hashbrown::HashSet::new();
        for key in keys {
            if !done.insert(key) {
                continue;
            }
            last = self.append(slot, record_for(&mut s, key, now, change));
        }
        last
    }

    /// Primary side, when a replica asks (`RINGCACHE.REFETCH`): ships `key`'s whole
    /// value, or its deletion, if this node is still its slot's primary.
    pub fn refetch(&self, store: &Store, key: &[u8], now: u64) {
        let slot = ringcache_core::slot::key_slot(key);
        let Some(view) = self.cluster.view() else { return };
        if !Self::ships(&view, slot) {
            return;
        }
        self.counters.refetches_served.fetch_add(1, Ordering::Relaxed);
        let mut locked = store.lock(slot);
        let mut s = locked.slot();
        let rec = record_for(&mut s, key, now, None);
        self.append(slot, rec);
    }

    fn append(&self, slot: Slot, rec: Record) -> u64 {
        let (tag, nargs, body) = (rec.tag, rec.nargs, rec.body.len());
        let offset = self.backlog.append(slot, rec);
        let bytes = record::frame_len(tag, nargs, body, offset);
        self.counters.bytes_shipped.fetch_add(bytes as u64, Ordering::Relaxed);
        if tag == record::Tag::Cmd {
            self.counters.commands_shipped.fetch_add(1, Ordering::Relaxed);
        }
        offset
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_ships_as_its_command_only_when_it_is_the_one_change_the_replicas_miss() {
        let at = |count, shipped| Changes { count, shipped };
        // Found at 7, replicas have 7, one change since: the command goes.
        assert!(ships_as_command(at(8, 7), 7));
        // Another write changed it too (before or after this one ran).
        assert!(!ships_as_command(at(9, 7), 7));
        assert!(!ships_as_command(at(9, 8), 8 - 1));
        // It changed nothing (the count did not move).
        assert!(!ships_as_command(at(7, 7), 7));
        // The replicas are behind, or never got this value (a new value, one received
        // as a replica, one already shipped whole after this write).
        assert!(!ships_as_command(at(8, 6), 7));
        assert!(!ships_as_command(at(8, Changes::NOT_SHIPPED), 7));
        assert!(!ships_as_command(at(8, 8), 7));
    }
}
