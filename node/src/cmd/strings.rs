//! String commands: GET SET SETEX PSETEX SETNX GETSET GETDEL GETEX MGET MSET MSETNX
//! APPEND STRLEN INCR DECR INCRBY DECRBY INCRBYFLOAT GETRANGE SUBSTR SETRANGE.
//!
//! Values live inline in the entry block, so every write builds a new entry
//! ([`Entry::string`]) and replaces the old one; commands that keep the TTL in Redis
//! (APPEND, SETRANGE, INCR*, GETEX without options) copy the old expiry over.

use bytes::Bytes;

use super::args::{int, is, parse_i64};
use super::flag::*;
use super::float::{self, AddError};
use super::{CmdError, CmdResult, CommandSpec, Ctx};
use crate::resp::Out;
use crate::store::{Entry, SlotRef, TtlJitter};
use ringcache_core::slot::Slot;

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec { name: "get", arity: 2, flags: READONLY | FAST, keys: (1, 1, 1), group: "string", summary: "Returns the string value of a key.", handler: get },
    CommandSpec { name: "set", arity: -3, flags: WRITE | DENYOOM, keys: (1, 1, 1), group: "string", summary: "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.", handler: set },
    CommandSpec { name: "setex", arity: 4, flags: WRITE | DENYOOM, keys: (1, 1, 1), group: "string", summary: "Sets the string value and expiration time of a key. Creates the key if it doesn't exist.", handler: setex },
    CommandSpec { name: "psetex", arity: 4, flags: WRITE | DENYOOM, keys: (1, 1, 1), group: "string", summary: "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist.", handler: psetex },
    CommandSpec { name: "setnx", arity: 3, flags: WRITE | DENYOOM | FAST, keys: (1, 1, 1), group: "string", summary: "Set the string value of a key only when the key doesn't exist.", handler: setnx },
    CommandSpec { name: "getset", arity: 3, flags: WRITE | DENYOOM | FAST, keys: (1, 1, 1), group: "string", summary: "Returns the previous string value of a key after setting it to a new value.", handler: getset },
    CommandSpec { name: "getdel", arity: 2, flags: WRITE | FAST, keys: (1, 1, 1), group: "string", summary: "Returns the string value of a key after deleting the key.", handler: getdel },
    CommandSpec { name: "getex", arity: -2, flags: WRITE | FAST, keys: (1, 1, 1), group: "string", summary: "Returns the string value of a key after setting its expiration time.", handler: getex },
    CommandSpec { name: "mget", arity: -2, flags: READONLY | FAST, keys: (1, -1, 1), group: "string", summary: "Atomically returns the string values of one or more keys.", handler: mget },
    CommandSpec { name: "mset", arity: -3, flags: WRITE | DENYOOM, keys: (1, -1, 2), group: "string", summary: "Atomically creates or modifies the string values of one or more keys.", handler: mset },
    CommandSpec { name: "msetnx", arity: -3, flags: WRITE | DENYOOM, keys: (1, -1, 2), group: "string", summary: "Atomically modifies the string values of one or more keys only when all keys don't exist.", handler: msetnx },
    CommandSpec { name: "append", arity: 3, flags: WRITE | DENYOOM | FAST, keys: (1, 1, 1), group: "string", summary: "Appends a string to the value of a key. Creates the key if it doesn't exist.", handler: append },
    CommandSpec { name: "strlen", arity: 2, flags: READONLY | FAST, keys: (1, 1, 1), group: "string", summary: "Returns the length of a string value.", handler: strlen },
    CommandSpec { name: "incr", arity: 2, flags: WRITE | DENYOOM | FAST, keys: (1, 1, 1), group: "string", summary: "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", handler: incr },
    CommandSpec { name: "decr", arity: 2, flags: WRITE | DENYOOM | FAST, keys: (1, 1, 1), group: "string", summary: "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", handler: decr },
    CommandSpec { name: "incrby", arity: 3, flags: WRITE | DENYOOM | FAST, keys: (1, 1, 1), group: "string", summary: "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.", handler: incrby },
    CommandSpec { name: "decrby", arity: 3, flags: WRITE | DENYOOM | FAST, keys: (1, 1, 1), group: "string", summary: "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.", handler: decrby },
    CommandSpec { name: "incrbyfloat", arity: 3, flags: WRITE | DENYOOM | FAST, keys: (1, 1, 1), group: "string", summary: "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist.", handler: incrbyfloat },
    CommandSpec { name: "getrange", arity: 4, flags: READONLY, keys: (1, 1, 1), group: "string", summary: "Returns a substring of the string stored at a key.", handler: getrange },
    CommandSpec { name: "substr", arity: 4, flags: READONLY, keys: (1, 1, 1), group: "string", summary: "Returns a substring from a string value.", handler: getrange },
    CommandSpec { name: "setrange", arity: 4, flags: WRITE | DENYOOM, keys: (1, 1, 1), group: "string", summary: "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.", handler: setrange },
];

