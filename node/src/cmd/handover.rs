//! Internal handover commands between cluster nodes (see [`crate::handover`]):
//! `RINGCACHE.FETCH <key>` answers the key's record in the replication format
//! (`RSET 0 ...`, `ROBJ 0 ...`, or `RDEL 0 <key>` when absent), regardless of slot
//! ownership; `RINGCACHE.RETAIN <id> <start> <end> ...` keeps slots from cleanup for a
//! handover; `RINGCACHE.RELEASE <id>` lets them go.

use bytes::Bytes;

use super::args::{int, text};
use super::flag::*;
use super::{CmdError, CmdResult, CommandSpec, Ctx};
use ringcache_proto::convert::{check_id, slot_set_from_pb};
use ringcache_proto::pb;

use crate::replication::record::Record;

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "ringcache.fetch",
        arity: 2,
        flags: ADMIN | NOSCRIPT | FAST | STALE,
        keys: (0, 0, 0),
        group: "server",
        summary: "Internal: RINGCACHE.FETCH <key> returns the key's replication record (handover read-through).",
        handler: fetch,
    },
    CommandSpec {
        name: "ringcache.retain",
        arity: -4,
        flags: ADMIN | NOSCRIPT | STALE,
        keys: (0, 0, 0),
        group: "server",
        summary: "Internal: RINGCACHE.RETAIN <id> <start> <end> ... keeps slots here for a handover.",
        handler: retain,
    },
    CommandSpec {
        name: "ringcache.release",
        arity: 2,
        flags: ADMIN | NOSCRIPT | STALE,
        keys: (0, 0, 0),
        group: "server",
        summary: "Internal: RINGCACHE.RELEASE <id> ends what RINGCACHE.RETAIN kept.",
        handler: release,
    },
];

fn cluster_only(ctx: &Ctx<'_>) -> CmdResult {
    if !ctx.server.cluster.enabled {
        return Err(CmdError::Other("This instance has cluster support disabled".into()));
    }
    Ok(())
}

fn fetch(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    cluster_only(ctx)?;
    let key = &args[1];
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let mut s = locked.slot();
    let rec = Record::from_entry(key, s.get(key, ctx.now).map(|e| &*e));
    drop(locked);
    rec.write(0, &mut ctx.out.buf);
    Ok(())
}

fn retain(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    cluster_only(ctx)?;
    let id = text(&args[1]);
    check_id("id", &id).map_err(|e| CmdError::Other(e.to_string()))?;
    if !args.len().is_multiple_of(2) {
        return Err(CmdError::WrongArity("ringcache.retain".into()));
    }
    let mut ranges = Vec::new();
    for pair in args[2..].chunks_exact(2) {
        let n = |b: &Bytes| int(b).and_then(|v| u32::try_from(v).map_err(|_| CmdError::NotInteger));
        ranges.push(pb::SlotRange {
            start: n(&pair[0])?,
            end: n(&pair[1])?,
        });
    }
    let slots = slot_set_from_pb("slots", &ranges).map_err(|e| CmdError::Other(e.to_string()))?;
    ctx.server.handovers.retain(&id, &slots);
    ctx.out.ok();
    Ok(())
}

fn release(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    cluster_only(ctx)?;
    let released = ctx.server.handovers.release(&text(&args[1]));
    ctx.out.int(i64::from(released));
    Ok(())
}
