//! List commands: LPUSH RPUSH LPUSHX RPUSHX LPOP RPOP LLEN LRANGE LINDEX LSET LINSERT
//! LREM LTRIM LPOS LMOVE RPOPLPUSH LMPOP, and the blocking BLPOP BRPOP BLMOVE
//! BRPOPLPUSH BLMPOP.
//!
//! A blocking command with nothing to serve answers nothing and blocks on its source
//! keys ([`Ctx::block`]); the connection runs it again when one of them is written
//! (see [`crate::blocking`]), so a woken command takes the same path, with the same
//! checks and errors, as one that found data at once (except that a source key of
//! another type then counts as empty, as in Redis: [`ClientState::blocked`]).
//!
//! [`ClientState::blocked`]: crate::state::ClientState::blocked
//!
//! A list key exists only while it has elements: pushes create it, and removing its
//! last element deletes the key. Commands on two or more keys (LMOVE, RPOPLPUSH,
//! LMPOP) hold all their keys' shard locks at once, so they are atomic. Argument
//! checks come in the order Redis 7.0 makes them (some before the key is looked up,
//! some after), so that the same request gets the same error.

use std::time::Duration;

use bytes::Bytes;
use ringcache_core::slot::Slot;

use super::args::{blocking_timeout, int, is, parse_i64};
use super::collection::{self, Collection};
use super::flag::*;
use super::{CmdError, CmdResult, CommandSpec, Ctx};
use crate::resp::Out;
use crate::store::{Entry, List, SlotRef, LIST_MAX_ELEMENT};

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec { name: "lpush", arity: -3, flags: WRITE | DENYOOM | FAST | REPLAY, keys: (1, 1, 1), group: "list", summary: "Prepends one or more elements to a list. Creates the key if it doesn't exist.", handler: lpush },
    CommandSpec { name: "rpush", arity: -3, flags: WRITE | DENYOOM | FAST | REPLAY, keys: (1, 1, 1), group: "list", summary: "Appends one or more elements to a list. Creates the key if it doesn't exist.", handler: rpush },
    CommandSpec { name: "lpushx", arity: -3, flags: WRITE | DENYOOM | FAST | REPLAY, keys: (1, 1, 1), group: "list", summary: "Prepends one or more elements to a list only when the list exists.", handler: lpushx },
    CommandSpec { name: "rpushx", arity: -3, flags: WRITE | DENYOOM | FAST | REPLAY, keys: (1, 1, 1), group: "list", summary: "Appends an element to a list only when the list exists.", handler: rpushx },
    CommandSpec { name: "lpop", arity: -2, flags: WRITE | FAST | REPLAY, keys: (1, 1, 1), group: "list", summary: "Returns the first elements in a list after removing it. Deletes the list if the last element was popped.", handler: lpop },
    CommandSpec { name: "rpop", arity: -2, flags: WRITE | FAST | REPLAY, keys: (1, 1, 1), group: "list", summary: "Returns and removes the last elements of a list. Deletes the list if the last element was popped.", handler: rpop },
    CommandSpec { name: "llen", arity: 2, flags: READONLY | FAST, keys: (1, 1, 1), group: "list", summary: "Returns the length of a list.", handler: llen },
    CommandSpec { name: "lrange", arity: 4, flags: READONLY, keys: (1, 1, 1), group: "list", summary: "Returns a range of elements from a list.", handler: lrange },
    CommandSpec { name: "lindex", arity: 3, flags: READONLY, keys: (1, 1, 1), group: "list", summary: "Returns an element from a list by its index.", handler: lindex },
    CommandSpec { name: "lset", arity: 4, flags: WRITE | DENYOOM | REPLAY, keys: (1, 1, 1), group: "list", summary: "Sets the value of an element in a list by its index.", handler: lset },
    CommandSpec { name: "linsert", arity: 5, flags: WRITE | DENYOOM | REPLAY, keys: (1, 1, 1), group: "list", summary: "Inserts an element before or after another element in a list.", handler: linsert },
    CommandSpec { name: "lrem", arity: 4, flags: WRITE | REPLAY, keys: (1, 1, 1), group: "list", summary: "Removes elements from a list. Deletes the list if the last element was removed.", handler: lrem },
    CommandSpec { name: "ltrim", arity: 4, flags: WRITE | REPLAY, keys: (1, 1, 1), group: "list", summary: "Removes elements from both ends a list. Deletes the list if all elements were trimmed.", handler: ltrim },
    CommandSpec { name: "lpos", arity: -3, flags: READONLY, keys: (1, 1, 1), group: "list", summary: "Returns the index of matching elements in a list.", handler: lpos },
    CommandSpec { name: "lmove", arity: 5, flags: WRITE | DENYOOM, keys: (1, 2, 1), group: "list", summary: "Returns an element after popping it from one list and pushing it to another. Deletes the list if the last element was moved.", handler: lmove },
    CommandSpec { name: "rpoplpush", arity: 3, flags: WRITE | DENYOOM, keys: (1, 2, 1), group: "list", summary: "Returns the last element of a list after removing and pushing it to another list. Deletes the list if the last element was popped.", handler: rpoplpush },
    CommandSpec { name: "lmpop", arity: -4, flags: WRITE | MOVABLEKEYS, keys: (0, 0, 0), group: "list", summary: "Returns multiple elements from a list after removing them. Deletes the list if the last element was popped.", handler: lmpop },
    CommandSpec { name: "blpop", arity: -3, flags: WRITE | NOSCRIPT | BLOCKING, keys: (1, -2, 1), group: "list", summary: "Removes and returns the first element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped.", handler: blpop },
    CommandSpec { name: "brpop", arity: -3, flags: WRITE | NOSCRIPT | BLOCKING, keys: (1, -2, 1), group: "list", summary: "Removes and returns the last element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped.", handler: brpop },
    CommandSpec { name: "blmove", arity: 6, flags: WRITE | DENYOOM | NOSCRIPT | BLOCKING, keys: (1, 2, 1), group: "list", summary: "Pops an element from a list, pushes it to another list and returns it. Blocks until an element is available otherwise. Deletes the list if the last element was moved.", handler: blmove },
    CommandSpec { name: "brpoplpush", arity: 4, flags: WRITE | DENYOOM | NOSCRIPT | BLOCKING, keys: (1, 2, 1), group: "list", summary: "Pops an element from a list, pushes it to another list and returns it. Block until an element is available otherwise. Deletes the list if the last element was popped.", handler: brpoplpush },
    CommandSpec { name: "blmpop", arity: -5, flags: WRITE | BLOCKING | MOVABLEKEYS, keys: (0, 0, 0), group: "list", summary: "Pops the first element from one of multiple lists. Blocks until an element is available otherwise. Deletes the list if the last element was popped.", handler: blmpop },
];

