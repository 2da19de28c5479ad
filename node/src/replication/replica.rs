//! Replica side: one link per primary this node replicates, on a thread of its own.
//! A manager follows the topology (every 100 ms) and restarts a link when its primary,
//! the primary's address or instance, the replicated slots or the epoch change. A link
//! reconnects with exponential backoff (100 ms … 2 s) and resumes from the next offset
//! it wants; offsets are kept per primary instance and slot set, so a different
//! primary process or more slots than it had start over with a full copy (fewer slots,
//! as when a stage's flip makes this node their primary, resume: the offsets are the
//! primary's).
//!
//! A link also carries the fence of slots this node took over from that primary
//! ([`crate::fence`]): it asks for it in `RINGCACHE.SYNC ... FENCE <ranges>`, applies
//! those slots' records until `RFENCE`, then tells [`crate::fence::Fences`]; the link
//! restarts without them, and ends if nothing else is replicated from that primary.
//! This node already leads those slots and its own replicas may have copied them
//! before the fence: so each key a fence record changes is also appended to this
//! node's backlog (its state after the change, as a primary's write is), and the
//! replicas get it in order; and it counts as written here for a handover of its slot
//! (never read through: the source may be one of those replicas, stale until then).
//! Slots whose fence this node owes a new primary are not replicated from it until
//! this node sent the fence.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use ringcache_core::slot::{key_slot, Slot, SLOT_COUNT};
use ringcache_core::slotset::SlotSet;

use super::record::{apply, clear_slots, clear_slots_then, write_command, Applied, Frame, Record, Replay};
use super::{LinkProgress, Replication, ReplicationError};
use crate::access::Access;
use crate::handover::Handovers;
use crate::resp::RequestParser;
use crate::store::{now_ms, Store};

const POLL: Duration = Duration::from_millis(100);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The primary sends a heartbeat every 500 ms; silence this long ends the session.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What a link is for; a link is restarted when this changes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LinkKey {
    primary_id: String,
    instance: String,
    addr: String,
    epoch: u64,
    slots: SlotSet,
    /// Slots this node leads now and waits for this primary's fence of.
    fence: SlotSet,
}

impl LinkKey {
    /// Every slot whose records this link applies.
    fn covered(&self) -> SlotSet {
        let mut all = self.slots.clone();
        all.union_with(&self.fence);
        all
    }
}

/// Whether a link for `key` may resume from the progress kept for its primary: same
/// primary process and resync generation, and no slot it did not cover (offsets are
/// the primary's, so a link that covers fewer slots has everything it needs).
fn keeps_progress(p: &LinkProgress, key: &LinkKey, generation: u64) -> bool {
    p.instance == key.instance && p.generation == generation && key.covered().is_subset(&p.slots)
}

/// What the links share: the replication state (with this node's cluster view) and
/// this node's password and limits, which hold on its primaries' ports too.
#[derive(Clone)]
pub struct Links {
    pub repl: Arc<Replication>,
    pub access: Arc<Access>,
    /// Runs the write commands a primary ships as themselves.
    pub replay: Arc<dyn Replay>,
    /// Handovers to this node: a fence's changes count as written here.
    pub handovers: Arc<Handovers>,
}

/// Starts the replica-side thread (cluster mode only does anything).
pub fn spawn(store: Arc<Store>, state: Links, shutdown: CancellationToken) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("replication".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return warn!(error = %e, "replication: cannot start runtime"),
        };
        rt.block_on(manager(store, state, shutdown));
    })
}

/// The links this node should have: primary id → what to replicate from it.
fn wanted(state: &Links) -> HashMap<String, LinkKey> {
    let mut out: HashMap<String, LinkKey> = HashMap::new();
    let Some(view) = state.repl.cluster.view() else {
        return out;
    };
    let me = view.me.id.as_str();
    for slot in 0..SLOT_COUNT as u32 {
        let slot = slot as Slot;
        let owners = view.slots.owners(slot);
        let Some((primary, replicas)) = owners.split_first() else {
            continue;
        };
        if primary == me || !replicas.iter().any(|r| r == me) {
            continue;
        }
        if let Some(key) = out.get_mut(primary) {
            key.slots.insert(slot);
            continue;
        }
        let Some(node) = view.topology.node(primary) else {
            continue;
        };
        let mut slots = SlotSet::empty();
        slots.insert(slot);
        out.insert(
            primary.clone(),
            LinkKey {
                primary_id: primary.clone(),
                instance: node.instance.clone(),
                addr: node.resp_addr.clone(),
                epoch: view.topology.epoch,
                slots,
                fence: SlotSet::empty(),
            },
        );
    }
    // Slots whose fence this node owes their new primary are not copied from it before
    // it has the fence (see crate::fence).
    out.retain(|primary, key| {
        key.slots.difference_with(&state.repl.cluster.fences.owed_to(primary));
        !key.slots.is_empty()
    });
    // Fences are asked of the former primary's process that held the writes.
    for (primary, pending) in state.repl.cluster.fences.snapshot() {
        let Some(node) = view.topology.node(&primary).filter(|n| n.instance == pending.instance) else {
            continue;
        };
        let key = out.entry(primary.clone()).or_insert_with(|| LinkKey {
            primary_id: primary.clone(),
            instance: node.instance.clone(),
            addr: node.resp_addr.clone(),
            epoch: view.topology.epoch,
            slots: SlotSet::empty(),
            fence: SlotSet::empty(),
        });
        key.fence = pending.slots;
    }
    out
}

