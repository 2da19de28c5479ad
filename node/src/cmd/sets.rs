//! Set commands: SADD SREM SMEMBERS SISMEMBER SMISMEMBER SCARD SPOP SRANDMEMBER SINTER
//! SUNION SDIFF SINTERSTORE SUNIONSTORE SDIFFSTORE SINTERCARD SMOVE SSCAN.
//!
//! A set key exists only while it has members: writes create it on demand, and removing
//! its last member deletes the key. The STORE forms replace the destination whatever
//! its type (and drop its TTL), or delete it when the result is empty.
//!
//! Commands on several keys lock all their slots at once (`Store::lock_many`), so each
//! runs atomically, and read their sources the way Redis does: one keyspace hit or miss
//! per source key, in argument order, stopping at the first key of another type.

use bytes::Bytes;
use rand::Rng;

use super::args::{int, is, parse_i64};
use super::flag::*;
use super::{CmdError, CmdResult, CommandSpec, Ctx};
use crate::resp::Out;
use crate::store::{Entry, LockedMany, Object, Set, SlotRef};
use crate::util::glob;
use ringcache_core::slot::Slot;

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec { name: "sadd", arity: -3, flags: WRITE | DENYOOM | FAST | REPLAY, keys: (1, 1, 1), group: "set", summary: "Adds one or more members to a set. Creates the key if it doesn't exist.", handler: sadd },
    CommandSpec { name: "srem", arity: -3, flags: WRITE | FAST | REPLAY, keys: (1, 1, 1), group: "set", summary: "Removes one or more members from a set. Deletes the set if the last member was removed.", handler: srem },
    CommandSpec { name: "smembers", arity: 2, flags: READONLY, keys: (1, 1, 1), group: "set", summary: "Returns all members of a set.", handler: smembers },
    CommandSpec { name: "sismember", arity: 3, flags: READONLY | FAST, keys: (1, 1, 1), group: "set", summary: "Determines whether a member belongs to a set.", handler: sismember },
    CommandSpec { name: "smismember", arity: -3, flags: READONLY | FAST, keys: (1, 1, 1), group: "set", summary: "Determines whether multiple members belong to a set.", handler: smismember },
    CommandSpec { name: "scard", arity: 2, flags: READONLY | FAST, keys: (1, 1, 1), group: "set", summary: "Returns the number of members in a set.", handler: scard },
    CommandSpec { name: "spop", arity: -2, flags: WRITE | FAST, keys: (1, 1, 1), group: "set", summary: "Returns one or more random members from a set after removing them. Deletes the set if the last member was popped.", handler: spop },
    CommandSpec { name: "srandmember", arity: -2, flags: READONLY, keys: (1, 1, 1), group: "set", summary: "Get one or multiple random members from a set.", handler: srandmember },
    CommandSpec { name: "sinter", arity: -2, flags: READONLY, keys: (1, -1, 1), group: "set", summary: "Returns the intersect of multiple sets.", handler: sinter },
    CommandSpec { name: "sunion", arity: -2, flags: READONLY, keys: (1, -1, 1), group: "set", summary: "Returns the union of multiple sets.", handler: sunion },
    CommandSpec { name: "sdiff", arity: -2, flags: READONLY, keys: (1, -1, 1), group: "set", summary: "Returns the difference of multiple sets.", handler: sdiff },
    CommandSpec { name: "sinterstore", arity: -3, flags: WRITE | DENYOOM, keys: (1, -1, 1), group: "set", summary: "Stores the intersect of multiple sets in a key.", handler: sinterstore },
    CommandSpec { name: "sunionstore", arity: -3, flags: WRITE | DENYOOM, keys: (1, -1, 1), group: "set", summary: "Stores the union of multiple sets in a key.", handler: sunionstore },
    CommandSpec { name: "sdiffstore", arity: -3, flags: WRITE | DENYOOM, keys: (1, -1, 1), group: "set", summary: "Stores the difference of multiple sets in a key.", handler: sdiffstore },
    CommandSpec { name: "sintercard", arity: -3, flags: READONLY | MOVABLEKEYS, keys: (0, 0, 0), group: "set", summary: "Returns the number of members of the intersect of multiple sets.", handler: sintercard },
    CommandSpec { name: "smove", arity: 4, flags: WRITE | FAST, keys: (1, 2, 1), group: "set", summary: "Moves a member from one set to another.", handler: smove },
    CommandSpec { name: "sscan", arity: -3, flags: READONLY, keys: (1, 1, 1), group: "set", summary: "Iterates over members of a set.", handler: sscan },
];

