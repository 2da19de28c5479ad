//! Generic key commands: DEL UNLINK EXISTS EXPIRE PEXPIRE EXPIREAT PEXPIREAT TTL PTTL
//! EXPIRETIME PEXPIRETIME PERSIST TYPE KEYS SCAN RENAME RENAMENX COPY TOUCH RANDOMKEY
//! OBJECT.
//!
//! An expired key behaves as missing everywhere: single-key lookups go through
//! [`SlotRef::get`]/[`SlotRef::read`] (which reclaim it), iterations skip it.
//!
//! # SCAN cursors
//! The cursor is the number of the next hash slot to visit (0 starts, and a returned
//! 0 ends, the iteration). Each call visits whole slots in ascending order, each
//! under its shard lock, and stops after the slot in which the number of live keys
//! visited reached COUNT (default 10), or after the last slot. Because keys never
//! change slot and a slot is always read in one piece, every key that exists for the
//! whole iteration is returned exactly once, and no key is returned twice (stronger
//! than Redis, which may repeat keys after a rehash). Keys added or removed during the
//! iteration may or may not be returned. A call may return more than COUNT keys (the
//! rest of the last slot), and may return none while the cursor is not yet 0 (MATCH or
//! TYPE filtered them out); COUNT bounds work, not the reply, as in Redis.

use bytes::Bytes;
use rand::Rng;

use super::args::{check_subcommand, int, is, text};
use super::flag::*;
use super::{CmdError, CmdResult, CommandSpec, Ctx};
use crate::resp::Out;
use crate::store::encoding::string_encoding;
use crate::store::{clock_of, Entry, Hash, Object, Policy, SlotRef, ValueRef, SHARDS};
use crate::util::glob::matches;
use ringcache_core::slot::{Slot, SLOT_COUNT};

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec { name: "del", arity: -2, flags: WRITE, keys: (1, -1, 1), group: "generic", summary: "Deletes one or more keys.", handler: del },
    CommandSpec { name: "unlink", arity: -2, flags: WRITE | FAST, keys: (1, -1, 1), group: "generic", summary: "Asynchronously deletes one or more keys.", handler: del },
    CommandSpec { name: "exists", arity: -2, flags: READONLY | FAST, keys: (1, -1, 1), group: "generic", summary: "Determines whether one or more keys exist.", handler: exists },
    CommandSpec { name: "expire", arity: -3, flags: WRITE | FAST, keys: (1, 1, 1), group: "generic", summary: "Sets the expiration time of a key in seconds.", handler: expire },
    CommandSpec { name: "pexpire", arity: -3, flags: WRITE | FAST, keys: (1, 1, 1), group: "generic", summary: "Sets the expiration time of a key in milliseconds.", handler: pexpire },
    CommandSpec { name: "expireat", arity: -3, flags: WRITE | FAST, keys: (1, 1, 1), group: "generic", summary: "Sets the expiration time of a key to a Unix timestamp.", handler: expireat },
    CommandSpec { name: "pexpireat", arity: -3, flags: WRITE | FAST, keys: (1, 1, 1), group: "generic", summary: "Sets the expiration time of a key to a Unix milliseconds timestamp.", handler: pexpireat },
    CommandSpec { name: "ttl", arity: 2, flags: READONLY | FAST, keys: (1, 1, 1), group: "generic", summary: "Returns the expiration time in seconds of a key.", handler: ttl },
    CommandSpec { name: "pttl", arity: 2, flags: READONLY | FAST, keys: (1, 1, 1), group: "generic", summary: "Returns the expiration time in milliseconds of a key.", handler: pttl },
    CommandSpec { name: "expiretime", arity: 2, flags: READONLY | FAST, keys: (1, 1, 1), group: "generic", summary: "Returns the expiration time of a key as a Unix timestamp.", handler: expiretime },
    CommandSpec { name: "pexpiretime", arity: 2, flags: READONLY | FAST, keys: (1, 1, 1), group: "generic", summary: "Returns the expiration time of a key as a Unix milliseconds timestamp.", handler: pexpiretime },
    CommandSpec { name: "persist", arity: 2, flags: WRITE | FAST, keys: (1, 1, 1), group: "generic", summary: "Removes the expiration time of a key.", handler: persist },
    CommandSpec { name: "type", arity: 2, flags: READONLY | FAST, keys: (1, 1, 1), group: "generic", summary: "Determines the type of value stored at a key.", handler: type_ },
    CommandSpec { name: "keys", arity: 2, flags: READONLY, keys: (0, 0, 0), group: "generic", summary: "Returns all key names that match a pattern.", handler: keys },
    CommandSpec { name: "scan", arity: -2, flags: READONLY, keys: (0, 0, 0), group: "generic", summary: "Iterates over the key names in the database.", handler: scan },
    CommandSpec { name: "rename", arity: 3, flags: WRITE, keys: (1, 2, 1), group: "generic", summary: "Renames a key and overwrites the destination.", handler: rename },
    CommandSpec { name: "renamenx", arity: 3, flags: WRITE | FAST, keys: (1, 2, 1), group: "generic", summary: "Renames a key only when the target key name doesn't exist.", handler: renamenx },
    CommandSpec { name: "touch", arity: -2, flags: READONLY | FAST, keys: (1, -1, 1), group: "generic", summary: "Returns the number of existing keys out of those specified after updating the time they were last accessed.", handler: touch },
    CommandSpec { name: "copy", arity: -3, flags: WRITE | DENYOOM, keys: (1, 2, 1), group: "generic", summary: "Copies the value of a key to a new key.", handler: copy },
    CommandSpec { name: "object", arity: -2, flags: READONLY, keys: (2, 2, 1), group: "generic", summary: "A container for object introspection commands.", handler: object },
    CommandSpec { name: "memory", arity: -2, flags: READONLY, keys: (2, 2, 1), group: "server", summary: "A container for memory diagnostics commands.", handler: memory },
    CommandSpec { name: "randomkey", arity: 1, flags: READONLY, keys: (0, 0, 0), group: "generic", summary: "Returns a random key name from the database.", handler: randomkey },
];

