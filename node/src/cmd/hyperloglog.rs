//! HyperLogLog commands: PFADD PFCOUNT PFMERGE. Sketches are plain string values in
//! Redis' representation ([`crate::store::hyperloglog`]), so GET, SET, DUMP-less
//! replication and slot handover carry them as any string.
//!
//! PFCOUNT of one key stores the cardinality it computed in the sketch's header
//! cache, as Redis does (the value's bytes change under a read-only command); the
//! replicas are not sent that change, and recompute it when asked.

use bytes::Bytes;

use super::flag::*;
use super::{CmdError, CmdResult, CommandSpec, Ctx};
use crate::store::hyperloglog::{self as hll, HllError, REGISTERS};
use crate::store::{Entry, SlotRef};
use ringcache_core::slot::Slot;

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec { name: "pfadd", arity: -2, flags: WRITE | DENYOOM | FAST, keys: (1, 1, 1), group: "hyperloglog", summary: "Adds elements to a HyperLogLog key. Creates the key if it doesn't exist.", handler: pfadd },
    CommandSpec { name: "pfcount", arity: -2, flags: READONLY, keys: (1, -1, 1), group: "hyperloglog", summary: "Returns the approximated cardinality of the set(s) observed by the HyperLogLog key(s).", handler: pfcount },
    CommandSpec { name: "pfmerge", arity: -2, flags: WRITE | DENYOOM, keys: (1, -1, 1), group: "hyperloglog", summary: "Merges one or more HyperLogLog values into a single key.", handler: pfmerge },
];

impl From<HllError> for CmdError {
    fn from(e: HllError) -> CmdError {
        match e {
            HllError::NotHll => CmdError::Coded("WRONGTYPE Key is not a valid HyperLogLog string value.".into()),
            HllError::Corrupt => CmdError::Coded("INVALIDOBJ Corrupted HLL object detected".into()),
        }
    }
}

/// A sketch read with a read lookup (a hit or miss counted): `None` when missing,
/// WRONGTYPE for other types and for strings that are not sketches.
fn read_sketch(slot: &mut SlotRef<'_>, key: &[u8], now: u64) -> Result<Option<(Vec<u8>, u64)>, CmdError> {
    let Some(e) = slot.read(key, now) else { return Ok(None) };
    let v = e.as_str().ok_or(CmdError::WrongType)?;
    hll::validate(v)?;
    Ok(Some((v.to_vec(), e.expire_at().unwrap_or(0))))
}

/// Stores a sketch under `key`: over the old bytes when the length is unchanged (a
/// dense sketch, a cache update), as a new entry otherwise.
fn store_sketch(slot: &mut SlotRef<'_>, key: &[u8], sketch: &[u8], expire_at: u64, now: u64) {
    let in_place = slot.modify(key, now, |e| match e.as_str_mut() {
        Some(v) if v.len() == sketch.len() => {
            v.copy_from_slice(sketch);
            true
        }
        _ => false,
    });
    if in_place != Some(true) {
        slot.insert(Entry::string(key, sketch, expire_at, 0), now);
    }
}

fn pfadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let now = ctx.now;
    let sparse_max = sparse_max_bytes(ctx);
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    // A write lookup: no hit or miss counted.
    let (mut sketch, expire_at, mut updated) = match slot.get(key, now) {
        None => (hll::new_sparse(), 0, true),
        Some(e) => {
            let v = e.as_str().ok_or(CmdError::WrongType)?;
            hll::validate(v)?;
            (v.to_vec(), e.expire_at().unwrap_or(0), false)
        }
    };
    let mut failed = None;
    for element in &args[2..] {
        match hll::add(&mut sketch, element, sparse_max) {
            Ok(changed) => updated |= changed,
            Err(e) => {
                // Registers set before the corrupt part stay set, as in Redis.
                failed = Some(e);
                break;
            }
        }
    }
    if failed.is_none() && updated {
        hll::invalidate_cache(&mut sketch);
    }
    if updated || failed.is_some() {
        store_sketch(&mut slot, key, &sketch, expire_at, now);
    }
    if let Some(e) = failed {
        return Err(e.into());
    }
    ctx.out.int(i64::from(updated));
    Ok(())
}

fn pfcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let now = ctx.now;
    if args.len() > 2 {
        // The cardinality of the union; no cache is read or written.
        let keys = &args[1..];
        let slots: Vec<Slot> = keys.iter().map(|k| ctx.slot_of(k)).collect();
        let mut locked = ctx.store.lock_many(&slots);
        let mut max = Box::new([0u8; REGISTERS]);
        for (key, &s) in keys.iter().zip(&slots) {
            let Some(mut slot) = locked.slot(s) else { continue };
            if let Some((sketch, _)) = read_sketch(&mut slot, key, now)? {
                hll::merge_into(&mut max, &sketch)?;
            }
        }
        ctx.out.int(hll::count_registers(&max) as i64);
        return Ok(());
    }
    let key = &args[1];
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    let Some((mut sketch, expire_at)) = read_sketch(&mut slot, key, now)? else {
        ctx.out.int(0);
        return Ok(());
    };
    let card = match hll::cached(&sketch) {
        Some(card) => card,
        None => {
            let card = hll::count(&sketch)?;
            hll::set_cached(&mut sketch, card);
            store_sketch(&mut slot, key, &sketch, expire_at, now);
            card
        }
    };
    ctx.out.int(card as i64);
    Ok(())
}

fn pfmerge(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let now = ctx.now;
    let keys = &args[1..];
    let dest = &args[1];
    let slots: Vec<Slot> = keys.iter().map(|k| ctx.slot_of(k)).collect();
    let sparse_max = sparse_max_bytes(ctx);
    let mut locked = ctx.store.lock_many(&slots);
    let mut max = Box::new([0u8; REGISTERS]);
    let mut use_dense = false;
    // Every key, the destination too, is read (counted) and merged.
    for (key, &s) in keys.iter().zip(&slots) {
        let Some(mut slot) = locked.slot(s) else { continue };
        if let Some((sketch, _)) = read_sketch(&mut slot, key, now)? {
            use_dense |= hll::dense(&sketch);
            hll::merge_into(&mut max, &sketch)?;
        }
    }
    let Some(mut slot) = locked.slot(slots[0]) else {
        return Err(CmdError::Other("internal error: destination slot not locked".into()));
    };
    // The destination was checked above; a write lookup now (no statistics).
    let (mut sketch, expire_at) = match slot.get(dest, now) {
        Some(e) => (
            e.as_str().map(<[u8]>::to_vec).unwrap_or_default(),
            e.expire_at().unwrap_or(0),
        ),
        None => (hll::new_sparse(), 0),
    };
    if use_dense {
        if let Err(e) = hll::to_dense(&mut sketch) {
            store_sketch(&mut slot, dest, &sketch, expire_at, now);
            return Err(e.into());
        }
    }
    for (i, &m) in max.iter().enumerate() {
        if m != 0 {
            // As in Redis, a register the destination cannot take is skipped.
            let _ = hll::set_register(&mut sketch, i, m, sparse_max);
        }
    }
    hll::invalidate_cache(&mut sketch);
    store_sketch(&mut slot, dest, &sketch, expire_at, now);
    ctx.out.ok();
    Ok(())
}

/// `hll-sparse-max-bytes` (CONFIG SET changes it): the size past which a sparse sketch
/// turns dense.
fn sparse_max_bytes(ctx: &Ctx<'_>) -> usize {
    usize::try_from(ctx.store.encodings.by_name("hll-sparse-max-bytes")).unwrap_or(0)
}