/// The largest set kept in the compact (integer) form: Redis'
/// `set-max-intset-entries` (CONFIG SET changes it; sets convert on their next write).
fn max_intset(ctx: &Ctx<'_>) -> usize {
    usize::try_from(ctx.store.encodings.by_name("set-max-intset-entries")).unwrap_or(0)
}

/// Largest number of (possibly repeated) members a negative SRANDMEMBER count may ask
/// for. Redis has no such limit; here it bounds the time the shard lock is held and
/// the size of one reply.
pub const SRANDMEMBER_MAX_REPEATED: u64 = 1 << 20;

fn set_ref(e: &Entry) -> Result<&Set, CmdError> {
    match e.as_object() {
        Some(Object::Set(s)) => Ok(s),
        _ => Err(CmdError::WrongType),
    }
}

fn set_mut(e: &mut Entry) -> Result<&mut Set, CmdError> {
    match e.as_object_mut() {
        Some(Object::Set(s)) => Ok(s),
        _ => Err(CmdError::WrongType),
    }
}

/// Runs `f` on the set at `key` for a read command (counting a keyspace hit or miss):
/// `None` when the key does not exist, WRONGTYPE for other types.
fn read_set<R>(ctx: &mut Ctx<'_>, key: &[u8], f: impl FnOnce(Option<&Set>, &mut Out) -> R) -> Result<R, CmdError> {
    let store = ctx.store;
    let mut locked = store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    match slot.read(key, ctx.now) {
        None => Ok(f(None, ctx.out)),
        Some(e) => Ok(f(Some(set_ref(e)?), ctx.out)),
    }
}

/// Runs `f` on the set at `key` of `slot` for a write, keeping memory accounting exact.
/// A missing key is created (when `create`) with an empty set that is stored only if
/// `f` leaves members in it; a set that `f` empties is deleted. `f` must not change
/// the set when it fails. Returns `None` when the key is missing and not created.
///
/// `changes` says whether `f` will change an existing set; when it will not, `f` does
/// not run and the result is `R::default()`: the key is not written, which is what
/// WATCH sees (Redis signals a set key only when a member came or went).
fn modify_set<R: Default>(
    slot: &mut SlotRef<'_>,
    key: &[u8],
    now: u64,
    create: bool,
    changes: impl FnOnce(&Set) -> bool,
    f: impl FnOnce(&mut Set) -> Result<R, CmdError>,
) -> Result<Option<R>, CmdError> {
    match slot.get(key, now) {
        Some(e) => {
            if !changes(set_ref(e)?) {
                return Ok(Some(R::default()));
            }
        }
        None if create => {
            let mut s = Set::default();
            let r = f(&mut s)?;
            if !s.is_empty() {
                slot.insert(Entry::object(key, Object::Set(s), 0, 0), now);
            }
            return Ok(Some(r));
        }
        None => return Ok(None),
    }
    let changed = slot.modify(key, now, |e| -> Result<(R, bool), CmdError> {
        let s = set_mut(e)?;
        let r = f(s)?;
        Ok((r, s.is_empty()))
    });
    let Some(res) = changed else { return Ok(None) };
    let (r, now_empty) = res?;
    if now_empty {
        slot.remove(key, now);
    }
    Ok(Some(r))
}

/// [`modify_set`] on a single key under its own lock.
fn write_set<R: Default>(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    create: bool,
    changes: impl FnOnce(&Set) -> bool,
    f: impl FnOnce(&mut Set) -> Result<R, CmdError>,
) -> Result<Option<R>, CmdError> {
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    modify_set(&mut locked.slot(), key, ctx.now, create, changes, f)
}