/// Which end of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Head,
    Tail,
}

fn list_ref(e: &Entry) -> Result<&List, CmdError> {
    List::of(e).ok_or(CmdError::WrongType)
}

/// Whether `key` holds a list (a write's lookup: no hit or miss counted).
fn probe(slot: &mut SlotRef<'_>, key: &[u8], now: u64) -> Result<bool, CmdError> {
    collection::probe::<List>(slot, key, now)
}

/// Whether a key to pop from holds a list. Another type is WRONGTYPE, except for a
/// blocked command running again after a wake-up (`woken`): Redis keeps such a client
/// blocked until the key holds a list, so the key counts as empty.
fn source_is_list(slot: &mut SlotRef<'_>, key: &[u8], now: u64, woken: bool) -> Result<bool, CmdError> {
    match probe(slot, key, now) {
        Err(CmdError::WrongType) if woken => Ok(false),
        other => other,
    }
}

/// [`collection::update`] for lists.
fn update<R>(
    slot: &mut SlotRef<'_>,
    key: &[u8],
    now: u64,
    create: bool,
    f: impl FnOnce(&mut List) -> Result<R, CmdError>,
) -> Result<Option<R>, CmdError> {
    collection::update(slot, key, now, create, f)
}

/// [`update`] on `key` under its own shard lock, with the reply buffer for `f`.
fn write_list<R>(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    create: bool,
    f: impl FnOnce(&mut List, &mut Out) -> Result<R, CmdError>,
) -> Result<Option<R>, CmdError> {
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let (now, out) = (ctx.now, &mut *ctx.out);
    let mut slot = locked.slot();
    update(&mut slot, key, now, create, |l| f(l, out))
}

