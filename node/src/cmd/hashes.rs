//! Hash commands: HSET HSETNX HGET HMGET HMSET HGETALL HDEL HEXISTS HINCRBY
//! HINCRBYFLOAT HLEN HKEYS HVALS HSTRLEN HSCAN HRANDFIELD.
//!
//! A hash key exists only while it has fields: writes create it on demand, and removing
//! its last field deletes the key.

use bytes::Bytes;
use rand::Rng;

use super::args::{int, is, parse_i64};
use super::collection;
use super::flag::*;
use super::float::{self, AddError, Parsed};
use super::{CmdError, CmdResult, CommandSpec, Ctx};
use crate::resp::Out;
use crate::store::{Entry, Hash, HashLimits, Object};
use crate::util::glob;

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "hset",
        arity: -4,
        flags: WRITE | DENYOOM | FAST | REPLAY,
        keys: (1, 1, 1),
        group: "hash",
        summary: "Creates or modifies the value of a field in a hash.",
        handler: hset,
    },
    CommandSpec {
        name: "hsetnx",
        arity: 4,
        flags: WRITE | DENYOOM | FAST | REPLAY,
        keys: (1, 1, 1),
        group: "hash",
        summary: "Sets the value of a field in a hash only when the field doesn't exist.",
        handler: hsetnx,
    },
    CommandSpec {
        name: "hmset",
        arity: -4,
        flags: WRITE | DENYOOM | FAST | REPLAY,
        keys: (1, 1, 1),
        group: "hash",
        summary: "Sets the values of multiple fields.",
        handler: hmset,
    },
    CommandSpec {
        name: "hget",
        arity: 3,
        flags: READONLY | FAST,
        keys: (1, 1, 1),
        group: "hash",
        summary: "Returns the value of a field in a hash.",
        handler: hget,
    },
    CommandSpec {
        name: "hmget",
        arity: -3,
        flags: READONLY | FAST,
        keys: (1, 1, 1),
        group: "hash",
        summary: "Returns the values of all fields in a hash.",
        handler: hmget,
    },
    CommandSpec {
        name: "hgetall",
        arity: 2,
        flags: READONLY,
        keys: (1, 1, 1),
        group: "hash",
        summary: "Returns all fields and values in a hash.",
        handler: hgetall,
    },
    CommandSpec {
        name: "hdel",
        arity: -3,
        flags: WRITE | FAST | REPLAY,
        keys: (1, 1, 1),
        group: "hash",
        summary: "Deletes one or more fields and their values from a hash. Deletes the hash if no fields remain.",
        handler: hdel,
    },
    CommandSpec {
        name: "hexists",
        arity: 3,
        flags: READONLY | FAST,
        keys: (1, 1, 1),
        group: "hash",
        summary: "Determines whether a field exists in a hash.",
        handler: hexists,
    },
    CommandSpec {
        name: "hincrby",
        arity: 4,
        flags: WRITE | DENYOOM | FAST | REPLAY,
        keys: (1, 1, 1),
        group: "hash",
        summary: "Increments the integer value of a field in a hash by a number. Uses 0 as initial value if the field doesn't exist.",
        handler: hincrby,
    },
    CommandSpec {
        name: "hincrbyfloat",
        arity: 4,
        flags: WRITE | DENYOOM | FAST | REPLAY,
        keys: (1, 1, 1),
        group: "hash",
        summary: "Increments the floating point value of a field by a number. Uses 0 as initial value if the field doesn't exist.",
        handler: hincrbyfloat,
    },
    CommandSpec {
        name: "hlen",
        arity: 2,
        flags: READONLY | FAST,
        keys: (1, 1, 1),
        group: "hash",
        summary: "Returns the number of fields in a hash.",
        handler: hlen,
    },
    CommandSpec {
        name: "hkeys",
        arity: 2,
        flags: READONLY,
        keys: (1, 1, 1),
        group: "hash",
        summary: "Returns all fields in a hash.",
        handler: hkeys,
    },
    CommandSpec {
        name: "hvals",
        arity: 2,
        flags: READONLY,
        keys: (1, 1, 1),
        group: "hash",
        summary: "Returns all values in a hash.",
        handler: hvals,
    },
    CommandSpec {
        name: "hstrlen",
        arity: 3,
        flags: READONLY | FAST,
        keys: (1, 1, 1),
        group: "hash",
        summary: "Returns the length of the value of a field.",
        handler: hstrlen,
    },
    CommandSpec {
        name: "hscan",
        arity: -3,
        flags: READONLY,
        keys: (1, 1, 1),
        group: "hash",
        summary: "Iterates over fields and values of a hash.",
        handler: hscan,
    },
    CommandSpec {
        name: "hrandfield",
        arity: -2,
        flags: READONLY,
        keys: (1, 1, 1),
        group: "hash",
        summary: "Returns one or more random fields from a hash.",
        handler: hrandfield,
    },
];

