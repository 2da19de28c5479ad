//! Primary side of a replication stream: after `RINGCACHE.SYNC`, the connection
//! carries a partial resume or a full copy followed by the backlog, and brings back
//! the replica's acknowledgements.
//!
//! A sync may ask for the fence of slots the replica took over from this node
//! ([`crate::fence`]): this node must no longer lead them (same epoch), waits until no
//! write it admitted there before is still running, takes its current offset as the
//! fence, streams those slots' records (or copies them) up to it, and sends `RFENCE`.
//! Slots this node itself waits for a fence of are served to its replicas as they are:
//! what the fence brings later reaches them through this node's backlog (see
//! [`super::replica`]), so no two nodes fencing each other wait on one another.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use ringcache_core::slotset::SlotSet;

use super::record::{write_begin, write_copy_done, write_fence, write_ping, Record};
use super::{Replication, ReplicationError, SyncRequest};
use crate::resp::{parse_request, Limits};
use crate::store::{now_ms, Store};

/// Heartbeat period; also how often the stream checks that the topology is unchanged.
const HEARTBEAT: Duration = Duration::from_millis(500);
/// A write to the replica that takes longer than this ends the stream.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of records sent per write.
const SEND_BATCH: usize = 256 * 1024;
/// Keys whose values are read per shard-lock hold during a full copy.
const COPY_BATCH: usize = 256;
/// Most bytes of unparsed acknowledgements buffered from a replica.
const MAX_ACK_BUFFER: usize = 64 * 1024;
/// How often a fence looks again for writes still running on its slots, and how long
/// it looks before refusing (the replica asks again). Writes hold the gate only while
/// they run on a worker, never across a wait, so this is a bound that is never reached
/// in practice, not a timing the fence relies on.
const DRAIN_POLL: Duration = Duration::from_millis(1);
const DRAIN_MAX: Duration = Duration::from_secs(3);

/// Serves a replication stream on `stream` until the replica leaves, the topology
/// changes, the replica falls out of the backlog, or the server shuts down. Errors are
/// logged; the connection is closed afterwards.
pub async fn serve(
    stream: &mut TcpStream,
    rbuf: BytesMut,
    req: SyncRequest,
    store: &Store,
    repl: &Replication,
    limits: &Limits,
    shutdown: &CancellationToken,
) {
    let mut session = None;
    let result = run(stream, rbuf, &req, store, repl, limits, shutdown, &mut session).await;
    if let Some(s) = session {
        repl.peer_disconnected(&req.replica_id, s);
    }
    match result {
        Ok(()) => debug!(replica = %req.replica_id, "replication stream closed"),
        Err(e) => info!(replica = %req.replica_id, error = %e, "replication stream ended"),
    }
}

async fn write(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<(), ReplicationError> {
    if buf.is_empty() {
        return Ok(());
    }
    tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(buf))
        .await
        .map_err(|_| ReplicationError::Timeout(WRITE_TIMEOUT))??;
    buf.clear();
    Ok(())
}

/// Refuses the sync with an error line.
async fn refuse(stream: &mut TcpStream, msg: String) -> Result<(), ReplicationError> {
    let mut out = crate::resp::Out::new();
    out.error(&msg);
    write(stream, &mut out.buf).await?;
    Err(ReplicationError::Refused(msg))
}

enum Event {
    Appended,
    Read(usize),
    Heartbeat,
    Stop,
}

