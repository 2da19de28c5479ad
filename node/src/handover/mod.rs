//! Handover of hash slots from an old owner (the *source*) to a new owner, with
//! warm-up (DESIGN.md §6). A controller drives it with topologies and three RPCs:
//!
//! 1. **Copy.** An epoch where the new owner is an extra replica of the moving slots:
//!    replication copies them (hottest keys first, see
//!    [`crate::replication::primary`]) and then streams every write.
//! 2. **Flip with read-through.** `BeginHandover` on the new owner (it tells the
//!    source to *retain* the slots, see below), then an epoch where the new owner is
//!    primary of the slots. While the handover is active, a keyed command on the new
//!    owner whose key is missing locally reads the key's record from the source
//!    (`RINGCACHE.FETCH`, the record format replication uses), fills the local store
//!    and runs against it. The fetch is a connection-loop step ([`ClientHandover`]):
//!    the command asks for the keys, the loop awaits them (bounded by
//!    [`fetch::FETCH_TIMEOUT`]), applies them and runs the command again; an
//!    unreachable source is a miss. Writes read through too (so `INCR`, `APPEND`,
//!    `HSET` start from the source's value). A key written or deleted on the new owner
//!    since `BeginHandover` is never read through ([`written::WrittenKeys`], bounded;
//!    when full, or after a `FLUSHALL`, the handover stops reading through and says
//!    so in its status). `AdvanceHandover` adds slots (the next stage);
//!    `CompleteHandover` ends read-through and returns the final counters.
//!    After a copy, the controller applies the flip epoch on the old owners first,
//!    waits until the new owner applied their replication offsets (its link status),
//!    then applies it on the new owner: a write an old owner acknowledged just before
//!    the flip then cannot be missing from (or older on) the new owner, which
//!    read-through would not repair since the key is present there.
//! 3. **Counters** per handover ([`HandoverSnapshot`]), in `GetStatus` and
//!    `/metrics`: reads served while this node is primary of a handed-over slot count
//!    as local hits, read-through hits or misses; the controller gates stages on
//!    (local + read-through hits) / all.
//!
//! **Cleanup.** A node drops the keys of slots it no longer holds (neither primary
//! nor replica) in its newest topology ([`cleanup`], bounded batches), except slots a
//! handover *retains* on it as a source (`RINGCACHE.RETAIN` from the new owner at
//! Begin/Advance, `RINGCACHE.RELEASE` at Complete), so read-through keeps working when
//! the flip epoch drops the source from the slots.
//!
//! **No ASK/ASKING.** Ownership of a stage's slots flips atomically by epoch, not key
//! by key, so there is no window where a key may live on either node from the
//! client's point of view: a client with a stale map gets `-MOVED` from the source
//! and the new owner finds missing keys itself by read-through.
//!
//! Known limits:
//! - If the flip epoch keeps the source as a *replica* of the slots, replication gives
//!   the source a full copy from the new owner, which first empties those slots on the
//!   source: read-through then only finds keys the new owner already had. So a flip
//!   without (or with an unfinished) copy must drop the source from the slots.
//! - `BeginHandover` / `AdvanceHandover` must come before the epoch that flips their
//!   slots: writes made here before a slot joins a handover are not in its
//!   written-keys set, so a key deleted here earlier could be read through again.
//! - Only keyed commands read through; key enumeration (`SCAN`, `KEYS`, `DBSIZE`,
//!   `CLUSTER COUNTKEYSINSLOT`) shows local keys only.
//! - Commands through the proxy port do not read through (counted as misses).
//! - A read-through blocks its connection (not the worker) for up to
//!   [`fetch::FETCH_TIMEOUT`]; pipelined commands behind it wait, in order.
//! - Retain/release are best effort: an unreachable source at Begin is logged, not
//!   refused, and a source that restarts forgets what it retained.
//! - Handover state is in memory only; a restart of the new owner ends it.