/// Largest number of (possibly repeated) fields a negative HRANDFIELD count may ask
/// for. Redis has no such limit; here it bounds the time the shard lock is held and
/// the size of one reply.
pub const HRANDFIELD_MAX_REPEATED: u64 = 1 << 20;

fn hash_ref(e: &Entry) -> Result<&Hash, CmdError> {
    match e.as_object() {
        Some(Object::Hash(h)) => Ok(h),
        _ => Err(CmdError::WrongType),
    }
}

/// Runs `f` on the hash at `key` for a read command (counting a keyspace hit or miss):
/// `None` when the key does not exist, WRONGTYPE for other types.
fn read_hash<R>(ctx: &mut Ctx<'_>, key: &[u8], f: impl FnOnce(Option<&Hash>, &mut Out) -> R) -> Result<R, CmdError> {
    let store = ctx.store;
    let mut locked = store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    match slot.read(key, ctx.now) {
        None => Ok(f(None, ctx.out)),
        Some(e) => Ok(f(Some(hash_ref(e)?), ctx.out)),
    }
}

/// Runs `f` on the hash at `key` for a write command, keeping memory accounting exact.
/// A missing key is created (when `create`) with an empty hash that is stored only if
/// `f` leaves fields in it; a hash that `f` empties is deleted. `f` must not change
/// the hash when it fails. Returns `None` when the key is missing and not created.
fn write_hash<R>(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    create: bool,
    f: impl FnOnce(&mut Hash) -> Result<R, CmdError>,
) -> Result<Option<R>, CmdError> {
    let now = ctx.now;
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    collection::update(&mut locked.slot(), key, now, create, f)
}

/// [`write_hash`] for a write that may change nothing (`changed` tells from the result).
fn write_hash_if<R>(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    f: impl FnOnce(&mut Hash) -> Result<R, CmdError>,
    changed: impl FnOnce(&R) -> bool,
) -> Result<Option<R>, CmdError> {
    let now = ctx.now;
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    collection::update_if(&mut locked.slot(), key, now, false, f, changed)
}

/// When a hash stays packed: Redis' `hash-max-listpack-entries` and
/// `hash-max-listpack-value` (CONFIG SET changes them; hashes convert on their next
/// write, and only towards the table form).
fn limits(ctx: &Ctx<'_>) -> HashLimits {
    let get = |name| usize::try_from(ctx.store.encodings.by_name(name)).unwrap_or(0);
    HashLimits {
        entries: get("hash-max-listpack-entries"),
        value: get("hash-max-listpack-value"),
    }
}

/// Field/value pairs of HSET and HMSET; an odd count is an arity error.
fn set_fields(ctx: &mut Ctx<'_>, args: &[Bytes], name: &str) -> Result<i64, CmdError> {
    let pairs = &args[2..];
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return Err(CmdError::WrongArity(name.to_string()));
    }
    let limits = limits(ctx);
    let added = write_hash(ctx, &args[1], true, |h| {
        let mut added = 0;
        for fv in pairs.chunks_exact(2) {
            if h.insert_within(&fv[0], &fv[1], limits) {
                added += 1;
            }
        }
        Ok(added)
    })?;
    Ok(added.unwrap_or(0))
}

fn hset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let added = set_fields(ctx, args, "hset")?;
    ctx.out.int(added);
    Ok(())
}

fn hmset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    set_fields(ctx, args, "hmset")?;
    ctx.out.ok();
    Ok(())
}

