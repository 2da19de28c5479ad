//! Sorted-set commands: ZADD ZINCRBY ZREM ZSCORE ZMSCORE ZCARD ZCOUNT ZLEXCOUNT ZRANGE
//! ZRANGESTORE ZREVRANGE ZRANGEBYSCORE ZREVRANGEBYSCORE ZRANGEBYLEX ZREVRANGEBYLEX ZRANK
//! ZREVRANK ZREMRANGEBYRANK ZREMRANGEBYSCORE ZREMRANGEBYLEX ZPOPMIN ZPOPMAX ZMPOP ZUNION
//! ZINTER ZDIFF ZUNIONSTORE ZINTERSTORE ZDIFFSTORE ZINTERCARD ZSCAN ZRANDMEMBER, and the
//! blocking BZPOPMIN BZPOPMAX BZMPOP, with Redis 7.0.15's replies and errors. The value
//! type is [`crate::store::ZSet`].
//!
//! A blocking pop with nothing to serve blocks on its keys through [`Ctx::block`] (the
//! machinery is [`crate::blocking`], as for BLPOP in `lists.rs`); a write that leaves
//! a sorted set at one of them runs it again.
//!
//! A sorted-set key exists only while it has members: writes create it on demand, and
//! removing its last member deletes the key. Scores reply as Redis 7.0 prints them
//! ("%.17g"): a bulk string in RESP2, a double in RESP3; in RESP3 a reply WITHSCORES is
//! an array of [member, score] pairs where Redis 7.0 gives one.

use bytes::Bytes;
use rand::Rng;

use super::args::{blocking_timeout, int, is, parse_i64};
use super::flag::*;
use super::{collection, CmdError, CmdResult, CommandSpec, Ctx};
use crate::resp::Out;
use crate::store::zset::{self, LexRange, ScoreRange};
use crate::store::{Entry, Object, SlotRef, ZSet};
use crate::util::glob;
use ringcache_core::slot::Slot;

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec { name: "zadd", arity: -4, flags: WRITE | DENYOOM | FAST | REPLAY, keys: (1, 1, 1), group: "sorted-set", summary: "Adds one or more members to a sorted set, or updates their scores. Creates the key if it doesn't exist.", handler: zadd },
    CommandSpec { name: "zincrby", arity: 4, flags: WRITE | DENYOOM | FAST | REPLAY, keys: (1, 1, 1), group: "sorted-set", summary: "Increments the score of a member in a sorted set.", handler: zincrby },
    CommandSpec { name: "zrem", arity: -3, flags: WRITE | FAST | REPLAY, keys: (1, 1, 1), group: "sorted-set", summary: "Removes one or more members from a sorted set. Deletes the sorted set if all members were removed.", handler: zrem },
    CommandSpec { name: "zscore", arity: 3, flags: READONLY | FAST, keys: (1, 1, 1), group: "sorted-set", summary: "Returns the score of a member in a sorted set.", handler: zscore },
    CommandSpec { name: "zmscore", arity: -3, flags: READONLY | FAST, keys: (1, 1, 1), group: "sorted-set", summary: "Returns the score of one or more members in a sorted set.", handler: zmscore },
    CommandSpec { name: "zcard", arity: 2, flags: READONLY | FAST, keys: (1, 1, 1), group: "sorted-set", summary: "Returns the number of members in a sorted set.", handler: zcard },
    CommandSpec { name: "zcount", arity: 4, flags: READONLY | FAST, keys: (1, 1, 1), group: "sorted-set", summary: "Returns the count of members in a sorted set that have scores within a range.", handler: zcount },
    CommandSpec { name: "zlexcount", arity: 4, flags: READONLY | FAST, keys: (1, 1, 1), group: "sorted-set", summary: "Returns the number of members in a sorted set within a lexicographical range.", handler: zlexcount },
    CommandSpec { name: "zrange", arity: -4, flags: READONLY, keys: (1, 1, 1), group: "sorted-set", summary: "Returns members in a sorted set within a range of indexes.", handler: zrange },
    CommandSpec { name: "zrangestore", arity: -5, flags: WRITE | DENYOOM, keys: (1, 2, 1), group: "sorted-set", summary: "Stores a range of members from sorted set in a key.", handler: zrangestore },
    CommandSpec { name: "zrevrange", arity: -4, flags: READONLY, keys: (1, 1, 1), group: "sorted-set", summary: "Returns members in a sorted set within a range of indexes in reverse order.", handler: zrevrange },
    CommandSpec { name: "zrangebyscore", arity: -4, flags: READONLY, keys: (1, 1, 1), group: "sorted-set", summary: "Returns members in a sorted set within a range of scores.", handler: zrangebyscore },
    CommandSpec { name: "zrevrangebyscore", arity: -4, flags: READONLY, keys: (1, 1, 1), group: "sorted-set", summary: "Returns members in a sorted set within a range of scores in reverse order.", handler: zrevrangebyscore },
    CommandSpec { name: "zrangebylex", arity: -4, flags: READONLY, keys: (1, 1, 1), group: "sorted-set", summary: "Returns members in a sorted set within a lexicographical range.", handler: zrangebylex },
    CommandSpec { name: "zrevrangebylex", arity: -4, flags: READONLY, keys: (1, 1, 1), group: "sorted-set", summary: "Returns members in a sorted set within a lexicographical range in reverse order.", handler: zrevrangebylex },
    CommandSpec { name: "zrank", arity: 3, flags: READONLY | FAST, keys: (1, 1, 1), group: "sorted-set", summary: "Returns the index of a member in a sorted set ordered by ascending scores.", handler: zrank },
    CommandSpec { name: "zrevrank", arity: 3, flags: READONLY | FAST, keys: (1, 1, 1), group: "sorted-set", summary: "Returns the index of a member in a sorted set ordered by descending scores.", handler: zrevrank },
    CommandSpec { name: "zremrangebyrank", arity: 4, flags: WRITE | REPLAY, keys: (1, 1, 1), group: "sorted-set", summary: "Removes members in a sorted set within a range of indexes. Deletes the sorted set if all members were removed.", handler: zremrangebyrank },
    CommandSpec { name: "zremrangebyscore", arity: 4, flags: WRITE | REPLAY, keys: (1, 1, 1), group: "sorted-set", summary: "Removes members in a sorted set within a range of scores. Deletes the sorted set if all members were removed.", handler: zremrangebyscore },
    CommandSpec { name: "zremrangebylex", arity: 4, flags: WRITE | REPLAY, keys: (1, 1, 1), group: "sorted-set", summary: "Removes members in a sorted set within a lexicographical range. Deletes the sorted set if all members were removed.", handler: zremrangebylex },
    CommandSpec { name: "zpopmin", arity: -2, flags: WRITE | FAST | REPLAY, keys: (1, 1, 1), group: "sorted-set", summary: "Returns the lowest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped.", handler: zpopmin },
    CommandSpec { name: "zpopmax", arity: -2, flags: WRITE | FAST | REPLAY, keys: (1, 1, 1), group: "sorted-set", summary: "Returns the highest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped.", handler: zpopmax },
    CommandSpec { name: "zmpop", arity: -4, flags: WRITE | MOVABLEKEYS, keys: (0, 0, 0), group: "sorted-set", summary: "Returns the highest- or lowest-scoring members from one or more sorted sets after removing them. Deletes the sorted set if the last member was popped.", handler: zmpop },
    CommandSpec { name: "bzpopmin", arity: -3, flags: WRITE | NOSCRIPT | FAST | BLOCKING, keys: (1, -2, 1), group: "sorted-set", summary: "Removes and returns the member with the lowest score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.", handler: bzpopmin },
    CommandSpec { name: "bzpopmax", arity: -3, flags: WRITE | NOSCRIPT | FAST | BLOCKING, keys: (1, -2, 1), group: "sorted-set", summary: "Removes and returns the member with the highest score from one or more sorted sets. Blocks until a member available otherwise.  Deletes the sorted set if the last element was popped.", handler: bzpopmax },
    CommandSpec { name: "bzmpop", arity: -5, flags: WRITE | BLOCKING | MOVABLEKEYS, keys: (0, 0, 0), group: "sorted-set", summary: "Removes and returns a member by score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.", handler: bzmpop },
    CommandSpec { name: "zunion", arity: -3, flags: READONLY | MOVABLEKEYS, keys: (0, 0, 0), group: "sorted-set", summary: "Returns the union of multiple sorted sets.", handler: zunion },
    CommandSpec { name: "zinter", arity: -3, flags: READONLY | MOVABLEKEYS, keys: (0, 0, 0), group: "sorted-set", summary: "Returns the intersect of multiple sorted sets.", handler: zinter },
    CommandSpec { name: "zdiff", arity: -3, flags: READONLY | MOVABLEKEYS, keys: (0, 0, 0), group: "sorted-set", summary: "Returns the difference between multiple sorted sets.", handler: zdiff },
    CommandSpec { name: "zunionstore", arity: -4, flags: WRITE | DENYOOM | MOVABLEKEYS, keys: (1, 1, 1), group: "sorted-set", summary: "Stores the union of multiple sorted sets in a key.", handler: zunionstore },
    CommandSpec { name: "zinterstore", arity: -4, flags: WRITE | DENYOOM | MOVABLEKEYS, keys: (1, 1, 1), group: "sorted-set", summary: "Stores the intersect of multiple sorted sets in a key.", handler: zinterstore },
    CommandSpec { name: "zdiffstore", arity: -4, flags: WRITE | DENYOOM | MOVABLEKEYS, keys: (1, 1, 1), group: "sorted-set", summary: "Stores the difference of multiple sorted sets in a key.", handler: zdiffstore },
    CommandSpec { name: "zintercard", arity: -3, flags: READONLY | MOVABLEKEYS, keys: (0, 0, 0), group: "sorted-set", summary: "Returns the number of members of the intersect of multiple sorted sets.", handler: zintercard },
    CommandSpec { name: "zscan", arity: -3, flags: READONLY, keys: (1, 1, 1), group: "sorted-set", summary: "Iterates over members and scores of a sorted set.", handler: zscan },
    CommandSpec { name: "zrandmember", arity: -2, flags: READONLY, keys: (1, 1, 1), group: "sorted-set", summary: "Returns one or more random members from a sorted set.", handler: zrandmember },
];