/// The `TYPE` name of an entry's value.
fn type_name(e: &Entry) -> &'static str {
    match e.value() {
        ValueRef::Str(_) => "string",
        ValueRef::Obj(o) => o.type_name(),
    }
}

/// Counts the keys of `keys` for which `f` returns true, all under their shards'
/// locks at once, so the command is atomic like in Redis (one key: one lock).
fn count_keys(ctx: &mut Ctx<'_>, keys: &[Bytes], mut f: impl FnMut(&mut SlotRef<'_>, &[u8], u64) -> bool) -> i64 {
    let now = ctx.now;
    let mut n = 0;
    if let [key] = keys {
        let mut locked = ctx.store.lock(ctx.slot_of(key));
        return i64::from(f(&mut locked.slot(), key, now));
    }
    let slots: Vec<Slot> = keys.iter().map(|k| ctx.slot_of(k)).collect();
    let mut locked = ctx.store.lock_many(&slots);
    for (key, &s) in keys.iter().zip(&slots) {
        if let Some(mut slot) = locked.slot(s) {
            if f(&mut slot, key, now) {
                n += 1;
            }
        }
    }
    n
}

fn del(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let n = count_keys(ctx, &args[1..], |slot, key, now| slot.remove(key, now).is_some());
    ctx.out.int(n);
    Ok(())
}

fn exists(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let n = count_keys(ctx, &args[1..], |slot, key, now| {
        slot.read_untouched(key, now).is_some()
    });
    ctx.out.int(n);
    Ok(())
}

fn touch(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let n = count_keys(ctx, &args[1..], |slot, key, now| slot.read(key, now).is_some());
    ctx.out.int(n);
    Ok(())
}