pub mod cleanup;
pub mod fetch;
pub mod written;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::cluster::slot::{key_slot, Slot};
use crate::cluster::state::View;
use crate::cluster::topology::{ranges_from_slots, SlotRange, LAST_SLOT};
use crate::cmd::{flag, CommandSpec, Ctx};
use crate::replication::SlotSet;
use written::{Mark, WrittenKeys};

/// Most handovers active on one node at once.
pub const MAX_HANDOVERS: usize = 64;
/// Most keys one command reads through.
pub const MAX_FETCH_KEYS: usize = 64;
/// Default cap of a handover's written-keys set (keys and bytes).
pub const WRITTEN_MAX_KEYS: usize = 256 * 1024;
pub const WRITTEN_MAX_BYTES: usize = 32 * 1024 * 1024;
const MAX_ID_LEN: usize = 256;

/// Why a handover request was refused. Messages name the request field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoverError {
    #[error("{field}: must not be empty")]
    Empty { field: String },
    #[error("{field}: longer than {MAX_ID_LEN} bytes")]
    TooLong { field: String },
    #[error("{field}: {value} is out of range 0..={LAST_SLOT}")]
    SlotOutOfRange { field: String, value: u32 },
    #[error("{field}: end {end} is before start {start}")]
    InvertedRange { field: String, start: u32, end: u32 },
    #[error("{field}: {value:?} is not host:port")]
    BadAddress { field: String, value: String },
    #[error("source_node_id: {0:?} is this node")]
    SourceIsSelf(String),
    #[error("cluster mode is not enabled on this node")]
    NotClusterMode,
    #[error("this node has no topology yet")]
    NoTopology,
    #[error("slots: slot {slot} has primary {primary:?}, neither the source {source_id:?} nor this node")]
    NotOwned {
        slot: Slot,
        primary: String,
        source_id: String,
    },
    #[error("slots: slot {slot} is already in handover {other:?}")]
    Overlap { slot: Slot, other: String },
    #[error("handover_id: {0:?} already exists")]
    AlreadyExists(String),
    #[error("handover_id: no active handover {0:?}")]
    NotFound(String),
    #[error("at most {MAX_HANDOVERS} handovers may be active")]
    TooMany,
}

/// `(start, end)` pairs from a request → a slot set; `field` names the list.
pub fn slots_from_ranges(field: &str, ranges: &[(u32, u32)]) -> Result<SlotSet, HandoverError> {
    if ranges.is_empty() {
        return Err(HandoverError::Empty { field: field.into() });
    }
    let mut set = SlotSet::empty();
    for (i, &(start, end)) in ranges.iter().enumerate() {
        let slot = |name: &str, value: u32| match Slot::try_from(value) {
            Ok(s) if s <= LAST_SLOT => Ok(s),
            _ => Err(HandoverError::SlotOutOfRange {
                field: format!("{field}[{i}].{name}"),
                value,
            }),
        };
        let (s, e) = (slot("start", start)?, slot("end", end)?);
        if e < s {
            return Err(HandoverError::InvertedRange {
                field: format!("{field}[{i}]"),
                start,
                end,
            });
        }
        for x in SlotRange::new(s, e).iter() {
            set.insert(x);
        }
    }
    Ok(set)
}

/// Checks an id field: non-empty and bounded.
pub fn check_id(field: &str, id: &str) -> Result<(), HandoverError> {
    if id.is_empty() {
        return Err(HandoverError::Empty { field: field.into() });
    }
    if id.len() > MAX_ID_LEN {
        return Err(HandoverError::TooLong { field: field.into() });
    }
    Ok(())
}