/// [`write_list`] on an existing list for a write that may change nothing (`changed`
/// tells from the result), so that WATCH sees only real changes, as in Redis.
fn write_list_if<R>(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    f: impl FnOnce(&mut List) -> Result<R, CmdError>,
    changed: impl FnOnce(&R) -> bool,
) -> Result<Option<R>, CmdError> {
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let now = ctx.now;
    collection::update_if(&mut locked.slot(), key, now, false, f, changed)
}

/// Runs `f` on the list at `key` for a read command (counting a keyspace hit or
/// miss): `None` when the key does not exist, WRONGTYPE for other types.
fn read_list<R>(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    f: impl FnOnce(Option<&List>, &mut Out) -> Result<R, CmdError>,
) -> Result<R, CmdError> {
    let store = ctx.store;
    let mut locked = store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    match slot.read(key, ctx.now) {
        None => f(None, ctx.out),
        Some(e) => f(Some(list_ref(e)?), ctx.out),
    }
}

/// Refuses elements longer than a list holds (only reachable with a
/// `proto-max-bulk-len` above 4 GiB).
fn check_sizes(values: &[Bytes]) -> CmdResult {
    if values.iter().any(|v| v.len() > LIST_MAX_ELEMENT) {
        return Err(CmdError::Other("element too large for a list".into()));
    }
    Ok(())
}

fn push(l: &mut List, end: End, value: &[u8]) {
    match end {
        End::Head => l.push_front(value),
        End::Tail => l.push_back(value),
    }
}

fn pop(l: &mut List, end: End) -> Option<Vec<u8>> {
    match end {
        End::Head => l.pop_front(),
        End::Tail => l.pop_back(),
    }
}

/// Replies with up to `count` elements from `end` (the tail's in tail-first order)
/// and removes them.
fn pop_many(l: &mut List, end: End, count: usize, out: &mut Out) {
    let n = count.min(l.len());
    out.array(n);
    match end {
        End::Head => {
            l.range(0, n).for_each(|e| out.bulk(e));
            l.drain_front(n);
        }
        End::Tail => {
            l.range(l.len() - n, l.len()).rev().for_each(|e| out.bulk(e));
            l.drain_back(n);
        }
    }
}

/// The position of an index (negative: from the tail) in a list of `len`.
fn resolve(index: i64, len: usize) -> Option<usize> {
    if index >= 0 {
        usize::try_from(index).ok().filter(|&i| i < len)
    } else {
        let back = usize::try_from(index.unsigned_abs()).ok()?;
        len.checked_sub(back)
    }
}

/// The inclusive range `start..=end` (negative: from the tail) clamped to a list of
/// `len`, as LRANGE and LTRIM read it; `None` when empty.
fn clamp_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let n = len as i64;
    let start = if start < 0 { n + start } else { start }.max(0);
    let end = if end < 0 { n + end } else { end };
    if start > end || start >= n {
        return None;
    }
    Some((start as usize, end.min(n - 1) as usize))
}

/// `LEFT` or `RIGHT`, or a syntax error.
fn end_arg(b: &[u8]) -> Result<End, CmdError> {
    if is(b, "LEFT") {
        Ok(End::Head)
    } else if is(b, "RIGHT") {
        Ok(End::Tail)
    } else {
        Err(CmdError::Syntax)
    }
}

/// An integer in `min..` or the error `msg`, which Redis also gives for a value that
/// is not an integer (its `getRangeLongFromObjectOrReply` with a message).
fn int_at_least(b: &[u8], min: i64, msg: &str) -> Result<i64, CmdError> {
    parse_i64(b)
        .filter(|&v| v >= min)
        .ok_or_else(|| CmdError::Other(msg.into()))
}

fn push_generic(ctx: &mut Ctx<'_>, args: &[Bytes], end: End, only_existing: bool) -> CmdResult {
    let values = &args[2..];
    check_sizes(values)?;
    let len = write_list(ctx, &args[1], !only_existing, |l, _| {
        for v in values {
            push(l, end, v);
        }
        Ok(l.len())
    })?;
    ctx.out.int(len.unwrap_or(0) as i64);
    Ok(())
}

fn lpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    push_generic(ctx, args, End::Head, false)
}

fn rpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    push_generic(ctx, args, End::Tail, false)
}

fn lpushx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    push_generic(ctx, args, End::Head, true)
}

fn rpushx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    push_generic(ctx, args, End::Tail, true)
}