fn sadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (members, limit) = (&args[2..], max_intset(ctx));
    let new = |s: &Set| members.iter().any(|m| !s.contains(m));
    let added = write_set(ctx, &args[1], true, new, |s| {
        Ok(members.iter().filter(|m| s.insert_within(m, limit)).count())
    })?;
    ctx.out.int(added.unwrap_or(0) as i64);
    Ok(())
}

fn srem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (members, limit) = (&args[2..], max_intset(ctx));
    let present = |s: &Set| members.iter().any(|m| s.contains(m));
    let removed = write_set(ctx, &args[1], false, present, |s| {
        Ok(members.iter().filter(|m| s.remove_within(m, limit)).count())
    })?;
    ctx.out.int(removed.unwrap_or(0) as i64);
    Ok(())
}

/// A set reply (`~` in RESP3) with every member of `s`.
fn reply_members(out: &mut Out, s: Option<&Set>) {
    out.set(s.map_or(0, Set::len));
    for m in s.into_iter().flat_map(Set::iter) {
        out.bulk(&m);
    }
}

fn smembers(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    read_set(ctx, &args[1], |s, out| reply_members(out, s))
}

fn sismember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let member = &args[2];
    read_set(ctx, &args[1], |s, out| {
        out.int(i64::from(s.is_some_and(|s| s.contains(member))))
    })
}

fn smismember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let members = &args[2..];
    read_set(ctx, &args[1], |s, out| {
        out.array(members.len());
        for m in members {
            out.int(i64::from(s.is_some_and(|s| s.contains(m))));
        }
    })
}

fn scard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    read_set(ctx, &args[1], |s, out| out.int(s.map_or(0, Set::len) as i64))
}

/// `count` distinct positions out of `len`, uniformly (all of them when `count >= len`).
fn distinct_positions(len: usize, count: u64) -> Vec<usize> {
    match usize::try_from(count) {
        Ok(count) if count < len => rand::seq::index::sample(&mut rand::thread_rng(), len, count).into_vec(),
        _ => (0..len).collect(),
    }
}

/// SPOP key [count].
fn spop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if args.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let (key, limit) = (&args[1], max_intset(ctx));
    if args.len() == 2 {
        let popped = write_set(
            ctx,
            key,
            false,
            |_| true,
            |s| {
                let i = rand::thread_rng().gen_range(0..s.len().max(1));
                let m = s.at(i).map(|m| m.to_vec());
                if let Some(m) = &m {
                    s.remove_within(m, limit);
                }
                Ok(m)
            },
        )?;
        match popped.flatten() {
            Some(m) => ctx.out.bulk(&m),
            None => ctx.out.null(),
        }
        return Ok(());
    }
    let count = parse_i64(&args[2])
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| CmdError::Other("value is out of range, must be positive".into()))?;
    let now = ctx.now;
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    let Some(e) = slot.get(key, now) else {
        ctx.out.set(0);
        return Ok(());
    };
    let len = set_ref(e)?.len();
    if count == 0 {
        ctx.out.set(0);
        return Ok(());
    }
    if count >= len as u64 {
        // Redis replies with the union of the one set, which reads the key once more
        // (a keyspace hit), then deletes it.
        if let Some(e) = slot.read(key, now) {
            reply_members(ctx.out, Some(set_ref(e)?));
        }
        slot.remove(key, now);
        return Ok(());
    }
    let popped = modify_set(
        &mut slot,
        key,
        now,
        false,
        |_| true,
        |s| {
            let picked: Vec<Vec<u8>> = distinct_positions(s.len(), count)
                .into_iter()
                .filter_map(|i| s.at(i).map(|m| m.to_vec()))
                .collect();
            for m in &picked {
                s.remove_within(m, limit);
            }
            Ok(picked)
        },
    )?;
    let popped = popped.unwrap_or_default();
    ctx.out.set(popped.len());
    for m in &popped {
        ctx.out.bulk(m);
    }
    Ok(())
}