/// Largest number of (possibly repeated) members a negative ZRANDMEMBER count may ask
/// for. Redis has no such limit; here it bounds the time the shard lock is held and
/// the size of one reply.
pub const ZRANDMEMBER_MAX_REPEATED: u64 = 1 << 20;

const NAN_ERR: &str = "resulting score is not a number (NaN)";
const NOT_FLOAT_RANGE: &str = "min or max is not a float";
const NOT_LEX_RANGE: &str = "min or max not valid string range item";

fn other(msg: &str) -> CmdError {
    CmdError::Other(msg.to_string())
}

// --- replies ------------------------------------------------------------------------

/// A score: a bulk string in RESP2, a double (`,`) in RESP3, with Redis 7.0's digits.
fn reply_score(out: &mut Out, v: f64) {
    let text = zset::format_score(v);
    if out.resp3 {
        out.buf.extend_from_slice(b",");
        out.buf.extend_from_slice(text.as_bytes());
        out.buf.extend_from_slice(b"\r\n");
    } else {
        out.bulk(text.as_bytes());
    }
}

/// The array header of `n` entries, flat in RESP2 (member, score, …) or of pairs in
/// RESP3 when `withscores`.
fn reply_entries_len(out: &mut Out, n: usize, withscores: bool) {
    out.array(if withscores && !out.resp3 { 2 * n } else { n });
}

/// One entry of such an array.
fn reply_entry(out: &mut Out, member: &[u8], score: f64, withscores: bool) {
    if withscores && out.resp3 {
        out.array(2);
    }
    out.bulk(member);
    if withscores {
        reply_score(out, score);
    }
}

fn reply_all<'a>(out: &mut Out, entries: impl ExactSizeIterator<Item = (&'a [u8], f64)>, withscores: bool) {
    reply_entries_len(out, entries.len(), withscores);
    for (m, s) in entries {
        reply_entry(out, m, s, withscores);
    }
}

// --- access -------------------------------------------------------------------------