/// Reads a string key for a read command: counts a hit or miss, WRONGTYPE for other
/// types, and writes the value (or null) to the reply.
fn reply_string(ctx: &mut Ctx<'_>, key: &[u8]) -> CmdResult {
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    reply_read(&mut locked.slot(), key, ctx.now, ctx.out)?;
    Ok(())
}

/// A read of a string key under its slot's lock: replies with the value or null,
/// WRONGTYPE for other types, and counts a hit or miss. Returns whether it was found.
fn reply_read(slot: &mut SlotRef<'_>, key: &[u8], now: u64, out: &mut Out) -> Result<bool, CmdError> {
    match slot.read(key, now) {
        None => {
            out.null();
            Ok(false)
        }
        Some(e) => match e.as_str() {
            Some(v) => {
                out.bulk(v);
                Ok(true)
            }
            None => Err(CmdError::WrongType),
        },
    }
}

/// `(ms per unit, absolute)` of an EX/PX/EXAT/PXAT option word, None for other words.
fn expiry_option(word: &[u8]) -> Option<(i64, bool)> {
    [
        ("EX", 1000, false),
        ("PX", 1, false),
        ("EXAT", 1000, true),
        ("PXAT", 1, true),
    ]
    .into_iter()
    .find(|(name, _, _)| is(word, name))
    .map(|(_, unit, absolute)| (unit, absolute))
}

fn get(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if let Some(p) = super::coalesce::params(ctx, &args[1]) {
        return super::coalesce::get(ctx, &args[1], p);
    }
    reply_string(ctx, &args[1])
}

/// When a write expires, from the EX/PX/EXAT/PXAT options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No option: the key loses any TTL.
    None,
    /// KEEPTTL.
    Keep,
    /// Absolute unix time in ms.
    At(u64),
}

/// Parses an expiry option value: `unit_ms` is 1000 for EX/EXAT, 1 for PX/PXAT. A
/// relative time gets the node's TTL jitter ([`TtlJitter::expire_at`]).
pub fn parse_expiry(
    v: &Bytes,
    unit_ms: i64,
    absolute: bool,
    now: u64,
    cmd: &str,
    jitter: &TtlJitter,
) -> Result<u64, CmdError> {
    let n = int(v)?;
    let invalid = || CmdError::Other(format!("invalid expire time in '{cmd}' command"));
    if n <= 0 {
        return Err(invalid());
    }
    let ms = n.checked_mul(unit_ms).ok_or_else(invalid)?;
    if absolute {
        return Ok(ms as u64);
    }
    ms.checked_add(now as i64).ok_or_else(invalid)?;
    Ok(jitter.expire_at(now, ms as u64))
}