fn hsetnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (field, value) = (&args[2], &args[3]);
    let limits = limits(ctx);
    let set = write_hash(ctx, &args[1], true, |h| {
        Ok(!h.contains(field) && h.insert_within(field, value, limits))
    })?;
    ctx.out.int(i64::from(set.unwrap_or(false)));
    Ok(())
}

fn hget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let field = &args[2];
    read_hash(ctx, &args[1], |h, out| match h.and_then(|h| h.get(field)) {
        Some(v) => out.bulk(v),
        None => out.null(),
    })
}

fn hmget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let fields = &args[2..];
    read_hash(ctx, &args[1], |h, out| {
        out.array(fields.len());
        for f in fields {
            match h.and_then(|h| h.get(f)) {
                Some(v) => out.bulk(v),
                None => out.null(),
            }
        }
    })
}

fn hgetall(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    read_hash(ctx, &args[1], |h, out| match h {
        None => out.map(0),
        Some(h) => {
            out.map(h.len());
            for (f, v) in h.iter() {
                out.bulk(f);
                out.bulk(v);
            }
        }
    })
}

fn hkeys(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    read_hash(ctx, &args[1], |h, out| {
        out.array(h.map_or(0, Hash::len));
        for (f, _) in h.into_iter().flat_map(Hash::iter) {
            out.bulk(f);
        }
    })
}

fn hvals(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    read_hash(ctx, &args[1], |h, out| {
        out.array(h.map_or(0, Hash::len));
        for (_, v) in h.into_iter().flat_map(Hash::iter) {
            out.bulk(v);
        }
    })
}

fn hlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    read_hash(ctx, &args[1], |h, out| out.int(h.map_or(0, Hash::len) as i64))
}

fn hexists(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let field = &args[2];
    read_hash(ctx, &args[1], |h, out| {
        out.int(i64::from(h.is_some_and(|h| h.contains(field))))
    })
}

fn hstrlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let field = &args[2];
    read_hash(ctx, &args[1], |h, out| {
        out.int(h.and_then(|h| h.get(field)).map_or(0, <[u8]>::len) as i64)
    })
}

fn hdel(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let fields = &args[2..];
    let removed = write_hash_if(
        ctx,
        &args[1],
        |h| Ok(fields.iter().filter(|f| h.remove(f)).count()),
        |&n| n > 0,
    )?;
    ctx.out.int(removed.unwrap_or(0) as i64);
    Ok(())
}

fn hincrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let field = &args[2];
    let incr = int(&args[3])?;
    let limits = limits(ctx);
    let value = write_hash(ctx, &args[1], true, |h| {
        let current = match h.get(field) {
            None => 0,
            Some(v) => parse_i64(v).ok_or_else(|| CmdError::Other("hash value is not an integer".into()))?,
        };
        let value = current.checked_add(incr).ok_or(CmdError::Overflow)?;
        h.insert_within(field, value.to_string().as_bytes(), limits);
        Ok(value)
    })?;
    ctx.out.int(value.unwrap_or(0));
    Ok(())
}

fn hincrbyfloat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (field, incr) = (&args[2], &args[3]);
    match float::parse(incr) {
        Parsed::NotFloat => return Err(CmdError::NotFloat),
        Parsed::Infinite => return Err(CmdError::Other("value is NaN or Infinity".into())),
        Parsed::Finite => {}
    }
    let limits = limits(ctx);
    let text = write_hash(ctx, &args[1], true, |h| {
        let text = float::add(Some(h.get(field).unwrap_or(b"0")), incr).map_err(|e| match e {
            AddError::BaseNotFloat => CmdError::Other("hash value is not a float".into()),
            AddError::IncrNotFloat => CmdError::NotFloat,
            AddError::NotFinite => CmdError::Other("increment would produce NaN or Infinity".into()),
        })?;
        h.insert_within(field, &text, limits);
        Ok(text)
    })?;
    ctx.out.bulk(&text.unwrap_or_default());
    Ok(())
}

/// Options of HSCAN after the cursor.
struct ScanOptions<'a> {
    pattern: Option<&'a [u8]>,
    novalues: bool,
}