/// Checks a `host:port` address.
pub fn check_addr(field: &str, addr: &str) -> Result<(), HandoverError> {
    let bad = || HandoverError::BadAddress {
        field: field.into(),
        value: addr.chars().take(256).collect(),
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    Ok(())
}

/// Every slot of `slots` must have `source_id` or this node as primary in `view`.
fn check_owned(view: &View, slots: &SlotSet, source_id: &str) -> Result<(), HandoverError> {
    for slot in slots.iter() {
        let primary = view.slots.primary(slot).unwrap_or("");
        if primary != source_id && primary != view.me.id {
            return Err(HandoverError::NotOwned {
                slot,
                primary: primary.to_string(),
                source_id: source_id.to_string(),
            });
        }
    }
    Ok(())
}

/// One handover, on the new owner.
#[derive(Debug)]
pub struct Handover {
    pub id: String,
    pub source_node_id: String,
    pub source_addr: String,
    pub started_ms: u64,
    slots: RwLock<SlotSet>,
    /// Written keys; its lock also orders fills against completion and marks.
    written: Mutex<Written>,
    local_hits: AtomicU64,
    read_through_hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    /// Idle connections to the source.
    pub(crate) pool: Mutex<Vec<std::net::TcpStream>>,
}

#[derive(Debug)]
struct Written {
    keys: WrittenKeys,
    completed: bool,
}

/// A handover's counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoverSnapshot {
    pub id: String,
    pub slots: Vec<SlotRange>,
    pub source_node_id: String,
    pub source_addr: String,
    pub started_ms: u64,
    pub local_hits: u64,
    pub read_through_hits: u64,
    pub misses: u64,
    pub read_through_errors: u64,
    pub written_keys: u64,
    pub read_through_stopped: bool,
}

impl HandoverSnapshot {
    /// (local + read-through hits) / all counted reads; 1 when nothing was read.
    pub fn hit_ratio(&self) -> f64 {
        let hits = self.local_hits + self.read_through_hits;
        let all = hits + self.misses;
        if all == 0 {
            1.0
        } else {
            hits as f64 / all as f64
        }
    }
}

impl Handover {
    fn new(
        id: String,
        slots: SlotSet,
        source_node_id: String,
        source_addr: String,
        now: u64,
        cap: (usize, usize),
    ) -> Self {
        Handover {
            id,
            source_node_id,
            source_addr,
            started_ms: now,
            slots: RwLock::new(slots),
            written: Mutex::new(Written {
                keys: WrittenKeys::new(cap.0, cap.1),
                completed: false,
            }),
            local_hits: AtomicU64::new(0),
            read_through_hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            pool: Mutex::new(Vec::new()),
        }
    }

    pub fn contains(&self, slot: Slot) -> bool {
        self.slots.read().contains(slot)
    }

    pub fn slots(&self) -> SlotSet {
        self.slots.read().clone()
    }

    /// Whether `key` may be read through now.
    pub fn allows_read_through(&self, key: &[u8]) -> bool {
        let w = self.written.lock();
        !w.completed && w.keys.allows_read_through(key)
    }

    /// Records a write or deletion of `key` on this node.
    pub fn mark_written(&self, key: &[u8]) {
        let mut w = self.written.lock();
        if !w.completed && w.keys.mark(key) == Mark::Full {
            tracing::debug!(handover = %self.id, "handover: written-keys set full, read-through stopped");
        }
    }

    /// Runs `fill` (which inserts a fetched record) only if `key` may still be read
    /// through, under the written-set lock so a concurrent write's mark or the
    /// completion is ordered before or after it. The caller holds the key's shard lock.
    pub fn fill_if_allowed(&self, key: &[u8], fill: impl FnOnce()) -> bool {
        let w = self.written.lock();
        if w.completed || !w.keys.allows_read_through(key) {
            return false;
        }
        fill();
        true
    }

    /// Stops read-through (flush on this node).
    pub fn stop(&self) {
        self.written.lock().keys.set_full();
    }

    pub(crate) fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HandoverSnapshot {
        let (written_keys, stopped) = {
            let w = self.written.lock();
            (w.keys.len() as u64, w.keys.is_full())
        };
        HandoverSnapshot {
            id: self.id.clone(),
            slots: ranges_from_slots(self.slots.read().iter()),
            source_node_id: self.source_node_id.clone(),
            source_addr: self.source_addr.clone(),
            started_ms: self.started_ms,
            local_hits: self.local_hits.load(Ordering::Relaxed),
            read_through_hits: self.read_through_hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            read_through_errors: self.errors.load(Ordering::Relaxed),
            written_keys,
            read_through_stopped: stopped,
        }
    }
}