fn set(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (key, value) = (&args[1], &args[2]);
    let (mut nx, mut xx, mut get) = (false, false, false);
    let mut expiry = Expiry::None;
    let mut i = 3;
    while i < args.len() {
        let a = &args[i];
        let has_next = i + 1 < args.len();
        if is(a, "NX") && !xx {
            nx = true;
        } else if is(a, "XX") && !nx {
            xx = true;
        } else if is(a, "GET") {
            get = true;
        } else if is(a, "KEEPTTL") && expiry == Expiry::None {
            expiry = Expiry::Keep;
        } else if let Some((unit, absolute)) = expiry_option(a).filter(|_| has_next && expiry == Expiry::None) {
            expiry = Expiry::At(parse_expiry(
                &args[i + 1],
                unit,
                absolute,
                ctx.now,
                "set",
                &ctx.store.ttl_jitter,
            )?);
            i += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    let now = ctx.now;
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    // A plain SET replaces whatever is there: one lookup (in `insert`) is enough.
    let plain = !nx && !xx && !get && expiry != Expiry::Keep;
    // With GET the old value is read as GET reads it (a hit or a miss, as in Redis).
    let found = if plain {
        None
    } else if get {
        slot.read(key, now)
    } else {
        slot.get(key, now)
    };
    let (exists, old_ttl) = match found {
        Some(e) => {
            if get && e.as_str().is_none() {
                return Err(CmdError::WrongType);
            }
            if get {
                if let Some(v) = e.as_str() {
                    ctx.out.bulk(v);
                }
            }
            (true, e.expire_at())
        }
        None => {
            if get {
                ctx.out.null();
            }
            (false, None)
        }
    };
    if (nx && exists) || (xx && !exists) {
        if !get {
            ctx.out.null();
        }
        return Ok(());
    }
    let expire_at = match expiry {
        Expiry::None => 0,
        Expiry::Keep => old_ttl.unwrap_or(0),
        Expiry::At(t) => t,
    };
    if expire_at != 0 && expire_at <= now {
        // Already expired: the key is deleted, as Redis does.
        slot.remove(key, now);
    } else {
        slot.insert(Entry::string(key, value, expire_at, 0), now);
    }
    if !get {
        ctx.out.ok();
    }
    Ok(())
}

/// The live string value of `key` for a write (no keyspace statistics) and its expiry
/// (0 for none); `WRONGTYPE` for other types.
pub(super) fn string_for_write(
    slot: &mut SlotRef<'_>,
    key: &[u8],
    now: u64,
) -> Result<Option<(Vec<u8>, u64)>, CmdError> {
    match slot.get(key, now) {
        None => Ok(None),
        Some(e) => match e.as_str() {
            Some(v) => Ok(Some((v.to_vec(), e.expire_at().unwrap_or(0)))),
            None => Err(CmdError::WrongType),
        },
    }
}

/// `ERR string exceeds maximum allowed size (proto-max-bulk-len)` unless a string of
/// `base + extra` bytes is allowed.
fn check_string_length(ctx: &Ctx<'_>, base: u64, extra: u64) -> CmdResult {
    match base.checked_add(extra) {
        Some(total) if total <= ctx.server.access.limits.max_bulk_len as u64 => Ok(()),
        _ => Err(CmdError::Other(
            "string exceeds maximum allowed size (proto-max-bulk-len)".into(),
        )),
    }
}

/// Sets `key` to `value` with an absolute expiry (0 for none), replacing any value.
fn put(ctx: &mut Ctx<'_>, key: &[u8], value: &[u8], expire_at: u64) {
    let now = ctx.now;
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    locked.slot().insert(Entry::string(key, value, expire_at, 0), now);
}

fn setex_generic(ctx: &mut Ctx<'_>, args: &[Bytes], unit_ms: i64, name: &str) -> CmdResult {
    let at = parse_expiry(&args[2], unit_ms, false, ctx.now, name, &ctx.store.ttl_jitter)?;
    put(ctx, &args[1], &args[3], at);
    ctx.out.ok();
    Ok(())
}

fn setex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    setex_generic(ctx, args, 1000, "setex")
}

fn psetex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    setex_generic(ctx, args, 1, "psetex")
}

fn setnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (key, value) = (&args[1], &args[2]);
    let now = ctx.now;
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    if slot.get(key, now).is_some() {
        ctx.out.int(0);
    } else {
        slot.insert(Entry::string(key, value, 0, 0), now);
        ctx.out.int(1);
    }
    Ok(())
}

fn getset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (key, value) = (&args[1], &args[2]);
    let now = ctx.now;
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    reply_read(&mut slot, key, now, ctx.out)?;
    // Like SET: the new value has no TTL.
    slot.insert(Entry::string(key, value, 0, 0), now);
    Ok(())
}

fn getdel(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let now = ctx.now;
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    if !reply_read(&mut slot, key, now, ctx.out)? {
        return Ok(());
    }
    slot.remove(key, now);
    Ok(())
}