fn zset_ref(e: &Entry) -> Result<&ZSet, CmdError> {
    match e.as_object() {
        Some(Object::ZSet(z)) => Ok(z),
        _ => Err(CmdError::WrongType),
    }
}

fn zset_mut(e: &mut Entry) -> Result<&mut ZSet, CmdError> {
    match e.as_object_mut() {
        Some(Object::ZSet(z)) => Ok(z),
        _ => Err(CmdError::WrongType),
    }
}

/// Runs `f` on the sorted set at `key` for a read command (counting a keyspace hit or
/// miss): `None` when the key does not exist, WRONGTYPE for other types.
fn read_zset<R>(ctx: &mut Ctx<'_>, key: &[u8], f: impl FnOnce(Option<&ZSet>, &mut Out) -> R) -> Result<R, CmdError> {
    let store = ctx.store;
    let mut locked = store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    match slot.read(key, ctx.now) {
        None => Ok(f(None, ctx.out)),
        Some(e) => Ok(f(Some(zset_ref(e)?), ctx.out)),
    }
}

/// Runs `f` on the sorted set at `key` for a write command, keeping memory accounting
/// exact. A missing key is created (when `create`) with an empty set that is stored
/// only if `f` leaves members in it; a set that `f` empties is deleted. `f` must not
/// change the set when it fails. `changed` tells from `f`'s result whether it changed
/// the set (ZREM of absent members, ZADD NX of present ones change nothing), so that
/// WATCH sees only real changes, as in Redis. Returns `None` when the key is missing and
/// not created.
fn write_zset<R>(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    create: bool,
    f: impl FnOnce(&mut ZSet, &mut Out) -> Result<R, CmdError>,
    changed: impl FnOnce(&R) -> bool,
) -> Result<Option<R>, CmdError> {
    let now = ctx.now;
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let out = &mut *ctx.out;
    collection::update_if(&mut locked.slot(), key, now, create, |z| f(z, out), changed)
}

/// Stores `z` at `dst` (replacing any value and its TTL), or deletes `dst` when `z` is
/// empty, as Redis' STORE variants do; returns the new size.
fn put_result(slot: &mut SlotRef<'_>, dst: &[u8], z: ZSet, now: u64) -> usize {
    let n = z.len();
    if z.is_empty() {
        slot.remove(dst, now);
    } else {
        slot.insert(Entry::object(dst, Object::ZSet(z), 0, 0), now);
    }
    n
}

// --- argument parsing ---------------------------------------------------------------

/// A `long` argument whose errors all read `msg` (Redis' `get*LongFromObjectOrReply`
/// with a message): not an integer, or outside `min..=max`.
fn ranged(b: &[u8], min: i64, max: i64, msg: &str) -> Result<i64, CmdError> {
    match parse_i64(b) {
        Some(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(other(msg)),
    }
}

fn score_range(min: &[u8], max: &[u8]) -> Result<ScoreRange, CmdError> {
    zset::parse_score_range(min, max).ok_or_else(|| other(NOT_FLOAT_RANGE))
}

fn lex_range(min: &[u8], max: &[u8]) -> Result<LexRange, CmdError> {
    zset::parse_lex_range(min, max).ok_or_else(|| other(NOT_LEX_RANGE))
}

/// Ranks `start..end` of a ZRANGE-style index pair (negative from the end), empty when
/// nothing is in range.
fn rank_span(start: i64, end: i64, len: usize) -> (usize, usize) {
    let llen = len as i64;
    let mut start = if start < 0 { start + llen } else { start };
    let mut end = if end < 0 { end + llen } else { end };
    if start < 0 {
        start = 0;
    }
    if start > end || start >= llen {
        return (0, 0);
    }
    if end >= llen {
        end = llen - 1;
    }
    (start as usize, end as usize + 1)
}

// --- ZADD ZINCRBY ZREM --------------------------------------------------------------

#[derive(Clone, Copy, Default)]
struct AddFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    incr: bool,
}

/// What one ZADD element did.
enum Added {
    New,
    Updated,
    Same,
    /// Not applied (NX, XX, GT, LT).
    Nop,
}

/// Redis' `zsetAdd`: applies one score/member under the flags; the resulting score
/// with what happened, or the NaN error.
fn add_one(z: &mut ZSet, member: &[u8], score: f64, f: AddFlags) -> Result<(Added, f64), CmdError> {
    match z.score(member) {
        Some(cur) => {
            if f.nx {
                return Ok((Added::Nop, cur));
            }
            let new = if f.incr { score + cur } else { score };
            if new.is_nan() {
                return Err(other(NAN_ERR));
            }
            if (f.lt && new >= cur) || (f.gt && new <= cur) {
                return Ok((Added::Nop, cur));
            }
            if new == cur {
                return Ok((Added::Same, new));
            }
            z.insert(member, new);
            Ok((Added::Updated, new))
        }
        None if f.xx => Ok((Added::Nop, 0.0)),
        None => {
            z.insert(member, score);
            Ok((Added::New, score))
        }
    }
}

fn zadd_generic(ctx: &mut Ctx<'_>, args: &[Bytes], mut flags: AddFlags) -> CmdResult {
    let mut ch = false;
    let mut idx = 2;
    while let Some(a) = args.get(idx) {
        match () {
            _ if is(a, "nx") => flags.nx = true,
            _ if is(a, "xx") => flags.xx = true,
            _ if is(a, "ch") => ch = true,
            _ if is(a, "incr") => flags.incr = true,
            _ if is(a, "gt") => flags.gt = true,
            _ if is(a, "lt") => flags.lt = true,
            _ => break,
        }
        idx += 1;
    }
    let pairs = &args[idx..];
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return Err(CmdError::Syntax);
    }
    let f = flags;
    if f.nx && f.xx {
        return Err(other("XX and NX options at the same time are not compatible"));
    }
    if (f.nx && (f.gt || f.lt)) || (f.gt && f.lt) {
        return Err(other("GT, LT, and/or NX options at the same time are not compatible"));
    }
    if f.incr && pairs.len() > 2 {
        return Err(other("INCR option supports a single increment-element pair"));
    }
    let scores = pairs
        .chunks_exact(2)
        .map(|p| zset::parse_score(&p[0]).ok_or(CmdError::NotFloat))
        .collect::<Result<Vec<f64>, CmdError>>()?;
    // With XX a missing key stays missing.
    let done = write_zset(
        ctx,
        &args[1],
        !f.xx,
        |z, _| {
            let (mut added, mut updated, mut last) = (0, 0, None);
            for (p, &score) in pairs.chunks_exact(2).zip(&scores) {
                let (what, new) = add_one(z, &p[1], score, f)?;
                match what {
                    Added::New => added += 1,
                    Added::Updated => updated += 1,
                    Added::Same => {}
                    Added::Nop => continue,
                }
                last = Some(new);
            }
            Ok((added, updated, last))
        },
        |&(added, updated, _)| added + updated > 0,
    )?;
    let (added, updated, last) = done.unwrap_or((0, 0, None));
    if f.incr {
        match last {
            Some(s) => reply_score(ctx.out, s),
            None => ctx.out.null(),
        }
    } else {
        ctx.out.int(if ch { added + updated } else { added });
    }
    Ok(())
}