/// EXPIRE family. `unit_ms` is 1000 for seconds, 1 for ms; `absolute` for *AT.
fn expire_generic(ctx: &mut Ctx<'_>, args: &[Bytes], unit_ms: i64, absolute: bool, name: &str) -> CmdResult {
    let key = &args[1];
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in &args[3..] {
        if is(opt, "NX") {
            nx = true;
        } else if is(opt, "XX") {
            xx = true;
        } else if is(opt, "GT") {
            gt = true;
        } else if is(opt, "LT") {
            lt = true;
        } else {
            return Err(CmdError::Other(format!("Unsupported option {}", text(opt))));
        }
    }
    if nx && (xx || gt || lt) {
        return Err(CmdError::Other(
            "NX and XX, GT or LT options at the same time are not compatible".into(),
        ));
    }
    if gt && lt {
        return Err(CmdError::Other(
            "GT and LT options at the same time are not compatible".into(),
        ));
    }
    let invalid = || CmdError::Other(format!("invalid expire time in '{name}' command"));
    let when = int(&args[2])?;
    // Negative times are allowed (the key is deleted); only overflow is an error.
    let when = when.checked_mul(unit_ms).ok_or_else(invalid)?;
    let base = if absolute { 0 } else { ctx.now as i64 };
    let mut when = when.checked_add(base).ok_or_else(invalid)?;
    if !absolute && when > base {
        // A relative TTL that keeps the key gets the node's jitter.
        when = ctx.store.ttl_jitter.expire_at(ctx.now, (when - base) as u64) as i64;
    }

    let now = ctx.now;
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    let Some(e) = slot.get(key, now) else {
        ctx.out.int(0);
        return Ok(());
    };
    // No TTL counts as an infinite one for GT and LT.
    let current = e.expire_at().map(|t| t as i64);
    let refused = (nx && current.is_some())
        || (xx && current.is_none())
        || (gt && current.is_none_or(|c| when <= c))
        || (lt && current.is_some_and(|c| when >= c));
    if refused {
        ctx.out.int(0);
        return Ok(());
    }
    if when <= now as i64 {
        slot.remove(key, now);
    } else {
        slot.modify(key, now, |e| e.set_expire_at(Some(when as u64)));
    }
    ctx.out.int(1);
    Ok(())
}

fn expire(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    expire_generic(ctx, args, 1000, false, "expire")
}

fn pexpire(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    expire_generic(ctx, args, 1, false, "pexpire")
}

fn expireat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    expire_generic(ctx, args, 1000, true, "expireat")
}

fn pexpireat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    expire_generic(ctx, args, 1, true, "pexpireat")
}

/// TTL family: -2 for a missing key, -1 for no TTL, else the remaining (or, with
/// `absolute`, the unix) time in ms, or in seconds rounded as Redis does.
fn ttl_generic(ctx: &mut Ctx<'_>, key: &[u8], ms: bool, absolute: bool) -> CmdResult {
    let now = ctx.now;
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let reply = match locked.slot().read_untouched(key, now) {
        None => -2,
        Some(e) => match e.expire_at() {
            None => -1,
            Some(at) => {
                let t = if absolute { at } else { at.saturating_sub(now) };
                let t = i64::try_from(t).unwrap_or(i64::MAX);
                if ms {
                    t
                } else {
                    t.saturating_add(500) / 1000
                }
            }
        },
    };
    ctx.out.int(reply);
    Ok(())
}

fn ttl(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    ttl_generic(ctx, &args[1], false, false)
}

fn pttl(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    ttl_generic(ctx, &args[1], true, false)
}

fn expiretime(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    ttl_generic(ctx, &args[1], false, true)
}

fn pexpiretime(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    ttl_generic(ctx, &args[1], true, true)
}

fn persist(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let now = ctx.now;
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    let had_ttl = slot.get(key, now).is_some_and(|e| e.expire_at().is_some());
    if had_ttl {
        slot.modify(key, now, |e| e.set_expire_at(None));
    }
    ctx.out.int(i64::from(had_ttl));
    Ok(())
}