/// SRANDMEMBER key [count].
fn srandmember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if args.len() > 3 {
        return Err(CmdError::Syntax);
    }
    if args.len() == 2 {
        return read_set(ctx, &args[1], |s, out| {
            let pick = s
                .filter(|s| !s.is_empty())
                .and_then(|s| s.at(rand::thread_rng().gen_range(0..s.len())));
            match pick {
                Some(m) => out.bulk(&m),
                None => out.null(),
            }
        });
    }
    let l = int(&args[2])?;
    if l == i64::MIN {
        return Err(CmdError::Other(format!(
            "value is out of range, value must between {} and {}",
            -i64::MAX,
            i64::MAX
        )));
    }
    let (count, unique) = (l.unsigned_abs(), l >= 0);
    read_set(ctx, &args[1], |s, out| {
        let Some(s) = s.filter(|s| !s.is_empty() && count > 0) else {
            out.array(0);
            return Ok(());
        };
        if !unique && count > SRANDMEMBER_MAX_REPEATED {
            return Err(CmdError::Other("value is out of range".into()));
        }
        let mut rng = rand::thread_rng();
        let picks: Vec<usize> = if unique {
            distinct_positions(s.len(), count)
        } else {
            (0..count).map(|_| rng.gen_range(0..s.len())).collect()
        };
        out.array(picks.len());
        for m in picks.into_iter().filter_map(|i| s.at(i)) {
            out.bulk(&m);
        }
        Ok(())
    })?
}

/// The source sets of a multi-key command, under all their slots' locks.
struct Sources<'a, 'k> {
    locked: LockedMany<'a>,
    keys: &'k [Bytes],
    slots: Vec<Slot>,
    now: u64,
    max_intset: usize,
}

impl<'a, 'k> Sources<'a, 'k> {
    /// Locks the slots of `keys` and of `dst`, if any.
    fn lock(ctx: &Ctx<'a>, keys: &'k [Bytes], dst: Option<&[u8]>) -> Sources<'a, 'k> {
        let slots: Vec<Slot> = keys.iter().map(|k| ctx.slot_of(k)).collect();
        let all: Vec<Slot> = slots.iter().copied().chain(dst.map(|d| ctx.slot_of(d))).collect();
        Sources {
            locked: ctx.store.lock_many(&all),
            keys,
            slots,
            now: ctx.now,
            max_intset: max_intset(ctx),
        }
    }

    /// Reads every source as Redis does (a keyspace hit or miss each, in order, up to
    /// the first key of another type): the sizes, `None` for a missing key. (Every
    /// slot here was locked, so `LockedMany::slot` is never `None`.)
    fn sizes(&mut self) -> Result<Vec<Option<usize>>, CmdError> {
        let mut sizes = Vec::with_capacity(self.keys.len());
        for (key, &s) in self.keys.iter().zip(&self.slots) {
            let mut slot = self.locked.slot(s).ok_or(CmdError::WrongType)?;
            sizes.push(match slot.read(key, self.now) {
                None => None,
                Some(e) => Some(set_ref(e)?.len()),
            });
        }
        Ok(sizes)
    }

    /// Runs `f` on source `i` (`None` when missing or not a set; [`Sources::sizes`]
    /// checked the types). No statistics.
    fn with<R>(&mut self, i: usize, f: impl FnOnce(Option<&Set>) -> R) -> R {
        let (key, now) = (&self.keys[i], self.now);
        match self.locked.slot(self.slots[i]) {
            Some(mut slot) => f(slot.get(key, now).and_then(|e| set_ref(e).ok())),
            None => f(None),
        }
    }

    /// The members of source `i`.
    fn members(&mut self, i: usize) -> Vec<Vec<u8>> {
        self.with(i, |s| s.into_iter().flat_map(Set::iter).map(|m| m.to_vec()).collect())
    }

    /// Keeps the `candidates` that source `i` has (`keep`) or has not (`!keep`).
    fn filter(&mut self, i: usize, candidates: &mut Vec<Vec<u8>>, keep: bool) {
        self.with(i, |s| candidates.retain(|m| s.is_some_and(|s| s.contains(m)) == keep));
    }