fn zadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zadd_generic(ctx, args, AddFlags::default())
}

fn zincrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zadd_generic(
        ctx,
        args,
        AddFlags {
            incr: true,
            ..AddFlags::default()
        },
    )
}

fn zrem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let members = &args[2..];
    let removed = write_zset(
        ctx,
        &args[1],
        false,
        |z, _| Ok(members.iter().filter(|m| z.remove(m).is_some()).count()),
        |&n| n > 0,
    )?;
    ctx.out.int(removed.unwrap_or(0) as i64);
    Ok(())
}

// --- single-key reads ---------------------------------------------------------------

fn zscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let member = &args[2];
    read_zset(ctx, &args[1], |z, out| match z.and_then(|z| z.score(member)) {
        Some(s) => reply_score(out, s),
        None => out.null(),
    })
}

fn zmscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let members = &args[2..];
    read_zset(ctx, &args[1], |z, out| {
        out.array(members.len());
        for m in members {
            match z.and_then(|z| z.score(m)) {
                Some(s) => reply_score(out, s),
                None => out.null(),
            }
        }
    })
}

fn zcard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    read_zset(ctx, &args[1], |z, out| out.int(z.map_or(0, ZSet::len) as i64))
}

fn zcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let range = score_range(&args[2], &args[3])?;
    read_zset(ctx, &args[1], |z, out| {
        let (lo, hi) = z.map_or((0, 0), |z| z.score_span(&range));
        out.int((hi - lo) as i64)
    })
}

fn zlexcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let range = lex_range(&args[2], &args[3])?;
    read_zset(ctx, &args[1], |z, out| {
        let (lo, hi) = z.map_or((0, 0), |z| z.lex_span(&range, false));
        out.int((hi - lo) as i64)
    })
}

fn rank_generic(ctx: &mut Ctx<'_>, args: &[Bytes], reverse: bool) -> CmdResult {
    let member = &args[2];
    read_zset(ctx, &args[1], |z, out| {
        let rank = z.and_then(|z| z.rank(member).map(|r| if reverse { z.len() - 1 - r } else { r }));
        match rank {
            Some(r) => out.int(r as i64),
            None => out.null(),
        }
    })
}

fn zrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    rank_generic(ctx, args, false)
}

fn zrevrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    rank_generic(ctx, args, true)
}

// --- the ZRANGE family --------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum RangeBy {
    Auto,
    Rank,
    Score,
    Lex,
}

/// A parsed range request.
enum Range {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange),
}

struct RangeRequest {
    range: Range,
    reverse: bool,
    withscores: bool,
    offset: i64,
    /// -1: no limit.
    limit: i64,
}