/// LPOP/RPOP key [count]: one element as a bulk string, or with a count an array.
fn pop_generic(ctx: &mut Ctx<'_>, args: &[Bytes], end: End, name: &str) -> CmdResult {
    if args.len() > 3 {
        return Err(CmdError::WrongArity(name.into()));
    }
    let count = match args.get(2) {
        None => None,
        Some(c) => Some(int_at_least(c, 0, "value is out of range, must be positive")? as u64),
    };
    let done = write_list(ctx, &args[1], false, |l, out| {
        match count {
            None => match pop(l, end) {
                Some(v) => out.bulk(&v),
                None => out.null(),
            },
            Some(c) => pop_many(l, end, usize::try_from(c).unwrap_or(usize::MAX), out),
        }
        Ok(())
    })?;
    if done.is_none() {
        match count {
            None => ctx.out.null(),
            Some(_) => ctx.out.null_array(),
        }
    }
    Ok(())
}

fn lpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    pop_generic(ctx, args, End::Head, "lpop")
}

fn rpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    pop_generic(ctx, args, End::Tail, "rpop")
}

fn llen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    read_list(ctx, &args[1], |l, out| {
        out.int(l.map_or(0, List::len) as i64);
        Ok(())
    })
}

fn lrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (start, end) = (int(&args[2])?, int(&args[3])?);
    read_list(ctx, &args[1], |l, out| {
        match l.and_then(|l| clamp_range(start, end, l.len()).map(|r| (l, r))) {
            None => out.array(0),
            Some((l, (s, e))) => {
                out.array(e - s + 1);
                l.range(s, e + 1).for_each(|v| out.bulk(v));
            }
        }
        Ok(())
    })
}

fn lindex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    read_list(ctx, &args[1], |l, out| {
        let Some(l) = l else {
            out.null();
            return Ok(());
        };
        match resolve(int(&args[2])?, l.len()).and_then(|i| l.get(i)) {
            Some(v) => out.bulk(v),
            None => out.null(),
        }
        Ok(())
    })
}

fn lset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    check_sizes(&args[3..])?;
    let done = write_list(ctx, &args[1], false, |l, _| {
        let index = int(&args[2])?;
        match resolve(index, l.len()) {
            Some(i) if l.set(i, &args[3]) => Ok(()),
            _ => Err(CmdError::Other("index out of range".into())),
        }
    })?;
    if done.is_none() {
        return Err(CmdError::NoSuchKey);
    }
    ctx.out.ok();
    Ok(())
}

fn linsert(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let after = if is(&args[2], "AFTER") {
        true
    } else if is(&args[2], "BEFORE") {
        false
    } else {
        return Err(CmdError::Syntax);
    };
    let (pivot, value) = (&args[3], &args[4]);
    check_sizes(&args[4..])?;
    let len = write_list_if(
        ctx,
        &args[1],
        |l| {
            let Some(i) = l.iter().position(|e| e == &pivot[..]) else {
                return Ok(-1);
            };
            l.insert(if after { i + 1 } else { i }, value);
            Ok(l.len() as i64)
        },
        |&n| n != -1,
    )?;
    ctx.out.int(len.unwrap_or(0));
    Ok(())
}

fn lrem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let count = int(&args[2])?;
    let value = &args[3];
    let removed = write_list_if(
        ctx,
        &args[1],
        |l| {
            // i64::MIN has no positive counterpart; any count that large means "all".
            let n = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
            Ok(l.remove_equal(value, n, count < 0))
        },
        |&n| n > 0,
    )?;
    ctx.out.int(removed.unwrap_or(0) as i64);
    Ok(())
}

fn ltrim(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (start, end) = (int(&args[2])?, int(&args[3])?);
    write_list(ctx, &args[1], false, |l, _| {
        let len = l.len();
        let (front, back) = match clamp_range(start, end, len) {
            None => (len, 0),
            Some((s, e)) => (s, len - e - 1),
        };
        l.drain_front(front);
        l.drain_back(back);
        Ok(())
    })?;
    ctx.out.ok();
    Ok(())
}

/// LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len].
fn lpos(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let element = &args[2];
    let (mut rank, mut count, mut maxlen): (i64, Option<u64>, u64) = (1, None, 0);
    let mut j = 3;
    while j < args.len() {
        let more = j + 1 < args.len();
        if is(&args[j], "RANK") && more {
            rank = int(&args[j + 1])?;
            if rank == 0 {
                return Err(CmdError::Other(
                    "RANK can't be zero: use 1 to start from the first match, 2 from the second ... \
                     or use negative to start from the end of the list"
                        .into(),
                ));
            }
        } else if is(&args[j], "COUNT") && more {
            count = Some(int_at_least(&args[j + 1], 0, "COUNT can't be negative")? as u64);
        } else if is(&args[j], "MAXLEN") && more {
            maxlen = int_at_least(&args[j + 1], 0, "MAXLEN can't be negative")? as u64;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 2;
    }
    let from_tail = rank < 0;
    // Redis negates the rank in a C long: -LONG_MIN stays negative, so every match
    // counts as reaching it and a COUNT never stops the scan.
    let (skip, count) = if rank == i64::MIN {
        (0, count.map(|_| 0))
    } else {
        (rank.unsigned_abs() - 1, count)
    };
    read_list(ctx, &args[1], |l, out| {
        let Some(l) = l else {
            match count {
                Some(_) => out.array(0),
                None => out.null(),
            }
            return Ok(());
        };
        let len = l.len();
        let scanned = usize::try_from(maxlen).ok().filter(|&m| m > 0).unwrap_or(usize::MAX);
        let limit = count.map_or(1, |c| if c == 0 { u64::MAX } else { c });
        let positions = |order: &mut dyn Iterator<Item = (usize, &[u8])>| -> Vec<usize> {
            order
                .take(scanned)
                .filter(|(_, e)| *e == &element[..])
                .skip(usize::try_from(skip).unwrap_or(usize::MAX))
                .take(usize::try_from(limit).unwrap_or(usize::MAX))
                .map(|(i, _)| if from_tail { len - 1 - i } else { i })
                .collect()
        };
        let found = if from_tail {
            positions(&mut l.iter().rev().enumerate())
        } else {
            positions(&mut l.iter().enumerate())
        };
        match count {
            Some(_) => {
                out.array(found.len());
                found.iter().for_each(|&i| out.int(i as i64));
            }
            None => match found.first() {
                Some(&i) => out.int(i as i64),
                None => out.null(),
            },
        }
        Ok(())
    })
}

/// Pops from `src`'s `from` end and pushes to `dst`'s `to` end under both keys'
/// locks; the moved element, or `None` when `src` does not exist. A `dst` holding
/// another type is WRONGTYPE and nothing moves.
fn move_element(ctx: &mut Ctx<'_>, src: &[u8], dst: &[u8], from: End, to: End) -> Result<Option<Vec<u8>>, CmdError> {
    let (now, woken) = (ctx.now, ctx.client.blocked);
    let (src_slot, dst_slot) = (ctx.slot_of(src), ctx.slot_of(dst));
    let mut locked = ctx.store.lock_many(&[src_slot, dst_slot]);
    let unlocked = || CmdError::Other("internal error: slot not locked".into());
    if !source_is_list(&mut locked.slot(src_slot).ok_or_else(unlocked)?, src, now, woken)? {
        return Ok(None);
    }
    probe(&mut locked.slot(dst_slot).ok_or_else(unlocked)?, dst, now)?;
    let mut from_slot = locked.slot(src_slot).ok_or_else(unlocked)?;
    let Some(value) = update(&mut from_slot, src, now, false, |l| Ok(pop(l, from)))?.flatten() else {
        return Ok(None);
    };
    drop(from_slot);
    let mut to_slot = locked.slot(dst_slot).ok_or_else(unlocked)?;
    update(&mut to_slot, dst, now, true, |l| {
        push(l, to, &value);
        Ok(())
    })?;
    Ok(Some(value))
}

fn lmove(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (from, to) = (end_arg(&args[3])?, end_arg(&args[4])?);
    let moved = move_element(ctx, &args[1], &args[2], from, to)?;
    match moved {
        Some(v) => ctx.out.bulk(&v),
        None => ctx.out.null(),
    }
    Ok(())
}

fn rpoplpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let moved = move_element(ctx, &args[1], &args[2], End::Tail, End::Head)?;
    match moved {
        Some(v) => ctx.out.bulk(&v),
        None => ctx.out.null(),
    }
    Ok(())
}

/// The parsed arguments of LMPOP/BLMPOP: the keys, the end, the count.
struct Mpop<'a> {
    keys: &'a [Bytes],
    end: End,
    count: usize,
}