fn getex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    // Some(None) = PERSIST, Some(Some(..)) = the EX/PX/EXAT/PXAT option and its value,
    // None = leave the TTL alone. The value is checked after the key, as Redis does:
    // a missing key answers nil and a wrong type WRONGTYPE whatever the time says.
    let mut change: Option<Option<((i64, bool), &Bytes)>> = None;
    let mut i = 2;
    while i < args.len() {
        let a = &args[i];
        let has_next = i + 1 < args.len();
        if let Some(option) = expiry_option(a).filter(|_| change.is_none() && has_next) {
            change = Some(Some((option, &args[i + 1])));
            i += 2;
        } else if change.is_none() && is(a, "PERSIST") {
            change = Some(None);
            i += 1;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let now = ctx.now;
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    // One read (one hit or miss), then the value is answered unless the time is bad.
    let change = match slot.read(key, now) {
        None => {
            ctx.out.null();
            return Ok(());
        }
        Some(e) => {
            let Some(value) = e.as_str() else {
                return Err(CmdError::WrongType);
            };
            let change = match change {
                Some(Some(((unit, absolute), time))) => Some(Some(parse_expiry(
                    time,
                    unit,
                    absolute,
                    now,
                    "getex",
                    &ctx.store.ttl_jitter,
                )?)),
                Some(None) => Some(None),
                None => None,
            };
            ctx.out.bulk(value);
            change
        }
    };
    match change {
        None => {}
        Some(Some(at)) if at <= now => {
            slot.remove(key, now);
        }
        Some(at) => {
            slot.modify(key, now, |e| e.set_expire_at(at));
        }
    }
    Ok(())
}

fn mget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let keys = &args[1..];
    let now = ctx.now;
    // One snapshot under all the keys' shard locks, so a concurrent MSET is seen
    // whole or not at all.
    let slots: Vec<Slot> = keys.iter().map(|k| ctx.slot_of(k)).collect();
    let mut locked = ctx.store.lock_many(&slots);
    ctx.out.array(keys.len());
    for (key, &s) in keys.iter().zip(&slots) {
        let Some(mut slot) = locked.slot(s) else {
            ctx.out.null();
            continue;
        };
        match slot.read(key, now).and_then(|e| e.as_str()) {
            Some(v) => ctx.out.bulk(v),
            // Missing keys and other types are both null, as in Redis.
            None => ctx.out.null(),
        }
    }
    Ok(())
}

/// Shared by MSET and MSETNX: under the locks of every key's shard, optionally checks
/// that no key exists, then sets all pairs. Returns whether the pairs were set.
fn mset_generic(ctx: &mut Ctx<'_>, args: &[Bytes], nx: bool, name: &str) -> Result<bool, CmdError> {
    if args.len().is_multiple_of(2) {
        return Err(CmdError::WrongArity(name.into()));
    }
    let now = ctx.now;
    let pairs: Vec<(&Bytes, &Bytes, Slot)> = args[1..]
        .chunks_exact(2)
        .map(|p| (&p[0], &p[1], ctx.slot_of(&p[0])))
        .collect();
    let slots: Vec<Slot> = pairs.iter().map(|p| p.2).collect();
    let mut locked = ctx.store.lock_many(&slots);
    if nx {
        for &(key, _, s) in &pairs {
            if locked.slot(s).is_some_and(|mut slot| slot.get(key, now).is_some()) {
                return Ok(false);
            }
        }
    }
    for &(key, value, s) in &pairs {
        if let Some(mut slot) = locked.slot(s) {
            slot.insert(Entry::string(key, value, 0, 0), now);
        }
    }
    Ok(true)
}

fn mset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    mset_generic(ctx, args, false, "mset")?;
    ctx.out.ok();
    Ok(())
}

fn msetnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let set = mset_generic(ctx, args, true, "msetnx")?;
    ctx.out.int(i64::from(set));
    Ok(())
}

fn append(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (key, extra) = (&args[1], &args[2]);
    let now = ctx.now;
    let max = ctx.server.access.limits.max_bulk_len as u64;
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    let (mut value, expire_at) = string_for_write(&mut slot, key, now)?.unwrap_or_default();
    if value.len() as u64 + extra.len() as u64 > max {
        return Err(CmdError::Other(
            "string exceeds maximum allowed size (proto-max-bulk-len)".into(),
        ));
    }
    value.extend_from_slice(extra);
    slot.insert(Entry::string(key, &value, expire_at, 0), now);
    ctx.out.int(value.len() as i64);
    Ok(())
}

fn strlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let now = ctx.now;
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    let len = match slot.read(key, now) {
        None => 0,
        Some(e) => e.as_str().ok_or(CmdError::WrongType)?.len(),
    };
    ctx.out.int(len as i64);
    Ok(())
}