/// Parses `<min> <max> [options]` at `args[at..]` as Redis' `zrangeGenericCommand`
/// does; `store` is ZRANGESTORE (no WITHSCORES).
fn parse_range(
    args: &[Bytes],
    at: usize,
    store: bool,
    mut by: RangeBy,
    reverse: Option<bool>,
) -> Result<RangeRequest, CmdError> {
    let mut withscores = false;
    let (mut offset, mut limit) = (0, -1);
    let mut direction = reverse;
    let mut j = at + 2;
    while j < args.len() {
        let a = &args[j];
        let left = args.len() - j - 1;
        if !store && is(a, "withscores") {
            withscores = true;
        } else if is(a, "limit") && left >= 2 {
            offset = int(&args[j + 1])?;
            limit = int(&args[j + 2])?;
            j += 2;
        } else if direction.is_none() && is(a, "rev") {
            direction = Some(true);
        } else if by == RangeBy::Auto && is(a, "bylex") {
            by = RangeBy::Lex;
        } else if by == RangeBy::Auto && is(a, "byscore") {
            by = RangeBy::Score;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    let reverse = direction.unwrap_or(false);
    if by == RangeBy::Auto {
        by = RangeBy::Rank;
    }
    if limit != -1 && by == RangeBy::Rank {
        return Err(other(
            "syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if withscores && by == RangeBy::Lex {
        return Err(other(
            "syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    let (mut min, mut max) = (&args[at], &args[at + 1]);
    if reverse && by != RangeBy::Rank {
        std::mem::swap(&mut min, &mut max);
    }
    let range = match by {
        RangeBy::Score => Range::Score(score_range(min, max)?),
        RangeBy::Lex => Range::Lex(lex_range(min, max)?),
        _ => Range::Rank(int(min)?, int(max)?),
    };
    Ok(RangeRequest {
        range,
        reverse,
        withscores: withscores || store,
        offset,
        limit,
    })
}

/// The entries a range request selects, as a window over ranks: forward, ranks
/// `from..from + count`; reverse, ranks `from - 1` down to `from - count`.
struct Window {
    from: usize,
    count: usize,
    reverse: bool,
}

impl Window {
    fn select(z: &ZSet, req: &RangeRequest) -> Window {
        let reverse = req.reverse;
        let (lo, hi, offset, limit) = match &req.range {
            Range::Rank(start, end) => {
                let (lo, hi) = if reverse {
                    // Ranks counted from the end.
                    let (a, b) = rank_span(*start, *end, z.len());
                    (z.len() - b, z.len() - a)
                } else {
                    rank_span(*start, *end, z.len())
                };
                (lo, hi, 0, -1)
            }
            Range::Score(r) => {
                let (lo, hi) = z.score_span(r);
                (lo, hi, req.offset, req.limit)
            }
            Range::Lex(r) => return Window::lex(z, r, req),
        };
        // A negative offset skips everything; a negative limit takes everything.
        let span = hi - lo;
        let count = match usize::try_from(offset) {
            Ok(off) if off < span => {
                let rest = span - off;
                usize::try_from(limit).map_or(rest, |l| l.min(rest))
            }
            _ => 0,
        };
        let skip = usize::try_from(offset).unwrap_or(0).min(span);
        let from = if reverse { hi - skip } else { lo + skip };
        Window { from, count, reverse }
    }

    /// A lex window the way Redis walks it: from the first member in range, skip
    /// `offset` members unchecked, then take members while they stay in range. (With
    /// equal scores this is the span cut by offset and limit; with differing scores,
    /// which Redis leaves undefined, it is also what Redis answers.)
    fn lex(z: &ZSet, r: &LexRange, req: &RangeRequest) -> Window {
        let (lo, hi) = z.lex_span(r, req.reverse);
        let empty = Window {
            from: 0,
            count: 0,
            reverse: req.reverse,
        };
        let Ok(offset) = usize::try_from(req.offset) else {
            return empty;
        };
        if lo == hi {
            return empty;
        }
        let limit = usize::try_from(req.limit).unwrap_or(usize::MAX);
        if req.reverse {
            let from = hi.saturating_sub(offset);
            if offset >= hi {
                return empty;
            }
            let count = z.iter_rev(from).take(limit).take_while(|(m, _)| r.gte_min(m)).count();
            Window {
                from,
                count,
                reverse: true,
            }
        } else {
            let from = lo.saturating_add(offset);
            let count = z.iter(from).take(limit).take_while(|(m, _)| r.lte_max(m)).count();
            Window {
                from,
                count,
                reverse: false,
            }
        }
    }

    fn entries<'z>(&self, z: &'z ZSet) -> Box<dyn ExactSizeIterator<Item = (&'z [u8], f64)> + 'z> {
        if self.reverse {
            Box::new(Exact(z.iter_rev(self.from).take(self.count), self.count))
        } else {
            Box::new(Exact(z.iter(self.from).take(self.count), self.count))
        }
    }
}

/// An iterator with a known length.
struct Exact<I>(I, usize);

impl<I: Iterator> Iterator for Exact<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let v = self.0.next()?;
        self.1 = self.1.saturating_sub(1);
        Some(v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.1, Some(self.1))
    }
}

impl<I: Iterator> ExactSizeIterator for Exact<I> {}

fn range_generic(ctx: &mut Ctx<'_>, args: &[Bytes], by: RangeBy, reverse: Option<bool>) -> CmdResult {
    let req = parse_range(args, 2, false, by, reverse)?;
    read_zset(ctx, &args[1], |z, out| match z {
        None => out.array(0),
        Some(z) => reply_all(out, Window::select(z, &req).entries(z), req.withscores),
    })
}

fn zrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    range_generic(ctx, args, RangeBy::Auto, None)
}

fn zrevrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    range_generic(ctx, args, RangeBy::Rank, Some(true))
}

fn zrangebyscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    range_generic(ctx, args, RangeBy::Score, Some(false))
}

fn zrevrangebyscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    range_generic(ctx, args, RangeBy::Score, Some(true))
}

fn zrangebylex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    range_generic(ctx, args, RangeBy::Lex, Some(false))
}

fn zrevrangebylex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    range_generic(ctx, args, RangeBy::Lex, Some(true))
}

/// ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count].
fn zrangestore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let req = parse_range(args, 3, true, RangeBy::Auto, None)?;
    let (dst, src) = (&args[1], &args[2]);
    let now = ctx.now;
    let slots = [ctx.slot_of(dst), ctx.slot_of(src)];
    let mut locked = ctx.store.lock_many(&slots);
    let picked = {
        let Some(mut slot) = locked.slot(slots[1]) else {
            return Err(CmdError::NoSuchKey);
        };
        match slot.read(src, now) {
            None => ZSet::default(),
            Some(e) => {
                let z = zset_ref(e)?;
                let mut picked = ZSet::default();
                for (m, s) in Window::select(z, &req).entries(z) {
                    picked.insert(m, s);
                }
                picked
            }
        }
    };
    let Some(mut slot) = locked.slot(slots[0]) else {
        return Err(CmdError::NoSuchKey);
    };
    let n = put_result(&mut slot, dst, picked, now);
    ctx.out.int(n as i64);
    Ok(())
}

// --- ZREMRANGEBY* -------------------------------------------------------------------

fn remove_range(ctx: &mut Ctx<'_>, key: &[u8], span: impl FnOnce(&ZSet) -> (usize, usize)) -> CmdResult {
    let removed = write_zset(
        ctx,
        key,
        false,
        |z, _| {
            let (lo, hi) = span(z);
            Ok(z.remove_ranks(lo, hi))
        },
        |&n| n > 0,
    )?;
    ctx.out.int(removed.unwrap_or(0) as i64);
    Ok(())
}

fn zremrangebyrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (start, end) = (int(&args[2])?, int(&args[3])?);
    remove_range(ctx, &args[1], |z| rank_span(start, end, z.len()))
}

fn zremrangebyscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let range = score_range(&args[2], &args[3])?;
    remove_range(ctx, &args[1], |z| z.score_span(&range))
}

fn zremrangebylex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let range = lex_range(&args[2], &args[3])?;
    remove_range(ctx, &args[1], |z| z.lex_span(&range, false))
}

// --- ZPOPMIN ZPOPMAX ZMPOP and the blocking BZPOPMIN BZPOPMAX BZMPOP ----------------