/// Parses `numkeys key… LEFT|RIGHT [COUNT count]` starting at `args[at]`.
fn parse_mpop(args: &[Bytes], at: usize) -> Result<Mpop<'_>, CmdError> {
    let numkeys = int_at_least(&args[at], 1, "numkeys should be greater than 0")?;
    let first = at + 1;
    let end_at = usize::try_from(numkeys)
        .ok()
        .and_then(|n| first.checked_add(n))
        .filter(|&i| i < args.len())
        .ok_or(CmdError::Syntax)?;
    let end = end_arg(&args[end_at])?;
    let mut count = None;
    let mut j = end_at + 1;
    while j < args.len() {
        if count.is_none() && is(&args[j], "COUNT") && j + 1 < args.len() {
            count = Some(int_at_least(&args[j + 1], 1, "count should be greater than 0")?);
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    Ok(Mpop {
        keys: &args[first..end_at],
        end,
        count: count.map_or(1, |c| usize::try_from(c).unwrap_or(usize::MAX)),
    })
}

/// Pops from the first non-empty list of `keys`, under all their locks, and replies
/// `[key, element]` (`count` None: BLPOP/BRPOP) or `[key, [element…]]` (LMPOP);
/// false (nothing written) when every key is missing. A key of another type met
/// before a list is WRONGTYPE.
fn pop_first(ctx: &mut Ctx<'_>, keys: &[Bytes], end: End, count: Option<usize>) -> Result<bool, CmdError> {
    let (now, woken) = (ctx.now, ctx.client.blocked);
    let slots: Vec<Slot> = keys.iter().map(|k| ctx.slot_of(k)).collect();
    let mut locked = ctx.store.lock_many(&slots);
    for (key, &s) in keys.iter().zip(&slots) {
        let Some(mut slot) = locked.slot(s) else { continue };
        if !source_is_list(&mut slot, key, now, woken)? {
            continue;
        }
        let out = &mut *ctx.out;
        out.array(2);
        out.bulk(key);
        update(&mut slot, key, now, false, |l| {
            match count {
                Some(n) => pop_many(l, end, n, out),
                None => match pop(l, end) {
                    Some(v) => out.bulk(&v),
                    None => out.null(),
                },
            }
            Ok(())
        })?;
        return Ok(true);
    }
    Ok(false)
}

fn lmpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let mpop = parse_mpop(args, 1)?;
    if !pop_first(ctx, mpop.keys, mpop.end, Some(mpop.count))? {
        ctx.out.null_array();
    }
    Ok(())
}

/// BLPOP/BRPOP key [key …] timeout.
fn blocking_pop(ctx: &mut Ctx<'_>, args: &[Bytes], end: End) -> CmdResult {
    let (timeout, keys) = match args[1..].split_last() {
        Some((t, keys)) => (blocking_timeout(t)?, keys),
        None => return Err(CmdError::Syntax),
    };
    if !pop_first(ctx, keys, end, None)? {
        ctx.block(keys, timeout);
    }
    Ok(())
}

fn blpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    blocking_pop(ctx, args, End::Head)
}

fn brpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    blocking_pop(ctx, args, End::Tail)
}

/// BLMOVE/BRPOPLPUSH once the arguments are read: blocks on `src` while it is missing.
fn blocking_move(ctx: &mut Ctx<'_>, args: &[Bytes], from: End, to: End, timeout: Option<Duration>) -> CmdResult {
    match move_element(ctx, &args[1], &args[2], from, to)? {
        Some(v) => ctx.out.bulk(&v),
        // Redis answers a BLMOVE that may not block with a null bulk string (but a
        // timed-out one with a null array).
        None if !ctx.may_block() => ctx.out.null(),
        None => ctx.block(&args[1..2], timeout),
    }
    Ok(())
}

fn blmove(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (from, to) = (end_arg(&args[3])?, end_arg(&args[4])?);
    let timeout = blocking_timeout(&args[5])?;
    blocking_move(ctx, args, from, to, timeout)
}

fn brpoplpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let timeout = blocking_timeout(&args[3])?;
    blocking_move(ctx, args, End::Tail, End::Head, timeout)
}