fn type_(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let now = ctx.now;
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let name = locked.slot().read_untouched(key, now).map_or("none", |e| type_name(e));
    ctx.out.simple(name);
    Ok(())
}

fn keys(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let pattern = &args[1];
    let now = ctx.now;
    let all = pattern.as_ref() == b"*";
    let mut found: Vec<Bytes> = Vec::new();
    for i in 0..SHARDS {
        let shard = ctx.store.lock_shard(i);
        shard.for_each_entry(|_, e| {
            if !e.is_expired(now) && (all || matches(pattern, e.key())) {
                found.push(Bytes::copy_from_slice(e.key()));
            }
        });
    }
    ctx.out.array(found.len());
    for k in &found {
        ctx.out.bulk(k);
    }
    Ok(())
}

fn scan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let cursor: u64 = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| CmdError::Other("invalid cursor".into()))?;
    let mut pattern: Option<&Bytes> = None;
    let mut count: usize = 10;
    let mut type_filter: Option<String> = None;
    let mut i = 2;
    while i < args.len() {
        let Some(value) = args.get(i + 1) else {
            return Err(CmdError::Syntax);
        };
        let opt = &args[i];
        if is(opt, "MATCH") {
            pattern = Some(value);
        } else if is(opt, "COUNT") {
            let n = int(value)?;
            if n < 1 {
                return Err(CmdError::Syntax);
            }
            count = usize::try_from(n).unwrap_or(usize::MAX);
        } else if is(opt, "TYPE") {
            type_filter = Some(text(value).to_ascii_lowercase());
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    // "*" matches everything: skip the matcher.
    let pattern = pattern.filter(|p| p.as_ref() != b"*");
    let now = ctx.now;
    let mut found: Vec<Bytes> = Vec::new();
    let mut visited = 0usize;
    let mut next = 0u64;
    let mut slot_no = cursor;
    while slot_no < SLOT_COUNT as u64 && visited < count {
        let mut locked = ctx.store.lock(slot_no as Slot);
        locked.slot().for_each_key(now, |e| {
            visited += 1;
            if pattern.is_some_and(|p| !matches(p, e.key())) {
                return;
            }
            if type_filter.as_deref().is_some_and(|t| t != type_name(e)) {
                return;
            }
            found.push(Bytes::copy_from_slice(e.key()));
        });
        slot_no += 1;
        next = if slot_no >= SLOT_COUNT as u64 { 0 } else { slot_no };
    }
    ctx.out.array(2);
    ctx.out.bulk(next.to_string().as_bytes());
    ctx.out.array(found.len());
    for k in &found {
        ctx.out.bulk(k);
    }
    Ok(())
}

/// RENAME / RENAMENX under both keys' shard locks. Returns false when `nx` and the
/// destination exists.
fn rename_generic(ctx: &mut Ctx<'_>, args: &[Bytes], nx: bool) -> Result<bool, CmdError> {
    let (src, dst) = (&args[1], &args[2]);
    let now = ctx.now;
    let (src_slot, dst_slot) = (ctx.slot_of(src), ctx.slot_of(dst));
    let mut locked = ctx.store.lock_many(&[src_slot, dst_slot]);
    let missing = || CmdError::NoSuchKey;
    {
        let mut slot = locked.slot(src_slot).ok_or_else(missing)?;
        slot.get(src, now).ok_or_else(missing)?;
    }
    if src == dst {
        return Ok(!nx);
    }
    if nx {
        let mut slot = locked.slot(dst_slot).ok_or_else(missing)?;
        if slot.get(dst, now).is_some() {
            return Ok(false);
        }
    }
    let mut old = {
        let mut slot = locked.slot(src_slot).ok_or_else(missing)?;
        slot.remove(src, now).ok_or_else(missing)?
    };
    let expire_at = old.expire_at().unwrap_or(0);
    let moved = match old.as_object_mut() {
        // Moves the object out of the detached entry (already uncharged) instead of
        // copying it.
        Some(obj) => Entry::object(dst, std::mem::replace(obj, Object::Hash(Hash::default())), expire_at, 0),
        None => Entry::string(dst, old.as_str().unwrap_or_default(), expire_at, 0),
    };
    drop(old);
    if let Some(mut slot) = locked.slot(dst_slot) {
        slot.insert(moved, now);
    }
    Ok(true)
}

fn rename(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    rename_generic(ctx, args, false)?;
    ctx.out.ok();
    Ok(())
}

fn renamenx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let done = rename_generic(ctx, args, true)?;
    ctx.out.int(i64::from(done));
    Ok(())
}