/// Pops up to `count` entries from the low (`max` false) or high end of `z`, replying
/// each as an entry with its score (pairs when `nested`).
fn pop_entries(z: &mut ZSet, count: usize, max: bool, nested: bool, out: &mut Out) {
    let n = count.min(z.len());
    let (lo, hi) = if max { (z.len() - n, z.len()) } else { (0, n) };
    let popped: Box<dyn Iterator<Item = (&[u8], f64)>> = if max {
        Box::new(z.iter_rev(hi).take(n))
    } else {
        Box::new(z.iter(lo).take(n))
    };
    for (m, s) in popped {
        if nested {
            out.array(2);
        }
        out.bulk(m);
        reply_score(out, s);
    }
    z.remove_ranks(lo, hi);
}

fn pop_generic(ctx: &mut Ctx<'_>, args: &[Bytes], max: bool) -> CmdResult {
    if args.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let count = match args.get(2) {
        Some(c) => Some(ranged(c, 0, i64::MAX, "value is out of range, must be positive")?),
        None => None,
    };
    let nested = ctx.out.resp3 && count.is_some();
    let done = write_zset(
        ctx,
        &args[1],
        false,
        |z, out| {
            let n = count
                .map_or(1, |c| usize::try_from(c).unwrap_or(usize::MAX))
                .min(z.len());
            if n == 0 {
                out.array(0);
                return Ok(0);
            }
            out.array(if nested { n } else { 2 * n });
            pop_entries(z, n, max, nested, out);
            Ok(n)
        },
        |&n| n > 0,
    )?;
    if done.is_none() {
        ctx.out.array(0);
    }
    Ok(())
}

fn zpopmin(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    pop_generic(ctx, args, false)
}

fn zpopmax(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    pop_generic(ctx, args, true)
}

/// The parsed arguments of ZMPOP/BZMPOP: the keys, which end, the count.
struct Mpop<'a> {
    keys: &'a [Bytes],
    max: bool,
    count: usize,
}

/// Parses `numkeys key… MIN|MAX [COUNT count]` starting at `args[at]`, with Redis'
/// checks in Redis' order.
fn parse_mpop(args: &[Bytes], at: usize) -> Result<Mpop<'_>, CmdError> {
    let numkeys = ranged(&args[at], 1, i64::MAX, "numkeys should be greater than 0")?;
    let first = at + 1;
    let where_at = usize::try_from(numkeys).ok().and_then(|n| n.checked_add(first));
    let Some(where_at) = where_at.filter(|&w| w < args.len()) else {
        return Err(CmdError::Syntax);
    };
    let max = if is(&args[where_at], "min") {
        false
    } else if is(&args[where_at], "max") {
        true
    } else {
        return Err(CmdError::Syntax);
    };
    let mut count = None;
    let mut j = where_at + 1;
    while j < args.len() {
        if count.is_none() && is(&args[j], "count") && j + 1 < args.len() {
            count = Some(ranged(&args[j + 1], 1, i64::MAX, "count should be greater than 0")?);
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    Ok(Mpop {
        keys: &args[first..where_at],
        max,
        count: usize::try_from(count.unwrap_or(1)).unwrap_or(usize::MAX),
    })
}

/// Pops from the first sorted set of `keys`, under all their locks, and replies
/// `[key, member, score]` (`count` None: BZPOPMIN/BZPOPMAX) or
/// `[key, [[member, score]…]]` (ZMPOP/BZMPOP); false (nothing written or answered)
/// when every key is missing. A key of another type met first is WRONGTYPE, except for
/// a blocked command running again after a wake-up: Redis serves such a client only
/// from a sorted set, so the key counts as empty.
fn pop_first(ctx: &mut Ctx<'_>, keys: &[Bytes], max: bool, count: Option<usize>) -> Result<bool, CmdError> {
    let (now, woken) = (ctx.now, ctx.client.blocked);
    let slots: Vec<Slot> = keys.iter().map(|k| ctx.slot_of(k)).collect();
    let mut locked = ctx.store.lock_many(&slots);
    let out = &mut *ctx.out;
    for (key, &s) in keys.iter().zip(&slots) {
        let Some(mut slot) = locked.slot(s) else { continue };
        match slot.get(key, now).map(|e| zset_ref(e).is_ok()) {
            None => continue,
            Some(false) if woken => continue,
            Some(false) => return Err(CmdError::WrongType),
            Some(true) => {}
        }
        let emptied = slot.modify(key, now, |e| {
            let Ok(z) = zset_mut(e) else { return false };
            out.array(if count.is_some() { 2 } else { 3 });
            out.bulk(key);
            match count {
                Some(n) => {
                    out.array(n.min(z.len()));
                    pop_entries(z, n, max, true, out);
                }
                None => pop_entries(z, 1, max, false, out),
            }
            z.is_empty()
        });
        if emptied == Some(true) {
            slot.remove(key, now);
        }
        return Ok(true);
    }
    Ok(false)
}

/// ZMPOP numkeys key [key …] MIN|MAX [COUNT count].
fn zmpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let mpop = parse_mpop(args, 1)?;
    if !pop_first(ctx, mpop.keys, mpop.max, Some(mpop.count))? {
        ctx.out.null_array();
    }
    Ok(())
}

/// BZPOPMIN/BZPOPMAX key [key …] timeout: the timeout is read first, as in Redis.
fn blocking_pop(ctx: &mut Ctx<'_>, args: &[Bytes], max: bool) -> CmdResult {
    let Some((timeout, keys)) = args[1..].split_last() else {
        return Err(CmdError::Syntax);
    };
    let timeout = blocking_timeout(timeout)?;
    if !pop_first(ctx, keys, max, None)? {
        ctx.block(keys, timeout);
    }
    Ok(())
}

fn bzpopmin(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    blocking_pop(ctx, args, false)
}

fn bzpopmax(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    blocking_pop(ctx, args, true)
}

/// BZMPOP timeout numkeys key [key …] MIN|MAX [COUNT count]: the other arguments are
/// checked before the timeout, as in Redis.
fn bzmpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let mpop = parse_mpop(args, 2)?;
    let timeout = blocking_timeout(&args[1])?;
    if !pop_first(ctx, mpop.keys, mpop.max, Some(mpop.count))? {
        ctx.block(mpop.keys, timeout);
    }
    Ok(())
}

// --- ZUNION ZINTER ZDIFF and their STORE forms, ZINTERCARD --------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