    /// Members in every source, at most `limit` of them (0: all).
    fn inter(&mut self, limit: usize) -> Result<Vec<Vec<u8>>, CmdError> {
        let sizes = self.sizes()?;
        if sizes.iter().any(Option::is_none) {
            return Ok(Vec::new());
        }
        let smallest = (0..sizes.len()).min_by_key(|&i| sizes[i]).unwrap_or(0);
        let mut candidates = self.members(smallest);
        for i in (0..sizes.len()).filter(|&i| i != smallest) {
            self.filter(i, &mut candidates, true);
        }
        if limit > 0 {
            candidates.truncate(limit);
        }
        Ok(candidates)
    }

    /// Members in any source.
    fn union(&mut self) -> Result<Set, CmdError> {
        let sizes = self.sizes()?;
        let (mut out, limit) = (Set::default(), self.max_intset);
        for i in (0..sizes.len()).filter(|&i| sizes[i].is_some()) {
            self.with(i, |s| {
                for m in s.into_iter().flat_map(Set::iter) {
                    out.insert_within(&m, limit);
                }
            });
        }
        Ok(out)
    }

    /// Members of the first source in none of the others.
    fn diff(&mut self) -> Result<Vec<Vec<u8>>, CmdError> {
        let sizes = self.sizes()?;
        if sizes[0].is_none() || self.keys[1..].iter().any(|k| *k == self.keys[0]) {
            return Ok(Vec::new());
        }
        let mut candidates = self.members(0);
        for i in (1..sizes.len()).filter(|&i| sizes[i].is_some()) {
            self.filter(i, &mut candidates, false);
        }
        Ok(candidates)
    }

    /// Makes `result` the value of `dst` (any type, TTL dropped), or deletes `dst` when
    /// it is empty; replies with its size.
    fn store(mut self, dst: &[u8], dst_slot: Slot, result: Set, out: &mut Out) {
        let len = result.len();
        if let Some(mut slot) = self.locked.slot(dst_slot) {
            if result.is_empty() {
                slot.remove(dst, self.now);
            } else {
                slot.insert(Entry::object(dst, Object::Set(result), 0, 0), self.now);
            }
        }
        out.int(len as i64);
    }
}

fn set_of(members: Vec<Vec<u8>>, max_intset: usize) -> Set {
    let mut s = Set::default();
    for m in members {
        s.insert_within(&m, max_intset);
    }
    s
}

fn reply_list(out: &mut Out, members: &[Vec<u8>]) {
    out.set(members.len());
    for m in members {
        out.bulk(m);
    }
}

fn sinter(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let result = Sources::lock(ctx, &args[1..], None).inter(0)?;
    reply_list(ctx.out, &result);
    Ok(())
}

fn sunion(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let result = Sources::lock(ctx, &args[1..], None).union()?;
    reply_members(ctx.out, Some(&result));
    Ok(())
}

fn sdiff(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let result = Sources::lock(ctx, &args[1..], None).diff()?;
    reply_list(ctx.out, &result);
    Ok(())
}

fn sinterstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let dst = &args[1];
    let mut sources = Sources::lock(ctx, &args[2..], Some(dst));
    let result = set_of(sources.inter(0)?, sources.max_intset);
    sources.store(dst, ctx.slot_of(dst), result, ctx.out);
    Ok(())
}

fn sunionstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let dst = &args[1];
    let mut sources = Sources::lock(ctx, &args[2..], Some(dst));
    let result = sources.union()?;
    sources.store(dst, ctx.slot_of(dst), result, ctx.out);
    Ok(())
}

fn sdiffstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let dst = &args[1];
    let mut sources = Sources::lock(ctx, &args[2..], Some(dst));
    let result = set_of(sources.diff()?, sources.max_intset);
    sources.store(dst, ctx.slot_of(dst), result, ctx.out);
    Ok(())
}

