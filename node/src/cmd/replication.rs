//! Internal replication commands between cluster nodes: `RINGCACHE.SYNC` turns the
//! connection into a replication stream from this primary (see
//! [`crate::replication`]); `RINGCACHE.ACK` is only meaningful on such a stream.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use super::args::text;
use super::flag::*;
use super::{CmdError, CmdResult, CommandSpec, Ctx, Next};
use crate::replication::record::Replay;
use crate::replication::SyncRequest;
use crate::resp::Out;
use crate::state::{ClientState, ServerState};
use crate::store::Store;
use ringcache_core::slotset::SlotSet;
use ringcache_proto::convert::slot_set_from_pb;
use ringcache_proto::pb;

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "ringcache.sync",
        arity: -4,
        flags: ADMIN | NOSCRIPT | LOADING | STALE | NOMULTI,
        keys: (0, 0, 0),
        group: "server",
        summary: "Internal: RINGCACHE.SYNC <replica-id> <epoch> <next-offset> [FENCE <start> <end> ...] streams this primary's writes (and the fence of slots the replica took over).",
        handler: sync,
    },
    CommandSpec {
        name: "ringcache.ack",
        arity: 2,
        flags: ADMIN | NOSCRIPT | FAST | LOADING | STALE,
        keys: (0, 0, 0),
        group: "server",
        summary: "Internal: a replica acknowledges applied offsets on a replication stream.",
        handler: ack,
    },
];

/// Whether `args` may turn its connection into a replication stream: the connection
/// stops reading requests ahead of it, since the bytes after it belong to the stream.
pub fn takes_over_connection(args: &[Bytes]) -> bool {
    args.first()
        .is_some_and(|name| name.eq_ignore_ascii_case(b"ringcache.sync"))
}

fn offset(b: &[u8]) -> Result<u64, CmdError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(CmdError::NotInteger)
}

fn sync(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if !ctx.server.cluster.enabled {
        return Err(CmdError::Other("This instance has cluster support disabled".into()));
    }
    let replica_id = text(&args[1]);
    if replica_id.is_empty() || replica_id == ctx.server.cluster.node_id {
        return Err(CmdError::Other("invalid replica id".into()));
    }
    ctx.next = Next::TakeOver(SyncRequest {
        replica_id,
        epoch: offset(&args[2])?,
        next_offset: offset(&args[3])?,
        fence: fence_slots(&args[4..])?,
    });
    // No reply: the connection now carries the stream (RBEGIN ... or an error line).
    Ok(())
}

/// `[FENCE <start> <end> ...]` → the slots (empty without it).
fn fence_slots(args: &[Bytes]) -> Result<SlotSet, CmdError> {
    let Some((word, ranges)) = args.split_first() else {
        return Ok(SlotSet::empty());
    };
    if !word.eq_ignore_ascii_case(b"FENCE") || ranges.is_empty() || !ranges.len().is_multiple_of(2) {
        return Err(CmdError::Syntax);
    }
    let mut pb_ranges = Vec::with_capacity(ranges.len() / 2);
    for pair in ranges.chunks_exact(2) {
        let n = |b: &Bytes| offset(b).and_then(|v| u32::try_from(v).map_err(|_| CmdError::NotInteger));
        pb_ranges.push(pb::SlotRange {
            start: n(&pair[0])?,
            end: n(&pair[1])?,
        });
    }
    slot_set_from_pb("FENCE", &pb_ranges).map_err(|e| CmdError::Other(e.to_string()))
}

fn ack(_ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    Err(CmdError::Other(
        "RINGCACHE.ACK is only valid on a replication stream".into(),
    ))
}

/// Runs the write commands a primary ships as themselves (flag `REPLAY`) on this
/// replica's store, through their handlers as a client's command would run, but
/// without routing (the replica holds these slots for the primary), replication or
/// replies. Used by the replication thread only.
pub struct Replayer {
    state: Arc<ServerState>,
    client: Mutex<ClientState>,
}

impl Replayer {
    pub fn new(state: Arc<ServerState>) -> Replayer {
        let addr = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        let client = ClientState {
            shared: state.clients.detached(addr, addr),
            authenticated: true,
            // As in Redis, a primary's writes are applied whatever the memory.
            no_evict: true,
            readonly: false,
            replica_port: false,
            can_read_through: false,
            can_block: false,
            blocked: false,
            coalesce: Default::default(),
            depth: 1,
            tx: Default::default(),
            pushes: Default::default(),
            write_gate: None,
        };
        Replayer {
            state,
            client: Mutex::new(client),
        }
    }
}

impl Replay for Replayer {
    fn replay(&self, store: &Store, args: &[Bytes], now: u64) {
        let Some((_, spec)) = super::find(args) else { return };
        // Only what a primary of this build ships as a command.
        if spec.flags & REPLAY == 0 {
            return;
        }
        let mut client = self.client.lock();
        let mut out = Out::new();
        let mut ctx = Ctx {
            store,
            server: &self.state,
            client: &mut client,
            out: &mut out,
            now,
            view: None,
            slot: None,
            next: Next::Continue,
        };
        if let Err(e) = (spec.handler)(&mut ctx, args) {
            // The primary ran it on the same value: an error means the values differ,
            // which the replica's count check then finds.
            tracing::debug!(command = spec.name, error = %e, "replayed command failed");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn args(v: &[&str]) -> Vec<Bytes> {
        v.iter().map(|s| Bytes::from(s.to_string())).collect()
    }

    #[test]
    fn sync_fence_ranges_parse_strictly() {
        assert!(fence_slots(&[]).unwrap().is_empty());
        let s = fence_slots(&args(&["fence", "0", "2", "100", "100"])).unwrap();
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 1, 2, 100]);
        for bad in [
            args(&["FENCE"]),
            args(&["FENCE", "1"]),
            args(&["NOPE", "1", "2"]),
            args(&["FENCE", "2", "1"]),
            args(&["FENCE", "0", "16384"]),
            args(&["FENCE", "-1", "3"]),
        ] {
            assert!(fence_slots(&bad).is_err(), "{bad:?}");
        }
    }
}