fn aggregate(target: &mut f64, v: f64, how: Aggregate) {
    match how {
        Aggregate::Sum => {
            *target += v;
            // inf + -inf: Redis keeps 0.
            if target.is_nan() {
                *target = 0.0;
            }
        }
        Aggregate::Min => {
            if v < *target {
                *target = v;
            }
        }
        Aggregate::Max => {
            if v > *target {
                *target = v;
            }
        }
    }
}

/// What to do with the result of a set operation.
enum Consumer<'a> {
    Reply { withscores: bool },
    Store(&'a [u8]),
    Card,
}

/// Redis' `zunionInterDiffGenericCommand`: `numkeys` at `args[at]`, then the keys,
/// then the options; `dst` for the STORE forms, `card` for ZINTERCARD.
fn set_op(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    at: usize,
    op: SetOp,
    dst: Option<&[u8]>,
    card: bool,
    name: &str,
) -> CmdResult {
    let setnum = int(&args[at])?;
    if setnum < 1 {
        return Err(other(&format!("at least 1 input key is needed for '{name}' command")));
    }
    let first = at + 1;
    let setnum = match usize::try_from(setnum) {
        Ok(n) if n <= args.len() - first => n,
        _ => return Err(CmdError::Syntax),
    };
    let keys = &args[first..first + setnum];
    let now = ctx.now;
    let mut slots: Vec<Slot> = keys.iter().map(|k| ctx.slot_of(k)).collect();
    if let Some(d) = dst {
        slots.push(ctx.slot_of(d));
    }
    let mut locked = ctx.store.lock_many(&slots);
    // Sizes (and the type check) before the options, as Redis looks the keys up first.
    let mut sizes = Vec::with_capacity(setnum);
    for (key, &s) in keys.iter().zip(&slots) {
        let Some(mut slot) = locked.slot(s) else {
            return Err(CmdError::NoSuchKey);
        };
        sizes.push(match slot.read(key, now) {
            None => 0,
            Some(e) => match e.as_object() {
                // Plain sets take part with every member scored 1, as in Redis.
                Some(Object::Set(set)) => set.len(),
                _ => zset_ref(e)?.len(),
            },
        });
    }
    let mut weights = vec![1.0; setnum];
    let mut how = Aggregate::Sum;
    let mut withscores = false;
    let mut limit = 0usize;
    let mut j = first + setnum;
    while j < args.len() {
        let remaining = args.len() - j;
        let a = &args[j];
        if op != SetOp::Diff && !card && remaining > setnum && is(a, "weights") {
            for (w, arg) in weights.iter_mut().zip(&args[j + 1..]) {
                *w = zset::parse_score(arg).ok_or_else(|| other("weight value is not a float"))?;
            }
            j += 1 + setnum;
        } else if op != SetOp::Diff && !card && remaining >= 2 && is(a, "aggregate") {
            let v = &args[j + 1];
            how = if is(v, "sum") {
                Aggregate::Sum
            } else if is(v, "min") {
                Aggregate::Min
            } else if is(v, "max") {
                Aggregate::Max
            } else {
                return Err(CmdError::Syntax);
            };
            j += 2;
        } else if dst.is_none() && !card && is(a, "withscores") {
            withscores = true;
            j += 1;
        } else if card && remaining >= 2 && is(a, "limit") {
            let l = ranged(&args[j + 1], 0, i64::MAX, "LIMIT can't be negative")?;
            limit = usize::try_from(l).unwrap_or(usize::MAX);
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    // Reads each input in turn (the shard locks stay held) and calls `f` with it.
    let mut with_input = |i: usize, f: &mut dyn FnMut(&ZSet)| -> Result<(), CmdError> {
        let Some(mut slot) = locked.slot(slots[i]) else {
            return Err(CmdError::NoSuchKey);
        };
        if let Some(e) = slot.get(&keys[i], now) {
            match e.as_object() {
                Some(Object::Set(set)) => {
                    let mut scored = ZSet::default();
                    for m in set.iter() {
                        scored.insert(&m, 1.0);
                    }
                    f(&scored);
                }
                _ => f(zset_ref(e)?),
            }
        }
        Ok(())
    };
    let weighted = |w: f64, s: f64| {
        let v = w * s;
        if v.is_nan() {
            0.0
        } else {
            v
        }
    };
    let mut result: Vec<(Vec<u8>, f64)> = Vec::new();
    let mut cardinality = 0usize;
    match op {
        SetOp::Inter => {
            // Smallest input first (a stable sort, as glibc's qsort is here).
            let mut order: Vec<usize> = (0..setnum).collect();
            order.sort_by_key(|&i| sizes[i]);
            if sizes[order[0]] > 0 {
                let w0 = weights[order[0]];
                with_input(order[0], &mut |z| {
                    result = z.iter(0).map(|(m, s)| (m.to_vec(), weighted(w0, s))).collect();
                })?;
                for &i in &order[1..] {
                    let w = weights[i];
                    with_input(i, &mut |z| {
                        result.retain_mut(|(m, score)| match z.score(m) {
                            Some(s) => {
                                aggregate(score, w * s, how);
                                true
                            }
                            None => false,
                        });
                    })?;
                }
            }
            if card {
                cardinality = if limit > 0 {
                    result.len().min(limit)
                } else {
                    result.len()
                };
            }
        }
        SetOp::Union => {
            let mut order: Vec<usize> = (0..setnum).collect();
            order.sort_by_key(|&i| sizes[i]);
            let mut acc: hashbrown::HashMap<Vec<u8>, f64> = hashbrown::HashMap::new();
            for &i in &order {
                let w = weights[i];
                with_input(i, &mut |z| {
                    for (m, s) in z.iter(0) {
                        let v = weighted(w, s);
                        match acc.get_mut(m) {
                            Some(t) => aggregate(t, v, how),
                            None => {
                                acc.insert(m.to_vec(), v);
                            }
                        }
                    }
                })?;
            }
            result = acc.into_iter().collect();
        }
        SetOp::Diff => {
            with_input(0, &mut |z| {
                result = z.iter(0).map(|(m, s)| (m.to_vec(), s)).collect();
            })?;
            for i in 1..setnum {
                if result.is_empty() {
                    break;
                }
                with_input(i, &mut |z| result.retain(|(m, _)| !z.contains(m)))?;
            }
        }
    }
    let consumer = match (dst, card) {
        (Some(d), _) => Consumer::Store(d),
        (None, true) => Consumer::Card,
        (None, false) => Consumer::Reply { withscores },
    };
    match consumer {
        Consumer::Card => ctx.out.int(cardinality as i64),
        Consumer::Store(d) => {
            let mut z = ZSet::default();
            for (m, s) in &result {
                z.insert(m, *s);
            }
            let Some(mut slot) = locked.slot(ctx.slot_of(d)) else {
                return Err(CmdError::NoSuchKey);
            };
            let n = put_result(&mut slot, d, z, now);
            ctx.out.int(n as i64);
        }
        Consumer::Reply { withscores } => {
            // A -0 from the weights stays -0 here, as in Redis' (skiplist) result.
            result.sort_by(|a, b| {
                a.1.partial_cmp(&b.1)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then_with(|| a.0.cmp(&b.0))
            });
            reply_all(ctx.out, result.iter().map(|(m, s)| (&m[..], *s)), withscores);
        }
    }
    Ok(())
}

fn zunion(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    set_op(ctx, args, 1, SetOp::Union, None, false, "zunion")
}

fn zinter(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    set_op(ctx, args, 1, SetOp::Inter, None, false, "zinter")
}

fn zdiff(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    set_op(ctx, args, 1, SetOp::Diff, None, false, "zdiff")
}

fn zintercard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    set_op(ctx, args, 1, SetOp::Inter, None, true, "zintercard")
}

fn zunionstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    set_op(ctx, args, 2, SetOp::Union, Some(&args[1]), false, "zunionstore")
}