/// The handovers of one node: those it receives (new-owner side) and the slots it
/// retains for others (source side).
#[derive(Debug)]
pub struct Handovers {
    /// Whether any handover is active (the command path's only check otherwise).
    active: AtomicBool,
    list: RwLock<Vec<Arc<Handover>>>,
    retained: Mutex<HashMap<String, SlotSet>>,
    /// Bumped when retained slots are released, so cleanup runs again.
    retain_generation: AtomicU64,
    written_cap: (usize, usize),
}

impl Default for Handovers {
    fn default() -> Self {
        Handovers::new(WRITTEN_MAX_KEYS, WRITTEN_MAX_BYTES)
    }
}

impl Handovers {
    pub fn new(written_max_keys: usize, written_max_bytes: usize) -> Handovers {
        Handovers {
            active: AtomicBool::new(false),
            list: RwLock::new(Vec::new()),
            retained: Mutex::new(HashMap::new()),
            retain_generation: AtomicU64::new(0),
            written_cap: (written_max_keys, written_max_bytes),
        }
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Starts handover `id` of `slots` from `source_id` at `source_addr`. `view` is the
    /// current topology (none: refused).
    pub fn begin(
        &self,
        id: &str,
        slots: SlotSet,
        source_id: &str,
        source_addr: &str,
        view: Option<&View>,
        now: u64,
    ) -> Result<Arc<Handover>, HandoverError> {
        check_id("handover_id", id)?;
        check_id("source_node_id", source_id)?;
        check_addr("source_resp_addr", source_addr)?;
        let view = view.ok_or(HandoverError::NoTopology)?;
        if source_id == view.me.id {
            return Err(HandoverError::SourceIsSelf(source_id.into()));
        }
        check_owned(view, &slots, source_id)?;
        let mut list = self.list.write();
        if list.iter().any(|h| h.id == id) {
            return Err(HandoverError::AlreadyExists(id.into()));
        }
        if list.len() >= MAX_HANDOVERS {
            return Err(HandoverError::TooMany);
        }
        check_overlap(&list, &slots, id)?;
        let h = Arc::new(Handover::new(
            id.into(),
            slots,
            source_id.into(),
            source_addr.into(),
            now,
            self.written_cap,
        ));
        list.push(h.clone());
        self.active.store(true, Ordering::Release);
        Ok(h)
    }

    /// Adds `slots` to handover `id`.
    pub fn advance(&self, id: &str, slots: &SlotSet, view: Option<&View>) -> Result<Arc<Handover>, HandoverError> {
        check_id("handover_id", id)?;
        // Write-locked so two concurrent advances cannot both claim a slot.
        let list = self.list.write();
        let h = list
            .iter()
            .find(|h| h.id == id)
            .cloned()
            .ok_or_else(|| HandoverError::NotFound(id.into()))?;
        let view = view.ok_or(HandoverError::NoTopology)?;
        check_owned(view, slots, &h.source_node_id)?;
        check_overlap(&list, slots, id)?;
        let mut mine = h.slots.write();
        for s in slots.iter() {
            mine.insert(s);
        }
        drop(mine);
        Ok(h)
    }

    /// Ends handover `id`; returns its final counters.
    pub fn complete(&self, id: &str) -> Result<HandoverSnapshot, HandoverError> {
        check_id("handover_id", id)?;
        let mut list = self.list.write();
        let i = list
            .iter()
            .position(|h| h.id == id)
            .ok_or_else(|| HandoverError::NotFound(id.into()))?;
        let h = list.remove(i);
        self.active.store(!list.is_empty(), Ordering::Release);
        drop(list);
        h.written.lock().completed = true;
        h.pool.lock().clear();
        Ok(h.snapshot())
    }

    pub fn get(&self, id: &str) -> Option<Arc<Handover>> {
        self.list.read().iter().find(|h| h.id == id).cloned()
    }

    /// The active handover covering `slot`.
    pub fn for_slot(&self, slot: Slot) -> Option<Arc<Handover>> {
        self.list.read().iter().find(|h| h.contains(slot)).cloned()
    }

    pub fn snapshots(&self) -> Vec<HandoverSnapshot> {
        let mut v: Vec<HandoverSnapshot> = self.list.read().iter().map(|h| h.snapshot()).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Stops read-through of every handover (this node's keyspace was flushed).
    pub fn stop_all(&self) {
        for h in self.list.read().iter() {
            h.stop();
        }
    }

    /// Source side: keep `slots` (do not clean them up) for handover `id`.
    pub fn retain(&self, id: &str, slots: &SlotSet) {
        let mut r = self.retained.lock();
        if !r.contains_key(id) && r.len() >= MAX_HANDOVERS {
            return;
        }
        let set = r.entry(id.to_string()).or_insert_with(SlotSet::empty);
        for s in slots.iter() {
            set.insert(s);
        }
    }

    /// Source side: handover `id` no longer needs its slots here.
    pub fn release(&self, id: &str) -> bool {
        let removed = self.retained.lock().remove(id).is_some();
        if removed {
            self.retain_generation.fetch_add(1, Ordering::Relaxed);
        }
        removed
    }

    /// Source side: every retained slot.
    pub fn retained(&self) -> SlotSet {
        let mut all = SlotSet::empty();
        for set in self.retained.lock().values() {
            for s in set.iter() {
                all.insert(s);
            }
        }
        all
    }

    pub fn retain_generation(&self) -> u64 {
        self.retain_generation.load(Ordering::Relaxed)
    }
}

fn check_overlap(list: &[Arc<Handover>], slots: &SlotSet, id: &str) -> Result<(), HandoverError> {
    for h in list.iter().filter(|h| h.id != id) {
        let theirs = h.slots.read();
        if let Some(slot) = slots.iter().find(|&s| theirs.contains(s)) {
            return Err(HandoverError::Overlap {
                slot,
                other: h.id.clone(),
            });
        }
    }
    Ok(())
}

/// Keys a command asked to read through, for the connection loop.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub handover: Arc<Handover>,
    pub keys: Vec<Bytes>,
}

/// Per-connection read-through state: whether this connection can await a fetch
/// (the RESP connection loop can; the proxy cannot), the pending request, and the
/// keys filled by the last fetch (for counting when the command runs again).
#[derive(Debug, Default)]
pub struct ClientHandover {
    enabled: AtomicBool,
    pending: AtomicBool,
    request: Mutex<Option<FetchRequest>>,
    filled: Mutex<Option<Vec<Bytes>>>,
}

impl ClientHandover {
    /// This connection's loop runs fetches ([`ClientHandover::take_request`]).
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    fn request(&self, req: FetchRequest) {
        *self.request.lock() = Some(req);
        self.pending.store(true, Ordering::Release);
    }

    /// The fetch the last command asked for, if any (one relaxed load when none).
    pub fn take_request(&self) -> Option<FetchRequest> {
        if !self.pending.load(Ordering::Acquire) {
            return None;
        }
        self.pending.store(false, Ordering::Relaxed);
        self.request.lock().take()
    }

    /// Before running the command again: the keys the fetch filled.
    pub fn set_filled(&self, keys: Vec<Bytes>) {
        *self.filled.lock() = Some(keys);
    }

    fn take_filled(&self) -> Option<Vec<Bytes>> {
        self.filled.lock().take()
    }

    /// After the command ran again (it may not have consumed the filled keys).
    pub fn clear_filled(&self) {
        *self.filled.lock() = None;
    }
}

/// The command path's handover step, after routing and before the handler. Returns
/// `false` when the command must not run now: it asked the connection to read keys
/// through first (and wrote no reply). Counts reads of handed-over slots, marks
/// written keys, and stops read-through on a flush.
pub fn before_command(ctx: &mut Ctx<'_>, spec: &CommandSpec, args: &[Bytes]) -> bool {
    let handovers = &ctx.server.handovers;
    if !handovers.is_active() {
        return true;
    }
    let write = spec.flags & flag::WRITE != 0;
    if write && (spec.name == "flushall" || spec.name == "flushdb") {
        handovers.stop_all();
        return true;
    }
    let client = &ctx.client.shared.handover;
    let filled = client.take_filled();
    let Some(first) = spec.key_positions(args.len()).next() else {
        return true;
    };
    let slot = key_slot(&args[first]);
    let Some(h) = handovers.for_slot(slot) else {
        return true;
    };
    if !ctx.server.cluster.view().is_some_and(|v| v.is_primary(slot)) {
        return true;
    }
    let keys: Vec<&Bytes> = spec
        .key_positions(args.len())
        .map(|p| &args[p])
        .filter(|k| key_slot(k) == slot)
        .collect();
    let present: Vec<bool> = {
        let mut locked = ctx.store.lock(slot);
        let mut s = locked.slot();
        keys.iter().map(|k| s.get(k, ctx.now).is_some()).collect()
    };
    if filled.is_none() && client.enabled.load(Ordering::Relaxed) {
        let mut missing: Vec<Bytes> = Vec::new();
        for (k, _) in keys.iter().zip(&present).filter(|(_, p)| !**p) {
            if missing.len() < MAX_FETCH_KEYS && !missing.contains(k) && h.allows_read_through(k) {
                missing.push((*k).clone());
            }
        }
        if !missing.is_empty() {
            client.request(FetchRequest {
                handover: h,
                keys: missing,
            });
            return false;
        }
    }
    if spec.flags & flag::READONLY != 0 {
        let filled = filled.unwrap_or_default();
        for (k, p) in keys.iter().zip(&present) {
            let counter = match (p, filled.contains(k)) {
                (true, true) => &h.read_through_hits,
                (true, false) => &h.local_hits,
                (false, _) => &h.misses,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
    if write {
        for k in &keys {
            h.mark_written(k);
        }
    }
    true
}

/// Orders `(key, freq, clock)` hottest first: by access frequency (descending), then
/// by last access or insert (most recent first; clocks compare by wrapping age from
/// `now_clock`).
pub fn sort_hottest_first<K>(keys: &mut [(K, u8, u32)], now_clock: u32) {
    keys.sort_by_key(|(_, freq, clock)| (std::cmp::Reverse(*freq), now_clock.wrapping_sub(*clock)));
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Name, help and value of one per-handover metric.
type Metric = (&'static str, &'static str, fn(&HandoverSnapshot) -> u64);

/// Prometheus text for the active handovers.
pub fn render_metrics(handovers: &[HandoverSnapshot]) -> String {
    let mut s = String::new();
    let metrics: [Metric; 7] = [
        (
            "ringcache_handover_local_hits_total",
            "Reads of handed-over slots found locally, by handover.",
            |h| h.local_hits,
        ),
        (
            "ringcache_handover_read_through_hits_total",
            "Reads of handed-over slots filled from the source, by handover.",
            |h| h.read_through_hits,
        ),
        (
            "ringcache_handover_misses_total",
            "Reads of handed-over slots found nowhere, by handover.",
            |h| h.misses,
        ),
        (
            "ringcache_handover_read_through_errors_total",
            "Read-through attempts that failed, by handover.",
            |h| h.read_through_errors,
        ),
        (
            "ringcache_handover_written_keys",
            "Keys written here since the handover began (never read through), by handover.",
            |h| h.written_keys,
        ),
        (
            "ringcache_handover_read_through_stopped",
            "1 when the handover stopped reading through (written-keys set full, or a flush), by handover.",
            |h| u64::from(h.read_through_stopped),
        ),
        ("ringcache_handover_slots", "Slots in the handover, by handover.", |h| {
            h.slots.iter().map(|r| r.len() as u64).sum()
        }),
    ];
    for (name, help, get) in metrics {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for h in handovers {
            let _ = writeln!(s, "{name}{{handover=\"{}\"}} {}", label(&h.id), get(h));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cluster::state::ClusterState;
    use crate::cluster::topology::{NodeInfo, SlotAssignment, Topology};

    fn view(me: &str) -> Arc<View> {
        let state = ClusterState::new(true, Some(me.into()));
        let node = |id: &str| NodeInfo {
            id: id.into(),
            instance: if id == me { state.instance.clone() } else { "x".into() },
            resp_addr: "127.0.0.1:1".into(),
            control_addr: "127.0.0.1:2".into(),
            zone: None,
        };
        let topo = Topology {
            epoch: 1,
            nodes: vec![node("o"), node("n"), node("p")],
            slots: vec![
                SlotAssignment {
                    range: SlotRange::new(0, 99),
                    owners: vec!["o".into()],
                },
                SlotAssignment {
                    range: SlotRange::new(100, 199),
                    owners: vec!["n".into()],
                },
                SlotAssignment {
                    range: SlotRange::new(200, LAST_SLOT),
                    owners: vec!["p".into()],
                },
            ],
        };
        state.apply(topo).unwrap()
    }

    fn set(ranges: &[(u32, u32)]) -> SlotSet {
        slots_from_ranges("slots", ranges).unwrap()
    }

    #[test]
    fn ranges_are_validated_with_field_names() {
        assert_eq!(set(&[(0, 2), (10, 10)]).len(), 4);
        assert_eq!(
            slots_from_ranges("slots", &[]).unwrap_err().to_string(),
            "slots: must not be empty"
        );
        assert_eq!(
            slots_from_ranges("slots", &[(0, 1), (5, 16384)])
                .unwrap_err()
                .to_string(),
            "slots[1].end: 16384 is out of range 0..=16383"
        );
        assert!(matches!(
            slots_from_ranges("slots", &[(9, 3)]),
            Err(HandoverError::InvertedRange { .. })
        ));
        assert!(check_addr("a", "host:6379").is_ok());
        assert!(check_addr("a", "[::1]:6379").is_ok());
        for bad in ["", "host", ":1", "h:0", "h:x", "h:70000"] {
            assert!(check_addr("a", bad).is_err(), "{bad}");
        }
        assert!(check_id("handover_id", "").is_err());
        assert!(check_id("handover_id", &"x".repeat(300)).is_err());
    }

    #[test]
    fn begin_advance_complete_and_preconditions() {
        let hs = Handovers::default();
        let v = view("n");
        assert_eq!(
            hs.begin("h", set(&[(0, 9)]), "o", "127.0.0.1:1", None, 5).unwrap_err(),
            HandoverError::NoTopology
        );
        assert!(matches!(
            hs.begin("h", set(&[(0, 9)]), "n", "127.0.0.1:1", Some(&v), 5),
            Err(HandoverError::SourceIsSelf(_))
        ));
        // Slot 250's primary is p, not the source o.
        assert!(matches!(
            hs.begin("h", set(&[(0, 9), (250, 250)]), "o", "127.0.0.1:1", Some(&v), 5),
            Err(HandoverError::NotOwned { slot: 250, .. })
        ));
        assert!(!hs.is_active());
        // Slots already primary here (flip applied before Begin) are fine too.
        let h = hs
            .begin("h", set(&[(0, 9), (150, 150)]), "o", "127.0.0.1:1", Some(&v), 5)
            .unwrap();
        assert!(hs.is_active());
        assert!(h.contains(5) && !h.contains(10));
        assert!(matches!(
            hs.begin("h", set(&[(20, 20)]), "o", "127.0.0.1:1", Some(&v), 5),
            Err(HandoverError::AlreadyExists(_))
        ));
        assert!(matches!(
            hs.begin("g", set(&[(9, 20)]), "o", "127.0.0.1:1", Some(&v), 5),
            Err(HandoverError::Overlap { slot: 9, .. })
        ));
        hs.advance("h", &set(&[(10, 19)]), Some(&v)).unwrap();
        assert!(hs.for_slot(15).is_some());
        assert!(matches!(
            hs.advance("nope", &set(&[(10, 19)]), Some(&v)),
            Err(HandoverError::NotFound(_))
        ));
        let snap = hs.get("h").unwrap().snapshot();
        assert_eq!(snap.slots, vec![SlotRange::new(0, 19), SlotRange::new(150, 150)]);
        assert_eq!(snap.started_ms, 5);
        let done = hs.complete("h").unwrap();
        assert_eq!(done.id, "h");
        assert!(!hs.is_active());
        assert!(hs.for_slot(5).is_none());
        assert!(matches!(hs.complete("h"), Err(HandoverError::NotFound(_))));
    }

    #[test]
    fn writes_block_fills_and_completion_stops_them() {
        let hs = Handovers::new(2, 1 << 20);
        let v = view("n");
        let h = hs.begin("h", set(&[(0, 9)]), "o", "o:1", Some(&v), 0).unwrap();
        assert!(h.fill_if_allowed(b"a", || {}));
        h.mark_written(b"a");
        assert!(!h.allows_read_through(b"a"));
        assert!(!h.fill_if_allowed(b"a", || panic!("must not fill a written key")));
        assert!(h.allows_read_through(b"b"));
        h.mark_written(b"b");
        h.mark_written(b"c");
        let snap = h.snapshot();
        assert!(snap.read_through_stopped);
        assert!(!h.allows_read_through(b"d"));
        let hs = Handovers::default();
        let h = hs.begin("h", set(&[(0, 9)]), "o", "o:1", Some(&v), 0).unwrap();
        hs.complete("h").unwrap();
        assert!(!h.fill_if_allowed(b"x", || panic!("completed")));
    }

    #[test]
    fn hottest_first_orders_by_freq_then_recency_across_clock_wrap() {
        let now = 5u32;
        let mut keys = vec![
            ("cold-old", 0u8, 1u32),
            ("warm-new", 1, 4),
            ("hot-old", 3, u32::MAX - 10),
            ("hot-new", 3, 3),
            ("cold-new", 0, 5),
            ("warm-old", 1, u32::MAX),
        ];
        sort_hottest_first(&mut keys, now);
        let order: Vec<&str> = keys.iter().map(|k| k.0).collect();
        assert_eq!(
            order,
            ["hot-new", "hot-old", "warm-new", "warm-old", "cold-new", "cold-old"]
        );
    }

    #[test]
    fn retained_slots_and_hit_ratio_and_metrics() {
        let hs = Handovers::default();
        hs.retain("h", &set(&[(0, 3)]));
        hs.retain("g", &set(&[(10, 10)]));
        assert_eq!(hs.retained().len(), 5);
        let g = hs.retain_generation();
        assert!(hs.release("h"));
        assert!(!hs.release("h"));
        assert_eq!(hs.retained().len(), 1);
        assert_eq!(hs.retain_generation(), g + 1);
        let mut snap = HandoverSnapshot {
            id: "a\"b".into(),
            slots: vec![SlotRange::new(0, 9)],
            source_node_id: "o".into(),
            source_addr: "o:1".into(),
            started_ms: 0,
            local_hits: 90,
            read_through_hits: 5,
            misses: 5,
            read_through_errors: 0,
            written_keys: 3,
            read_through_stopped: false,
        };
        assert!((snap.hit_ratio() - 0.95).abs() < 1e-9);
        let text = render_metrics(std::slice::from_ref(&snap));
        assert!(
            text.contains("ringcache_handover_misses_total{handover=\"a\\\"b\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("ringcache_handover_slots{handover=\"a\\\"b\"} 10\n"),
            "{text}"
        );
        snap.local_hits = 0;
        snap.read_through_hits = 0;
        snap.misses = 0;
        assert_eq!(snap.hit_ratio(), 1.0);
    }
}