/// SINTERCARD numkeys key [key ...] [LIMIT limit].
fn sintercard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let numkeys = parse_i64(&args[1])
        .filter(|&n| n > 0)
        .ok_or_else(|| CmdError::Other("numkeys should be greater than 0".into()))?;
    let numkeys = usize::try_from(numkeys)
        .ok()
        .filter(|&n| n <= args.len() - 2)
        .ok_or_else(|| CmdError::Other("Number of keys can't be greater than number of args".into()))?;
    let mut limit = 0usize;
    let mut opts = args[2 + numkeys..].iter();
    while let Some(opt) = opts.next() {
        match opts.next() {
            Some(value) if is(opt, "LIMIT") => {
                let n = parse_i64(value)
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(|| CmdError::Other("LIMIT can't be negative".into()))?;
                limit = usize::try_from(n).unwrap_or(usize::MAX);
            }
            _ => return Err(CmdError::Syntax),
        }
    }
    let result = Sources::lock(ctx, &args[2..2 + numkeys], None).inter(limit)?;
    ctx.out.int(result.len() as i64);
    Ok(())
}

/// SMOVE source destination member.
fn smove(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (src, dst, member) = (&args[1], &args[2], &args[3]);
    let limit = max_intset(ctx);
    let (src_slot, dst_slot) = (ctx.slot_of(src), ctx.slot_of(dst));
    let now = ctx.now;
    let mut locked = ctx.store.lock_many(&[src_slot, dst_slot]);
    // Both slots are locked: `locked.slot` is never `None` below.
    let mut source = locked.slot(src_slot).ok_or(CmdError::WrongType)?;
    let Some(e) = source.get(src, now) else {
        ctx.out.int(0);
        return Ok(());
    };
    let is_member = set_ref(e)?.contains(member);
    let mut target = locked.slot(dst_slot).ok_or(CmdError::WrongType)?;
    if let Some(e) = target.get(dst, now) {
        set_ref(e)?;
    }
    if src == dst || !is_member {
        ctx.out.int(i64::from(is_member));
        return Ok(());
    }
    let mut source = locked.slot(src_slot).ok_or(CmdError::WrongType)?;
    modify_set(
        &mut source,
        src,
        now,
        false,
        |_| true,
        |s| Ok(s.remove_within(member, limit)),
    )?;
    let mut target = locked.slot(dst_slot).ok_or(CmdError::WrongType)?;
    let absent = |s: &Set| !s.contains(member);
    modify_set(&mut target, dst, now, true, absent, |s| {
        Ok(s.insert_within(member, limit))
    })?;
    ctx.out.int(1);
    Ok(())
}

/// SSCAN key cursor [MATCH pattern] [COUNT count]. Every matching member is returned
/// in one reply with cursor 0, which ends the iteration (as HSCAN does).
fn sscan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let cursor = std::str::from_utf8(&args[2]).ok().and_then(|s| s.parse::<u64>().ok());
    if cursor.is_none() {
        return Err(CmdError::Other("invalid cursor".into()));
    }
    let opts = &args[3..];
    read_set(ctx, &args[1], |s, out| -> CmdResult {
        let Some(s) = s else {
            out.array(2);
            out.bulk(b"0");
            out.array(0);
            return Ok(());
        };
        // Redis validates the options only once it found a set at the key.
        let mut pattern: Option<&[u8]> = None;
        for pair in opts.chunks(2) {
            match pair {
                [opt, n] if is(opt, "COUNT") => {
                    if int(n)? < 1 {
                        return Err(CmdError::Syntax);
                    }
                }
                // "*" matches everything; skip the matcher for it, as Redis does.
                [opt, p] if is(opt, "MATCH") => pattern = (&p[..] != b"*").then_some(&p[..]),
                _ => return Err(CmdError::Syntax),
            }
        }
        let selected: Vec<_> = s
            .iter()
            .filter(|m| pattern.is_none_or(|p| glob::matches(p, m)))
            .collect();
        out.array(2);
        out.bulk(b"0");
        out.array(selected.len());
        for m in &selected {
            out.bulk(m);
        }
        Ok(())
    })?
}