fn zinterstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    set_op(ctx, args, 2, SetOp::Inter, Some(&args[1]), false, "zinterstore")
}

fn zdiffstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    set_op(ctx, args, 2, SetOp::Diff, Some(&args[1]), false, "zdiffstore")
}

// --- ZSCAN ZRANDMEMBER --------------------------------------------------------------

/// A cursor as Redis' `parseScanCursorOrReply` takes it (C `strtoul`): no leading
/// space, an optional sign, digits that fit in 64 bits; "" counts as 0.
fn cursor_is_valid(c: &[u8]) -> bool {
    let digits = match c.first() {
        None => return true,
        Some(b'+' | b'-') => &c[1..],
        Some(_) => c,
    };
    !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && std::str::from_utf8(digits).is_ok_and(|d| d.parse::<u64>().is_ok())
}

/// ZSCAN key cursor [MATCH pattern] [COUNT count]. Every matching member is returned
/// in one reply with cursor 0, which ends the iteration.
fn zscan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if !cursor_is_valid(&args[2]) {
        return Err(other("invalid cursor"));
    }
    // Redis validates the options only once it found a sorted set at the key.
    let mut pattern: Result<Option<&[u8]>, CmdError> = Ok(None);
    let rest = &args[3..];
    let mut i = 0;
    while i < rest.len() {
        let next = rest.get(i + 1);
        match next {
            Some(n) if is(&rest[i], "count") => {
                match parse_i64(n) {
                    None => pattern = Err(CmdError::NotInteger),
                    Some(c) if c < 1 => pattern = Err(CmdError::Syntax),
                    Some(_) => {}
                }
                i += 2;
            }
            Some(n) if is(&rest[i], "match") => {
                if let Ok(p) = &mut pattern {
                    *p = if &n[..] == b"*" { None } else { Some(&n[..]) };
                }
                i += 2;
            }
            _ => {
                pattern = Err(CmdError::Syntax);
                break;
            }
        }
        if pattern.is_err() {
            break;
        }
    }
    read_zset(ctx, &args[1], |z, out| -> CmdResult {
        let Some(z) = z else {
            out.array(2);
            out.bulk(b"0");
            out.array(0);
            return Ok(());
        };
        let pattern = pattern?;
        let selected: Vec<(&[u8], f64)> = z
            .iter(0)
            .filter(|(m, _)| pattern.is_none_or(|p| glob::matches(p, m)))
            .collect();
        out.array(2);
        out.bulk(b"0");
        out.array(2 * selected.len());
        for (m, s) in selected {
            out.bulk(m);
            out.bulk(zset::format_score(s).as_bytes());
        }
        Ok(())
    })?
}

/// ZRANDMEMBER key [count [WITHSCORES]].
fn zrandmember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if args.len() == 2 {
        return read_zset(ctx, &args[1], |z, out| match z.filter(|z| !z.is_empty()) {
            Some(z) => match z.at(rand::thread_rng().gen_range(0..z.len())) {
                Some((m, _)) => out.bulk(m),
                None => out.null(),
            },
            None => out.null(),
        });
    }
    let l = int(&args[2])?;
    if l == i64::MIN {
        return Err(other(&format!(
            "value is out of range, value must between {} and {}",
            -i64::MAX,
            i64::MAX
        )));
    }
    if args.len() > 4 || (args.len() == 4 && !is(&args[3], "withscores")) {
        return Err(CmdError::Syntax);
    }
    let withscores = args.len() == 4;
    if withscores && !(-i64::MAX / 2..=i64::MAX / 2).contains(&l) {
        return Err(other("value is out of range"));
    }
    let (count, unique) = (l.unsigned_abs(), l >= 0);
    if !unique && count > ZRANDMEMBER_MAX_REPEATED {
        return Err(other("value is out of range"));
    }
    read_zset(ctx, &args[1], |z, out| {
        let Some(z) = z.filter(|z| !z.is_empty() && count > 0) else {
            out.array(0);
            return;
        };
        let mut rng = rand::thread_rng();
        let len = z.len();
        if unique && count >= len as u64 {
            // The whole set, highest first: Redis walks it from the end.
            reply_all(out, Exact(z.iter_rev(len), len), withscores);
            return;
        }
        let picks: Vec<usize> = if unique {
            // count < len, so it fits in usize.
            rand::seq::index::sample(&mut rng, len, count as usize).into_vec()
        } else {
            (0..count).map(|_| rng.gen_range(0..len)).collect()
        };
        reply_all(
            out,
            Exact(picks.iter().filter_map(|&i| z.at(i)), picks.len()),
            withscores,
        );
    })
}