/// BLMPOP timeout numkeys key … LEFT|RIGHT [COUNT count].
fn blmpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let mpop = parse_mpop(args, 2)?;
    let timeout = blocking_timeout(&args[1])?;
    if !pop_first(ctx, mpop.keys, mpop.end, Some(mpop.count))? {
        ctx.block(mpop.keys, timeout);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocking::BlockOn;
    use crate::cmd::Next;

    #[test]
    fn indexes_and_ranges_follow_redis() {
        assert_eq!(resolve(0, 3), Some(0));
        assert_eq!(resolve(2, 3), Some(2));
        assert_eq!(resolve(3, 3), None);
        assert_eq!(resolve(-1, 3), Some(2));
        assert_eq!(resolve(-3, 3), Some(0));
        assert_eq!(resolve(-4, 3), None);
        assert_eq!(resolve(i64::MIN, 3), None);
        assert_eq!(resolve(i64::MAX, 3), None);
        assert_eq!(clamp_range(0, -1, 3), Some((0, 2)));
        assert_eq!(clamp_range(-100, 100, 3), Some((0, 2)));
        assert_eq!(clamp_range(2, 1, 3), None);
        assert_eq!(clamp_range(3, 5, 3), None);
        assert_eq!(clamp_range(i64::MIN, i64::MAX, 3), Some((0, 2)));
        assert_eq!(clamp_range(0, i64::MIN, 3), None);
        assert_eq!(clamp_range(0, 0, 0), None);
    }

    /// Runs `words` through the pipeline on a fresh standalone node's state, on a
    /// client at nesting depth `depth` (1: inside another command, as EXEC runs its
    /// queue) that `can_block`; the reply and what comes next.
    fn run(words: &[&str], depth: u32, can_block: bool) -> (String, Next) {
        use std::sync::Arc;

        use crate::access::Access;
        use crate::cluster::ClusterState;
        use crate::resp::Limits;
        use crate::state::{ClientState, ServerState};
        use crate::store::{Policy, Store};

        let store = Store::new(0, Policy::S3Fifo);
        let cluster = Arc::new(ClusterState::new(false, None));
        let access = Access::new(None, Limits::default(), 1 << 30);
        let state = ServerState::new(0, access, 1, super::super::registry().commands.len(), cluster);
        let addr = "127.0.0.1:1".parse().expect("address");
        let mut client = ClientState {
            shared: state.clients.register(addr, addr),
            authenticated: true,
            no_evict: false,
            readonly: false,
            replica_port: false,
            can_read_through: false,
            can_block,
            blocked: false,
            coalesce: Default::default(),
            depth,
            write_gate: None,
            tx: Default::default(),
            pushes: Default::default(),
        };
        let mut out = Out::new();
        let args: Vec<Bytes> = words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes())).collect();
        let mut ctx = Ctx {
            store: &store,
            server: &state,
            client: &mut client,
            out: &mut out,
            now: crate::store::now_ms(),
            view: None,
            slot: None,
            next: Next::Continue,
        };
        let (_, next) = super::super::execute(&mut ctx, &args, super::super::find(&args), None);
        assert_eq!(client.depth, depth, "the pipeline restores the depth");
        (String::from_utf8_lossy(&out.buf).into_owned(), next)
    }

    #[test]
    fn a_blocking_command_that_may_not_block_answers_as_redis_does_for_such_clients() {
        let (reply, next) = run(&["BLPOP", "k", "0"], 0, true);
        assert_eq!(reply, "");
        assert!(matches!(next, Next::Block(BlockOn { ref keys, timeout: None }) if keys.len() == 1));
        let (reply, next) = run(&["BLMPOP", "1.5", "1", "k", "LEFT"], 0, true);
        assert_eq!(reply, "");
        assert!(matches!(next, Next::Block(BlockOn { timeout: Some(t), .. }) if t == Duration::from_millis(1500)));
        // Inside another command (EXEC), or on a connection that cannot hold it.
        for (depth, can_block) in [(1, true), (0, false)] {
            for (words, want) in [
                (&["BLPOP", "k", "0"][..], "*-1\r\n"),
                (&["BRPOP", "k", "0"], "*-1\r\n"),
                (&["BLMPOP", "0", "1", "k", "LEFT"], "*-1\r\n"),
                (&["BLMOVE", "k", "d", "LEFT", "LEFT", "0"], "$-1\r\n"),
                (&["BRPOPLPUSH", "k", "d", "0"], "$-1\r\n"),
            ] {
                let (reply, next) = run(words, depth, can_block);
                assert_eq!(reply, want, "{words:?}");
                assert!(matches!(next, Next::Continue), "{words:?}");
            }
        }
    }
}