async fn manager(store: Arc<Store>, state: Links, shutdown: CancellationToken) {
    let repl = &state.repl;
    let mut paused = repl.paused();
    let mut resyncs = repl.resyncs();
    let mut fences = repl.cluster.fences.subscribe();
    let mut running: HashMap<String, (LinkKey, CancellationToken)> = HashMap::new();
    let tracker = tokio_util::task::TaskTracker::new();
    let mut seen: Option<(u64, bool, u64, u64)> = None;
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = paused.changed() => {}
            _ = resyncs.changed() => {}
            _ = fences.changed() => {}
            _ = shutdown.cancelled() => break,
        }
        let is_paused = *paused.borrow_and_update();
        let generation = *resyncs.borrow_and_update();
        let fenced = *fences.borrow_and_update();
        let now_seen = (state.repl.cluster.epoch(), is_paused, generation, fenced);
        if seen.is_some_and(|s| s.2 != generation) {
            // Restart every link; their progress was reset, so each copies again.
            for (_, cancel) in running.values() {
                cancel.cancel();
            }
            running.clear();
        }
        if seen == Some(now_seen) {
            continue;
        }
        seen = Some(now_seen);
        let wanted = if is_paused { HashMap::new() } else { wanted(&state) };
        running.retain(|id, (key, cancel)| {
            let keep = wanted.get(id) == Some(key);
            if !keep {
                cancel.cancel();
            }
            keep
        });
        if !is_paused {
            // Forget progress with primaries this node no longer replicates.
            repl.links.lock().retain(|id, _| wanted.contains_key(id));
        }
        for (id, key) in wanted {
            if running.contains_key(&id) {
                continue;
            }
            let cancel = shutdown.child_token();
            running.insert(id, (key.clone(), cancel.clone()));
            let (store, state) = (store.clone(), state.clone());
            tracker.spawn(async move { link(key, generation, &store, &state, cancel).await });
        }
    }
    for (_, (_, cancel)) in running {
        cancel.cancel();
    }
    tracker.close();
    tracker.wait().await;
}

/// Updates a link's progress, unless a resync started a newer generation since.
fn update(state: &Links, primary: &str, generation: u64, f: impl FnOnce(&mut LinkProgress)) {
    if let Some(p) = state.repl.links.lock().get_mut(primary) {
        if p.generation == generation {
            f(p);
        }
    }
}

fn set_connected(state: &Links, primary: &str, generation: u64, connected: bool) {
    update(state, primary, generation, |p| p.connected = connected);
}