/// INCR family: adds `by` to the integer in `key` (0 when missing), keeping the TTL.
fn incr_generic(ctx: &mut Ctx<'_>, key: &[u8], by: i64) -> CmdResult {
    let now = ctx.now;
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    let (current, expire_at) = match string_for_write(&mut slot, key, now)? {
        None => (0, 0),
        Some((v, at)) => (parse_i64(&v).ok_or(CmdError::NotInteger)?, at),
    };
    let n = current.checked_add(by).ok_or(CmdError::Overflow)?;
    slot.insert(Entry::string(key, n.to_string().as_bytes(), expire_at, 0), now);
    ctx.out.int(n);
    Ok(())
}

fn incr(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    incr_generic(ctx, &args[1], 1)
}

fn decr(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    incr_generic(ctx, &args[1], -1)
}

fn incrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let by = int(&args[2])?;
    incr_generic(ctx, &args[1], by)
}

fn decrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let by = int(&args[2])?;
    let by = by
        .checked_neg()
        .ok_or_else(|| CmdError::Other("decrement would overflow".into()))?;
    incr_generic(ctx, &args[1], by)
}

fn incrbyfloat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let now = ctx.now;
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    let (current, expire_at) = match string_for_write(&mut slot, key, now)? {
        None => (None, 0),
        Some((v, at)) => (Some(v), at),
    };
    let text = float::add(current.as_deref(), &args[2]).map_err(|e| match e {
        AddError::BaseNotFloat | AddError::IncrNotFloat => CmdError::NotFloat,
        AddError::NotFinite => CmdError::Other("increment would produce NaN or Infinity".into()),
    })?;
    slot.insert(Entry::string(key, &text, expire_at, 0), now);
    ctx.out.bulk(&text);
    Ok(())
}

/// The byte range `[start, end]` of a string of `len` bytes, with Redis' GETRANGE
/// rules for negative and out-of-range indexes; `None` for an empty result.
fn substring_range(len: usize, start: i64, end: i64) -> Option<(usize, usize)> {
    if len == 0 || (start < 0 && end < 0 && start > end) {
        return None;
    }
    let len = len as i64;
    let mut start = if start < 0 { len.saturating_add(start) } else { start };
    let mut end = if end < 0 { len.saturating_add(end) } else { end };
    start = start.max(0);
    end = end.max(0).min(len - 1);
    if start > end {
        return None;
    }
    Some((start as usize, end as usize))
}

fn getrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let (start, end) = (int(&args[2])?, int(&args[3])?);
    let now = ctx.now;
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    match slot.read(key, now) {
        None => ctx.out.bulk(b""),
        Some(e) => {
            let v = e.as_str().ok_or(CmdError::WrongType)?;
            match substring_range(v.len(), start, end) {
                Some((s, t)) => ctx.out.bulk(&v[s..=t]),
                None => ctx.out.bulk(b""),
            }
        }
    }
    Ok(())
}

fn setrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (key, patch) = (&args[1], &args[3]);
    let offset = int(&args[2])?;
    if offset < 0 {
        return Err(CmdError::Other("offset is out of range".into()));
    }
    let offset = offset as u64;
    let now = ctx.now;
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    let existing = string_for_write(&mut slot, key, now)?;
    if patch.is_empty() {
        // Nothing to write: no key is created, the length is reported.
        ctx.out.int(existing.map_or(0, |(v, _)| v.len() as i64));
        return Ok(());
    }
    check_string_length(ctx, offset, patch.len() as u64)?;
    let (mut value, expire_at) = existing.unwrap_or_default();
    // Both fit in usize: checked against proto-max-bulk-len above.
    let offset = offset as usize;
    let end = offset + patch.len();
    if value.len() < end {
        value.resize(end, 0);
    }
    value[offset..end].copy_from_slice(patch);
    slot.insert(Entry::string(key, &value, expire_at, 0), now);
    ctx.out.int(value.len() as i64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::substring_range;

    #[test]
    fn substring_ranges_follow_redis() {
        assert_eq!(substring_range(13, 0, 3), Some((0, 3)));
        assert_eq!(substring_range(13, -3, -1), Some((10, 12)));
        assert_eq!(substring_range(13, 0, -1), Some((0, 12)));
        assert_eq!(substring_range(13, 10, 100), Some((10, 12)));
        assert_eq!(substring_range(13, 5, 3), None);
        assert_eq!(substring_range(13, -1, -5), None);
        assert_eq!(substring_range(0, 0, -1), None);
        assert_eq!(substring_range(13, i64::MIN, i64::MAX), Some((0, 12)));
        assert_eq!(substring_range(13, i64::MAX, i64::MIN), None);
        assert_eq!(substring_range(13, -100, -50), Some((0, 0)));
    }
}