fn parse_scan_options(args: &[Bytes]) -> Result<ScanOptions<'_>, CmdError> {
    let mut opts = ScanOptions {
        pattern: None,
        novalues: false,
    };
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let next = args.get(i + 1);
        match next {
            Some(n) if is(a, "COUNT") => {
                if int(n)? < 1 {
                    return Err(CmdError::Syntax);
                }
                i += 1;
            }
            Some(n) if is(a, "MATCH") => {
                // "*" matches everything; skip the matcher for it, as Redis does.
                opts.pattern = if &n[..] == b"*" { None } else { Some(&n[..]) };
                i += 1;
            }
            _ if is(a, "NOVALUES") => opts.novalues = true,
            _ => return Err(CmdError::Syntax),
        }
        i += 1;
    }
    Ok(opts)
}

/// HSCAN key cursor [MATCH pattern] [COUNT count] [NOVALUES]. Every matching field is
/// returned in one reply with cursor 0, which ends the iteration.
fn hscan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let cursor = std::str::from_utf8(&args[2]).ok().and_then(|s| s.parse::<u64>().ok());
    if cursor.is_none() {
        return Err(CmdError::Other("invalid cursor".into()));
    }
    // Redis validates the options only once it found a hash at the key.
    let opts = parse_scan_options(&args[3..]);
    let store = ctx.store;
    let mut locked = store.lock(ctx.slot_of(&args[1]));
    let mut slot = locked.slot();
    let out = &mut *ctx.out;
    let Some(e) = slot.read(&args[1], ctx.now) else {
        out.array(2);
        out.bulk(b"0");
        out.array(0);
        return Ok(());
    };
    let h = hash_ref(e)?;
    let opts = opts?;
    let selected: Vec<(&[u8], &[u8])> = h
        .iter()
        .filter(|(f, _)| opts.pattern.is_none_or(|p| glob::matches(p, f)))
        .collect();
    out.array(2);
    out.bulk(b"0");
    out.array(if opts.novalues {
        selected.len()
    } else {
        2 * selected.len()
    });
    for (f, v) in selected {
        out.bulk(f);
        if !opts.novalues {
            out.bulk(v);
        }
    }
    Ok(())
}

/// HRANDFIELD key [count [WITHVALUES]].
fn hrandfield(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if args.len() == 2 {
        return read_hash(ctx, &args[1], |h, out| match h {
            Some(h) if !h.is_empty() => {
                let i = rand::thread_rng().gen_range(0..h.len());
                match h.at(i) {
                    Some((f, _)) => out.bulk(f),
                    None => out.null(),
                }
            }
            _ => out.null(),
        });
    }
    let l = int(&args[2])?;
    if l == i64::MIN {
        return Err(CmdError::Other(format!(
            "value is out of range, must be between {} and {}",
            -i64::MAX,
            i64::MAX
        )));
    }
    if args.len() > 4 || (args.len() == 4 && !is(&args[3], "WITHVALUES")) {
        return Err(CmdError::Syntax);
    }
    let withvalues = args.len() == 4;
    if withvalues && !(-i64::MAX / 2..=i64::MAX / 2).contains(&l) {
        return Err(CmdError::Other("value is out of range".into()));
    }
    let (count, unique) = (l.unsigned_abs(), l >= 0);
    if !unique && count > HRANDFIELD_MAX_REPEATED {
        return Err(CmdError::Other("value is out of range".into()));
    }
    let resp3 = ctx.out.resp3;
    read_hash(ctx, &args[1], |h, out| {
        let Some(h) = h.filter(|h| !h.is_empty() && count > 0) else {
            out.array(0);
            return;
        };
        let mut rng = rand::thread_rng();
        let len = h.len();
        let picks: Vec<usize> = if !unique {
            (0..count).map(|_| rng.gen_range(0..len)).collect()
        } else if count >= len as u64 {
            (0..len).collect()
        } else {
            // count < len, so it fits in usize.
            rand::seq::index::sample(&mut rng, len, count as usize).into_vec()
        };
        let picked: Vec<(&[u8], &[u8])> = picks.into_iter().filter_map(|i| h.at(i)).collect();
        out.array(if withvalues && !resp3 {
            2 * picked.len()
        } else {
            picked.len()
        });
        for (f, v) in picked {
            if withvalues && resp3 {
                out.array(2);
            }
            out.bulk(f);
            if withvalues {
                out.bulk(v);
            }
        }
    })
}