/// Keeps a stream from one primary running until cancelled.
async fn link(key: LinkKey, generation: u64, store: &Store, state: &Links, cancel: CancellationToken) {
    {
        let mut links = state.repl.links.lock();
        let fresh = LinkProgress {
            instance: key.instance.clone(),
            slots: key.covered(),
            next: 0,
            connected: false,
            generation,
        };
        let p = links.entry(key.primary_id.clone()).or_insert_with(|| fresh.clone());
        if keeps_progress(p, &key, generation) {
            p.slots = key.covered();
        } else {
            *p = fresh;
        }
    }
    let mut backoff = BACKOFF_MIN;
    loop {
        let mut started = false;
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => Ok(()),
            r = session(&key, generation, store, state, &mut started) => r,
        };
        set_connected(state, &key.primary_id, generation, false);
        if cancel.is_cancelled() {
            return;
        }
        if let Err(e) = result {
            debug!(primary = %key.primary_id, error = %e, "replication link failed");
        }
        if started {
            backoff = BACKOFF_MIN;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = cancel.cancelled() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection to the primary: sync, apply frames, acknowledge.
async fn session(
    key: &LinkKey,
    generation: u64,
    store: &Store,
    state: &Links,
    started: &mut bool,
) -> Result<(), ReplicationError> {
    let repl = &state.repl;
    let mut next = repl.links.lock().get(&key.primary_id).map_or(0, |p| p.next);
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(key.addr.as_str()))
        .await
        .map_err(|_| ReplicationError::Timeout(CONNECT_TIMEOUT))??;
    let _ = stream.set_nodelay(true);
    let mut wbuf = BytesMut::new();
    let password = state.access.requirepass();
    if let Some(pass) = password {
        write_command(&mut wbuf, &[b"AUTH", pass.as_bytes()]);
    }
    let me = state.repl.cluster.node_id.as_bytes();
    let (epoch, from) = (key.epoch.to_string(), next.to_string());
    let mut sync: Vec<Vec<u8>> = vec![
        b"RINGCACHE.SYNC".to_vec(),
        me.to_vec(),
        epoch.into_bytes(),
        from.into_bytes(),
    ];
    if !key.fence.is_empty() {
        sync.push(b"FENCE".to_vec());
        for r in key.fence.ranges() {
            sync.push(r.start.to_string().into_bytes());
            sync.push(r.end.to_string().into_bytes());
        }
    }
    write_command(&mut wbuf, &sync.iter().map(Vec::as_slice).collect::<Vec<_>>());
    stream.write_all(&wbuf).await?;
    wbuf.clear();

    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let mut parser = RequestParser::default();
    let mut copying = false;
    let mut acked = next.saturating_sub(1);
    // Keys whose whole value was asked for (`RINGCACHE.REFETCH`): their commands are
    // skipped until the value arrives.
    let mut refetching: std::collections::HashSet<bytes::Bytes> = std::collections::HashSet::new();
    // The slots whose records are applied: the replicated ones, and those waiting for
    // this primary's fence until it arrives.
    let mut covered = key.covered();
    let mut fencing = key.fence.clone();
    loop {
        let n = tokio::time::timeout(IDLE_TIMEOUT, stream.read_buf(&mut rbuf))
            .await
            .map_err(|_| ReplicationError::Idle(IDLE_TIMEOUT))??;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        let _ = store.ensure_memory();
        let now = now_ms();
        while let Some(args) = parser.parse(&mut rbuf, &state.access.limits)? {
            if !*started && args.len() == 1 && &args[0][..] == b"+OK" {
                continue; // the AUTH reply
            }
            let frame = Frame::parse(&args)?;
            match frame {
                Frame::Begin { offset, full } => {
                    if *started {
                        return Err(ReplicationError::Unexpected("a second RBEGIN".into()));
                    }
                    *started = true;
                    if full {
                        repl.counters.full_syncs_received.fetch_add(1, Ordering::Relaxed);
                        info!(primary = %key.primary_id, slots = key.slots.len(), "replication: receiving a full copy");
                        // Until the copy is complete, a reconnect must copy again.
                        set_next(state, &key.primary_id, generation, 0);
                        clear_fenced(store, state, &fencing, now);
                        clear_slots(store, &covered, now);
                        copying = true;
                        acked = 0;
                        next = offset;
                    } else {
                        if offset != next {
                            return Err(ReplicationError::Unexpected(format!(
                                "partial resume from {offset}, wanted {next}"
                            )));
                        }
                        repl.counters.partial_syncs_received.fetch_add(1, Ordering::Relaxed);
                        debug!(primary = %key.primary_id, from = offset, "replication: resuming");
                    }
                    set_connected(state, &key.primary_id, generation, true);
                }
                _ if !*started => return Err(ReplicationError::Unexpected("data before RBEGIN".into())),
                Frame::CopyDone { offset } => {
                    if !copying || offset != next {
                        return Err(ReplicationError::Unexpected("RCOPYDONE".into()));
                    }
                    copying = false;
                }
                Frame::Ping { offset } => {
                    if !copying {
                        next = next.max(offset.saturating_add(1));
                    }
                }
                Frame::Fence { offset, slots } => {
                    if copying || !slots.is_subset(&key.fence) {
                        return Err(ReplicationError::Unexpected("RFENCE".into()));
                    }
                    // Every record of these slots up to `offset` came before it.
                    next = next.max(offset.saturating_add(1));
                    covered.difference_with(&slots);
                    fencing.difference_with(&slots);
                    repl.cluster.fences.arrived(&key.primary_id, &key.instance, &slots);
                }
                data => {
                    let offset = data.offset();
                    if copying != (offset == 0) {
                        return Err(ReplicationError::Unexpected(format!("record offset {offset}")));
                    }
                    if offset != 0 && offset < next {
                        continue; // already applied
                    }
                    if matches!(data, Frame::Flush { .. }) {
                        clear_fenced(store, state, &fencing, now);
                    }
                    let applied = match &data {
                        Frame::Cmd { args, .. } if args.get(1).is_some_and(|k| refetching.contains(k)) => false,
                        _ => match apply(store, &data, &covered, now, &*state.replay) {
                            Applied::Yes => true,
                            Applied::Ignored => false,
                            Applied::Refetch(k) => {
                                debug!(primary = %key.primary_id, "replication: asking for a whole value");
                                write_command(&mut wbuf, &[b"RINGCACHE.REFETCH", &k]);
                                refetching.insert(k);
                                false
                            }
                        },
                    };
                    if applied {
                        repl.counters.records_applied.fetch_add(1, Ordering::Relaxed);
                        if let Some(k) = frame_key(&data).filter(|k| fencing.contains(key_slot(k))) {
                            record_here(store, state, k, now);
                        }
                    }
                    match &data {
                        Frame::Set { key: k, .. } | Frame::Obj { key: k, .. } | Frame::Del { key: k, .. } => {
                            refetching.remove(*k);
                        }
                        Frame::Flush { .. } => refetching.clear(),
                        _ => {}
                    }
                    if offset != 0 {
                        next = offset.saturating_add(1);
                    }
                }
            }
        }
        if rbuf.len() > state.access.max_query_buffer {
            return Err(ReplicationError::BufferLimit(state.access.max_query_buffer));
        }
        if !copying && next > 0 && next - 1 > acked {
            set_next(state, &key.primary_id, generation, next);
            acked = next - 1;
            let off = acked.to_string();
            write_command(&mut wbuf, &[b"RINGCACHE.ACK", off.as_bytes()]);
        } else if !copying && next > 0 {
            set_next(state, &key.primary_id, generation, next);
        }
        if !wbuf.is_empty() {
            stream.write_all(&wbuf).await?;
            wbuf.clear();
        }
    }
}

fn set_next(state: &Links, primary: &str, generation: u64, next: u64) {
    update(state, primary, generation, |p| p.next = next);
}

/// The key a data frame changes.
fn frame_key<'a>(frame: &Frame<'a>) -> Option<&'a [u8]> {
    match *frame {
        Frame::Set { key, .. } | Frame::Obj { key, .. } | Frame::Del { key, .. } => Some(key),
        Frame::Cmd { args, .. } => args.get(1).map(|k| &k[..]),
        _ => None,
    }
}