/// COPY source destination [DB 0] [REPLACE]: the value and its TTL, under both keys'
/// shard locks. Only database 0 exists.
fn copy(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (src, dst) = (&args[1], &args[2]);
    let mut replace = false;
    let mut i = 3;
    while i < args.len() {
        if is(&args[i], "REPLACE") {
            replace = true;
        } else if is(&args[i], "DB") && i + 1 < args.len() {
            let db = int(&args[i + 1])?;
            if db != 0 {
                return Err(CmdError::Other("DB index is out of range".into()));
            }
            i += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    if src == dst {
        return Err(CmdError::Other("source and destination objects are the same".into()));
    }
    let now = ctx.now;
    let (src_slot, dst_slot) = (ctx.slot_of(src), ctx.slot_of(dst));
    let mut locked = ctx.store.lock_many(&[src_slot, dst_slot]);
    let copied = {
        let Some(mut slot) = locked.slot(src_slot) else {
            return Err(CmdError::NoSuchKey);
        };
        slot.read(src, now).map(|e| {
            let expire_at = e.expire_at().unwrap_or(0);
            match e.value() {
                ValueRef::Str(v) => Entry::string(dst, v, expire_at, 0),
                ValueRef::Obj(o) => Entry::object(dst, o.clone(), expire_at, 0),
            }
        })
    };
    let done = match (copied, locked.slot(dst_slot)) {
        (Some(entry), Some(mut slot)) => {
            let free = replace || slot.get(dst, now).is_none();
            if free {
                slot.insert(entry, now);
            }
            free
        }
        _ => false,
    };
    ctx.out.int(i64::from(done));
    Ok(())
}

/// OBJECT's subcommands and their arities (as Redis 7.0 declares them).
pub const OBJECT_SUBCOMMANDS: &[(&str, i32)] = &[
    ("ENCODING", 3),
    ("FREQ", 3),
    ("IDLETIME", 3),
    ("REFCOUNT", 3),
    ("HELP", 2),
];

/// A container command's HELP reply: its lines as simple strings, as Redis answers.
fn help(out: &mut Out, lines: &[&str]) {
    out.array(lines.len());
    for line in lines {
        out.simple(line);
    }
}

pub const MEMORY_SUBCOMMANDS: &[(&str, i32)] = &[("USAGE", -3), ("HELP", 2)];

const MEMORY_HELP: &[&str] = &[
    "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value, as used_memory counts",
    "    it (exactly: no sampling; SAMPLES is accepted and ignored).",
    "HELP",
    "    Prints this help.",
];

/// `MEMORY USAGE key [SAMPLES count]`: the bytes `used_memory` counts for the key (its
/// entry, its index slot and its value), or nil; `MEMORY HELP`. The other MEMORY
/// subcommands of Redis (STATS, DOCTOR, MALLOC-STATS, PURGE) are about its allocator.
fn memory(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    check_subcommand("memory", args, MEMORY_SUBCOMMANDS)?;
    if is(&args[1], "HELP") {
        help(ctx.out, MEMORY_HELP);
        return Ok(());
    }
    match &args[3..] {
        [] => {}
        [opt, count] if is(opt, "SAMPLES") => {
            if int(count)? < 0 {
                return Err(CmdError::Syntax);
            }
        }
        _ => return Err(CmdError::Syntax),
    }
    let now = ctx.now;
    let size = ctx
        .store
        .lock(ctx.slot_of(&args[2]))
        .slot()
        // As Redis' MEMORY USAGE: no hit or miss counted, no access recorded.
        .get(&args[2], now)
        .map(|e| e.mem_size());
    match size {
        Some(n) => ctx.out.int(n as i64),
        None => ctx.out.null(),
    }
    Ok(())
}

const OBJECT_HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

/// OBJECT ENCODING | FREQ | IDLETIME | REFCOUNT | HELP. FREQ is the S3-FIFO access
/// counter (0–3) under the s3fifo policy, which tracks frequency like Redis' LFU
/// policies; IDLETIME is answered under the other policies, which track access time.
/// REFCOUNT is always 1 (no value is shared).
fn object(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    check_subcommand("object", args, OBJECT_SUBCOMMANDS)?;
    let sub = &args[1];
    if is(sub, "HELP") {
        help(ctx.out, OBJECT_HELP);
        return Ok(());
    }
    let now = ctx.now;
    let policy = ctx.store.mem.policy();
    let mut locked = ctx.store.lock(ctx.slot_of(&args[2]));
    let mut slot = locked.slot();
    let Some(e) = slot.read_untouched(&args[2], now) else {
        drop(locked);
        ctx.out.null();
        return Ok(());
    };
    let encoding = match e.value() {
        ValueRef::Str(v) => string_encoding(v),
        ValueRef::Obj(o) => o.encoding(),
    };
    let (freq, idle_ms) = (e.freq(), clock_of(now).wrapping_sub(e.clock()));
    drop(locked);
    if is(sub, "ENCODING") {
        ctx.out.bulk_str(encoding);
    } else if is(sub, "REFCOUNT") {
        ctx.out.int(1);
    } else if is(sub, "FREQ") {
        if policy != Policy::S3Fifo {
            return Err(CmdError::Other(format!(
                "the {} maxmemory policy does not track access frequency; OBJECT FREQ needs s3fifo",
                policy.name()
            )));
        }
        ctx.out.int(i64::from(freq));
    } else {
        if policy == Policy::S3Fifo {
            return Err(CmdError::Other(
                "the s3fifo maxmemory policy tracks access frequency, not idle time; OBJECT IDLETIME needs another policy"
                    .into(),
            ));
        }
        ctx.out.int(i64::from(idle_ms / 1000));
    }
    Ok(())
}

/// A uniformly chosen live key of `slot`, if it has any.
fn random_in_slot(slot: &SlotRef<'_>, now: u64, rng: &mut impl Rng) -> Option<Bytes> {
    let mut live = 0usize;
    slot.for_each_key(now, |_| live += 1);
    if live == 0 {
        return None;
    }
    let pick = rng.gen_range(0..live);
    let mut i = 0usize;
    let mut chosen = None;
    slot.for_each_key(now, |e| {
        if i == pick {
            chosen = Some(Bytes::copy_from_slice(e.key()));
        }
        i += 1;
    });
    chosen
}

/// A random live key, or null: a uniformly chosen key of the first slot with live keys
/// from a random start slot. Cheap, but not exactly uniform over keys (Redis' pick is
/// not uniform either).
fn randomkey(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    let now = ctx.now;
    let mut rng = rand::thread_rng();
    let start = rng.gen_range(0..SLOT_COUNT);
    for k in 0..SLOT_COUNT {
        let s = ((start + k) % SLOT_COUNT) as Slot;
        let mut locked = ctx.store.lock(s);
        let slot = locked.slot();
        if slot.is_empty() {
            continue;
        }
        if let Some(key) = random_in_slot(&slot, now, &mut rng) {
            drop(locked);
            ctx.out.bulk(&key);
            return Ok(());
        }
    }
    ctx.out.null();
    Ok(())
}