#[allow(clippy::too_many_arguments)]
async fn run(
    stream: &mut TcpStream,
    mut rbuf: BytesMut,
    req: &SyncRequest,
    store: &Store,
    repl: &Replication,
    limits: &Limits,
    shutdown: &CancellationToken,
    session: &mut Option<u64>,
) -> Result<(), ReplicationError> {
    let Some(view) = repl.cluster.view() else {
        return refuse(stream, "TRYAGAIN this node has no topology yet".into()).await;
    };
    if view.topology.epoch != req.epoch {
        let msg = format!(
            "TRYAGAIN topology epoch mismatch: this node has {}, the replica sent {}",
            view.topology.epoch, req.epoch
        );
        return refuse(stream, msg).await;
    }
    let slots = view.replicated_slots(&view.me.id, &req.replica_id);
    if slots.is_empty() && req.fence.is_empty() {
        let msg = format!("ERR node {:?} replicates no slot of this node", req.replica_id);
        return refuse(stream, msg).await;
    }
    if let Some(slot) = req.fence.iter().find(|&s| view.is_primary(s)) {
        let msg = format!("TRYAGAIN this node still leads slot {slot}: no fence yet");
        return refuse(stream, msg).await;
    }
    drop(view);
    // The fence: once no write admitted under an older view is still running on the
    // fenced slots, every write this node acknowledged there is in the backlog.
    let mut fence = if req.fence.is_empty() {
        None
    } else {
        let started = tokio::time::Instant::now();
        while repl.cluster.writes_in_flight(&req.fence) {
            if started.elapsed() > DRAIN_MAX {
                return refuse(stream, "TRYAGAIN writes still running on the fenced slots".into()).await;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
        Some(repl.backlog.next_offset() - 1)
    };
    // What the stream carries: the replicated slots, and the fenced ones until the fence.
    let mut filter = slots.clone();
    filter.union_with(&req.fence);

    let full = req.next_offset == 0 || !repl.backlog.contains(req.next_offset);
    let start = if full {
        repl.backlog.next_offset()
    } else {
        req.next_offset
    };
    *session = Some(repl.peer_connected(&req.replica_id, if full { 0 } else { start - 1 }));
    let mut wbuf = BytesMut::with_capacity(SEND_BATCH);
    write_begin(&mut wbuf, start, full);
    if full {
        repl.counters
            .full_syncs_served
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        info!(replica = %req.replica_id, slots = filter.len(), from = start, "replication: full copy");
        copy(stream, &mut wbuf, store, &filter).await?;
        write_copy_done(&mut wbuf, start);
    } else {
        repl.counters
            .partial_syncs_served
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        info!(replica = %req.replica_id, from = start, "replication: partial resume");
    }
    write(stream, &mut wbuf).await?;

    let mut next = start;
    let mut appended = repl.backlog.subscribe();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Mark the current offset seen before reading, so no append is missed.
        appended.borrow_and_update();
        loop {
            let batch = repl.backlog.read(next, SEND_BATCH, &filter)?;
            if batch.next == next {
                break;
            }
            for (offset, rec) in &batch.records {
                rec.write(*offset, &mut wbuf);
            }
            if batch.records.last().map(|r| r.0) != Some(batch.next - 1) {
                // Records of other slots were skipped: let the replica acknowledge them.
                write_ping(&mut wbuf, batch.next - 1);
            }
            next = batch.next;
            write(stream, &mut wbuf).await?;
            // Under a steady stream of writes this loop may not reach the select below
            // for a while: take acknowledgements that arrived meanwhile.
            loop {
                match stream.try_read_buf(&mut rbuf) {
                    Ok(0) => return Ok(()),
                    Ok(_) => handle_replies(&mut rbuf, req, store, repl, limits)?,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        // Caught up with the backlog, so past the fence offset: send the fence.
        if let Some(offset) = fence.filter(|&f| next > f) {
            write_fence(&mut wbuf, offset, &req.fence);
            write(stream, &mut wbuf).await?;
            info!(replica = %req.replica_id, slots = req.fence.len(), offset, "replication: fence sent");
            repl.cluster.fences.sent(&req.replica_id, &req.fence);
            filter = slots.clone();
            fence = None;
        }
        let event = tokio::select! {
            r = appended.changed() => if r.is_ok() { Event::Appended } else { Event::Stop },
            r = stream.read_buf(&mut rbuf) => Event::Read(r?),
            _ = heartbeat.tick() => Event::Heartbeat,
            _ = shutdown.cancelled() => Event::Stop,
        };
        match event {
            Event::Appended => {}
            Event::Stop | Event::Read(0) => return Ok(()),
            Event::Read(_) => handle_replies(&mut rbuf, req, store, repl, limits)?,
            Event::Heartbeat => {
                if repl.cluster.epoch() != req.epoch {
                    return Err(ReplicationError::TopologyChanged);
                }
                write_ping(&mut wbuf, next - 1);
                write(stream, &mut wbuf).await?;
            }
        }
    }
}

/// Handles every complete reply of the replica in `rbuf`: `RINGCACHE.ACK <offset>`, and
/// `RINGCACHE.REFETCH <key>` for a key whose shipped command did not fit its value there.
fn handle_replies(
    rbuf: &mut BytesMut,
    req: &SyncRequest,
    store: &Store,
    repl: &Replication,
    limits: &Limits,
) -> Result<(), ReplicationError> {
    while let Some(args) = parse_request(rbuf, limits)? {
        match &args[..] {
            [name, key] if name.eq_ignore_ascii_case(b"RINGCACHE.REFETCH") => repl.refetch(store, key, now_ms()),
            _ => repl.peer_acked(&req.replica_id, parse_ack(&args)?),
        }
    }
    if rbuf.len() > MAX_ACK_BUFFER {
        return Err(ReplicationError::BufferLimit(MAX_ACK_BUFFER));
    }
    Ok(())
}

/// `RINGCACHE.ACK <offset>` → offset.
fn parse_ack(args: &[Bytes]) -> Result<u64, ReplicationError> {
    match args {
        [name, offset] if name.eq_ignore_ascii_case(b"RINGCACHE.ACK") => std::str::from_utf8(offset)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ReplicationError::BadFrame("RINGCACHE.ACK offset".into())),
        _ => Err(ReplicationError::Unexpected(
            args.first()
                .map(|a| String::from_utf8_lossy(a).chars().take(64).collect())
                .unwrap_or_default(),
        )),
    }
}

/// Orders `(key, freq, clock)` hottest first: by access frequency (descending), then
/// by last access or insert (most recent first; clocks compare by wrapping age from
/// `now_clock`).
fn sort_hottest_first<K>(keys: &mut [(K, u8, u32)], now_clock: u32) {
    keys.sort_by_key(|(_, freq, clock)| (std::cmp::Reverse(*freq), now_clock.wrapping_sub(*clock)));
}

/// Sends every live key of `slots` with offset 0: per slot, the key names are taken
/// under the shard lock, then values in batches of [`COPY_BATCH`] keys per lock hold.
async fn copy(
    stream: &mut TcpStream,
    wbuf: &mut BytesMut,
    store: &Store,
    slots: &SlotSet,
) -> Result<(), ReplicationError> {
    for slot in slots.iter() {
        let now = now_ms();
        let keys: Vec<Bytes> = {
            let mut locked = store.lock(slot);
            let s = locked.slot();
            if s.is_empty() {
                continue;
            }
            let mut keys = Vec::with_capacity(s.len());
            s.for_each_key(now, |e| {
                keys.push((Bytes::copy_from_slice(e.key()), e.freq(), e.clock()))
            });
            // Warm-up (DESIGN.md §6): a new owner gets the hottest keys first.
            sort_hottest_first(&mut keys, crate::store::clock_of(now));
            keys.into_iter().map(|k| k.0).collect()
        };
        for chunk in keys.chunks(COPY_BATCH) {
            {
                let mut locked = store.lock(slot);
                let mut s = locked.slot();
                for key in chunk {
                    if let Some(e) = s.get(key, now) {
                        Record::from_entry(key, Some(e)).write(0, wbuf);
                    }
                }
            }
            if wbuf.len() >= SEND_BATCH {
                write(stream, wbuf).await?;
            }
        }
        tokio::task::yield_now().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_parse_strictly() {
        let b = |v: &[&str]| v.iter().map(|s| Bytes::from(s.to_string())).collect::<Vec<_>>();
        assert_eq!(parse_ack(&b(&["ringcache.ack", "12"])).ok(), Some(12));
        assert!(parse_ack(&b(&["RINGCACHE.ACK", "-1"])).is_err());
        assert!(parse_ack(&b(&["RINGCACHE.ACK"])).is_err());
        assert!(parse_ack(&b(&["GET", "k"])).is_err());
        assert!(parse_ack(&[]).is_err());
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
}