/// A fence record changed `key` here (see the module docs): its state now goes to this
/// node's backlog, as its primary, and it counts as written for a handover of its slot.
fn record_here(store: &Store, state: &Links, key: &[u8], now: u64) {
    let slot = key_slot(key);
    {
        let mut locked = store.lock(slot);
        let mut s = locked.slot();
        let rec = Record::from_entry(key, s.get(key, now).map(|e| &*e));
        state.repl.backlog.append(slot, rec);
    }
    if let Some(h) = state.handovers.for_slot(slot) {
        h.mark_written(key);
    }
}

/// Deletes every key of the fenced `slots` (a full copy or a flush from the former
/// primary empties them), with a deletion record each for this node's replicas.
fn clear_fenced(store: &Store, state: &Links, slots: &SlotSet, now: u64) {
    clear_slots_then(store, slots, now, |slot, keys| {
        let handover = state.handovers.for_slot(slot);
        for k in keys {
            state.repl.backlog.append(slot, Record::del(k));
            if let Some(h) = &handover {
                h.mark_written(k);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[Slot]) -> SlotSet {
        v.iter().copied().collect()
    }

    #[test]
    fn progress_is_kept_for_the_same_process_and_no_new_slot() {
        let p = LinkProgress {
            instance: "o1".into(),
            slots: set(&[1, 2, 3]),
            next: 10,
            connected: false,
            generation: 4,
        };
        let key = |instance: &str, slots: &[Slot], fence: &[Slot]| LinkKey {
            primary_id: "o".into(),
            instance: instance.into(),
            addr: "127.0.0.1:1".into(),
            epoch: 9,
            slots: set(slots),
            fence: set(fence),
        };
        // A flip: slot 1 is led here now and fenced, 2 and 3 still replicated.
        assert!(keeps_progress(&p, &key("o1", &[2, 3], &[1]), 4));
        assert!(keeps_progress(&p, &key("o1", &[2], &[]), 4));
        assert!(
            !keeps_progress(&p, &key("o1", &[2, 3, 4], &[]), 4),
            "a new slot needs a copy"
        );
        assert!(
            !keeps_progress(&p, &key("o1", &[2], &[4]), 4),
            "so does a fence of a slot never replicated"
        );
        assert!(
            !keeps_progress(&p, &key("o2", &[2], &[]), 4),
            "another process's offsets"
        );
        assert!(!keeps_progress(&p, &key("o1", &[2], &[]), 5), "a resync");
    }
}
